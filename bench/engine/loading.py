"""Decoding in worker processes: torch DataLoader workers, shared memory, read-ahead, pinned batches.

Each worker decodes a *group* of consecutive entries (`ImageSource.load`, so every rule of
bench.decode holds) and sends back *pieces* in stream order: runs of consecutive same-size images stacked
into one uint8 N×3×H×W tensor (carried through shared memory), and the entries that could not be decoded
with their reason. The conversions a worker counts are added to the source's decode log in the main
process. `bench.engine.chunks` turns pieces into batches by the same rules whether they come from here or
from decoding in the main process, so ids, order, skips, batch boundaries — and the features — are those
of the serial path.

One pool serves every chunk of a run: its workers persist and read ahead into the next contiguous ranges
of the same length (the engine's usual order), at least one range and enough to fill every worker's
slots, so neither the workers nor the device wait at a chunk's end. A request that does not continue
where the pool stands (a cached chunk passed over, another rank's chunks) drops the read-ahead (the
groups in flight finish first) and starts afresh.

Worker processes are forked (Linux): the source is inherited, not pickled. Sources that keep an open file
(zip, tar) reopen it in a process whose pid differs from the one that opened it.
"""

from __future__ import annotations

import collections
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from bench.decode import DecodeError, DecodeLog
from bench.engine.device_jpeg import Encoded, encoded_jpeg
from bench.parallel import usable_cpus
from bench.sources import FolderSource, ImageSource, PathListSource, TarSource, ZipSource

MAX_GROUP = 32  # images per worker task: large enough to amortise the hand-over, small enough to spread
PREFETCH_PER_WORKER = 2  # groups in flight per worker
DECODING_SOURCES = (FolderSource, PathListSource, ZipSource, TarSource)  # sources whose `load` decodes files
MAX_AUTO_WORKERS = 32


@dataclass
class Run:
    """Consecutive decoded images of one size: the stream index of the first, uint8 N×3×H×W."""

    first: int
    images: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class Skip:
    """An entry that could not be decoded: its stream index, the `SKIP_*` reason and the detail."""

    index: int
    reason: str
    detail: str = ""


Piece = Run | Skip | Encoded  # Encoded: a plain JPEG left for the device to decode (jpeg_on_device)


@dataclass
class DecodedGroup:
    """What one worker task returns: the group's pieces in order, and what its decoding counted."""

    pieces: list[Piece]
    conversions: Counter = field(default_factory=Counter)
    decoded: int = 0


def load_entry(source: ImageSource, index: int, jpeg_on_device: bool = False) -> np.ndarray | Encoded:
    """Entry `index` decoded by bench.decode, or, with `jpeg_on_device`, read only when it is a plain JPEG
    (bench.engine.device_jpeg) for the main process to decode on the device. Raises `DecodeError`."""
    if not jpeg_on_device or not is_decoding_source(source):
        return source.load(index)
    data = source.encoded(index)
    encoded = encoded_jpeg(index, data)
    return source.decode(index, data) if encoded is None else encoded


def decode_range(source: ImageSource, start: int, stop: int, jpeg_on_device: bool = False) -> Iterator[Piece]:
    """Pieces of entries `start` … `stop − 1` decoded here, one image per run (the serial path)."""
    for index in range(start, stop):
        try:
            image = load_entry(source, index, jpeg_on_device)
        except DecodeError as error:
            yield Skip(index, error.reason, error.detail)
            continue
        yield image if isinstance(image, Encoded) else Run(index, _to_nchw([image]))


def decode_group(source: ImageSource, start: int, stop: int, jpeg_on_device: bool = False) -> DecodedGroup:
    """Entries `start` … `stop − 1` decoded into stacked runs, with this group's own decode counts."""
    own_log = DecodeLog()
    source.decode_log = own_log  # a worker's copy of the source: its counts travel back with the group
    pieces: list[Piece] = []
    pending: list[np.ndarray] = []
    first = start

    def flush() -> None:
        if pending:
            pieces.append(Run(first, _to_nchw(pending)))
            pending.clear()

    for index in range(start, stop):
        try:
            image = load_entry(source, index, jpeg_on_device)
        except DecodeError as error:
            flush()
            pieces.append(Skip(index, error.reason, error.detail))
            continue
        if isinstance(image, Encoded):
            flush()
            pieces.append(image)
            continue
        if pending and image.shape != pending[0].shape:
            flush()
        if not pending:
            first = index
        pending.append(image)
    flush()
    return DecodedGroup(pieces, own_log.conversions, own_log.decoded)


def _to_nchw(images: list[np.ndarray]) -> torch.Tensor:
    """H×W×3 uint8 arrays of one size as one contiguous uint8 N×3×H×W tensor (as `stack_images`)."""
    stacked = np.stack(images, axis=0)
    return torch.from_numpy(np.ascontiguousarray(stacked.transpose(0, 3, 1, 2)))


def join_runs(runs: list[Run], pin_memory: bool = False) -> torch.Tensor:
    """The images of consecutive runs as one batch tensor (the run itself when there is one and no pinning
    is asked for; otherwise a copy, into page-locked memory when `pin_memory`)."""
    if len(runs) == 1 and not pin_memory:
        return runs[0].images
    parts = [run.images for run in runs]
    if any(part.device.type != "cpu" for part in parts):  # decoded on the device: nothing to pin
        return torch.cat([part.to(parts[0].device) for part in parts])
    if not pin_memory:
        return torch.cat(parts)
    count = sum(len(run) for run in runs)
    out = torch.empty((count, *parts[0].shape[1:]), dtype=torch.uint8, pin_memory=True)
    return torch.cat(parts, out=out)


