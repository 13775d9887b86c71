"""A worker process for dlib face descriptors; run as a script by `feature_spaces.dlib_pool`.

It reads batches of aligned 150² uint8 RGB chips from standard input (a little-endian uint64 count N, then
N × 150 × 150 × 3 bytes) and writes their N × 128 float64 descriptors to standard output (raw little-endian
bytes), until standard input closes. It imports only numpy and dlib, so it starts in well under a second
and never re-runs the parent's main module.

    python dlib_worker.py MODEL_PATH
"""

from __future__ import annotations

import sys
from typing import BinaryIO

import numpy as np

CHIP_SHAPE = (150, 150, 3)
DESCRIPTOR_DIM = 128


def read_exactly(stream: BinaryIO, size: int) -> bytes:
    """`size` bytes from `stream`; EOFError if it ends first."""
    data = bytearray()
    while len(data) < size:
        piece = stream.read(size - len(data))
        if not piece:
            raise EOFError(f"stream ended after {len(data)} of {size} bytes")
        data += piece
    return bytes(data)


def describe(encoder, chips: list[np.ndarray]) -> np.ndarray:
    """(len(chips), 128) float64 descriptors of aligned 150² uint8 RGB chips, by `encoder` in this process."""
    return np.asarray(encoder.compute_face_descriptor(chips), dtype=np.float64).reshape(
        len(chips), DESCRIPTOR_DIM
    )


def serve(model_path: str) -> None:
    import dlib

    encoder = dlib.face_recognition_model_v1(model_path)
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but arrays may reach the reply channel
    while requests.peek(1):
        count = int(np.frombuffer(read_exactly(requests, 8), dtype="<u8")[0])
        chips = np.frombuffer(read_exactly(requests, count * int(np.prod(CHIP_SHAPE))), dtype=np.uint8)
        chips = chips.reshape(count, *CHIP_SHAPE)
        replies.write(describe(encoder, list(chips)).astype("<f8", copy=False).tobytes())
        replies.flush()


if __name__ == "__main__":
    serve(sys.argv[1])
