"""`fdbench fd` on anything (statistics, feature arrays, image folders), `fdbench compare`, and the
statistics commands `fdbench stats merge` and `fdbench stats show`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.stats import GaussianStats
from tests.oracles import fd_sqrtm_oracle

FAST_SPACES = ("pixels-randproj", "spectrum-durall")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def faces(shared_data: Path, tmp_path: Path) -> dict[str, Path]:
    """Two folders of 20 real faces each."""
    files = sorted((shared_data / "faces" / "utkface200_crop_part1").iterdir())
    folders = {}
    for index, name in enumerate(("a", "b")):
        folders[name] = tmp_path / name
        folders[name].mkdir()
        for path in files[index * 20 : (index + 1) * 20]:
            shutil.copy(path, folders[name] / path.name)
    return folders


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_fd_between_feature_arrays_and_stats_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((300, 8)), rng.standard_normal((200, 8)) + 0.4
    np.save(tmp_path / "x.npy", x)
    GaussianStats.from_features(y).save(tmp_path / "y.npz")
    output = run_json(capsys, "fd", str(tmp_path / "x.npy"), str(tmp_path / "y.npz"))
    oracle = fd_sqrtm_oracle(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    fd = output["spaces"]["given"]["fd"]
    assert fd["value"] == pytest.approx(oracle, rel=1e-9)
    assert {"mean_term", "trace_term", "n1", "n2", "d", "method", "diagnostics"} <= set(fd)
    assert (fd["n1"], fd["n2"], output["a"]["kind"], output["b"]["kind"]) == (
        300,
        200,
        "features",
        "statistics",
    )
    assert main(["fd", str(tmp_path / "x.npy"), str(tmp_path / "y.npz"), "--method", "eigh"]) == 0
    table = capsys.readouterr().out
    assert "given" in table and f"{oracle:.6g}" in table


def test_fd_extras_on_features(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(1)
    np.save(tmp_path / "a.npy", rng.standard_normal((60, 4)))
    np.save(tmp_path / "b.npy", rng.standard_normal((60, 4)))
    output = run_json(
        capsys, "fd", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--metrics", "kid,pr,dc"
    )
    metrics = output["spaces"]["given"]
    assert metrics["kid"]["subset_size"] == 60 and metrics["kid"]["method"] == "full-set"
    assert metrics["precision_recall"]["k"] == 3 and metrics["density_coverage"]["k"] == 5


def test_fd_of_two_folders_prints_a_table_and_the_second_run_is_served_from_the_cache(
    faces: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["fd", str(faces["a"]), str(faces["b"]), "--space", FAST_SPACES[0], "--space", FAST_SPACES[1]]
    assert main([*argv, "--no-progress"]) == 0
    first = capsys.readouterr().out
    lines = first.splitlines()
    assert lines[0].split()[:5] == ["space", "FD", "mean", "term", "trace"]
    assert lines[2].startswith(FAST_SPACES[0]) and lines[3].startswith(FAST_SPACES[1])
    assert "extracted in" in first and "served from cache" not in first
    assert main([*argv, "--no-progress"]) == 0
    second = capsys.readouterr().out
    assert second.count("served from cache") == 2
    assert second.splitlines()[:4] == lines[:4]  # the same numbers
    output = run_json(capsys, *argv, "--bootstrap", "20")
    for space in FAST_SPACES:
        fd = output["spaces"][space]["fd"]
        assert (fd["n1"], fd["n2"]) == (20, 20)
        assert fd["interval"]["ci_low"] <= fd["value"] <= fd["interval"]["ci_high"]


def test_bad_files_are_counted_at_the_end_and_strict_makes_them_errors(
    faces: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    (faces["a"] / "empty.png").write_bytes(b"")
    (faces["a"] / "notes.jpg").write_text("not an image")
    assert main(["fd", str(faces["a"]), str(faces["b"]), "--space", FAST_SPACES[0], "--no-progress"]) == 0
    output = capsys.readouterr().out
    assert "A: 2 file(s) skipped" in output.splitlines()[-1] or any(
        "A: 2 file(s) skipped" in line for line in output.splitlines()
    )
    assert main(["fd", str(faces["a"]), str(faces["b"]), "--space", FAST_SPACES[0], "--strict"]) == 2
    assert "empty.png" in capsys.readouterr().err


def test_statistics_of_another_space_are_refused_naming_both_specs(
    faces: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import bench
    import feature_spaces

    saved = bench.stats(faces["a"], FAST_SPACES[0]).save(tmp_path / "a.npz")
    assert main(["fd", str(saved), str(faces["b"]), "--space", FAST_SPACES[1]]) == 2
    error = capsys.readouterr().err
    for space in FAST_SPACES:
        assert f"'{space}' (spec {feature_spaces.get(space).spec_hash})" in error
    assert main(["fd", str(saved), str(faces["b"]), "--no-progress"]) == 0  # the file's own space
    assert capsys.readouterr().out.splitlines()[2].startswith(FAST_SPACES[0])


def test_compare_prints_significance_and_writes_a_report(
    faces: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["compare", str(faces["a"]), f"same={faces['b']}", "dcgan=dcgan-faces:count=20,seed=0"]
    assert (
        main(
            [
                *argv,
                "--space",
                FAST_SPACES[0],
                "--bootstrap",
                "30",
                "--no-progress",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    output = capsys.readouterr().out
    assert "can this n tell" in output and "same − dcgan" in output
    assert (tmp_path / "r" / "report.html").is_file()
    record = run_json(capsys, *argv, "--space", FAST_SPACES[0], "--bootstrap", "30")
    (pair,) = record["pairs"]
    assert (pair["first"], pair["second"]) == ("same", "dcgan") and 0 <= pair["order_kept"] <= 1


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


def test_bad_inputs_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "bad.npz", mu=np.zeros(2))
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan], [0.0, 1.0], [2.0, 2.0]]))
    np.save(tmp_path / "ok.npy", np.ones((3, 2)))
    (tmp_path / "images").mkdir()
    cases = {
        ("fd", str(tmp_path / "bad.npz"), str(tmp_path / "ok.npy")): "missing ['sigma']",
        ("fd", str(tmp_path / "nan.npy"), str(tmp_path / "ok.npy")): "1 of 3 rows containing NaN",
        ("fd", str(tmp_path / "absent.npy"), str(tmp_path / "ok.npy")): "not found",
        ("fd", str(tmp_path / "ok.npy"), str(tmp_path / "ok.npy"), "--metrics", "fid"): "unknown metric",
        ("fd", str(tmp_path / "images"), str(tmp_path / "images")): "name a feature space",
        (
            "fd",
            str(tmp_path / "ok.npy"),
            str(tmp_path / "ok.npy"),
            "--space",
            "no-such-space",
        ): "unknown feature",
        ("compare", str(tmp_path / "images"), "g=dcgan-faces:count=4"): "name a feature space",
    }
    for argv, message in cases.items():
        assert main(list(argv)) == 2, argv  # anything but a handled error would raise here
        error = capsys.readouterr().err
        assert message in error and len(error.strip().splitlines()) == 1, error
    completed = subprocess.run(  # the console entry point: exit status 2, one line, no traceback
        [sys.executable, "-m", "bench.cli", "fd", str(tmp_path / "bad.npz"), str(tmp_path / "ok.npy")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 2 and "missing ['sigma']" in completed.stderr
    assert "Traceback" not in completed.stderr
