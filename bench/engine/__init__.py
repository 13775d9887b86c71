"""The extraction engine: images → masks → perturbation variants → feature spaces → paired statistics."""

from bench.engine.cohorts import Cell, Cohort, CohortCells, Member
from bench.engine.distributed import Shard, init_from_torchrun
from bench.engine.masking import FolderMasks, MaskProvider, ParserMasks
from bench.engine.run import EngineConfig, EngineResult, run_engine
from bench.engine.variants import CLEAN, WHOLE_IMAGE, Variant

__all__ = [
    "CLEAN",
    "WHOLE_IMAGE",
    "Cell",
    "Cohort",
    "CohortCells",
    "EngineConfig",
    "EngineResult",
    "FolderMasks",
    "MaskProvider",
    "Member",
    "ParserMasks",
    "Shard",
    "Variant",
    "init_from_torchrun",
    "run_engine",
]
