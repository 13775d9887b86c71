"""The extraction engine: one decode per image → masks → every variant → every feature space → statistics.

Work is split into chunks of consecutive images. For each (chunk, variant, space) the engine stores the
feature rows it produced, atomically, in a content-addressed cache keyed by the source manifest, the chunk,
the variant spec, the space spec hash and the masks' identity. A killed run restarts where it stopped:
finished chunk files are read back, never recomputed, and give identical results. A file lock per chunk
lets two runs share one cache without doing the same work twice.

From the chunk files the engine builds, per cell (variant, space, subset), float64 Gaussian statistics
merged exactly in chunk order and a seeded feature reservoir. Under `torchrun` each rank takes every
world-th chunk and the per-rank statistics are gathered and merged, so every rank ends with the same
numbers a single process would get.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bench.cache import ContentCache
from bench.device import resolve_device
from bench.engine.chunks import iter_chunk
from bench.engine.distributed import Shard, gather_objects
from bench.engine.masking import MaskProvider
from bench.engine.reservoir import Reservoir
from bench.engine.variants import ALL_IMAGES, Variant
from bench.hashing import stable_hash
from bench.masks import region_mask
from bench.sources import ImageSource
from bench.stats import GaussianStats

LOG = logging.getLogger("fdbench.engine")
ENGINE_VERSION = 1
CellKey = tuple[str, str, str]  # (variant name, space name, subset)


@dataclass
class EngineConfig:
    """How the engine runs: sizes, device, cache, reservoir, progress display and sharding."""

    batch_size: int = 32
    chunk_size: int = 256
    device: str | None = None
    reservoir_size: int = 2000
    reservoir_seed: int = 0
    cache: ContentCache | bool | None = None  # None: default cache; False: no cache
    progress: bool = True
    shard: Shard = field(default_factory=Shard.from_environment)


@dataclass
class Cell:
    """Statistics and reservoir of one (variant, space, subset)."""

    variant: str
    space: str
    subset: str
    stats: GaussianStats | None
    ids: list[str]
    features: np.ndarray | None

    @property
    def n(self) -> int:
        """Images summarised (0 when none qualified)."""
        return 0 if self.stats is None or self.stats.n is None else self.stats.n

    @property
    def reservoir_is_complete(self) -> bool:
        """True when the reservoir holds every row, so exact feature-based metrics can use it."""
        return self.features is not None and len(self.ids) == self.n


@dataclass
class EngineResult:
    """Everything a run produced: cells, what was skipped and why, and timings."""

    cells: dict[CellKey, Cell]
    spaces: dict[str, dict[str, Any]]
    space_errors: dict[str, str]
    decode_skips: list[tuple[str, str]]
    feature_skips: dict[str, Counter]
    images_total: int
    timings: dict[str, float]
    masks: dict[str, Any] | None
    cache_hits: int = 0
    cache_misses: int = 0

    def cell(self, variant: str, space: str, subset: str = ALL_IMAGES) -> Cell | None:
        """The cell for (variant, space, subset), or None when it was not computed."""
        return self.cells.get((variant, space, subset))


def _default_cache(cache: ContentCache | bool | None) -> ContentCache | None:
    if cache is False:
        return None
    if cache is None or cache is True:
        return ContentCache("engine")
    return cache


def _load_spaces(
    names: Sequence[str], device: torch.device
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, str]]:
    """Load every space that can load; record why the others cannot (the run goes on without them)."""
    import feature_spaces

    extractors: dict[str, Any] = {}
    described: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for name in names:
        try:
            space = feature_spaces.get(name)
            extractors[name] = space.load(device)
            described[name] = {"spec_hash": space.spec_hash, "dim": space.spec.dim}
        except Exception as error:  # a space that cannot load is reported, never fatal
            errors[name] = f"{type(error).__name__}: {error}"
            LOG.warning("space %s could not load: %s", name, errors[name])
    return extractors, described, errors


def _membership(
    variant: Variant,
    labels: torch.Tensor | None,
    has_labels: torch.Tensor | None,
    convention: Any,
    count: int,
) -> np.ndarray:
    """Bool (count × subsets): which images of a batch belong to each subset of the variant."""
    columns = []
    for subset in variant.subsets:
        if subset in (ALL_IMAGES, "All"):
            columns.append(np.ones(count, dtype=bool))
            continue
        assert labels is not None and has_labels is not None
        present = region_mask(labels, convention, subset).flatten(1).any(dim=1) & has_labels
        columns.append(present.cpu().numpy())
    return np.stack(columns, axis=1)


def run_engine(
    source: ImageSource,
    variants: Sequence[Variant],
    spaces: Sequence[str],
    masks: MaskProvider | None = None,
    config: EngineConfig | None = None,
) -> EngineResult:
    """Extract features of every variant of every image in every space; return per-cell statistics."""
    config = config or EngineConfig()
    names = [variant.name for variant in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variant names must be unique, got {names}")
    if masks is None and any(variant.needs_masks for variant in variants):
        needing = [variant.name for variant in variants if variant.needs_masks]
        raise ValueError(f"variants {needing} select regions but no mask provider was given")
    device = resolve_device(config.device)
    cache = _default_cache(config.cache)
    started = time.perf_counter()
    extractors, described, space_errors = _load_spaces(spaces, device)
    timings: dict[str, float] = {"load_spaces": time.perf_counter() - started}
    mask_identity = masks.identity() if masks is not None else None
    source_hash = source.manifest_hash()
    total = len(source)
    chunk_count = (total + config.chunk_size - 1) // config.chunk_size
    my_chunks = config.shard.chunks(chunk_count)

    def cell_file_key(chunk: int, variant: Variant, space: str) -> str:
        return stable_hash(
            {
                "engine": ENGINE_VERSION,
                "source": source_hash,
                "chunk": chunk,
                "chunk_size": config.chunk_size,
                "variant": variant.spec(),
                "space": described[space]["spec_hash"],
                "masks": mask_identity if variant.needs_masks else None,
            },
            length=32,
        )

    accumulators = _Accumulators(config.reservoir_size, config.reservoir_seed)
    # Entries refused while listing the source (bad extension, symlink loop, unsafe zip path) come first.
    decode_skips: list[tuple[str, str]] = list(source.scan_skips()) if config.shard.rank == 0 else []
    feature_skips: dict[str, Counter] = {space: Counter() for space in extractors}
    hits = misses = 0
    my_images = sum(
        min(total, (chunk + 1) * config.chunk_size) - chunk * config.chunk_size for chunk in my_chunks
    )
    progress = _progress(config.progress and config.shard.rank == 0, my_images, variants)
    job = _ChunkJob(source, variants, extractors, masks, config, device, progress, timings, cache)
    for chunk in my_chunks:
        start, stop = chunk * config.chunk_size, min(total, (chunk + 1) * config.chunk_size)
        keys = {
            (variant.name, space): cell_file_key(chunk, variant, space)
            for variant in variants
            for space in extractors
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
        computed_now = {pair for pair, payload in stored.items() if payload.get("fresh")}
        hits += len(stored) - len(computed_now)
        misses += len(computed_now)
        chunk_skips = _decode_skips_of(stored)
        decode_skips.extend(chunk_skips)
        for (variant_name, space), payload in stored.items():
            feature_skips[space].update(json.loads(str(payload["feature_skips"])))
            variant = next(v for v in variants if v.name == variant_name)
            accumulators.add(chunk, variant, space, payload)
    progress.close()
    timings["total"] = time.perf_counter() - started
    cells = accumulators.finish(config.shard)
    if config.shard.world > 1:
        decode_skips = sorted({tuple(item) for part in gather_objects(decode_skips) for item in part})
    return EngineResult(
        cells=cells,
        spaces=described,
        space_errors=space_errors,
        decode_skips=decode_skips,
        feature_skips={space: counter for space, counter in feature_skips.items() if counter},
        images_total=total,
        timings=timings,
        masks=mask_identity,
        cache_hits=hits,
        cache_misses=misses,
    )


def _read_cached(cache: ContentCache | None, keys: dict[tuple[str, str], str]) -> dict[tuple[str, str], dict]:
    if cache is None:
        return {}
    found = {}
    for pair, key in keys.items():
        payload = cache.load(key)
        if payload is not None:
            found[pair] = payload
    return found


def _decode_skips_of(stored: dict[tuple[str, str], dict]) -> list[tuple[str, str]]:
    for payload in stored.values():
        return [tuple(item) for item in json.loads(str(payload["decode_skips"]))]
    return []


@dataclass
class _ChunkJob:
    """What computing any chunk needs: the source, variants, loaded spaces, masks and run settings."""

    source: ImageSource
    variants: Sequence[Variant]
    extractors: dict[str, Any]
    masks: MaskProvider | None
    config: EngineConfig
    device: torch.device
    progress: Any
    timings: dict[str, float]
    cache: ContentCache | None

    def compute(
        self, start: int, stop: int, keys: dict[tuple[str, str], str], stored: dict[tuple[str, str], dict]
    ) -> dict[tuple[str, str], dict]:
        """Decode images start … stop − 1 once; run and save each (variant, space) missing from `stored`."""
        source, variants, extractors, masks = self.source, self.variants, self.extractors, self.masks
        config, device, progress, timings, cache = (
            self.config,
            self.device,
            self.progress,
            self.timings,
            self.cache,
        )
        missing = [pair for pair in keys if pair not in stored]
        buffers: dict[tuple[str, str], dict[str, list]] = {
            pair: {"ids": [], "features": [], "membership": []} for pair in missing
        }
        skip_counts: dict[tuple[str, str], Counter] = {pair: Counter() for pair in missing}
        decode_skips: list[tuple[str, str]] = []
        needs_masks = masks is not None and any(v.needs_masks for v in variants)
        for batch in iter_chunk(source, start, stop, config.batch_size, decode_skips):
            images = batch.images.to(device)
            labels = has_labels = None
            if needs_masks:
                tic = time.perf_counter()
                labels, has_labels = masks.labels(batch.ids, images)
                timings["masks"] = timings.get("masks", 0.0) + time.perf_counter() - tic
            for variant in variants:
                wanted = [space for space in extractors if (variant.name, space) in buffers]
                if not wanted:
                    progress.update(len(batch.ids))
                    continue
                tic = time.perf_counter()
                perturbed = images
                if variant.perturbation is not None:
                    region = None
                    if variant.region not in (None, "All"):
                        region = (
                            region_mask(labels, masks.convention, variant.region) & has_labels[:, None, None]
                        )
                    perturbed = variant.perturbation(images, region, offset=batch.offset)
                timings["perturb"] = timings.get("perturb", 0.0) + time.perf_counter() - tic
                membership = _membership(
                    variant, labels, has_labels, masks.convention if masks else None, len(batch.ids)
                )
                # Only images in at least one kept subset are worth extracting (a region blur of an image
                # without that region is never summarised).
                eligible = membership.any(axis=1)
                if not eligible.any():
                    progress.update(len(batch.ids))
                    continue
                chosen = (
                    perturbed
                    if eligible.all()
                    else perturbed[torch.from_numpy(eligible).to(perturbed.device)]
                )
                chosen_ids = [image_id for image_id, keep in zip(batch.ids, eligible, strict=True) if keep]
                for space in wanted:
                    tic = time.perf_counter()
                    with torch.no_grad():
                        features = extractors[space](chosen).float().cpu().numpy()
                    timings[f"space:{space}"] = timings.get(f"space:{space}", 0.0) + time.perf_counter() - tic
                    good = np.isfinite(features).all(axis=1)
                    if not good.all():
                        reason = _plain_reason(getattr(extractors[space], "skip_reason", None))
                        skip_counts[(variant.name, space)][reason] += int((~good).sum())
                    buffer = buffers[(variant.name, space)]
                    buffer["ids"].extend(
                        image_id for image_id, ok in zip(chosen_ids, good, strict=True) if ok
                    )
                    buffer["features"].append(features[good])
                    buffer["membership"].append(membership[eligible][good])
                progress.update(len(batch.ids))
        results: dict[tuple[str, str], dict] = {}
        for pair in missing:
            buffer = buffers[pair]
            variant = next(v for v in variants if v.name == pair[0])
            dim = extractors[pair[1]].dim
            payload = {
                "ids": np.array(buffer["ids"], dtype=str),
                "features": np.concatenate(buffer["features"])
                if buffer["features"]
                else np.zeros((0, dim), np.float32),
                "membership": np.concatenate(buffer["membership"])
                if buffer["membership"]
                else np.zeros((0, len(variant.subsets)), dtype=bool),
                "decode_skips": np.array(json.dumps(decode_skips)),
                "feature_skips": np.array(json.dumps(dict(skip_counts[pair]))),
            }
            if cache is not None:
                cache.save(keys[pair], payload)
            results[pair] = {**payload, "fresh": True}
        return results


def _plain_reason(reason: str | None) -> str:
    """An extractor's skip reason without its per-batch count ("3 image(s) skipped: no face" → "no face")."""
    if not reason:
        return "non-finite features"
    return re.sub(r"^\d+ image\(s\) skipped: ", "", reason)


