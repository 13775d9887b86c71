"""JPEG decoding on the device (bench.engine.device_jpeg): which files take the route, and that batches,
ids, skips and pixels equal bench.decode's path (on a CPU, decode_jpeg and PIL are both libjpeg-turbo)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.decode import DecodeLog
from bench.engine.chunks import iter_chunk
from bench.engine.device_jpeg import Encoded, decode_on_device, plain_jpeg_shape
from bench.engine.loading import DecodePool
from bench.engine.run import EngineConfig, run_engine
from bench.engine.variants import CLEAN
from bench.errors import UserError
from bench.sources import FolderSource

CPU = torch.device("cpu")


def _noise(seed: int, size: tuple[int, int] = (40, 48)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def _jpeg(array: np.ndarray, mode: str = "RGB", quality: int = 90, **save) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, "JPEG", quality=quality, **save)
    return buffer.getvalue()


def _rotated_jpeg(array: np.ndarray) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return _jpeg(array, exif=exif.tobytes())


def _corrupt_middle(data: bytes) -> bytes:
    """Entropy-coded data overwritten with marker bytes, ending still with EOI: passes the header check."""
    middle = len(data) // 2
    return data[:middle] + b"\xff\xd0" * 200 + data[middle + 400 :]


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """Plain JPEGs of two sizes around files that must go through bench.decode, and one corrupt file."""
    files = {
        "a00.jpg": _jpeg(_noise(0)),
        "a01.jpg": _jpeg(_noise(1), subsampling=0),
        "a02.jpg": _jpeg(_noise(2), mode="L"),
        "a03.jpg": _jpeg(_noise(3), mode="CMYK"),
        "a04.jpg": _rotated_jpeg(_noise(4)),
        "a05.jpg": _jpeg(_noise(5))[:-300],  # truncated
        "a06.jpg": _jpeg(_noise(6), quality=60),
        "a07.png": b"",  # empty
        "a08.jpg": _jpeg(_noise(8, (32, 32))),
        "a09.jpg": _jpeg(_noise(9, (32, 32)), progressive=True),
        "a10.jpg": _jpeg(_noise(10, (32, 32))),
        "a11.jpg": _jpeg(_noise(11)),
    }
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    png = io.BytesIO()
    Image.fromarray(_noise(12)).save(png, "PNG")
    (folder / "a12.png").write_bytes(png.getvalue())
    return folder


def test_only_plain_jpegs_take_the_device_route() -> None:
    image = _noise(0)
    assert plain_jpeg_shape(_jpeg(image)) == (3, 40, 48)
    assert plain_jpeg_shape(_jpeg(image, mode="L")) == (3, 40, 48)  # decoded to RGB, as bench.decode does
    assert plain_jpeg_shape(_jpeg(image, mode="CMYK")) is None
    assert plain_jpeg_shape(_rotated_jpeg(image)) is None
    assert plain_jpeg_shape(_jpeg(image)[:-300]) is None
    png = io.BytesIO()
    Image.fromarray(image).save(png, "PNG")
    assert plain_jpeg_shape(png.getvalue()) is None
    assert plain_jpeg_shape(b"") is None


def _batches(source: FolderSource, batch_size: int, pool: DecodePool | None, device: torch.device | None):
    skips: list[tuple[str, str]] = []
    batches = [
        (batch.offset, batch.ids, batch.images.cpu())
        for batch in iter_chunk(source, 0, len(source), batch_size, skips, pool, device)
    ]
    return batches, skips


@pytest.mark.parametrize("workers", [0, 2])
def test_device_decoding_gives_the_batches_skips_and_counts_of_pil(mixed_folder: Path, workers: int) -> None:
    plain_source = FolderSource(mixed_folder)
    expected, expected_skips = _batches(plain_source, 3, None, None)
    source = FolderSource(mixed_folder)
    pool = DecodePool(source, workers, 3, jpeg_on_device=True) if workers else None
    try:
        found, skips = _batches(source, 3, pool, CPU)
    finally:
        if pool is not None:
            pool.close()
    assert [(offset, ids) for offset, ids, _ in found] == [(offset, ids) for offset, ids, _ in expected]
    for (_, ids, pixels), (_, _, reference) in zip(found, expected, strict=True):
        assert torch.equal(pixels, reference), ids
    assert skips == expected_skips and len(skips) == 2  # the truncated and the empty file
    assert source.decode_log.decoded == plain_source.decode_log.decoded == 11
    assert source.decode_log.conversions == plain_source.decode_log.conversions
    assert plain_source.decode_log.conversions["exif-orientation"] == 1


def test_a_file_the_device_refuses_is_decoded_by_pil_or_skipped() -> None:
    good, bad = _jpeg(_noise(20)), _corrupt_middle(_jpeg(_noise(21)))
    assert plain_jpeg_shape(bad) is not None  # the header check lets it through
    pieces = [Encoded(0, good, (3, 40, 48)), Encoded(1, bad, (3, 40, 48))]
    log = DecodeLog()
    outcomes = list(decode_on_device(pieces, ["good.jpg", "bad.jpg"], CPU, log))
    index, pixels = outcomes[0]
    reference = np.asarray(Image.open(io.BytesIO(good)).convert("RGB")).transpose(2, 0, 1)
    assert index == 0 and np.array_equal(pixels.numpy(), reference)
    second = outcomes[1]
    if isinstance(second, tuple):  # libjpeg decoded the damaged stream (with warnings): PIL's pixels
        assert np.array_equal(
            second[1].numpy(), np.asarray(Image.open(io.BytesIO(bad)).convert("RGB")).transpose(2, 0, 1)
        )
    else:
        assert second.name == "bad.jpg" and second.reason


def test_engine_features_and_cache_are_shared_with_pil_on_a_cpu(mixed_folder: Path, tmp_path: Path) -> None:
    from bench.cache import ContentCache

    cache = ContentCache("engine", root=tmp_path / "cache")
    common = {"batch_size": 4, "device": "cpu", "cache": cache, "progress": False, "workers": 0}
    pil = run_engine(FolderSource(mixed_folder), [CLEAN], ["pixels-randproj"], config=EngineConfig(**common))
    device = run_engine(
        FolderSource(mixed_folder),
        [CLEAN],
        ["pixels-randproj"],
        config=EngineConfig(**{**common, "cache": False}, jpeg_decoder="device"),
    )
    first, second = pil.cell(CLEAN, "pixels-randproj"), device.cell(CLEAN, "pixels-randproj")
    assert first.ids == second.ids and len(first.ids) == 11
    assert np.array_equal(first.stats.mean, second.stats.mean)
    assert pil.decode_skips == device.decode_skips
    cached = run_engine(
        FolderSource(mixed_folder),
        [CLEAN],
        ["pixels-randproj"],
        config=EngineConfig(**common, jpeg_decoder="device"),
    )
    assert cached.cache_misses == 0 and cached.cache_hits > 0  # same pixels on a CPU: same cache entries


def test_an_unknown_jpeg_decoder_is_refused() -> None:
    with pytest.raises(UserError, match="jpeg_decoder"):
        EngineConfig(jpeg_decoder="nvjpeg")
