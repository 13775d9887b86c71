"""One bootstrap for every bootstrapped value: seeded, paired, basic intervals by default (METHODS §2).

A replicate draws image ids with replacement, once per *group* of ids (a group is a set of images whose
ids are shared by every set built from them: the clean images and their perturbed copies, the numerator
and the denominator of a ratio, one reference used against several generators). Every statistic of a
replicate is computed on that one draw, so paired values stay paired.

The plug-in FD is biased upwards by O(1/n) and a resample adds about as much again, so the replicates sit
above the estimate and a *percentile* interval can exclude it. The **basic** (reverse-percentile)
interval [2θ̂ − q_hi, 2θ̂ − q_lo] reflects the replicates about θ̂ and removes that bias to first order;
BCa is an option; the percentile interval is kept for comparison only. The bootstrap bias estimate
b̂ = mean(θ*) − θ̂ and standard error std(θ*) are reported beside every interval.

When the bias is larger than the spread, the basic interval lies wholly on the other side of θ̂: it still
covers the truth at its nominal rate, but a reader would see an estimate outside its own interval. The
reported interval is then widened to reach θ̂ (the hull of the interval and θ̂, which can only raise
coverage) and marked ``extended``; the bias column says by how much the estimate is off.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import Any

import numpy as np

from bench.parallel import map_small_linalg

INTERVAL_METHODS = ("basic", "bca", "percentile")
DEFAULT_REPLICATES = 200
MIN_VALID_FRACTION = 0.5  # fewer valid replicates than this fraction of those drawn: no interval

Draw = dict[str, np.ndarray]
Statistic = Callable[[Draw], Mapping[str, float]]
BatchStatistic = Callable[[list[Draw]], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class Interval:
    """A confidence interval and how it was made.

    ``extended`` says the interval was widened to hold its own estimate (the bias exceeded the spread);
    ``cut_to`` names the range of values the statistic can take when the interval was cut to it.
    """

    low: float
    high: float
    method: str
    confidence: float
    extended: bool = False
    cut_to: tuple[float, float] | None = None

    def contains(self, value: float) -> bool:
        """True when low ≤ value ≤ high."""
        return self.low <= value <= self.high

    @property
    def label(self) -> str:
        """Short description for tables and result rows, e.g. 'basic 95%'."""
        text = f"{self.method} {self.confidence:.0%}"
        return text + " (extended to the estimate)" if self.extended else text


NO_INTERVAL = Interval(math.nan, math.nan, "none", math.nan)


@dataclass
class BootstrapEstimate:
    """A plug-in estimate with its bootstrap interval, bias estimate and standard error."""

    estimate: float
    interval: Interval
    bias: float
    std: float
    replicates: np.ndarray = field(repr=False)
    num_boot: int = 0
    seed: int = 0

    @property
    def valid(self) -> int:
        """Replicates that produced a finite value."""
        return int(self.replicates.size)

    def diagnostics(self) -> list[str]:
        """What a reader should know about this interval, as short phrases."""
        notes = []
        if self.valid < self.num_boot:
            notes.append(f"{self.num_boot - self.valid} of {self.num_boot} bootstrap replicates undefined")
        if self.interval.extended:
            notes.append("interval extended to its estimate: bootstrap bias exceeds the spread")
        if self.interval.method == "none" and self.num_boot:
            notes.append("too few valid bootstrap replicates for an interval")
        if self.interval.cut_to is not None:
            low, high = self.interval.cut_to
            notes.append(f"interval cut to the range [{low:g}, {high:g}] the statistic can take")
        return notes

    def within(self, low: float, high: float) -> BootstrapEstimate:
        """This estimate with its interval cut to [low, high], the values the statistic can take.

        A basic interval reflects the replicates about the estimate and can reach past a bound (an FD
        below 0, an error rate above 1, a ρ above 1); the truth lies inside the range and so does the
        estimate, so the cut interval still holds both and its coverage cannot fall.
        """
        interval = self.interval
        if interval.method == "none" or (interval.low >= low and interval.high <= high):
            return self
        cut = replace(interval, low=max(interval.low, low), high=min(interval.high, high), cut_to=(low, high))
        return replace(self, interval=cut)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (without the replicates)."""
        return {
            "estimate": self.estimate,
            "ci_low": self.interval.low,
            "ci_high": self.interval.high,
            "ci_method": self.interval.label,
            "bias": self.bias,
            "std": self.std,
            "num_boot": self.num_boot,
            "valid_replicates": self.valid,
            "seed": self.seed,
        }


