"""Region-blur sensitivity (the F?D protocol of Kabra & Balakrishnan 2023, METHODS §3).

For each feature space s and face region r: FD_s(X_r, B_r X_r), where X_r are the clean images whose mask
holds region r and B_r blurs that region only, and FD_s(X, B_All X) for the whole-image blur. The
normalised FD nFD_s(r) = FD_s(X_r, B_r X_r) / FD_s(X, B_All X) is comparable across spaces; raw FDs are
not. Confidence intervals come from a paired bootstrap over images (one resampled image multiset per
replicate, used for the region and the All blur alike). Optional sweeps of σ or of the fraction of
images blurred give nFD curves.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.engine import ALL_IMAGES, EngineResult, Variant, run_engine
from bench.engine.masking import FolderMasks, MaskProvider, ParserMasks
from bench.experiments.common import EngineSettings, ResultRow, engine_config, fd_between_cells, results_frame
from bench.masks import REGIONS
from bench.metrics.frechet import frechet_distance_resampled
from bench.parallel import map_small_linalg
from bench.perturbations import make_perturbation
from bench.sources import open_source

EXPERIMENT = "region_blur"
DEFAULT_REGIONS = ["Background", "Skin", "Eyes", "Eyeglasses", "Nose", "Mouth & Lips", "Hair", "Hat"]
OFFLINE_SPACES = [
    "efficientnet-lite0-imagenet",
    "augnet-r50",
    "dlib-face-id",
    "agegender",
    "spectrum-durall",
    "pixels-randproj",
]


@dataclass
class RegionBlurConfig(EngineSettings):
    """Settings of a region-blur run (every field can be set from a TOML table)."""

    source: str = "dcgan-faces:count=500,seed=0"
    spaces: list[str] = field(default_factory=lambda: list(OFFLINE_SPACES))
    regions: list[str] = field(default_factory=lambda: list(DEFAULT_REGIONS))
    masks: str = "parser"  # "parser" (BiSeNet) or a folder of label-map PNGs
    mask_convention: str = "celebamask-hq"  # label numbering of a mask folder
    parser_input_size: int = 512
    sigma: float = 100.0  # blur σ at 512² (kernel 111); scaled with the image side
    bootstrap: int = 50
    sweep: str | None = None  # None, "sigma" or "fraction"
    sweep_levels: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        unknown = [region for region in self.regions if region not in REGIONS or region == "All"]
        if unknown:
            known = [name for name in REGIONS if name != "All"]
            raise ValueError(f"unknown region(s) {unknown}; choose from {known} (All is always included)")
        if self.sweep not in (None, "sigma", "fraction"):
            raise ValueError(f"sweep must be 'sigma' or 'fraction', got {self.sweep!r}")
        if self.sweep and not self.sweep_levels:
            raise ValueError(f"a {self.sweep} sweep needs sweep_levels")


@dataclass
class ExperimentOutput:
    """A tidy results table, problems found on the way, and what the manifest should record."""

    results: pd.DataFrame
    notes: list[str]
    manifest: dict[str, Any]
    engine: EngineResult | None = None
    skipped_files: list[tuple[str, str]] = field(default_factory=list)  # (file, reason) for the run log


def build_variants(config: RegionBlurConfig) -> list[Variant]:
    """The clean images (one subset per region), each region blurred, the whole image blurred, sweeps."""
    variants = [Variant("clean", None, None, (ALL_IMAGES, *config.regions))]
    for region in config.regions:
        blur = make_perturbation("region_blur", sigma=config.sigma, region=region, seed=config.seed)
        variants.append(Variant(f"blur:{region}", blur, region, (region,)))
    blur_all = make_perturbation("region_blur", sigma=config.sigma, region="All", seed=config.seed)
    variants.append(Variant("blur:All", blur_all, "All", (ALL_IMAGES,)))
    for level in config.sweep_levels if config.sweep else []:
        params = {"sigma": level} if config.sweep == "sigma" else {"sigma": config.sigma, "fraction": level}
        for region in [*config.regions, "All"]:
            perturbation = make_perturbation("region_blur", region=region, seed=config.seed, **params)
            subset = ALL_IMAGES if region == "All" else region
            variants.append(Variant(f"{config.sweep}={level:g}:{region}", perturbation, region, (subset,)))
    return variants


def mask_provider(config: RegionBlurConfig) -> MaskProvider:
    """BiSeNet masks or a folder of label maps, as the config says."""
    if config.masks == "parser":
        return ParserMasks(device=config.device, input_size=config.parser_input_size)
    return FolderMasks(config.masks, config.mask_convention)


def run_region_blur(config: RegionBlurConfig) -> ExperimentOutput:
    """Run the engine over every variant and space and turn its cells into the nFD table."""
    source = open_source(config.source)
    notes: list[str] = []
    if len(source) == 0:
        notes.append(f"source {config.source} holds no images: nothing to measure")
        return ExperimentOutput(results_frame([]), notes, {"source": source.manifest()})
    masks = mask_provider(config)
    result = run_engine(source, build_variants(config), config.spaces, masks, engine_config(config))
    notes.extend(engine_notes(result))
    if isinstance(masks, FolderMasks) and masks.missing:
        notes.append(
            f"{len(set(masks.missing))} images had no label map in {config.masks}; left out of regions"
        )
    rows: list[dict[str, Any]] = []
    for space in config.spaces:
        if space in result.space_errors:
            continue
        rows.extend(_space_rows(config, result, space, notes))
    notes.extend(_region_notes(config, result))
    manifest = {
        "source": source.manifest(),
        "source_manifest_hash": source.manifest_hash(),
        "masks": result.masks,
        "spaces": result.spaces,
        "cache": {"hits": result.cache_hits, "misses": result.cache_misses},
        "timings": result.timings,
        "config": asdict(config),
    }
    return ExperimentOutput(results_frame(rows), notes, manifest, result, list(result.decode_skips))


def _region_notes(config: RegionBlurConfig, result: EngineResult) -> list[str]:
    """One line per region that too few masks hold (the region is left out; the run goes on)."""
    loaded = [space for space in config.spaces if space not in result.space_errors]
    if not loaded:
        return []
    notes = []
    for region in config.regions:
        cell = result.cell("clean", loaded[0], region)
        count = 0 if cell is None else cell.n
        if count < 2:
            where = "absent from every mask" if count == 0 else f"present in only {count} image"
            notes.append(f"region {region}: {where}; needs at least 2 images, left out")
    return notes


def engine_notes(result: EngineResult) -> list[str]:
    """Problems the engine met, as report lines: spaces that failed, undecodable files, skipped rows."""
    notes = [
        f"space {space} could not load and was left out: {reason}"
        for space, reason in result.space_errors.items()
    ]
    if result.decode_skips:
        reasons: dict[str, int] = {}
        for _, reason in result.decode_skips:
            reasons[reason] = reasons.get(reason, 0) + 1
        detail = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
        notes.append(f"{len(result.decode_skips)} files were skipped while decoding ({detail})")
    for space, counter in result.feature_skips.items():
        for reason, count in counter.items():
            notes.append(f"space {space}: {count} image passes gave no features ({reason}); left out")
    return notes


def _space_rows(
    config: RegionBlurConfig, result: EngineResult, space: str, notes: list[str]
) -> list[dict[str, Any]]:
    clean_all, blur_all = result.cell("clean", space), result.cell("blur:All", space)
    if clean_all is None or blur_all is None or min(clean_all.n, blur_all.n) < 2:
        clean_n, blurred_n = (0 if cell is None else cell.n for cell in (clean_all, blur_all))
        notes.append(
            f"space {space}: fewer than 2 images with features ({clean_n} clean, {blurred_n} blurred); "
            "no FD computed"
        )
        return []
    reference = fd_between_cells(clean_all, blur_all)
    rows = _fd_rows(space, "All", reference, reference.value, None)
    intervals = _bootstrap(config, result, space, notes)
    low, high = intervals.get(("All", "fd"), (math.nan, math.nan))
    rows[0] = dataclasses.replace(rows[0], ci_low=low, ci_high=high)
    for region in config.regions:
        clean, blurred = result.cell("clean", space, region), result.cell(f"blur:{region}", space, region)
        if clean is None or clean.n < 2:
            continue
        if blurred is None or blurred.n < 2:
            notes.append(
                f"space {space}, region {region}: fewer than 2 blurred images with features; left out"
            )
            continue
        fd = fd_between_cells(clean, blurred)
        region_rows = _fd_rows(space, region, fd, reference.value, intervals)
        rows.extend(region_rows)
    if config.sweep:
        rows.extend(_sweep_rows(config, result, space, reference.value))
    return rows


def _fd_rows(
    space: str, region: str, fd: Any, reference: float, intervals: dict | None
) -> list[dict[str, Any]]:
    n = min(fd.n1 or 0, fd.n2 or 0)
    nfd = fd.value / reference if reference > 0 else math.nan
    ci = intervals or {}

    def interval(metric):
        low, high = ci.get((region, metric), (math.nan, math.nan))
        return {"ci_low": low, "ci_high": high}

    return [
        ResultRow(EXPERIMENT, space, "fd", fd.value, n, variant="blur", region=region, **interval("fd")),
        ResultRow(EXPERIMENT, space, "fd_mean_term", fd.mean_term, n, variant="blur", region=region),
        ResultRow(EXPERIMENT, space, "fd_trace_term", fd.trace_term, n, variant="blur", region=region),
        ResultRow(EXPERIMENT, space, "nfd", nfd, n, variant="blur", region=region, **interval("nfd")),
    ]


def _bootstrap(
    config: RegionBlurConfig, result: EngineResult, space: str, notes: list[str]
) -> dict[tuple[str, str], tuple[float, float]]:
    """Paired percentile bootstrap over images: 95 % intervals for every region's FD and nFD."""
    if config.bootstrap < 2:
        return {}
    clean_all, blur_all = result.cell("clean", space), result.cell("blur:All", space)
    pairs = {"All": (clean_all, blur_all)}
    for region in config.regions:
        clean, blurred = result.cell("clean", space, region), result.cell(f"blur:{region}", space, region)
        if clean is not None and blurred is not None and min(clean.n, blurred.n) >= 2:
            pairs[region] = (clean, blurred)
    if not all(a.reservoir_is_complete and b.reservoir_is_complete for a, b in pairs.values()):
        notes.append(
            f"space {space}: more images than the reservoir holds ({config.reservoir_size}); no bootstrap CI"
        )
        return {}
    # Resample images, not rows: a replicate draws image ids from every image seen in this space, and each
    # set keeps the drawn images it holds (a face space may have lost different images in the clean and
    # the blurred version), exactly as the point estimate was formed.
    universe = sorted({image_id for pair in pairs.values() for cell in pair for image_id in cell.ids})
    rows_of = {
        id(cell): {image_id: i for i, image_id in enumerate(cell.ids)}
        for pair in pairs.values()
        for cell in pair
    }
    rng = np.random.default_rng(config.seed)
    draws = [rng.integers(0, len(universe), len(universe)) for _ in range(config.bootstrap)]

    def replicate(draw: np.ndarray) -> dict[str, float]:
        drawn = [universe[i] for i in draw]
        values = {}
        for region, (clean, blurred) in pairs.items():
            clean_rows = [rows_of[id(clean)][i] for i in drawn if i in rows_of[id(clean)]]
            blurred_rows = [rows_of[id(blurred)][i] for i in drawn if i in rows_of[id(blurred)]]
            if min(len(clean_rows), len(blurred_rows)) < 2:
                continue
            values[region] = frechet_distance_resampled(
                clean.features, np.array(clean_rows), blurred.features, np.array(blurred_rows)
            ).value
        return values

    samples: dict[tuple[str, str], list[float]] = {}
    for values in map_small_linalg(replicate, draws):
        for region, value in values.items():
            samples.setdefault((region, "fd"), []).append(value)
            if values.get("All", 0) > 0:
                samples.setdefault((region, "nfd"), []).append(value / values["All"])
    return {key: tuple(np.percentile(vals, [2.5, 97.5])) for key, vals in samples.items() if len(vals) >= 2}


def _sweep_rows(
    config: RegionBlurConfig, result: EngineResult, space: str, reference: float
) -> list[dict[str, Any]]:
    rows = []
    for level in config.sweep_levels:
        for region in [*config.regions, "All"]:
            subset = ALL_IMAGES if region == "All" else region
            clean = result.cell("clean", space, subset)
            swept = result.cell(f"{config.sweep}={level:g}:{region}", space, subset)
            if clean is None or swept is None or min(clean.n, swept.n) < 2:
                continue
            fd = fd_between_cells(clean, swept)
            n = min(fd.n1 or 0, fd.n2 or 0)
            variant = f"{config.sweep}_sweep"
            for metric, value in (("fd", fd.value), ("nfd", fd.value / reference)):
                rows.append(
                    ResultRow(
                        EXPERIMENT,
                        space,
                        metric,
                        value,
                        n,
                        variant=variant,
                        region=region,
                        level=float(level),
                    )
                )
    return rows
