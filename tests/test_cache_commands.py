"""`fdbench cache verify|prune`: counts of sound and damaged entries, removal by age and size budget."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from bench.cache import ContentCache
from bench.cli import main
from bench.commands.cache import parse_size

DAY = 86400.0


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path))
    return tmp_path


def _entry(namespace: str, key: str, size: int = 100) -> Path:
    return ContentCache(namespace).save(key, {"values": np.arange(size, dtype=np.float64)})


def _read_days_ago(path: Path, days: float) -> None:
    stamp = time.time() - days * DAY
    os.utime(path, (stamp, stamp))


def test_verify_counts_sound_old_and_damaged_entries_and_deletes_on_request(cache_dir, capsys):
    for key in ("a1", "a2", "a3"):
        _entry("engine", key)
    _entry("face-parser", "p1")
    np.savez(cache_dir / "engine" / "legacy.npz", values=np.ones(3))  # the format before checksums
    (cache_dir / "engine" / "a2.npz").write_bytes((cache_dir / "engine" / "a2.npz").read_bytes()[:50])
    (cache_dir / "face-parser" / "p1.npz").write_bytes((cache_dir / "engine" / "a1.npz").read_bytes())
    (cache_dir / "weights").mkdir()
    np.savez(cache_dir / "weights" / "model.npz", w=np.ones(2))  # not a cache namespace: never touched
    assert main(["cache", "verify"]) == 1
    out = capsys.readouterr().out
    assert "engine: 2 ok, 1 damaged, 1 old format" in out
    assert "face-parser: 0 ok, 1 damaged, 0 old format" in out
    assert "damaged: engine/a2.npz: unreadable (BadZipFile" in out
    assert "damaged: face-parser/p1.npz: holds the entry of another key (a1)" in out
    assert "5 entries" in out and "2 damaged" in out and "--delete" in out
    assert (cache_dir / "engine" / "a2.npz").exists()  # verify alone changes nothing
    assert main(["cache", "verify", "--delete"]) == 1
    assert "deleted 3" in capsys.readouterr().out
    assert sorted(path.name for path in (cache_dir / "engine").glob("*.npz")) == ["a1.npz", "a3.npz"]
    assert (cache_dir / "weights" / "model.npz").exists()
    assert main(["cache", "verify"]) == 0
    assert "2 entries" in capsys.readouterr().out and ContentCache("engine").load("a1") is not None


def test_prune_by_age_by_size_and_dry_run(cache_dir, capsys):
    paths = {key: _entry("engine", key, size=1000) for key in ("new", "week", "month", "year")}
    for key, days in {"new": 0, "week": 7, "month": 30, "year": 365}.items():
        _read_days_ago(paths[key], days)
    stale = cache_dir / "engine" / ".x.npz.abc.tmp"
    stale.write_bytes(b"half a write")
    _read_days_ago(stale, 2)
    fresh_temp = cache_dir / "engine" / ".y.npz.def.tmp"
    fresh_temp.write_bytes(b"being written now")
    (cache_dir / "weights").mkdir()
    weights = cache_dir / "weights" / "old.npz"
    np.savez(weights, w=np.ones(2))
    _read_days_ago(weights, 999)

    assert main(["cache", "prune", "--older-than", "10", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would remove: engine/month.npz" in out and "would remove: engine/year.npz" in out
    assert "would remove 2 entries" in out and "+1 unfinished writes" in out
    assert all(path.exists() for path in paths.values()) and stale.exists()

    assert main(["cache", "prune", "--older-than", "10"]) == 0
    assert "removed 2 entries" in capsys.readouterr().out
    assert sorted(p.stem for p in (cache_dir / "engine").glob("*.npz")) == ["new", "week"]
    assert not stale.exists() and fresh_temp.exists() and weights.exists()

    one_entry = paths["new"].stat().st_size
    assert main(["cache", "prune", "--max-size", str(one_entry + 10)]) == 0
    out = capsys.readouterr().out
    assert "removed: engine/week.npz" in out and "kept 1 entries" in out
    assert [p.stem for p in (cache_dir / "engine").glob("*.npz")] == ["new"]


def test_a_read_keeps_an_entry_young(cache_dir):
    path = _entry("engine", "used")
    _read_days_ago(path, 30)
    assert ContentCache("engine").load("used") is not None  # reading it counts as use
    assert main(["cache", "prune", "--older-than", "10"]) == 0
    assert path.exists()


def test_prune_needs_a_rule_and_valid_sizes(cache_dir, capsys):
    assert main(["cache", "prune"]) == 2
    assert "--older-than DAYS and/or --max-size" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["cache", "prune", "--max-size", "ten gigs"])
    assert exited.value.code == 2


SIZES = [
    ("2048", 2048),
    ("500M", 500 << 20),
    ("10G", 10 << 30),
    ("1.5T", int(1.5 * 2**40)),
    ("10GiB", 10 << 30),
]


@pytest.mark.parametrize(("text", "size"), SIZES)
def test_sizes_use_binary_units(text, size):
    assert parse_size(text) == size
    assert parse_size(text.lower()) == size


def test_help_documents_exit_codes(capsys):
    for action in ("verify", "prune"):
        with pytest.raises(SystemExit):
            main(["cache", action, "--help"])
        assert "exit status" in capsys.readouterr().out
