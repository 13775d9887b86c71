"""Image sources: deterministic order, size-grouped batches, manifest hashes, and documented skips."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from bench.decode import (
    SKIP_BROKEN_LINK,
    SKIP_CORRUPT,
    SKIP_EMPTY,
    SKIP_EXTENSION,
    SKIP_NOT_IMAGE,
    SKIP_SYMLINK_LOOP,
    SKIP_TRUNCATED,
    SKIP_UNSAFE_ZIP_PATH,
    DecodeError,
)
from bench.hashing import sha256_file
from bench.sources import (
    CHUNK,
    DCGANFacesSource,
    FolderSource,
    GeneratorSource,
    NpzSource,
    TensorSource,
    ZipSource,
    open_source,
    parse_generator_spec,
)

RNG = np.random.default_rng(1)


def image_bytes(array: np.ndarray, format_name: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=format_name, **options)
    return buffer.getvalue()


def random_image(height: int, width: int) -> np.ndarray:
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture
def good_folder(tmp_path):
    """Five readable images (lossless formats), mixed case extensions and sizes, nested folders."""
    images = {
        "a.png": (random_image(32, 32), "PNG"),
        "b/C.BMP": (random_image(32, 32), "BMP"),
        "b/d/e.TIFF": (random_image(24, 40), "TIFF"),
        "b/f.webp": (random_image(24, 40), "WEBP"),
        "g.tif": (random_image(32, 32), "TIFF"),
    }
    for relative, (array, format_name) in images.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        options = {"lossless": True} if format_name == "WEBP" else {}
        path.write_bytes(image_bytes(array, format_name, **options))
    return tmp_path, {name: array for name, (array, _) in images.items()}


def test_folder_order_extensions_and_pixels(good_folder):
    root, images = good_folder
    source = FolderSource(root)
    assert source.ids() == sorted(images)
    assert len(source) == 5
    seen = dict(source.iter_images())
    for name, array in images.items():
        np.testing.assert_array_equal(seen[name], array)


def test_batches_split_on_size_change_and_batch_size(good_folder):
    root, images = good_folder
    batches = list(FolderSource(root).iter_batches(batch_size=2))
    # Order: a(32²) b/C(32²) | b/d/e(24×40) b/f(24×40) | g(32²)
    assert [ids for ids, _ in batches] == [["a.png", "b/C.BMP"], ["b/d/e.TIFF", "b/f.webp"], ["g.tif"]]
    for ids, batch in batches:
        assert batch.dtype == torch.uint8 and batch.shape[1] == 3
        for row, name in enumerate(ids):
            np.testing.assert_array_equal(batch[row].permute(1, 2, 0).numpy(), images[name])
    sizes = [len(ids) for ids, _ in FolderSource(root).iter_batches(batch_size=1)]
    assert sizes == [1] * 5


def test_manifest_hash_tracks_content(good_folder, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    root, _ = good_folder
    first = FolderSource(root)
    before = first.manifest_hash()
    files = first.manifest()["files"]
    assert [entry[0] for entry in files] == first.ids()
    assert files[0][1:] == [(root / "a.png").stat().st_size, sha256_file(root / "a.png")]
    assert FolderSource(root).manifest_hash() == before
    assert FolderSource(root, hash_memo=False).manifest_hash() == before
    (root / "a.png").write_bytes(image_bytes(random_image(32, 32), "PNG"))
    assert FolderSource(root).manifest_hash() != before


def test_manifest_memo_is_reused_while_size_and_mtime_hold(good_folder, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    root, _ = good_folder
    source = FolderSource(root)
    honest = source.manifest_hash()
    memo_path = source._memo_path()
    memo = json.loads(memo_path.read_text())
    memo["a.png"][2] = "0" * 64  # a remembered digest is trusted while size and mtime are unchanged
    memo_path.write_text(json.dumps(memo))
    assert FolderSource(root).manifest()["files"][0][2] == "0" * 64
    assert FolderSource(root, hash_memo=False).manifest_hash() == honest
    os.utime(root / "a.png", ns=(1, 1))  # a touched file is hashed again
    assert FolderSource(root).manifest()["files"][0][2] == sha256_file(root / "a.png")


def test_folder_with_every_bad_file_kind(good_folder):
    root, images = good_folder
    jpeg = image_bytes(random_image(64, 64), "JPEG", quality=90)
    png = bytearray(image_bytes(random_image(64, 64), "PNG"))
    start = png.find(b"IDAT") + 204
    png[start : start + 30] = bytes(30)
    (root / "bad").mkdir()
    (root / "bad/empty.png").write_bytes(b"")
    (root / "bad/text.jpg").write_text("this is not a picture\n")
    (root / "bad/truncated.jpeg").write_bytes(jpeg[:500])
    (root / "bad/corrupt.png").write_bytes(bytes(png))
    (root / "bad/notes.txt").write_text("notes")
    (root / ".hidden.png").write_bytes(b"")  # hidden: ignored silently
    os.symlink(root, root / "bad/loop")  # points back at an ancestor
    os.symlink(root / "missing.png", root / "bad/dangling.png")
    source = FolderSource(root)
    assert source.ids() == sorted(
        [*images, "bad/empty.png", "bad/text.jpg", "bad/truncated.jpeg", "bad/corrupt.png"]
    )
    yielded = [name for name, _ in source.iter_images()]
    assert yielded == sorted(images)
    assert dict(source.decode_log.skipped) == {
        "bad/empty.png": SKIP_EMPTY,
        "bad/text.jpg": SKIP_NOT_IMAGE,
        "bad/truncated.jpeg": SKIP_TRUNCATED,
        "bad/corrupt.png": SKIP_CORRUPT,
        "bad/notes.txt": SKIP_EXTENSION,
        "bad/loop": SKIP_SYMLINK_LOOP,
        "bad/dangling.png": SKIP_BROKEN_LINK,
    }
    assert len(source.decode_log.skipped) == 7
    assert dict(source.scan_skips()) == {
        "bad/notes.txt": SKIP_EXTENSION,
        "bad/loop": SKIP_SYMLINK_LOOP,
        "bad/dangling.png": SKIP_BROKEN_LINK,
    }
    summary = source.decode_log.summary()
    assert summary["decoded"] == 5 and len(summary["skipped"]) == 7
    with pytest.raises(DecodeError, match=r"bad/dangling\.png: broken symlink"):
        FolderSource(root, strict=True)
    os.unlink(root / "bad/dangling.png")
    with pytest.raises(DecodeError, match=r"bad/loop: symlink loop"):
        FolderSource(root, strict=True)
    os.unlink(root / "bad/loop")
    strict = FolderSource(root, strict=True)
    with pytest.raises(DecodeError, match=r"bad/corrupt\.png: corrupt image data"):
        list(strict.iter_batches(4))


def test_zip_source_refuses_unsafe_entries(tmp_path):
    arrays = [random_image(16, 16), random_image(16, 16)]
    path = tmp_path / "set.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo("z/2.png"), image_bytes(arrays[1], "PNG"))
        archive.writestr(zipfile.ZipInfo("1.PNG"), image_bytes(arrays[0], "PNG"))
        archive.writestr(zipfile.ZipInfo("../escape.png"), image_bytes(arrays[0], "PNG"))
        archive.writestr(zipfile.ZipInfo("/etc/absolute.png"), image_bytes(arrays[0], "PNG"))
        archive.writestr(zipfile.ZipInfo("z/../../up.png"), image_bytes(arrays[0], "PNG"))
        archive.writestr(zipfile.ZipInfo("readme.md"), b"hi")
    source = open_source(path)
    assert isinstance(source, ZipSource)
    assert source.ids() == ["1.PNG", "z/2.png"]
    batches = list(source.iter_batches(8))
    assert len(batches) == 1
    np.testing.assert_array_equal(batches[0][1].permute(0, 2, 3, 1).numpy(), np.stack(arrays))
    assert dict(source.decode_log.skipped) == {
        "../escape.png": SKIP_UNSAFE_ZIP_PATH,
        "/etc/absolute.png": SKIP_UNSAFE_ZIP_PATH,
        "z/../../up.png": SKIP_UNSAFE_ZIP_PATH,
        "readme.md": SKIP_EXTENSION,
    }
    assert not (tmp_path.parent / "escape.png").exists()
    with pytest.raises(DecodeError, match="unsafe zip entry"):
        ZipSource(path, strict=True)
    assert len(source.manifest_hash()) == 16


def test_npz_and_memory_sources_agree(tmp_path):
    images = RNG.integers(0, 256, (5, 8, 12, 3), dtype=np.uint8)
    np.savez(tmp_path / "ref.npz", arr_0=images)
    npz = open_source(tmp_path / "ref.npz")
    assert isinstance(npz, NpzSource) and len(npz) == 5
    memory = TensorSource(torch.from_numpy(images).permute(0, 3, 1, 2))
    for source in (npz, memory):
        ids, batch = zip(*source.iter_batches(2), strict=True)
        np.testing.assert_array_equal(torch.cat(batch).permute(0, 2, 3, 1).numpy(), images)
        assert [name for chunk in ids for name in chunk] == [f"{i:06d}" for i in range(5)]
    assert TensorSource(images).manifest_hash() == memory.manifest_hash()
    assert TensorSource(images[:4]).manifest_hash() != memory.manifest_hash()
    np.savez(tmp_path / "bad.npz", arr_0=images.astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        NpzSource(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="no array"):
        NpzSource(tmp_path / "ref.npz", key="images")


def test_open_source_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        open_source(tmp_path / "nowhere")
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(ValueError, match="expected a folder"):
        open_source(tmp_path / "x.csv")
    with pytest.raises(ValueError, match="needs a count"):
        open_source("dcgan-faces:seed=1")
    with pytest.raises(ValueError, match="bad option"):
        parse_generator_spec("dcgan-faces:count=3,size=5")
    assert parse_generator_spec("dcgan-faces:count=3, seed=7") == ("dcgan-faces", {"count": 3, "seed": 7})


def test_generator_rounding_rule_and_batch_independence():
    """Image i depends only on (seed, i); float output → uint8 by round((x + 1)·127.5), clamped."""

    def generate(latents: torch.Tensor) -> torch.Tensor:
        value = torch.tanh(latents[:, :1, None, None]).expand(-1, 3, 2, 2)
        return value * 1.2  # reaches beyond [-1, 1] so the clamp matters

    source = GeneratorSource(generate, latent_shape=(4,), count=CHUNK + 10, seed=3)
    full = torch.cat([batch for _, batch in source.iter_batches(CHUNK + 10)])
    pieces = torch.cat([batch for _, batch in source.iter_batches(7)])
    assert torch.equal(full, pieces)
    raw = torch.cat([generate(_chunk_latents(source, k)) for k in range(2)])[: CHUNK + 10].double().numpy()
    oracle = np.clip(np.round((raw + 1.0) * 127.5), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(full.numpy(), oracle)
    shorter = GeneratorSource(generate, latent_shape=(4,), count=5, seed=3)
    assert torch.equal(next(shorter.iter_batches(5))[1], full[:5])
    assert np.array_equal(source.load(CHUNK + 3), full[CHUNK + 3].permute(1, 2, 0).numpy())


def _chunk_latents(source: GeneratorSource, chunk: int) -> torch.Tensor:
    from bench.sources.generator import latent_chunk

    return latent_chunk(source.seed, chunk, source.latent_shape)


@pytest.fixture(scope="module")
def dcgan_images():
    source = open_source("dcgan-faces:count=80,seed=0")
    assert isinstance(source, DCGANFacesSource)
    return source, torch.cat([batch for _, batch in source.iter_batches(32)])


def test_dcgan_faces_same_seed_same_bytes(dcgan_images):
    source, images = dcgan_images
    assert images.shape == (80, 3, 64, 64) and images.dtype == torch.uint8
    again = DCGANFacesSource(count=80, seed=0)
    assert torch.cat([b for _, b in again.iter_batches(80)]).numpy().tobytes() == images.numpy().tobytes()
    fewer = DCGANFacesSource(count=10, seed=0)
    assert torch.equal(torch.cat([b for _, b in fewer.iter_batches(3)]), images[:10])
    assert again.manifest_hash() == source.manifest_hash()
    assert fewer.manifest_hash() != source.manifest_hash()
    # Faces, not noise: neighbouring pixels are strongly correlated and the images differ from each other.
    values = images.double()
    assert (values[..., 1:] - values[..., :-1]).abs().mean() < 20
    assert values.std(dim=0).mean() > 20


def test_dcgan_faces_different_seeds_differ(dcgan_images):
    source, images = dcgan_images
    other = DCGANFacesSource(count=8, seed=1)
    other_images = next(other.iter_batches(8))[1]
    assert other.manifest_hash() != source.manifest_hash()
    differences = (other_images.double() - images[:8].double()).abs().flatten(1).mean(dim=1)
    assert bool((differences > 10).all())
