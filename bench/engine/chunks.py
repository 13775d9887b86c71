"""Reading one chunk of a source: contiguous index ranges, batched by image size, skips recorded.

The engine works chunk by chunk (a chunk is the unit of caching and of sharding across ranks). Batches
never span a skipped image, so the stream index of a batch's first image plus the row gives every image's
own index (perturbations seed their per-image randomness with it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from bench.decode import DecodeError
from bench.sources import CHUNK as GENERATOR_CHUNK
from bench.sources import GeneratorSource, ImageSource, stack_images


@dataclass
class Batch:
    """Consecutive images of one size: stream index of the first, ids, uint8 N×3×H×W (CPU)."""

    offset: int
    ids: list[str]
    images: torch.Tensor


def iter_chunk(
    source: ImageSource, start: int, stop: int, batch_size: int, skips: list[tuple[str, str]]
) -> Iterator[Batch]:
    """Batches of images `start` … `stop − 1`; undecodable entries go to `skips` as (id, reason).

    A strict source raises `DecodeError` instead of skipping.
    """
    if isinstance(source, GeneratorSource):
        yield from _iter_generator_chunk(source, start, stop, batch_size)
        return
    ids = source.ids()
    pending: list[np.ndarray] = []
    pending_ids: list[str] = []
    first = start

    def flush() -> Batch:
        return Batch(first, list(pending_ids), stack_images(pending))

    for index in range(start, stop):
        try:
            image = source.load(index)
        except DecodeError as error:
            if source.strict:
                raise
            skips.append((ids[index], error.reason))
            if pending:
                yield flush()
                pending, pending_ids = [], []
            continue
        if pending and (image.shape != pending[0].shape or len(pending) == batch_size):
            yield flush()
            pending, pending_ids = [], []
        if not pending:
            first = index
        pending.append(image)
        pending_ids.append(ids[index])
    if pending:
        yield flush()


def _iter_generator_chunk(source: GeneratorSource, start: int, stop: int, batch_size: int) -> Iterator[Batch]:
    """Generator sources produce latents in blocks of GENERATOR_CHUNK; slice those, never per image."""
    index = start
    while index < stop:
        block = index // GENERATOR_CHUNK
        images = source.generate_chunk(block)
        block_start = block * GENERATOR_CHUNK
        block_stop = min(stop, block_start + GENERATOR_CHUNK, len(source))
        while index < block_stop:
            take = min(batch_size, block_stop - index)
            rows = images[index - block_start : index - block_start + take]
            yield Batch(index, [f"{i:06d}" for i in range(index, index + take)], rows.contiguous())
            index += take
