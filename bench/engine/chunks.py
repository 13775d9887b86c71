"""Reading one chunk of a source: contiguous index ranges, batched by image size, skips recorded.

The engine works chunk by chunk (a chunk is the unit of caching and of sharding across ranks). Batches
never span a skipped image, so the stream index of a batch's first image plus the row gives every image's
own index (perturbations seed their per-image randomness with it).

Images are decoded in the main process, or by a `DecodePool`'s worker processes (bench.engine.loading);
both hand over the same pieces in the same order and the batching rules below apply to either, so the
batches — ids, order, boundaries and pixels — and every skip with its reason are the same. Plain JPEGs may
instead be decoded on the device (bench.engine.device_jpeg) before the same batching.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from bench.decode import DecodeError
from bench.engine.device_jpeg import Encoded, decode_on_device
from bench.engine.loading import DecodePool, Piece, Run, Skip, decode_range, join_runs
from bench.sources import CHUNK as GENERATOR_CHUNK
from bench.sources import GeneratorSource, ImageSource


@dataclass
class Batch:
    """Consecutive images of one size: stream index of the first, ids, uint8 N×3×H×W (CPU)."""

    offset: int
    ids: list[str]
    images: torch.Tensor


def iter_chunk(
    source: ImageSource,
    start: int,
    stop: int,
    batch_size: int,
    skips: list[tuple[str, str]],
    pool: DecodePool | None = None,
    jpeg_device: torch.device | None = None,
) -> Iterator[Batch]:
    """Batches of images `start` … `stop − 1`; undecodable entries go to `skips` as (id, reason).

    A batch holds at most `batch_size` images; a skip or a change of image size starts a new one. A strict
    source raises `DecodeError` instead of skipping. With `pool`, its workers decode. With `jpeg_device`,
    plain JPEGs are decoded there (bench.engine.device_jpeg) and their batches live on that device.
    """
    if isinstance(source, GeneratorSource):
        yield from _iter_generator_chunk(source, start, stop, batch_size)
        return
    ids = source.ids()
    pin_memory = pool is not None and pool.pin_memory
    pending: list[Run] = []
    count = 0

    def flush() -> Batch:
        first = pending[0].first
        return Batch(first, ids[first : first + count], join_runs(pending, pin_memory))

    on_device = jpeg_device is not None
    if pool is not None and pool.jpeg_on_device != on_device:
        raise ValueError("the decode pool and the chunk disagree on where JPEGs are decoded")
    pieces = pool.pieces(start, stop) if pool is not None else decode_range(source, start, stop, on_device)
    if jpeg_device is not None:
        pieces = _decode_encoded(pieces, ids, batch_size, jpeg_device, source)
    for piece in pieces:
        if isinstance(piece, Skip):
            if source.strict:
                raise DecodeError(ids[piece.index], piece.reason, piece.detail)
            skips.append((ids[piece.index], piece.reason))
            if pending:
                yield flush()
                pending, count = [], 0
            continue
        taken = 0
        while taken < len(piece):
            if pending and (piece.images.shape[1:] != pending[0].images.shape[1:] or count == batch_size):
                yield flush()
                pending, count = [], 0
            take = min(batch_size - count, len(piece) - taken)
            pending.append(Run(piece.first + taken, piece.images[taken : taken + take]))
            count += take
            taken += take
    if pending:
        yield flush()


def _decode_encoded(
    pieces: Iterator[Piece], ids: list[str], batch_size: int, device: torch.device, source: ImageSource
) -> Iterator[Run | Skip]:
    """The stream with its `Encoded` JPEGs decoded on `device`: consecutive ones (up to `batch_size`) in
    one call, each handed on as a one-image run (or a skip when even bench.decode cannot decode it)."""
    waiting: list[Encoded] = []

    def decode_waiting() -> Iterator[Run | Skip]:
        if not waiting:
            return
        for index, outcome in zip(
            [piece.index for piece in waiting],
            decode_on_device(waiting, ids, device, source.decode_log),
            strict=True,
        ):
            if isinstance(outcome, DecodeError):
                yield Skip(index, outcome.reason, outcome.detail)
            else:
                yield Run(index, outcome[1].unsqueeze(0))
        waiting.clear()

    for piece in pieces:
        if isinstance(piece, Encoded):
            waiting.append(piece)
            if len(waiting) == batch_size:
                yield from decode_waiting()
            continue
        yield from decode_waiting()
        yield piece
    yield from decode_waiting()


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
