"""Region-blur sensitivity (the F?D protocol of Kabra & Balakrishnan 2023, METHODS §3).

For each feature space s and face region r, FD_s between clean images and their copies with region r
blurred, normalised by FD_s between the same clean images and their copies blurred whole:

- conditional nFD (default, metric `nfd`): on X_r, the images holding region r (at least
  `min_region_fraction` of their pixels): FD(X_r, B_r X_r) / FD(X_r, B_All X_r);
- population nFD (the paper's literal form, metric `nfd_population`): on all images, B_r leaving images
  without r unchanged: FD(X, B_r X) / FD(X, B_All X).

Every FD is paired — both sets hold the same image ids, clean image i against its own blurred copy — and
the numerator and denominator of each ratio rest on the same ids (engine cohorts). Face spaces detect and
align on the clean image once; an id whose blurred copy gives no feature leaves both sets and is counted
as `lost`. Intervals come from the paired bootstrap over image ids (basic by default). Optional sweeps of
σ or of the fraction of images blurred give nFD curves.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bench.engine import CLEAN, Cohort, CohortCells, EngineResult, Member, Variant, run_engine
from bench.engine.masking import FolderMasks, MaskProvider, ParserMasks
from bench.experiments.common import (
    EngineSettings,
    ExperimentOutput,
    ResultRow,
    engine_config,
    engine_notes,
    fd_between_cells,
    fd_diagnostics,
    results_frame,
)
from bench.experiments.samples import region_blur_samples
from bench.masks import DEFAULT_MIN_REGION_FRACTION, REGIONS
from bench.metrics.bootstrap import INTERVAL_METHODS, BootstrapEstimate, bootstrap
from bench.metrics.frechet import frechet_distance_resampled
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
SWEEPS = ("sigma", "fraction")


@dataclass
class RegionBlurConfig(EngineSettings):
    """Settings of a region-blur run (every field can be set from a TOML table)."""

    source: str = "dcgan-faces:count=500,seed=0"
    spaces: list[str] = field(default_factory=lambda: list(OFFLINE_SPACES))
    regions: list[str] = field(default_factory=lambda: list(DEFAULT_REGIONS))
    masks: str = "parser"  # "parser" (BiSeNet) or a folder of label-map PNGs
    mask_convention: str = "celebamask-hq"  # label numbering of a mask folder
    parser_input_size: int = 512
    min_region_fraction: float = DEFAULT_MIN_REGION_FRACTION  # a region is present above this area share
    sigma: float = 100.0  # blur σ at 512² (kernel 111); scaled with the image side
    bootstrap: int = 200
    interval: str = "basic"  # "basic" (default), "bca" or "percentile"
    sweep: str | None = None  # None, "sigma" or "fraction"
    sweep_levels: list[float] = field(default_factory=list)
    samples: int = 4  # images shown clean, with their mask and blurred, in the report (0: none)
    heatmap_reference: str | None = None  # a reference set: add heatmaps and their region agreement
    heatmap_images: int = 64  # how many of the source's images get a heatmap

    def __post_init__(self) -> None:
        unknown = [region for region in self.regions if region not in REGIONS or region == "All"]
        if unknown:
            known = [name for name in REGIONS if name != "All"]
            raise ValueError(f"unknown region(s) {unknown}; choose from {known} (All is always included)")
        if self.sweep not in (None, *SWEEPS):
            raise ValueError(f"sweep must be 'sigma' or 'fraction', got {self.sweep!r}")
        if self.sweep and not self.sweep_levels:
            raise ValueError(f"a {self.sweep} sweep needs sweep_levels")
        if self.sweep_levels and not self.sweep:
            raise ValueError(f"sweep_levels {self.sweep_levels} given without sweep = 'sigma' or 'fraction'")
        if self.sweep == "fraction" and any(not 0 <= level <= 1 for level in self.sweep_levels):
            raise ValueError(f"fraction sweep levels must lie in [0, 1], got {self.sweep_levels}")
        if self.sweep == "sigma" and any(level < 0 for level in self.sweep_levels):
            raise ValueError(f"sigma sweep levels must be ≥ 0, got {self.sweep_levels}")
        if not 0 <= self.min_region_fraction < 1:
            raise ValueError(f"min_region_fraction must lie in [0, 1), got {self.min_region_fraction}")
        if self.interval not in INTERVAL_METHODS:
            raise ValueError(f"interval must be one of {INTERVAL_METHODS}, got {self.interval!r}")
        if self.bootstrap < 0 or self.bootstrap == 1:
            raise ValueError(
                f"bootstrap must be 0 (no intervals) or at least 2 replicates, got {self.bootstrap}"
            )


@dataclass(frozen=True)
class RegionBlurDesign:
    """The run's variants and the cohorts its FDs are paired on."""

    blurred: dict[str, Variant]  # region → B_r, "All" → B_All
    swept: dict[tuple[float, str], Variant]  # (level, region or "All") → sweep variant
    conditional: dict[str, Cohort]  # region → ids holding r: clean, B_r, B_All
    population: dict[str, Cohort]  # region → all ids: clean, B_All, B_r (clean where r is absent)
    whole: Cohort  # clean, B_All on every id
    sweeps: dict[tuple[float, str], Cohort]

    @property
    def variants(self) -> list[Variant]:
        return [CLEAN, *self.blurred.values(), *self.swept.values()]

    @property
    def cohorts(self) -> list[Cohort]:
        return [self.whole, *self.conditional.values(), *self.population.values(), *self.sweeps.values()]


