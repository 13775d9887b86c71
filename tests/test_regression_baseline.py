"""Rerun the committed small region-blur configuration and check it against its committed baseline.

The baseline (reports/baselines/region_blur_small.json) was saved from an earlier run of the same
configuration; a metric drifting beyond its stored tolerance fails CI with the diff table in the output.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "reports" / "baselines" / "region_blur_small.toml"
BASELINE = REPO / "reports" / "baselines" / "region_blur_small.json"


@pytest.mark.slow
def test_small_region_blur_run_matches_committed_baseline(tmp_path: Path) -> None:
    env = {"FDBENCH_CACHE": str(tmp_path / "cache")}
    run = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", str(CONFIG), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**_base_env(), **env},
        timeout=1800,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    check = subprocess.run(
        [sys.executable, "-m", "bench.cli", "check", str(tmp_path / "run"), "--baseline", str(BASELINE)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_base_env(),
        timeout=600,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_check_fails_on_a_drifted_copy_of_the_baseline_rows(tmp_path: Path) -> None:
    """The committed baseline checked against its own rows passes; one nFD moved by 1 % fails with exit 1."""
    import json

    import pandas as pd

    document = json.loads(BASELINE.read_text())
    rows = pd.DataFrame(document["rows"])
    rows.to_csv(tmp_path / "same.csv", index=False)
    same = subprocess.run(
        [sys.executable, "-m", "bench.cli", "check", str(tmp_path / "same.csv"), "--baseline", str(BASELINE)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_base_env(),
    )
    assert same.returncode == 0, same.stdout + same.stderr
    drifted = rows.copy()
    target = drifted.index[(drifted.metric == "nfd") & (drifted.region == "Skin")][0]
    drifted.loc[target, "value"] *= 1.01
    drifted.to_csv(tmp_path / "drifted.csv", index=False)
    moved = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.cli",
            "check",
            str(tmp_path / "drifted.csv"),
            "--baseline",
            str(BASELINE),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_base_env(),
    )
    assert moved.returncode == 1
    assert "Skin" in moved.stdout and "DRIFT" in moved.stdout


def _base_env() -> dict[str, str]:
    import os

    return {key: value for key, value in os.environ.items()}
