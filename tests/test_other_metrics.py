"""KID, precision/recall, density/coverage, bootstrap CI and FD∞ against brute-force oracles, the
authors' `prdc`, scipy and planted truths."""

from __future__ import annotations

import itertools
import json

import numpy as np
import prdc
import pytest
from scipy.spatial.distance import cdist

from bench.metrics import (
    bootstrap_fd,
    density_coverage,
    fd_infinity,
    kernel_inception_distance,
    precision_recall,
)
from bench.metrics.kid import kid_from_counts, polynomial_kernel
from bench.stats import FeatureError, GaussianStats
from tests.oracles import fd_sqrtm_oracle


def _direct_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD² estimator written as explicit loops over pairs (O(n²) Python)."""
    d, m, n = x.shape[1], x.shape[0], y.shape[0]

    def kernel(a: np.ndarray, b: np.ndarray) -> float:
        return (float(a @ b) / d + 1.0) ** 3

    xx = sum(kernel(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(kernel(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    xy = sum(kernel(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2.0 * xy


def test_kid_with_m_equal_to_n_is_the_full_set_estimator_with_a_real_interval() -> None:
    """Before: every "subset" was the whole set and the std was 0 by construction."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((25, 6)), rng.standard_normal((30, 6)) * 1.3 + 0.2
    result = kernel_inception_distance(x, y, subset_size=25, seed=4)
    assert result.method == "full-set" and (result.n1, result.n2, result.n) == (25, 30, 25)
    assert result.value == pytest.approx(_direct_mmd2(x, y), rel=1e-12)
    interval = result.bootstrap.interval
    assert interval.method == "basic" and interval.low < result.value < interval.high
    assert result.std == result.bootstrap.std > 0.05 * abs(result.value)
    fields = result.row_fields()
    assert "mean" not in fields and "std" not in fields and fields["n"] == 25
    assert any("bootstrap interval" in note for note in result.notes())
    json.dumps(result.to_dict(), allow_nan=False)


