"""Sharding work across processes started by `torchrun` (one or many nodes) and merging exactly.

Each rank takes every world-th chunk. Partial statistics are exchanged with `all_gather_object` and
merged in rank order, so every rank ends with the same numbers. Single-process runs need none of this.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Shard:
    """This process's rank and the number of processes sharing the work."""

    rank: int = 0
    world: int = 1

    @classmethod
    def from_environment(cls) -> Shard:
        """The initialised process group's rank and size, else a single process."""
        if dist.is_available() and dist.is_initialized():
            return cls(rank=dist.get_rank(), world=dist.get_world_size())
        return cls()

    def chunks(self, count: int) -> list[int]:
        """Indices of the chunks this rank processes."""
        return list(range(self.rank, count, self.world))


def init_from_torchrun() -> Shard:
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1); NCCL on GPUs, else gloo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return Shard.from_environment()


def gather_objects(value: Any) -> list[Any]:
    """Every rank's `value`, in rank order (a one-element list outside a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered
