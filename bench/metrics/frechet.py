"""The Fréchet distance between two Gaussians, computed exactly in float64 (METHODS §1).

FD = ‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr (Σ1 Σ2)^{1/2}.

tr (Σ1 Σ2)^{1/2} is the sum of square roots of the eigenvalues of Σ1 Σ2, which are those of a symmetric
positive semi-definite matrix similar to it. Three exact ways to get them, chosen automatically:

- ``cholesky``: Σ1 = L Lᵀ, eigenvalues of Lᵀ Σ2 L (one Cholesky, one `eigvalsh`); needs Σ1 positive
  definite and falls back to ``eigh`` when it is not.
- ``eigh``: S = Σ1^{1/2} from `eigh` (eigenvalues clamped at 0), eigenvalues of S Σ2 S.
- ``low-rank``: when a set is given as features and has fewer rows than dimensions, with the centred,
  scaled block A = (X1 − μ1)/√(n1 − 1) the non-zero eigenvalues are those of the small matrix A Σ2 Aᵀ
  (or the squared singular values of A Bᵀ when both sets are features).

Statistics pass the input checks of `bench.metrics.validation` first. One clamping rule serves this module
and the batched one (`bench.metrics.frechet_batched`): `sqrt_trace_from_eigenvalues` for noise-level
eigenvalues and `clamp_rounding_total` for a tiny negative total.

No `scipy.linalg.sqrtm`: it is slow, returns complex values, and its `disp` argument is gone in newer scipy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg

from bench.metrics.validation import checked_mean_cov, cholesky_or_psd, converged, require_finite
from bench.stats import FeatureError, GaussianStats, as_float64_features

try:  # the clamping rule also serves torch tensors (the batched path); numpy input needs no torch
    import torch
except ImportError:  # pragma: no cover - torch is a declared dependency
    torch = None  # type: ignore[assignment]

METHODS = ("auto", "cholesky", "eigh", "low-rank")
ROUNDING_TOTAL = 1e-8  # a negative FD above −1e-8 · (tr Σ1 + tr Σ2 + mean term) is rounding


@dataclass
class FrechetResult:
    """An FD value with its two terms, the sizes it came from and how it was computed."""

    value: float
    mean_term: float
    trace_term: float
    n1: int | None
    n2: int | None
    d: int
    method: str
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form: value, terms, sizes, method and diagnostics."""
        return {
            "value": self.value,
            "mean_term": self.mean_term,
            "trace_term": self.trace_term,
            "n1": self.n1,
            "n2": self.n2,
            "d": self.d,
            "method": self.method,
            "diagnostics": self.diagnostics,
        }

    def notes(self) -> tuple[str, ...]:
        """The diagnostics a reader of a results table needs, as short phrases (for its `diagnostics`
        column): small samples, clamped eigenvalue mass, a clamped negative total, fallbacks."""
        phrases = [
            f"{label} = {n} ≤ d = {self.d}: FD strongly biased"
            for label, n in (("n1", self.n1), ("n2", self.n2))
            if n is not None and n <= self.d
        ]
        clamped_mass = self.diagnostics.get("clamped_mass", 0.0)
        if clamped_mass > 0:
            phrases.append(f"clamped eigenvalue mass {clamped_mass:.1e}")
        clamped_total = self.diagnostics.get("clamped_negative_total", 0.0)
        if clamped_total < 0:
            phrases.append(f"negative total {clamped_total:.1e} clamped to 0")
        long_forms = set(small_sample_warnings(self.n1, self.n2, self.d))  # already said, shorter
        phrases += [warning for warning in self.diagnostics.get("warnings", []) if warning not in long_forms]
        return tuple(phrases)

    def __float__(self) -> float:
        return self.value