def build_design(config: RegionBlurConfig) -> RegionBlurDesign:
    """Variants (clean, each region blurred, the whole image blurred, sweeps) and their cohorts."""

    def blur(region: str, **params: Any) -> Any:
        return make_perturbation("region_blur", region=region, seed=config.seed, **params)

    blurred = {
        region: Variant(f"blur:{region}", blur(region, sigma=config.sigma), region)
        for region in config.regions
    }
    blurred["All"] = blur_all = Variant("blur:All", blur("All", sigma=config.sigma), "All")
    swept = {}
    for level in config.sweep_levels if config.sweep else []:
        params = {"sigma": level} if config.sweep == "sigma" else {"sigma": config.sigma, "fraction": level}
        for region in [*config.regions, "All"]:
            name = f"{config.sweep}={level:g}:{region}"
            swept[(level, region)] = Variant(name, blur(region, **params), region, level=float(level))
    conditional = {
        region: Cohort.of(f"conditional:{region}", CLEAN, blurred[region], blur_all, within=blurred[region])
        for region in config.regions
    }
    population = {
        region: Cohort(
            f"population:{region}", (Member(CLEAN), Member(blur_all), Member(blurred[region], fallback=CLEAN))
        )
        for region in config.regions
    }
    sweeps = {
        (level, region): Cohort.of(
            f"sweep:{level:g}:{region}", CLEAN, variant, blur_all, within=None if region == "All" else variant
        )
        for (level, region), variant in swept.items()
    }
    whole = Cohort.of("whole", CLEAN, blur_all)
    return RegionBlurDesign(blurred, swept, conditional, population, whole, sweeps)


def mask_provider(config: RegionBlurConfig) -> MaskProvider:
    """BiSeNet masks or a folder of label maps, as the config says."""
    if config.masks == "parser":
        return ParserMasks(device=config.device, input_size=config.parser_input_size)
    return FolderMasks(config.masks, config.mask_convention)


def run_region_blur(config: RegionBlurConfig) -> ExperimentOutput:
    """Run the engine over every variant and space and turn its cohorts into the nFD table."""
    source = open_source(config.source)
    notes: list[str] = []
    if len(source) == 0:
        notes.append(f"source {config.source} holds no images: nothing to measure")
        return ExperimentOutput(results_frame([]), notes, {"source": source.manifest()})
    masks = mask_provider(config)
    design = build_design(config)
    settings = engine_config(config)
    settings.min_region_fraction = config.min_region_fraction
    result = run_engine(source, design.variants, config.spaces, masks, settings, design.cohorts)
    notes.extend(engine_notes(result))
    if result.unlabelled:
        notes.append(
            f"{len(result.unlabelled)} images had no label map in {config.masks}; left out of every region"
        )
    rows: list[ResultRow] = []
    for space in config.spaces:
        if space not in result.space_errors:
            rows.extend(_space_rows(config, design, result, space, notes))
    manifest = {
        "source": source.manifest(),
        "source_manifest_hash": source.manifest_hash(),
        "masks": result.masks,
        "region_presence": {"min_region_fraction": config.min_region_fraction},
        "spaces": result.spaces,
        "cache": {"hits": result.cache_hits, "misses": result.cache_misses},
        "timings": result.timings,
        "config": asdict(config),
    }
    if config.heatmap_reference is not None:
        rows.extend(_heatmap_agreement(config, source, masks, results_frame(rows), notes))
    samples = (
        region_blur_samples(source, masks, design, config.samples, config.min_region_fraction)
        if config.samples
        else []
    )
    return ExperimentOutput(results_frame(rows), notes, manifest, result, list(result.decode_skips), samples)


