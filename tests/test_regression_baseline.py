"""Rerun every committed baseline configuration and check it against its committed baseline, once with the
machine's own kernels and once with ATen's default (non-vectorised) kernels, so a baseline that only
holds on one instruction set cannot land (docs/regression.md).

Each configuration is run as a user runs it (`fdbench run`, then `fdbench check`) in a fresh process
with an empty cache; a failing check shows its drift report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
BASELINES = REPO / "reports" / "baselines"
NAMES = sorted(path.stem for path in BASELINES.glob("*.toml") if path.with_suffix(".json").is_file())
KERNELS = {"as-is": None, "aten-default": "default"}


def _environment(kernels: str | None, cache: Path | None = None) -> dict[str, str]:
    environment = dict(os.environ)
    if kernels is not None:
        environment["ATEN_CPU_CAPABILITY"] = kernels
    if cache is not None:
        environment["FDBENCH_CACHE"] = str(cache)
    return environment


def _fdbench(*argv: str, environment: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=environment,
        timeout=timeout,
    )


def test_every_configuration_has_a_calibrated_baseline() -> None:
    assert sorted(path.stem for path in BASELINES.glob("*.toml")) == NAMES, "a configuration lacks its .json"
    assert {"attribute_proportion_small", "generator_comparison_small", "region_blur_small"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_committed_baseline_is_calibrated_and_passes_its_own_rows(name: str, tmp_path: Path) -> None:
    """The file records its platform and calibration runs (one of them on ATen's default kernels), every
    number has a tolerance with an origin, its own rows pass, and one nudged number fails with exit 1."""
    document = json.loads((BASELINES / f"{name}.json").read_text())
    assert document["version"] == 2 and document["config"].endswith(f"reports/baselines/{name}.toml")
    assert {"cpu", "instruction_sets", "aten_capability", "torch", "threads", "device"} <= set(
        document["platform"]
    )
    runs = {run["name"]: run for run in document["calibration"]["runs"]}
    assert runs["kernels=aten-default"]["aten_capability"] == "DEFAULT" and runs["threads=1"]["threads"] == 1
    checks = [check for row in document["rows"] for check in row["checks"].values()]
    assert checks and all(check["origin"] for check in checks)
    rows = pd.DataFrame([{k: v for k, v in row.items() if k != "checks"} for row in document["rows"]])
    rows.to_csv(tmp_path / "same.csv", index=False)
    baseline = str(BASELINES / f"{name}.json")
    same = _fdbench(
        "check", str(tmp_path / "same.csv"), "--baseline", baseline, environment=_environment(None)
    )
    assert same.returncode == 0, same.stdout + same.stderr
    nudged = rows.copy()
    target = nudged.index[nudged["metric"] == "fd"][0]
    allowed = document["rows"][target]["checks"]["value"]["atol"]
    nudged.loc[target, "value"] += 2 * allowed + 1e-9 * abs(nudged.loc[target, "value"])
    nudged.to_csv(tmp_path / "nudged.csv", index=False)
    moved = _fdbench(
        "check", str(tmp_path / "nudged.csv"), "--baseline", baseline, environment=_environment(None)
    )
    assert moved.returncode == 1, moved.stdout + moved.stderr
    assert "1 drifted" in moved.stdout and "DRIFT" in moved.stdout


@pytest.mark.slow
@pytest.mark.parametrize("kernels", list(KERNELS))
@pytest.mark.parametrize("name", NAMES)
def test_committed_configuration_reproduces_its_baseline(name: str, kernels: str, tmp_path: Path) -> None:
    environment = _environment(KERNELS[kernels], tmp_path / "cache")
    probe = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
        capture_output=True,
        text=True,
        env=environment,
    )
    if kernels == "aten-default":
        assert probe.stdout.strip() == "DEFAULT", probe.stderr
    run = _fdbench(
        "run", str(BASELINES / f"{name}.toml"), "--out", str(tmp_path / "run"), environment=environment
    )
    assert run.returncode == 0, run.stderr[-4000:]
    check = _fdbench(
        "check", str(tmp_path / "run"), "--baseline", str(BASELINES / f"{name}.json"), environment=environment
    )
    assert check.returncode == 0, f"kernels {probe.stdout.strip()}:\n{check.stdout}{check.stderr}"


@pytest.mark.slow
def test_calibrate_reruns_every_honest_variation_and_the_baseline_holds(tmp_path: Path) -> None:
    """`fdbench baseline save --calibrate` on a small configuration: each variation really ran as stated
    (its process reports the kernels and threads it used), every number got a tolerance, and a fresh run
    of the configuration passes the check."""
    import shutil

    for folder in ("base", "cf_pixelated"):
        (tmp_path / folder).mkdir()
        for image in sorted((BASELINES / "data" / "faces" / folder).glob("*.png"))[:12]:
            shutil.copy(image, tmp_path / folder / image.name)
    config = tmp_path / "small.toml"
    config.write_text(
        'experiment = "generator_comparison"\n[config]\n'
        f'reference = "{tmp_path / "base"}"\nspaces = ["pixels-randproj"]\n'
        f'metrics = ["fd"]\nbatch_size = 8\n[config.generators]\npixelated = "{tmp_path / "cf_pixelated"}"\n'
    )
    baseline = tmp_path / "small.json"
    environment = _environment(None, tmp_path / "cache")
    saved = _fdbench("baseline", "save", "--calibrate", str(config), str(baseline), environment=environment)
    assert saved.returncode == 0, saved.stdout + saved.stderr
    assert "largest relative difference from the reference run" in saved.stdout
    document = json.loads(baseline.read_text())
    runs = {run["name"]: run for run in document["calibration"]["runs"]}
    assert list(runs) == ["reference", "kernels=aten-default", "kernels=oldest", "threads=1", "batch=6"]
    assert runs["reference"]["aten_capability"] == document["platform"]["aten_capability"] != "DEFAULT"
    assert (
        runs["kernels=aten-default"]["aten_capability"]
        == runs["kernels=oldest"]["aten_capability"]
        == "DEFAULT"
    )
    assert runs["kernels=oldest"]["environment"]["MKL_ENABLE_INSTRUCTIONS"] == "SSE4_2"
    assert runs["threads=1"]["threads"] == 1 and runs["batch=6"]["batch_size"] == 6
    assert len(document["rows"]) == 3 and all(
        set(row["checks"]) >= {"value", "n"} for row in document["rows"]
    )
    # a float64 projection of fixed pixels comes out bit-identical under every variation: the floor applies
    value = document["rows"][0]["checks"]["value"]
    assert value["spread"] == 0 and value["origin"] == "floor 1e-07 × |value| (identical in 4 variations)"
    assert value["atol"] == pytest.approx(1e-7 * abs(document["rows"][0]["value"]))
    run = _fdbench("run", str(config), "--out", str(tmp_path / "run"), environment=environment)
    assert run.returncode == 0, run.stderr[-3000:]
    check = _fdbench("check", str(tmp_path / "run"), "--baseline", str(baseline), environment=environment)
    assert check.returncode == 0, check.stdout + check.stderr
