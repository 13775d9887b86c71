"""The content cache: atomic writes survive crashes, loads verify every entry, locks exclude processes."""

from __future__ import annotations

import multiprocessing
import os
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import filelock
import numpy as np
import pytest

from bench.cache import ContentCache, _remove_if_unchanged, atomic_save_npz, atomic_write_bytes, cache_root

REPO = Path(__file__).resolve().parents[1]


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path / "here"))
    assert cache_root() == tmp_path / "here"
    monkeypatch.delenv("FDBENCH_CACHE")
    assert "fdbench" in str(cache_root())


def test_save_and_load_round_trip(tmp_path):
    cache = ContentCache("things", root=tmp_path)
    arrays = {"labels": np.arange(12, dtype=np.uint8).reshape(3, 4), "mean": np.linspace(0, 1, 5)}
    assert cache.load("abc123") is None
    path = cache.save("abc123", arrays)
    assert path == tmp_path / "things" / "abc123.npz"
    loaded = cache.load("abc123")
    assert set(loaded) == {"labels", "mean"}
    np.testing.assert_array_equal(loaded["labels"], arrays["labels"])
    assert loaded["labels"].dtype == np.uint8
    np.testing.assert_array_equal(loaded["mean"], arrays["mean"])


def test_unreadable_or_pickled_entries_are_misses(tmp_path):
    cache = ContentCache("things", root=tmp_path)
    cache.path("bad").parent.mkdir(parents=True)
    cache.path("bad").write_bytes(b"not an npz at all")
    assert cache.load("bad") is None
    np.savez(cache.path("pickled"), obj=np.array([{"a": 1}], dtype=object))
    assert cache.load("pickled") is None


@pytest.mark.parametrize("key", ["../escape", "a/b", "", ".hidden"])
def test_unsafe_keys_are_refused(tmp_path, key):
    with pytest.raises(ValueError, match="cache key"):
        ContentCache("things", root=tmp_path).path(key)


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"old contents")

    def broken_fsync(_fd):
        raise OSError("disk on fire")

    monkeypatch.setattr("os.fsync", broken_fsync)
    with pytest.raises(OSError, match="disk on fire"):
        atomic_write_bytes(target, b"new contents" * 1000)
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_crash_mid_write_leaves_no_partial_file(tmp_path):
    """A process that dies (os._exit) after writing half the data never exposes the final name."""
    target = tmp_path / "stats.npz"
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        import numpy as np
        import bench.cache as cache
        os.fsync = lambda fd: os._exit(17)   # die after the bytes are written, before the rename
        cache.atomic_save_npz({str(target)!r}, big=np.ones(1_000_000))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == 17, result.stderr.decode()
    assert not target.exists()
    leftovers = list(tmp_path.iterdir())
    assert all(path.name.startswith(".stats.npz.") for path in leftovers)
    # A later complete write succeeds and is readable.
    atomic_save_npz(target, big=np.arange(3))
    with np.load(target) as bundle:
        np.testing.assert_array_equal(bundle["big"], np.arange(3))


def _hold_lock(root: str, ready, release) -> None:
    cache = ContentCache("locks", root=root)
    with cache.lock("k1"):
        ready.set()
        release.wait(20)


def test_lock_excludes_another_process(tmp_path):
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        cache = ContentCache("locks", root=tmp_path)
        started = time.monotonic()
        with pytest.raises(filelock.Timeout), cache.lock("k1", timeout=0.3):
            pass
        assert time.monotonic() - started >= 0.25
        with cache.lock("other-key", timeout=0.3):
            pass  # a different key is free
    finally:
        release.set()
        holder.join(30)
    with ContentCache("locks", root=tmp_path).lock("k1", timeout=5):
        pass  # released once the holder exits


# ------------------------------------------------------------------------------------ verified entries
def _arrays(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "features": rng.standard_normal((40, 16)).astype(np.float32),
        "ids": np.array([f"img{i:03d}.png" for i in range(40)]),
        "membership": rng.random((40, 2)) > 0.5,
    }


def _compute_or_load(cache: ContentCache, key: str, seed: int, calls: list[str]) -> dict[str, np.ndarray]:
    """What every caller does: use the entry when sound, else compute and store it."""
    found = cache.load(key)
    if found is None:
        calls.append(key)
        found = _arrays(seed)
        cache.save(key, found)
    return found


