"""JPEG decoding on the engine's device: workers read the files, `torchvision.io.decode_jpeg` decodes.

On a GPU, PIL decoding in worker processes is the end-to-end bottleneck of FID (a few thousand JPEGs a
second from 16 CPUs against more than ten thousand for batched nvjpeg). With `jpeg_decoder="device"` a
worker (or the main process) only reads a file and checks its header; the main process then decodes runs
of those files in one `decode_jpeg` call on the device and hands the pixels on as ordinary runs, so
batching, ids, order and skips follow the same rules as every other decode path (bench.engine.chunks).

Only *plain* JPEGs take this route: 8-bit RGB (YCbCr) or greyscale, EXIF orientation 1, one frame, that end
with the end-of-image marker and sit within the decompression-bomb limit. Anything else (CMYK, rotated,
truncated) is decoded by bench.decode as before, with its conversions counted. If the device refuses a
run, its files are decoded one by one by bench.decode, so a corrupt file is skipped with its reason.

Pixels: on a CPU `decode_jpeg` is libjpeg-turbo, as PIL's decoder, and the pixels are identical
(tests/test_device_jpeg.py), so the cache key is unchanged. nvjpeg's inverse DCT and chroma up-sampling may
differ from libjpeg-turbo by a grey level here and there, so on a GPU the decoder enters the cache key.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from bench.decode import DecodeError, decode_image_bytes

JPEG_DECODERS = ("pil", "device")
_END_OF_IMAGE = b"\xff\xd9"
_PLAIN_MODES = ("RGB", "L")
_ORIENTATION_TAG = 0x0112


@dataclass
class Encoded:
    """A plain JPEG read but not yet decoded: its stream index, bytes, decoded shape (3, H, W) and the
    conversions bench.decode would count for it ("grayscale" for a one-channel JPEG)."""

    index: int
    data: bytes
    shape: tuple[int, int, int]
    conversions: tuple[str, ...] = ()

    def __len__(self) -> int:
        return 1


def plain_jpeg_shape(data: bytes) -> tuple[int, int, int] | None:
    """(3, H, W) when `data` is a JPEG that decodes on the device to the pixels bench.decode gives, else
    None (the file is then decoded by bench.decode). Reads the header only."""
    encoded = encoded_jpeg(0, data)
    return None if encoded is None else encoded.shape


def encoded_jpeg(index: int, data: bytes) -> Encoded | None:
    """`data` as an `Encoded` piece at stream position `index` when it is a plain JPEG, else None."""
    if not data.startswith(b"\xff\xd8") or not data.rstrip(b"\x00").endswith(_END_OF_IMAGE):
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "JPEG" or image.mode not in _PLAIN_MODES:
                return None
            if getattr(image, "n_frames", 1) > 1 or image.getexif().get(_ORIENTATION_TAG, 1) != 1:
                return None
            width, height = image.size
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and width * height > limit:
                return None
            conversions = ("grayscale",) if image.mode == "L" else ()
    except Exception:
        return None
    return Encoded(index, data, (3, height, width), conversions)


def decode_on_device(
    pieces: list[Encoded], ids: list[str], device: torch.device, log
) -> Iterator[tuple[int, torch.Tensor] | DecodeError]:
    """Each piece's pixels (3×H×W uint8 on `device`) as (index, image), in order, or the `DecodeError` of
    one bench.decode could not decode either. One batched `decode_jpeg` call; if the device refuses it,
    every piece goes through bench.decode instead. Counts each decoded image in `log`."""
    from torchvision.io import ImageReadMode, decode_jpeg

    if not pieces:
        return
    tensors = [torch.frombuffer(bytearray(piece.data), dtype=torch.uint8) for piece in pieces]
    try:
        images = decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        images = None
    if images is not None and all(tuple(im.shape) == p.shape for im, p in zip(images, pieces, strict=True)):
        log.decoded += len(pieces)
        for piece in pieces:
            log.conversions.update(piece.conversions)
        yield from ((piece.index, image) for piece, image in zip(pieces, images, strict=True))
        return
    for piece in pieces:
        try:
            array = decode_image_bytes(piece.data, ids[piece.index], log)
        except DecodeError as error:
            yield error
            continue
        yield piece.index, torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).to(device)
