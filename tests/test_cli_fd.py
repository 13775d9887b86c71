"""The v0 command line: `fdbench fd`, `fdbench stats merge` and `fdbench stats show`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.stats import GaussianStats
from tests.oracles import fd_sqrtm_oracle


def test_fd_between_feature_arrays_and_stats_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((300, 8)), rng.standard_normal((200, 8)) + 0.4
    np.save(tmp_path / "x.npy", x)
    GaussianStats.from_features(y).save(tmp_path / "y.npz")
    assert main(["fd", str(tmp_path / "x.npy"), str(tmp_path / "y.npz")]) == 0
    output = json.loads(capsys.readouterr().out)
    oracle = fd_sqrtm_oracle(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert output["fd"]["value"] == pytest.approx(oracle, rel=1e-9)
    assert {"mean_term", "trace_term", "n1", "n2", "d", "method", "diagnostics"} <= set(output["fd"])


def test_fd_extras_on_features(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(1)
    np.save(tmp_path / "a.npy", rng.standard_normal((60, 4)))
    np.save(tmp_path / "b.npy", rng.standard_normal((60, 4)))
    assert main(["fd", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--metrics", "kid,pr,dc"]) == 0
    output = json.loads(capsys.readouterr().out)
    assert output["kid"]["subset_size"] == 60 and output["precision_recall"]["k"] == 3
    assert output["density_coverage"]["k"] == 5


def test_stats_merge_equals_whole_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x = np.random.default_rng(2).standard_normal((90, 5)) + 3
    for index, part in enumerate(np.array_split(x, 3)):
        GaussianStats.from_features(part).save(tmp_path / f"shard{index}.npz")
    shards = [str(tmp_path / f"shard{i}.npz") for i in (2, 0, 1)]
    assert main(["stats", "merge", str(tmp_path / "all.npz"), *shards]) == 0
    merged = GaussianStats.load(tmp_path / "all.npz")
    np.testing.assert_allclose(merged.cov, np.cov(x, rowvar=False), rtol=1e-12)
    assert len(merged.provenance["merged_from"]) == 3
    capsys.readouterr()
    assert main(["stats", "show", str(tmp_path / "all.npz")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 90 and summary["d"] == 5 and summary["cov_rank"] == 5


def test_bad_inputs_exit_2_with_one_line(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", mu=np.zeros(2))
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan], [0.0, 1.0], [2.0, 2.0]]))
    np.save(tmp_path / "ok.npy", np.ones((3, 2)))
    cases = {
        ("fd", str(tmp_path / "bad.npz"), str(tmp_path / "ok.npy")): "missing ['sigma']",
        ("fd", str(tmp_path / "nan.npy"), str(tmp_path / "ok.npy")): "1 of 3 rows containing NaN",
        ("fd", str(tmp_path / "absent.npy"), str(tmp_path / "ok.npy")): "no such file",
        ("fd", str(tmp_path / "ok.npy"), str(tmp_path / "ok.npy"), "--metrics", "fid"): "unknown metric",
    }
    for argv, message in cases.items():
        completed = subprocess.run(
            [sys.executable, "-m", "bench.cli", *argv], capture_output=True, text=True, check=False
        )
        assert completed.returncode == 2, completed.stderr
        assert message in completed.stderr
        assert "Traceback" not in completed.stderr
