"""The shared bootstrap against scipy.stats.bootstrap, and its pairing, seeding and bookkeeping rules."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
import scipy.stats

from bench.metrics.bootstrap import (
    NO_INTERVAL,
    bootstrap,
    bootstrap_batched,
    draw_ids,
    interval_from_replicates,
)

NUM_BOOT = 4000


def _quantile_noise(spread: float, level: float, num_boot: int) -> float:
    """Standard error of a bootstrap quantile at `level` when the replicates are ~normal with sd `spread`:
    sqrt(q(1 − q) / B) / f(ξ_q), with density f(ξ_q) = φ(z_q) / spread."""
    z = NormalDist().inv_cdf(level)
    return spread * math.sqrt(level * (1 - level) / num_boot) / NormalDist().pdf(z)


def _ours(sample: np.ndarray, statistic, method: str, seed: int = 0):
    return bootstrap(
        lambda draw: {"value": statistic(sample[draw["x"]])},
        {"x": sample.size},
        num_boot=NUM_BOOT,
        seed=seed,
        method=method,
        workers=1,
    )["value"]


@pytest.mark.parametrize("method", ["basic", "percentile"])
def test_basic_and_percentile_match_scipy_within_monte_carlo_error(method: str) -> None:
    """Two independent B = 4000 bootstraps of a mean: each end differs by the quantile noise of both
    (√2 × the standard error of a 2.5 % quantile); we allow 4 of those."""
    sample = np.random.default_rng(0).gamma(2.0, 1.5, size=60)
    ours = _ours(sample, np.mean, method)
    theirs = scipy.stats.bootstrap(
        (sample,), np.mean, n_resamples=NUM_BOOT, method=method, confidence_level=0.95, random_state=1
    ).confidence_interval
    tolerance = 4 * math.sqrt(2) * _quantile_noise(ours.std, 0.025, NUM_BOOT)
    assert ours.interval.low == pytest.approx(theirs.low, abs=tolerance)
    assert ours.interval.high == pytest.approx(theirs.high, abs=tolerance)
    assert tolerance < 0.1 * (theirs.high - theirs.low)  # the comparison has teeth


def test_bca_matches_scipy_within_monte_carlo_error() -> None:
    """BCa on a skewed statistic (the variance of gamma data). Besides the quantile noise, z0 is estimated
    from the fraction of replicates below θ̂ (sd √(1/4B)/φ(0)), which moves an end by ≈ 2·sd(θ*)·δz0."""
    sample = np.random.default_rng(2).gamma(1.0, 2.0, size=40)
    ours = _ours(sample, lambda values: values.var(ddof=1), "bca")
    theirs = scipy.stats.bootstrap(
        (sample,),
        lambda values, axis=-1: values.var(ddof=1, axis=axis),
        n_resamples=NUM_BOOT,
        method="BCa",
        random_state=3,
    ).confidence_interval
    z0_noise = 2 * ours.std * math.sqrt(0.25 / NUM_BOOT) / NormalDist().pdf(0.0)
    for ours_end, theirs_end, level in (
        (ours.interval.low, theirs.low, 0.025),
        (ours.interval.high, theirs.high, 0.975),
    ):
        single = math.hypot(_quantile_noise(ours.std, level, NUM_BOOT), z0_noise)
        assert ours_end == pytest.approx(theirs_end, abs=4 * math.sqrt(2) * single)
    percentile = _ours(sample, lambda values: values.var(ddof=1), "percentile")
    # The variance is right-skewed: BCa moves both ends up relative to the percentile interval.
    assert ours.interval.high > percentile.interval.high


def test_basic_interval_is_the_reflection_of_the_replicate_quantiles() -> None:
    replicates = np.array([3.0, 1.0, 4.0, 1.5, 9.0, 2.6, 5.0, 3.5])
    low_q, high_q = np.quantile(replicates, [0.025, 0.975])
    interval = interval_from_replicates(3.2, replicates, 0.95, "basic")
    assert (interval.low, interval.high) == pytest.approx((2 * 3.2 - high_q, 2 * 3.2 - low_q))
    assert not interval.extended


def test_every_interval_contains_its_estimate_and_says_when_it_was_extended() -> None:
    """A statistic biased upwards far beyond its spread (like FD at n ≪ d²): the raw basic interval lies
    wholly below θ̂; the reported one is extended to reach it and flagged."""
    rng = np.random.default_rng(4)
    sample = rng.standard_normal((30, 200))

    def squared_norm_of_mean(draw):
        rows = sample[draw["x"]]
        return {"value": float((rows.mean(axis=0) ** 2).sum()), "plain": float(rows[:, 0].mean())}

    for method in ("basic", "percentile", "bca"):
        results = bootstrap(squared_norm_of_mean, {"x": 30}, num_boot=300, seed=5, method=method)
        for estimate in results.values():
            assert estimate.interval.contains(estimate.estimate), method
    basic = bootstrap(squared_norm_of_mean, {"x": 30}, num_boot=300, seed=5)["value"]
    raw = interval_from_replicates(basic.estimate, basic.replicates, extend_to_estimate=False)
    assert raw.high < basic.estimate and basic.interval.extended
    assert basic.interval.high == basic.estimate and basic.interval.low == raw.low
    assert "interval extended to its estimate" in " ".join(basic.diagnostics())
    assert basic.bias > 0  # the replicates sit above θ̂ by about the estimate's own bias


def test_paired_groups_share_ids_across_statistics_and_groups_are_independent() -> None:
    seen: list[dict[str, np.ndarray]] = []

    def record(draw):
        seen.append({name: rows.copy() for name, rows in draw.items()})
        return {"a": float(draw["images"].sum()), "b": float(draw["images"].sum() + draw["reference"].sum())}

    results = bootstrap(record, {"images": 25, "reference": 40}, num_boot=50, seed=6, workers=1)
    replicate_draws = seen[1:]
    assert len(replicate_draws) == 50
    # Both statistics of a replicate were computed on one draw: b − a is exactly the reference sum.
    a_values, b_values = results["a"].replicates, results["b"].replicates
    reference_sums = np.array([draw["reference"].sum() for draw in replicate_draws], dtype=float)
    np.testing.assert_array_equal(b_values - a_values, reference_sums)
    # The draws are those of draw_ids: per replicate, each group in sorted-name order from one generator.
    expected = draw_ids({"reference": 40, "images": 25}, 50, seed=6)
    for got, want in zip(replicate_draws, expected, strict=True):
        np.testing.assert_array_equal(got["images"], want["images"])
        np.testing.assert_array_equal(got["reference"], want["reference"])
    manual = np.random.default_rng(6)
    first_images, first_reference = manual.integers(0, 25, 25), manual.integers(0, 40, 40)
    np.testing.assert_array_equal(expected[0]["images"], first_images)
    np.testing.assert_array_equal(expected[0]["reference"], first_reference)


def test_results_do_not_depend_on_workers_and_seeds_reproduce() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((80, 6))

    def covariance_trace(draw):
        return {"trace": float(np.trace(np.cov(x[draw["x"]], rowvar=False)))}

    one = bootstrap(covariance_trace, {"x": 80}, num_boot=64, seed=8, workers=1)["trace"]
    four = bootstrap(covariance_trace, {"x": 80}, num_boot=64, seed=8, workers=4)["trace"]
    again = bootstrap(covariance_trace, {"x": 80}, num_boot=64, seed=8, workers=2)["trace"]
    other = bootstrap(covariance_trace, {"x": 80}, num_boot=64, seed=9, workers=1)["trace"]
    np.testing.assert_array_equal(one.replicates, four.replicates)
    np.testing.assert_array_equal(one.replicates, again.replicates)
    assert one.interval == four.interval
    assert not np.array_equal(one.replicates, other.replicates)


def test_batched_statistic_gives_the_same_result_as_the_per_draw_one() -> None:
    x = np.random.default_rng(10).standard_normal(50)

    def per_draw(draw):
        return {"mean": float(x[draw["x"]].mean())}

    def batched(draws):
        return {"mean": np.array([x[draw["x"]].mean() for draw in draws])}

    for method in ("basic", "bca"):
        a = bootstrap(per_draw, {"x": 50}, num_boot=100, seed=11, method=method)["mean"]
        b = bootstrap_batched(batched, {"x": 50}, num_boot=100, seed=11, method=method)["mean"]
        np.testing.assert_array_equal(a.replicates, b.replicates)
        assert a.interval == b.interval and a.bias == b.bias


def test_undefined_replicates_are_counted_and_too_many_give_no_interval() -> None:
    x = np.arange(20, dtype=float)

    def sometimes(draw):
        rows = draw["x"]
        if rows.sum() % 4 == 0:  # about a quarter of the replicates are undefined (not the estimate)
            return {"mean": math.nan}
        return {"mean": float(x[rows].mean())}

    estimate = bootstrap(sometimes, {"x": 20}, num_boot=200, seed=12)["mean"]
    undefined = 200 - estimate.valid
    assert 25 <= undefined <= 75
    assert f"{undefined} of 200 bootstrap replicates undefined" in estimate.diagnostics()
    assert estimate.interval.method == "basic"

    def mostly_missing(draw):
        defined = (draw["x"].sum() + 2) % 4 == 0  # true for the estimate (sum 190), a quarter of replicates
        return {"mean": float(x[draw["x"]].mean())} if defined else {}

    none = bootstrap(mostly_missing, {"x": 20}, num_boot=200, seed=12)["mean"]
    assert none.interval is NO_INTERVAL and math.isnan(none.bias)
    assert "too few valid bootstrap replicates for an interval" in none.diagnostics()


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="unknown interval method 'studentized'"):
        bootstrap(lambda draw: {"v": 0.0}, {"x": 3}, method="studentized")
    with pytest.raises(ValueError, match="bootstrap group 'x' has 0 ids"):
        draw_ids({"x": 0}, 3, seed=0)
    with pytest.raises(ValueError, match="confidence must lie strictly between 0 and 1"):
        interval_from_replicates(0.0, np.ones(5), confidence=1.0)