def test_kid_replicate_weights_equal_the_estimator_over_pairs_of_distinct_images() -> None:
    """A replicate with repeated ids, evaluated by brute force: within a set, average over position pairs
    whose ids differ; across sets, over all pairs."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((9, 3)), rng.standard_normal((7, 3)) + 0.4
    rows_x, rows_y = rng.integers(0, 9, 9), rng.integers(0, 7, 7)
    d = 3

    def kernel(a, b):
        return (float(a @ b) / d + 1.0) ** 3

    def within(points, rows):
        pairs = [(a, b) for a, b in itertools.permutations(range(rows.size), 2) if rows[a] != rows[b]]
        return sum(kernel(points[rows[a]], points[rows[b]]) for a, b in pairs) / len(pairs)

    cross = np.mean([kernel(x[i], y[j]) for i in rows_x for j in rows_y])
    expected = within(x, rows_x) + within(y, rows_y) - 2 * cross
    counts_x = np.bincount(rows_x, minlength=9)[None].astype(float)
    counts_y = np.bincount(rows_y, minlength=7)[None].astype(float)
    kernels = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    assert kid_from_counts(*kernels, counts_x, counts_y)[0] == pytest.approx(expected, rel=1e-12)


def test_kid_subsets_are_seeded_and_unbiased_near_zero_for_same_distribution() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((400, 8)), rng.standard_normal((400, 8))
    first = kernel_inception_distance(x, y, num_subsets=50, subset_size=100, seed=7)
    again = kernel_inception_distance(x, y, num_subsets=50, subset_size=100, seed=7)
    other = kernel_inception_distance(x, y, num_subsets=50, subset_size=100, seed=8)
    assert first == again and first.mean != other.mean
    assert first.method == "subsets" and first.bootstrap is None and first.n == 100
    assert abs(first.mean) < 3 * first.std
    assert first.row_fields()["mean"] == first.value and first.row_fields()["std"] == first.subset_std
    shifted = kernel_inception_distance(x, y + 1.0, num_subsets=50, subset_size=100, seed=7)
    assert shifted.mean > 10 * first.std


def test_kid_standardised_on_spectrum_like_features_is_near_zero_for_one_distribution() -> None:
    """Features at scale ~1e3 (like spectral profiles): the raw cubic kernel makes two samples of one
    distribution look hugely different (the issue saw −6.7e8); standardised with the reference's mean/std
    the value sits within its interval around 0 and equals the estimator on hand-standardised arrays."""
    rng = np.random.default_rng(2)
    d = 88
    profile = 1000.0 + 300.0 * np.exp(-np.arange(d) / 20.0)
    mixing = rng.standard_normal((d, d)) / np.sqrt(d)

    def sample(n):
        return profile + (rng.standard_normal((n, d)) @ mixing) * 60.0

    x, y = sample(120), sample(120)
    raw = kernel_inception_distance(x, y)
    assert abs(raw.value) > 1e6
    result = kernel_inception_distance(x, y, standardize=True)
    assert result.standardized and "standardised with the reference set's" in " ".join(result.notes())
    assert result.bootstrap.interval.contains(0.0)
    assert abs(result.value) < 0.05
    mean, std = x.mean(axis=0), x.std(axis=0)
    assert result.value == pytest.approx(_direct_mmd2((x - mean) / std, (y - mean) / std), rel=1e-9)
    shifted = kernel_inception_distance(x, sample(120) + 30.0, standardize=True)
    assert shifted.bootstrap.interval.low > 0  # a shift of half a standard deviation is detected


def test_paired_kid_draws_one_set_of_ids_for_both_sets() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 4))
    y = x + 0.1 * rng.standard_normal((40, 4))
    paired = kernel_inception_distance(x, y, paired=True, seed=1)
    d = 4
    kernel = polynomial_kernel
    off_diagonal = ~np.eye(40, dtype=bool)
    expected = (
        kernel(x, x)[off_diagonal].mean()
        + kernel(y, y)[off_diagonal].mean()
        - 2 * kernel(x, y)[off_diagonal].mean()
    )
    assert paired.value == pytest.approx(expected, rel=1e-12) and d == x.shape[1]
    # Same-image pairs k(x_i, y_i) left out of the cross term of every replicate too: the replicates are
    # centred on the estimate (counting duplicated same-image pairs gave a bias of −1.4 standard errors).
    assert abs(paired.bootstrap.bias) < 0.3 * paired.bootstrap.std
    assert paired.bootstrap.interval.contains(paired.value)
    with pytest.raises(FeatureError, match="paired KID needs sets of equal size"):
        kernel_inception_distance(x, y[:30], paired=True)


def test_kid_rejects_oversized_subsets_and_dimension_mismatch() -> None:
    with pytest.raises(FeatureError, match="subset size 50 must be at least 2"):
        kernel_inception_distance(np.ones((10, 2)), np.ones((20, 2)), subset_size=50)
    with pytest.raises(FeatureError, match="dimension mismatch"):
        kernel_inception_distance(np.ones((10, 2)), np.ones((10, 3)))


def _inside(distances: np.ndarray, radii: np.ndarray, strict: bool) -> np.ndarray:
    return distances < radii if strict else distances <= radii


def _brute_force_prdc(real: np.ndarray, fake: np.ndarray, strict_pr: bool, strict_dc: bool) -> tuple:
    """P/R (k = 3) and D/C (k = 5) by the papers' definitions with the given tie rules, from cdist."""
    real_radii_pr = np.sort(cdist(real, real), axis=1)[:, 3]
    fake_radii_pr = np.sort(cdist(fake, fake), axis=1)[:, 3]
    cross = cdist(fake, real)  # fake × real
    precision = _inside(cross, real_radii_pr[None, :], strict_pr).any(axis=1).mean()
    recall = _inside(cross.T, fake_radii_pr[None, :], strict_pr).any(axis=1).mean()
    radii = np.sort(cdist(real, real), axis=1)[:, 5]
    density = _inside(cross, radii[None, :], strict_dc).sum() / (5 * len(fake))
    coverage = _inside(cross.min(axis=0), radii, strict_dc).mean()
    return float(precision), float(recall), float(density), float(coverage)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_precision_recall_match_brute_force_and_density_coverage_match_prdc(
    seed: int, capsys: pytest.CaptureFixture
) -> None:
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((120, 5))
    fake = rng.standard_normal((90, 5)) * 1.4 + 0.5
    pr, dc = precision_recall(real, fake), density_coverage(real, fake)
    precision, recall, _, _ = _brute_force_prdc(real, fake, strict_pr=False, strict_dc=True)
    assert (pr.precision, pr.recall) == pytest.approx((precision, recall), abs=1e-12)
    theirs = prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=5)
    capsys.readouterr()  # prdc prints the set sizes
    assert (dc.density, dc.coverage) == pytest.approx((theirs["density"], theirs["coverage"]), abs=1e-12)
    assert (pr.k, dc.k) == (3, 5)
    assert pr.notes() == ("k = 3, inside a ball when distance ≤ radius",)
    assert dc.notes() == ("k = 5, inside a ball when distance < radius",)


def test_ties_at_exactly_the_radius_follow_each_metric_s_rule(capsys: pytest.CaptureFixture) -> None:
    """Real points 0…9 on a line and generated points at exactly a real point's k-NN radius (integer
    distances, so every tie is exact): P/R count them inside (≤), D/C outside (<, as `prdc`)."""
    real = np.column_stack([np.arange(10.0), np.zeros(10)])
    fake = np.array([[4.0, 3.0], [0.0, 5.0], [9.0, 5.0], [20.0, 0.0], [0.0, 3.0], [40.0, 40.0], [60.0, 0.0]])
    pr, dc = precision_recall(real, fake), density_coverage(real, fake)
    inclusive = _brute_force_prdc(real, fake, strict_pr=False, strict_dc=False)
    strict = _brute_force_prdc(real, fake, strict_pr=True, strict_dc=True)
    assert (pr.precision, pr.recall) == pytest.approx(inclusive[:2], abs=1e-15)
    assert (dc.density, dc.coverage) == pytest.approx(strict[2:], abs=1e-15)
    assert inclusive[0] != strict[0] and inclusive[2] != strict[2] and inclusive[3] != strict[3]
    theirs = prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=5)
    capsys.readouterr()
    assert (dc.density, dc.coverage) == pytest.approx((theirs["density"], theirs["coverage"]), abs=1e-15)


