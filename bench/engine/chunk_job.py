"""Computing one chunk: decode each image once, mask, perturb, extract every missing (variant, space).

A chunk's result for one (variant, space) is a payload of plain arrays, cached as one entry:

- `decoded`: the ids decoded in this chunk, in stream order;
- `applied`: the ids the variant was applied to (every decoded id, or only those holding the variant's
  region — at least `min_region_fraction` of the image — when it acts on a region);
- `labelled`: the ids that had a label map (for variants that need masks; else every decoded id);
- `ids` / `features`: the applied ids whose feature row is finite, and those rows (float32);
- `decode_skips` / `feature_skips`: what could not be decoded, and why rows came out non-finite.

Face spaces detect on the clean image once (`Extractor.prepare`) and every variant reuses that state.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bench.cache import ContentCache
from bench.engine.chunks import Batch, iter_chunk
from bench.engine.loading import DecodePool, auto_workers
from bench.engine.masking import MaskProvider
from bench.engine.variants import Variant
from bench.masks import region_mask, region_present
from bench.sources import GeneratorSource, ImageSource

Pair = tuple[Variant, str]  # (variant, space)


@dataclass
class _Buffer:
    """One (variant, space)'s rows while a chunk is being computed."""

    applied: list[str] = field(default_factory=list)
    labelled: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)
    skips: Counter = field(default_factory=Counter)


