"""Image sources: every input kind, deterministic order, size-grouped batches, manifests, counted skips."""

from __future__ import annotations

import io
import json
import os
import pickle
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.decode import (
    SKIP_ARCHIVE_CUT,
    SKIP_ARCHIVE_LINK,
    SKIP_BROKEN_LINK,
    SKIP_CORRUPT,
    SKIP_CORRUPT_MEMBER,
    SKIP_DIRECTORY,
    SKIP_DUPLICATE,
    SKIP_DUPLICATE_MEMBER,
    SKIP_EMPTY,
    SKIP_EXTENSION,
    SKIP_NAME_CLASH,
    SKIP_NOT_FOUND,
    SKIP_NOT_IMAGE,
    SKIP_NOT_REGULAR,
    SKIP_SYMLINK_LOOP,
    SKIP_TRUNCATED,
    SKIP_UNSAFE_MEMBER_PATH,
    DecodeError,
)
from bench.hashing import sha256_file
from bench.sources import (
    CHUNK,
    DCGANFacesSource,
    FolderSource,
    GeneratorSource,
    NpySource,
    NpzSource,
    PathListSource,
    TarSource,
    TensorSource,
    ZipSource,
    open_source,
    parse_generator_spec,
    resolve_input,
)
from bench.stats import GaussianStats

RNG = np.random.default_rng(1)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Folder manifests memoise file hashes in the cache: keep them out of the user's."""
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))


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
        "../escape.png": SKIP_UNSAFE_MEMBER_PATH,
        "/etc/absolute.png": SKIP_UNSAFE_MEMBER_PATH,
        "z/../../up.png": SKIP_UNSAFE_MEMBER_PATH,
        "readme.md": SKIP_EXTENSION,
    }
    assert not (tmp_path.parent / "escape.png").exists()
    with pytest.raises(DecodeError, match="unsafe archive entry"):
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
    with pytest.raises(ValueError, match=r"cannot read images from .*x\.csv: give a folder"):
        open_source(tmp_path / "x.csv")
    with pytest.raises(ValueError, match="needs a count"):
        open_source("dcgan-faces:seed=1")
    with pytest.raises(ValueError, match="bad option"):
        parse_generator_spec("dcgan-faces:count=3,size=5")
    assert parse_generator_spec("dcgan-faces:count=3, seed=7") == ("dcgan-faces", {"count": 3, "seed": 7})


def _tree_images(source) -> dict[str, bytes]:
    return {name: image.tobytes() for name, image in source.iter_images()}


def _can_make_bytes_names(folder) -> bool:
    try:
        with open(os.path.join(os.fsencode(folder), b"probe\xff"), "wb"):
            pass
    except OSError:
        return False
    os.unlink(os.path.join(os.fsencode(folder), b"probe\xff"))
    return True


def test_non_utf8_names_get_escaped_ids_that_are_stable_unique_and_json_safe(tmp_path):
    if sys.platform == "win32" or not _can_make_bytes_names(tmp_path):
        pytest.skip("this file system does not store arbitrary byte names")
    root = os.fsencode(tmp_path)
    names = (b"caf\xe9.png", b"ok.png", b"sub\xff/x.png", b"caf\\xe9.png")
    arrays = {name: random_image(8, 8) for name in names}
    os.mkdir(os.path.join(root, b"sub\xff"))
    for name, array in arrays.items():
        with open(os.path.join(root, name), "wb") as handle:
            handle.write(image_bytes(array, "PNG"))
    source = FolderSource(tmp_path)
    # The genuine name "caf\xe9.png" (with a backslash) keeps its id; the Latin-1 name escaping to the same
    # text is left out and recorded, so ids stay unique.
    assert source.ids() == ["caf\\xe9.png", "ok.png", "sub\\xff/x.png"]
    assert dict(source.scan_skips()) == {"caf\\xe9.png": SKIP_NAME_CLASH}
    assert FolderSource(tmp_path).ids() == source.ids()
    for image_id in source.ids():
        image_id.encode("utf-8")  # printable and hashable
    json.loads(json.dumps(source.ids(), ensure_ascii=False).encode("utf-8"))
    seen = _tree_images(source)
    assert seen["caf\\xe9.png"] == arrays[b"caf\\xe9.png"].tobytes()
    assert seen["sub\\xff/x.png"] == arrays[b"sub\xff/x.png"].tobytes()
    assert len(source.manifest_hash()) == 16
    assert source.path_of("sub\\xff/x.png") == Path(os.fsdecode(os.path.join(root, b"sub\xff/x.png")))


