"""FD against independent oracles (scipy sqrtm, pytorch-fid, mpmath) and its diagnostics."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from pytorch_fid.fid_score import calculate_frechet_distance

from bench.metrics import frechet_distance, frechet_distance_many
from bench.stats import FeatureError, GaussianStats
from tests.oracles import fd_sqrtm_oracle, random_spd


@pytest.mark.parametrize("d", [64, 512, pytest.param(2048, marks=pytest.mark.slow)])
def test_full_rank_fd_matches_scipy_sqrtm_and_pytorch_fid(d: int) -> None:
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d) * 0.5
    cov1, cov2 = random_spd(rng, d), random_spd(rng, d)
    first = GaussianStats.from_mean_cov(mu1, cov1, n=10 * d)
    second = GaussianStats.from_mean_cov(mu2, cov2, n=10 * d)
    oracle = fd_sqrtm_oracle(mu1, cov1, mu2, cov2)
    for method in ("auto", "cholesky", "eigh"):
        result = frechet_distance(first, second, method=method)
        assert result.value == pytest.approx(oracle, rel=1e-9), method
        assert result.mean_term == pytest.approx(float((mu1 - mu2) @ (mu1 - mu2)), rel=1e-12)
        assert result.value == pytest.approx(result.mean_term + result.trace_term, rel=1e-12)
    if d <= 512:  # pytorch-fid's own function (scipy sqrtm in float64)
        peer = calculate_frechet_distance(mu1, cov1, mu2, cov2)
        assert frechet_distance(first, second).value == pytest.approx(peer, rel=1e-9)


def test_cholesky_is_chosen_for_definite_and_falls_back_for_singular() -> None:
    rng = np.random.default_rng(3)
    d = 32
    definite = GaussianStats.from_mean_cov(np.zeros(d), random_spd(rng, d), n=1000)
    low_rank_features = rng.standard_normal((10, d))
    singular = GaussianStats.from_features(low_rank_features)
    assert frechet_distance(definite, definite).method == "cholesky"
    result = frechet_distance(singular, definite, method="cholesky")
    assert result.method == "eigh"
    assert any("fell back" in warning for warning in result.diagnostics["warnings"])
    oracle = frechet_distance(low_rank_features, definite, method="low-rank").value
    assert result.value == pytest.approx(oracle, rel=1e-8)


def _mpmath_fd(x: np.ndarray, y: np.ndarray, full: bool) -> mpmath.mpf:
    """FD at 40 significant digits: covariances in mpmath, eigenvalues of Σ1Σ2 (full) or A Σ2 Aᵀ."""
    mpmath.mp.dps = 40

    def centred(features: np.ndarray) -> tuple[list, mpmath.matrix]:
        rows = mpmath.matrix(features.tolist())
        n, d = rows.rows, rows.cols
        mean = [mpmath.fsum(rows[i, j] for i in range(n)) / n for j in range(d)]
        block = mpmath.matrix(n, d)
        scale = mpmath.sqrt(n - 1)
        for i in range(n):
            for j in range(d):
                block[i, j] = (rows[i, j] - mean[j]) / scale
        return mean, block

    mean1, a = centred(x)
    mean2, b = centred(y)
    cov2 = b.T * b
    if full:
        eigenvalues, _ = mpmath.eig((a.T * a) * cov2)
        eigenvalues = [mpmath.re(value) for value in eigenvalues]
    else:
        eigenvalues = mpmath.eigsy(a * cov2 * a.T, eigvals_only=True)
    sqrt_trace = mpmath.fsum(mpmath.sqrt(max(value, 0)) for value in eigenvalues)
    traces = mpmath.fsum(a[i, j] ** 2 for i in range(a.rows) for j in range(a.cols)) + mpmath.fsum(
        b[i, j] ** 2 for i in range(b.rows) for j in range(b.cols)
    )
    mean_term = mpmath.fsum((p - q) ** 2 for p, q in zip(mean1, mean2, strict=True))
    return mean_term + traces - 2 * sqrt_trace


@pytest.mark.slow
def test_low_rank_path_matches_full_high_precision_eigenproblem() -> None:
    """n < d: the low-rank path against mpmath eigenvalues of the full d × d product Σ1Σ2 (d = 24)."""
    rng = np.random.default_rng(11)
    x, y = rng.standard_normal((10, 24)), rng.standard_normal((14, 24)) + 0.5
    reference = float(_mpmath_fd(x, y, full=True))
    result = frechet_distance(x, y)
    assert result.method == "low-rank"
    assert result.value == pytest.approx(reference, rel=1e-12)


def test_low_rank_path_matches_mpmath_at_d64_and_the_full_path() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((20, 64)) * rng.uniform(0.5, 2.0, 64)
    y = rng.standard_normal((30, 64)) + 0.2
    reference = float(_mpmath_fd(x, y, full=False))
    assert frechet_distance(x, y).value == pytest.approx(reference, rel=1e-12)
    # One side as statistics (n = 30 < d too) takes the A Σ2 Aᵀ form of the same path.
    assert frechet_distance(x, GaussianStats.from_features(y)).value == pytest.approx(reference, rel=1e-12)
    # The full d × d path on singular covariances is less exact but must agree closely.
    assert frechet_distance(x, y, method="eigh").value == pytest.approx(reference, rel=1e-6)


def test_identical_statistics_give_zero_and_record_clamping() -> None:
    rng = np.random.default_rng(8)
    stats = GaussianStats.from_features(rng.standard_normal((500, 40)) * 3 + 100)
    result = frechet_distance(stats, stats)
    assert result.value == 0.0
    assert abs(result.diagnostics["clamped_negative_total"]) < 1e-8 * np.trace(stats.cov)


def test_small_sample_warning_is_reported_not_raised() -> None:
    rng = np.random.default_rng(1)
    result = frechet_distance(rng.standard_normal((30, 50)), rng.standard_normal((60, 50)))
    warnings = " ".join(result.diagnostics["warnings"])
    assert "n1 = 30 <= d = 50" in warnings and "n2" not in warnings
    assert result.diagnostics["effective_rank"] == 29


def test_batched_many_matches_one_at_a_time() -> None:
    rng = np.random.default_rng(2)
    d = 48
    reference = GaussianStats.from_mean_cov(rng.standard_normal(d), random_spd(rng, d), n=5000)
    others = [
        GaussianStats.from_mean_cov(rng.standard_normal(d), random_spd(rng, d, 0.01, 3.0), n=5000)
        for _ in range(7)
    ]
    batched = frechet_distance_many(reference, others, device="cpu", chunk_size=3)
    for result, other in zip(batched, others, strict=True):
        oracle = fd_sqrtm_oracle(reference.mean, reference.cov, other.mean, other.cov)
        assert result.value == pytest.approx(oracle, rel=1e-9)
    assert frechet_distance_many(reference, []) == []


def test_batched_polar_route_is_exact_and_falls_back_for_singular_sets() -> None:
    """The GPU route (polar factor by scaled Newton) on ill-conditioned sets, run here on the CPU."""
    rng = np.random.default_rng(4)
    d = 40
    reference = GaussianStats.from_mean_cov(rng.standard_normal(d), random_spd(rng, d, 1e-4, 10.0), n=10**6)
    others = [
        GaussianStats.from_mean_cov(rng.standard_normal(d), random_spd(rng, d, 1e-7, 5.0), n=10**6)
        for _ in range(3)
    ]
    singular_features = rng.standard_normal((10, d))
    others.append(GaussianStats.from_features(singular_features))
    results = frechet_distance_many(reference, others, device="cpu", method="polar", chunk_size=4)
    for result, other in zip(results[:3], others[:3], strict=True):
        assert result.method == "batched-polar-cpu"
        oracle = fd_sqrtm_oracle(reference.mean, reference.cov, other.mean, other.cov)
        assert result.value == pytest.approx(oracle, rel=1e-11)
    assert results[3].method == "batched-eigvalsh-cpu"
    exact = frechet_distance(singular_features, reference).value  # exact low-rank path
    assert results[3].value == pytest.approx(exact, rel=1e-7)


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        (np.ones((5, 3)), np.ones((5, 4)), "dimension mismatch: the first set has d = 3, the second d = 4"),
        (np.ones((1, 3)), np.ones((5, 3)), "first set has 1 rows; an FD needs at least 2"),
        (np.ones((5, 3, 1)), np.ones((5, 3)), "must be a 2-D (n, d) array"),
    ],
)
def test_bad_shapes_raise_specific_errors(first: np.ndarray, second: np.ndarray, message: str) -> None:
    with pytest.raises(FeatureError, match=message.replace("(", r"\(").replace(")", r"\)")):
        frechet_distance(first, second)


def test_non_finite_rows_are_counted_in_the_error() -> None:
    features = np.random.default_rng(0).standard_normal((10, 4))
    features[2, 1] = np.nan
    features[7, 0] = np.inf
    features[7, 3] = np.nan
    with pytest.raises(FeatureError, match="2 of 10 rows containing NaN or infinite"):
        frechet_distance(features, features)


def test_unknown_method_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown FD method 'sqrtm'"):
        frechet_distance(np.ones((3, 2)), np.ones((3, 2)), method="sqrtm")


def test_ill_conditioned_definite_covariances_match_the_singular_value_oracle() -> None:
    """cond(Σ) ~ 1e8: every tiny eigenvalue of Σ1Σ2 is genuine and counts. Oracle: the singular values
    of L2ᵀL1 (no squaring), whose sum is tr (Σ1Σ2)^{1/2}."""
    import scipy.linalg

    rng = np.random.default_rng(9)
    d = 256
    mixing = rng.standard_normal((d, d)) / np.sqrt(d) * np.linspace(1.0, 0.002, d)
    first = GaussianStats.from_features(rng.standard_normal((3 * d, d)) @ mixing)
    second = GaussianStats.from_features(rng.standard_normal((3 * d, d)) @ mixing * 1.1)
    factor = scipy.linalg.cholesky(second.cov, lower=True).T @ scipy.linalg.cholesky(first.cov, lower=True)
    delta = first.mean - second.mean
    oracle = (
        delta @ delta + np.trace(first.cov) + np.trace(second.cov) - 2 * scipy.linalg.svdvals(factor).sum()
    )
    assert frechet_distance(first, second).value == pytest.approx(oracle, rel=1e-11)
    for method in ("eigvalsh", "polar"):  # the batched routes keep the tiny eigenvalues too
        (batched,) = frechet_distance_many(first, [second], device="cpu", method=method)
        assert batched.value == pytest.approx(oracle, rel=1e-11), method


def test_a_set_of_exactly_d_rows_is_treated_as_singular() -> None:
    """n = d gives a covariance of rank d − 1 whose Cholesky may still succeed by rounding; FD must not add
    the square roots of its noise-level eigenvalues (a hypothesis case: d = 3, n = 6 and 3, seed 32)."""
    rng = np.random.default_rng(32)
    x = rng.standard_normal((6, 3)) * rng.uniform(0.2, 3.0, 3)
    y = rng.standard_normal((3, 3)) @ rng.standard_normal((3, 3)) * 0.5 + rng.standard_normal(3)
    reference = float(_mpmath_fd(x, y, full=True))
    assert frechet_distance(x, y).value == pytest.approx(reference, rel=1e-12)
    assert frechet_distance(y, x).value == pytest.approx(reference, rel=1e-12)
    # Given as statistics (n known), the Cholesky path floors the noise-level eigenvalues instead.
    stats_x, stats_y = GaussianStats.from_features(x), GaussianStats.from_features(y)
    assert frechet_distance(stats_x, stats_y).value == pytest.approx(reference, rel=1e-9)
    assert frechet_distance(stats_y, stats_x).value == pytest.approx(reference, rel=1e-9)
    (batched,) = frechet_distance_many(stats_x, [stats_y], device="cpu", method="eigvalsh")
    assert batched.value == pytest.approx(reference, rel=1e-9)
