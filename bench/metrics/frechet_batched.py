"""Many FDs against one reference, batched on a device (METHODS §1, "Batched form").

S = Σr^{1/2} is computed once in float64. With Σg = Lg Lgᵀ (batched Cholesky) the singular values of
K = Lgᵀ S are the square roots of the eigenvalues of S Σg S, so each set's trace term tr (Σr Σg)^{1/2} is
the nuclear norm ‖K‖_*. Three routes compute it for a whole chunk of sets at once:

- ``eigvalsh``: exact float64 eigenvalues of S Σg S (`torch.linalg.eigvalsh`). Latency-bound on a GPU
  (a 2048² matrix takes tens of milliseconds whatever the batch size).
- ``polar``: ‖K‖_* = tr(Uᵀ K) with U the orthogonal polar factor of K, from `polar_iteration` in float64.
- ``mixed``: the same iteration in float32, then a float64 polish: Newton–Schulz steps in float64 make
  the float32 factor Q orthogonal to rounding, and the trace tr(Qᵀ K) is taken in float64. For an exactly
  orthogonal Q, tr(QᵀK) ≤ ‖K‖_*, and the shortfall is second order in Q's angle from U: with h the skew
  part of QᵀK it is about Σ_ij h_ij² / (σ_i + σ_j). On covariances with condition number 1e8 the float32
  factor leaves 1e-13 to 7e-11 of the FD (tests/test_frechet_batched.py). Rounding the float32 matrix
  products to TF32's 10-bit mantissa left 1e-8 to 1e-7, so on CUDA the iteration runs with TF32 off.

Why a polar factor and not a Newton–Schulz square root of S Σg S: that matrix has the squared condition
number of K (1e16 for covariances of condition 1e8), far beyond float32; K's own is within it.

Every polar result is checked: the iteration converged (‖XᵀX − I‖ reached the working precision's floor
within the step limits), the factor is orthogonal to 1e-12 after the float64 steps, and QᵀK is symmetric
to `SKEW_TOLERANCE` (else Q is not K's polar factor). A set that fails, or whose product may be singular
(a covariance of n ≤ d images, or one that is only semi-definite), is recomputed with ``eigvalsh``, which
applies the single path's clamping rule (`bench.metrics.frechet`); its diagnostics say why. So a batched
FD equals `frechet_distance` on the same statistics to rounding (eigvalsh, polar) or to 1e-9 (mixed).

``auto`` picks ``mixed`` on CUDA and ``eigvalsh`` elsewhere (on a CPU one eigvalsh is cheaper than ten
inverses).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bench.device import resolve_device
from bench.metrics.frechet import (
    FrechetResult,
    clamp_rounding_total,
    eigen_diagnostics,
    matrix_sqrt_psd,
    small_sample_warnings,
    sqrt_trace_from_eigenvalues,
)
from bench.metrics.validation import (
    InvalidStatisticsError,
    checked_mean_cov,
    cholesky_or_psd,
    require_psd_eigenvalues,
)
from bench.stats import FeatureError, GaussianStats

ROUTES = ("auto", "eigvalsh", "polar", "mixed")
NEWTON_MAX_STEPS = 30
SCHULZ_MAX_STEPS = 20
SCHULZ_START = 1.0  # ‖XᵀX − I‖_F from which Newton–Schulz takes over: every singular value < √2 < √3
FLOAT32_RESIDUAL_TOLERANCE = 1e-3  # ‖XᵀX − I‖_F the float32 iteration must reach for the float64 steps
ORTHOGONALITY_TOLERANCE = 1e-12  # ‖QᵀQ − I‖_F / √d a factor must reach in float64
SKEW_TOLERANCE = 1e-4  # ‖QᵀK − KᵀQ‖_F / (2 ‖QᵀK‖_F) allowed: above it Q is not K's polar factor


@dataclass
class PolarIteration:
    """Orthogonal polar factors of a batch, in the working dtype, and how each set's iteration went."""

    factors: torch.Tensor  # (b, d, d)
    newton_steps: torch.Tensor  # (b,) scaled Newton steps taken
    schulz_steps: torch.Tensor  # (b,) Newton–Schulz steps taken
    residuals: torch.Tensor  # (b,) ‖XᵀX − I‖_F at the end (inf where the iteration broke down)

    def converged(self, tolerance: float) -> torch.Tensor:
        """Per set: finished within the step limits with a residual at most `tolerance`."""
        return torch.isfinite(self.residuals) & (self.residuals <= tolerance)


