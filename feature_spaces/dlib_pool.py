"""dlib face descriptors computed in worker processes.

dlib's descriptor network runs on one core and holds the GIL, so threads do not help. This module spreads
aligned face chips over worker processes (`feature_spaces/dlib_worker.py`, each loading the network once and
exchanging raw arrays over pipes). The numbers are those of in-process computation: every chip goes through
the same dlib call, whose result does not depend on which other chips share the call (a test checks this).

``FDBENCH_FACE_WORKERS`` sets the number of processes (default: the usable CPUs, at most 4); 0 or 1 computes
in the calling process. Workers that cannot start or die are logged and replaced by in-process computation,
so no batch is lost.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.parallel import usable_cpus
from feature_spaces.dlib_worker import CHIP_SHAPE, DESCRIPTOR_DIM, describe, read_exactly

LOG = logging.getLogger("fdbench.faces")
ENV_WORKERS = "FDBENCH_FACE_WORKERS"
MAX_DEFAULT_WORKERS = 4
WORKER_SCRIPT = Path(__file__).with_name("dlib_worker.py")


def face_workers() -> int:
    """Worker processes for dlib descriptors: ``FDBENCH_FACE_WORKERS`` or the usable CPUs (at most 4)."""
    value = os.environ.get(ENV_WORKERS, "").strip()
    if value:
        try:
            workers = int(value)
        except ValueError:
            workers = -1
        if workers < 0:
            raise ValueError(f"{ENV_WORKERS} must be a whole number ≥ 0, got {value!r}")
        return workers
    return min(MAX_DEFAULT_WORKERS, usable_cpus())


class DescriptorComputer:
    """Descriptors of aligned face chips, spread over ``workers`` processes when more than one is asked
    for."""

    def __init__(self, model_path: Path, workers: int | None = None):
        import dlib

        self.model_path = str(model_path)
        self.workers = face_workers() if workers is None else workers
        self.encoder = dlib.face_recognition_model_v1(self.model_path)
        self._processes: list[subprocess.Popen] = []
        atexit.register(self.close)

    def __call__(self, chips: list[np.ndarray]) -> np.ndarray:
        if self.workers <= 1 or len(chips) < 2:
            return describe(self.encoder, chips)
        try:
            return self._in_workers(chips)
        except (OSError, ValueError, EOFError) as error:
            LOG.warning("dlib worker processes failed (%s); computing descriptors in this process", error)
            self.close()
            self.workers = 1
            return describe(self.encoder, chips)

    def _in_workers(self, chips: list[np.ndarray]) -> np.ndarray:
        if not self._processes:
            self._processes = [
                subprocess.Popen(
                    [sys.executable, str(WORKER_SCRIPT), self.model_path],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
                for _ in range(self.workers)
            ]
        stacked = np.stack(chips)
        if stacked.shape[1:] != CHIP_SHAPE or stacked.dtype != np.uint8:
            raise ValueError(f"dlib workers take uint8 chips of shape {CHIP_SHAPE}, got {stacked.shape}")
        parts = [part for part in np.array_split(np.arange(len(chips)), len(self._processes)) if len(part)]
        busy = self._processes[: len(parts)]
        for process, part in zip(busy, parts, strict=True):
            assert process.stdin is not None
            process.stdin.write(np.array([len(part)], dtype="<u8").tobytes())
            process.stdin.write(np.ascontiguousarray(stacked[part]).tobytes())
            process.stdin.flush()
        results = []
        for process, part in zip(busy, parts, strict=True):
            assert process.stdout is not None
            reply = read_exactly(process.stdout, len(part) * DESCRIPTOR_DIM * 8)
            descriptors = np.frombuffer(reply, dtype="<f8").astype(np.float64)
            results.append(descriptors.reshape(len(part), DESCRIPTOR_DIM))
        return np.concatenate(results)

    def close(self) -> None:
        """Stop the worker processes (closing their input ends them)."""
        processes, self._processes = self._processes, []
        for process in processes:
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
