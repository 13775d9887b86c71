"""The front door for code: statistics of a set, distances between two sets, comparisons of generators.

Three calls, each returning a typed result with ``.to_dict()`` (plain JSON) and ``.to_frame()`` (pandas):

- `stats(source, space)` — Gaussian statistics of a set of images in one feature space;
- `fd(a, b, spaces=...)` — FD (and on request KID, precision/recall, density/coverage, CMMD, a bootstrap
  interval) between two sets in each space;
- `compare(generated, reference, spaces=...)` — several generated sets against one reference, with the
  paired-bootstrap significance of every pair's FD difference and the rank agreement between spaces.

A *set* is anything a user holds: an image folder, a ``.zip``, an ``.npz`` of images, a generator spec
such as ``"dcgan-faces:count=500,seed=0"``, an `ImageSource`, or a uint8 tensor/array of images (N×3×H×W
or N×H×W×3). `fd` also takes what is already reduced: a statistics ``.npz`` (fdbench's, pytorch-fid's or
clean-fid's), a `GaussianStats`, or (n, d) float features (a ``.npy`` file or an array). Image sets are
extracted by the engine, whose cache serves a repeated call without recomputing.

Statistics carry the feature space they were computed in (``provenance["space"]`` and
``provenance["spec_hash"]``, written by `StatsResult.save`); comparing sets from different spaces or
preprocessings is an error naming both specs. pytorch-fid and clean-fid files record no space: they are
assumed to be in the space asked for, and the result says so.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import __version__
from bench.engine import EngineConfig
from bench.errors import UserError
from bench.experiments.common import ResultRow, results_frame
from bench.experiments.generator_comparison import (
    DEFAULT_METRICS,
    FEATURE_METRICS,
    ComparisonOutcome,
    Distance,
    ExtractedSet,
    FeatureSet,
    compare_sets,
    extract_set,
    spaces_for,
)
from bench.sources import ImageSource, resolve_input
from bench.stats import GaussianStats

__all__ = [
    "ComparisonResult",
    "FDResult",
    "StatsResult",
    "compare",
    "fd",
    "stats",
]

GIVEN_SPACE = "given"  # the space label of two sets given as statistics or features of no named space
KEEP_ALL_ROWS_UP_TO = 20_000  # sets up to this size keep every feature row (exact low-rank FD when n ≤ d)


# ------------------------------------------------------------------------------------------ results
@dataclass
class StatsResult:
    """Gaussian statistics of one set in one space, with what was skipped on the way."""

    space: str
    spec_hash: str
    stats: GaussianStats
    input: ExtractedSet

    @property
    def n(self) -> int:
        """Images summarised."""
        return int(self.stats.n or 0)

    def save(self, path: str | Path, format: str = "fdbench") -> Path:
        """Write fdbench's statistics file (with the space and its spec hash), or pytorch-fid's mu/sigma."""
        if format == "pytorch-fid":
            return self.stats.save_pytorch_fid(path)
        if format != "fdbench":
            raise ValueError(f"unknown statistics format {format!r}; choose 'fdbench' or 'pytorch-fid'")
        return self.stats.save(path)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary (no arrays): space, n, d, covariance trace and the input's account."""
        return {
            "space": self.space,
            "spec_hash": self.spec_hash,
            "n": self.n,
            "d": self.stats.dim,
            "cov_trace": float(np.trace(self.stats.cov)) if self.n >= 2 else None,
            "input": self.input.to_dict(),
        }

    def to_frame(self) -> pd.DataFrame:
        """One row: space, spec hash, n, d, covariance trace, images listed and files skipped."""
        summary = self.to_dict()
        return pd.DataFrame(
            [
                {
                    "space": self.space,
                    "spec_hash": self.spec_hash,
                    "n": self.n,
                    "d": self.stats.dim,
                    "cov_trace": summary["cov_trace"],
                    "images_listed": self.input.images,
                    "files_skipped": len(self.input.decode_skips),
                }
            ]
        )


