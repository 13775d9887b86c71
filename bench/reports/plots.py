"""Seaborn plots of results tables; each function takes tidy rows and returns a matplotlib Figure.

Figures are built on the Agg canvas directly (no pyplot state), so plotting is safe in worker processes
and on machines without a display, and figures are freed when dropped.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import NullFormatter

from bench.reports.kinds import (
    ATTRIBUTE_PROPORTION,
    FD_TERM_METRICS,
    GENERATOR_COMPARISON,
    REGION_BLUR,
    SEMANTIC_ATTACK,
    SEVERITY_SWEEP,
    STYLE_PROBE,
    experiment_kind,
    ordered_unique,
    split_experiments,
)
from bench.reports.rankings import generator_rankings, kendall_tau_matrix
from bench.reports.results import PROBLEM_METRICS, validate_results

SMALL_REGION_FRACTION = 0.2
TERM_TITLES = {"fd": "FD", "fd_mean_term": "mean term ‖μA−μB‖²", "fd_trace_term": "trace term"}


class NothingToPlotError(ValueError):
    """The rows given to a plot function hold none of the metric it draws."""


def new_figure(width: float, height: float) -> Figure:
    """A figure attached to the Agg canvas, with a constrained layout."""
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def figure_png(figure: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def plot_region_blur_nfd(block: pd.DataFrame) -> Figure:
    """Grouped bars of nFD per region (one colour per space), plus a zoomed panel for small regions."""
    rows = _one_per_cell(_metric_rows(block, "nfd"))
    regions = ordered_unique(rows["region"])
    spaces = ordered_unique(rows["space"])
    peak = rows.groupby("region", sort=False)["value"].max()
    small = [r for r in regions if peak.get(r, np.nan) < SMALL_REGION_FRACTION * np.nanmax(peak.to_numpy())]
    zoom = bool(small) and len(small) < len(regions)
    figure = new_figure(max(6.0, 0.7 * len(regions) * max(1, len(spaces)) ** 0.5 + 3), 4.2)
    if zoom:
        # The zoom panel keeps at least a third of the main panel's width so its title and labels fit.
        widths = [max(len(regions), 2), max(len(small), len(regions) / 3, 1.5)]
        main_axes, zoom_axes = figure.subplots(1, 2, width_ratios=widths)
    else:
        main_axes, zoom_axes = figure.subplots(1, 1), None
    _bars(main_axes, rows, regions, spaces)
    main_axes.set_title("conditional nFD by region (1 = whole image blurred)")
    if zoom_axes is not None:
        _bars(zoom_axes, rows[rows["region"].isin(small)], small, spaces)
        zoom_axes.set_title("zoom: small nFD")
        zoom_axes.get_legend().remove()
    return figure


def plot_nfd_heatmap(block: pd.DataFrame) -> Figure:
    """Region × space heatmap of nFD, annotated with the values."""
    rows = _one_per_cell(_metric_rows(block, "nfd"))
    matrix = _matrix(rows, "region", "space")
    figure = new_figure(1.4 * matrix.shape[1] + 3.5, 0.5 * matrix.shape[0] + 1.8)
    axes = figure.subplots()
    sns.heatmap(matrix, ax=axes, annot=True, fmt=".3g", cmap="viridis", cbar_kws={"label": "nFD"})
    axes.tick_params(axis="y", labelrotation=0)
    axes.set_title("conditional nFD: region × space")
    axes.set_xlabel("feature space")
    axes.set_ylabel("blurred region")
    return figure


def plot_delta_curves(block: pd.DataFrame) -> Figure:
    """FD(Δ) mean ± std per space on log-y, with panels for the mean and trace terms."""
    metrics = [m for m in FD_TERM_METRICS if (block["metric"] == m).any()]
    if not metrics:
        raise NothingToPlotError("no fd / fd_mean_term / fd_trace_term rows to draw Δ curves from")
    figure = new_figure(4.2 * len(metrics) + 1, 3.8)
    axes_list = np.atleast_1d(figure.subplots(1, len(metrics), sharex=True))
    for axes, metric in zip(axes_list, metrics, strict=False):
        rows, floor = _clip_for_log(_numeric_levels(_metric_rows(block, metric)))
        _curves(axes, rows)
        axes.set_title(TERM_TITLES[metric])
        axes.set_xlabel("Δ (proportion shift)")
        axes.set_ylabel("")
        if floor is not None:
            axes.set_yscale("log")
            axes.set_ylim(bottom=floor)
            axes.yaxis.set_minor_formatter(NullFormatter())
    axes_list[0].set_ylabel("distance (mean ± std over draws)")
    for axes in axes_list[1:]:
        if axes.get_legend() is not None:
            axes.get_legend().remove()
    return figure


def plot_generator_ranks(block: pd.DataFrame, metric: str = "fd") -> Figure:
    """Generators × spaces heatmap of ranks (1 = closest to the reference)."""
    ranks = generator_rankings(block, metric).astype("float64")
    figure = new_figure(1.3 * ranks.shape[1] + 3, 0.45 * ranks.shape[0] + 1.8)
    axes = figure.subplots()
    sns.heatmap(ranks, ax=axes, annot=True, fmt=".0f", cmap="crest", cbar=False)
    axes.tick_params(axis="y", labelrotation=0)
    axes.set_title(f"generator rank by {metric} (1 = best)")
    return figure


def plot_kendall_tau(block: pd.DataFrame, metric: str = "fd") -> Figure:
    """Spaces × spaces heatmap of Kendall τ between generator rankings."""
    tau = kendall_tau_matrix(block, metric)
    figure = new_figure(1.1 * tau.shape[1] + 2.5, 0.9 * tau.shape[0] + 1.5)
    axes = figure.subplots()
    sns.heatmap(tau, ax=axes, annot=True, fmt=".2f", cmap="vlag", vmin=-1, vmax=1, square=True)
    axes.tick_params(axis="y", labelrotation=0)
    axes.set_title("rank agreement (Kendall τ)")
    return figure


def plot_fd_differences(block: pd.DataFrame) -> Figure:
    """One generators × generators panel per space: cell (a, b) is FD(a) − FD(b) against the reference
    (negative: a is closer); cells whose interval contains 0 are hatched grey and marked "n.d."."""
    from bench.experiments.generator_comparison import NOT_DISTINGUISHABLE, pair_verdict

    rows = _metric_rows(block, "fd_difference")
    spaces = ordered_unique(rows["space"])
    generators = ordered_unique(pd.concat([rows["variant"], rows["region"]]))
    size = len(generators)
    figure = new_figure(max(4.5, (1.0 * size + 3.2) * len(spaces)), 0.9 * size + 1.8)
    axes_list = np.atleast_1d(figure.subplots(1, len(spaces)))
    for axes, space in zip(axes_list, spaces, strict=True):
        values = np.full((size, size), np.nan)
        undecided = np.zeros((size, size), dtype=bool)
        for row in rows[rows["space"] == space].to_dict("records"):
            a, b = generators.index(row["variant"]), generators.index(row["region"])
            values[a, b], values[b, a] = row["value"], -row["value"]
            verdict = pair_verdict(row["variant"], row["region"], row["value"], row["ci_low"], row["ci_high"])
            undecided[a, b] = undecided[b, a] = verdict == NOT_DISTINGUISHABLE
        shown = np.where(undecided, np.nan, values)
        limit = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0  # 0 is white
        sns.heatmap(
            shown, ax=axes, annot=True, fmt=".3g", cmap="vlag", vmin=-limit, vmax=limit,
            cbar=True, xticklabels=generators, yticklabels=generators, square=True,
            cbar_kws={"label": "FD(row) − FD(column)"},
        )  # fmt: skip
        for a, b in zip(*np.nonzero(undecided), strict=True):
            axes.add_patch(Rectangle((b, a), 1, 1, facecolor="#d9d9d9", edgecolor="white", hatch="//"))
            axes.text(b + 0.5, a + 0.5, "n.d.", ha="center", va="center", fontsize=9)
        axes.tick_params(axis="y", labelrotation=0)
        axes.set_title(space)
    figure.suptitle("FD(row) − FD(column); n.d. = not distinguishable at this n (the interval holds 0)")
    return figure


def plot_style_probe(block: pd.DataFrame) -> Figure:
    """FD(α) / FD(1) against the style blend α, one line per space."""
    rows = _numeric_levels(_metric_rows(block, "fd_ratio"))
    figure = new_figure(6.5, 4.0)
    axes = figure.subplots()
    _curves(axes, rows)
    axes.axhline(1.0, color="grey", lw=0.8, ls=":")
    axes.set_xlabel("α (share of channel statistics swapped)")
    axes.set_ylabel("FD(α) / FD(1)")
    axes.set_title("how much of FD is channel statistics (style)")
    return figure


def experiment_figures(results: pd.DataFrame) -> list[tuple[str, Figure]]:
    """(caption, figure) for every plot that fits the experiments in a results table."""
    table = validate_results(results)
    usable = table[~table["metric"].isin(PROBLEM_METRICS) & table["value"].notna()]
    figures: list[tuple[str, Figure]] = []
    for name, block in split_experiments(usable):
        kind = experiment_kind(block)
        metrics = set(block["metric"])
        if kind == REGION_BLUR and "nfd" in metrics:
            figures.append((f"{name}: nFD per region and space", plot_region_blur_nfd(block)))
            figures.append((f"{name}: nFD heatmap", plot_nfd_heatmap(block)))
        elif kind == ATTRIBUTE_PROPORTION and metrics & set(FD_TERM_METRICS):
            figures.append((f"{name}: FD against Δ", plot_delta_curves(block)))
        elif kind == GENERATOR_COMPARISON and "fd" in metrics:
            figures.append((f"{name}: generator ranks", plot_generator_ranks(block)))
            if "fd_difference" in metrics:
                figures.append((f"{name}: FD differences between generators", plot_fd_differences(block)))
            if block[block["metric"] == "fd"]["space"].nunique() > 1:
                figures.append((f"{name}: Kendall τ between spaces", plot_kendall_tau(block)))
        elif kind == STYLE_PROBE and "fd_ratio" in metrics:
            figures.append((f"{name}: FD(α) / FD(1)", plot_style_probe(block)))
        elif kind == SEVERITY_SWEEP and "top1_error" in metrics:
            figures.append(
                (f"{name}: error and mistake severity against strength", plot_severity_sweep(block))
            )
        elif kind == SEMANTIC_ATTACK and "success_rate" in metrics:
            figures.append((f"{name}: success and mistake severity against ε", plot_semantic_attack(block)))
    return figures


SEVERITY_PANELS = {"top1_error": "top-1 error", "mistake_severity": "mistake severity (LCA height)"}


def plot_severity_sweep(block: pd.DataFrame) -> Figure:
    """Top-1 error and mistake severity against each perturbation's strength, the clean value dashed."""
    sweeps = [variant for variant in ordered_unique(block["variant"]) if variant != "clean"]
    figure = new_figure(3.2 * max(len(sweeps), 1), 5.2)
    grid = figure.subplots(len(SEVERITY_PANELS), max(len(sweeps), 1), squeeze=False, sharey="row")
    for row, (metric, title) in enumerate(SEVERITY_PANELS.items()):
        rows = block[(block["metric"] == metric) & block["value"].notna()]
        clean = rows[rows["variant"] == "clean"]
        for column, sweep in enumerate(sweeps):
            axes = grid[row, column]
            curve = (
                _numeric_levels(rows[rows["variant"] == sweep]) if (rows["variant"] == sweep).any() else None
            )
            if curve is not None:
                below = (curve["value"] - curve["ci_low"]).clip(lower=0).fillna(0)
                above = (curve["ci_high"] - curve["value"]).clip(lower=0).fillna(0)
                axes.errorbar(curve["level"], curve["value"], yerr=[below, above], marker="o", capsize=2)
            if not clean.empty:
                axes.axhline(clean["value"].iloc[0], color="grey", ls="--", lw=0.9, label="clean")
            if sweep.endswith(":quality"):
                axes.invert_xaxis()  # lower quality is the stronger perturbation
            axes.set_title(sweep if row == 0 else "", fontsize=9)
            axes.set_xlabel(sweep.partition(":")[2] or "level")
            axes.set_ylabel(title if column == 0 else "")
    return figure