def test_directories_named_like_images_special_files_and_link_loops_are_counted(tmp_path):
    (tmp_path / "x.jpg").mkdir()
    (tmp_path / "x.jpg" / "inner.png").write_bytes(image_bytes(random_image(8, 8), "PNG"))
    (tmp_path / "plain").mkdir()
    os.symlink(tmp_path / "b.png", tmp_path / "a.png")  # a.png → b.png → a.png
    os.symlink(tmp_path / "a.png", tmp_path / "b.png")
    os.mkfifo(tmp_path / "pipe.png")  # reading it would block forever
    source = FolderSource(tmp_path)
    assert source.ids() == ["x.jpg/inner.png"]
    assert dict(source.scan_skips()) == {
        "x.jpg": SKIP_DIRECTORY,
        "a.png": SKIP_SYMLINK_LOOP,
        "b.png": SKIP_SYMLINK_LOOP,
        "pipe.png": SKIP_NOT_REGULAR,
    }
    assert source.skip_counts() == {SKIP_DIRECTORY: 1, SKIP_NOT_REGULAR: 1, SKIP_SYMLINK_LOOP: 2}
    with pytest.raises(DecodeError, match=r"a\.png: symlink loop"):
        FolderSource(tmp_path, strict=True)


def test_strict_folder_lets_other_extensions_pass_but_not_bad_images(good_folder):
    root, images = good_folder
    (root / "README.txt").write_text("about these images")
    strict = FolderSource(root, strict=True)
    assert strict.scan_skips() == [("README.txt", SKIP_EXTENSION)]
    assert sorted(name for name, _ in strict.iter_images()) == sorted(images)
    (root / "empty.png").write_bytes(b"")
    with pytest.raises(DecodeError, match=r"empty\.png: empty file"):
        list(FolderSource(root, strict=True).iter_images())


def _tar_of(folder, target, mode: str, prefix: str = "") -> None:
    with tarfile.open(target, mode) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.add(path, arcname=prefix + path.relative_to(folder).as_posix())


@pytest.mark.parametrize(("suffix", "mode"), [(".tar", "w"), (".tar.gz", "w:gz"), (".tar.xz", "w:xz")])
def test_tar_yields_the_folder_ids_and_bytes(good_folder, tmp_path_factory, suffix, mode):
    root, _ = good_folder
    target = tmp_path_factory.mktemp("tar") / f"set{suffix}"
    _tar_of(root, target, mode, prefix="./")
    source = open_source(target)
    assert isinstance(source, TarSource)
    assert source.ids() == FolderSource(root).ids()
    assert _tree_images(source) == _tree_images(FolderSource(root))
    assert source.manifest()["kind"] == "tar"
    assert [entry[1:] for entry in source.manifest()["files"]] == [
        entry[1:] for entry in FolderSource(root, hash_memo=False).manifest()["files"]
    ]
    copy = pickle.loads(pickle.dumps(source))  # worker processes get a copy that reads on its own
    np.testing.assert_array_equal(copy.load(0), source.load(0))


def _tar_member(
    archive: tarfile.TarFile, name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE
) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = "a.png"
    archive.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def test_tar_refuses_unsafe_members_links_devices_and_uses_the_last_duplicate(tmp_path):
    first, second = random_image(8, 8), random_image(8, 8)
    path = tmp_path / "odd.tar"
    with tarfile.open(path, "w") as archive:
        _tar_member(archive, "a.png", image_bytes(first, "PNG"))
        _tar_member(archive, "../up.png", image_bytes(first, "PNG"))
        _tar_member(archive, "/abs.png", image_bytes(first, "PNG"))
        _tar_member(archive, "link.png", kind=tarfile.SYMTYPE)
        _tar_member(archive, "hard.png", kind=tarfile.LNKTYPE)
        _tar_member(archive, "dev.png", kind=tarfile.CHRTYPE)
        _tar_member(archive, "folder.jpg", kind=tarfile.DIRTYPE)
        _tar_member(archive, "notes.md", b"hello")
        _tar_member(archive, ".hidden.png", b"")
        _tar_member(archive, "a.png", image_bytes(second, "PNG"))  # extraction would keep this one
    source = TarSource(path)
    assert source.ids() == ["a.png"]
    np.testing.assert_array_equal(source.load(0), second)
    assert dict(source.scan_skips()) == {
        "../up.png": SKIP_UNSAFE_MEMBER_PATH,
        "/abs.png": SKIP_UNSAFE_MEMBER_PATH,
        "link.png": SKIP_ARCHIVE_LINK,
        "hard.png": SKIP_ARCHIVE_LINK,
        "dev.png": SKIP_NOT_REGULAR,
        "folder.jpg": SKIP_DIRECTORY,
        "notes.md": SKIP_EXTENSION,
        "a.png": SKIP_DUPLICATE_MEMBER,
    }
    assert not (tmp_path.parent / "up.png").exists()
    with pytest.raises(DecodeError, match="unsafe archive entry"):
        TarSource(path, strict=True)