def polar_iteration(matrices: torch.Tensor) -> PolarIteration:
    """Orthogonal polar factors of square matrices (b, d, d), computed in their own dtype.

    Scaled Newton X ← (ζX + (ζX)^{-T})/2 with ζ = (‖X^{-1}‖_F / ‖X‖_F)^{1/2} (Higham) brings every
    singular value near 1 in about ten steps whatever the conditioning; once ‖XᵀX − I‖_F ≤ 1, Newton–Schulz
    X ← X(3I − XᵀX)/2 finishes without inverses (`newton_schulz`). A set whose matrix is singular in this
    dtype, or whose iterate overflows, stops with an infinite residual; the others are unaffected.
    """
    scale = torch.linalg.matrix_norm(matrices).clamp(min=torch.finfo(matrices.dtype).tiny)
    factors = matrices / scale[:, None, None]
    count = factors.shape[0]
    newton_steps = torch.zeros(count, dtype=torch.long, device=factors.device)
    residuals = torch.full((count,), torch.inf, dtype=factors.dtype, device=factors.device)
    # At least one Newton step: it lifts every singular value to ≥ 1, where Newton–Schulz converges.
    active = torch.isfinite(factors).all(dim=(-2, -1))
    for _ in range(NEWTON_MAX_STEPS):
        rows = active.nonzero().flatten()
        if rows.numel() == 0:
            break
        current = factors[rows]
        inverse, info = torch.linalg.inv_ex(current)
        inverse_t = inverse.transpose(-1, -2)
        zeta = (torch.linalg.matrix_norm(inverse_t) / torch.linalg.matrix_norm(current)).sqrt()
        following = (zeta[:, None, None] * current + inverse_t / zeta[:, None, None]) / 2.0
        residual = _orthogonality_residual(following)
        broke = (info != 0) | ~torch.isfinite(residual)
        factors[rows] = torch.where(broke[:, None, None], current, following)
        newton_steps[rows] += 1
        residuals[rows] = torch.where(broke, torch.inf, residual)
        active[rows] = ~broke & (residual > SCHULZ_START)
    # Sets still above SCHULZ_START ran out of Newton steps: they keep that residual and fail the check.
    ready = torch.isfinite(residuals) & (residuals <= SCHULZ_START)
    factors, schulz_steps, residuals = newton_schulz(factors, residuals, ready)
    return PolarIteration(factors, newton_steps, schulz_steps, residuals)