class _FeatureSet:
    """One side of an FD: mean, size and covariance, plus the centred scaled block for feature input.

    Statistics are validated on arrival (their Cholesky factor, which proves definiteness, is kept for the
    FD). The d × d covariance of a feature set is only formed when a path needs it, so the low-rank path
    on two small feature sets never pays for it.
    """

    def __init__(self, value: Any, name: str, rows: np.ndarray | None = None) -> None:
        self.name = name
        self.block: np.ndarray | None = None  # (X − μ) / sqrt(n − 1), only for feature input
        self._cov: np.ndarray | None = None
        self._cholesky: np.ndarray | None = None
        self._factorised = False
        if rows is not None:
            self._init_resampled(as_float64_features(value, name=name), np.asarray(rows), name)
            return
        if isinstance(value, GaussianStats):
            if value.n is not None and value.n < 2:
                raise FeatureError(f"{name} has n = {value.n} samples; an FD needs at least 2 per set")
            self.n = value.n
            self.mean, self._cov = checked_mean_cov(value.mean, value.cov, name)
            self._cholesky, self._factorised = cholesky_or_psd(self._cov, name), True
            return
        features = as_float64_features(value, name=name)
        if features.shape[0] < 2:
            raise FeatureError(f"{name} has {features.shape[0]} rows; an FD needs at least 2 samples per set")
        self.n = features.shape[0]
        self.mean = features.mean(axis=0)
        self.block = (features - self.mean) / np.sqrt(self.n - 1)

    def _init_resampled(self, features: np.ndarray, rows: np.ndarray, name: str) -> None:
        """The set features[rows] (rows may repeat) as its distinct rows weighted by multiplicity.

        Σ_i c_i (x_i − μ)(x_i − μ)ᵀ / (N − 1) is exactly the covariance of the set with its repeats, and
        the block has one row per distinct image: a bootstrap replicate holds about 63 % distinct rows, so
        the low-rank path works on a matrix that much smaller.
        """
        if rows.size < 2:
            raise FeatureError(f"{name} has {rows.size} rows; an FD needs at least 2 samples per set")
        if rows.min() < 0 or rows.max() >= features.shape[0]:
            raise FeatureError(f"{name}: resampled row indices must lie in [0, {features.shape[0]})")
        counts = np.bincount(rows, minlength=features.shape[0])  # O(n), unlike np.unique's sort
        distinct = np.flatnonzero(counts)
        weights = counts[distinct].astype(np.float64)
        chosen = features[distinct]
        self.n = int(rows.size)
        self.mean = weights @ chosen / self.n
        self.block = (chosen - self.mean) * np.sqrt(weights / (self.n - 1))[:, None]

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def singular_by_count(self) -> bool:
        """True when the set has too few distinct samples for a full-rank covariance (rank ≤ rows − 1 < d)."""
        rows = self.block.shape[0] if self.block is not None else self.n
        return rows is not None and rows <= self.dim

    @property
    def cov(self) -> np.ndarray:
        if self._cov is None:
            assert self.block is not None
            self._cov = self.block.T @ self.block
        return self._cov

    def cholesky(self) -> np.ndarray | None:
        """Lower Cholesky factor of Σ, or None when Σ is not (numerically) positive definite."""
        if not self._factorised:
            covariance = self.cov
            require_finite(covariance, f"{self.name}: the covariance")
            try:
                self._cholesky = scipy.linalg.cholesky(covariance, lower=True, check_finite=False)
            except np.linalg.LinAlgError:
                self._cholesky = None
            self._factorised = True
        return self._cholesky

    def trace_cov(self) -> float:
        if self.block is not None:
            return float(np.einsum("ij,ij->", self.block, self.block))
        return float(np.trace(self.cov))


def frechet_distance(a: Any, b: Any, method: str = "auto") -> FrechetResult:
    """FD between two feature sets, each a GaussianStats or an (n, d) array/tensor of features.

    `method` is one of "auto", "cholesky", "eigh", "low-rank" (see the module docstring). "auto" takes the
    low-rank path when a set given as features has n < d, else Cholesky with an `eigh` fallback. Invalid
    statistics raise `InvalidStatisticsError` (a FeatureError) naming the set and the failed check.
    """
    if method not in METHODS:
        raise ValueError(f"unknown FD method {method!r}; choose one of {', '.join(METHODS)}")
    return _frechet(_FeatureSet(a, "first set"), _FeatureSet(b, "second set"), method)


