"""KID, precision/recall, density/coverage, bootstrap CI and FD∞ against brute-force oracles."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from bench.metrics import (
    bootstrap_fd,
    density_coverage,
    fd_infinity,
    frechet_distance,
    kernel_inception_distance,
    precision_recall,
)
from bench.stats import FeatureError, GaussianStats


def _direct_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD² estimator written as explicit loops over pairs (O(n²) Python)."""
    d, m = x.shape[1], x.shape[0]

    def kernel(a: np.ndarray, b: np.ndarray) -> float:
        return (float(a @ b) / d + 1.0) ** 3

    xx = sum(kernel(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(kernel(y[i], y[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    xy = sum(kernel(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2.0 * xy


def test_kid_on_full_sets_equals_direct_estimator() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((25, 6)), rng.standard_normal((25, 6)) * 1.3 + 0.2
    result = kernel_inception_distance(x, y, num_subsets=3, subset_size=25, seed=4)
    # A subset of all rows is a permutation; the estimator is permutation invariant.
    assert result.mean == pytest.approx(_direct_mmd2(x, y), rel=1e-12)
    assert result.std == pytest.approx(0.0, abs=1e-12)


def test_kid_subsets_are_seeded_and_unbiased_near_zero_for_same_distribution() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((400, 8)), rng.standard_normal((400, 8))
    first = kernel_inception_distance(x, y, num_subsets=50, subset_size=100, seed=7)
    again = kernel_inception_distance(x, y, num_subsets=50, subset_size=100, seed=7)
    other = kernel_inception_distance(x, y, num_subsets=50, subset_size=100, seed=8)
    assert first == again and first.mean != other.mean
    assert abs(first.mean) < 3 * first.std
    shifted = kernel_inception_distance(x, y + 1.0, num_subsets=50, subset_size=100, seed=7)
    assert shifted.mean > 10 * first.std


def test_kid_rejects_oversized_subsets_and_dimension_mismatch() -> None:
    with pytest.raises(FeatureError, match="subset size 50 must be at least 2 and at most the smaller set"):
        kernel_inception_distance(np.ones((10, 2)), np.ones((20, 2)), subset_size=50)
    with pytest.raises(FeatureError, match="dimension mismatch"):
        kernel_inception_distance(np.ones((10, 2)), np.ones((10, 3)))


def _brute_force_radii(points: np.ndarray, k: int) -> np.ndarray:
    distances = cdist(points, points)
    return np.sort(distances, axis=1)[:, k]


def _brute_force_prdc(real: np.ndarray, fake: np.ndarray, k_pr: int, k_dc: int) -> tuple[float, ...]:
    real_radii_pr, fake_radii_pr = _brute_force_radii(real, k_pr), _brute_force_radii(fake, k_pr)
    cross = cdist(fake, real)  # fake × real
    precision = np.mean(
        [any(cross[j, i] <= real_radii_pr[i] for i in range(len(real))) for j in range(len(fake))]
    )
    recall = np.mean(
        [any(cross[j, i] <= fake_radii_pr[j] for j in range(len(fake))) for i in range(len(real))]
    )
    radii = _brute_force_radii(real, k_dc)
    density = sum(cross[j, i] <= radii[i] for j in range(len(fake)) for i in range(len(real))) / (
        k_dc * len(fake)
    )
    coverage = np.mean([cross[:, i].min() <= radii[i] for i in range(len(real))])
    return float(precision), float(recall), float(density), float(coverage)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prdc_match_brute_force_knn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((120, 5))
    fake = rng.standard_normal((90, 5)) * 1.4 + 0.5
    pr, dc = precision_recall(real, fake), density_coverage(real, fake)
    expected = _brute_force_prdc(real, fake, k_pr=3, k_dc=5)
    assert (pr.precision, pr.recall, dc.density, dc.coverage) == pytest.approx(expected, abs=1e-12)
    assert (pr.k, dc.k) == (3, 5)


def test_prdc_chunking_does_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.metrics.neighbours as neighbours

    rng = np.random.default_rng(5)
    real, fake = rng.standard_normal((70, 4)), rng.standard_normal((50, 4)) + 0.3
    whole = (precision_recall(real, fake), density_coverage(real, fake))
    monkeypatch.setattr(neighbours, "_CHUNK_ROWS", 7)
    assert (precision_recall(real, fake), density_coverage(real, fake)) == whole


def test_bootstrap_ci_brackets_the_estimate_and_is_seeded() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((60, 5)), rng.standard_normal((60, 5)) + 0.5
    result = bootstrap_fd(x, y, num_boot=50, seed=1)
    assert result.value == pytest.approx(frechet_distance(x, y).value, rel=1e-12)
    assert result.ci_low < result.value < result.ci_high
    assert np.array_equal(result.samples, bootstrap_fd(x, y, num_boot=50, seed=1).samples)
    expected = np.percentile(result.samples, [2.5, 97.5])
    assert (result.ci_low, result.ci_high) == pytest.approx(tuple(expected))


def test_fd_infinity_recovers_a_planted_one_over_n_law() -> None:
    """Two identical Gaussians: E[FD_N] has no 1/N-free part, so FD∞ must be near 0 and the slope positive."""
    rng = np.random.default_rng(4)
    d = 4
    reference = GaussianStats.from_mean_cov(np.zeros(d), np.eye(d), n=10**9)
    generated = rng.standard_normal((5000, d))
    result = fd_infinity(reference, generated, seed=0)
    assert len(result.sample_sizes) == 15
    assert result.sample_sizes[0] == 500 and result.sample_sizes[-1] == 5000
    assert result.slope > 0
    assert abs(result.value) < 0.2 * result.fd_values[0]
    design = np.column_stack([np.ones(15), 1.0 / result.sample_sizes])
    fitted, *_ = np.linalg.lstsq(design, result.fd_values, rcond=None)
    assert result.value == pytest.approx(fitted[0], rel=1e-12)


def test_fd_infinity_needs_enough_samples() -> None:
    with pytest.raises(FeatureError, match="FD∞ needs at least 20 generated samples"):
        fd_infinity(np.ones((5, 2)), np.random.default_rng(0).standard_normal((15, 2)))
