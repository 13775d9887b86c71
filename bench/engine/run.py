"""The extraction engine: one decode per image → masks → every variant → every feature space → statistics.

Work is split into chunks of consecutive images. For each (chunk, variant, space) the engine stores what it
extracted, atomically, in a content-addressed cache keyed by the source manifest, the chunk, the variant
spec, the space spec hash and, for region variants, the masks' identity and the region-presence rule. A
killed run restarts where it stopped: finished chunk entries are read back, never recomputed, and give
identical results. A file lock per chunk lets two runs share one cache without doing the same work twice.

From the chunk entries the engine builds, per cohort (bench.engine.cohorts) and space, float64 Gaussian
statistics of every member variant on exactly the same image ids — merged exactly in chunk order — and a
seeded feature reservoir. Every variant also forms a cohort of its own (all ids it has a feature for),
which `EngineResult.cell(variant, space)` returns. Under `torchrun` each rank takes every world-th chunk
and the per-rank accumulators are gathered and merged, so every rank ends with the numbers a single
process would get.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.cache import ContentCache
from bench.device import resolve_device
from bench.engine.chunk_job import ChunkJob, Pair
from bench.engine.cohorts import Cell, ChunkFeatures, Cohort, CohortAccumulator, CohortCells, select_members
from bench.engine.device_jpeg import JPEG_DECODERS
from bench.engine.distributed import Shard, gather_objects
from bench.engine.masking import MaskProvider
from bench.engine.variants import Variant
from bench.errors import UserError
from bench.hashing import stable_hash
from bench.masks import DEFAULT_MIN_REGION_FRACTION
from bench.sources import ImageSource

LOG = logging.getLogger("fdbench.engine")
ENGINE_VERSION = 2


@dataclass
class EngineConfig:
    """How the engine runs: sizes, device, cache, reservoir, region presence, progress and sharding."""

    batch_size: int = 32
    chunk_size: int = 256
    device: str | None = None
    reservoir_size: int = 2000
    reservoir_seed: int = 0
    min_region_fraction: float = DEFAULT_MIN_REGION_FRACTION
    cache: ContentCache | bool | None = None  # None: default cache; False: no cache
    progress: bool = True
    progress_label: str = ""  # what the progress bar calls this run's images, e.g. "reference"
    shard: Shard = field(default_factory=Shard.from_environment)
    # Fast path (bench.engine.loading, feature_spaces.precision): decoding worker processes (None: chosen
    # per device), the networks' precision (a reduced one only where its recorded check allows; it enters
    # the cache key through the space's spec) and torch.compile (eager fallback).
    workers: int | None = None
    precision: str = "fp32"
    compile: bool = False
    # "device": plain JPEGs decoded by torchvision's decode_jpeg on the device (nvjpeg on a GPU), which
    # enters the cache key; "pil": every file by bench.decode (bench.engine.device_jpeg).
    jpeg_decoder: str = "pil"

    def __post_init__(self) -> None:
        if self.jpeg_decoder not in JPEG_DECODERS:
            choices = ", ".join(JPEG_DECODERS)
            raise UserError(f"jpeg_decoder must be one of {choices}, got {self.jpeg_decoder!r}")


@dataclass
class EngineResult:
    """Everything a run produced: cohorts, what was skipped and why, and timings."""

    cohorts: dict[tuple[str, str], CohortCells]
    spaces: dict[str, dict[str, Any]]
    space_errors: dict[str, str]
    decode_skips: list[tuple[str, str]]
    feature_skips: dict[tuple[str, str], Counter]  # (variant name, space) → reason → count
    images_total: int
    images_decoded: int
    unlabelled: list[str]  # decoded ids without a label map (left out of every region variant)
    timings: dict[str, float]
    masks: dict[str, Any] | None
    cache_hits: int = 0
    cache_misses: int = 0
    cache_damaged: list[tuple[str, str]] = field(default_factory=list)

    def cohort(self, cohort: Cohort | str, space: str) -> CohortCells | None:
        """A cohort's cells in one space, or None when that space did not run."""
        name = cohort.name if isinstance(cohort, Cohort) else cohort
        return self.cohorts.get((name, space))

    def cell(self, variant: Variant | str, space: str) -> Cell | None:
        """The cell of every id `variant` has a feature for in `space`, or None."""
        name = variant.name if isinstance(variant, Variant) else variant
        cells = self.cohorts.get((_own_cohort_name(name), space))
        return None if cells is None else next(iter(cells.cells.values()))


def _own_cohort_name(variant_name: str) -> str:
    return f"variant:{variant_name}"


def run_engine(
    source: ImageSource,
    variants: Sequence[Variant],
    spaces: Sequence[str],
    masks: MaskProvider | None = None,
    config: EngineConfig | None = None,
    cohorts: Sequence[Cohort] = (),
) -> EngineResult:
    """Extract features of every variant of every image in every space; return per-cohort statistics."""
    config = config or EngineConfig()
    variants = _check_variants(variants, cohorts, masks)
    all_cohorts = [Cohort.of(_own_cohort_name(v.name), v) for v in variants] + list(cohorts)
    device = resolve_device(config.device)
    cache = _default_cache(config.cache)
    started = time.perf_counter()
    extractors = LoadedSpaces(spaces, device, config.precision, config.compile)
    described, space_errors = extractors.described, extractors.errors
    timings: dict[str, float] = {"load_spaces": time.perf_counter() - started}
    mask_identity = masks.identity() if masks is not None else None
    source_hash = source.manifest_hash()
    total = len(source)
    chunk_count = (total + config.chunk_size - 1) // config.chunk_size
    my_chunks = config.shard.chunks(chunk_count)

    # decode_jpeg on a CPU is libjpeg-turbo, as PIL: the same pixels; nvjpeg's may differ by a grey level
    device_decodes_differently = config.jpeg_decoder == "device" and device.type != "cpu"

    def entry_key(chunk: int, variant: Variant, space: str) -> str:
        region_rule = {"masks": mask_identity, "min_region_fraction": config.min_region_fraction}
        return stable_hash(
            {
                "engine": ENGINE_VERSION,
                "source": source_hash,
                "chunk": chunk,
                "chunk_size": config.chunk_size,
                "variant": variant.spec(),
                "space": described[space]["spec_hash"],
                "regions": region_rule if variant.needs_masks else None,
                **({"jpeg_decoder": f"device:{device.type}"} if device_decodes_differently else {}),
            },
            length=32,
        )

    accumulators = {
        (cohort.name, space): CohortAccumulator(
            cohort, space, extractors.dim(space), config.reservoir_size, config.reservoir_seed
        )
        for cohort in all_cohorts
        for space in extractors
    }
    # Entries refused while listing the source (bad extension, symlink loop, unsafe zip path) come first.
    decode_skips: list[tuple[str, str]] = list(source.scan_skips()) if config.shard.rank == 0 else []
    feature_skips: dict[tuple[str, str], Counter] = {}
    unlabelled: set[str] = set()
    decoded_count = hits = misses = 0
    my_images = sum(min(total, (c + 1) * config.chunk_size) - c * config.chunk_size for c in my_chunks)
    progress = _progress(config, my_images, variants)
    job = ChunkJob(
        source, variants, extractors, masks, config.batch_size, config.min_region_fraction, device, progress,
        timings, cache, config.workers, config.jpeg_decoder,
    )  # fmt: skip
    for chunk in my_chunks:
        start, stop = chunk * config.chunk_size, min(total, (chunk + 1) * config.chunk_size)
        keys = {
            (variant, space): entry_key(chunk, variant, space) for variant in variants for space in extractors
        }
        stored = _read_cached(cache, keys)
        if len(stored) < len(keys):
            lock_key = stable_hash({"chunk-lock": source_hash, "chunk": chunk, "size": config.chunk_size})
            with cache.lock(lock_key) if cache is not None else contextlib.nullcontext():
                stored = _read_cached(cache, keys)  # another run may have finished it meanwhile
                if len(stored) < len(keys):
                    stored.update(job.compute(start, stop, keys, stored))
        else:
            progress.update((stop - start) * len(variants))
        fresh = sum(1 for payload in stored.values() if payload.get("fresh"))
        hits, misses = hits + len(stored) - fresh, misses + fresh
        if stored:
            any_payload = next(iter(stored.values()))
            decode_skips.extend(tuple(item) for item in json.loads(str(any_payload["decode_skips"])))
            decoded_count += len(any_payload["decoded"])
        for (variant, space), payload in stored.items():
            counts = json.loads(str(payload["feature_skips"]))
            if counts:
                feature_skips.setdefault((variant.name, space), Counter()).update(counts)
            if variant.needs_masks:
                unlabelled.update(set(map(str, payload["decoded"])) - set(map(str, payload["labelled"])))
        _accumulate_chunk(stored, all_cohorts, extractors, accumulators)
    job.close()
    progress.close()
    timings["total"] = time.perf_counter() - started
    if config.shard.world > 1:
        accumulators = _merge_across_ranks(accumulators)
        decode_skips = sorted({tuple(item) for part in gather_objects(decode_skips) for item in part})
    return EngineResult(
        cohorts={key: accumulator.finish() for key, accumulator in accumulators.items()},
        spaces=described,
        space_errors=space_errors,
        decode_skips=decode_skips,
        feature_skips=feature_skips,
        images_total=total,
        images_decoded=decoded_count,
        unlabelled=sorted(unlabelled),
        timings=timings,
        masks=mask_identity,
        cache_hits=hits,
        cache_misses=misses,
        cache_damaged=list(getattr(cache, "damaged", []) or []),
    )


