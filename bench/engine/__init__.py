"""The extraction engine: images → masks → perturbation variants → feature spaces → statistics."""

from bench.engine.distributed import Shard, init_from_torchrun
from bench.engine.masking import FolderMasks, MaskProvider, ParserMasks
from bench.engine.run import Cell, EngineConfig, EngineResult, run_engine
from bench.engine.variants import ALL_IMAGES, Variant

__all__ = [
    "ALL_IMAGES",
    "Cell",
    "EngineConfig",
    "EngineResult",
    "FolderMasks",
    "MaskProvider",
    "ParserMasks",
    "Shard",
    "Variant",
    "init_from_torchrun",
    "run_engine",
]
