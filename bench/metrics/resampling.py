"""FD estimates that resample the features: bootstrap confidence intervals and FD∞ (METHODS §2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.metrics.frechet import frechet_distance, frechet_distance_resampled
from bench.parallel import map_small_linalg
from bench.stats import FeatureError, GaussianStats, as_float64_features


@dataclass
class BootstrapFD:
    """FD on the full sets with a percentile bootstrap confidence interval."""

    value: float
    ci_low: float
    ci_high: float
    confidence: float
    num_boot: int
    seed: int
    samples: np.ndarray = field(repr=False)


def bootstrap_fd(x: Any, y: Any, num_boot: int = 200, seed: int = 0, confidence: float = 0.95) -> BootstrapFD:
    """Percentile bootstrap CI for FD: both feature sets resampled with replacement, `num_boot` times.

    Each replicate uses the exact low-rank path automatically when a resampled set has fewer rows than
    dimensions, so small per-cell sets stay fast.
    """
    first = as_float64_features(x, name="first set")
    second = as_float64_features(y, name="second set")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    if num_boot < 2:
        raise ValueError(f"a bootstrap needs at least 2 replicates, got num_boot = {num_boot}")
    rng = np.random.default_rng(seed)
    draws = [
        (rng.integers(0, first.shape[0], first.shape[0]), rng.integers(0, second.shape[0], second.shape[0]))
        for _ in range(num_boot)
    ]

    def replicate(rows: tuple[np.ndarray, np.ndarray]) -> float:
        return frechet_distance_resampled(first, rows[0], second, rows[1]).value

    samples = np.array(map_small_linalg(replicate, draws))
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return BootstrapFD(
        value=frechet_distance(first, second).value,
        ci_low=float(low),
        ci_high=float(high),
        confidence=confidence,
        num_boot=num_boot,
        seed=seed,
        samples=samples,
    )


@dataclass
class FDInfinity:
    """FD extrapolated to infinite sample size, with the points it was fitted on."""

    value: float
    slope: float
    sample_sizes: np.ndarray = field(repr=False)
    fd_values: np.ndarray = field(repr=False)
    residual_rms: float = 0.0


def fd_infinity(reference: Any, generated: Any, num_points: int = 15, seed: int = 0) -> FDInfinity:
    """FD∞ (Chong & Forsyth 2020): FD of the reference against N generated samples for 15 N's.

    N_j runs evenly from min(5000, n/10) to n (n = generated set size), each subset drawn without
    replacement from a seeded generator; FD_N = FD∞ + k/N is fitted by least squares and FD∞ is the
    intercept. `reference` may be statistics or features; `generated` must be features.
    """
    features = as_float64_features(generated, name="generated set")
    n = features.shape[0]
    smallest = int(min(5000, n // 10))
    if smallest < 2 or num_points < 2:
        raise FeatureError(f"FD∞ needs at least 20 generated samples and 2 points; got n = {n}")
    if not isinstance(reference, GaussianStats):
        reference = GaussianStats.from_features(reference)
    sizes = np.linspace(smallest, n, num_points).astype(int)
    rng = np.random.default_rng(seed)
    values = np.array(
        [frechet_distance(reference, features[rng.choice(n, size, replace=False)]).value for size in sizes]
    )
    design = np.column_stack([np.ones(num_points), 1.0 / sizes])
    (intercept, slope), *_ = np.linalg.lstsq(design, values, rcond=None)
    residuals = values - design @ np.array([intercept, slope])
    return FDInfinity(
        value=float(intercept),
        slope=float(slope),
        sample_sizes=sizes,
        fd_values=values,
        residual_rms=float(np.sqrt(np.mean(residuals**2))),
    )