def plot_semantic_attack(block: pd.DataFrame) -> Figure:
    """Success rate and mistake severity against ε, nearest-class targets against random targets."""
    figure = new_figure(9.0, 3.6)
    panels = figure.subplots(1, 2)
    for axes, metric, title in zip(
        panels, ("success_rate", "mistake_severity"), ("success rate", "mistake severity"), strict=True
    ):
        rows = block[(block["metric"] == metric) & block["value"].notna()]
        for mode in ordered_unique(rows["variant"]):
            curve = _numeric_levels(rows[rows["variant"] == mode])
            below = (curve["value"] - curve["ci_low"]).clip(lower=0).fillna(0)
            above = (curve["ci_high"] - curve["value"]).clip(lower=0).fillna(0)
            axes.errorbar(
                curve["level"], curve["value"], yerr=[below, above], marker="o", capsize=2, label=mode
            )
        axes.set_xlabel("ε (L∞, 0–255 pixel scale)")
        axes.set_ylabel(title)
        axes.legend(title="targets", fontsize=8)
    return figure


def _metric_rows(block: pd.DataFrame, metric: str) -> pd.DataFrame:
    rows = block[(block["metric"] == metric) & block["value"].notna()]
    if rows.empty:
        raise NothingToPlotError(f"no rows with metric {metric!r} (and a value) to plot")
    return rows


