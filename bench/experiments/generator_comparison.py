"""Generator comparison (METHODS §3): several generated sets against one reference, in every feature space.

Per (generator, space): FD with its mean and trace terms and its basic bootstrap interval, KID (METHODS §2),
precision/recall, density/coverage, and CMMD in the CLIP ViT-L/14-336 space (METHODS §9). Per space and
pair of generators: the paired-bootstrap interval of FD(G_a, R) − FD(G_b, R) and the fraction of
replicates that keep the observed order; a pair whose interval contains 0 is "not distinguishable at this
n". Between spaces: Kendall τ of the generators' FDs, with a bootstrap interval.

One bootstrap serves all of it: a replicate draws the reference's image ids once and each generated set's
ids on its own (one group per set), and every FD of the replicate — each generator, each space — rests on
those draws, so differences and τ are paired through them (for one pair that is the three groups R, G_a,
G_b of METHODS §3). A space that lost some images (no face found) keeps, in each replicate, the drawn ids
it has features for.

Rows (bench/schema.py): `variant` is the generator. Pair rows (`fd_difference`, `fd_order_kept`) name the
second generator in `region`; rank-agreement rows (`kendall_tau`) name the second space in `region`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
from scipy.stats import kendalltau

from bench.device import resolve_device
from bench.engine import EngineConfig, Variant, run_engine
from bench.experiments.common import EngineSettings, ResultRow, engine_config, results_frame
from bench.experiments.region_blur import OFFLINE_SPACES, ExperimentOutput
from bench.experiments.runner import register_experiment
from bench.metrics import (
    DensityCoverage,
    FrechetResult,
    KIDResult,
    PrecisionRecall,
    density_coverage,
    frechet_distance,
    frechet_distance_resampled,
    kernel_inception_distance,
    precision_recall,
)
from bench.metrics.bootstrap import BootstrapEstimate, Interval, bootstrap, interval_from_replicates
from bench.metrics.cmmd import CMMDResult, cmmd
from bench.sources import ImageSource, open_source
from bench.stats import FeatureError, GaussianStats, as_float64_features

EXPERIMENT = "generator_comparison"
METRICS = ("fd", "kid", "precision", "recall", "density", "coverage", "cmmd", "cmmd_unbiased")
DEFAULT_METRICS = ("fd", "kid", "precision", "recall", "density", "coverage")
FEATURE_METRICS = frozenset(METRICS) - {"fd"}  # metrics that need every feature row, not statistics
CMMD_SPACE = "clip-vit-l14-336"
STANDARDISED_FAMILIES = ("spectral", "pixels")  # KID on the reference's per-dimension z-scores (METHODS §2)
NOT_DISTINGUISHABLE = "not distinguishable at this n"
NO_INTERVAL = "no interval"
CLEAN = "clean"


@dataclass
class GeneratorComparisonConfig(EngineSettings):
    """Settings of a generator comparison."""

    reference: str = ""
    generators: dict[str, str] = field(default_factory=dict)  # name -> source spec
    spaces: list[str] = field(default_factory=lambda: list(OFFLINE_SPACES))
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    kid_subsets: int = 100
    bootstrap: int = 200  # replicates for every interval (0: none)
    spectral: bool = False  # add a spectral section: reference against every generator
    spectral_crop: int | None = None  # centre-crop every image to this side (else group by size)
    reservoir_size: int = 5000


# ------------------------------------------------------------------------------------------ the inputs
@dataclass(frozen=True)
class FeatureSet:
    """One set in one space: its statistics and, when every row was kept, the rows and their image ids."""

    stats: GaussianStats
    ids: tuple[str, ...] = ()
    features: np.ndarray | None = None

    @classmethod
    def from_cell(cls, cell: Any) -> FeatureSet | None:
        """From an engine cell (None when it holds no image); rows only when the reservoir kept them all."""
        if cell is None or cell.stats is None or not cell.n:
            return None
        if not cell.reservoir_is_complete:
            return cls(cell.stats)
        return cls(cell.stats, tuple(cell.ids), np.asarray(cell.features))

    @classmethod
    def from_features(
        cls, features: Any, ids: Sequence[str] | None = None, name: str = "features"
    ) -> FeatureSet:
        """From an (n, d) array of features (ids default to row numbers)."""
        rows = as_float64_features(features, name=name)
        labels = tuple(ids) if ids is not None else tuple(f"{i:06d}" for i in range(rows.shape[0]))
        if len(labels) != rows.shape[0]:
            raise FeatureError(f"{name}: {len(labels)} ids for {rows.shape[0]} feature rows")
        return cls(GaussianStats.from_features(rows), labels, rows)

    @property
    def n(self) -> int | None:
        """Images summarised (None for statistics files that do not record it)."""
        return self.stats.n

    @property
    def has_rows(self) -> bool:
        """True when every feature row is at hand (bootstrap, KID, P/R, D/C, CMMD need them)."""
        return self.features is not None


@dataclass
class ExtractedSet:
    """One input set: what it is, its features per space, and what was skipped on the way."""

    label: str
    description: str
    kind: str  # "images", "statistics" or "features"
    spaces: dict[str, FeatureSet]
    images: int | None = None  # candidate images the source listed
    decode_skips: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    feature_skips: dict[str, dict[str, int]] = field(default_factory=dict)  # space → reason → images
    space_errors: dict[str, str] = field(default_factory=dict)
    cache_hits: int = 0
    cache_misses: int = 0
    damaged_cache_entries: int = 0
    seconds: float = 0.0
    manifest_hash: str = ""

    @property
    def served_from_cache(self) -> bool:
        """True when every feature came from the cache (nothing was extracted)."""
        return self.kind == "images" and self.cache_hits > 0 and self.cache_misses == 0

    def skip_counts(self) -> dict[str, int]:
        """Bad files left out, by reason."""
        counts: dict[str, int] = {}
        for _, reason in self.decode_skips:
            counts[reason] = counts.get(reason, 0) + 1
        return dict(sorted(counts.items()))

    def notes(self) -> list[str]:
        """What a reader should know about this set: skipped files, images without features, failed spaces."""
        lines = []
        if self.decode_skips:
            detail = ", ".join(f"{count} {reason}" for reason, count in self.skip_counts().items())
            lines.append(f"{self.label}: {len(self.decode_skips)} file(s) skipped ({detail})")
        for space, reasons in self.feature_skips.items():
            for reason, count in reasons.items():
                lines.append(
                    f"{self.label}, space {space}: {count} image(s) gave no features ({reason}); left out"
                )
        for space, error in self.space_errors.items():
            lines.append(f"{self.label}: space {space} could not load: {error}")
        if self.damaged_cache_entries:
            lines.append(
                f"{self.label}: {self.damaged_cache_entries} damaged cache entries discarded and recomputed"
            )
        return lines

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (without features)."""
        return {
            "label": self.label,
            "input": self.description,
            "kind": self.kind,
            "images_listed": self.images,
            "n": {space: features.n for space, features in self.spaces.items()},
            "skipped_files": self.skip_counts(),
            "skipped_file_list": [{"file": name, "reason": reason} for name, reason in self.decode_skips],
            "images_without_features": self.feature_skips,
            "space_errors": self.space_errors,
            "served_from_cache": self.served_from_cache,
            "cache": {"hits": self.cache_hits, "misses": self.cache_misses},
            "seconds": self.seconds,
        }


