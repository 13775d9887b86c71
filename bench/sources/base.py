"""The `ImageSource` contract: uint8 RGB batches in a deterministic order, plus a manifest hash."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator

import numpy as np
import torch

from bench.decode import NOT_AN_ERROR_IN_STRICT_MODE, DecodeError, DecodeLog
from bench.hashing import stable_hash


class ImageSource(ABC):
    """A finite, ordered collection of RGB images.

    Subclasses list their entries (`ids`) and load one entry at a time (`load`). `iter_batches` groups
    consecutive images into uint8 N×3×H×W tensors; all images of a batch share one size, so a size change
    starts a new batch. Entries refused while listing (`scan_skips`: a symlink loop, an unsafe archive
    path, ...) are never candidates; candidates that cannot be decoded are skipped and recorded in
    `decode_log`. `len()` counts candidates; after a full pass `decode_log.skipped` lists every entry left
    out (decode failures, then listing refusals) and `skip_counts()` counts them by reason. Sources never
    resize.

    Strict sources raise `DecodeError` on every kind of skip except files that are plainly not meant as
    images (`NOT_AN_ERROR_IN_STRICT_MODE`: an unsupported extension such as a README beside the images).
    """

    strict: bool = False

    def __init__(self) -> None:
        self.decode_log = DecodeLog()
        self.scan_log = DecodeLog()
        self._pass_complete = False

    @abstractmethod
    def ids(self) -> list[str]:
        """Identifiers of the candidate entries, in iteration order."""

    @abstractmethod
    def load(self, index: int) -> np.ndarray:
        """The `index`-th entry as an H×W×3 uint8 array; raises `DecodeError` when unreadable."""

    @abstractmethod
    def manifest(self) -> dict:
        """JSON-ready description of exactly which bytes this source yields (cache keys build on it)."""

    def scan_skips(self) -> list[tuple[str, str]]:
        """(name, reason) of entries refused while listing (bad extension, symlink loop, unsafe path).

        They never appear in `ids()`; `iter_images` adds them to `decode_log` after its pass, and code
        that reads entries with `load` should report them too.
        """
        return list(self.scan_log.skipped)

    def skip_counts(self) -> dict[str, int]:
        """Entries left out, counted by reason: listing and decoding after a full pass, listing before."""
        skipped = self.decode_log.skipped if self._pass_complete else self.scan_log.skipped
        return dict(sorted(Counter(reason for _, reason in skipped).items()))

    def refuse(self, name: str, reason: str, where: str | None = None) -> None:
        """Record an entry left out while listing; a strict source raises `DecodeError` instead."""
        if self.strict and reason not in NOT_AN_ERROR_IN_STRICT_MODE:
            raise DecodeError(where or name, reason)
        self.scan_log.skip(name, reason)

    def manifest_hash(self) -> str:
        """Short stable hash of `manifest()`."""
        return stable_hash(self.manifest())

    def __len__(self) -> int:
        return len(self.ids())

    def iter_images(self) -> Iterator[tuple[str, np.ndarray]]:
        """Yield `(id, H×W×3 uint8)` pairs, skipping (or, when strict, raising on) unreadable entries."""
        self.decode_log = DecodeLog()
        self._pass_complete = False
        for index, image_id in enumerate(self.ids()):
            try:
                image = self.load(index)
            except DecodeError as error:
                if self.strict:
                    raise
                self.decode_log.skip(image_id, error.reason)
                continue
            yield image_id, image
        # Entries refused while listing belong in the same run log as decode failures.
        for name, reason in self.scan_skips():
            self.decode_log.skip(name, reason)
        self._pass_complete = True

    def iter_batches(self, batch_size: int) -> Iterator[tuple[list[str], torch.Tensor]]:
        """Yield `(ids, uint8 N×3×H×W)` with N ≤ `batch_size`; a change of image size starts a new batch."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        pending_ids: list[str] = []
        pending: list[np.ndarray] = []
        for image_id, image in self.iter_images():
            if pending and (image.shape != pending[0].shape or len(pending) == batch_size):
                yield pending_ids, stack_images(pending)
                pending_ids, pending = [], []
            pending_ids.append(image_id)
            pending.append(image)
        if pending:
            yield pending_ids, stack_images(pending)


def stack_images(images: list[np.ndarray]) -> torch.Tensor:
    """Stack H×W×3 uint8 arrays of one size into a contiguous uint8 N×3×H×W tensor."""
    stacked = np.stack(images, axis=0)
    return torch.from_numpy(np.ascontiguousarray(stacked.transpose(0, 3, 1, 2)))
