"""Do the per-image gradient view and the per-set perturbation view agree? (METHODS §10, ours.)

Per face region r and image i, the heatmap's *mass share* in r is the part of the image's heatmap mass
(its values summed, the map scaled to unit total) that lies in r, and its *density* is that share divided
by the share of the pixels r covers (1 = as much mass as a uniform map would put there). A region counts
for an image only where it is present (area ≥ a_min of the pixels, METHODS §3). Per space, the mean
density over the images holding r (METHODS' form: mass normalised by region area) is ranked against the
same space's region-blur conditional nFD (rows metric "nfd", variant "blur" of a region-blur table), and
Spearman's ρ over the regions measures the agreement. Because nFD is a whole-region effect that grows
with the region's size, the mean mass share (not area-normalised) is ranked against it too. Intervals come
from the shared bootstrap with the images as the group; the nFD values are held fixed (their own
intervals live in the region-blur table).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from bench.engine import EngineConfig, MaskProvider
from bench.experiments.common import ResultRow
from bench.masks import DEFAULT_MIN_REGION_FRACTION, REGIONS, LabelConvention, region_mask, region_present
from bench.metrics.bootstrap import bootstrap
from bench.sensitivity.heatmaps import FDHeatmaps, iter_heatmaps, prepare_heatmaps
from bench.sources import ImageSource

EXPERIMENT = "heatmap_agreement"
VARIANT = "heatmap-vs-blur"
MIN_REGIONS = 3  # fewer regions than this give a ρ of ±1 or nothing: no agreement is reported
MIN_IMAGES_PER_REGION = 2


@dataclass(frozen=True)
class Summary:
    """One per-region summary of the heatmaps: its row metric, the metric of its ρ with nFD, a label,
    and the range of values it can take."""

    metric: str
    rho_metric: str
    label: str
    bounds: tuple[float, float]


SUMMARIES = {
    "density": Summary("heatmap_density", "spearman_rho", "per-pixel mass (1 = uniform)", (0.0, math.inf)),
    "share": Summary("heatmap_mass_share", "spearman_rho_mass_share", "mass share", (0.0, 1.0)),
}
RHO_RANGE = (-1.0, 1.0)


def region_mass(
    maps: np.ndarray,
    labels: np.ndarray,
    convention: LabelConvention | str,
    regions: Sequence[str],
    min_fraction: float = DEFAULT_MIN_REGION_FRACTION,
) -> tuple[np.ndarray, np.ndarray]:
    """(B, R) heatmap mass share and area fraction of each region in each image (NaN where absent).

    `maps` (B, H, W) are non-negative heatmaps and `labels` (B, H, W) label maps at the same size.
    """
    maps = np.asarray(maps, dtype=np.float64)
    labels = np.asarray(labels)
    if maps.shape != labels.shape:
        raise ValueError(f"heatmaps {maps.shape} and label maps {labels.shape} differ in shape")
    totals = maps.sum(axis=(1, 2))
    mass = maps / np.where(totals > 0, totals, np.nan)[:, None, None]
    shares = np.full((maps.shape[0], len(regions)), np.nan)
    fractions = np.full_like(shares, np.nan)
    for column, region in enumerate(regions):
        inside = region_mask(labels, convention, region)
        present = region_present(labels, convention, region, min_fraction)
        shares[present, column] = (mass * inside).sum(axis=(1, 2))[present]
        fractions[present, column] = inside.reshape(len(inside), -1).mean(axis=1)[present]
    return shares, fractions


@dataclass
class RegionMass:
    """Heatmap mass shares and area fractions per image and region of one space, gathered by batch."""

    space: str
    regions: tuple[str, ...]
    ids: list[str] = field(default_factory=list)
    share_rows: list[np.ndarray] = field(default_factory=list)
    fraction_rows: list[np.ndarray] = field(default_factory=list)

    def add(self, ids: Sequence[str], shares: np.ndarray, fractions: np.ndarray) -> None:
        """Append one batch's (B, R) shares and fractions (`region_mass`)."""
        self.ids.extend(ids)
        self.share_rows.append(np.asarray(shares, dtype=np.float64))
        self.fraction_rows.append(np.asarray(fractions, dtype=np.float64))

    def _stack(self, rows: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(rows) if rows else np.zeros((0, len(self.regions)))

    @property
    def shares(self) -> np.ndarray:
        """(n images, R) mass shares, NaN where a region is absent."""
        return self._stack(self.share_rows)

    @property
    def densities(self) -> np.ndarray:
        """(n images, R) mass per pixel relative to uniform (share / area fraction), NaN where absent."""
        return self.shares / self._stack(self.fraction_rows)


def blur_nfd(results: pd.DataFrame | str | Path, space: str) -> dict[str, float]:
    """Region → conditional nFD of `space` from a region-blur results table (or its CSV/JSON file)."""
    if not isinstance(results, pd.DataFrame):
        from bench.reports.results import load_results

        results = load_results(results)
    rows = results[
        (results["metric"] == "nfd")
        & (results["variant"] == "blur")
        & (results["space"] == space)
        & results["level"].isna()
        & results["region"].isin([name for name in REGIONS if name != "All"])
    ]
    return {str(row.region): float(row.value) for row in rows.itertuples() if math.isfinite(row.value)}


def spearman(first: np.ndarray, second: np.ndarray) -> float:
    """Spearman's ρ (average ranks for ties); NaN when either side is constant."""
    if np.ptp(first) == 0 or np.ptp(second) == 0:
        return math.nan
    return float(scipy.stats.spearmanr(first, second).statistic)


def agreement_rows(
    mass: RegionMass,
    nfd: Mapping[str, float],
    *,
    num_boot: int = 200,
    seed: int = 0,
    method: str = "basic",
) -> tuple[list[ResultRow], list[str]]:
    """Result rows (per-region density and mass share, the nFD they are ranked against, Spearman ρ of
    each summary) and notes. Only regions with an nFD and at least two images holding them take part;
    a ρ needs three such regions."""
    summaries = {"density": mass.densities, "share": mass.shares}
    notes: list[str] = []
    counts = np.isfinite(summaries["share"]).sum(axis=0)
    chosen = [
        column
        for column, region in enumerate(mass.regions)
        if region in nfd and counts[column] >= MIN_IMAGES_PER_REGION
    ]
    for column, region in enumerate(mass.regions):
        if column not in chosen:
            why = "has no region-blur nFD" if region not in nfd else f"is in {counts[column]} image(s)"
            notes.append(f"space {mass.space}: region {region} {why}; left out of the agreement")
    images = summaries["share"].shape[0]
    if not chosen or images < 2:
        return [], notes
    regions = [mass.regions[column] for column in chosen]
    blur = np.array([nfd[region] for region in regions])
    picked = {name: values[:, chosen] for name, values in summaries.items()}

    def statistic(draw: dict[str, np.ndarray]) -> dict[str, float]:
        out = {}
        for name, values in picked.items():
            means = nan_means(values[draw["images"]])
            out.update({f"{name}:{region}": means[k] for k, region in enumerate(regions)})
            if len(regions) >= MIN_REGIONS and np.isfinite(means).all():
                out[f"rho:{name}"] = spearman(means, blur)
        return out

    estimates = bootstrap(statistic, {"images": images}, num_boot=num_boot, seed=seed, method=method)
    rows: list[ResultRow] = []
    copied = ("conditional nFD copied from the region-blur table",)
    for k, region in enumerate(regions):
        base = ResultRow(EXPERIMENT, mass.space, "region_blur_nfd", float(blur[k]), int(counts[chosen[k]]),
                         variant=VARIANT, region=region, diagnostics=copied)  # fmt: skip
        rows.append(base)
        for name, summary in SUMMARIES.items():
            estimate = estimates[f"{name}:{region}"]
            row = dataclasses.replace(base, metric=summary.metric, value=estimate.estimate, diagnostics=())
            rows.append(row.with_bootstrap(estimate.within(*summary.bounds)))
    about = (
        f"over {len(regions)} regions: {', '.join(regions)}",
        "interval from resampling images (heatmap side); the region-blur nFDs are held fixed",
    )
    for name, summary in SUMMARIES.items():
        rho = estimates.get(f"rho:{name}")
        if rho is None or not math.isfinite(rho.estimate):
            notes.append(
                f"space {mass.space}: Spearman ρ of the {summary.label} needs {MIN_REGIONS} regions with "
                f"distinct values; {len(regions)} took part"
            )
            continue
        ranked = (f"regions ranked by heatmap {summary.label} against nFD", *about)
        row = ResultRow(EXPERIMENT, mass.space, summary.rho_metric, rho.estimate, images, variant=VARIANT,
                        region="All", diagnostics=ranked)  # fmt: skip
        rows.append(row.with_bootstrap(rho.within(*RHO_RANGE)))
    return rows, notes


def nan_means(values: np.ndarray) -> np.ndarray:
    """Column means over the finite entries (NaN for a column without any)."""
    present = np.isfinite(values).sum(axis=0)
    totals = np.where(np.isfinite(values), values, 0.0).sum(axis=0)
    return np.where(present > 0, totals / np.maximum(present, 1), np.nan)


def space_heatmaps(
    generated: ImageSource,
    reference: ImageSource,
    space: str,
    masks: MaskProvider | None,
    regions: Sequence[str],
    *,
    min_region_fraction: float = DEFAULT_MIN_REGION_FRACTION,
    limit: int | None = None,
    batch_size: int = 16,
    config: EngineConfig | None = None,
    on_batch: Callable[[list[str], Any, np.ndarray], None] | None = None,
) -> tuple[FDHeatmaps, RegionMass]:
    """One space's heatmaps of the generated images, batch by batch (each batch handed to `on_batch`,
    e.g. to write overlays), with their per-region mass where masks are given."""
    prepared = prepare_heatmaps(generated, reference, space, config)
    mass = RegionMass(space, tuple(regions))
    for ids, images, maps in iter_heatmaps(prepared, generated, batch_size, limit):
        if on_batch is not None:
            on_batch(ids, images, maps)
        if masks is not None:
            labels, labelled = (tensor.cpu().numpy() for tensor in masks.labels(ids, images))
            shares, fractions = region_mass(
                maps[labelled], labels[labelled], masks.convention, regions, min_region_fraction
            )
            mass.add(
                [image_id for image_id, keep in zip(ids, labelled, strict=True) if keep], shares, fractions
            )
    return prepared, mass


def region_agreement(
    generated: ImageSource,
    reference: ImageSource,
    spaces: Sequence[str],
    masks: MaskProvider,
    region_blur: pd.DataFrame,
    regions: Sequence[str],
    *,
    min_region_fraction: float = DEFAULT_MIN_REGION_FRACTION,
    limit: int | None = None,
    num_boot: int = 200,
    seed: int = 0,
    config: EngineConfig | None = None,
) -> tuple[list[ResultRow], list[str]]:
    """Agreement rows and notes of every space between its heatmaps and its region-blur nFD (no files)."""
    rows: list[ResultRow] = []
    notes: list[str] = []
    for space in spaces:
        prepared, mass = space_heatmaps(
            generated, reference, space, masks, regions, min_region_fraction=min_region_fraction,
            limit=limit, config=config,
        )  # fmt: skip
        found, found_notes = agreement_rows(mass, blur_nfd(region_blur, space), num_boot=num_boot, seed=seed)
        rows.extend(found)
        notes.extend([*prepared.notes, *found_notes])
    return rows, notes
