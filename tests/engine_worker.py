"""A tiny engine run used by tests as a separate process (SIGKILL resume, torchrun sharding).

Usage: python tests/engine_worker.py CACHE_DIR OUT_NPZ COUNT CHUNK
Runs the clean and whole-image-blur variants of dcgan-faces in two cheap spaces (and the cohort pairing
them) and, on rank 0, writes every cohort member's (n, mean, m2) to OUT_NPZ.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bench.cache import ContentCache
from bench.engine import CLEAN, Cohort, EngineConfig, Variant, init_from_torchrun, run_engine
from bench.perturbations import make_perturbation
from bench.sources import open_source

SPACES = ["pixels-randproj", "spectrum-durall"]


def variants() -> list[Variant]:
    """Clean images and the whole-image blur."""
    return [CLEAN, Variant("blur:All", make_perturbation("region_blur", region="All"))]


def cohorts() -> list[Cohort]:
    """The clean and blurred images paired on the same ids."""
    return [Cohort.of("paired", *variants())]


def main(cache_dir: str, out: str, count: int, chunk: int) -> None:
    shard = init_from_torchrun()
    config = EngineConfig(
        batch_size=8,
        chunk_size=chunk,
        cache=ContentCache("engine", root=cache_dir),
        progress=False,
        shard=shard,
    )
    source = open_source(f"dcgan-faces:count={count},seed=3")
    result = run_engine(source, variants(), SPACES, None, config, cohorts())
    if shard.rank == 0:
        np.savez(Path(out), **member_statistics(result))


def member_statistics(result) -> dict[str, np.ndarray]:
    """(n, mean, m2) of every member of every cohort, by cohort|space|variant."""
    arrays = {}
    for (cohort, space), cells in result.cohorts.items():
        for variant, cell in cells.cells.items():
            tag = f"{cohort}|{space}|{variant.name}"
            arrays[f"{tag}|n"] = np.array(cell.n)
            arrays[f"{tag}|mean"] = cell.stats.mean
            arrays[f"{tag}|m2"] = cell.stats.m2
    return arrays


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