def _member_data_offset(path: Path, member: str) -> int:
    """Byte offset of a zip member's stored data inside an `.npz` (after its local header)."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    with open(path, "rb") as handle:
        handle.seek(info.header_offset + 26)
        name_length, extra_length = struct.unpack("<HH", handle.read(4))
    return info.header_offset + 30 + name_length + extra_length


def _truncate(cache: ContentCache, key: str) -> None:
    data = cache.path(key).read_bytes()
    cache.path(key).write_bytes(data[: len(data) // 2])


def _overwrite_with_other(cache: ContentCache, key: str) -> None:
    cache.path(key).write_bytes(cache.path("other").read_bytes())


def _flip_array_byte(cache: ContentCache, key: str) -> None:
    path = cache.path(key)
    data = bytearray(path.read_bytes())
    position = _member_data_offset(path, "features.npy") + 128 + 37  # past the .npy header, inside the data
    data[position] ^= 0x40
    path.write_bytes(bytes(data))


def _rewrite_consistently(cache: ContentCache, key: str) -> None:
    """Change one value and re-save with valid zip CRCs but the old record: only the checksum can tell."""
    path = cache.path(key)
    with np.load(path) as bundle:
        arrays = {name: bundle[name] for name in bundle.files}
    arrays["features"] = arrays["features"].copy()
    arrays["features"][3, 5] += 1e-3
    np.savez(path, **arrays)


def _garbage(cache: ContentCache, key: str) -> None:
    cache.path(key).write_bytes(np.random.default_rng(5).bytes(3000))


def _empty(cache: ContentCache, key: str) -> None:
    cache.path(key).write_bytes(b"")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncate, "unreadable (BadZipFile"),
        (_overwrite_with_other, "holds the entry of another key (other)"),
        (_flip_array_byte, "unreadable (BadZipFile: Bad CRC-32"),
        (_rewrite_consistently, "checksum mismatch"),
        (_garbage, "unreadable"),
        (_empty, "unreadable"),
    ],
    ids=["truncated", "other-entry", "flipped-byte", "consistent-rewrite", "garbage", "empty"],
)
def test_damaged_entry_is_reported_discarded_and_recomputed(tmp_path, caplog, damage, reason):
    cache = ContentCache("stats", root=tmp_path)
    calls: list[str] = []
    first = _compute_or_load(cache, "target", seed=1, calls=calls)
    _compute_or_load(cache, "other", seed=2, calls=calls)
    assert calls == ["target", "other"] and cache.damaged == []
    damage(cache, "target")
    reader = ContentCache("stats", root=tmp_path)
    with caplog.at_level("WARNING", logger="fdbench.cache"):
        assert reader.load("target") is None  # never a traceback, never the damaged numbers
    assert [key for key, _ in reader.damaged] == ["target"]
    assert reader.damaged[0][1].startswith(reason), reader.damaged[0][1]
    assert "damaged" in caplog.text and "target" in caplog.text
    assert not cache.path("target").exists()  # discarded
    second = _compute_or_load(reader, "target", seed=1, calls=calls)
    assert calls == ["target", "other", "target"]  # recomputed once
    again = ContentCache("stats", root=tmp_path).load("target")
    for name in first:
        np.testing.assert_array_equal(second[name], first[name])
        np.testing.assert_array_equal(again[name], first[name])
        assert again[name].dtype == first[name].dtype
    assert reader.load("other") is not None and len(reader.damaged) == 1


def test_entry_without_checksum_is_a_silent_miss(tmp_path):
    cache = ContentCache("stats", root=tmp_path)
    cache.path("old").parent.mkdir(parents=True)
    np.savez(cache.path("old"), **_arrays(1))  # what the previous format wrote
    assert cache.load("old") is None
    assert cache.damaged == []
    assert cache.path("old").exists()  # overwritten by the next save, not deleted
    cache.save("old", _arrays(1))
    np.testing.assert_array_equal(cache.load("old")["features"], _arrays(1)["features"])


def test_reserved_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        ContentCache("stats", root=tmp_path).save("k", {"__fdbench_entry__": np.zeros(2)})
    for folder in ("weights", "manifests"):
        with pytest.raises(ValueError, match="namespace"):
            ContentCache(folder, root=tmp_path)


def test_a_fresh_entry_written_meanwhile_is_not_deleted(tmp_path):
    """A damaged entry replaced by another process between the read and the removal is kept."""
    cache = ContentCache("stats", root=tmp_path)
    cache.save("k", _arrays(1))
    seen = os.stat(cache.path("k"))
    time.sleep(0.01)
    ContentCache("stats", root=tmp_path).save("k", _arrays(2))  # a new file (new inode) under the name
    _remove_if_unchanged(cache.path("k"), seen)
    np.testing.assert_array_equal(cache.load("k")["features"], _arrays(2)["features"])
    _remove_if_unchanged(cache.path("k"), os.stat(cache.path("k")))
    assert not cache.path("k").exists()


def test_load_records_the_read_time(tmp_path):
    cache = ContentCache("stats", root=tmp_path)
    path = cache.save("k", _arrays(1))
    os.utime(path, (1_000_000, 1_000_000))
    assert cache.load("k") is not None
    assert path.stat().st_atime > time.time() - 60
    assert path.stat().st_mtime == 1_000_000


def test_engine_recomputes_a_damaged_chunk_and_gives_the_same_statistics(tmp_path):
    """End to end: damage one chunk file of a real run; the rerun reports it, recomputes it, agrees."""
    from bench.engine import EngineConfig, Variant, run_engine
    from bench.sources import TensorSource

    images = np.random.default_rng(3).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)

    def run(cache: ContentCache):
        config = EngineConfig(batch_size=4, chunk_size=4, cache=cache, progress=False)
        result = run_engine(TensorSource(images), [Variant("clean")], ["pixels-randproj"], None, config)
        return result, result.cell("clean", "pixels-randproj").stats

    first_result, first = run(ContentCache("engine", root=tmp_path))
    entries = sorted((tmp_path / "engine").glob("*.npz"))
    assert len(entries) == 3 and first_result.cache_misses == 3
    victim = entries[1]
    victim.write_bytes(victim.read_bytes()[:100])
    cache = ContentCache("engine", root=tmp_path)
    second_result, second = run(cache)
    assert [key for key, _ in cache.damaged] == [victim.stem]
    assert cache.damaged[0][1].startswith("unreadable (BadZipFile")
    assert second_result.cache_hits == 2 and second_result.cache_misses == 1
    assert second.n == first.n == 12
    np.testing.assert_array_equal(second.mean, first.mean)
    np.testing.assert_array_equal(second.m2, first.m2)
    third_cache = ContentCache("engine", root=tmp_path)
    third_result, _ = run(third_cache)
    assert third_cache.damaged == [] and third_result.cache_hits == 3
