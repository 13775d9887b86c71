"""Checks on Gaussian statistics before any linear algebra touches them (METHODS §2).

Every FD input passes these checks: finite values only; a square covariance whose size matches the mean;
symmetric to 1e-8 · max|Σ| (then symmetrised); positive semi-definite up to rounding (smallest eigenvalue
≥ −1e-6 · largest). Each failure raises `InvalidStatisticsError` naming the set and the check, so a corrupt
file gives one clear message instead of an FD of 0.0, a `NaN` in the output or a LAPACK call that never
returns (LAPACK is only ever handed finite matrices).

Definiteness costs nothing extra on the usual path: a Cholesky factorisation that succeeds proves it, and
its factor is returned for the FD to reuse; eigenvalues are computed only when Cholesky fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import scipy.linalg

from bench.stats import FeatureError

SYMMETRY_TOLERANCE = 1e-8  # max |Σ − Σᵀ| allowed, relative to max |Σ|
PSD_TOLERANCE = 1e-6  # smallest eigenvalue allowed, as a fraction of the largest (negated)

Result = TypeVar("Result")


class InvalidStatisticsError(FeatureError):
    """Statistics that fail an input check (non-finite, not square, asymmetric, not PSD) or whose
    decomposition did not converge."""


def require_finite(array: Any, what: str) -> None:
    """Raise when `array` holds NaN or infinite values, saying how many."""
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(finite.size - np.count_nonzero(finite))
        raise InvalidStatisticsError(f"{what} has {bad} of {finite.size} values that are NaN or infinite")


def checked_mean_cov(mean: Any, cov: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The mean and the symmetrised covariance of set `name`, after the shape, finiteness and symmetry
    checks (definiteness is `cholesky_or_psd`'s job)."""
    mean = np.asarray(mean, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    if mean.ndim != 1:
        raise InvalidStatisticsError(f"{name}: the mean must be a vector, got shape {mean.shape}")
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise InvalidStatisticsError(f"{name}: the covariance must be a square matrix, got shape {cov.shape}")
    if cov.shape[0] != mean.shape[0]:
        raise InvalidStatisticsError(
            f"{name}: the covariance is {cov.shape[0]} × {cov.shape[1]} but the mean has d = {mean.shape[0]}"
        )
    require_finite(mean, f"{name}: the mean")
    scale = float(np.abs(cov).max(initial=0.0))  # NaN or inf when any entry is: one pass for both checks
    if not np.isfinite(scale):
        require_finite(cov, f"{name}: the covariance")
    asymmetry = _max_asymmetry(cov)
    if asymmetry > SYMMETRY_TOLERANCE * scale:
        raise InvalidStatisticsError(
            f"{name}: the covariance is not symmetric (max |Σ − Σᵀ| = {asymmetry:.3g}, more than "
            f"{SYMMETRY_TOLERANCE:g} × max |Σ| = {scale:.3g})"
        )
    return mean, (cov if asymmetry == 0 else _symmetrised(cov))


# Both helpers work a block pair at a time: a whole-matrix transpose strides through memory and cost
# 0.09 s at d = 2048, six times the blocked form.
_BLOCK = 128


def _block_pairs(size: int) -> Iterator[tuple[slice, slice]]:
    for row in range(0, size, _BLOCK):
        for column in range(row, size, _BLOCK):
            yield slice(row, row + _BLOCK), slice(column, column + _BLOCK)


def _max_asymmetry(cov: np.ndarray) -> float:
    """max |Σ − Σᵀ| (0.0 for the exactly symmetric covariances numpy's AᵀA gives)."""
    worst = 0.0
    for rows, columns in _block_pairs(cov.shape[0]):
        worst = max(worst, float(np.abs(cov[rows, columns] - cov[columns, rows].T).max(initial=0.0)))
    return worst


def _symmetrised(cov: np.ndarray) -> np.ndarray:
    """(Σ + Σᵀ) / 2."""
    symmetric = np.empty_like(cov)
    for rows, columns in _block_pairs(cov.shape[0]):
        mean = (cov[rows, columns] + cov[columns, rows].T) / 2.0
        symmetric[rows, columns] = mean
        symmetric[columns, rows] = mean.T
    return symmetric


def cholesky_or_psd(cov: np.ndarray, name: str) -> np.ndarray | None:
    """The lower Cholesky factor of a positive-definite `cov`; None when it is only semi-definite up to
    rounding; `InvalidStatisticsError` when an eigenvalue is more negative than rounding explains."""
    try:
        return scipy.linalg.cholesky(cov, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        pass
    eigenvalues = converged(f"{name}: eigenvalues of the covariance", scipy.linalg.eigvalsh, cov)
    require_psd_eigenvalues(eigenvalues, name)
    return None


def require_psd_eigenvalues(eigenvalues: np.ndarray, name: str) -> None:
    """Raise unless min λ ≥ −1e-6 · max λ (a covariance is PSD; rounding may make zeros slightly negative)."""
    if eigenvalues.size == 0:
        return
    smallest, largest = float(eigenvalues.min()), float(eigenvalues.max())
    if smallest < -PSD_TOLERANCE * max(largest, 0.0):
        raise InvalidStatisticsError(
            f"{name}: the covariance is not positive semi-definite (smallest eigenvalue {smallest:.3g}, "
            f"largest {largest:.3g}; allowed down to −{PSD_TOLERANCE:g} × largest)"
        )


def converged(what: str, decomposition: Callable[..., Result], matrix: np.ndarray, **options: Any) -> Result:
    """`decomposition(matrix, **options)` on a matrix checked to be finite; a LAPACK failure to converge
    becomes `InvalidStatisticsError` naming `what`, not a `LinAlgError` traceback."""
    require_finite(matrix, what)
    try:
        return decomposition(matrix, check_finite=False, **options)
    except np.linalg.LinAlgError as error:
        raise InvalidStatisticsError(f"{what}: the decomposition did not converge ({error})") from error