def extract_set(
    label: str, source: ImageSource, spaces: Sequence[str], config: EngineConfig, description: str = ""
) -> ExtractedSet:
    """Run the engine on the clean images of `source` in every space; keep each space's features."""
    result = run_engine(source, [Variant(CLEAN)], list(spaces), None, config)
    found = {space: FeatureSet.from_cell(result.cell(CLEAN, space)) for space in spaces}
    feature_skips = {
        space: dict(counter) for (variant, space), counter in result.feature_skips.items() if variant == CLEAN
    }
    return ExtractedSet(
        label=label,
        description=description or label,
        kind="images",
        spaces={space: features for space, features in found.items() if features is not None},
        images=result.images_total,
        decode_skips=[tuple(item) for item in result.decode_skips],
        feature_skips=feature_skips,
        space_errors=dict(result.space_errors),
        cache_hits=result.cache_hits,
        cache_misses=result.cache_misses,
        damaged_cache_entries=len(result.cache_damaged),
        seconds=float(result.timings.get("total", 0.0)),
        manifest_hash=source.manifest_hash(),
    )


# ------------------------------------------------------------------------------------------ the results
@dataclass
class Distance:
    """Every metric of one generated set against the reference in one space."""

    space: str
    generator: str
    fd: FrechetResult
    fd_interval: BootstrapEstimate | None = None
    kid: KIDResult | None = None
    precision_recall: PrecisionRecall | None = None
    density_coverage: DensityCoverage | None = None
    cmmd: CMMDResult | None = None

    @property
    def n(self) -> int:
        """The smaller of the two set sizes (0 when a statistics file does not record it)."""
        return min(self.fd.n1 or 0, self.fd.n2 or 0)

    def diagnostics(self) -> tuple[str, ...]:
        """n of each set and the FD's diagnostics, as short phrases for the results table."""
        sizes = f"n_reference = {self.fd.n1}, n_{self.generator} = {self.fd.n2}, d = {self.fd.d}"
        return (sizes, *self.fd.notes())

    def rows(self, experiment: str = EXPERIMENT) -> list[ResultRow]:
        """The tidy rows of every metric computed."""

        def row(metric: str, value: float, *notes: str, n: int = self.n, **details: Any) -> ResultRow:
            return ResultRow(
                experiment, self.space, metric, value, n, variant=self.generator, region="All",
                diagnostics=notes, **details,
            )  # fmt: skip

        fd = self.fd
        rows = [
            row("fd", fd.value, *self.diagnostics()).with_bootstrap(self.fd_interval),
            row("fd_mean_term", fd.mean_term),
            row("fd_trace_term", fd.trace_term),
        ]
        if self.kid is not None:
            fields = {"variant": self.generator, "region": "All", **self.kid.row_fields()}
            rows.append(ResultRow(experiment, self.space, "kid", **fields).with_bootstrap(self.kid.bootstrap))
        if self.precision_recall is not None:
            rule = self.precision_recall.notes()
            rows += [row(m, getattr(self.precision_recall, m), *rule) for m in ("precision", "recall")]
        if self.density_coverage is not None:
            rule = self.density_coverage.notes()
            rows += [row(m, getattr(self.density_coverage, m), *rule) for m in ("density", "coverage")]
        if self.cmmd is not None:
            kernel = f"RBF σ = {self.cmmd.sigma:g}, ×{self.cmmd.scale:g}"
            rows.append(row("cmmd", self.cmmd.value, f"biased V-statistic (the authors' form), {kernel}"))
            rows.append(row("cmmd_unbiased", self.cmmd.unbiased, f"unbiased U-statistic, {kernel}"))
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form: FD with its terms, diagnostics and interval, and every other metric computed."""
        record: dict[str, Any] = {"fd": self.fd.to_dict()}
        if self.fd_interval is not None:
            record["fd"]["interval"] = self.fd_interval.to_dict()
        if self.kid is not None:
            record["kid"] = self.kid.to_dict()
        if self.precision_recall is not None:
            record["precision_recall"] = asdict(self.precision_recall)
        if self.density_coverage is not None:
            record["density_coverage"] = asdict(self.density_coverage)
        if self.cmmd is not None:
            record["cmmd"] = self.cmmd.to_dict()
        return record


def pair_verdict(first: str, second: str, difference: float, low: float, high: float) -> str:
    """THE rule for a pair of generators: the one with the smaller FD is closer, unless the interval
    [low, high] of FD(first) − FD(second) holds 0: then this n cannot tell them apart."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return NO_INTERVAL
    if low <= 0.0 <= high:
        return NOT_DISTINGUISHABLE
    return f"{first if difference < 0 else second} closer"


