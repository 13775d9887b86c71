"""The Fréchet distance as a differentiable torch function of one set, and the exact update of a set's
statistics when one member is replaced (METHODS §10).

FD(μ1, Σ1, μ2, Σ2) = ‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr (S Σ1 S)^{1/2}, with S = Σ2^{1/2}. The second set
is a fixed reference: S is computed once (`FixedReference`) and no gradient reaches Σ2.

The square-root trace is differentiated implicitly rather than through `eigh`'s backward, whose
1/(λ_i − λ_j) terms blow up where eigenvalues repeat. With Y = C^{1/2}, Y Y = C gives the Sylvester equation
Y dY + dY Y = dC; in C's eigenbasis dY_ij = dC_ij / (√λ_i + √λ_j), so d tr Y = ½ tr(C^{-1/2} dC). That
gradient, ½ C^{-1/2}, is a function of C alone (the same for any choice of eigenvectors inside a repeated
eigenspace) and involves only sums of square roots, never differences of eigenvalues. Eigenvalues at or
below the noise floor of `bench.metrics.frechet` count as zero, in the value and the gradient alike: for a
set with n ≤ d the covariance is singular and its first-order change stays inside its own range, where
the inverse square root is finite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bench.metrics.frechet import matrix_sqrt_psd, noise_floor, sqrt_trace_from_eigenvalues
from bench.metrics.validation import checked_mean_cov, cholesky_or_psd
from bench.stats import FeatureError, GaussianStats

DTYPE = torch.float64


def _as_float64(value: Any, name: str) -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    if not tensor.is_floating_point():
        tensor = tensor.to(DTYPE)
    if not bool(torch.isfinite(tensor.detach()).all()):
        raise FeatureError(f"{name} holds NaN or infinite values")
    return tensor.to(DTYPE)


@dataclass(frozen=True)
class FixedReference:
    """The second set of a differentiable FD: its mean, covariance trace and S = Σ2^{1/2} (float64)."""

    mean: torch.Tensor
    root: torch.Tensor
    trace: float
    n: int | None

    @classmethod
    def from_mean_cov(cls, mean: Any, cov: Any, n: int | None = None) -> FixedReference:
        """The reference (μ2, Σ2); Σ2^{1/2} comes from `eigh` once (noise-level eigenvalues zeroed)."""
        if isinstance(cov, torch.Tensor) and cov.requires_grad:
            raise ValueError("the reference covariance is held fixed: pass it without requires_grad")
        as_numpy = [v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v for v in (mean, cov)]
        mean_np, cov_np = checked_mean_cov(*as_numpy, "the reference")
        cholesky_or_psd(cov_np, "the reference")  # refuses a covariance that is not PSD up to rounding
        root, _ = matrix_sqrt_psd(cov_np)
        return cls(torch.from_numpy(mean_np), torch.from_numpy(root), float(np.trace(cov_np)), n)

    @classmethod
    def from_stats(cls, stats: GaussianStats) -> FixedReference:
        """The reference from streaming statistics."""
        return cls.from_mean_cov(stats.mean, stats.cov, stats.n)

    @property
    def dim(self) -> int:
        return int(self.mean.numel())


class _SqrtTrace(torch.autograd.Function):
    """tr C^{1/2} of a symmetric PSD matrix; backward ½ C^{-1/2} on the eigenvalues above the noise floor."""

    @staticmethod
    def forward(ctx: Any, matrix: torch.Tensor, singular: bool) -> torch.Tensor:
        eigenvalues, vectors = torch.linalg.eigh(matrix)
        floor = noise_floor(eigenvalues) if singular else eigenvalues.new_zeros(1)
        kept = eigenvalues > floor
        inverse_roots = torch.where(kept, eigenvalues.clamp(min=floor).rsqrt(), 0.0)
        ctx.save_for_backward(vectors, inverse_roots)
        return sqrt_trace_from_eigenvalues(eigenvalues, singular)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        vectors, inverse_roots = ctx.saved_tensors
        return grad_output * 0.5 * (vectors * inverse_roots) @ vectors.T, None


def sqrt_trace(matrix: torch.Tensor, singular: bool = True) -> torch.Tensor:
    """Σ √λ over the eigenvalues of the symmetric part of `matrix`, differentiable (implicit gradient).

    With `singular`, eigenvalues at or below the noise floor count as zero (a possibly rank-deficient
    matrix); otherwise only negative ones do (`bench.metrics.frechet.sqrt_trace_from_eigenvalues`).
    """
    return _SqrtTrace.apply((matrix + matrix.transpose(-1, -2)) / 2.0, singular)


def differentiable_fd(
    mean: torch.Tensor, cov: torch.Tensor, reference: FixedReference, singular: bool = True
) -> torch.Tensor:
    """FD between (mean, cov) and a fixed reference as a float64 scalar tensor with gradients to both.

    `cov` is symmetrised first, so its gradient is symmetric. Unlike `frechet_distance`, a tiny negative
    total is returned as it is (clamping would cut the gradient).
    """
    mean = _as_float64(mean, "mean")
    cov = _as_float64(cov, "covariance")
    if mean.shape != (reference.dim,) or cov.shape != (reference.dim, reference.dim):
        raise FeatureError(
            f"shape mismatch: mean {tuple(mean.shape)} and covariance {tuple(cov.shape)} against a "
            f"reference of dimension {reference.dim}"
        )
    root = reference.root.to(cov.device)
    delta = mean - reference.mean.to(mean.device)
    product = root @ ((cov + cov.T) / 2.0) @ root
    return delta @ delta + torch.trace(cov) + reference.trace - 2.0 * sqrt_trace(product, singular)


def frechet_distance_torch(
    mean1: torch.Tensor, cov1: torch.Tensor, mean2: Any, cov2: Any, singular: bool = True
) -> torch.Tensor:
    """FD(μ1, Σ1, μ2, Σ2) with gradients to μ1, Σ1 (the second set is held fixed)."""
    return differentiable_fd(mean1, cov1, FixedReference.from_mean_cov(mean2, cov2), singular)


def replace_member(
    n: int, mean: torch.Tensor, m2: torch.Tensor, old: torch.Tensor, new: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, M2) of a set of n samples after its member `old` is replaced by `new`, exactly.

    With a = old − μ, b = new − μ and δ = (b − a)/n (the change of the mean):
    μ' = μ + δ and M2' = M2 − a aᵀ + b bᵀ − n δ δᵀ (a low-rank update written in deviations from the
    mean, so it does not cancel when |μ| is large). Differentiable in every argument; Σ' = M2'/(n − 1).
    """
    if n < 2:
        raise FeatureError(f"replacing a member needs a set of at least 2 samples, got n = {n}")
    before = old - mean
    after = new - mean
    shift = (after - before) / n
    m2_new = m2 - torch.outer(before, before) + torch.outer(after, after) - n * torch.outer(shift, shift)
    return mean + shift, m2_new


