"""Heatmap files and pages: PNG overlays, the self-contained HTML page, and the region-agreement section
(a table and a plot) that a region-blur report can embed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from PIL import Image

from bench.experiments.common import ResultRow, results_frame
from bench.reports.html import ReportSection, figure_html, render_page
from bench.reports.plots import new_figure
from bench.reports.tables import Table, format_cell, to_html, to_markdown
from bench.sensitivity.agreement import EXPERIMENT, SUMMARIES, Summary

OVERLAY_ALPHA = 0.5
COLOUR_MAP = "jet"


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """An H × W × 3 uint8 image with its [0, 1] heatmap blended over it in the jet colour map."""
    colours = colormaps[COLOUR_MAP](np.clip(heatmap, 0.0, 1.0))[..., :3] * 255.0
    blended = (1.0 - alpha) * image.astype(np.float64) + alpha * colours
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def overlay_name(image_id: str, space: str) -> str:
    """A flat file name for an image id (which may hold folders) in one space."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in image_id)
    return f"{space}/{stem}.png"


def write_overlays(
    folder: Path, space: str, ids: Sequence[str], images: Any, maps: np.ndarray
) -> list[tuple[str, Path]]:
    """Write one overlay PNG per image under folder/SPACE/; returns (image id, path) pairs."""
    written = []
    pixels = np.asarray(images.permute(0, 2, 3, 1).cpu().numpy() if hasattr(images, "permute") else images)
    for image_id, image, heatmap in zip(ids, pixels, maps, strict=True):
        path = folder / overlay_name(image_id, space)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(overlay(image, heatmap)).save(path)
        written.append((image_id, path))
    return written


def gallery_html(written: Sequence[tuple[str, Path]], width: int = 200) -> str:
    """The overlays side by side (each embedded, captioned with its image id), wrapping to the page."""
    tiles = [
        f'<div style="width:{width}px">{figure_html(path, image_id)}</div>' for image_id, path in written
    ]
    return '<div style="display:flex;flex-wrap:wrap;gap:6px">' + "".join(tiles) + "</div>"


def summary_table(spaces: Sequence[Mapping[str, Any]]) -> Table:
    """One row per space: its layer, FD between the sets and their sizes."""
    frame = pd.DataFrame(
        [
            {
                "space": entry["space"],
                "layer": entry["layer"],
                "FD(generated, reference)": format_cell(entry["fd"]),
                "n generated": entry["n_generated"],
                "n reference": entry["n_reference"],
                "heatmaps": entry.get("heatmaps", 0),
            }
            for entry in spaces
        ]
    )
    return Table(
        "Heatmaps by space",
        frame,
        "Channel weights w_c = mean over positions of (∂FD/∂A_c)²; heatmap Σ_c w_c A_c, min–max normalised.",
    )


def write_page(
    folder: Path,
    spaces: Sequence[Mapping[str, Any]],
    overlays: Mapping[str, Sequence[tuple[str, Path]]],
    notes: Sequence[str],
    manifest: Mapping[str, Any],
    extra_sections: Sequence[ReportSection] = (),
) -> Path:
    """heatmaps.html: the summary table, every overlay (embedded) per space, extra sections, notes."""
    sections = [
        ReportSection(f"Heatmaps in {space}", gallery_html(written)) for space, written in overlays.items()
    ]
    page = render_page(
        title="fdbench heatmaps: where FD looks",
        tables_html=[to_html(summary_table(spaces))],
        figures=[],
        problems=list(notes),
        manifest=manifest,
        extra_sections=[*sections, *extra_sections],
    )
    target = folder / "heatmaps.html"
    target.write_text(page, encoding="utf-8")
    return target