def frechet_distance_resampled(
    x: Any, rows_x: np.ndarray, y: Any, rows_y: np.ndarray, method: str = "auto"
) -> FrechetResult:
    """FD between x[rows_x] and y[rows_y], where rows may repeat (bootstrap replicates).

    Equal to `frechet_distance(x[rows_x], y[rows_y])`, computed on the distinct rows weighted by their
    multiplicity, which makes the low-rank path several times cheaper for resampled sets.
    """
    if method not in METHODS:
        raise ValueError(f"unknown FD method {method!r}; choose one of {', '.join(METHODS)}")
    return _frechet(_FeatureSet(x, "first set", rows_x), _FeatureSet(y, "second set", rows_y), method)


def _frechet(first: _FeatureSet, second: _FeatureSet, method: str) -> FrechetResult:
    d1, d2 = first.dim, second.dim
    if d1 != d2:
        raise FeatureError(f"dimension mismatch: the first set has d = {d1}, the second d = {d2}")
    d = d1

    diagnostics: dict[str, Any] = {"warnings": small_sample_warnings(first.n, second.n, d)}
    chosen = _choose_method(method, first, second)
    if chosen == "cholesky" and first.cholesky() is None:
        diagnostics["warnings"].append("Σ1 is not positive definite; fell back from Cholesky to eigh")
        chosen = "eigh"
    if chosen == "low-rank":
        sqrt_trace, eig_info = _sqrt_trace_low_rank(first, second)
    elif chosen == "cholesky":
        sqrt_trace, eig_info = _sqrt_trace_cholesky(first, second)
    else:
        sqrt_trace, eig_info = _sqrt_trace_symmetric(first.cov, second.cov)
    diagnostics.update(eig_info)

    delta = first.mean - second.mean
    mean_term = float(delta @ delta)
    trace_sum = first.trace_cov() + second.trace_cov()
    trace_term = trace_sum - 2.0 * sqrt_trace
    value, clamped, warning = clamp_rounding_total(mean_term + trace_term, trace_sum + mean_term)
    diagnostics["clamped_negative_total"] = clamped
    if warning:
        diagnostics["warnings"].append(warning)
    return FrechetResult(
        value=value,
        mean_term=mean_term,
        trace_term=float(trace_term),
        n1=first.n,
        n2=second.n,
        d=d,
        method=chosen,
        diagnostics=diagnostics,
    )


def small_sample_warnings(n1: int | None, n2: int | None, d: int) -> list[str]:
    """The n ≤ d warning for each set that has it (its covariance is singular; FD is biased upward)."""
    return [
        f"{label} = {n} ≤ d = {d}: the sample covariance is singular and FD is strongly biased "
        "upward at this sample size"
        for label, n in (("n1", n1), ("n2", n2))
        if n is not None and n <= d
    ]


def clamp_rounding_total(value: float, scale: float) -> tuple[float, float, str | None]:
    """THE rule for a negative FD total: above −1e-8 · scale it is rounding and becomes 0.

    Returns (value to report, the negative total clamped away or 0.0, a warning when the total is negative
    beyond rounding and left as it is).
    """
    value = float(value)
    if value >= 0:
        return value, 0.0, None
    if value > -ROUNDING_TOTAL * max(float(scale), np.finfo(float).tiny):
        return 0.0, value, None
    return value, 0.0, f"FD came out negative ({value:.3e}) beyond rounding; the covariances may be corrupt"


def _choose_method(method: str, first: _FeatureSet, second: _FeatureSet) -> str:
    # n ≤ d rows give a covariance of rank ≤ n − 1 < d: exactly singular, so the exact low-rank path.
    small_feature_side = any(side.block is not None and side.singular_by_count for side in (first, second))
    if method == "low-rank":
        if first.block is None and second.block is None:
            raise FeatureError(
                "the low-rank FD path needs at least one set given as features, not statistics"
            )
        return method
    if method != "auto":
        return method
    return "low-rank" if small_feature_side else "cholesky"