def _check_variants(
    variants: Sequence[Variant], cohorts: Sequence[Cohort], masks: MaskProvider | None
) -> list[Variant]:
    """Variants without duplicates (one spec computed once), every cohort's variants among them."""
    unique = list(dict.fromkeys(variants))
    names = [variant.name for variant in unique]
    if len(set(names)) != len(names):
        raise ValueError(f"variant names must be unique, got {names}")
    if masks is None and any(variant.needs_masks for variant in unique):
        needing = [variant.name for variant in unique if variant.needs_masks]
        raise ValueError(f"variants {needing} select regions but no mask provider was given")
    cohort_names = [cohort.name for cohort in cohorts]
    if len(set(cohort_names)) != len(cohort_names):
        raise ValueError(f"cohort names must be unique, got {cohort_names}")
    for cohort in cohorts:
        absent = [variant.name for variant in cohort.variants() if variant not in unique]
        if absent:
            raise ValueError(
                f"cohort {cohort.name!r} reads variant(s) {absent} that the run does not compute"
            )
    return unique


def _accumulate_chunk(
    stored: dict[Pair, dict],
    cohorts: Sequence[Cohort],
    extractors: dict[str, Any],
    accumulators: dict[tuple[str, str], CohortAccumulator],
) -> None:
    """Fold one chunk's payloads into every cohort of every space."""
    for space in extractors:
        parts = {
            variant: ChunkFeatures(
                applied=[str(i) for i in payload["applied"]],
                labelled=[str(i) for i in payload["labelled"]],
                ids=[str(i) for i in payload["ids"]],
                features=payload["features"],
            )
            for (variant, name), payload in stored.items()
            if name == space
        }
        if not parts:
            continue
        order = [str(i) for i in next(p for (v, name), p in stored.items() if name == space)["decoded"]]
        for cohort in cohorts:
            ids, rows, lost = select_members(cohort, parts, order)
            accumulators[(cohort.name, space)].add(ids, rows, lost)


def _default_cache(cache: ContentCache | bool | None) -> ContentCache | None:
    if cache is False:
        return None
    if cache is None or cache is True:
        return ContentCache("engine")
    return cache