def _one_per_cell(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (region, space): in strength sweeps the strongest (largest numeric) level."""
    order = rows["level"].map(lambda v: v if isinstance(v, float) else np.inf)
    ranked = rows.assign(_order=order).sort_values("_order", kind="stable")
    return ranked.drop_duplicates(subset=["region", "space"], keep="last").drop(columns="_order")


def _numeric_levels(rows: pd.DataFrame) -> pd.DataFrame:
    numeric = rows[rows["level"].map(lambda v: isinstance(v, float))].copy()
    if numeric.empty:
        raise NothingToPlotError(f"rows of metric {rows['metric'].iloc[0]!r} have no numeric levels")
    numeric["level"] = numeric["level"].astype("float64")
    return numeric.sort_values("level", kind="stable")


def _bars(axes: Axes, rows: pd.DataFrame, regions: Sequence[str], spaces: Sequence[str]) -> None:
    data = rows.assign(region=pd.Categorical(rows["region"], categories=list(regions), ordered=True))
    sns.barplot(
        data=data, x="region", y="value", hue="space", hue_order=list(spaces), order=list(regions),
        errorbar=None, ax=axes,
    )  # fmt: skip
    for container, space in zip(axes.containers, spaces, strict=False):
        values = rows[rows["space"] == space].set_index("region")
        centres, middles, below, above = [], [], [], []
        for bar, region in zip(container, regions, strict=False):
            if region not in values.index:
                continue
            row = values.loc[region]
            if pd.notna(row["ci_low"]) and pd.notna(row["ci_high"]):
                centres.append(bar.get_x() + bar.get_width() / 2)
                middles.append(row["value"])
                below.append(max(row["value"] - row["ci_low"], 0.0))
                above.append(max(row["ci_high"] - row["value"], 0.0))
        if centres:
            axes.errorbar(
                centres, middles, yerr=[below, above], fmt="none", ecolor="black", lw=0.8, capsize=2
            )
    axes.set_xlabel("blurred region")
    axes.set_ylabel("nFD")
    axes.tick_params(axis="x", labelrotation=35)


def _curves(axes: Axes, rows: pd.DataFrame) -> None:
    style = "variant" if rows["variant"].nunique() > 1 else None
    spaces = ordered_unique(rows["space"])
    palette = dict(zip(spaces, sns.color_palette(n_colors=len(spaces)), strict=False))
    sns.lineplot(
        data=rows, x="level", y="value", hue="space", hue_order=spaces, palette=palette, style=style,
        marker="o", errorbar=None, ax=axes,
    )  # fmt: skip
    for (space, _variant), group in rows.groupby(["space", "variant"], sort=False):
        bounded = group.dropna(subset=["ci_low", "ci_high"])
        if not bounded.empty:
            axes.fill_between(
                bounded["level"], bounded["ci_low"], bounded["ci_high"], alpha=0.2,
                color=palette.get(space), linewidth=0,
            )  # fmt: skip


def _clip_for_log(rows: pd.DataFrame) -> tuple[pd.DataFrame, float | None]:
    """Rows with values and bands clipped at a positive floor so they fit a log axis.

    Rounding can leave terms at ±1e-15 and mean − std bands below zero; drawing those on log-y would
    stretch the axis over many empty decades, so they are shown at the floor instead.
    """
    values = rows["value"].to_numpy(dtype=float)
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size == 0:
        return rows, None
    floor = max(float(positive.min()) / 2.0, float(positive.max()) * 1e-4)
    clipped = rows.copy()
    for column in ("value", "ci_low", "ci_high"):
        clipped[column] = clipped[column].clip(lower=floor)
    return clipped, floor


def _matrix(rows: pd.DataFrame, index: str, columns: str) -> pd.DataFrame:
    matrix = pd.DataFrame(np.nan, index=ordered_unique(rows[index]), columns=ordered_unique(rows[columns]))
    for row in rows.to_dict("records"):
        matrix.loc[row[index], row[columns]] = row["value"]
    return matrix.astype("float64")