@dataclass(frozen=True)
class PairDifference:
    """FD(first, R) − FD(second, R) in one space, with its paired-bootstrap interval."""

    space: str
    first: str
    second: str
    estimate: BootstrapEstimate
    n: int

    @property
    def order_kept(self) -> float:
        """Fraction of replicates whose difference has the observed sign (NaN without replicates)."""
        replicates = self.estimate.replicates
        if replicates.size == 0 or self.estimate.estimate == 0:
            return math.nan
        return float(np.mean(np.sign(replicates) == np.sign(self.estimate.estimate)))

    @property
    def verdict(self) -> str:
        """Which generator is closer to the reference, or that this n cannot tell (`pair_verdict`)."""
        interval = self.estimate.interval
        return pair_verdict(self.first, self.second, self.estimate.estimate, interval.low, interval.high)

    @property
    def distinguishable(self) -> bool | None:
        """False when the interval contains 0 (None without an interval)."""
        verdict = self.verdict
        return None if verdict == NO_INTERVAL else verdict != NOT_DISTINGUISHABLE

    def rows(self, experiment: str = EXPERIMENT) -> list[ResultRow]:
        """The difference with its interval, and the fraction of replicates keeping the order."""
        key = {"variant": self.first, "region": self.second}
        what = f"FD({self.first}) − FD({self.second}) against the reference"
        difference = ResultRow(
            experiment, self.space, "fd_difference", self.estimate.estimate, self.n,
            diagnostics=(what, self.verdict), **key,
        )  # fmt: skip
        kept = ResultRow(
            experiment, self.space, "fd_order_kept", self.order_kept, self.n,
            diagnostics=(f"of {self.estimate.valid} replicates",), **key,
        )  # fmt: skip
        return [difference.with_bootstrap(self.estimate), kept]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "space": self.space,
            "first": self.first,
            "second": self.second,
            "difference": self.estimate.to_dict(),
            "order_kept": self.order_kept,
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class RankAgreement:
    """Kendall τ between two spaces' FDs of the generators, with a percentile bootstrap interval.

    τ is bounded and discrete, so its interval is the percentile one (a basic interval can leave [−1, 1]).
    """

    first_space: str
    second_space: str
    tau: float
    interval: Interval
    generators: int
    replicates: int

    def rows(self, experiment: str = EXPERIMENT) -> list[ResultRow]:
        """One `kendall_tau` row (the second space in `region`)."""
        interval = self.interval
        return [
            ResultRow(
                experiment,
                self.first_space,
                "kendall_tau",
                self.tau,
                self.generators,
                region=self.second_space,
                ci_low=interval.low,
                ci_high=interval.high,
                ci_method=interval.label if interval.method != "none" else "",
                diagnostics=(f"{self.generators} generators, {self.replicates} bootstrap replicates",),
            )
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "spaces": [self.first_space, self.second_space],
            "tau": self.tau,
            "ci_low": self.interval.low,
            "ci_high": self.interval.high,
            "ci_method": self.interval.label,
        }


