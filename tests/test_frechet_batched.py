"""The batched FD's mixed-precision route (float32 polar iteration, float64 polish) against float64 oracles.

Oracle: tr (Σr Σg)^{1/2} is the sum of the singular values of L2ᵀ L1 (Cholesky factors, scipy, float64),
which never squares the condition number; the batched code uses Σr^{1/2} instead, so the two share no
factorisation.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

import bench.metrics.frechet_batched as batched
from bench.metrics import frechet_distance, frechet_distance_many
from bench.stats import GaussianStats


def _oracle(reference: GaussianStats, other: GaussianStats) -> float:
    factor = scipy.linalg.cholesky(other.cov, lower=True).T @ scipy.linalg.cholesky(reference.cov, lower=True)
    delta = reference.mean - other.mean
    nuclear = scipy.linalg.svdvals(factor).sum()
    return float(delta @ delta + np.trace(reference.cov) + np.trace(other.cov) - 2.0 * nuclear)


def _cnn_like(seed: int, d: int = 256, scale: float = 1.0) -> GaussianStats:
    """Features of a decaying spectrum like a CNN embedding's (covariance condition number ~1e8)."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(99).standard_normal((d, d)) / np.sqrt(d) * np.linspace(1.0, 0.002, d)
    return GaussianStats.from_features(rng.standard_normal((3 * d, d)) @ mixing * scale + 0.01 * seed)


def _exponential_spectrum(rng: np.random.Generator, d: int = 192) -> GaussianStats:
    """A covariance with eigenvalues exp(−18 k / d) (condition number ~6.6e7) in a random basis."""
    basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
    spectrum = np.exp(-np.arange(d) / (d / 18.0)) * rng.uniform(1.0, 1.2, d)
    cov = (basis * spectrum) @ basis.T
    return GaussianStats.from_mean_cov(rng.standard_normal(d), (cov + cov.T) / 2.0, n=10**6)


def _condition(stats: GaussianStats) -> float:
    eigenvalues = np.linalg.eigvalsh(stats.cov)
    return float(eigenvalues[-1] / eigenvalues[0])


def _cases() -> dict[str, tuple[GaussianStats, list[GaussianStats]]]:
    rng = np.random.default_rng(5)
    return {
        "cnn-like features": (_cnn_like(0), [_cnn_like(k, scale=1.0 + 0.05 * k) for k in range(1, 5)]),
        "exponential spectrum": (_exponential_spectrum(rng), [_exponential_spectrum(rng) for _ in range(4)]),
    }


@pytest.mark.parametrize("case", ["cnn-like features", "exponential spectrum"])
def test_mixed_route_matches_float64_on_ill_conditioned_covariances(case: str) -> None:
    reference, others = _cases()[case]
    assert min(_condition(stats) for stats in [reference, *others]) > 1e7  # the case is what it claims
    results = frechet_distance_many(reference, others, device="cpu", method="mixed", chunk_size=3)
    for result, other in zip(results, others, strict=True):
        assert result.method == "batched-mixed-cpu"
        assert result.value == pytest.approx(_oracle(reference, other), rel=1e-9)
        assert result.value == pytest.approx(frechet_distance(reference, other).value, rel=1e-9)
        polar = result.diagnostics["polar"]
        assert polar["precision"] == "float32 iteration, float64 polish"
        assert polar["orthogonality_residual"] <= batched.ORTHOGONALITY_TOLERANCE
        assert polar["skew"] <= batched.SKEW_TOLERANCE
        assert result.notes() == ()  # nothing to warn about


def test_mixed_route_never_exceeds_the_exact_nuclear_norm() -> None:
    """tr(QᵀK) ≤ ‖K‖_* for orthogonal Q: the route's rounding can only raise the FD, never lower it."""
    reference, others = _cases()["cnn-like features"]
    results = frechet_distance_many(reference, others, method="mixed", device="cpu")
    for result, other in zip(results, others, strict=True):
        assert result.value >= _oracle(reference, other) * (1 - 1e-13)


def test_results_do_not_depend_on_batch_order_or_chunk_size() -> None:
    reference, others = _cases()["exponential spectrum"]
    forward = frechet_distance_many(reference, others, device="cpu", method="mixed", chunk_size=4)
    order = [2, 0, 3, 1]
    shuffled = frechet_distance_many(
        reference, [others[i] for i in order], device="cpu", method="mixed", chunk_size=3
    )
    one_by_one = [
        frechet_distance_many(reference, [other], device="cpu", method="mixed")[0] for other in others
    ]
    for position, index in enumerate(order):
        assert shuffled[position].value == pytest.approx(forward[index].value, rel=1e-13)
    for single, together in zip(one_by_one, forward, strict=True):
        assert single.value == pytest.approx(together.value, rel=1e-13)


