"""Many small linear-algebra tasks at once: one BLAS thread per task, tasks spread over the CPUs.

Bootstrap replicates are hundreds of FDs on matrices of a few hundred rows. On such sizes OpenBLAS's own
threads cost more than they give (84 such FDs: 4.81 s with 2 BLAS threads, 2.21 s with one), while the
LAPACK calls release the GIL, so Python threads each running single-threaded BLAS keep every core busy
(2.11 s; tests/bench/test_bench_cpu.py, docs/performance.md). Results do not depend on the number of
threads: every task runs the same single-threaded computation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def usable_cpus() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def map_small_linalg(
    task: Callable[[Item], Result], items: Iterable[Item], workers: int | None = None
) -> list[Result]:
    """`[task(item) for item in items]`, in order, computed by `workers` threads (default: the usable
    CPUs) with BLAS limited to one thread each."""
    from threadpoolctl import threadpool_limits

    items = list(items)
    workers = max(1, min(workers or usable_cpus(), len(items)))
    with threadpool_limits(limits=1, user_api="blas"):
        if workers == 1:
            return [task(item) for item in items]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(task, items))