def newton_schulz(
    factors: torch.Tensor, residuals: torch.Tensor, active: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Newton–Schulz steps X ← X(3I − XᵀX)/2 on the `active` sets until ‖XᵀX − I‖_F stops halving (the
    step converges quadratically while rounding lets it) or falls to 8 √d · eps, or `SCHULZ_MAX_STEPS`.

    `residuals` are the sets' current ‖XᵀX − I‖_F. Returns the factors, the steps taken per set and the
    final residuals (those of a set that used every step are of its last iterate).
    """
    factors, active = factors.clone(), active.clone()
    residuals = residuals.to(dtype=factors.dtype, copy=True)
    steps = torch.zeros(factors.shape[0], dtype=torch.long, device=factors.device)
    eye = torch.eye(factors.shape[-1], dtype=factors.dtype, device=factors.device)
    floor = 8.0 * factors.shape[-1] ** 0.5 * torch.finfo(factors.dtype).eps  # rounding: nothing to gain
    previous = torch.full_like(residuals, torch.inf)
    for step in range(SCHULZ_MAX_STEPS + 1):
        rows = active.nonzero().flatten()
        if rows.numel() == 0:
            break
        current = factors[rows]
        gram = current.transpose(-1, -2) @ current
        residual = torch.linalg.matrix_norm(gram - eye)
        residuals[rows] = residual
        going = (residual <= previous[rows] / 2.0) & (residual > floor) & torch.isfinite(residual)
        if step == SCHULZ_MAX_STEPS:
            break
        following = current @ (1.5 * eye - 0.5 * gram)
        factors[rows] = torch.where(going[:, None, None], following, current)
        steps[rows] += going.long()
        previous[rows] = residual
        active[rows] = going
    return factors, steps, residuals


def _orthogonality_residual(factors: torch.Tensor) -> torch.Tensor:
    """‖XᵀX − I‖_F per matrix of a batch."""
    eye = torch.eye(factors.shape[-1], dtype=factors.dtype, device=factors.device)
    return torch.linalg.matrix_norm(factors.transpose(-1, -2) @ factors - eye)


@dataclass
class NuclearNorms:
    """‖K‖_* per set by a polar route, the per-set verdict, and what the check measured."""

    traces: torch.Tensor  # (b,) float64
    verified: torch.Tensor  # (b,) bool
    reasons: list[str | None]  # why a set was not verified
    details: list[dict[str, Any]]  # per set: the iteration's steps and residuals


def polar_nuclear_norms(factors: torch.Tensor, working: torch.dtype) -> NuclearNorms:
    """‖K‖_* = tr(QᵀK) for float64 matrices K (b, d, d), Q their polar factors found in `working` precision.

    With float32, Q is then made orthogonal in float64 by Newton–Schulz steps (the polish); with float64
    the iteration's own final steps do that. Each set is checked as the module docstring says.
    """
    norms = torch.linalg.matrix_norm(factors).clamp(min=torch.finfo(torch.float64).tiny)
    with _full_precision_matmuls(factors.device):  # scaled in float64 first: no float32 overflow
        iteration = polar_iteration((factors / norms[:, None, None]).to(working))
    tolerance = FLOAT32_RESIDUAL_TOLERANCE if working == torch.float32 else ORTHOGONALITY_TOLERANCE
    working_converged = iteration.converged(tolerance * factors.shape[-1] ** 0.5)
    q, polish_steps, residuals = iteration.factors.to(torch.float64), None, iteration.residuals
    if working != torch.float64:
        unknown = torch.full_like(residuals, torch.inf, dtype=torch.float64)
        q, polish_steps, residuals = newton_schulz(q, unknown, working_converged)
    orthogonality = residuals / factors.shape[-1] ** 0.5
    product = q.transpose(-1, -2) @ factors
    traces = torch.diagonal(product, dim1=-2, dim2=-1).sum(dim=-1)
    skew = torch.linalg.matrix_norm(product - product.transpose(-1, -2)) / (
        2.0 * torch.linalg.matrix_norm(product).clamp(min=torch.finfo(torch.float64).tiny)
    )
    orthogonal = working_converged & (orthogonality <= ORTHOGONALITY_TOLERANCE)
    verified = orthogonal & (skew <= SKEW_TOLERANCE) & torch.isfinite(traces)
    reasons, details = [], []
    for index in range(factors.shape[0]):
        detail = {
            "precision": "float32 iteration, float64 polish" if working == torch.float32 else "float64",
            "newton_steps": int(iteration.newton_steps[index]),
            "schulz_steps": int(iteration.schulz_steps[index]),
            "working_residual": _plain(iteration.residuals[index]),
            "orthogonality_residual": _plain(orthogonality[index]),
            "skew": _plain(skew[index]),
        }
        if polish_steps is not None:
            detail["float64_steps"] = int(polish_steps[index])
        details.append(detail)
        if not bool(verified[index]):
            reasons.append(_failure(detail, working, bool(working_converged[index]), bool(orthogonal[index])))
        else:
            reasons.append(None)
    return NuclearNorms(traces, verified, reasons, details)


def _failure(detail: dict[str, Any], working: torch.dtype, converged: bool, orthogonal: bool) -> str:
    """Why a polar result was not accepted, in words."""
    name = "float32" if working == torch.float32 else "float64"
    if detail["working_residual"] is None:
        return f"the {name} iteration broke down (a matrix singular in {name}, or overflow)"
    if not converged:
        return (
            f"the {name} iteration did not converge (‖XᵀX − I‖_F = {detail['working_residual']:.2g} after "
            f"{detail['newton_steps']} Newton and {detail['schulz_steps']} Newton–Schulz steps)"
        )
    if not orthogonal:
        return f"the float64 steps left ‖QᵀQ − I‖_F / √d = {detail['orthogonality_residual']}"
    return f"QᵀK is not symmetric enough (skew part {detail['skew']:.2g} > {SKEW_TOLERANCE:g})"


def _plain(value: torch.Tensor) -> float | None:
    """A finite float for the diagnostics (None for inf/NaN, which JSON cannot hold)."""
    number = float(value)
    return number if np.isfinite(number) else None


@contextlib.contextmanager
def _full_precision_matmuls(device: torch.device) -> Iterator[None]:
    """float32 matrix products in full float32 on CUDA (no TF32) for the duration."""
    if device.type != "cuda":
        yield
        return
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def as_statistics(value: Any, name: str) -> GaussianStats:
    """`value` as GaussianStats: statistics as they are, an (n, d) array or tensor of features summarised."""
    if isinstance(value, GaussianStats):
        return value
    if isinstance(value, (np.ndarray, torch.Tensor, list, tuple)):
        stats = GaussianStats.from_features(value)
        if stats.n is not None and stats.n < 2:
            raise FeatureError(f"{name} has {stats.n} rows; an FD needs at least 2 samples per set")
        return stats
    raise FeatureError(
        f"{name} must be GaussianStats or an (n, d) array/tensor of features, got {type(value).__name__}"
    )


def frechet_distance_many(
    reference: GaussianStats | Any,
    others: Sequence[GaussianStats | Any],
    device: str | torch.device | None = None,
    chunk_size: int = 16,
    method: str = "auto",
) -> list[FrechetResult]:
    """FD of every set in `others` against `reference`, in the order given.

    Each set is GaussianStats or an (n, d) feature array/tensor (summarised first). Work happens on
    `device` (CUDA when available and none is given), `chunk_size` sets at a time to bound memory (each
    set costs a few d × d float64 matrices). `method` is "auto", "eigvalsh", "polar" or "mixed" (see the
    module docstring). Invalid statistics raise `InvalidStatisticsError` naming the set.
    """
    if method not in ROUTES:
        raise ValueError(f"unknown batched FD method {method!r}; choose one of {', '.join(ROUTES)}")
    reference = as_statistics(reference, "the reference")
    others = [as_statistics(other, f"set {index}") for index, other in enumerate(others)]
    if not others:
        return []
    for index, other in enumerate(others):
        if other.dim != reference.dim:
            raise FeatureError(
                f"dimension mismatch: the reference has d = {reference.dim}, set {index} has d = {other.dim}"
            )
    target = resolve_device(device)
    route = ("mixed" if target.type == "cuda" else "eigvalsh") if method == "auto" else method
    reference_mean, reference_cov = checked_mean_cov(reference.mean, reference.cov, "the reference")
    # A set of n ≤ d images has a singular covariance even when rounding lets its Cholesky succeed.
    reference_definite = (
        cholesky_or_psd(reference_cov, "the reference") is not None and not reference.singular_by_count
    )
    root = torch.from_numpy(matrix_sqrt_psd(reference_cov)[0]).to(target)
    reference_trace = float(np.trace(reference_cov))
    results: list[FrechetResult] = []
    for start in range(0, len(others), chunk_size):
        chunk = others[start : start + chunk_size]
        checked = [checked_mean_cov(o.mean, o.cov, f"set {start + i}") for i, o in enumerate(chunk)]
        deltas = torch.from_numpy(np.stack([mean for mean, _ in checked]) - reference_mean).to(target)
        covs = torch.from_numpy(np.stack([cov for _, cov in checked])).to(target)
        lower, info = torch.linalg.cholesky_ex(covs)
        definite = info == 0
        _require_semi_definite(covs, definite, start)
        full_rank = torch.tensor([not other.singular_by_count for other in chunk], device=target)
        # Products of two positive-definite factors only: every eigenvalue is genuine, so the nuclear norm
        # is what the clamping rule gives. Possibly singular products go to eigvalsh, which applies it.
        eligible = definite & full_rank & reference_definite
        norms = _polar_route(route, lower, root, eligible)
        sqrt_traces = norms.traces if norms is not None else torch.zeros(len(chunk), dtype=torch.float64)
        sqrt_traces = sqrt_traces.to(target)
        verified = norms.verified.to(target) if norms is not None else torch.zeros_like(eligible)
        eigenvalues, pending = None, (~verified).nonzero().flatten()
        if pending.numel():
            inner = root @ covs[pending] @ root
            eigenvalues = _batched_eigvalsh((inner + inner.transpose(-1, -2)) / 2.0, start)
            sqrt_traces[pending] = sqrt_trace_from_eigenvalues(eigenvalues, ~eligible[pending])
        rows_of_pending = {int(index): row for row, index in enumerate(pending.tolist())}
        mean_terms = (deltas**2).sum(dim=-1).cpu().numpy()
        other_traces = torch.diagonal(covs, dim1=-2, dim2=-1).sum(dim=-1).cpu().numpy()
        trace_terms = reference_trace + other_traces - 2.0 * sqrt_traces.cpu().numpy()
        for offset, other in enumerate(chunk):
            scale = reference_trace + float(other_traces[offset]) + float(mean_terms[offset])
            value, clamped, warning = clamp_rounding_total(mean_terms[offset] + trace_terms[offset], scale)
            diagnostics: dict[str, Any] = {"warnings": small_sample_warnings(reference.n, other.n, other.dim)}
            if norms is not None and bool(eligible[offset]):
                diagnostics["polar"] = norms.details[offset]
            if offset in rows_of_pending:
                used = f"batched-eigvalsh-{target.type}"
                diagnostics.update(eigen_diagnostics(eigenvalues[rows_of_pending[offset]]))
                if norms is not None:
                    reason = norms.reasons[offset] or "a product that may be singular: exact route"
                    diagnostics["fallback"] = reason
                    if bool(eligible[offset]):
                        note = f"{route} route not verified ({reason}); used eigvalsh"
                        diagnostics["warnings"].append(note)
            else:
                used = f"batched-{route}-{target.type}"
            diagnostics["clamped_negative_total"] = clamped
            if warning:
                diagnostics["warnings"].append(warning)
            results.append(
                FrechetResult(
                    value=value,
                    mean_term=float(mean_terms[offset]),
                    trace_term=float(trace_terms[offset]),
                    n1=reference.n,
                    n2=other.n,
                    d=reference.dim,
                    method=used,
                    diagnostics=diagnostics,
                )
            )
    return results


def _polar_route(
    route: str, lower: torch.Tensor, root: torch.Tensor, eligible: torch.Tensor
) -> NuclearNorms | None:
    """‖Lgᵀ S‖_* of the eligible sets by the polar or mixed route (None for the eigvalsh route); sets that
    are not eligible come back unverified with no reason (the caller explains them)."""
    if route == "eigvalsh":
        return None
    count = lower.shape[0]
    traces = torch.zeros(count, dtype=torch.float64, device=lower.device)
    verified = torch.zeros(count, dtype=torch.bool, device=lower.device)
    reasons: list[str | None] = [None] * count
    details: list[dict[str, Any]] = [{} for _ in range(count)]
    rows = eligible.nonzero().flatten()
    if rows.numel():
        factors = lower[rows].transpose(-1, -2) @ root  # K = Lgᵀ S
        found = polar_nuclear_norms(factors, torch.float32 if route == "mixed" else torch.float64)
        traces[rows], verified[rows] = found.traces, found.verified
        for position, row in enumerate(rows.tolist()):
            reasons[row], details[row] = found.reasons[position], found.details[position]
    return NuclearNorms(traces, verified, reasons, details)


def _require_semi_definite(covs: torch.Tensor, definite: torch.Tensor, start: int) -> None:
    """Eigenvalue check (PSD up to rounding) for the sets of a chunk whose Cholesky failed."""
    for index in (~definite).nonzero().flatten().tolist():
        values = _batched_eigvalsh(covs[index][None], start + index)[0]
        require_psd_eigenvalues(values.cpu().numpy(), f"set {start + index}")


def _batched_eigvalsh(matrices: torch.Tensor, first_index: int) -> torch.Tensor:
    """`torch.linalg.eigvalsh` on finite matrices; non-convergence becomes InvalidStatisticsError."""
    if not bool(torch.isfinite(matrices).all()):
        raise InvalidStatisticsError(
            f"sets from {first_index} on: a product S Σg S has NaN or infinite entries (overflow)"
        )
    try:
        return torch.linalg.eigvalsh(matrices)
    except torch.linalg.LinAlgError as error:
        raise InvalidStatisticsError(
            f"sets from {first_index} on: the batched eigenvalue decomposition did not converge ({error})"
        ) from error