class _Accumulators:
    """Per-cell running statistics (merged in chunk order) and reservoirs."""

    def __init__(self, reservoir_size: int, reservoir_seed: int) -> None:
        self.stats: dict[CellKey, GaussianStats] = {}
        self.reservoirs: dict[CellKey, Reservoir] = {}
        self.reservoir_size, self.reservoir_seed = reservoir_size, reservoir_seed

    def add(self, chunk: int, variant: Variant, space: str, payload: dict) -> None:
        features = np.asarray(payload["features"])
        ids = [str(image_id) for image_id in payload["ids"]]
        membership = np.asarray(payload["membership"], dtype=bool).reshape(len(ids), len(variant.subsets))
        for column, subset in enumerate(variant.subsets):
            key = (variant.name, space, subset)
            rows = membership[:, column]
            part = (
                GaussianStats.from_features(features[rows])
                if rows.any()
                else GaussianStats.empty(features.shape[1])
            )
            self.stats[key] = self.stats[key].merge(part) if key in self.stats else part
            reservoir = self.reservoirs.setdefault(key, Reservoir(self.reservoir_size, self.reservoir_seed))
            reservoir.offer([i for i, keep in zip(ids, rows, strict=True) if keep], features[rows])

    def finish(self, shard: Shard) -> dict[CellKey, Cell]:
        stats, reservoirs = self.stats, self.reservoirs
        if shard.world > 1:
            stats, reservoirs = _merge_across_ranks(
                stats, reservoirs, self.reservoir_size, self.reservoir_seed
            )
        cells = {}
        for key, cell_stats in stats.items():
            ids, features = reservoirs[key].ordered()
            cells[key] = Cell(*key, stats=cell_stats if cell_stats.n else None, ids=ids, features=features)
        return cells