@dataclass
class ComparisonOutcome:
    """Distances per (generator, space), pair differences, rank agreement, and notes."""

    distances: list[Distance]
    pairs: list[PairDifference]
    agreements: list[RankAgreement]
    notes: list[str]

    def rows(self, experiment: str = EXPERIMENT) -> list[ResultRow]:
        """Every result as a tidy row."""
        rows = [row for distance in self.distances for row in distance.rows(experiment)]
        rows += [row for pair in self.pairs for row in pair.rows(experiment)]
        rows += [row for agreement in self.agreements for row in agreement.rows(experiment)]
        return rows


# ------------------------------------------------------------------------------------------ computing
def spaces_for(spaces: Sequence[str], metrics: Sequence[str]) -> list[str]:
    """The spaces to extract: the ones asked for, plus CMMD's CLIP space when CMMD is asked for."""
    chosen = list(dict.fromkeys(spaces))
    if {"cmmd", "cmmd_unbiased"} & set(metrics) and CMMD_SPACE not in chosen:
        chosen.append(CMMD_SPACE)
    return chosen


def compare_sets(
    reference: ExtractedSet,
    generated: Mapping[str, ExtractedSet],
    spaces: Sequence[str],
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    num_boot: int = 200,
    seed: int = 0,
    kid_subsets: int = 100,
    method: str = "auto",
    device: str | None = None,
) -> ComparisonOutcome:
    """Every metric of every generated set against the reference in every space, with intervals.

    `device` is where CMMD's kernel blocks are computed (default: CUDA when present, else the CPU).
    """
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    settings = _MetricSettings(tuple(metrics), seed, num_boot, kid_subsets, method, device)
    notes: list[str] = []
    if {"cmmd", "cmmd_unbiased"} & set(metrics) and CMMD_SPACE not in spaces:
        notes.append(f"CMMD is computed in space {CMMD_SPACE} only, which is not among {list(spaces)}")
    distances: list[Distance] = []
    for name, generated_set in generated.items():
        for space in spaces:
            ref, gen = reference.spaces.get(space), generated_set.spaces.get(space)
            if _too_few(ref) or _too_few(gen):
                if space not in reference.space_errors and space not in generated_set.space_errors:
                    notes.append(
                        f"generator {name}, space {space}: fewer than 2 images with features; skipped"
                    )
                continue
            distances.append(_distance(space, name, ref, gen, settings, notes))
    pairs: list[PairDifference] = []
    agreements: list[RankAgreement] = []
    if num_boot > 0 and distances:
        pairs, agreements = _bootstrap_all(reference, generated, distances, num_boot, seed, notes)
    elif len(generated) > 1:
        agreements = _rank_agreements(distances, {}, None)
    return ComparisonOutcome(distances, pairs, agreements, notes)