def _float32_breakdown_case() -> tuple[GaussianStats, GaussianStats]:
    """A reference eigenvalue of 1e-90: positive definite in float64, but the column of K it scales is
    1e-45 of the rest, zero in float32, so the float32 iteration meets a singular matrix."""
    rng = np.random.default_rng(0)
    d = 16
    spectrum = np.ones(d)
    spectrum[-1] = 1e-90
    basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
    other = (basis * rng.uniform(0.5, 2.0, d)) @ basis.T
    return (
        GaussianStats.from_mean_cov(np.zeros(d), np.diag(spectrum), n=10**6),
        GaussianStats.from_mean_cov(np.full(d, 0.1), (other + other.T) / 2.0, n=10**6),
    )


def test_a_float32_breakdown_falls_back_to_eigvalsh_and_says_so() -> None:
    reference, other = _float32_breakdown_case()
    (result,) = frechet_distance_many(reference, [other], device="cpu", method="mixed")
    assert result.method == "batched-eigvalsh-cpu"
    assert "broke down" in result.diagnostics["fallback"]
    assert result.diagnostics["polar"]["working_residual"] is None
    assert any("mixed route not verified" in note for note in result.notes())
    assert result.value == pytest.approx(_oracle(reference, other), rel=1e-12)


@pytest.mark.parametrize(
    ("setting", "value", "reason"),
    [
        ("NEWTON_MAX_STEPS", 1, "did not converge"),  # a cond-1e8 product needs about six steps
        ("SKEW_TOLERANCE", 0.0, "not symmetric enough"),  # a float32 factor leaves a skew part ~1e-7
    ],
)
def test_each_failed_check_falls_back_with_its_reason(
    monkeypatch: pytest.MonkeyPatch, setting: str, value: float, reason: str
) -> None:
    reference, others = _cases()["cnn-like features"]
    monkeypatch.setattr(batched, setting, value)
    results = frechet_distance_many(reference, others[:2], device="cpu", method="mixed")
    for result, other in zip(results, others[:2], strict=True):
        assert result.method == "batched-eigvalsh-cpu"
        assert reason in result.diagnostics["fallback"]
        assert result.value == pytest.approx(_oracle(reference, other), rel=1e-9)


def test_possibly_singular_products_take_the_exact_route_without_a_warning() -> None:
    """n ≤ d: the product may be singular and the clamping rule must apply, so eigvalsh is used directly."""
    rng = np.random.default_rng(3)
    d = 32
    reference = GaussianStats.from_features(rng.standard_normal((400, d)))
    small = rng.standard_normal((20, d)) * 1.3
    full = GaussianStats.from_features(rng.standard_normal((400, d)) + 0.2)
    few, many = frechet_distance_many(reference, [small, full], device="cpu", method="mixed")
    assert few.method == "batched-eigvalsh-cpu" and many.method == "batched-mixed-cpu"
    assert "may be singular" in few.diagnostics["fallback"]
    assert not any("not verified" in warning for warning in few.diagnostics["warnings"])
    assert few.value == pytest.approx(frechet_distance(reference, small).value, rel=1e-9)  # low-rank path
    assert many.value == pytest.approx(_oracle(reference, full), rel=1e-9)


def test_tf32_rounding_of_the_float32_products_would_miss_the_tolerance() -> None:
    """Why TF32 is switched off for the iteration on CUDA: the same Newton–Schulz finish with operands
    rounded to TF32's 10-bit mantissa (emulated here) leaves an FD error far above 1e-9 after the same
    float64 polish, while full float32 stays below it."""
    reference, others = _cases()["cnn-like features"]
    other = others[0]
    root = torch.from_numpy(scipy.linalg.sqrtm(reference.cov).real)
    factor = (torch.linalg.cholesky(torch.from_numpy(other.cov)).mT @ root)[None]
    unit = (factor / torch.linalg.matrix_norm(factor)).float()
    errors = {}
    for rounding in ("float32", "tf32"):
        x = unit.clone()
        for _ in range(6):  # the scaled Newton phase, as the route runs it
            inverse_t = torch.linalg.inv(x).mT
            zeta = (torch.linalg.matrix_norm(inverse_t) / torch.linalg.matrix_norm(x)).sqrt()
            x = (zeta * x + inverse_t / zeta) / 2
        eye = torch.eye(x.shape[-1])
        for _ in range(6):
            a, b = (_tf32(x.mT), _tf32(x)) if rounding == "tf32" else (x.mT, x)
            gram = a @ b
            x = (_tf32(x) if rounding == "tf32" else x) @ (1.5 * eye - 0.5 * gram)
        q, _, _ = batched.newton_schulz(x.double(), torch.full((1,), torch.inf), torch.ones(1, dtype=bool))
        nuclear = float((q * factor).sum())
        exact = scipy.linalg.svdvals(factor[0].numpy()).sum()
        errors[rounding] = 2 * (exact - nuclear) / _oracle(reference, other)
    assert errors["float32"] < 1e-9 < errors["tf32"]


def _tf32(values: torch.Tensor) -> torch.Tensor:
    """float32 values rounded to TF32's 10 explicit mantissa bits (round half up on the bit pattern)."""
    bits = values.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)