def _space_rows(
    config: RegionBlurConfig, design: RegionBlurDesign, result: EngineResult, space: str, notes: list[str]
) -> list[ResultRow]:
    whole = result.cohort(design.whole, space)
    if whole is None or whole.n < 2:
        clean_n = 0 if result.cell(CLEAN, space) is None else result.cell(CLEAN, space).n
        paired_n = 0 if whole is None else whole.n
        notes.append(
            f"space {space}: fewer than 2 images with features clean and blurred "
            f"({clean_n} clean, {paired_n} paired); no FD computed"
        )
        return []
    blur_all = design.blurred["All"]
    rows = _ratio_rows(config, space, "All", whole, design.blurred["All"], blur_all, form=None)
    for region in config.regions:
        for form, cohorts in (("conditional", design.conditional), ("population", design.population)):
            cells = result.cohort(cohorts[region], space)
            if cells is None or cells.n < 2:
                if form == "conditional":
                    rows.append(_too_rare_row(space, region, cells, config))
                continue
            rows.extend(_ratio_rows(config, space, region, cells, design.blurred[region], blur_all, form))
    for (level, region), cohort in design.sweeps.items():
        cells = result.cohort(cohort, space)
        if cells is not None and cells.n >= 2:
            rows.extend(
                _sweep_rows(config, space, region, level, cells, design.swept[(level, region)], blur_all)
            )
    return rows


def _ratio_rows(
    config: RegionBlurConfig,
    space: str,
    region: str,
    cells: CohortCells,
    blurred: Variant,
    blur_all: Variant,
    form: str | None,
) -> list[ResultRow]:
    """FD(X, B_r X), its terms, FD(X, B_All X) and their ratio, all on the cohort's ids, with intervals."""
    clean_cell = cells.cell(CLEAN)
    numerator = fd_between_cells(clean_cell, cells.cell(blurred))
    denominator = numerator if blurred == blur_all else fd_between_cells(clean_cell, cells.cell(blur_all))
    ratio = numerator.value / denominator.value if denominator.value > 0 else math.nan
    intervals = _paired_intervals(config, cells, blurred, blur_all, space)
    suffix = "" if form in (None, "conditional") else "_population"
    common = {"n": cells.n, "lost": cells.lost, "variant": "blur", "region": region}
    diagnostics = fd_diagnostics(numerator)
    ratio_notes = (*diagnostics, *fd_diagnostics(denominator))
    if denominator.value <= 0:
        ratio_notes = (*ratio_notes, "the whole-image blur gave FD 0: no ratio")
    rows = [
        ResultRow(
            EXPERIMENT, space, f"fd{suffix}", numerator.value, diagnostics=diagnostics, **common
        ).with_bootstrap(intervals.get("fd")),
        ResultRow(EXPERIMENT, space, f"fd_mean_term{suffix}", numerator.mean_term, **common),
        ResultRow(EXPERIMENT, space, f"fd_trace_term{suffix}", numerator.trace_term, **common),
    ]
    if form is None:  # the All row: the ratio is 1 by definition
        return [*rows, ResultRow(EXPERIMENT, space, "nfd", 1.0, **common)]
    return [
        *rows,
        ResultRow(EXPERIMENT, space, f"fd_all_blurred{suffix}", denominator.value, **common).with_bootstrap(
            intervals.get("fd_all")
        ),
        ResultRow(EXPERIMENT, space, f"nfd{suffix}", ratio, diagnostics=ratio_notes, **common).with_bootstrap(
            intervals.get("nfd")
        ),
    ]


