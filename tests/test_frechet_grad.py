"""The differentiable FD: finite-difference gradients (gradcheck, float64), repeated eigenvalues, equality
with the exact FD, the member-replacement update against statistics recomputed from scratch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.metrics import frechet_distance
from bench.metrics.frechet_grad import (
    FixedReference,
    MemberGradient,
    differentiable_fd,
    frechet_distance_torch,
    replace_member,
    sqrt_trace,
)
from bench.stats import FeatureError, GaussianStats


def random_spd(d: int, rng: np.random.Generator, eigenvalues: np.ndarray | None = None) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    values = rng.uniform(0.5, 3.0, d) if eigenvalues is None else np.asarray(eigenvalues, dtype=float)
    return (q * values) @ q.T


def test_value_equals_exact_fd_full_rank() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 12)) @ rng.standard_normal((12, 12)) + 3.0
    y = rng.standard_normal((300, 12)) * 1.7
    a, b = GaussianStats.from_features(x), GaussianStats.from_features(y)
    value = frechet_distance_torch(torch.from_numpy(a.mean), torch.from_numpy(a.cov), b.mean, b.cov, False)
    exact = frechet_distance(a, b).value
    assert abs(float(value) - exact) <= 1e-10 * exact


def test_value_equals_exact_fd_when_sets_are_smaller_than_the_dimension() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((20, 64)), rng.standard_normal((30, 64)) + 0.3
    a, b = GaussianStats.from_features(x), GaussianStats.from_features(y)
    gradient = MemberGradient.at(a, b)
    exact = frechet_distance(x, y).value  # the exact low-rank path on features
    assert abs(gradient.value - exact) <= 1e-10 * exact


def test_gradcheck_mean_and_covariance() -> None:
    rng = np.random.default_rng(2)
    d = 6
    reference = FixedReference.from_mean_cov(rng.standard_normal(d), random_spd(d, rng))
    mean = torch.from_numpy(rng.standard_normal(d)).requires_grad_(True)
    cov = torch.from_numpy(random_spd(d, rng)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m, c: differentiable_fd(m, c, reference, False), (mean, cov))


def test_gradcheck_with_repeated_eigenvalues() -> None:
    """Σ2 = 2 I and Σ1 with two eigenvalues of multiplicity 3: S Σ1 S has exactly repeated eigenvalues,
    where an `eigh` backward divides by zero."""
    rng = np.random.default_rng(3)
    d = 6
    reference = FixedReference.from_mean_cov(np.zeros(d), 2.0 * np.eye(d))
    cov1 = random_spd(d, rng, eigenvalues=[1.0, 1.0, 1.0, 3.0, 3.0, 3.0])
    cov = torch.from_numpy(cov1).requires_grad_(True)
    mean = torch.zeros(d, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m, c: differentiable_fd(m, c, reference, False), (mean, cov))
    # Every eigenvalue equal (Σ1 = I): tr (2 Σ1)^{1/2} = √2 Σ √λ has derivative √2 · ½ · I, so
    # ∂FD/∂Σ1 = I − 2 · (√2/2) I = (1 − √2) I in closed form.
    identity = torch.eye(d, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(differentiable_fd(mean.detach(), identity, reference, False), identity)
    assert torch.allclose(grad, (1.0 - np.sqrt(2.0)) * torch.eye(d, dtype=torch.float64), atol=1e-12)


def test_gradcheck_through_features_of_a_set_smaller_than_its_dimension() -> None:
    """n < d: the covariance is singular, FD is still differentiable in the features (its first-order
    change stays in the covariance's range) and the gradient matches finite differences."""
    rng = np.random.default_rng(4)
    n, d = 5, 8
    reference = GaussianStats.from_features(rng.standard_normal((40, d)))
    fixed = FixedReference.from_stats(reference)

    def fd_of(features: torch.Tensor) -> torch.Tensor:
        mean = features.mean(dim=0)
        centred = features - mean
        return differentiable_fd(mean, centred.T @ centred / (n - 1), fixed, True)

    features = torch.from_numpy(rng.standard_normal((n, d))).requires_grad_(True)
    assert torch.autograd.gradcheck(fd_of, (features,))


def test_sqrt_trace_gradient_is_half_the_inverse_square_root() -> None:
    rng = np.random.default_rng(5)
    matrix = random_spd(5, rng)
    values, vectors = np.linalg.eigh(matrix)
    tensor = torch.from_numpy(matrix).requires_grad_(True)
    (grad,) = torch.autograd.grad(sqrt_trace(tensor, False), tensor)
    expected = 0.5 * (vectors / np.sqrt(values)) @ vectors.T
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_replace_member_equals_statistics_recomputed_from_scratch() -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((30, 7)) * 2.0 + 1e4  # a large mean: a one-pass update would cancel
    stats = GaussianStats.from_features(x)
    new = rng.standard_normal(7) * 5.0 + 1e4
    mean, m2 = replace_member(
        stats.n, torch.from_numpy(stats.mean), torch.from_numpy(stats.m2), torch.from_numpy(x[11]),
        torch.from_numpy(new),
    )  # fmt: skip
    replaced = x.copy()
    replaced[11] = new
    np.testing.assert_allclose(mean.numpy(), replaced.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(m2.numpy() / 29, np.cov(replaced, rowvar=False), rtol=1e-8, atol=1e-9)


def test_member_gradient_matches_finite_differences_of_the_exact_fd() -> None:
    """∂FD/∂x_i from the batched closed form against central differences of `frechet_distance` on the
    features with member i moved (an independent float64 computation)."""
    rng = np.random.default_rng(7)
    n, d = 40, 6
    x = rng.standard_normal((n, d))
    ref = rng.standard_normal((60, d)) * 1.3 + 0.5
    gradient = MemberGradient.at(GaussianStats.from_features(x), GaussianStats.from_features(ref))
    members = [3, 17]
    analytic = gradient(torch.from_numpy(x[members])).numpy()
    step = 1e-5
    for row, member in enumerate(members):
        numeric = np.empty(d)
        for k in range(d):
            up, down = x.copy(), x.copy()
            up[member, k] += step
            down[member, k] -= step
            numeric[k] = (frechet_distance(up, ref).value - frechet_distance(down, ref).value) / (2 * step)
        np.testing.assert_allclose(analytic[row], numeric, rtol=1e-6, atol=1e-8)


def test_member_gradient_equals_autograd_through_the_replacement() -> None:
    rng = np.random.default_rng(8)
    x, ref = rng.standard_normal((25, 5)), rng.standard_normal((30, 5))
    stats = GaussianStats.from_features(x)
    fixed = FixedReference.from_stats(GaussianStats.from_features(ref))
    new = torch.from_numpy(x[4].copy()).requires_grad_(True)
    mean, m2 = replace_member(
        stats.n, torch.from_numpy(stats.mean), torch.from_numpy(stats.m2), torch.from_numpy(x[4]), new
    )
    (autograd,) = torch.autograd.grad(differentiable_fd(mean, m2 / (stats.n - 1), fixed, False), new)
    closed = MemberGradient.at(stats, fixed)(torch.from_numpy(x[4:5]))[0]
    np.testing.assert_allclose(closed.numpy(), autograd.numpy(), rtol=1e-10, atol=1e-12)


def test_bad_inputs_are_named() -> None:
    reference = FixedReference.from_mean_cov(np.zeros(3), np.eye(3))
    with pytest.raises(FeatureError, match="shape mismatch"):
        differentiable_fd(torch.zeros(4, dtype=torch.float64), torch.eye(4, dtype=torch.float64), reference)
    with pytest.raises(FeatureError, match="NaN"):
        differentiable_fd(torch.full((3,), float("nan")), torch.eye(3), reference)
    with pytest.raises(FeatureError, match="not symmetric"):
        FixedReference.from_mean_cov(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(FeatureError, match="reference"):
        FixedReference.from_mean_cov(np.zeros(2), -np.eye(2))
    with pytest.raises(ValueError, match="held fixed"):
        FixedReference.from_mean_cov(np.zeros(3), torch.eye(3, requires_grad=True))
    with pytest.raises(FeatureError, match="at least 2"):
        replace_member(1, torch.zeros(3), torch.zeros(3, 3), torch.zeros(3), torch.zeros(3))
