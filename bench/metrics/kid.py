"""Kernel Inception Distance: unbiased MMD² with a cubic polynomial kernel over seeded subsets (METHODS §2).

k(x, y) = (xᵀy / d + 1)³. For each of S subsets of size m drawn without replacement from each set, the
unbiased estimator is mean_{i≠j} k(x_i, x_j) + mean_{i≠j} k(y_i, y_j) − 2 mean_{i,j} k(x_i, y_j); the
result is the mean and standard deviation over subsets. Despite the name, any feature space works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.stats import FeatureError, as_float64_features


@dataclass
class KIDResult:
    """Mean and standard deviation of the unbiased MMD² over subsets, with the protocol used."""

    mean: float
    std: float
    num_subsets: int
    subset_size: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return dict(self.__dict__)


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> np.ndarray:
    """(xᵀy / d + coef0)^degree for all pairs of rows."""
    return (x @ y.T / x.shape[1] + coef0) ** degree


def unbiased_mmd2(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> float:
    """Unbiased MMD² between two equal-size samples under the polynomial kernel."""
    m = x.shape[0]
    k_xx = polynomial_kernel(x, x, degree, coef0)
    k_yy = polynomial_kernel(y, y, degree, coef0)
    k_xy = polynomial_kernel(x, y, degree, coef0)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.mean())


def kernel_inception_distance(
    x: Any,
    y: Any,
    num_subsets: int = 100,
    subset_size: int | None = None,
    seed: int = 0,
    degree: int = 3,
    coef0: float = 1.0,
) -> KIDResult:
    """KID between two feature sets: mean ± std of unbiased MMD² over `num_subsets` seeded subsets.

    `subset_size` defaults to min(1000, n1, n2). Subsets are drawn without replacement within a subset,
    independently across subsets, from `numpy.random.default_rng(seed)`.
    """
    first = as_float64_features(x, name="first set")
    second = as_float64_features(y, name="second set")
    if first.shape[1] != second.shape[1]:
        raise FeatureError(
            f"dimension mismatch: the first set has d = {first.shape[1]}, the second d = {second.shape[1]}"
        )
    size = min(1000, first.shape[0], second.shape[0]) if subset_size is None else subset_size
    if size < 2 or size > min(first.shape[0], second.shape[0]):
        raise FeatureError(
            f"KID subset size {size} must be at least 2 and at most the smaller set "
            f"({first.shape[0]} and {second.shape[0]} rows)"
        )
    if num_subsets < 1:
        raise FeatureError(f"KID needs at least one subset, got num_subsets = {num_subsets}")
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)
    for index in range(num_subsets):
        rows_x = rng.choice(first.shape[0], size, replace=False)
        rows_y = rng.choice(second.shape[0], size, replace=False)
        values[index] = unbiased_mmd2(first[rows_x], second[rows_y], degree, coef0)
    return KIDResult(
        mean=float(values.mean()),
        std=float(values.std()),
        num_subsets=num_subsets,
        subset_size=size,
        seed=seed,
    )