@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_a_cut_tar_keeps_what_it_holds_and_records_the_cut(good_folder, tmp_path_factory, mode):
    root, _ = good_folder
    whole = tmp_path_factory.mktemp("cut") / "whole.tar"
    _tar_of(root, whole, mode)
    data = whole.read_bytes()
    cut = whole.with_name("cut.tar")
    cut.write_bytes(data[: int(len(data) * 0.6)])
    source = TarSource(cut)
    complete = TarSource(whole)
    yielded = _tree_images(source)
    assert 0 < len(yielded) < len(complete)
    assert all(value == _tree_images(complete)[name] for name, value in yielded.items())
    assert [reason for _, reason in source.scan_skips()] == [SKIP_ARCHIVE_CUT]
    # A plain tar lists the member whose data the cut went through; it is skipped as corrupt.
    cut_members = [reason for _, reason in source.decode_log.skipped if reason != SKIP_ARCHIVE_CUT]
    assert cut_members in ([], [SKIP_CORRUPT_MEMBER])
    assert len(yielded) + len(cut_members) == len(source)
    junk = whole.with_name("junk.tar")
    junk.write_bytes(b"x" * 700)
    with pytest.raises(ValueError, match="not a readable tar archive"):
        TarSource(junk)


def test_zip_duplicates_links_and_folders_named_like_images(tmp_path):
    first, second = random_image(8, 8), random_image(8, 8)
    path = tmp_path / "odd.zip"
    with zipfile.ZipFile(path, "w") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        archive.writestr("a.png", image_bytes(first, "PNG"))
        archive.writestr("a.png", image_bytes(second, "PNG"))
        archive.writestr(zipfile.ZipInfo("photo.jpg/"), b"")
        link = zipfile.ZipInfo("link.png")
        link.external_attr = 0o120777 << 16
        archive.writestr(link, b"a.png")
    source = ZipSource(path)
    assert source.ids() == ["a.png"]
    np.testing.assert_array_equal(source.load(0), second)
    assert dict(source.scan_skips()) == {
        "a.png": SKIP_DUPLICATE_MEMBER,
        "photo.jpg": SKIP_DIRECTORY,
        "link.png": SKIP_ARCHIVE_LINK,
    }
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(source)).load(0), second)


def test_npy_arrays_in_every_layout(tmp_path):
    images = RNG.integers(0, 256, (4, 6, 10, 3), dtype=np.uint8)
    np.save(tmp_path / "last.npy", images)
    np.save(tmp_path / "first.npy", images.transpose(0, 3, 1, 2))
    np.save(tmp_path / "grey.npy", images[..., 0])
    for name, expected in [("last", images), ("first", images), ("grey", np.repeat(images[..., :1], 3, 3))]:
        source = open_source(tmp_path / f"{name}.npy")
        assert isinstance(source, NpySource) and source.ids() == [f"{i:06d}" for i in range(4)]
        batches = torch.cat([batch for _, batch in source.iter_batches(3)])
        np.testing.assert_array_equal(batches.permute(0, 2, 3, 1), expected)
    hashes = {open_source(tmp_path / f"{name}.npy").manifest_hash() for name in ("last", "first", "grey")}
    assert len(hashes) == 3
    np.save(tmp_path / "features.npy", RNG.standard_normal((5, 8)))
    with pytest.raises(ValueError, match="feature vectors is not an image source"):
        open_source(tmp_path / "features.npy")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"not a readable \.npy array"):
        open_source(tmp_path / "objects.npy")


