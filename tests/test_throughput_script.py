"""scripts/throughput.py at toy sizes: it runs from nothing (its own folders and weight file), the three
tools compute the same statistics, and its JSON holds every rate and ratio, strictly valid."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
N = 4


def _strict_json(text: str) -> dict:
    def refuse(token: str) -> float:
        raise ValueError(f"invalid JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


def _run_script(folder: Path, *extra: str) -> dict:
    out = folder / "out.json"
    command = [
        sys.executable, str(REPO / "scripts" / "throughput.py"), "--device", "cpu", "--n", str(N),
        "--side", "48", "--batch-size", "2", "--repeats", "1", "--threads", "1", "--fd-dim", "16",
        "--fd-sets", "3", "--work-dir", str(folder / "work"), "--json", str(out), *extra,
    ]  # fmt: skip
    env = {**os.environ, "FDBENCH_CACHE": str(folder / "cache"), "PYTHONHASHSEED": "0"}
    env.pop("FDBENCH_WEIGHTS", None)
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pytorch-fid" in done.stdout and "e2e" in done.stdout  # the table for people
    return _strict_json(out.read_text())


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _run_script(tmp_path_factory.mktemp("throughput"))


@pytest.mark.slow
def test_every_peer_has_end_to_end_and_forward_ratios(report: dict) -> None:
    ours = report["fdbench"]
    for peer in ("pytorch-fid", "torch-fidelity"):
        entry = report["peers"][peer]
        for task in ("forward", "e2e_png", "e2e_jpeg"):
            rate, ratio = entry[f"{task}_images_per_s"], entry[f"{task}_ratio"]
            assert rate > 0 and ratio > 0
            assert ratio == pytest.approx(ours[f"{task}_images_per_s"] / rate, rel=1e-3)
            assert len(entry[task]["seconds"]) == 1 and entry[task]["images"] > 0
    assert ours["e2e_png_images_per_s"] > 0 and ours["decode_png_images_per_s"] > 0
    assert ours["e2e_jpeg_fraction_of_ceiling"] > 0
    assert report["settings"]["n"] == N and report["machine"]["cpu"]


@pytest.mark.slow
def test_the_tools_compute_the_same_features_and_statistics(report: dict) -> None:
    checks = report["checks"]
    assert checks["features"]["pytorch-fid"] < 1e-5  # same network, same weights, same resize
    for fmt in ("png", "jpeg"):
        assert checks["end_to_end"][fmt]["fdbench_n"] == N
        assert checks["end_to_end"][fmt]["pytorch-fid_mean_relative_deviation"] < 1e-5
    single = report["fd"]["single"]
    assert single["fdbench"]["error"] is None
    for peer in ("pytorch-fid", "torch-fidelity"):
        assert single[peer]["relative_difference"] < 1e-8
    batched = report["fd"]["batched"]
    assert batched["sets"] == 3 and batched["last_value_relative_difference"] < 1e-9


@pytest.mark.slow
def test_device_jpeg_decoding_gives_pytorch_fids_statistics(tmp_path: Path) -> None:
    """`--jpeg-decoder device` (on a CPU: torchvision's libjpeg-turbo) runs the whole script and its
    end-to-end statistics still match pytorch-fid's PIL-decoded ones."""
    report = _run_script(tmp_path, "--formats", "jpeg", "--jpeg-decoder", "device")
    assert report["fdbench"]["settings"]["jpeg_decoder"] == "device"
    assert report["fdbench"]["decode_jpeg_images_per_s"] > 0
    jpeg = report["checks"]["end_to_end"]["jpeg"]
    assert jpeg["fdbench_n"] == N and jpeg["pytorch-fid_mean_relative_deviation"] < 1e-5