def _paired_intervals(
    config: RegionBlurConfig, cells: CohortCells, blurred: Variant, blur_all: Variant, space: str
) -> dict[str, BootstrapEstimate]:
    """Paired bootstrap over the cohort's image ids: FD(X, B_r X), FD(X, B_All X) and their ratio."""
    if config.bootstrap < 2 or not cells.complete:
        return {}
    clean, numerator, denominator = (cells.features(v) for v in (CLEAN, blurred, blur_all))

    def statistic(draw: dict[str, np.ndarray]) -> dict[str, float]:
        rows = draw["images"]
        if np.unique(rows).size < 2:
            return {}
        fd = frechet_distance_resampled(clean, rows, numerator, rows).value
        fd_all = (
            fd if blurred == blur_all else frechet_distance_resampled(clean, rows, denominator, rows).value
        )
        values = {"fd": fd, "fd_all": fd_all}
        if fd_all > 0:
            values["nfd"] = fd / fd_all
        return values

    estimates = bootstrap(
        statistic, {"images": cells.n}, num_boot=config.bootstrap, seed=config.seed, method=config.interval
    )
    return {name: estimate.within(0.0, math.inf) for name, estimate in estimates.items()}  # FDs, ratios ≥ 0


def _too_rare_row(space: str, region: str, cells: CohortCells | None, config: RegionBlurConfig) -> ResultRow:
    """A 'skipped' row saying the region is held by too few images (a diagnostic, not a crash)."""
    count = 0 if cells is None else cells.n
    share = f"≥ {config.min_region_fraction:.2%} of the pixels"
    reason = f"region {region} present ({share}) in {count} image(s) with features; needs at least 2"
    return ResultRow(
        EXPERIMENT, space, "skipped", math.nan, count, variant="blur", region=region,
        lost=0 if cells is None else cells.lost, diagnostics=(reason,),
    )  # fmt: skip


def _sweep_rows(
    config: RegionBlurConfig,
    space: str,
    region: str,
    level: float,
    cells: CohortCells,
    swept: Variant,
    blur_all: Variant,
) -> list[ResultRow]:
    """FD at one sweep level and its ratio to the whole-image blur, on the same ids."""
    clean = cells.cell(CLEAN)
    fd = fd_between_cells(clean, cells.cell(swept))
    reference = fd_between_cells(clean, cells.cell(blur_all))
    ratio = fd.value / reference.value if reference.value > 0 else math.nan
    note = () if reference.value > 0 else ("the whole-image blur gave FD 0: no ratio",)
    common = {"n": cells.n, "lost": cells.lost, "variant": f"{config.sweep}_sweep", "region": region}
    common["level"] = float(level)
    return [
        ResultRow(EXPERIMENT, space, "fd", fd.value, diagnostics=fd_diagnostics(fd), **common),
        ResultRow(EXPERIMENT, space, "nfd", ratio, diagnostics=(*fd_diagnostics(fd), *note), **common),
    ]


def _heatmap_agreement(
    config: RegionBlurConfig, source: Any, masks: MaskProvider, table: Any, notes: list[str]
) -> list[ResultRow]:
    """Rows of the heatmap view against this run's conditional nFD, in every space that has heatmaps."""
    import feature_spaces
    from bench.sensitivity.agreement import region_agreement

    spaces = [
        s for s in config.spaces if s in feature_spaces.names() and feature_spaces.get(s).spec.spatial_layer
    ]
    left_out = sorted(set(config.spaces) - set(spaces))
    if left_out:
        notes.append(f"no heatmaps in {', '.join(left_out)}: those spaces name no spatial layer")
    rows, found = region_agreement(
        source, open_source(config.heatmap_reference), spaces, masks, table, config.regions,
        min_region_fraction=config.min_region_fraction, limit=config.heatmap_images,
        num_boot=max(config.bootstrap, 2), seed=config.seed, config=engine_config(config),
    )  # fmt: skip
    notes.extend(found)
    return rows