def _too_few(features: FeatureSet | None) -> bool:
    """No set, or one known to hold fewer than the 2 images an FD needs."""
    return features is None or (features.n is not None and features.n < 2)


@dataclass(frozen=True)
class _MetricSettings:
    """What to compute for each (generator, space) and how: metrics, seed, replicates, KID subsets, FD
    method, and the device of CMMD's kernel blocks."""

    metrics: tuple[str, ...]
    seed: int
    num_boot: int
    kid_subsets: int
    method: str
    device: str | None


def _distance(
    space: str, name: str, ref: FeatureSet, gen: FeatureSet, settings: _MetricSettings, notes: list[str]
) -> Distance:
    """FD from the rows when both sets have them (exact low-rank path when n ≤ d), else from statistics;
    then the feature metrics asked for (they need the rows)."""
    both_rows = ref.has_rows and gen.has_rows
    first, second = (ref.features, gen.features) if both_rows else (ref.stats, gen.stats)
    distance = Distance(space, name, frechet_distance(first, second, method=settings.method))
    wanted = [metric for metric in settings.metrics if metric in FEATURE_METRICS]
    if {"cmmd", "cmmd_unbiased"} & set(wanted) and space != CMMD_SPACE:
        wanted = [metric for metric in wanted if not metric.startswith("cmmd")]
    if not wanted:
        return distance
    if not both_rows:
        notes.append(
            f"generator {name}, space {space}: {', '.join(wanted)} need every feature row, and a set was "
            "given as statistics or holds more images than the reservoir keeps; left out"
        )
        return distance
    real, fake = ref.features, gen.features
    if "kid" in wanted:
        distance.kid = kernel_inception_distance(
            real,
            fake,
            num_subsets=settings.kid_subsets,
            seed=settings.seed,
            standardize=_space_family(space) in STANDARDISED_FAMILIES,
            num_boot=settings.num_boot,
        )
    if {"precision", "recall"} & set(wanted) and min(len(real), len(fake)) > 3:
        distance.precision_recall = precision_recall(real, fake)
    if {"density", "coverage"} & set(wanted) and min(len(real), len(fake)) > 5:
        distance.density_coverage = density_coverage(real, fake)
    if {"cmmd", "cmmd_unbiased"} & set(wanted):
        distance.cmmd = cmmd(real, fake, device=resolve_device(settings.device))
    return distance


def _space_family(space: str) -> str:
    """The registered space's family; "" for a label of features given directly (no registered space)."""
    import feature_spaces

    try:
        return feature_spaces.get(space).spec.family
    except feature_spaces.UnknownSpaceError:
        return ""


