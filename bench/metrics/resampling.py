"""FD estimates that resample the features: bootstrap confidence intervals and FD∞ (METHODS §2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.metrics.bootstrap import DEFAULT_REPLICATES, BootstrapEstimate, Draw, bootstrap
from bench.metrics.frechet import FrechetResult, frechet_distance, frechet_distance_resampled
from bench.stats import FeatureError, GaussianStats, as_float64_features


@dataclass
class BootstrapFD:
    """FD on the full sets (with its diagnostics) and its bootstrap interval, bias and standard error."""

    fd: FrechetResult
    bootstrap: BootstrapEstimate
    paired: bool = False

    @property
    def value(self) -> float:
        return self.fd.value

    @property
    def ci_low(self) -> float:
        return self.bootstrap.interval.low

    @property
    def ci_high(self) -> float:
        return self.bootstrap.interval.high

    @property
    def confidence(self) -> float:
        return self.bootstrap.interval.confidence

    @property
    def num_boot(self) -> int:
        return self.bootstrap.num_boot

    @property
    def seed(self) -> int:
        return self.bootstrap.seed

    @property
    def samples(self) -> np.ndarray:
        """The finite replicate values, in draw order."""
        return self.bootstrap.replicates

    def notes(self) -> tuple[str, ...]:
        """The FD's and the bootstrap's diagnostics as short phrases for a results table."""
        return (*self.fd.notes(), *self.bootstrap.diagnostics())


def bootstrap_fd(
    x: Any,
    y: Any,
    num_boot: int = DEFAULT_REPLICATES,
    seed: int = 0,
    confidence: float = 0.95,
    *,
    method: str = "basic",
    paired: bool = False,
    workers: int | None = None,
) -> BootstrapFD:
    """FD between feature sets with a bootstrap interval from the shared bootstrap (basic by default).

    Unpaired, each set is resampled on its own (groups "first" and "second"); `paired=True` says row i of
    both sets is the same image (clean and perturbed copies), so one draw of ids serves both. Replicates
    use the distinct-rows form of `frechet_distance_resampled` (exact low-rank path when a resampled set
    has fewer distinct rows than dimensions).
    """
    first = as_float64_features(x, name="first set")
    second = as_float64_features(y, name="second set")
    if paired and first.shape[0] != second.shape[0]:
        raise FeatureError(
            f"a paired bootstrap needs sets of equal size (the same ids), got {first.shape[0]} and "
            f"{second.shape[0]} rows"
        )
    if num_boot < 2:
        raise ValueError(f"a bootstrap needs at least 2 replicates, got num_boot = {num_boot}")
    groups = {"ids": first.shape[0]} if paired else {"first": first.shape[0], "second": second.shape[0]}
    names = ("ids", "ids") if paired else ("first", "second")

    def statistic(draw: Draw) -> dict[str, float]:
        rows_x, rows_y = draw[names[0]], draw[names[1]]
        if rows_x.min() == rows_x.max() or rows_y.min() == rows_y.max():
            return {}  # a replicate of one distinct image has no covariance: undefined, counted
        return {"fd": frechet_distance_resampled(first, rows_x, second, rows_y).value}

    estimate = bootstrap(
        statistic, groups, num_boot=num_boot, seed=seed, confidence=confidence, method=method, workers=workers
    )["fd"]
    return BootstrapFD(fd=frechet_distance(first, second), bootstrap=estimate, paired=paired)


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

    N_j runs evenly from N_min = max(min(5000, n/10), 2d) to n (n = generated set size), each subset drawn
    without replacement from a seeded generator; FD_N = FD∞ + k/N is fitted by least squares and FD∞ is
    the intercept. The 1/N law fails for N ≤ d, so n < 4d is refused. `reference` may be statistics or
    features; `generated` must be features.
    """
    features = as_float64_features(generated, name="generated set")
    n, d = features.shape
    if num_points < 2:
        raise FeatureError(f"FD∞ fits a line through at least 2 sample sizes, got num_points = {num_points}")
    if n < 4 * d:
        raise FeatureError(
            f"FD∞ needs at least 4d = {4 * d} generated samples (the 1/N law of FD_N fails for N ≤ d = {d}); "
            f"got n = {n}"
        )
    smallest = max(int(min(5000, n // 10)), 2 * d)
    if smallest < 2:
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
