"""FD speed against pytorch-fid (scipy sqrtm) and torch-fidelity (numpy eigvals), same run, same inputs.

Targets (issue "Foundation"): d = 2048, n = 10 000 full rank: ≥ 10× faster than pytorch-fid and ≥ 2.5×
faster than torch-fidelity with the same value to 1e-9 relative; n = 500 < d = 2048: ≥ 100× faster than
pytorch-fid via the low-rank path. Many FDs against one reference (issue "Throughput"): 64 at d = 2048 in
≤ 1 s on a GPU, timed here for the mixed-precision and the exact batched routes. Run with `tox -e bench`.
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


# Many sets against one reference: 64 on a GPU (the target: ≤ 1 s), 8 on a CPU (each costs seconds there).
MANY = 64 if torch.cuda.is_available() else 8
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
MANY_GROUP = f"fd {MANY} sets vs one reference d=2048 (batched, {DEVICE})"


@pytest.fixture(scope="module")
def many_sets(full_rank_pair) -> tuple[GaussianStats, list[GaussianStats], list[float]]:
    """The reference, MANY different sets (D Σ D for random diagonal D near 1: the same conditioning) and
    each set's FD from the single float64 path."""
    reference, other = full_rank_pair
    rng = np.random.default_rng(7)
    others = []
    for k in range(MANY):
        scale = 1.0 + 0.1 * rng.random(D)
        cov = other.cov * scale[:, None] * scale[None, :]
        others.append(GaussianStats.from_mean_cov(other.mean + 0.01 * k, cov, n=other.n))
    return reference, others, [frechet_distance(reference, o).value for o in others]


def _timed_many(benchmark, many_sets, method: str) -> None:
    """Time one batched route on the sets; every value must be within 1e-9 of the single float64 path."""
    reference, others, exact = many_sets
    results = benchmark.pedantic(
        frechet_distance_many,
        args=(reference, others),
        kwargs={"device": DEVICE, "method": method},
        rounds=1,
        warmup_rounds=0,
    )
    assert all(r.method == f"batched-{method}-{DEVICE}" for r in results)
    assert max(abs(r.value - e) / e for r, e in zip(results, exact, strict=True)) <= 1e-9
    benchmark.extra_info.update(device=DEVICE, sets=MANY, per_fd_seconds=benchmark.stats.stats.median / MANY)


@pytest.mark.benchmark(group=MANY_GROUP)
def test_fdbench_many_mixed_precision(benchmark, many_sets) -> None:
    """float32 polar iteration, float64 polish (the route `auto` takes on CUDA)."""
    _timed_many(benchmark, many_sets, "mixed")


@pytest.mark.benchmark(group=MANY_GROUP)
def test_exact_many_eigvalsh(benchmark, many_sets) -> None:
    """The exact float64 route, for the ratio (the route `auto` takes on a CPU)."""
    _timed_many(benchmark, many_sets, "eigvalsh")
