"""FID throughput against pytorch-fid and torch-fidelity (pytest-benchmark; ratios printed at the end).

Run: ``pytest tests/bench/test_bench_throughput.py --benchmark-only``. The same Inception architecture and
randomly initialised weight file for all three tools, 256² synthetic images, batch 32; the tools, folders
and weights are those of scripts/throughput.py (which measures more: JPEG, decode ceiling, FD, GPU).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
BATCH = 32
FOLDER_IMAGES = 64
TOOLS = ("fdbench", "pytorch-fid", "torch-fidelity")


def _script():
    spec = importlib.util.spec_from_file_location("throughput_script", REPO / "scripts" / "throughput.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    """(script module, tools on the CPU, PNG folder, one decoded batch)."""
    script = _script()
    work = tmp_path_factory.mktemp("throughput")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FDBENCH_CACHE", str(work / "cache"))
        patch.setenv("FDBENCH_WEIGHTS", str(work))
        weights = script.random_weight_file(work)
        space = script.fdbench_space(weights, real=False)
        args = argparse.Namespace(workers=None, precision="fp32", compile=False, peer_workers=None)
        tools = script.Tools(torch.device("cpu"), weights, space, BATCH, args)
        missing = {tool: reason for tool, reason in tools.available.items() if reason}
        if missing:
            pytest.skip(f"peers not installed: {missing}")
        folder = script.make_folder(work / "png", "png", FOLDER_IMAGES, 256)
        images = script.decoded_images(folder, BATCH)
        yield script, tools, folder, images


@pytest.mark.slow
@pytest.mark.benchmark(group="inception forward, 32 images of 256²")
@pytest.mark.parametrize("tool", TOOLS)
def test_bench_inception_forward_batch32(benchmark, setup, tool: str) -> None:
    _, tools, _, images = setup
    tools.forward(tool, images)  # warm-up
    features = benchmark.pedantic(tools.forward, args=(tool, images), rounds=3, iterations=1)
    assert features.shape == (BATCH, 2048)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["images_per_s"] = BATCH / benchmark.stats.stats.median


@pytest.mark.slow
@pytest.mark.benchmark(group=f"folder of {FOLDER_IMAGES} PNGs to statistics")
@pytest.mark.parametrize("tool", TOOLS)
def test_bench_folder_to_statistics_png(benchmark, setup, tool: str) -> None:
    _, tools, folder, _ = setup
    mean, cov, n = benchmark.pedantic(tools.statistics, args=(tool, folder), rounds=2, iterations=1)
    assert mean.shape == (2048,) and cov.shape == (2048, 2048) and n == FOLDER_IMAGES
    if benchmark.stats is not None:
        benchmark.extra_info["images_per_s"] = FOLDER_IMAGES / benchmark.stats.stats.median