def singular_sets(first: GaussianStats, second: GaussianStats | FixedReference) -> bool:
    """The rule of `frechet_distance`: noise-level eigenvalues are zeros when a set has n ≤ d (or n is
    unknown for the reference, as for pytorch-fid statistics files, whose rank nobody can tell)."""
    return first.n is None or first.n <= first.dim or second.n is None or second.n <= first.dim


@dataclass(frozen=True)
class MemberGradient:
    """∂FD/∂x for members x of a set, at the set's own statistics, for many members at once.

    Replacing member x by y moves the statistics by μ' = μ + (y − x)/n and, at y = x, Σ' by
    (dy aᵀ + a dyᵀ)/(n − 1) with a = x − μ (`replace_member`), so ∂FD/∂y = g_μ / n + 2 G_Σ a / (n − 1)
    with g_μ = ∂FD/∂μ and G_Σ = ∂FD/∂Σ (symmetric) taken once from `differentiable_fd`.
    """

    value: float
    n: int
    mean: torch.Tensor
    mean_grad: torch.Tensor
    cov_grad: torch.Tensor

    @classmethod
    def at(cls, stats: GaussianStats, reference: GaussianStats | FixedReference) -> MemberGradient:
        """The gradient field of FD(stats, reference) with respect to each member of `stats`."""
        if stats.n is None or stats.n < 2:
            raise FeatureError(f"a member gradient needs a set with a known n ≥ 2, got n = {stats.n}")
        fixed = reference if isinstance(reference, FixedReference) else FixedReference.from_stats(reference)
        mean = torch.from_numpy(np.asarray(stats.mean, dtype=np.float64)).requires_grad_(True)
        cov = torch.from_numpy(np.asarray(stats.cov, dtype=np.float64)).requires_grad_(True)
        value = differentiable_fd(mean, cov, fixed, singular_sets(stats, fixed))
        mean_grad, cov_grad = torch.autograd.grad(value, (mean, cov))
        return cls(float(value.detach()), int(stats.n), mean.detach(), mean_grad, cov_grad)

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        """(B, d) gradients for the (B, d) features of B members (float64, on the features' device)."""
        x = features.to(DTYPE)
        deviations = x - self.mean.to(x.device)
        from_mean = self.mean_grad.to(x.device) / self.n
        return from_mean + (2.0 / (self.n - 1)) * deviations @ self.cov_grad.to(x.device)
