"""Small linear-algebra tasks in threads: order kept, one BLAS thread per task, and the same numbers
whatever the number of threads."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_info

from bench.metrics import bootstrap_fd
from bench.metrics.frechet import frechet_distance_resampled
from bench.parallel import map_small_linalg


def test_results_come_back_in_order_and_independent_of_thread_count() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((120, 200)), rng.standard_normal((150, 200)) + 0.1
    draws = [(rng.integers(0, 120, 120), rng.integers(0, 150, 150)) for _ in range(8)]

    def task(rows: tuple[np.ndarray, np.ndarray]) -> float:
        return frechet_distance_resampled(x, rows[0], y, rows[1]).value

    one, four = map_small_linalg(task, draws, workers=1), map_small_linalg(task, draws, workers=4)
    assert one == four  # bitwise: every task runs the same single-threaded computation
    expected = [task(rows) for rows in draws]
    np.testing.assert_allclose(one, expected, rtol=1e-12)
    assert len(set(one)) == len(one)  # distinct replicates, so order is really checked


def test_blas_runs_single_threaded_inside_tasks() -> None:
    def blas_threads(_: int) -> list[int]:
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    for threads in map_small_linalg(blas_threads, range(3), workers=2):
        assert threads and all(count == 1 for count in threads)


def test_bootstrap_is_seeded_and_does_not_depend_on_threads() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((80, 16)), rng.standard_normal((90, 16)) + 0.3
    first, second = bootstrap_fd(x, y, num_boot=20, seed=3), bootstrap_fd(x, y, num_boot=20, seed=3)
    np.testing.assert_array_equal(first.samples, second.samples)
    manual = np.random.default_rng(3)
    rows = [(manual.integers(0, 80, 80), manual.integers(0, 90, 90)) for _ in range(20)]
    expected = [frechet_distance_resampled(x, a, y, b).value for a, b in rows]
    np.testing.assert_allclose(first.samples, expected, rtol=1e-10)
