"""CMMD (Jayasumana et al. 2024, "Rethinking FID"): MMD² between CLIP image embeddings (METHODS §9).

The kernel is the Gaussian RBF k(x, y) = exp(−‖x − y‖² / (2σ²)) with σ = 10, and the value is reported
×1000, as in the authors' code. Two estimators, never mixed silently:

- `cmmd` — the biased V-statistic the authors compute: mean K_xx + mean K_yy − 2 mean K_xy, diagonal
  terms included (numbers comparable with the paper and its ports). It is exactly 0 for identical sets.
- `cmmd_unbiased` — the U-statistic: the within-set means leave out the diagonal (i = j), so it is an
  unbiased estimate of the population MMD² and can be negative (for identical sets it is
  −2 (n² − ΣK) / (n² (n − 1)) · 1000, a closed form of the kernel sum).

The three kernel sums are accumulated block by block in float64 (row and column blocks of `block` rows),
so two sets of 50 000 embeddings never hold a 50 000 × 50 000 matrix in memory. Any features work; the
name CMMD belongs to the CLIP ViT-L/14-336 space (`clip-vit-l14-336`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from bench.stats import FeatureError, as_float64_features

SIGMA = 10.0
SCALE = 1000.0
DEFAULT_BLOCK = 2048


@dataclass(frozen=True)
class CMMDResult:
    """Both CMMD estimators of one pair of sets, with the kernel settings they used."""

    value: float  # biased V-statistic × scale (the authors' `cmmd`)
    unbiased: float  # U-statistic × scale (`cmmd_unbiased`)
    n1: int
    n2: int
    sigma: float
    scale: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "cmmd": self.value,
            "cmmd_unbiased": self.unbiased,
            "n1": self.n1,
            "n2": self.n2,
            "sigma": self.sigma,
            "scale": self.scale,
        }


def rbf_kernel_sum(
    x: torch.Tensor, y: torch.Tensor, sigma: float = SIGMA, block: int = DEFAULT_BLOCK
) -> float:
    """Σ_i Σ_j exp(−‖x_i − y_j‖² / (2σ²)) over every pair of rows, block by block, in x's dtype.

    Squared distances come from ‖x‖² + ‖y‖² − 2 xᵀy and are floored at 0 (rounding can leave −1e-16).
    """
    if block < 1:
        raise ValueError(f"block size must be at least 1, got {block}")
    gamma = 1.0 / (2.0 * sigma * sigma)
    x_norms = (x * x).sum(dim=1)
    y_norms = (y * y).sum(dim=1)
    total = 0.0
    for start in range(0, x.shape[0], block):
        rows, row_norms = x[start : start + block], x_norms[start : start + block]
        for column in range(0, y.shape[0], block):
            columns, column_norms = y[column : column + block], y_norms[column : column + block]
            squared = row_norms[:, None] + column_norms[None, :] - 2.0 * (rows @ columns.T)
            total += float(torch.exp(squared.clamp_(min=0.0).mul_(-gamma)).sum())
    return total


def cmmd(
    x: Any,
    y: Any,
    *,
    sigma: float = SIGMA,
    scale: float = SCALE,
    block: int = DEFAULT_BLOCK,
    device: str | torch.device | None = None,
) -> CMMDResult:
    """Biased and unbiased CMMD between two (n, d) feature sets (numpy arrays or tensors), in float64.

    `device` says where the blocks are computed (default: the CPU); the result does not depend on it
    beyond float64 rounding.
    """
    first = as_float64_features(x, name="first set")
    second = as_float64_features(y, name="second set")
    if first.shape[1] != second.shape[1]:
        raise FeatureError(
            f"dimension mismatch: the first set has d = {first.shape[1]}, the second d = {second.shape[1]}"
        )
    n1, n2 = first.shape[0], second.shape[0]
    if min(n1, n2) < 2:
        raise FeatureError(f"CMMD needs at least 2 samples per set, got {n1} and {n2}")
    if not sigma > 0:
        raise ValueError(f"the RBF bandwidth sigma must be positive, got {sigma}")
    target = torch.device(device) if device is not None else torch.device("cpu")
    a = torch.from_numpy(first).to(target)
    b = torch.from_numpy(second).to(target)
    sum_xx = rbf_kernel_sum(a, a, sigma, block)
    sum_yy = rbf_kernel_sum(b, b, sigma, block)
    sum_xy = rbf_kernel_sum(a, b, sigma, block)
    biased = (sum_xx / (n1 * n1) + sum_yy / (n2 * n2)) - 2.0 * (sum_xy / (n1 * n2))
    # k(x, x) = exp(0) = 1: the diagonal of each within-set sum is exactly its size.
    unbiased = (sum_xx - n1) / (n1 * (n1 - 1)) + (sum_yy - n2) / (n2 * (n2 - 1)) - 2.0 * (sum_xy / (n1 * n2))
    return CMMDResult(
        value=float(scale * biased),
        unbiased=float(scale * unbiased),
        n1=n1,
        n2=n2,
        sigma=float(sigma),
        scale=float(scale),
    )