class LoadedSpaces(Mapping[str, Any]):
    """The run's extractors by space name, each loaded only when a chunk needs computing.

    A run served wholly from the cache never loads a model. With float32 and no compile a space's cache
    identity is its registered spec, known without loading; other settings change the spec, so those
    spaces are loaded up front. A space that cannot load here is reported and left out of the run.
    """

    def __init__(self, names: Sequence[str], device: torch.device, precision: str, compile: bool) -> None:
        import feature_spaces

        self.device, self.precision, self.compile = device, precision, compile
        self.described: dict[str, dict[str, Any]] = {}
        self.errors: dict[str, str] = {}
        self._loaded: dict[str, Any] = {}
        self._dims: dict[str, int] = {}
        for name in names:
            try:
                space = feature_spaces.get(name)
                available = space.availability()
                if not available.ok:
                    raise RuntimeError(available.reason)
                self._dims[name] = space.spec.dim
                self.described[name] = {"spec_hash": space.spec_hash, "dim": space.spec.dim}
                if precision != "fp32" or compile:
                    self._load(name)
            except Exception as error:  # a space that cannot load is reported, never fatal
                self._fail(name, error)

    def _load(self, name: str) -> Any:
        import feature_spaces
        from feature_spaces.precision import configure

        extractor, numerics = configure(
            feature_spaces.get(name).load(self.device), self.precision, self.compile
        )
        self._loaded[name] = extractor
        self.described[name]["spec_hash"] = extractor.spec.spec_hash
        if numerics != "float32":
            self.described[name]["numerics"] = numerics
        return extractor

    def _fail(self, name: str, error: Exception) -> None:
        self.errors[name] = f"{type(error).__name__}: {error}"
        self.described.pop(name, None)
        self._dims.pop(name, None)
        LOG.warning("space %s could not load: %s", name, self.errors[name])

    def dim(self, name: str) -> int:
        """Feature dimension, from the spec (no loading)."""
        return self._dims[name]

    def __getitem__(self, name: str) -> Any:
        if name in self._loaded:
            return self._loaded[name]
        if name not in self._dims:
            raise KeyError(name)
        try:
            return self._load(name)
        except Exception as error:
            raise RuntimeError(
                f"feature space {name} could not load: {type(error).__name__}: {error}"
            ) from error

    def __iter__(self) -> Iterator[str]:
        return iter(self._dims)

    def __len__(self) -> int:
        return len(self._dims)


def _read_cached(cache: ContentCache | None, keys: dict[Pair, str]) -> dict[Pair, dict]:
    if cache is None:
        return {}
    found = {}
    for pair, key in keys.items():
        payload = cache.load(key)
        if payload is not None and "decoded" in payload:
            found[pair] = payload
    return found


def _merge_across_ranks(
    accumulators: dict[tuple[str, str], CohortAccumulator],
) -> dict[tuple[str, str], CohortAccumulator]:
    """All-gather every rank's accumulators; merge them in rank order (every rank gets the same result)."""
    parts = gather_objects({key: (acc.stats, acc.reservoirs, acc.lost) for key, acc in accumulators.items()})
    merged = {}
    for key, mine in accumulators.items():
        total = dataclasses.replace(mine, stats=[], reservoirs=[], lost=0)
        for part in parts:
            stats, reservoirs, lost = part[key]
            total.merge(dataclasses.replace(mine, stats=stats, reservoirs=reservoirs, lost=lost))
        merged[key] = total
    return merged


def _progress(config: EngineConfig, images: int, variants: Sequence[Variant]) -> Any:
    """A tqdm bar over image-variant passes (shows images/s and ETA), or a silent stand-in."""
    from tqdm.auto import tqdm

    label = f"{config.progress_label}: " if config.progress_label else ""
    return tqdm(
        total=images * len(variants),
        disable=not (config.progress and config.shard.rank == 0),
        unit="img",
        desc=f"{label}extracting ({len(variants)} variants)",
        smoothing=0.1,
    )