def test_prdc_chunking_does_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.metrics.neighbours as neighbours

    rng = np.random.default_rng(5)
    real, fake = rng.standard_normal((70, 4)), rng.standard_normal((50, 4)) + 0.3
    whole = (precision_recall(real, fake), density_coverage(real, fake))
    monkeypatch.setattr(neighbours, "_CHUNK_ROWS", 7)
    assert (precision_recall(real, fake), density_coverage(real, fake)) == whole


def _sample_fd(x: np.ndarray, y: np.ndarray) -> float:
    return fd_sqrtm_oracle(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))


def test_bootstrap_fd_replicates_and_basic_interval_match_a_scipy_sqrtm_oracle() -> None:
    """Replicates recomputed from the documented draws (per replicate: first-set ids, then second-set
    ids, from default_rng(seed)) with scipy's sqrtm FD; the interval is the basic one."""
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((60, 5)), rng.standard_normal((60, 5)) + 0.5
    result = bootstrap_fd(x, y, num_boot=50, seed=1)
    draws = np.random.default_rng(1)
    expected = []
    for _ in range(50):
        rows_x, rows_y = draws.integers(0, 60, 60), draws.integers(0, 60, 60)
        expected.append(_sample_fd(x[rows_x], y[rows_y]))
    np.testing.assert_allclose(result.samples, expected, rtol=1e-8)
    estimate = _sample_fd(x, y)
    assert result.value == pytest.approx(estimate, rel=1e-10)
    q_low, q_high = np.quantile(expected, [0.025, 0.975])
    low, high = min(2 * estimate - q_high, estimate), max(2 * estimate - q_low, estimate)
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), rel=1e-8)
    assert result.bootstrap.bias == pytest.approx(np.mean(expected) - estimate, rel=1e-8)
    assert result.ci_low <= result.value <= result.ci_high


def test_paired_bootstrap_fd_uses_one_draw_for_both_sets() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((50, 4))
    y = 0.8 * x + 0.3 + 0.2 * rng.standard_normal((50, 4))
    result = bootstrap_fd(x, y, num_boot=30, seed=2, paired=True)
    draws = np.random.default_rng(2)
    expected = []
    for _ in range(30):
        rows = draws.integers(0, 50, 50)
        expected.append(_sample_fd(x[rows], y[rows]))
    np.testing.assert_allclose(result.samples, expected, rtol=1e-8)
    with pytest.raises(FeatureError, match="paired bootstrap needs sets of equal size"):
        bootstrap_fd(x, y[:40], paired=True)


def test_fd_infinity_recovers_a_planted_fd_that_small_samples_overstate() -> None:
    """Reference: the exact population N(0, I); generated: N(δ, I) with ‖δ‖² = 0.5 (true FD 0.5). FD at
    N = 500 is biased up by ≈ d(d + 1)/(4N) + d/N; the intercept of the 1/N fit removes it."""
    rng = np.random.default_rng(0)
    d = 16
    reference = GaussianStats.from_mean_cov(np.zeros(d), np.eye(d), n=10**9)
    generated = rng.standard_normal((5000, d)) + np.sqrt(0.5 / d)
    result = fd_infinity(reference, generated, seed=0)
    assert len(result.sample_sizes) == 15
    assert result.sample_sizes[0] == 500 and result.sample_sizes[-1] == 5000
    assert abs(result.value - 0.5) < 0.06
    assert result.fd_values[0] - 0.5 > 0.12
    assert 0.7 * (d * (d + 1) / 4 + d) < result.slope < 2.0 * (d * (d + 1) / 4 + d)


def test_fd_infinity_starts_at_twice_d_and_stays_near_zero() -> None:
    """n = 1000, d = 128, one distribution (true FD 0): starting at N = n/10 = 100 ≤ d broke the 1/N law
    and gave −2.39; N_min = 2d = 256 keeps the fit within 3 % of FD at N_min."""
    rng = np.random.default_rng(0)
    d = 128
    reference = GaussianStats.from_mean_cov(np.zeros(d), np.eye(d), n=10**9)
    result = fd_infinity(reference, rng.standard_normal((1000, d)), seed=0)
    assert result.sample_sizes[0] == 2 * d
    assert abs(result.value) < 0.03 * result.fd_values[0]


def test_fd_infinity_refuses_fewer_than_four_d_samples() -> None:
    rng = np.random.default_rng(1)
    with pytest.raises(FeatureError, match=r"FD∞ needs at least 4d = 512 generated samples .* got n = 400"):
        fd_infinity(rng.standard_normal((600, 128)), rng.standard_normal((400, 128)))
    with pytest.raises(FeatureError, match="FD∞ needs at least 4d = 8 generated samples"):
        fd_infinity(np.ones((5, 2)), rng.standard_normal((5, 2)))
