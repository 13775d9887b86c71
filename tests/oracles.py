"""Independent reference implementations that tests compare fdbench against (float64 numpy/scipy)."""

from __future__ import annotations

import numpy as np
import scipy.linalg


def fd_sqrtm_oracle(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """The textbook FD with scipy.linalg.sqrtm of Σ1Σ2 (real part), all in float64."""
    root = scipy.linalg.sqrtm(cov1 @ cov2)
    root = np.real(root[0] if isinstance(root, tuple) else root)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * np.trace(root))


def random_spd(rng: np.random.Generator, d: int, low: float = 0.1, high: float = 10.0) -> np.ndarray:
    """A well-conditioned random SPD matrix: random orthogonal basis, eigenvalues in [low, high]."""
    basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
    eigenvalues = rng.uniform(low, high, d)
    matrix = (basis * eigenvalues) @ basis.T
    return (matrix + matrix.T) / 2.0


def random_orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    """A Haar-random orthogonal matrix."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))