def test_path_lists_from_a_file_and_from_python(good_folder, tmp_path_factory):
    root, images = good_folder
    elsewhere = tmp_path_factory.mktemp("lists")
    listing = elsewhere / "set.txt"
    absolute = root / "g.tif"
    listing.write_text(
        "# my evaluation set\n"
        f"{os.path.relpath(root / 'b/f.webp', elsewhere)}\n"
        "\n"
        f"  {absolute}  \n"
        f"{os.path.relpath(root / 'b/f.webp', elsewhere)}\n"
        "missing.png\n"
        f"{os.path.relpath(root / 'b', elsewhere)}\n"
    )
    source = open_source(f"@{listing}")
    assert isinstance(source, PathListSource)
    relative = os.path.relpath(root / "b/f.webp", elsewhere)
    assert source.ids() == [relative, str(absolute)]  # the order given, each path as written
    seen = _tree_images(source)
    assert seen == {relative: images["b/f.webp"].tobytes(), str(absolute): images["g.tif"].tobytes()}
    assert dict(source.scan_skips()) == {
        relative: SKIP_DUPLICATE,
        "missing.png": SKIP_NOT_FOUND,
        os.path.relpath(root / "b", elsewhere): SKIP_DIRECTORY,
    }
    with pytest.raises(DecodeError, match=r"f\.webp: listed more than once"):
        PathListSource.from_list_file(listing, strict=True)
    with pytest.raises(DecodeError, match=r"missing\.png: file not found"):
        PathListSource(["missing.png"], strict=True, base=elsewhere)
    from_python = open_source([root / "g.tif", str(root / "a.png")])
    assert isinstance(from_python, PathListSource)
    assert _tree_images(from_python) == {
        str(root / "g.tif"): images["g.tif"].tobytes(),
        str(root / "a.png"): images["a.png"].tobytes(),
    }
    assert from_python.manifest()["kind"] == "list"
    with pytest.raises(ValueError, match=r"write @"):
        open_source(listing)
    with pytest.raises(FileNotFoundError, match="cannot be read"):
        open_source(f"@{elsewhere / 'nope.txt'}")


def test_resolve_input_tells_images_from_statistics(tmp_path):
    features = RNG.standard_normal((50, 4))
    ours = GaussianStats.from_features(features, provenance={"space": "pixels-randproj"})
    ours.save(tmp_path / "ours.npz")
    ours.save_pytorch_fid(tmp_path / "theirs.npz")
    images = RNG.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "adm.npz", arr_0=images, mu=np.zeros(4), sigma=np.eye(4))  # ADM reference batch
    np.savez(tmp_path / "other.npz", pictures=images, labels=np.arange(3))
    for name in ("ours", "theirs"):
        resolved = resolve_input(tmp_path / f"{name}.npz")
        assert isinstance(resolved, GaussianStats)
        np.testing.assert_allclose(resolved.mean, features.mean(0), rtol=1e-12)
        np.testing.assert_allclose(resolved.cov, np.cov(features, rowvar=False), rtol=1e-12)
        with pytest.raises(ValueError, match="holds feature statistics, not images"):
            open_source(tmp_path / f"{name}.npz")
    assert resolve_input(tmp_path / "ours.npz").n == 50
    assert resolve_input(tmp_path / "ours.npz").provenance == {"space": "pixels-randproj"}
    assert isinstance(resolve_input(tmp_path / "adm.npz"), NpzSource)
    with pytest.raises(ValueError, match=r"no 'arr_0' image array.*\['labels', 'pictures'\]"):
        resolve_input(tmp_path / "other.npz")
    assert resolve_input(ours) is ours
    assert isinstance(resolve_input(str(tmp_path)), FolderSource)
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValueError, match=r"not a readable \.npz"):
        resolve_input(tmp_path / "broken.npz")


def test_open_source_takes_tensors_arrays_and_lists_of_arrays():
    images = RNG.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    for spec in (images, torch.from_numpy(images).permute(0, 3, 1, 2), list(images)):
        source = open_source(spec)
        assert isinstance(source, TensorSource)
        np.testing.assert_array_equal(np.stack([image for _, image in source.iter_images()]), images)
    with pytest.raises(TypeError, match="cannot read images from a int"):
        open_source(42)
    with pytest.raises(TypeError, match="only paths or only"):
        open_source(["a.png", images[0]])


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