def is_decoding_source(source: ImageSource) -> bool:
    """True for sources whose `load` reads and decodes a file (worth decoding in workers)."""
    return isinstance(source, DECODING_SOURCES)


def auto_workers(source: ImageSource, device: torch.device, group: int) -> int:
    """The number of decoding workers chosen when none is given (never more than there are groups).

    On a GPU every CPU but one decodes (the main process feeds the device). On a CPU the network's own
    threads compute, and decoding is a few percent of the work (about 2 ms per 256² PNG against 45 ms of
    Inception on one core), so only the CPUs torch's threads leave free decode: none by default.
    """
    if not is_decoding_source(source):
        return 0
    spare = usable_cpus() - 1 if device.type != "cpu" else usable_cpus() - torch.get_num_threads()
    groups = -(-len(source) // max(1, group))
    return max(0, min(spare, MAX_AUTO_WORKERS, groups))


class _Entries(Dataset):
    """The source as a dataset of groups: item (start, stop) is `decode_group(source, start, stop)`."""

    def __init__(self, source: ImageSource, jpeg_on_device: bool) -> None:
        self.source = source
        self.jpeg_on_device = jpeg_on_device

    def __getitem__(self, span: tuple[int, int]) -> DecodedGroup:
        return decode_group(self.source, *span, jpeg_on_device=self.jpeg_on_device)


class _Schedule(Sampler):
    """The groups to hand out, in order: the requested range, then the ranges read ahead.

    Each range is cut into groups of at most `group` entries that end at the range's end. An iterator
    that can run dry and resume: the DataLoader asks for the next group only when a worker slot frees,
    and the pool never consumes more groups than were requested, so extending it later simply lets the
    stream go on.
    """

    def __init__(self, group: int) -> None:
        super().__init__()
        self.group = group
        self.position = 0
        self.ends: collections.deque[int] = collections.deque()
        self.last = 0  # the end of the last range scheduled

    def restart(self, start: int) -> None:
        self.position = self.last = start
        self.ends.clear()

    def extend(self, end: int) -> None:
        """Schedule the range from the last end scheduled to `end` (one range: its groups end there)."""
        if end > self.last:
            self.ends.append(end)
            self.last = end

    def __iter__(self) -> _Schedule:
        return self

    def __next__(self) -> tuple[int, int]:
        while self.ends and self.position >= self.ends[0]:
            self.ends.popleft()
        if not self.ends:
            raise StopIteration
        start = self.position
        self.position = min(start + self.group, self.ends[0])
        return start, self.position


class DecodePool:
    """Persistent decoding workers for one source; `pieces(start, stop)` streams a range's pieces."""

    def __init__(
        self,
        source: ImageSource,
        workers: int,
        group: int,
        pin_memory: bool = False,
        jpeg_on_device: bool = False,
    ) -> None:
        if workers < 1:
            raise ValueError(f"a decode pool needs at least one worker, got {workers}")
        self.source = source
        self.workers = workers
        self.group = max(1, min(group, MAX_GROUP))
        self.pin_memory = pin_memory
        self.jpeg_on_device = jpeg_on_device  # plain JPEGs come back as `Encoded`, for the device to decode
        self._schedule = _Schedule(self.group)
        self._loader = DataLoader(
            _Entries(source, jpeg_on_device),
            batch_size=None,
            sampler=self._schedule,
            num_workers=workers,
            collate_fn=_as_is,
            persistent_workers=True,
            prefetch_factor=PREFETCH_PER_WORKER,
            multiprocessing_context="fork",
        )
        self._stream: Iterator[DecodedGroup] | None = None
        self._next: tuple[int, int] | None = None  # the range the read-ahead covers: (start, stop)
        self.restarts = 0  # streams started afresh (the first one included)

    def pieces(self, start: int, stop: int) -> Iterator[Piece]:
        """Pieces of entries `start` … `stop − 1`, in order; decode counts go to the source's log."""
        if start >= stop:
            return
        if self._stream is None or self._next != (start, stop):  # no read-ahead, or it guessed wrong
            self._schedule.restart(start)
            self._schedule.extend(stop)
            self._stream = iter(self._loader)
            self.restarts += 1
        self._read_ahead(stop, stop - start)
        total = len(self.source)
        self._next = (stop, min(total, 2 * stop - start)) if stop < total else None
        position = start
        finished = False
        try:
            while position < stop:
                group = next(self._stream)
                self.source.decode_log.conversions.update(group.conversions)
                self.source.decode_log.decoded += group.decoded
                yield from group.pieces
                position = _end_of(group.pieces, position)
            finished = True
        finally:
            if not finished:  # abandoned midway (strict mode raised, the caller stopped): start afresh
                self._next = None

    def _read_ahead(self, stop: int, length: int) -> None:
        """Schedule contiguous ranges of `length` after `stop`, covering one range and at least every
        worker slot (`PREFETCH_PER_WORKER` groups each), so the workers never idle at a range's end."""
        slots = self.workers * PREFETCH_PER_WORKER * self.group
        total = len(self.source)
        horizon = min(total, stop + max(length, slots))
        while self._schedule.last < horizon:  # whole ranges only: a group never spans two
            self._schedule.extend(min(total, self._schedule.last + length))

    def close(self) -> None:
        """Stop the workers."""
        stream, self._stream = self._stream, None
        shutdown = getattr(stream, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        self._loader = None  # type: ignore[assignment]


def _end_of(pieces: list[Piece], position: int) -> int:
    """The stream index after a group's last entry."""
    if not pieces:
        return position
    last = pieces[-1]
    return last.index + 1 if isinstance(last, Skip | Encoded) else last.first + len(last)


def _as_is(group: DecodedGroup) -> DecodedGroup:
    return group