def agreement_table(rows: Sequence[ResultRow] | pd.DataFrame) -> Table | None:
    """Per space: Spearman ρ [interval] of heatmap density and of mass share against region-blur nFD,
    the images, and the three rankings of the regions."""
    frame = _agreement_rows(rows)
    if frame[frame["metric"].isin([summary.rho_metric for summary in SUMMARIES.values()])].empty:
        return None
    records = []
    for space in dict.fromkeys(frame["space"]):
        block = frame[frame["space"] == space]
        record: dict[str, Any] = {"space": space}
        for summary in SUMMARIES.values():
            found = block[block["metric"] == summary.rho_metric]
            cell = "–" if found.empty else format_cell(*found[["value", "ci_low", "ci_high"]].iloc[0])
            record[f"ρ, {summary.label} [95 % CI]"] = cell
            record[f"regions by {summary.label}"] = ", ".join(_ranked(block, summary.metric))
        record["regions by nFD"] = ", ".join(_ranked(block, "region_blur_nfd"))
        record["images"] = int(block["n"].max())
        records.append(record)
    return Table(
        "Heatmap mass vs region blur",
        pd.DataFrame(records),
        "Spearman ρ between each region's mean heatmap summary and its region-blur conditional nFD; the "
        "interval resamples images (basic bootstrap), the nFDs are held fixed.",
    )


def _agreement_rows(rows: Sequence[ResultRow] | pd.DataFrame) -> pd.DataFrame:
    frame = rows if isinstance(rows, pd.DataFrame) else results_frame(list(rows))
    return frame[frame["experiment"] == EXPERIMENT]


def _ranked(block: pd.DataFrame, metric: str) -> list[str]:
    """Regions by descending value of `metric`."""
    return block[block["metric"] == metric].sort_values("value", ascending=False)["region"].tolist()


def agreement_figure(rows: Sequence[ResultRow] | pd.DataFrame) -> Any:
    """Per space (columns) and summary (rows: density, mass share): the region's heatmap summary against
    its region-blur nFD, one labelled point per region, ρ in the title."""
    frame = _agreement_rows(rows)
    spaces = list(dict.fromkeys(frame.loc[frame["metric"] == "region_blur_nfd", "space"]))
    if not spaces:
        return None
    figure = new_figure(4.0 * len(spaces), 7.0)
    grid = np.asarray(figure.subplots(len(SUMMARIES), len(spaces), squeeze=False))
    for column, space in enumerate(spaces):
        block = frame[frame["space"] == space]
        nfd = block[block["metric"] == "region_blur_nfd"].set_index("region")["value"]
        for row_index, summary in enumerate(SUMMARIES.values()):
            _scatter(grid[row_index, column], block, summary, nfd, space)
    return figure


def _scatter(ax: Any, block: pd.DataFrame, summary: Summary, nfd: pd.Series, space: str) -> None:
    """One panel: a heatmap summary (with intervals) against nFD, one point per region."""
    values = block[block["metric"] == summary.metric].set_index("region")
    regions = [region for region in values.index if region in nfd.index]
    x = nfd[regions].to_numpy(dtype=float)
    y = values.loc[regions, "value"].to_numpy(dtype=float)
    low = values.loc[regions, "ci_low"].to_numpy(dtype=float)
    high = values.loc[regions, "ci_high"].to_numpy(dtype=float)
    spread = np.vstack([y - low, high - y])
    ax.errorbar(x, y, yerr=np.clip(np.nan_to_num(spread), 0, None), fmt="o", capsize=3)
    for region, xi, yi in zip(regions, x, y, strict=True):
        ax.annotate(region, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
    rho = block[block["metric"] == summary.rho_metric]
    title = space
    if not rho.empty:
        title += f"\nρ = {format_cell(*rho[['value', 'ci_low', 'ci_high']].iloc[0])}"
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("region-blur nFD")
    ax.set_ylabel(f"heatmap {summary.label}", fontsize=8)


def agreement_section(rows: Sequence[ResultRow] | pd.DataFrame) -> ReportSection | None:
    """The report section: the agreement table and the density-vs-nFD plot (None without ρ rows)."""
    table = agreement_table(rows)
    if table is None:
        return None
    figure = agreement_figure(rows)
    intro = (
        "<p>Two views of where a feature space looks: the per-image FD gradient heatmap (mass per pixel "
        "in each face region) and the per-set region-blur nFD. Spearman ρ near 1 means they rank the "
        "regions alike.</p>"
    )
    figures = [("heatmap density against region-blur nFD", figure)] if figure is not None else []
    return ReportSection("Where FD looks: heatmaps against region blur", intro + to_html(table), figures)


def agreement_markdown(rows: Sequence[ResultRow] | pd.DataFrame) -> str:
    """The agreement table as Markdown ('' without ρ rows)."""
    table = agreement_table(rows)
    return to_markdown(table) if table is not None else ""
