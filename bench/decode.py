"""Image decoding to uint8 RGB, with every conversion counted and every unreadable file explained.

The contract (docs METHODS §5): images enter fdbench as uint8 RGB, at their stored size.

- Grayscale (and bilevel) images are repeated into three channels; palette images are expanded.
- Alpha (an alpha channel, a palette's transparency table, or a PNG colour key) is dropped by compositing
  on black, rounding half up: `(c·a + 127) // 255`.
- CMYK and YCbCr are converted by Pillow (Adobe's inverted CMYK JPEGs included).
- 16-bit samples are scaled to 8 bits with rounding, `round(v / 257)`. Pillow itself reduces 16-bit
  colour PNGs by dropping the low byte, so those (RGB, RGBA and grey+alpha, non-interlaced) are decoded
  here from the raw chunks; other 16-bit colour files (TIFF, interlaced PNG) keep Pillow's truncation and
  are counted as "16-bit-truncated".
- EXIF orientation policy: the image is turned upright as a viewer would show it. An orientation tag
  2–8 is applied to the decoded pixels (the same flips and rotations as `PIL.ImageOps.exif_transpose`),
  for every format and bit depth; any other value, or unreadable EXIF, leaves the pixels as stored.
- Multi-frame files (animated WebP, multi-page TIFF) give their first frame.

Each conversion is counted in a `DecodeLog`. Files that cannot be decoded raise `DecodeError` carrying
one of the `SKIP_*` reasons, which sources either record as a per-file skip or, when strict, re-raise:
empty, not an image, truncated, corrupt, an unsupported pixel format (floating point), more pixels than
Pillow's decompression-bomb limit (`PIL.Image.MAX_IMAGE_PIXELS`, 89.5 megapixels by default: above it
Pillow only warns, fdbench refuses), or a file larger than `MAX_FILE_BYTES`.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError

SKIP_EMPTY = "empty file (0 bytes)"
SKIP_NOT_IMAGE = "not an image (unrecognised format)"
SKIP_TRUNCATED = "truncated image data"
SKIP_CORRUPT = "corrupt image data"
SKIP_UNSUPPORTED_MODE = "unsupported pixel format"
SKIP_TOO_LARGE = "image too large (decompression-bomb limit)"
SKIP_FILE_TOO_LARGE = "file too large to read"
SKIP_EXTENSION = "unsupported file extension"
SKIP_DIRECTORY = "a directory, not an image file"
SKIP_NOT_REGULAR = "not a regular file (device, FIFO or socket)"
SKIP_UNREADABLE = "unreadable file"
SKIP_UNREADABLE_FOLDER = "unreadable folder (not listed)"
SKIP_NOT_FOUND = "file not found"
SKIP_SYMLINK_LOOP = "symlink loop (not followed)"
SKIP_BROKEN_LINK = "broken symlink"
SKIP_NAME_CLASH = "file name clashes with another after escaping its undecodable bytes"
SKIP_DUPLICATE = "listed more than once (the first is used)"
SKIP_UNSAFE_MEMBER_PATH = "unsafe archive entry path (absolute or '..'; refused)"
SKIP_ARCHIVE_LINK = "link inside an archive (not followed)"
SKIP_DUPLICATE_MEMBER = "archive entry repeated under the same name (the last is used)"
SKIP_CORRUPT_MEMBER = "corrupt archive entry"
SKIP_ARCHIVE_CUT = "archive ends early or is corrupt here (later entries unread)"

# Reasons that mean "not meant as an image" rather than "an image that failed": strict mode lets them pass.
NOT_AN_ERROR_IN_STRICT_MODE = frozenset({SKIP_EXTENSION})

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})

# Larger files are refused before they are read into memory (a 1 GiB image file holds ≥ 250 megapixels).
MAX_FILE_BYTES = 1 << 30

_ORIENTATION_TAG = 0x0112
# What Pillow and the 16-bit PNG reader raise on damaged data (after the specific cases above).
_DECODER_FAILURES = (
    OSError,
    SyntaxError,
    EOFError,
    ValueError,
    IndexError,
    TypeError,
    zlib.error,
    struct.error,
)


def has_image_extension(name: str) -> bool:
    """True when `name` ends in one of `IMAGE_EXTENSIONS` (any letter case)."""
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in IMAGE_EXTENSIONS


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
            "skip_counts": dict(sorted(self.skip_counts().items())),
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
                if getattr(image, "n_frames", 1) > 1:
                    conversions.append("multi-frame (first frame)")
                rawmode = _tile_rawmode(image)  # read before `load`, which drops the tile list
                image.load()
                orientation = _orientation(image, conversions)  # after `load`: PNG EXIF may follow pixels
                array = _to_rgb_array(image, rawmode, data, conversions)
    except UnidentifiedImageError as error:
        raise DecodeError(name, SKIP_NOT_IMAGE) from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DecodeError(name, SKIP_TOO_LARGE, str(error)) from error
    except _UnsupportedMode as error:
        raise DecodeError(name, SKIP_UNSUPPORTED_MODE, str(error)) from error
    except (
        OSError,
        SyntaxError,
        EOFError,
        ValueError,
        IndexError,
        TypeError,
        zlib.error,
        struct.error,
    ) as error:
        text = str(error)
        lowered = text.lower()
        truncated = isinstance(error, EOFError) or "truncated" in lowered or "end of file" in lowered
        raise DecodeError(name, SKIP_TRUNCATED if truncated else SKIP_CORRUPT, text) from error
    if orientation != 1:
        array = apply_orientation(array, orientation)
        conversions.append("exif-orientation")
    if log is not None:
        log.decoded += 1
        log.conversions.update(conversions)
    return array


class _UnsupportedMode(ValueError):
    """A pixel format fdbench does not turn into RGB (floating-point samples)."""


def _orientation(image: Image.Image, conversions: list[str]) -> int:
    """The EXIF orientation (1–8) to apply; 1 for none, for other values and for unreadable EXIF."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # Pillow raises many kinds on malformed EXIF; the pixels are still good
        conversions.append("exif-unreadable (orientation not applied)")
        return 1
    return value if isinstance(value, int) and 2 <= value <= 8 else 1


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored H×W×C pixels upright for EXIF `orientation` 1–8 (as `ImageOps.exif_transpose`)."""
    turned = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],  # mirrored left-right
        3: lambda a: a[::-1, ::-1],  # rotated 180°
        4: lambda a: a[::-1],  # mirrored top-bottom
        5: lambda a: a.swapaxes(0, 1),  # transposed
        6: lambda a: np.rot90(a, -1),  # stored rotated 90° anticlockwise: turn clockwise
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # transversed
        8: lambda a: np.rot90(a, 1),  # stored rotated 90° clockwise: turn anticlockwise
    }[orientation](array)
    return np.ascontiguousarray(turned)


def _to_rgb_array(image: Image.Image, rawmode: str | None, data: bytes, conversions: list[str]) -> np.ndarray:
    if rawmode is not None and rawmode.startswith(("RGB;16", "RGBA;16", "LA;16")):
        return _sixteen_bit_colour(image, data, conversions)
    mode = image.mode
    if mode in ("RGB", "L") and "transparency" in image.info:  # a PNG colour key: one colour is clear
        conversions.append("grayscale" if mode == "L" else "alpha")
        if mode == "L":
            conversions.append("alpha")
        return composite_on_black(np.asarray(image.convert("RGBA"), dtype=np.uint8))
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8).copy()
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        conversions.append("16-bit")
        conversions.append("grayscale")
        values = np.asarray(image).astype(np.float64)
        gray = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        raise _UnsupportedMode("32-bit floating-point samples")
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


def _sixteen_bit_colour(image: Image.Image, data: bytes, conversions: list[str]) -> np.ndarray:
    conversions.append("16-bit")
    samples = decode_png_16bit(data) if image.format == "PNG" else None
    if samples is not None:
        scaled = np.clip(np.rint(samples.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
        if scaled.shape[2] == 2:  # grey + alpha
            conversions.append("grayscale")
            scaled = scaled[:, :, [0, 0, 0, 1]]
        if scaled.shape[2] == 4:
            conversions.append("alpha")
            return composite_on_black(scaled)
        return scaled
    # 16-bit TIFF or interlaced PNG: Pillow keeps the high byte, a floor instead of rounding.
    conversions.append("16-bit-truncated")
    if image.mode == "LA":
        conversions.append("grayscale")
    rgb = image.convert("RGBA" if image.mode in ("RGBA", "LA") else "RGB")
    return composite_on_black(np.asarray(rgb)) if rgb.mode == "RGBA" else np.asarray(rgb).copy()


def decode_png_16bit(data: bytes) -> np.ndarray | None:
    """Samples (H×W×C uint16) of a 16-bit RGB, RGBA or grey+alpha PNG, from the raw chunks.

    None for an interlaced file (Pillow's 8-bit reduction is used for those).
    """
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
    channels = {2: 3, 4: 2, 6: 4}.get(colour_type)
    if depth != 16 or channels is None:
        raise ValueError(f"unsupported 16-bit PNG (depth {depth}, colour type {colour_type})")
    if interlace:
        return None
    stride = width * channels * 2
    # Inflate no more than the declared pixels need (their count has passed Pillow's bomb check).
    raw = np.frombuffer(zlib.decompressobj().decompress(b"".join(chunks), height * (stride + 1)), np.uint8)
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
