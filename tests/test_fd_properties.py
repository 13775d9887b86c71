"""Properties every Fréchet distance must have, checked on random inputs with hypothesis."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.metrics import frechet_distance, frechet_distance_resampled
from tests.oracles import random_orthogonal

seeds = st.integers(min_value=0, max_value=2**31 - 1)
dims = st.integers(min_value=2, max_value=24)


def _pair(seed: int, d: int, n1: int, n2: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n1, d)) * rng.uniform(0.2, 3.0, d)
    y = rng.standard_normal((n2, d)) @ rng.standard_normal((d, d)) * 0.5 + rng.standard_normal(d)
    return x, y


@settings(max_examples=40, deadline=None)
@given(seed=seeds, d=dims, n=st.integers(min_value=2, max_value=80))
def test_fd_of_a_set_with_itself_is_zero(seed: int, d: int, n: int) -> None:
    x, _ = _pair(seed, d, n, 2)
    result = frechet_distance(x, x)
    assert abs(result.value) <= 1e-8 * max(1.0, float(np.trace(np.cov(x, rowvar=False))))


@settings(max_examples=40, deadline=None)
@given(seed=seeds, d=dims, n1=st.integers(3, 80), n2=st.integers(3, 80))
def test_fd_is_symmetric(seed: int, d: int, n1: int, n2: int) -> None:
    x, y = _pair(seed, d, n1, n2)
    assert frechet_distance(x, y).value == pytest.approx(frechet_distance(y, x).value, rel=1e-9, abs=1e-10)


@settings(max_examples=40, deadline=None)
@given(seed=seeds, d=dims, n1=st.integers(3, 80), n2=st.integers(3, 80))
def test_fd_is_invariant_to_orthogonal_rotation(seed: int, d: int, n1: int, n2: int) -> None:
    x, y = _pair(seed, d, n1, n2)
    rotation = random_orthogonal(np.random.default_rng(seed + 1), d)
    before = frechet_distance(x, y).value
    after = frechet_distance(x @ rotation, y @ rotation).value
    assert after == pytest.approx(before, rel=1e-8, abs=1e-10)


@settings(max_examples=40, deadline=None)
@given(seed=seeds, d=dims, n1=st.integers(3, 80), n2=st.integers(3, 80))
def test_translation_changes_only_the_mean_term(seed: int, d: int, n1: int, n2: int) -> None:
    x, y = _pair(seed, d, n1, n2)
    shift = np.random.default_rng(seed + 2).standard_normal(d) * 3
    before, after = frechet_distance(x, y), frechet_distance(x, y + shift)
    assert after.trace_term == pytest.approx(before.trace_term, rel=1e-8, abs=1e-9)
    expected_mean_term = float(((x.mean(0) - y.mean(0) - shift) ** 2).sum())
    assert after.mean_term == pytest.approx(expected_mean_term, rel=1e-10)


@settings(max_examples=25, deadline=None)
@given(seed=seeds, d=st.integers(8, 24), n=st.integers(3, 7))
def test_low_rank_and_full_paths_agree(seed: int, d: int, n: int) -> None:
    x, y = _pair(seed, d, n, n + 3)
    low_rank = frechet_distance(x, y)
    assert low_rank.method == "low-rank"
    assert frechet_distance(x, y, method="eigh").value == pytest.approx(low_rank.value, rel=1e-6)


@settings(max_examples=30, deadline=None)
@given(seed=seeds, d=st.integers(2, 30), n1=st.integers(3, 60), n2=st.integers(3, 60))
def test_resampled_fd_equals_fd_of_the_repeated_rows(seed: int, d: int, n1: int, n2: int) -> None:
    """Bootstrap replicates computed on distinct rows with multiplicities equal the plain computation."""
    x, y = _pair(seed, d, n1, n2)
    rng = np.random.default_rng(seed + 3)
    rows_x, rows_y = rng.integers(0, n1, n1), rng.integers(0, n2, n2)
    if len(set(rows_x)) < 2 or len(set(rows_y)) < 2:
        return
    plain = frechet_distance(x[rows_x], y[rows_y])
    weighted = frechet_distance_resampled(x, rows_x, y, rows_y)
    assert weighted.value == pytest.approx(plain.value, rel=1e-8, abs=1e-10)
    assert weighted.mean_term == pytest.approx(plain.mean_term, rel=1e-10, abs=1e-12)