@dataclass
class ChunkJob:
    """What computing any chunk of a run needs: the source, variants, loaded spaces, masks, settings."""

    source: ImageSource
    variants: Sequence[Variant]
    extractors: dict[str, Any]
    masks: MaskProvider | None
    batch_size: int
    min_region_fraction: float
    device: torch.device
    progress: Any
    timings: dict[str, float]
    cache: ContentCache | None
    workers: int | None = None  # decoding processes (None: `auto_workers`); started on the first chunk
    jpeg_decoder: str = "pil"  # "device": plain JPEGs decoded on `device` (bench.engine.device_jpeg)
    _pool: DecodePool | None = field(default=None, init=False, repr=False)

    def compute(
        self, start: int, stop: int, keys: dict[Pair, str], stored: dict[Pair, dict]
    ) -> dict[Pair, dict]:
        """Payloads of every (variant, space) of images start … stop − 1 that `stored` lacks, saved to the
        cache as they are finished."""
        missing = [pair for pair in keys if pair not in stored]
        buffers = {pair: _Buffer() for pair in missing}
        decoded: list[str] = []
        decode_skips: list[tuple[str, str]] = []
        pool = self._decoders()
        try:
            on_device = self.device if self._jpeg_on_device else None
            for batch in iter_chunk(self.source, start, stop, self.batch_size, decode_skips, pool, on_device):
                decoded.extend(batch.ids)
                self._process_batch(batch, buffers)
        except BaseException:
            self.close()
            raise
        return {
            pair: self._finish(pair, buffers[pair], decoded, decode_skips, keys[pair]) for pair in missing
        }

    def _decoders(self) -> DecodePool | None:
        """The run's decoding workers, started when the first chunk needs them (None: decode here)."""
        if self._pool is None:
            count = self.workers
            if count is None:
                count = auto_workers(self.source, self.device, self.batch_size)
            if count > 0 and not isinstance(self.source, GeneratorSource):
                self._pool = DecodePool(
                    self.source, count, self.batch_size, self.device.type == "cuda", self._jpeg_on_device
                )
        return self._pool

    @property
    def _jpeg_on_device(self) -> bool:
        return self.jpeg_decoder == "device" and not isinstance(self.source, GeneratorSource)

    def close(self) -> None:
        """Stop the decoding workers, if any were started."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _process_batch(self, batch: Batch, buffers: dict[Pair, _Buffer]) -> None:
        images = batch.images.to(self.device)
        pending = {
            variant: [s for s in self.extractors if (variant, s) in buffers] for variant in self.variants
        }
        labels, has_labels = self._labels(batch, images, [v for v, spaces in pending.items() if spaces])
        prepared = self._prepare(images, {space for spaces in pending.values() for space in spaces})
        for variant, spaces in pending.items():
            if spaces:
                applied = self._applied(variant, labels, has_labels, len(batch.ids))
                perturbed = self._perturb(variant, images, labels, batch.offset)
                for space in spaces:
                    buffer = buffers[(variant, space)]
                    self._extract(
                        buffer, space, variant.is_clean, perturbed, applied, prepared, batch, has_labels
                    )
            self.progress.update(len(batch.ids))

    def _labels(
        self, batch: Batch, images: torch.Tensor, variants: list[Variant]
    ) -> tuple[torch.Tensor | None, np.ndarray | None]:
        """Label maps and the 'has a label map' flags, when a variant still to compute needs masks."""
        if self.masks is None or not any(variant.needs_masks for variant in variants):
            return None, None
        tic = time.perf_counter()
        labels, has_labels = self.masks.labels(batch.ids, images)
        self._time("masks", tic)
        return labels, has_labels.cpu().numpy()

    def _prepare(self, images: torch.Tensor, spaces: set[str]) -> dict[str, list | None]:
        """Each space's per-image state computed once on the clean images (face landmarks)."""
        prepared = {}
        for space in spaces:
            tic = time.perf_counter()
            prepared[space] = self.extractors[space].prepare(images)
            self._time(f"space:{space}", tic)
        return prepared

    def _applied(
        self, variant: Variant, labels: torch.Tensor | None, has_labels: np.ndarray | None, count: int
    ) -> np.ndarray:
        """Which images of the batch the variant acts on (all, or those holding its region)."""
        if not variant.needs_masks:
            return np.ones(count, dtype=bool)
        assert labels is not None and has_labels is not None and self.masks is not None
        present = region_present(labels, self.masks.convention, variant.region, self.min_region_fraction)
        return present.cpu().numpy() & has_labels

    def _perturb(
        self, variant: Variant, images: torch.Tensor, labels: torch.Tensor | None, offset: int
    ) -> torch.Tensor:
        """The batch as the variant presents it (the whole batch, so per-image seeds follow the stream)."""
        if variant.perturbation is None:
            return images
        tic = time.perf_counter()
        region = None
        if variant.needs_masks:
            assert labels is not None and self.masks is not None
            region = region_mask(labels, self.masks.convention, variant.region)
        perturbed = variant.perturbation(images, region, offset=offset)
        self._time("perturb", tic)
        return perturbed

    def _extract(
        self,
        buffer: _Buffer,
        space: str,
        variant_is_clean: bool,
        perturbed: torch.Tensor,
        applied: np.ndarray,
        prepared: dict[str, list | None],
        batch: Batch,
        has_labels: np.ndarray | None,
    ) -> None:
        """Features of the applied images in one space, appended to the buffer (finite rows only)."""
        applied_ids = [image_id for image_id, keep in zip(batch.ids, applied, strict=True) if keep]
        buffer.applied.extend(applied_ids)
        labelled = (
            batch.ids
            if has_labels is None
            else [i for i, ok in zip(batch.ids, has_labels, strict=True) if ok]
        )
        buffer.labelled.extend(labelled)
        if not applied_ids:
            return
        chosen = perturbed if applied.all() else perturbed[torch.from_numpy(applied).to(perturbed.device)]
        state = prepared.get(space)
        state = None if state is None else [entry for entry, keep in zip(state, applied, strict=True) if keep]
        extractor = self.extractors[space]
        tic = time.perf_counter()
        with torch.no_grad():
            features = extractor(chosen, state).float().cpu().numpy()
        self._time(f"space:{space}", tic)
        good = np.isfinite(features).all(axis=1)
        # Rows whose clean image gave no state (no face) are the clean variant's loss, not this variant's.
        counted = (
            ~good if state is None or variant_is_clean else ~good & np.array([s is not None for s in state])
        )
        if counted.any():
            buffer.skips[_plain_reason(getattr(extractor, "skip_reason", None))] += int(counted.sum())
        buffer.ids.extend(image_id for image_id, ok in zip(applied_ids, good, strict=True) if ok)
        buffer.features.append(features[good])

    def _finish(
        self, pair: Pair, buffer: _Buffer, decoded: list[str], decode_skips: list[tuple[str, str]], key: str
    ) -> dict:
        dim = self.extractors[pair[1]].dim
        payload = {
            "decoded": np.array(decoded, dtype=str),
            "applied": np.array(buffer.applied, dtype=str),
            "labelled": np.array(buffer.labelled, dtype=str),
            "ids": np.array(buffer.ids, dtype=str),
            "features": np.concatenate(buffer.features)
            if buffer.features
            else np.zeros((0, dim), np.float32),
            "decode_skips": np.array(json.dumps(decode_skips)),
            "feature_skips": np.array(json.dumps(dict(buffer.skips))),
        }
        if self.cache is not None:
            self.cache.save(key, payload)
        return {**payload, "fresh": True}

    def _time(self, name: str, tic: float) -> None:
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - tic


def _plain_reason(reason: str | None) -> str:
    """An extractor's skip reason without its per-batch count ("3 image(s) skipped: no face" → "no face")."""
    if not reason:
        return "non-finite features"
    return re.sub(r"^\d+ image\(s\) skipped: ", "", reason)
