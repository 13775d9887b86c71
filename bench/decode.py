"""Image decoding to uint8 RGB, with every conversion counted and every unreadable file explained.

The contract (docs METHODS §5): images enter fdbench as uint8 RGB. Grayscale (and bilevel) images are
repeated into three channels; palette images are expanded; an alpha channel is dropped by compositing on
black, rounding half up (`(c·a + 127) // 255`); CMYK and YCbCr are converted by Pillow; 16-bit samples are
scaled to 8 bits with rounding (`round(v / 257)`); an EXIF orientation tag is applied. Pillow itself
reduces 16-bit colour PNGs by dropping the low byte, so those are decoded here from the raw chunks;
16-bit colour TIFFs keep Pillow's truncation and are counted as "16-bit-truncated". Each of these is
counted in a `DecodeLog`. Files that cannot be decoded raise `DecodeError` carrying one of the
`SKIP_*` reasons, which sources either record as a per-file skip or, in strict mode, re-raise.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

SKIP_EMPTY = "empty file (0 bytes)"
SKIP_NOT_IMAGE = "not an image (unrecognised format)"
SKIP_TRUNCATED = "truncated image data"
SKIP_CORRUPT = "corrupt image data"
SKIP_EXTENSION = "unsupported file extension"
SKIP_SYMLINK_LOOP = "symlink loop (not followed)"
SKIP_BROKEN_LINK = "broken symlink"
SKIP_UNSAFE_ZIP_PATH = "unsafe zip entry path (absolute or '..'; refused)"
SKIP_TOO_LARGE = "image too large (decompression-bomb limit)"

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})

_ORIENTATION_TAG = 0x0112


class DecodeError(ValueError):
    """A file that cannot be turned into an RGB image; `reason` is one of the `SKIP_*` strings."""

    def __init__(self, name: str, reason: str, detail: str = "") -> None:
        self.name = name
        self.reason = reason
        self.detail = detail
        message = f"{name}: {reason}" + (f" ({detail})" if detail else "")
        super().__init__(message)


@dataclass
class DecodeLog:
    """What happened while decoding a source: conversions counted by kind, skips listed per file."""

    conversions: Counter = field(default_factory=Counter)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    decoded: int = 0

    def skip(self, name: str, reason: str) -> None:
        """Record that `name` was left out, and why."""
        self.skipped.append((name, reason))

    def skip_counts(self) -> Counter:
        """Number of skipped files per reason."""
        return Counter(reason for _, reason in self.skipped)

    def summary(self) -> dict:
        """A JSON-ready account for the run log."""
        return {
            "decoded": self.decoded,
            "conversions": dict(sorted(self.conversions.items())),
            "skipped": [{"file": name, "reason": reason} for name, reason in self.skipped],
        }


def decode_image_bytes(data: bytes, name: str = "<bytes>", log: DecodeLog | None = None) -> np.ndarray:
    """Decode encoded image bytes into an H×W×3 uint8 RGB array, or raise `DecodeError`."""
    if len(data) == 0:
        raise DecodeError(name, SKIP_EMPTY)
    conversions: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image._fdbench_rawmode = _tile_rawmode(image)
                image._fdbench_bytes = data
                image.load()
                array = _to_rgb_array(image, conversions)
    except UnidentifiedImageError as error:
        raise DecodeError(name, SKIP_NOT_IMAGE) from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DecodeError(name, SKIP_TOO_LARGE, str(error)) from error
    except (OSError, SyntaxError, EOFError, ValueError, IndexError, TypeError) as error:
        text = str(error)
        lowered = text.lower()
        truncated = isinstance(error, EOFError) or "truncated" in lowered or "end of file" in lowered
        raise DecodeError(name, SKIP_TRUNCATED if truncated else SKIP_CORRUPT, text) from error
    if log is not None:
        log.decoded += 1
        log.conversions.update(conversions)
    return array


def _to_rgb_array(image: Image.Image, conversions: list[str]) -> np.ndarray:
    if _is_sixteen_bit_colour(image):
        return _sixteen_bit_colour(image, conversions)
    orientation = image.getexif().get(_ORIENTATION_TAG, 1)
    if orientation not in (None, 1):
        image = ImageOps.exif_transpose(image)
        conversions.append("exif-orientation")
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8).copy()
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        conversions.append("16-bit")
        conversions.append("grayscale")
        values = np.asarray(image).astype(np.float64)
        gray = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        raise ValueError("floating-point images are not supported")
    if mode in ("1", "L"):
        conversions.append("grayscale")
        gray = np.asarray(image.convert("L"), dtype=np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P":
        conversions.append("palette")
        has_alpha = "transparency" in image.info or image.palette.mode == "RGBA"
        image = image.convert("RGBA" if has_alpha else "RGB")
        if not has_alpha:
            return np.asarray(image, dtype=np.uint8).copy()
        mode = "RGBA"
    if mode in ("LA", "La", "PA"):
        conversions.append("grayscale" if mode != "PA" else "palette")
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "RGBa", "RGBX"):
        if mode == "RGBX":
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
        if mode == "RGBa":
            image = image.convert("RGBA")
        conversions.append("alpha")
        return composite_on_black(np.asarray(image, dtype=np.uint8))
    if mode == "CMYK":
        conversions.append("cmyk")
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    conversions.append(f"mode-{mode}")
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _tile_rawmode(image: Image.Image) -> str | None:
    """The raw sample layout of the first tile (e.g. 'RGB;16B'), read before Pillow converts it."""
    try:
        args = image.tile[0].args if image.tile else None
    except (AttributeError, IndexError):
        return None
    if isinstance(args, tuple):
        args = args[0] if args else None
    return args if isinstance(args, str) else None


def _is_sixteen_bit_colour(image: Image.Image) -> bool:
    """True for 16-bit-per-sample colour files, which Pillow reduces to 8 bits by dropping the low byte."""
    tile = getattr(image, "_fdbench_rawmode", None)
    return tile is not None and tile.startswith(("RGB;16", "RGBA;16"))


def _sixteen_bit_colour(image: Image.Image, conversions: list[str]) -> np.ndarray:
    conversions.append("16-bit")
    data = getattr(image, "_fdbench_bytes", None)
    if image.format == "PNG" and data is not None:
        samples = decode_png_16bit(data)
        scaled = np.clip(np.rint(samples.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
        if scaled.shape[2] == 4:
            conversions.append("alpha")
            return composite_on_black(scaled)
        return scaled
    # Other formats (16-bit TIFF): Pillow keeps the high byte, a floor instead of rounding.
    conversions.append("16-bit-truncated")
    rgb = image.convert("RGBA" if image.mode == "RGBA" else "RGB")
    return composite_on_black(np.asarray(rgb)) if rgb.mode == "RGBA" else np.asarray(rgb).copy()


def decode_png_16bit(data: bytes) -> np.ndarray:
    """Samples (H×W×C uint16) of a non-interlaced 16-bit RGB or RGBA PNG, from the raw chunks."""
    position, chunks = 8, []
    header = None
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        elif kind == b"IEND":
            break
        position += 12 + length
    if header is None:
        raise ValueError("PNG without IHDR")
    width, height, depth, colour_type, _, _, interlace = header
    channels = {2: 3, 6: 4}.get(colour_type)
    if depth != 16 or channels is None or interlace:
        raise ValueError(
            f"unsupported 16-bit PNG (depth {depth}, colour type {colour_type}, interlace {interlace})"
        )
    raw = np.frombuffer(zlib.decompress(b"".join(chunks)), dtype=np.uint8)
    stride = width * channels * 2
    if raw.size < height * (stride + 1):
        raise EOFError("PNG pixel data is truncated")
    rows = raw[: height * (stride + 1)].reshape(height, stride + 1)
    pixels = np.zeros((height, stride), dtype=np.uint8)
    previous = np.zeros(stride, dtype=np.int32)
    bpp = channels * 2
    for y in range(height):
        kind, line = rows[y, 0], rows[y, 1:].astype(np.int32)
        if kind == 0:
            current = line
        elif kind == 1:  # Sub: running sum along each byte lane
            current = np.cumsum(line.reshape(width, bpp), axis=0).reshape(-1) & 0xFF
        elif kind == 2:  # Up
            current = (line + previous) & 0xFF
        elif kind in (3, 4):  # Average, Paeth: sequential along the row
            current = np.zeros(stride, dtype=np.int32)
            left, upper_left = np.zeros(bpp, np.int32), np.zeros(bpp, np.int32)
            for x in range(0, stride, bpp):
                up = previous[x : x + bpp]
                if kind == 3:
                    predictor = (left + up) >> 1
                else:
                    estimate = left + up - upper_left
                    pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - upper_left)
                    predictor = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upper_left))
                left = (line[x : x + bpp] + predictor) & 0xFF
                current[x : x + bpp] = left
                upper_left = up
        else:
            raise ValueError(f"PNG row {y} has unknown filter type {kind}")
        pixels[y] = current
        previous = current
    return pixels.view(">u2").reshape(height, width, channels).astype(np.uint16)


def composite_on_black(rgba: np.ndarray) -> np.ndarray:
    """Drop alpha by compositing an H×W×4 uint8 image on black: `(c·a + 127) // 255` per channel."""
    colour = rgba[:, :, :3].astype(np.uint32)
    alpha = rgba[:, :, 3:4].astype(np.uint32)
    return ((colour * alpha + 127) // 255).astype(np.uint8)
