"""Decoding contract (METHODS §5): every colour mode becomes uint8 RGB, counted; bad bytes get a reason."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from bench.decode import (
    SKIP_CORRUPT,
    SKIP_EMPTY,
    SKIP_NOT_IMAGE,
    SKIP_TOO_LARGE,
    SKIP_TRUNCATED,
    SKIP_UNSUPPORTED_MODE,
    DecodeError,
    DecodeLog,
    apply_orientation,
    composite_on_black,
    decode_image_bytes,
)

RNG = np.random.default_rng(0)


def encode(image: Image.Image, format_name: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format_name, **options)
    return buffer.getvalue()


def test_rgb_passes_through_unchanged():
    array = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    log = DecodeLog()
    out = decode_image_bytes(encode(Image.fromarray(array)), "x.png", log)
    np.testing.assert_array_equal(out, array)
    assert out.dtype == np.uint8 and log.decoded == 1 and not log.conversions


def test_grayscale_is_repeated_into_three_channels():
    gray = RNG.integers(0, 256, (16, 12), dtype=np.uint8)
    log = DecodeLog()
    out = decode_image_bytes(encode(Image.fromarray(gray, "L")), "g.png", log)
    np.testing.assert_array_equal(out, np.stack([gray] * 3, axis=2))
    assert log.conversions == {"grayscale": 1}


def test_sixteen_bit_is_scaled_with_rounding():
    values = np.array([[0, 128, 129, 257, 32896, 65535]], dtype=np.uint16)
    log = DecodeLog()
    out = decode_image_bytes(encode(Image.fromarray(values)), "d.png", log)
    expected = np.clip(np.floor(values / 257.0 + 0.5), 0, 255).astype(np.uint8)  # here no exact halves
    np.testing.assert_array_equal(out[..., 0], expected)
    assert list(expected[0]) == [0, 0, 1, 1, 128, 255]
    assert log.conversions["16-bit"] == 1


def test_rgba_is_composited_on_black():
    rgba = RNG.integers(0, 256, (8, 9, 4), dtype=np.uint8)
    log = DecodeLog()
    out = decode_image_bytes(encode(Image.fromarray(rgba, "RGBA")), "a.png", log)
    oracle = np.floor(rgba[..., :3].astype(np.float64) * rgba[..., 3:] / 255.0 + 0.5)
    np.testing.assert_array_equal(out, oracle.astype(np.uint8))
    assert log.conversions == {"alpha": 1}
    opaque = rgba.copy()
    opaque[..., 3] = 255
    np.testing.assert_array_equal(composite_on_black(opaque), opaque[..., :3])


def test_palette_with_and_without_transparency():
    array = RNG.integers(0, 256, (10, 10, 3), dtype=np.uint8)
    palette_image = Image.fromarray(array).quantize(colors=16)
    expected = np.asarray(palette_image.convert("RGB"))
    log = DecodeLog()
    np.testing.assert_array_equal(decode_image_bytes(encode(palette_image), "p.png", log), expected)
    palette_image.info["transparency"] = 0
    out = decode_image_bytes(encode(palette_image, transparency=0), "pt.png", log)
    index = np.asarray(palette_image)
    np.testing.assert_array_equal(out[index == 0], 0)
    np.testing.assert_array_equal(out[index != 0], expected[index != 0])
    assert log.conversions["palette"] == 2 and log.conversions["alpha"] == 1


def test_cmyk_is_converted():
    cmyk = Image.fromarray(RNG.integers(0, 256, (8, 8, 4), dtype=np.uint8), "CMYK")
    log = DecodeLog()
    out = decode_image_bytes(encode(cmyk, "TIFF"), "c.tif", log)
    c, m, y, k = (np.asarray(cmyk, dtype=np.float64)[..., i] for i in range(4))
    # Pillow ≥ 11 converts CMYK as R = (255 − C)(255 − K)/255 rounded, and likewise for G and B.
    oracle = np.stack([(255 - v) * (255 - k) / 255.0 for v in (c, m, y)], axis=2)
    np.testing.assert_array_equal(out, np.floor(oracle + 0.5).astype(np.uint8))
    assert log.conversions == {"cmyk": 1}


def test_exif_orientation_is_applied():
    array = np.zeros((10, 20, 3), dtype=np.uint8)
    array[0, 0] = (255, 0, 0)  # red marker at top-left of the stored pixels
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # stored image must be rotated 90° clockwise for display
    log = DecodeLog()
    out = decode_image_bytes(encode(image, "PNG", exif=exif.tobytes()), "o.png", log)
    assert out.shape == (20, 10, 3)
    np.testing.assert_array_equal(out, np.rot90(array, k=-1))
    assert log.conversions == {"exif-orientation": 1}


def _corrupt_png_bytes() -> bytes:
    """A PNG whose compressed pixel data is overwritten with zeros (headers intact)."""
    data = bytearray(encode(Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8))))
    start = data.find(b"IDAT") + 4 + 200
    data[start : start + 30] = bytes(30)
    return bytes(data)


def _jpeg_bytes() -> bytes:
    return encode(Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "JPEG", quality=90)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", SKIP_EMPTY),
        (b"hello, this is a text file\n" * 4, SKIP_NOT_IMAGE),
        (_jpeg_bytes()[:600], SKIP_TRUNCATED),
        (encode(Image.fromarray(np.zeros((64, 64, 3), np.uint8)))[:60], SKIP_TRUNCATED),
        (_corrupt_png_bytes(), SKIP_CORRUPT),
    ],
    ids=["empty", "text", "truncated-jpeg", "truncated-png", "corrupt-png"],
)
def test_bad_bytes_raise_with_reason(data, reason):
    with pytest.raises(DecodeError) as caught:
        decode_image_bytes(data, "bad.jpg")
    assert caught.value.reason == reason
    assert "bad.jpg" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def _png_16bit(samples: np.ndarray, filters: list[int]) -> bytes:
    """Encode H×W×C uint16 samples as a 16-bit PNG using the given per-row filter types (forward filters)."""
    import struct
    import zlib

    height, width, channels = samples.shape
    data = samples.astype(">u2").view(np.uint8).reshape(height, width * channels * 2).astype(np.int64)
    bpp = channels * 2
    rows = []
    for y in range(height):
        line = data[y]
        up = data[y - 1] if y else np.zeros_like(line)
        left = np.concatenate([np.zeros(bpp, np.int64), line[:-bpp]])
        upper_left = np.concatenate([np.zeros(bpp, np.int64), up[:-bpp]])
        kind = filters[y % len(filters)]
        if kind == 0:
            predictor = np.zeros_like(line)
        elif kind == 1:
            predictor = left
        elif kind == 2:
            predictor = up
        elif kind == 3:
            predictor = (left + up) // 2
        else:
            estimate = left + up - upper_left
            pa, pb, pc = np.abs(estimate - left), np.abs(estimate - up), np.abs(estimate - upper_left)
            predictor = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upper_left))
        rows.append(bytes([kind]) + ((line - predictor) % 256).astype(np.uint8).tobytes())

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    colour_type = {3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    body = zlib.compress(b"".join(rows))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


@pytest.mark.parametrize("channels", [3, 4])
def test_sixteen_bit_colour_png_is_rounded_not_truncated(channels):
    samples = RNG.integers(0, 65536, (7, 9, channels), dtype=np.uint16)
    samples[0, 0, :3] = 383  # 383 / 257 = 1.49 → 1; the high byte alone also gives 1
    samples[0, 1, :3] = 460  # 460 / 257 = 1.79 → 2, where dropping the low byte would give 1
    log = DecodeLog()
    out = decode_image_bytes(_png_16bit(samples, filters=[0, 1, 2, 3, 4]), "deep.png", log)
    eight = np.floor(samples.astype(np.float64) / 257.0 + 0.5)
    if channels == 4:
        eight = np.floor(eight[..., :3] * eight[..., 3:] / 255.0 + 0.5)
        assert log.conversions["alpha"] == 1
    np.testing.assert_array_equal(out, eight.astype(np.uint8))
    if channels == 3:
        assert out[0, 1, 0] == 2
    assert log.conversions["16-bit"] == 1


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _with_exif_chunk(png: bytes, exif: bytes) -> bytes:
    """Insert an eXIf chunk right after IHDR (8-byte signature + 25-byte IHDR chunk)."""
    return png[:33] + _png_chunk(b"eXIf", exif) + png[33:]


def _orientation_exif(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillows_transpose(orientation):
    array = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    data = encode(Image.fromarray(array), "PNG", exif=_orientation_exif(orientation))
    log = DecodeLog()
    out = decode_image_bytes(data, "o.png", log)
    oracle = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    np.testing.assert_array_equal(out, oracle)
    assert log.conversions.get("exif-orientation", 0) == (orientation != 1)


def test_exif_orientation_is_applied_to_sixteen_bit_colour_too():
    samples = RNG.integers(0, 65536, (6, 4, 3), dtype=np.uint16)
    data = _with_exif_chunk(_png_16bit(samples, filters=[0]), _orientation_exif(8))
    log = DecodeLog()
    out = decode_image_bytes(data, "deep.png", log)
    eight = np.floor(samples.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(out, np.rot90(eight, 1))  # 8: turn 90° anticlockwise for display
    assert log.conversions["16-bit"] == 1 and log.conversions["exif-orientation"] == 1


def test_unreadable_or_invalid_exif_leaves_pixels_as_stored():
    array = RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    for exif in (b"Exif\x00\x00not a tiff header", _orientation_exif(9)):
        out = decode_image_bytes(encode(Image.fromarray(array), "PNG", exif=exif), "e.png")
        np.testing.assert_array_equal(out, array)


def test_palette_with_an_alpha_table_is_composited_per_entry():
    index = RNG.integers(0, 4, (6, 9), dtype=np.uint8)
    colours = np.array([[250, 10, 10], [10, 250, 10], [10, 10, 250], [200, 200, 200]], dtype=np.uint8)
    alphas = np.array([0, 100, 201, 255], dtype=np.uint8)
    image = Image.fromarray(index, "P")
    image.putpalette(colours.reshape(-1).tolist())
    log = DecodeLog()
    out = decode_image_bytes(encode(image, "PNG", transparency=alphas.tobytes()), "pa.png", log)
    rgb, alpha = colours[index].astype(np.float64), alphas[index][..., None].astype(np.float64)
    np.testing.assert_array_equal(out, np.floor(rgb * alpha / 255.0 + 0.5).astype(np.uint8))
    assert log.conversions == {"palette": 1, "alpha": 1}


def test_rgb_colour_key_transparency_becomes_black():
    array = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    array[2, 3] = array[5, 1] = (1, 2, 3)
    out = decode_image_bytes(encode(Image.fromarray(array), "PNG", transparency=(1, 2, 3)), "key.png")
    expected = array.copy()
    expected[2, 3] = expected[5, 1] = 0
    np.testing.assert_array_equal(out, expected)


def test_sixteen_bit_grey_with_alpha_is_rounded_then_composited():
    samples = RNG.integers(0, 65536, (5, 6, 2), dtype=np.uint16)
    rows = b"".join(b"\x00" + samples[y].astype(">u2").tobytes() for y in range(5))
    header = struct.pack(">IIBBBBB", 6, 5, 16, 4, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows))
        + _png_chunk(b"IEND", b"")
    )
    log = DecodeLog()
    out = decode_image_bytes(data, "la16.png", log)
    eight = np.floor(samples.astype(np.float64) / 257.0 + 0.5)
    grey = np.floor(eight[..., :1] * eight[..., 1:] / 255.0 + 0.5)
    np.testing.assert_array_equal(out, np.repeat(grey, 3, axis=2).astype(np.uint8))
    assert log.conversions["16-bit"] == 1 and log.conversions["alpha"] == 1


@pytest.mark.parametrize("side", [10_000, 20_000], ids=["over-warning-limit", "over-error-limit"])
def test_decompression_bombs_are_refused_before_inflating(side):
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", b"x" * 50)
    with pytest.raises(DecodeError) as caught:
        decode_image_bytes(data, "bomb.png")
    assert caught.value.reason == SKIP_TOO_LARGE


def test_floating_point_images_are_an_unsupported_format():
    data = encode(Image.fromarray(RNG.random((4, 4)).astype(np.float32)), "TIFF")
    with pytest.raises(DecodeError) as caught:
        decode_image_bytes(data, "f.tif")
    assert caught.value.reason == SKIP_UNSUPPORTED_MODE


def test_multi_frame_files_give_their_first_frame():
    frames = [Image.fromarray(np.full((4, 4, 3), 40 * (i + 1), np.uint8)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    log = DecodeLog()
    out = decode_image_bytes(buffer.getvalue(), "anim.webp", log)
    np.testing.assert_array_equal(out, np.asarray(frames[0]))
    assert log.conversions == {"multi-frame (first frame)": 1}


def test_apply_orientation_is_its_own_inverse_where_it_should_be():
    array = RNG.integers(0, 256, (3, 5, 3), dtype=np.uint8)
    for orientation in (1, 2, 3, 4, 5, 7):  # mirrors, 180° and the two transposes undo themselves
        np.testing.assert_array_equal(
            apply_orientation(apply_orientation(array, orientation), orientation), array
        )
    np.testing.assert_array_equal(apply_orientation(apply_orientation(array, 6), 8), array)
