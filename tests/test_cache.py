"""The content cache: atomic writes survive crashes, loads are pickle-free, locks exclude processes."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import filelock
import numpy as np
import pytest

from bench.cache import ContentCache, atomic_save_npz, atomic_write_bytes, cache_root

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