@dataclass
class FDResult:
    """Distances between sets A and B, one `Distance` per space, and what each set went through."""

    a: ExtractedSet
    b: ExtractedSet
    distances: list[Distance]
    notes: list[str] = field(default_factory=list)

    @property
    def spaces(self) -> list[str]:
        """The spaces a distance was computed in."""
        return [distance.space for distance in self.distances]

    def distance(self, space: str | None = None) -> Distance:
        """The distances in `space` (may be omitted when there is only one)."""
        if space is None:
            if len(self.distances) != 1:
                raise ValueError(f"name a space: this result holds {self.spaces}")
            return self.distances[0]
        for distance in self.distances:
            if distance.space == space:
                return distance
        raise KeyError(f"no distance in space {space!r}; this result holds {self.spaces}")

    @property
    def value(self) -> float:
        """The FD, when the result holds one space."""
        return self.distance().fd.value

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form: both sets' accounts, every space's metrics, and the notes."""
        return _json_safe(
            {
                "a": self.a.to_dict(),
                "b": self.b.to_dict(),
                "spaces": {distance.space: distance.to_dict() for distance in self.distances},
                "notes": self.notes,
                "fdbench": __version__,
            }
        )

    def rows(self) -> list[ResultRow]:
        """Every value as a results-table row (experiment "fd", variant "B", the reference is A)."""
        return [row for distance in self.distances for row in distance.rows("fd")]

    def to_frame(self) -> pd.DataFrame:
        """The tidy results table (bench/schema.py columns)."""
        return results_frame(self.rows())


@dataclass
class ComparisonResult:
    """Generated sets against one reference: distances, pair differences, rank agreement, accounts."""

    reference: ExtractedSet
    generated: dict[str, ExtractedSet]
    outcome: ComparisonOutcome
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # spaces, metrics, bootstrap, seed, kid_subsets

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return _json_safe(
            {
                "reference": self.reference.to_dict(),
                "generated": {name: extracted.to_dict() for name, extracted in self.generated.items()},
                "distances": [
                    {"space": d.space, "generator": d.generator, **d.to_dict()}
                    for d in self.outcome.distances
                ],
                "pairs": [pair.to_dict() for pair in self.outcome.pairs],
                "rank_agreement": [agreement.to_dict() for agreement in self.outcome.agreements],
                "notes": self.notes,
                "fdbench": __version__,
            }
        )

    def to_frame(self) -> pd.DataFrame:
        """The tidy results table of the generator_comparison experiment."""
        return results_frame(self.outcome.rows())

    def write_report(self, out_dir: str | Path) -> Path:
        """Results, Markdown and the self-contained HTML report (tables, rankings, significance heatmap)."""
        from bench.experiments.runner import weight_hashes_of
        from bench.reports import build_manifest, write_report

        sets = (self.reference, *self.generated.values())
        manifest = build_manifest(
            config={"experiment": "generator_comparison", "inputs": self._inputs(), **self.settings},
            seeds={"seed": self.settings.get("seed", 0)},
            weights=weight_hashes_of(list(self.settings.get("spaces", []))),
            data_manifest_hash={extracted.label: extracted.manifest_hash for extracted in sets},
            device=self.settings.get("device"),
            timings={f"extract:{extracted.label}": extracted.seconds for extracted in sets},
            notes=self.notes,
        )
        return write_report(self.to_frame(), manifest, out_dir, title="fdbench generator comparison")

    def _inputs(self) -> dict[str, str]:
        return {
            self.reference.label: self.reference.description,
            **{name: extracted.description for name, extracted in self.generated.items()},
        }


# ------------------------------------------------------------------------------------------ the calls
def stats(
    source: Any,
    space: str,
    *,
    batch_size: int = 32,
    device: str | None = None,
    workers: int | None = None,
    jpeg_decoder: str = "pil",
    strict: bool = False,
    progress: bool = False,
    label: str = "set",
) -> StatsResult:
    """Gaussian statistics (n, mean, covariance, float64) of a set of images in one feature space.

    The statistics' provenance records the space, its spec hash, the source's manifest hash, n and the
    files skipped, so a saved file can be compared safely later.

    >>> import bench
    >>> result = bench.stats("dcgan-faces:count=16,seed=0", "pixels-randproj")
    >>> result.n, result.stats.dim
    (16, 512)
    >>> result.stats.provenance["space"]
    'pixels-randproj'
    """
    resolved = _resolve(source, strict)
    if not isinstance(resolved, ImageSource):
        raise UserError(
            f"{_describe(source)}: statistics are computed from images, not from {_kind(resolved)}"
        )
    space_hash = _spec_hash(space)
    extracted = _Extraction(
        batch_size, device, progress, strict=strict, workers=workers, jpeg_decoder=jpeg_decoder
    ).run(label, source, resolved, [space])
    if space in extracted.space_errors:
        raise UserError(f"feature space {space!r} could not load: {extracted.space_errors[space]}")
    features = extracted.spaces.get(space)
    if features is None:
        raise UserError(f"{_describe(source)}: no image gave features in space {space!r}")
    computed = features.stats
    if computed.n is None or computed.n < 2:
        raise UserError(
            f"{_describe(source)}: statistics need at least 2 images with features in {space!r}, "
            f"got {computed.n or 0}"
        )
    provenance = {
        "space": space,
        "spec_hash": space_hash,
        "source": _describe(source),
        "source_manifest_hash": extracted.manifest_hash,
        "n": computed.n,
        "images_total": extracted.images,
        "decode_skips": [{"file": name, "reason": reason} for name, reason in extracted.decode_skips],
        "images_without_features": extracted.feature_skips.get(space, {}),
        "fdbench": __version__,
    }
    result_stats = dataclasses.replace(computed, provenance=provenance)
    return StatsResult(space, space_hash, result_stats, extracted)


def fd(
    a: Any,
    b: Any,
    spaces: str | Sequence[str] | None = None,
    *,
    metrics: Sequence[str] = (),
    bootstrap: int = 0,
    seed: int = 0,
    method: str = "auto",
    kid_subsets: int = 100,
    batch_size: int = 32,
    device: str | None = None,
    workers: int | None = None,
    jpeg_decoder: str = "pil",
    strict: bool = False,
    progress: bool = False,
) -> FDResult:
    """FD between sets `a` and `b` in every space, with its mean and trace terms, n and diagnostics.

    `metrics` adds "kid", "precision", "recall", "density", "coverage", "cmmd" and "cmmd_unbiased" (these
    need every feature row; CMMD is computed in its CLIP space, ``clip-vit-l14-336``, added when asked
    for). `bootstrap` > 0 adds the basic bootstrap interval of every FD (METHODS §2; A and B resampled
    separately). `a` is the reference where a metric is asymmetric (precision/recall, density/coverage,
    KID's standardisation).

    >>> import bench
    >>> result = bench.fd("dcgan-faces:count=16,seed=0", "dcgan-faces:count=16,seed=1", "pixels-randproj")
    >>> distance = result.distance("pixels-randproj")
    >>> distance.fd.n1, distance.fd.n2, distance.fd.value > 0
    (16, 16, True)
    >>> abs(distance.fd.mean_term + distance.fd.trace_term - distance.fd.value) < 1e-9 * distance.fd.value
    True
    >>> list(result.to_frame()["metric"])
    ['fd', 'fd_mean_term', 'fd_trace_term']
    """
    wanted = _metric_list(metrics)
    first, second = _resolve(a, strict), _resolve(b, strict)
    chosen = _choose_spaces(spaces, (a, first), (b, second))
    if chosen != [GIVEN_SPACE]:
        chosen = spaces_for(chosen, wanted)
    keep_rows = bool(bootstrap) or bool(set(wanted) & FEATURE_METRICS)
    extraction = _Extraction(batch_size, device, progress, strict, keep_rows, workers, jpeg_decoder)
    set_a = _prepared("A", a, first, chosen, extraction)
    set_b = _prepared("B", b, second, chosen, extraction)
    notes = _check_compatible(
        {"A": first, "B": second}, chosen, images_involved=set_a.kind == "images" or set_b.kind == "images"
    )
    outcome = compare_sets(
        set_a, {"B": set_b}, chosen, ["fd", *wanted], num_boot=bootstrap, seed=seed, kid_subsets=kid_subsets,
        method=method, device=device,
    )  # fmt: skip
    _raise_when_empty(outcome, (set_a, set_b))
    notes = list(dict.fromkeys(notes + set_a.notes() + set_b.notes() + outcome.notes))
    return FDResult(set_a, set_b, outcome.distances, notes)


def compare(
    generated: Mapping[str, Any],
    reference: Any,
    spaces: str | Sequence[str],
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    bootstrap: int = 200,
    seed: int = 0,
    kid_subsets: int = 100,
    batch_size: int = 32,
    device: str | None = None,
    workers: int | None = None,
    jpeg_decoder: str = "pil",
    strict: bool = False,
    progress: bool = False,
) -> ComparisonResult:
    """Every generated set against `reference` in every space, with the significance of each ranking.

    For every space and pair of generators: the paired-bootstrap interval of FD(G_a, R) − FD(G_b, R) and
    the fraction of replicates that keep the observed order; a pair whose interval contains 0 is "not
    distinguishable at this n" (METHODS §3). Kendall τ between spaces carries an interval too.

    >>> import bench
    >>> result = bench.compare(
    ...     {"same-model": "dcgan-faces:count=16,seed=1", "other-seed": "dcgan-faces:count=16,seed=2"},
    ...     "dcgan-faces:count=16,seed=0",
    ...     "pixels-randproj",
    ...     metrics=["fd"],
    ...     bootstrap=20,
    ... )
    >>> pair = result.outcome.pairs[0]
    >>> pair.first, pair.second, pair.estimate.interval.contains(pair.estimate.estimate)
    ('same-model', 'other-seed', True)
    >>> sorted(set(result.to_frame()["metric"]))
    ['fd', 'fd_difference', 'fd_mean_term', 'fd_order_kept', 'fd_trace_term']
    """
    if not generated:
        raise UserError("compare needs at least one generated set")
    wanted = _metric_list(metrics, default_fd=False)
    chosen = spaces_for([spaces] if isinstance(spaces, str) else list(spaces), wanted)
    if not chosen:
        raise UserError("compare needs at least one feature space")
    keep_rows = bool(bootstrap) or bool(set(wanted) & FEATURE_METRICS)
    extraction = _Extraction(batch_size, device, progress, strict, keep_rows, workers, jpeg_decoder)
    reference_set = _extracted_images("reference", reference, chosen, strict, extraction)
    generated_sets = {
        name: _extracted_images(name, value, chosen, strict, extraction) for name, value in generated.items()
    }
    outcome = compare_sets(
        reference_set, generated_sets, chosen, wanted, num_boot=bootstrap, seed=seed, kid_subsets=kid_subsets,
        device=device,
    )  # fmt: skip
    _raise_when_empty(outcome, (reference_set, *generated_sets.values()))
    notes = [note for extracted in (reference_set, *generated_sets.values()) for note in extracted.notes()]
    settings = {
        "spaces": chosen, "metrics": wanted, "bootstrap": bootstrap, "seed": seed, "kid_subsets": kid_subsets,
        "device": device,
    }  # fmt: skip
    return ComparisonResult(
        reference_set, generated_sets, outcome, list(dict.fromkeys(notes + outcome.notes)), settings
    )


# ------------------------------------------------------------------------------------------ inputs
Resolved = ImageSource | GaussianStats | np.ndarray


def _resolve(value: Any, strict: bool) -> Resolved:
    """Images (an ImageSource), statistics (GaussianStats) or (n, d) float features (an array).

    Float arrays and ``.npy`` files of floats are features; everything else goes through the sources'
    one resolving rule (`bench.sources.resolve_input`).
    """
    import torch

    if isinstance(value, torch.Tensor) and value.dtype != torch.uint8:
        return _features(value.detach().cpu().numpy())
    if isinstance(value, np.ndarray) and value.dtype != np.uint8:
        return _features(value)
    if isinstance(value, (str, Path)):
        path = Path(value).expanduser()
        if path.is_file() and path.suffix.lower() == ".npy":
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            if array.dtype.kind == "f":
                return _features(np.asarray(array), str(path))
    return resolve_input(value, strict=strict)


def _features(array: np.ndarray, where: str = "feature array") -> np.ndarray:
    if array.ndim != 2:
        raise UserError(
            f"{where}: float arrays are read as (n, d) features; this one has shape {array.shape}"
        )
    return np.ascontiguousarray(array, dtype=np.float64)


def _describe(value: Any) -> str:
    if isinstance(value, (str, Path)):
        return str(value)
    if isinstance(value, GaussianStats):
        return "GaussianStats"
    if isinstance(value, ImageSource):
        for attribute in ("root", "path", "list_file", "base"):
            where = getattr(value, attribute, None)
            if where is not None:
                return str(where)
        return type(value).__name__
    shape = getattr(value, "shape", None)
    return f"in-memory {type(value).__name__} {tuple(shape)}" if shape is not None else type(value).__name__


def _kind(resolved: Resolved) -> str:
    if isinstance(resolved, ImageSource):
        return "images"
    return "statistics" if isinstance(resolved, GaussianStats) else "features"


def _declared_space(resolved: Resolved) -> tuple[str | None, str | None]:
    """(space, spec hash) recorded in a statistics file's provenance, or (None, None)."""
    if isinstance(resolved, GaussianStats):
        return resolved.provenance.get("space"), resolved.provenance.get("spec_hash")
    return None, None


def _spec_hash(space: str) -> str:
    import feature_spaces

    return feature_spaces.get(space).spec_hash


def _choose_spaces(spaces: str | Sequence[str] | None, *inputs: tuple[Any, Resolved]) -> list[str]:
    """The spaces asked for; else the one a statistics file records; else "given" for two reduced sets."""
    if spaces is not None:
        chosen = [spaces] if isinstance(spaces, str) else list(dict.fromkeys(spaces))
        if not chosen:
            raise UserError("no feature space given")
        for space in chosen:
            _spec_hash(space)  # an unknown name is an error here, whatever the sets hold
        return chosen
    named = [_declared_space(resolved)[0] for _, resolved in inputs if _declared_space(resolved)[0]]
    if named:
        return [named[0]]
    for value, resolved in inputs:
        if isinstance(resolved, ImageSource):
            raise UserError(
                f"{_describe(value)} holds images: name a feature space (--space NAME, see `fdbench spaces`) "
                "or use --all-offline"
            )
    return [GIVEN_SPACE]


@dataclass(frozen=True)
class _Extraction:
    """How image sets are extracted: engine sizes, device, progress, strictness, and whether every feature
    row is kept (bootstrap and feature metrics need them)."""

    batch_size: int = 32
    device: str | None = None
    progress: bool = False
    strict: bool = False
    keep_rows: bool = False
    workers: int | None = None  # decoding processes (None: the engine's default for the device)
    jpeg_decoder: str = "pil"  # "device": plain JPEGs decoded on the device (bench.engine.device_jpeg)

    def run(self, label: str, value: Any, source: ImageSource, spaces: list[str]) -> ExtractedSet:
        """The engine's pass over `source` in every space (served from its cache when already done)."""
        size = len(source)
        config = EngineConfig(
            batch_size=self.batch_size,
            device=self.device,
            reservoir_size=size if self.keep_rows or size <= KEEP_ALL_ROWS_UP_TO else 0,
            progress=self.progress,
            progress_label=label,
            workers=self.workers,
            jpeg_decoder=self.jpeg_decoder,
        )
        extracted = extract_set(label, source, spaces, config, _describe(value))
        if self.strict and extracted.decode_skips:
            # A file skipped by an earlier lenient run is read back from the cache: still refused here.
            listed = ", ".join(f"{name} ({reason})" for name, reason in extracted.decode_skips[:5])
            more = len(extracted.decode_skips) - 5
            raise UserError(
                f"{label}: {len(extracted.decode_skips)} file(s) could not be read (strict): {listed}"
                + (f" and {more} more" if more > 0 else "")
            )
        return extracted


def _prepared(
    label: str, value: Any, resolved: Resolved, spaces: list[str], extraction: _Extraction
) -> ExtractedSet:
    """An image set extracted in every space, or statistics/features placed in the one space asked for."""
    if isinstance(resolved, ImageSource):
        return extraction.run(label, value, resolved, spaces)
    if len(spaces) != 1:
        raise UserError(
            f"{label} ({_describe(value)}) holds {_kind(resolved)} of one feature space; name one space, "
            f"not {len(spaces)}"
        )
    reduced = (
        FeatureSet(resolved)
        if isinstance(resolved, GaussianStats)
        else FeatureSet.from_features(resolved, name=_describe(value))
    )
    return ExtractedSet(label, _describe(value), _kind(resolved), {spaces[0]: reduced})


def _extracted_images(
    label: str, value: Any, spaces: list[str], strict: bool, extraction: _Extraction
) -> ExtractedSet:
    resolved = _resolve(value, strict)
    if not isinstance(resolved, ImageSource):
        raise UserError(f"{label} ({_describe(value)}): compare needs images, not {_kind(resolved)}")
    return extraction.run(label, value, resolved, spaces)


def _check_compatible(inputs: Mapping[str, Resolved], spaces: list[str], images_involved: bool) -> list[str]:
    """Refuse statistics from a different space or preprocessing; note statistics that record no space."""
    notes = []
    declared = {label: _declared_space(resolved) for label, resolved in inputs.items()}
    for label, resolved in inputs.items():
        if isinstance(resolved, GaussianStats) and declared[label][0] is None and spaces != [GIVEN_SPACE]:
            notes.append(f"{label}: the statistics file records no feature space; assumed to be {spaces[0]}")
    named = {label: pair for label, pair in declared.items() if pair[0] is not None}
    if len(named) == 2 and len({spec_hash for _, spec_hash in named.values()}) == 2:
        (space_a, hash_a), (space_b, hash_b) = named.values()
        raise UserError(
            f"A holds statistics of space {space_a!r} (spec {hash_a}) and B of space {space_b!r} (spec "
            f"{hash_b}): statistics from different spaces or preprocessings are not comparable"
        )
    for label, (space, spec_hash) in named.items():
        if spaces != [GIVEN_SPACE] and space != spaces[0]:
            raise UserError(
                f"{label} holds statistics of space {space!r} (spec {spec_hash}), but the distance was asked "
                f"in space {spaces[0]!r} (spec {_spec_hash(spaces[0])}): they are not comparable"
            )
        if images_involved and _spec_hash(space) != spec_hash:
            raise UserError(
                f"{label} holds statistics of space {space!r} with spec {spec_hash}, but {space!r} now has "
                f"spec {_spec_hash(space)} (its weights, preprocessing or extraction changed): not comparable"
            )
    return notes


def _raise_when_empty(outcome: ComparisonOutcome, sets: Sequence[ExtractedSet]) -> None:
    """No distance at all: one error saying why (a space that could not load, a set without features)."""
    if outcome.distances:
        return
    reasons = [line for extracted in sets for line in extracted.notes()] + outcome.notes
    raise UserError("no distance could be computed: " + ("; ".join(dict.fromkeys(reasons)) or "no features"))


def _metric_list(metrics: Sequence[str] | str, default_fd: bool = True) -> list[str]:
    from bench.experiments.generator_comparison import METRICS

    chosen = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = sorted(set(chosen) - set(METRICS))
    if unknown:
        raise UserError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    if default_fd:
        chosen = [metric for metric in chosen if metric != "fd"]
    elif "fd" not in chosen:
        chosen = ["fd", *chosen]
    return list(dict.fromkeys(chosen))


def _json_safe(value: Any) -> Any:
    """Plain-JSON values: NaN and infinities become None, numpy scalars and arrays Python values."""
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    return value
