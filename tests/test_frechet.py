"""FD against independent oracles (scipy sqrtm, pytorch-fid, mpmath) and its diagnostics."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import torch
from pytorch_fid.fid_score import calculate_frechet_distance

from bench.metrics import frechet_distance, frechet_distance_many
from bench.metrics.frechet import clamp_rounding_total, sqrt_trace_from_eigenvalues
from bench.metrics.validation import InvalidStatisticsError
from bench.stats import FeatureError, GaussianStats
from tests.oracles import fd_sqrtm_oracle, random_spd


def _low_rank_oracle(features: np.ndarray, mean2: np.ndarray, cov2: np.ndarray) -> float:
    """FD of a small feature set (n < d) against (μ2, Σ2), written out in numpy: the non-zero eigenvalues
    of Σ1Σ2 are those of the n × n matrix A Σ2 Aᵀ, A = (X − μ1)/√(n − 1)."""
    mean1 = features.mean(axis=0)
    block = (features - mean1) / np.sqrt(features.shape[0] - 1)
    eigenvalues = np.linalg.eigvalsh(block @ cov2 @ block.T)
    delta = mean1 - mean2
    sqrt_trace = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    return float(delta @ delta + (block**2).sum() + np.trace(cov2) - 2.0 * sqrt_trace)


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
    oracle = _low_rank_oracle(low_rank_features, definite.mean, definite.cov)
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
    assert "n1 = 30 ≤ d = 50" in warnings and "n2" not in warnings
    assert result.diagnostics["effective_rank"] == 29
    assert result.notes() == ("n1 = 30 ≤ d = 50: FD strongly biased",)


def test_notes_report_clamped_mass_and_a_clamped_negative_total() -> None:
    """Identical singular statistics (n = 20 ≤ d = 30): the product has noise-level negative eigenvalues
    and the total rounds to a tiny negative number; both are clamped and both reach the notes."""
    stats = GaussianStats.from_features(np.random.default_rng(2).standard_normal((20, 30)) * 5 + 50)
    result = frechet_distance(stats, stats)
    mass, total = result.diagnostics["clamped_mass"], result.diagnostics["clamped_negative_total"]
    assert result.value == 0.0 or result.value < 1e-8 * np.trace(stats.cov)
    notes = result.notes()
    assert notes[:2] == ("n1 = 20 ≤ d = 30: FD strongly biased", "n2 = 20 ≤ d = 30: FD strongly biased")
    assert (f"clamped eigenvalue mass {mass:.1e}" in notes) == (mass > 0)
    assert (f"negative total {total:.1e} clamped to 0" in notes) == (total < 0)
    assert mass > 0 or total < 0  # this case exercises at least one clamp


def test_the_one_clamping_rule_is_the_same_for_numpy_and_torch_batches() -> None:
    """Noise-level eigenvalues count as 0 for a possibly singular product and are kept for a definite
    one; numpy (one set) and torch (a batch) give the same sums."""
    eigenvalues = np.array([[4.0, 1.0, 3e-16, -2e-16], [9.0, 1e-12, 2e-17, 0.25]])
    floor = np.abs(eigenvalues).max(axis=1) * 4 * np.finfo(float).eps
    for row, singular in ((0, True), (0, False), (1, True), (1, False)):
        kept = eigenvalues[row][eigenvalues[row] > (floor[row] if singular else 0.0)]
        expected = np.sqrt(kept).sum()
        assert sqrt_trace_from_eigenvalues(eigenvalues[row], singular) == pytest.approx(expected, rel=1e-15)
    batch = torch.from_numpy(eigenvalues)
    sums = sqrt_trace_from_eigenvalues(batch, torch.tensor([True, False]))
    assert float(sums[0]) == sqrt_trace_from_eigenvalues(eigenvalues[0], True)
    assert float(sums[1]) == sqrt_trace_from_eigenvalues(eigenvalues[1], False)
    assert clamp_rounding_total(-1e-9, 1.0) == (0.0, -1e-9, None)
    value, clamped, warning = clamp_rounding_total(-1e-3, 1.0)
    assert value == -1e-3 and clamped == 0.0 and "beyond rounding" in warning


def test_batched_and_single_paths_clamp_identical_statistics_alike() -> None:
    stats = GaussianStats.from_features(np.random.default_rng(3).standard_normal((400, 24)) * 2 + 30)
    single = frechet_distance(stats, stats)
    (batched,) = frechet_distance_many(stats, [stats], device="cpu", method="eigvalsh")
    scale = 2 * np.trace(stats.cov)
    for result in (single, batched):  # rounding either way; a negative total is clamped to 0 and recorded
        assert 0.0 <= result.value < 1e-12 * scale
        clamped = result.diagnostics["clamped_negative_total"]
        assert clamped == 0.0 or (result.value == 0.0 and -1e-8 * scale < clamped < 0)
        assert result.value == 0.0 or result.trace_term == result.value
    for key in ("clamped_negative_total", "clamped_mass", "min_eigenvalue", "effective_rank"):
        assert key in batched.diagnostics, key
    assert batched.diagnostics["effective_rank"] == single.diagnostics["effective_rank"] == 24


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
    exact = _low_rank_oracle(singular_features, reference.mean, reference.cov)
    assert results[3].value == pytest.approx(exact, rel=1e-7)


def test_batched_many_accepts_feature_arrays() -> None:
    """Arrays are summarised first (before: AttributeError); the value matches scipy's sqrtm FD."""
    rng = np.random.default_rng(6)
    reference, other = rng.standard_normal((300, 10)), rng.standard_normal((250, 10)) * 1.2 + 0.3
    (result,) = frechet_distance_many(reference, [other, torch.from_numpy(other)][:1], device="cpu")
    oracle = fd_sqrtm_oracle(
        reference.mean(0), np.cov(reference, rowvar=False), other.mean(0), np.cov(other, rowvar=False)
    )
    assert result.value == pytest.approx(oracle, rel=1e-10)
    (from_tensor,) = frechet_distance_many(
        torch.from_numpy(reference), [torch.from_numpy(other)], device="cpu"
    )
    assert from_tensor.value == pytest.approx(oracle, rel=1e-10)
    with pytest.raises(FeatureError, match="set 0 must be GaussianStats or an"):
        frechet_distance_many(reference, ["not features"], device="cpu")


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