class _Resampler:
    """Maps a draw of one set's ids to row indices of that set in each space (ids it lacks are dropped)."""

    def __init__(self, extracted: ExtractedSet, spaces: Sequence[str]) -> None:
        universe = sorted(
            {i for space in spaces if space in extracted.spaces for i in extracted.spaces[space].ids}
        )
        self.size = len(universe)
        self.rows: dict[str, np.ndarray] = {}
        for space in spaces:
            features = extracted.spaces.get(space)
            if features is None or not features.has_rows:
                continue
            position = {image_id: row for row, image_id in enumerate(features.ids)}
            self.rows[space] = np.array([position.get(image_id, -1) for image_id in universe], dtype=np.int64)

    def rows_of(self, space: str, draw: np.ndarray) -> np.ndarray:
        rows = self.rows[space][draw]
        return rows[rows >= 0]


def _fd_key(space: str, generator: str) -> str:
    return f"fd\x1f{space}\x1f{generator}"


def _difference_key(space: str, first: str, second: str) -> str:
    return f"difference\x1f{space}\x1f{first}\x1f{second}"


def _bootstrap_all(
    reference: ExtractedSet,
    generated: Mapping[str, ExtractedSet],
    distances: list[Distance],
    num_boot: int,
    seed: int,
    notes: list[str],
) -> tuple[list[PairDifference], list[RankAgreement]]:
    """One paired bootstrap for every FD, every pair difference and every τ (see the module docstring)."""
    spaces = list(dict.fromkeys(distance.space for distance in distances))
    by_key = {(d.space, d.generator): d for d in distances}
    resamplable = [
        d
        for d in distances
        if reference.spaces[d.space].has_rows and generated[d.generator].spaces[d.space].has_rows
    ]
    if len(resamplable) < len(distances):
        left = sorted({f"{d.generator}/{d.space}" for d in distances if d not in resamplable})
        notes.append(
            f"no bootstrap interval for {', '.join(left)}: a set was given as statistics or holds more "
            "images than the reservoir keeps"
        )
    if not resamplable:
        return [], _rank_agreements(distances, {}, None)
    groups = {"reference": _Resampler(reference, spaces)}
    names = list(dict.fromkeys(d.generator for d in resamplable))
    groups.update({f"generator\x1f{name}": _Resampler(generated[name], spaces) for name in names})
    sizes = {group: resampler.size for group, resampler in groups.items()}
    pairs_by_space = {
        space: [
            (a, b)
            for a, b in combinations(
                [n for n in names if (space, n) in by_key and by_key[(space, n)] in resamplable], 2
            )
        ]
        for space in spaces
    }

    def statistic(draw: dict[str, np.ndarray]) -> dict[str, float]:
        identity = all(np.array_equal(rows, np.arange(sizes[group])) for group, rows in draw.items())
        values: dict[str, float] = {}
        for distance in resamplable:
            space, name = distance.space, distance.generator
            if identity:
                values[_fd_key(space, name)] = distance.fd.value
                continue
            ref_rows = groups["reference"].rows_of(space, draw["reference"])
            gen_rows = groups[f"generator\x1f{name}"].rows_of(space, draw[f"generator\x1f{name}"])
            if min(ref_rows.size, gen_rows.size) < 2:
                continue
            values[_fd_key(space, name)] = frechet_distance_resampled(
                reference.spaces[space].features, ref_rows, generated[name].spaces[space].features, gen_rows
            ).value
        for space, space_pairs in pairs_by_space.items():
            for a, b in space_pairs:
                first, second = values.get(_fd_key(space, a)), values.get(_fd_key(space, b))
                if first is not None and second is not None:
                    values[_difference_key(space, a, b)] = first - second
        return values

    estimates = bootstrap(statistic, sizes, num_boot=num_boot, seed=seed)
    for distance in resamplable:
        distance.fd_interval = estimates.get(_fd_key(distance.space, distance.generator))
    pairs = [
        PairDifference(
            space,
            a,
            b,
            estimates[_difference_key(space, a, b)],
            min(by_key[(space, a)].n, by_key[(space, b)].n),
        )
        for space, space_pairs in pairs_by_space.items()
        for a, b in space_pairs
        if _difference_key(space, a, b) in estimates
    ]
    return pairs, _rank_agreements(resamplable, estimates, names)


