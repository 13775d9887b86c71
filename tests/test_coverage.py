"""The coverage study's closed forms, and a fast cell of it: basic intervals cover, percentile ones do not."""

from __future__ import annotations

import importlib.util
import math
import sys

import numpy as np
import pytest

from bench.metrics.frechet import frechet_distance
from bench.metrics.kid import unbiased_mmd2
from tests.conftest import REPO_ROOT
from tests.oracles import fd_sqrtm_oracle


def _load_study():
    spec = importlib.util.spec_from_file_location(
        "coverage_study", REPO_ROOT / "scripts" / "coverage_study.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


study = _load_study()


@pytest.mark.parametrize("case", ["zero", "small", "large"])
def test_population_fd_is_the_stated_fraction_and_matches_scipy_sqrtm(case: str) -> None:
    pop = study.population(16, case)
    truth = study.population_fd(pop.mean_x, pop.var_x, pop.mean_y, pop.var_y)
    assert truth == pytest.approx(study.FD_FRACTION[case] * pop.var_x.sum(), abs=1e-12)
    oracle = fd_sqrtm_oracle(pop.mean_x, np.diag(pop.var_x), pop.mean_y, np.diag(pop.var_y))
    assert truth == pytest.approx(oracle, rel=1e-9, abs=1e-12)


def test_population_kid_is_the_mean_of_the_unbiased_estimator() -> None:
    """The unbiased estimator's expectation is the population MMD²: 400 independent data sets of 40
    rows average to the closed form within 4 standard errors (a wrong moment term is off by far more)."""
    rng = np.random.default_rng(0)
    d = 4
    pop = study.population(d, "large")
    truth = study.population_kid(pop)
    values = [
        unbiased_mmd2(
            pop.mean_x + rng.standard_normal((40, d)) * np.sqrt(pop.var_x),
            pop.mean_y + rng.standard_normal((40, d)) * np.sqrt(pop.var_y),
        )
        for _ in range(400)
    ]
    standard_error = np.std(values, ddof=1) / math.sqrt(len(values))
    assert abs(np.mean(values) - truth) < 4 * standard_error
    assert truth > 10 * standard_error  # the check is not trivially passed by a truth near 0


def test_population_nfd_matches_a_large_sample_estimate() -> None:
    rng = np.random.default_rng(1)
    d = 8
    var = study.reference_variances(d)
    x = rng.standard_normal((40_000, d)) * np.sqrt(var)
    region = study.perturb(x, study.region_coordinates(d), var, rng)
    whole = study.perturb(x, np.arange(d), var, rng)
    estimate = frechet_distance(x, region).value / frechet_distance(x, whole).value
    assert estimate == pytest.approx(study.population_nfd(d), rel=0.02)


def test_a_fast_cell_basic_intervals_cover_and_percentile_intervals_do_not() -> None:
    """n = 200, d = 8, FD 5 % of tr Σ: 60 data sets, B = 80. The basic interval must cover the truth at
    0.95 within 3 binomial standard errors (≥ 0.88); the percentile interval, pushed above the estimate by
    the O(1/n) bias, covers far less, and this tolerance would reject it."""
    result = study.run_cell(study.Cell(200, 8, "small"), datasets=60, boot=80)
    fd, kid = result["metrics"]["fd"], result["metrics"]["kid"]
    tolerance = 0.95 - 3 * math.sqrt(0.95 * 0.05 / 60)
    assert fd["basic"]["coverage"] >= tolerance
    assert fd["percentile"]["coverage"] < tolerance - 0.1
    assert kid["basic"]["coverage"] >= tolerance
    assert fd["mean_estimate"] > fd["truth"]  # the plug-in FD's upward bias, which percentile keeps