def _merge_across_ranks(
    stats: dict[CellKey, GaussianStats], reservoirs: dict[CellKey, Reservoir], size: int, seed: int
) -> tuple[dict[CellKey, GaussianStats], dict[CellKey, Reservoir]]:
    """All-gather every rank's partial statistics and reservoirs; merge them in rank order."""
    parts = gather_objects(
        {key: (s.n, s.mean, s.m2, reservoirs[key].ids, reservoirs[key].features) for key, s in stats.items()}
    )
    merged_stats: dict[CellKey, GaussianStats] = {}
    merged_reservoirs: dict[CellKey, Reservoir] = {}
    for part in parts:
        for key, (n, mean, m2, ids, features) in part.items():
            piece = GaussianStats(n=n, mean=mean, m2=m2)
            merged_stats[key] = merged_stats[key].merge(piece) if key in merged_stats else piece
            reservoir = merged_reservoirs.setdefault(key, Reservoir(size, seed))
            if features is not None:
                reservoir.offer(ids, features)
    return merged_stats, merged_reservoirs


def _progress(enabled: bool, images: int, variants: Sequence[Variant]) -> Any:
    """A tqdm bar over image-variant passes (shows images/s and ETA), or a silent stand-in."""
    from tqdm.auto import tqdm

    return tqdm(
        total=images * len(variants),
        disable=not enabled,
        unit="img",
        desc=f"extracting ({len(variants)} variants)",
        smoothing=0.1,
    )
