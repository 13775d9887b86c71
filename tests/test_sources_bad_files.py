"""A folder holding every kind of bad input plus real faces: the run completes, counts each skip by its
reason, and yields exactly the images of the folder of good files alone (the same FD, to the last bit)."""

from __future__ import annotations

import io
import os
import struct
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.decode import (
    SKIP_ARCHIVE_LINK,
    SKIP_BROKEN_LINK,
    SKIP_CORRUPT,
    SKIP_DIRECTORY,
    SKIP_EMPTY,
    SKIP_EXTENSION,
    SKIP_NOT_IMAGE,
    SKIP_NOT_REGULAR,
    SKIP_SYMLINK_LOOP,
    SKIP_TOO_LARGE,
    SKIP_TRUNCATED,
    SKIP_UNSUPPORTED_MODE,
    DecodeError,
)
from bench.sources import FolderSource, TarSource, ZipSource, open_source

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file names, symlinks and FIFOs")

NON_UTF8_NAME = b"visage_\xe9.jpg"  # Latin-1 bytes: not valid UTF-8


def _encode(image: Image.Image, format_name: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format_name, **options)
    return buffer.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, depth: int, colour_type: int, rows: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    body = _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def _png_16bit_rgb(samples: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (no filtering) of H×W×3 uint16 samples."""
    height, width, _ = samples.shape
    rows = b"".join(b"\x00" + samples[y].astype(">u2").tobytes() for y in range(height))
    return _png(width, height, 16, 2, rows)


def _bomb(side: int) -> bytes:
    """A PNG declaring side × side pixels in a few hundred bytes (Pillow refuses it before inflating)."""
    return _png(side, side, 8, 0, b"\x00" * 64)


def _faces(shared_data: Path, count: int, offset: int = 0) -> list[Path]:
    folder = shared_data / "faces" / "utkface200_crop_part1"
    return sorted(folder.glob("*.jpg"))[offset : offset + count]


def _good_files(shared_data: Path) -> dict[bytes, bytes]:
    """Relative name → bytes of every readable file: real faces as they are, and faces in odd encodings."""
    faces = _faces(shared_data, 10)
    files = {f"faces/{path.name}".encode(): path.read_bytes() for path in faces[:6]}
    face = np.asarray(Image.open(faces[6]).convert("RGB"))
    files[b"odd/cmyk.jpg"] = _encode(Image.fromarray(face).convert("CMYK"), "JPEG", quality=95)
    files[b"odd/deep.png"] = _png_16bit_rgb(face.astype(np.uint16) * 257)
    palette = Image.fromarray(np.asarray(Image.open(faces[7]).convert("RGB"))).quantize(colors=64)
    files[b"odd/palette_alpha.png"] = _encode(palette, "PNG", transparency=0)
    rotated = Image.fromarray(np.ascontiguousarray(np.rot90(face, 1)))  # stored turned anticlockwise
    exif = rotated.getexif()
    exif[0x0112] = 6  # "turn 90° clockwise to display"
    files[b"odd/exif_rotated.png"] = _encode(rotated, "PNG", exif=exif.tobytes())
    files[NON_UTF8_NAME] = faces[8].read_bytes()
    files[b"odd/grey.png"] = _encode(Image.open(faces[9]).convert("L"), "PNG")
    return files


def _bad_files(shared_data: Path) -> dict[bytes, bytes]:
    """Relative name → bytes of files that must be skipped, each for a known reason."""
    real = _faces(shared_data, 1, offset=20)[0].read_bytes()
    return {
        b"bad/empty.png": b"",
        b"bad/notes.jpg": b"a text file with an image extension\n",
        b"bad/cut.jpg": real[: len(real) // 3],
        b"bad/bomb.png": _bomb(20_000),  # 400 megapixels: Pillow's error limit
        b"bad/big.png": _bomb(10_000),  # 100 megapixels: over Pillow's warning limit, refused too
        b"bad/float.tif": _encode(Image.fromarray(np.zeros((4, 4), np.float32)), "TIFF"),
        b"bad/corrupt.png": _corrupt_png(real),
        b"bad/README.txt": b"what these files are\n",
        b".hidden.png": b"",
    }


def _corrupt_png(jpeg: bytes) -> bytes:
    data = bytearray(_encode(Image.open(io.BytesIO(jpeg)).convert("RGB"), "PNG"))
    start = data.find(b"IDAT") + 200
    data[start : start + 40] = bytes(40)
    return bytes(data)


EXPECTED_FILE_SKIPS = {
    "bad/empty.png": SKIP_EMPTY,
    "bad/notes.jpg": SKIP_NOT_IMAGE,
    "bad/cut.jpg": SKIP_TRUNCATED,
    "bad/bomb.png": SKIP_TOO_LARGE,
    "bad/big.png": SKIP_TOO_LARGE,
    "bad/float.tif": SKIP_UNSUPPORTED_MODE,
    "bad/corrupt.png": SKIP_CORRUPT,
    "bad/README.txt": SKIP_EXTENSION,
}


def _write(root: Path, files: dict[bytes, bytes]) -> None:
    base = os.fsencode(root)
    for name, data in files.items():
        path = os.path.join(base, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)


@pytest.fixture(scope="module")
def folders(shared_data, tmp_path_factory):
    """(good, bad): the good files alone, and the same files among every bad kind."""
    good, bad = tmp_path_factory.mktemp("good"), tmp_path_factory.mktemp("bad")
    files = _good_files(shared_data)
    try:
        _write(good, files)
    except OSError:
        pytest.skip("this file system does not store non-UTF-8 file names")
    _write(bad, files)
    _write(bad, _bad_files(shared_data))
    os.symlink(bad, bad / "bad" / "loop")  # a folder link back to an ancestor
    os.symlink(bad / "bad" / "b.jpg", bad / "bad" / "a.jpg")  # two file links pointing at each other
    os.symlink(bad / "bad" / "a.jpg", bad / "bad" / "b.jpg")
    os.symlink(bad / "gone.jpg", bad / "bad" / "dangling.jpg")
    (bad / "bad" / "photo.jpg").mkdir()  # a folder named like an image
    os.mkfifo(bad / "bad" / "pipe.png")
    return good, bad


EXPECTED_LISTING_SKIPS = {
    "bad/loop": SKIP_SYMLINK_LOOP,
    "bad/a.jpg": SKIP_SYMLINK_LOOP,
    "bad/b.jpg": SKIP_SYMLINK_LOOP,
    "bad/dangling.jpg": SKIP_BROKEN_LINK,
    "bad/photo.jpg": SKIP_DIRECTORY,
    "bad/pipe.png": SKIP_NOT_REGULAR,
}


def _images(source) -> dict[str, bytes]:
    return {name: image.tobytes() for name, image in source.iter_images()}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))


def test_bad_folder_yields_exactly_the_good_files_and_counts_every_skip(folders):
    good, bad = folders
    good_source, bad_source = FolderSource(good), FolderSource(bad)
    good_images = _images(good_source)
    assert len(good_images) == 12
    assert _images(bad_source) == good_images  # same ids, same bytes, same order
    assert list(_images(bad_source)) == good_source.ids()
    skipped = dict(bad_source.decode_log.skipped)
    assert skipped == {**EXPECTED_FILE_SKIPS, **EXPECTED_LISTING_SKIPS}
    assert len(bad_source.decode_log.skipped) == len(skipped)  # each skip counted once
    assert bad_source.skip_counts() == {
        SKIP_BROKEN_LINK: 1,
        SKIP_CORRUPT: 1,
        SKIP_DIRECTORY: 1,
        SKIP_EMPTY: 1,
        SKIP_EXTENSION: 1,
        SKIP_NOT_IMAGE: 1,
        SKIP_NOT_REGULAR: 1,
        SKIP_SYMLINK_LOOP: 3,
        SKIP_TOO_LARGE: 2,
        SKIP_TRUNCATED: 1,
        SKIP_UNSUPPORTED_MODE: 1,
    }
    assert good_source.skip_counts() == {}
    conversions = bad_source.decode_log.conversions
    for kind in ("cmyk", "16-bit", "palette", "alpha", "exif-orientation", "grayscale"):
        assert conversions[kind] >= 1, kind


def test_odd_encodings_decode_to_the_face_they_hold(folders, shared_data):
    good, _ = folders
    face = np.asarray(Image.open(_faces(shared_data, 10)[6]).convert("RGB"))
    images = dict(FolderSource(good).iter_images())
    np.testing.assert_array_equal(images["odd/deep.png"], face)  # 16-bit v = 257·c → round(v / 257) = c
    np.testing.assert_array_equal(images["odd/exif_rotated.png"], face)  # turned upright again
    assert np.abs(images["odd/cmyk.jpg"].astype(int) - face).mean() < 4  # lossy JPEG, but the same face
    assert "visage_\\xe9.jpg" in images


def test_bad_folder_gives_the_same_statistics_and_fd_as_the_good_folder(folders, shared_data, tmp_path):
    """End to end through the engine: every bad file reported with its reason, the FD unchanged."""
    from bench.cache import ContentCache
    from bench.engine import EngineConfig, Variant, run_engine
    from bench.metrics.frechet import frechet_distance
    from bench.sources import PathListSource

    good, bad = folders
    config = EngineConfig(batch_size=8, cache=ContentCache("engine", root=tmp_path), progress=False)
    space = "pixels-randproj"

    def stats_of(source):
        result = run_engine(source, [Variant("clean")], [space], None, config)
        return result, result.cell("clean", space).stats

    reference = PathListSource(_faces(shared_data, 24, offset=30))
    _, reference_stats = stats_of(reference)
    good_result, good_stats = stats_of(FolderSource(good))
    bad_result, bad_stats = stats_of(FolderSource(bad))
    assert good_result.decode_skips == []
    assert dict(bad_result.decode_skips) == {**EXPECTED_FILE_SKIPS, **EXPECTED_LISTING_SKIPS}
    assert bad_stats.n == good_stats.n == 12
    np.testing.assert_array_equal(bad_stats.mean, good_stats.mean)
    np.testing.assert_array_equal(bad_stats.m2, good_stats.m2)
    good_fd = frechet_distance(good_stats, reference_stats).value
    assert good_fd > 0
    assert frechet_distance(bad_stats, reference_stats).value == good_fd


def test_strict_mode_makes_the_first_skip_an_error(folders):
    _, bad = folders
    with pytest.raises(DecodeError, match=r"symlink loop|broken symlink|a directory|not a regular file"):
        open_source(bad, strict=True)


def _archive_members(root: Path) -> list[tuple[str, bytes]]:
    members = []
    for dirpath, _, filenames in os.walk(os.fsencode(root)):
        for filename in filenames:
            path = os.path.join(dirpath, filename)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as handle:
                    members.append((os.fsdecode(os.path.relpath(path, os.fsencode(root))), handle.read()))
    return sorted(members)


def test_zip_of_the_bad_files_yields_the_good_images(folders, tmp_path):
    good, bad = folders
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in _archive_members(bad):
            if "\udce9" not in name:  # zip stores names as UTF-8 or cp437; no raw bytes
                archive.writestr(name, data)
    expected = {name: value for name, value in _images(FolderSource(good)).items() if "\\xe9" not in name}
    source = ZipSource(path)
    assert _images(source) == expected
    assert dict(source.decode_log.skipped) == EXPECTED_FILE_SKIPS


def test_tar_of_the_bad_folder_yields_the_good_images(folders, tmp_path):
    good, bad = folders
    path = tmp_path / "bad.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as archive:
        archive.add(bad, arcname=".")  # links, the FIFO and the folder named like an image go in as they are
    source = TarSource(path)
    assert _images(source) == _images(FolderSource(good))
    assert dict(source.decode_log.skipped) == {
        **EXPECTED_FILE_SKIPS,
        "bad/loop": SKIP_ARCHIVE_LINK,
        "bad/a.jpg": SKIP_ARCHIVE_LINK,
        "bad/b.jpg": SKIP_ARCHIVE_LINK,
        "bad/dangling.jpg": SKIP_ARCHIVE_LINK,
        "bad/photo.jpg": SKIP_DIRECTORY,
        "bad/pipe.png": SKIP_NOT_REGULAR,
    }
