"""A tiny engine run used by tests as a separate process (SIGKILL resume, torchrun sharding).

Usage: python tests/engine_worker.py CACHE_DIR OUT_NPZ COUNT CHUNK
Runs the clean and whole-image-blur variants of dcgan-faces in two cheap spaces and, on rank 0, writes
every cell's (n, mean, m2) to OUT_NPZ.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bench.cache import ContentCache
from bench.engine import EngineConfig, Variant, init_from_torchrun, run_engine
from bench.perturbations import make_perturbation
from bench.sources import open_source

SPACES = ["pixels-randproj", "spectrum-durall"]


def variants() -> list[Variant]:
    """Clean images and the whole-image blur."""
    return [Variant("clean"), Variant("blur:All", make_perturbation("region_blur", region="All"), "All")]


def main(cache_dir: str, out: str, count: int, chunk: int) -> None:
    shard = init_from_torchrun()
    config = EngineConfig(
        batch_size=8,
        chunk_size=chunk,
        cache=ContentCache("engine", root=cache_dir),
        progress=False,
        shard=shard,
    )
    result = run_engine(open_source(f"dcgan-faces:count={count},seed=3"), variants(), SPACES, None, config)
    if shard.rank == 0:
        arrays = {}
        for (variant, space, subset), cell in result.cells.items():
            tag = f"{variant}|{space}|{subset}"
            arrays[f"{tag}|n"] = np.array(cell.n)
            arrays[f"{tag}|mean"] = cell.stats.mean
            arrays[f"{tag}|m2"] = cell.stats.m2
        np.savez(Path(out), **arrays)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