# ---------------------------------------------------------------------------------------- input checks
def _stats(mean: np.ndarray, cov: np.ndarray) -> GaussianStats:
    return GaussianStats(n=1000, mean=mean, m2=cov * 999)


def _good(d: int = 6, seed: int = 0) -> GaussianStats:
    return GaussianStats.from_mean_cov(np.zeros(d), random_spd(np.random.default_rng(seed), d), n=1000)


def test_an_asymmetric_covariance_is_refused() -> None:
    """Before: FD 0.0 (the Cholesky path reads one triangle). Now: named as not symmetric."""
    good = _good()
    skewed = good.cov.copy()
    skewed[0, 1] += 0.5
    with pytest.raises(InvalidStatisticsError, match=r"second set: the covariance is not symmetric"):
        frechet_distance(good, _stats(good.mean, skewed))


def test_a_negative_definite_covariance_is_refused() -> None:
    """Before: FD 0.0 (every eigenvalue clamped). Now: named as not positive semi-definite."""
    good = _good()
    with pytest.raises(InvalidStatisticsError, match=r"first set: the covariance is not positive semi-def"):
        frechet_distance(_stats(good.mean, -good.cov), good)
    with pytest.raises(InvalidStatisticsError, match=r"set 0: the covariance is not positive semi-definite"):
        frechet_distance_many(good, [_stats(good.mean, -good.cov)], device="cpu")


def test_rounding_level_negative_eigenvalues_are_accepted() -> None:
    """PSD up to rounding passes: a rank-deficient covariance with eigenvalues of −1e-12 relative."""
    rng = np.random.default_rng(1)
    basis, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    cov = (basis * np.array([3.0, 2.0, 1.0, 0.5, 0.0, -1e-12])) @ basis.T
    result = frechet_distance(_stats(np.zeros(6), (cov + cov.T) / 2), _good())
    assert np.isfinite(result.value) and result.value > 0


@pytest.mark.parametrize("where", ["mean", "cov"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_statistics_are_refused_before_any_lapack_call(where: str, bad: float) -> None:
    """Before: NaN printed as FD, a hang in eigh, or LinAlgError: Internal Error."""
    good = _good()
    mean, cov = good.mean.copy(), good.cov.copy()
    (mean if where == "mean" else cov)[(0,) if where == "mean" else (1, 1)] = bad
    label = "the mean" if where == "mean" else "the covariance"
    with pytest.raises(
        InvalidStatisticsError, match=rf"second set: {label} has 1 of \d+ values that are NaN"
    ):
        frechet_distance(good, _stats(mean, cov))
    with pytest.raises(InvalidStatisticsError, match=rf"set 0: {label} has 1 of"):
        frechet_distance_many(good, [_stats(mean, cov)], device="cpu")


def test_shape_checks_name_the_set() -> None:
    good = _good(4)
    with pytest.raises(InvalidStatisticsError, match=r"first set: the covariance must be a square matrix"):
        frechet_distance(GaussianStats(n=10, mean=np.zeros(4), m2=np.zeros((4, 3))), good)
    with pytest.raises(InvalidStatisticsError, match=r"the covariance is 5 × 5 but the mean has d = 4"):
        frechet_distance(good, GaussianStats(n=10, mean=np.zeros(4), m2=np.eye(5)))


def test_a_decomposition_that_does_not_converge_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import scipy.linalg

    def not_converging(*args, **kwargs):
        raise np.linalg.LinAlgError("the algorithm failed to converge")

    monkeypatch.setattr(scipy.linalg, "eigvalsh", not_converging)
    with pytest.raises(InvalidStatisticsError, match=r"eigenvalues of L1ᵀ Σ2 L1: the decomposition did not"):
        frechet_distance(_good(), _good(seed=1))