def _rank_agreements(
    distances: list[Distance], estimates: Mapping[str, BootstrapEstimate], names: Sequence[str] | None
) -> list[RankAgreement]:
    """Kendall τ-b between every two spaces' FDs over the generators both rank, with its interval."""
    spaces = list(dict.fromkeys(distance.space for distance in distances))
    values = {(d.space, d.generator): d.fd.value for d in distances}
    agreements = []
    for first, second in combinations(spaces, 2):
        shared = [
            g
            for g in dict.fromkeys(d.generator for d in distances)
            if (first, g) in values and (second, g) in values
        ]
        if len(shared) < 2:
            continue
        tau = float(
            kendalltau([values[(first, g)] for g in shared], [values[(second, g)] for g in shared])[0]
        )
        replicates = _tau_replicates(estimates, first, second, shared) if names is not None else np.empty(0)
        interval = (
            interval_from_replicates(tau, replicates, method="percentile")
            if replicates.size >= 2 and math.isfinite(tau)
            else Interval(math.nan, math.nan, "none", math.nan)
        )
        agreements.append(RankAgreement(first, second, tau, interval, len(shared), int(replicates.size)))
    return agreements


def _tau_replicates(
    estimates: Mapping[str, BootstrapEstimate], first: str, second: str, generators: Sequence[str]
) -> np.ndarray:
    """τ of each replicate, from the replicated FDs of both spaces (same draws, so paired)."""
    keys = [(_fd_key(first, g), _fd_key(second, g)) for g in generators]
    if not all(a in estimates and b in estimates for a, b in keys):
        return np.empty(0)
    series = [(estimates[a].replicates, estimates[b].replicates) for a, b in keys]
    count = min(min(len(x), len(y)) for x, y in series)
    if any(len(x) != count or len(y) != count for x, y in series):
        return np.empty(0)  # some replicates undefined: they no longer line up draw by draw
    taus = [
        kendalltau([x[index] for x, _ in series], [y[index] for _, y in series])[0] for index in range(count)
    ]
    values = np.asarray(taus, dtype=np.float64)
    return values[np.isfinite(values)]


# ------------------------------------------------------------------------------------------ the experiment
def run_generator_comparison(config: GeneratorComparisonConfig) -> ExperimentOutput:
    """Extract every set once, then every metric per (generator, space), pair differences and τ."""
    unknown = sorted(set(config.metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    if not config.generators:
        raise ValueError("a generator comparison needs at least one entry in `generators`")
    spaces = spaces_for(config.spaces, config.metrics)
    settings = engine_config(config)
    reference = extract_set(
        "reference", open_source(config.reference), spaces, _labelled(settings, "reference")
    )
    generated = {
        name: extract_set(name, open_source(spec), spaces, _labelled(settings, name))
        for name, spec in config.generators.items()
    }
    outcome = compare_sets(
        reference,
        generated,
        spaces,
        config.metrics,
        num_boot=config.bootstrap,
        seed=config.seed,
        kid_subsets=config.kid_subsets,
        device=config.device,
    )
    notes = [note for extracted in (reference, *generated.values()) for note in extracted.notes()]
    notes = list(dict.fromkeys(notes + outcome.notes))
    skipped = [
        (f"{extracted.label}/{name}", reason)
        for extracted in (reference, *generated.values())
        for name, reason in extracted.decode_skips
    ]
    sources = {"reference": reference.manifest_hash, **{n: s.manifest_hash for n, s in generated.items()}}
    manifest: dict[str, Any] = {"sources": sources, "config": asdict(config)}
    return ExperimentOutput(results_frame(outcome.rows()), notes, manifest, skipped_files=skipped)


def _labelled(settings: EngineConfig, label: str) -> EngineConfig:
    return dataclasses.replace(settings, progress_label=label)


register_experiment(EXPERIMENT, GeneratorComparisonConfig, run_generator_comparison)