def eigen_diagnostics(eigenvalues: Any) -> dict[str, Any]:
    """Smallest eigenvalue before clamping, the mass clamped away, and the effective rank (one set's
    eigenvalues, numpy or torch)."""
    values = _as_numpy(eigenvalues)
    tolerance = float(noise_floor(values))
    return {
        "min_eigenvalue": float(values.min(initial=np.inf)) if values.size else 0.0,
        "clamped_mass": float(np.abs(values[values < 0]).sum()),
        "effective_rank": int((values > tolerance).sum()),
    }


def noise_floor(eigenvalues: Any) -> Any:
    """d · eps · max|λ| over the last axis (numpy or torch, batched): eigenvalues at or below it cannot
    be told from rounding noise. A float for one 1-D numpy set, else an array with a trailing axis of 1."""
    if _is_tensor(eigenvalues):
        if eigenvalues.shape[-1] == 0:
            return eigenvalues.new_zeros((*eigenvalues.shape[:-1], 1))
        peak = eigenvalues.abs().amax(dim=-1, keepdim=True)
        return peak * eigenvalues.shape[-1] * torch.finfo(torch.float64).eps
    values = np.asarray(eigenvalues)
    if values.shape[-1] == 0:
        return 0.0 if values.ndim == 1 else np.zeros((*values.shape[:-1], 1))
    floor = np.abs(values).max(axis=-1, keepdims=True) * values.shape[-1] * np.finfo(np.float64).eps
    return float(floor[0]) if values.ndim == 1 else floor


def sqrt_trace_from_eigenvalues(eigenvalues: Any, singular: Any = True) -> Any:
    """THE clamping rule for Σ sqrt(λ): negative eigenvalues count as 0, and where `singular` (a product
    that may be rank-deficient) so do those at or below the noise floor, since a rounding error of 1e-16
    on a true zero would otherwise add a spurious 1e-8 each. For a product of two positive-definite
    factors every eigenvalue is genuine, however small, and is kept (dropping them would bias an
    ill-conditioned FD by ~1e-9 relative).

    numpy or torch; `eigenvalues` (..., d) with `singular` a bool or one flag per leading index. Returns a
    float for a 1-D numpy input, else an array/tensor over the leading axes.
    """
    if _is_tensor(eigenvalues):
        flags = torch.as_tensor(singular, dtype=torch.bool, device=eigenvalues.device)
        floor = torch.where(flags[..., None], noise_floor(eigenvalues), 0.0)
        roots = torch.where(eigenvalues > floor, eigenvalues.clamp(min=0).sqrt(), 0.0)
        return roots.sum(dim=-1)
    values = np.asarray(eigenvalues)
    floor = np.where(np.asarray(singular)[..., None], noise_floor(values), 0.0)
    roots = np.where(values > floor, np.sqrt(np.clip(values, 0.0, None)), 0.0).sum(axis=-1)
    return float(roots) if values.ndim == 1 else roots


def _is_tensor(value: Any) -> bool:
    return torch is not None and isinstance(value, torch.Tensor)


def _as_numpy(values: Any) -> np.ndarray:
    return values.detach().cpu().numpy() if _is_tensor(values) else np.asarray(values)