def draw_ids(groups: Mapping[str, int], num_boot: int, seed: int) -> list[Draw]:
    """`num_boot` seeded draws: for each group of n ids, n indices in [0, n) with replacement.

    Groups are drawn in sorted-name order from one `numpy.random.default_rng(seed)`, so a draw does not
    depend on how the caller ordered its mapping.
    """
    if num_boot < 0:
        raise ValueError(f"the number of bootstrap replicates must be ≥ 0, got {num_boot}")
    for name, size in groups.items():
        if size < 1:
            raise ValueError(f"bootstrap group {name!r} has {size} ids; it needs at least 1")
    rng = np.random.default_rng(seed)
    names = sorted(groups)
    return [{name: rng.integers(0, groups[name], groups[name]) for name in names} for _ in range(num_boot)]


def interval_from_replicates(
    estimate: float,
    replicates: np.ndarray,
    confidence: float = 0.95,
    method: str = "basic",
    jackknife: np.ndarray | None = None,
    extend_to_estimate: bool = True,
) -> Interval:
    """The `method` interval from finite replicates (BCa also needs the jackknife values).

    An interval that misses the estimate is widened to reach it and marked ``extended``, unless
    `extend_to_estimate` is False (the raw interval, for studies of the methods themselves).
    """
    if method not in INTERVAL_METHODS:
        raise ValueError(f"unknown interval method {method!r}; choose one of {', '.join(INTERVAL_METHODS)}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    values = np.asarray(replicates, dtype=np.float64)
    if values.size < 2 or not math.isfinite(estimate):
        return NO_INTERVAL
    tail = (1.0 - confidence) / 2.0
    if method == "percentile":
        low, high = np.quantile(values, [tail, 1.0 - tail])
    elif method == "basic":
        q_low, q_high = np.quantile(values, [tail, 1.0 - tail])
        low, high = 2.0 * estimate - q_high, 2.0 * estimate - q_low
    else:
        if jackknife is None:
            raise ValueError("a BCa interval needs the jackknife (leave-one-out) values")
        low, high = np.quantile(values, _bca_levels(estimate, values, np.asarray(jackknife), tail))
    if not extend_to_estimate:
        return Interval(float(low), float(high), method, confidence)
    extended = not low <= estimate <= high
    return Interval(
        float(min(low, estimate)), float(max(high, estimate)), method, confidence, extended=extended
    )


def _bca_levels(estimate: float, values: np.ndarray, jackknife: np.ndarray, tail: float) -> list[float]:
    """Efron's bias-corrected and accelerated quantile levels for the two ends of the interval."""
    normal = NormalDist()
    below = (np.sum(values < estimate) + 0.5 * np.sum(values == estimate)) / values.size
    below = min(max(below, 0.5 / values.size), 1.0 - 0.5 / values.size)  # finite z0 at the extremes
    z0 = normal.inv_cdf(below)
    centred = jackknife.mean() - jackknife
    spread = float(np.sum(centred**2))
    acceleration = float(np.sum(centred**3)) / (6.0 * spread**1.5) if spread > 0 else 0.0
    levels = []
    for z_alpha in (normal.inv_cdf(tail), normal.inv_cdf(1.0 - tail)):
        shifted = z0 + z_alpha
        levels.append(normal.cdf(z0 + shifted / (1.0 - acceleration * shifted)))
    return levels


def bootstrap(
    statistic: Statistic,
    groups: Mapping[str, int],
    *,
    num_boot: int = DEFAULT_REPLICATES,
    seed: int = 0,
    confidence: float = 0.95,
    method: str = "basic",
    workers: int | None = None,
) -> dict[str, BootstrapEstimate]:
    """Bootstrap every value `statistic` returns, all on the same seeded draws of ids.

    `groups` maps a group name to its number of ids; `statistic(draw)` receives, per group, an index
    array into that group's ids (the identity `arange(n)` for the estimate itself) and returns named
    values; a value it leaves out, or returns as NaN, counts as undefined for that replicate. Replicates
    run in threads with single-threaded BLAS (`bench.parallel`); the result does not depend on `workers`.
    """

    def one_at_a_time(draws: list[Draw]) -> dict[str, np.ndarray]:
        outcomes = map_small_linalg(lambda draw: dict(statistic(draw)), draws, workers) if draws else []
        names = list(dict.fromkeys(name for outcome in outcomes for name in outcome))
        return {
            name: np.array([outcome.get(name, math.nan) for outcome in outcomes], dtype=np.float64)
            for name in names
        }

    return bootstrap_batched(
        one_at_a_time, groups, num_boot=num_boot, seed=seed, confidence=confidence, method=method
    )


def bootstrap_batched(
    statistic: BatchStatistic,
    groups: Mapping[str, int],
    *,
    num_boot: int = DEFAULT_REPLICATES,
    seed: int = 0,
    confidence: float = 0.95,
    method: str = "basic",
) -> dict[str, BootstrapEstimate]:
    """`bootstrap` for a statistic that evaluates many draws at once (one matrix product for all
    replicates instead of one call each): `statistic(draws)` returns, per name, one value per draw.

    Same draws, intervals, bias and diagnostics as `bootstrap`, which is this function applied to a
    per-draw statistic.
    """
    if method not in INTERVAL_METHODS:
        raise ValueError(f"unknown interval method {method!r}; choose one of {', '.join(INTERVAL_METHODS)}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    full = {name: np.arange(size) for name, size in groups.items()}
    estimates = {name: float(np.asarray(values)[0]) for name, values in statistic([full]).items()}
    draws = draw_ids(groups, num_boot, seed)
    replicated = statistic(draws) if draws else {}
    outcomes = {name: np.asarray(values, dtype=np.float64) for name, values in replicated.items()}
    jackknives = _jackknife(statistic, groups) if method == "bca" and draws else {}
    results = {}
    for name, estimate in estimates.items():
        values = outcomes.get(name, np.full(len(draws), math.nan))
        values = values[np.isfinite(values)]
        enough = values.size >= max(2, math.ceil(MIN_VALID_FRACTION * num_boot))
        interval = (
            interval_from_replicates(estimate, values, confidence, method, jackknives.get(name))
            if enough
            else NO_INTERVAL
        )
        results[name] = BootstrapEstimate(
            estimate=float(estimate),
            interval=interval,
            bias=float(values.mean() - estimate) if enough else math.nan,
            std=float(values.std(ddof=1)) if enough else math.nan,
            replicates=values,
            num_boot=num_boot,
            seed=seed,
        )
    return results


def _jackknife(statistic: BatchStatistic, groups: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Leave-one-out values of every statistic, one id of one group left out at a time."""
    leave_outs = []
    for name in sorted(groups):
        size = groups[name]
        for left_out in range(size):
            draw = {other: np.arange(groups[other]) for other in groups}
            draw[name] = np.delete(np.arange(size), left_out)
            leave_outs.append(draw)
    jackknives = {}
    for key, values in statistic(leave_outs).items():
        values = np.asarray(values, dtype=np.float64)
        jackknives[key] = values[np.isfinite(values)]
    return jackknives
