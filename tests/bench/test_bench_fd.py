"""FD speed against pytorch-fid (scipy sqrtm) and torch-fidelity (numpy eigvals), same run, same inputs.

Targets (issue "Foundation"): d = 2048, n = 10 000 full rank: ≥ 10× faster than pytorch-fid and ≥ 2.5×
faster than torch-fidelity with the same value to 1e-9 relative; n = 500 < d = 2048: ≥ 100× faster than
pytorch-fid via the low-rank path. Run with `tox -e bench`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_fid.fid_score import calculate_frechet_distance
from torch_fidelity.metric_fid import fid_statistics_to_metric

from bench.metrics import frechet_distance, frechet_distance_many
from bench.stats import GaussianStats

D = 2048


def _features(seed: int, n: int, d: int = D) -> np.ndarray:
    """Correlated features with a decaying spectrum, like a CNN embedding."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((d, d)) / np.sqrt(d) * np.linspace(1.0, 0.05, d)
    return rng.standard_normal((n, d)) @ mixing + rng.standard_normal(d) * 0.1


@pytest.fixture(scope="module")
def full_rank_pair() -> tuple[GaussianStats, GaussianStats]:
    return GaussianStats.from_features(_features(0, 10_000)), GaussianStats.from_features(
        _features(1, 10_000)
    )


@pytest.fixture(scope="module")
def small_pair() -> tuple[np.ndarray, np.ndarray]:
    return _features(2, 500), _features(3, 500)


@pytest.mark.benchmark(group="fd d=2048 n=10000 (from statistics)")
def test_fdbench_full_rank(benchmark, full_rank_pair) -> None:
    first, second = full_rank_pair
    result = benchmark.pedantic(frechet_distance, args=(first, second), rounds=5, warmup_rounds=1)
    oracle = calculate_frechet_distance(first.mean, first.cov, second.mean, second.cov)
    assert result.value == pytest.approx(oracle, rel=1e-9)
    benchmark.extra_info.update(value=result.value, method=result.method)


@pytest.mark.benchmark(group="fd d=2048 n=10000 (from statistics)")
def test_pytorch_fid_full_rank(benchmark, full_rank_pair) -> None:
    first, second = full_rank_pair
    benchmark.pedantic(
        calculate_frechet_distance, args=(first.mean, first.cov, second.mean, second.cov), rounds=2
    )


@pytest.mark.benchmark(group="fd d=2048 n=10000 (from statistics)")
def test_torch_fidelity_full_rank(benchmark, full_rank_pair) -> None:
    first, second = full_rank_pair
    stat_1, stat_2 = {"mu": first.mean, "sigma": first.cov}, {"mu": second.mean, "sigma": second.cov}
    value = benchmark.pedantic(fid_statistics_to_metric, args=(stat_1, stat_2, False), rounds=3)
    assert frechet_distance(first, second).value == pytest.approx(
        value["frechet_inception_distance"], rel=1e-9
    )


def _pytorch_fid_from_features(x: np.ndarray, y: np.ndarray) -> float:
    return calculate_frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))


@pytest.mark.benchmark(group="fd d=2048 n=500 (from features)")
def test_fdbench_low_rank(benchmark, small_pair) -> None:
    result = benchmark.pedantic(frechet_distance, args=small_pair, rounds=10, warmup_rounds=1)
    assert result.method == "low-rank"
    benchmark.extra_info.update(value=result.value)


@pytest.mark.benchmark(group="fd d=2048 n=500 (from features)")
def test_pytorch_fid_low_rank_case(benchmark, small_pair) -> None:
    value = benchmark.pedantic(_pytorch_fid_from_features, args=small_pair, rounds=1)
    # pytorch-fid adds 1e-6 to the diagonals of singular products, so its value is not exact here.
    benchmark.extra_info.update(value=float(value), exact=frechet_distance(*small_pair).value)


@pytest.mark.benchmark(group="fd 64 sets vs one reference d=2048 (batched)")
def test_fdbench_many_against_one(benchmark, full_rank_pair) -> None:
    reference, other = full_rank_pair
    others = [other] * 64
    device = "cuda" if torch.cuda.is_available() else "cpu"
    results = benchmark.pedantic(
        frechet_distance_many, args=(reference, others), kwargs={"device": device}, rounds=1
    )
    exact = frechet_distance(reference, other).value
    assert max(abs(r.value - exact) / exact for r in results) <= 1e-9
    benchmark.extra_info.update(device=device, per_pair_seconds=benchmark.stats.stats.median / 64)
