"""One heatmap run: every requested space's overlays, region densities and agreement, then the page.

This is the Python form of `fdbench heatmap`: sources, spaces and options in, a folder of overlays, a
self-contained heatmaps.html, manifest.json and (with masks and a region-blur table) results.csv out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.engine import EngineConfig, MaskProvider
from bench.experiments.common import ResultRow, results_frame
from bench.experiments.runner import weight_hashes_of
from bench.masks import DEFAULT_MIN_REGION_FRACTION
from bench.reports.manifest import build_manifest, write_manifest
from bench.reports.results import save_results
from bench.sensitivity import agreement as agree
from bench.sensitivity import report
from bench.sensitivity.heatmaps import describe
from bench.sources import ImageSource, open_source

DEFAULT_REGIONS = ("Background", "Skin", "Eyes", "Nose", "Mouth & Lips", "Hair")


@dataclass
class HeatmapRunOutput:
    """What a heatmap run wrote and found."""

    page: Path
    spaces: list[dict[str, Any]]
    overlays: dict[str, list[tuple[str, Path]]]
    rows: list[ResultRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def results(self) -> pd.DataFrame:
        """The agreement rows as a results table (empty without masks and a region-blur table)."""
        return results_frame(self.rows)


def run_heatmaps(
    generated: str | Path | ImageSource,
    reference: str | Path | ImageSource,
    spaces: Sequence[str],
    out_dir: str | Path,
    *,
    masks: MaskProvider | None = None,
    region_blur: pd.DataFrame | None = None,
    regions: Sequence[str] = DEFAULT_REGIONS,
    min_region_fraction: float = DEFAULT_MIN_REGION_FRACTION,
    limit: int | None = None,
    batch_size: int = 16,
    num_boot: int = 200,
    seed: int = 0,
    config: EngineConfig | None = None,
) -> HeatmapRunOutput:
    """Heatmaps of the generated images in every space; their agreement with `region_blur` when masks
    and that table are given."""
    if region_blur is not None and masks is None:
        raise ValueError("the region agreement needs masks (the parser or a folder of label maps)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    generated, reference = open_source(generated), open_source(reference)
    config = config or EngineConfig(batch_size=batch_size)
    output = HeatmapRunOutput(out / "heatmaps.html", [], {})
    for space in spaces:
        written: list[tuple[str, Path]] = []

        def write(
            ids: list[str], images: Any, maps: Any, space: str = space, written: list = written
        ) -> None:
            written.extend(report.write_overlays(out, space, ids, images, maps))

        prepared, mass = agree.space_heatmaps(
            generated, reference, space, masks, regions, min_region_fraction=min_region_fraction,
            limit=limit, batch_size=batch_size, config=config, on_batch=write,
        )  # fmt: skip
        output.notes.extend(prepared.notes)
        output.overlays[space] = written
        output.spaces.append({**describe(prepared), "heatmaps": len(written)})
        if region_blur is not None:
            rows, notes = agree.agreement_rows(
                mass, agree.blur_nfd(region_blur, space), num_boot=num_boot, seed=seed
            )
            output.rows.extend(rows)
            output.notes.extend(notes)
    section = report.agreement_section(output.rows) if output.rows else None
    manifest = build_manifest(
        config={
            "command": "heatmap",
            "spaces": list(spaces),
            "limit": limit,
            "regions": list(regions),
            "min_region_fraction": min_region_fraction,
            "bootstrap": num_boot,
            "masks": None if masks is None else masks.identity(),
        },
        seeds={"seed": seed},
        weights=weight_hashes_of(list(spaces)),
        data_manifest_hash={"generated": generated.manifest_hash(), "reference": reference.manifest_hash()},
        device=config.device,
        notes=output.notes,
        extra={"spaces": output.spaces},
    )
    write_manifest(manifest, out)
    if output.rows:
        save_results(output.results, out)
    extra = [section] if section is not None else []
    report.write_page(out, output.spaces, output.overlays, output.notes, manifest, extra)
    return output