def _sqrt_trace_cholesky(first: _FeatureSet, second: _FeatureSet) -> tuple[float, dict[str, Any]]:
    """Eigenvalues of Σ1Σ2 through Cholesky factors, with triangular BLAS kernels where possible.

    With Σ1 = L1 L1ᵀ and Σ2 = L2 L2ᵀ, the eigenvalues of Σ1Σ2 are those of KᵀK for K = L2ᵀ L1 (one
    triangular product and one symmetric rank-k update: about 40 % fewer flops than Lᵀ Σ2 L with two
    general products). When Σ2 is only semi-definite, Lᵀ Σ2 L is formed instead. A set with n ≤ d has a
    singular covariance even if rounding let its Cholesky factorisation succeed: then noise-level
    eigenvalues of the product are zeros, not genuine values.
    """
    lower1, lower2 = first.cholesky(), second.cholesky()
    assert lower1 is not None
    if lower2 is None:
        inner, singular = lower1.T @ second.cov @ lower1, True
    else:
        blas = scipy.linalg.blas
        factor = blas.dtrmm(1.0, lower2, lower1, trans_a=1, lower=1)  # L2ᵀ L1
        inner = blas.dsyrk(1.0, factor, trans=1, lower=1)  # KᵀK, lower triangle filled
        singular = first.singular_by_count or second.singular_by_count
    eigenvalues = converged(
        "eigenvalues of L1ᵀ Σ2 L1", scipy.linalg.eigvalsh, inner, lower=True, overwrite_a=True
    )
    return sqrt_trace_from_eigenvalues(eigenvalues, singular), eigen_diagnostics(eigenvalues)


def matrix_sqrt_psd(cov: np.ndarray) -> tuple[np.ndarray, float]:
    """Symmetric square root of a PSD matrix by `eigh` (noise-level eigenvalues zeroed), and the least λ."""
    eigenvalues, vectors = converged("eigendecomposition of Σ1", scipy.linalg.eigh, cov)
    roots = np.where(eigenvalues > noise_floor(eigenvalues), np.sqrt(np.clip(eigenvalues, 0.0, None)), 0.0)
    root = (vectors * roots) @ vectors.T
    return (root + root.T) / 2.0, float(eigenvalues.min(initial=0.0))


def _sqrt_trace_symmetric(cov1: np.ndarray, cov2: np.ndarray) -> tuple[float, dict[str, Any]]:
    root, min_cov_eigenvalue = matrix_sqrt_psd(cov1)
    inner = root @ cov2 @ root
    eigenvalues = converged(
        "eigenvalues of Σ1^½ Σ2 Σ1^½", scipy.linalg.eigvalsh, (inner + inner.T) / 2.0, overwrite_a=True
    )
    info = eigen_diagnostics(eigenvalues)
    info["min_eigenvalue_sigma1"] = min_cov_eigenvalue
    return sqrt_trace_from_eigenvalues(eigenvalues), info


def _sqrt_trace_low_rank(first: _FeatureSet, second: _FeatureSet) -> tuple[float, dict[str, Any]]:
    if first.block is not None and second.block is not None:
        cross = first.block @ second.block.T
        singular_values = converged("singular values of A Bᵀ", scipy.linalg.svdvals, cross)
        return float(singular_values.sum()), eigen_diagnostics(singular_values**2)
    small, other = (first, second) if first.block is not None else (second, first)
    assert small.block is not None
    # A Σ2 Aᵀ = (A F)(A F)ᵀ with Σ2 = F Fᵀ (its Cholesky factor, or a pivoted rank-revealing Cholesky when
    # Σ2 is singular); its singular values are the square roots we need, obtained without squaring the
    # small ones into rounding noise.
    factor = other.cholesky()
    if factor is None:
        factor = psd_factor(other.cov)
    singular_values = converged("singular values of A F", scipy.linalg.svdvals, small.block @ factor)
    return float(singular_values.sum()), eigen_diagnostics(singular_values**2)


def psd_factor(cov: np.ndarray) -> np.ndarray:
    """F with F Fᵀ = cov for a symmetric PSD matrix, d × rank, from LAPACK's pivoted Cholesky (dpstrf)."""
    require_finite(cov, "the covariance to factorise")
    lower, pivots, rank, info = scipy.linalg.lapack.dpstrf(cov, lower=1)
    if info < 0:
        raise FeatureError(f"pivoted Cholesky rejected the covariance (LAPACK info {info})")
    factor = np.tril(lower)[:, :rank]
    unpermuted = np.empty_like(factor)
    unpermuted[pivots - 1] = factor
    return unpermuted
