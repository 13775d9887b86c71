"""CPU micro-batches that keep every activation below glibc's mmap ceiling.

On Linux, glibc serves an allocation of 32 MiB or more with fresh pages from the kernel and returns them
on free, so a network whose activations exceed that size page-faults on every page of every layer of every
batch. AugNet's ResNet-50 at 350² and batch 32 spent 29 % of its time in the kernel that way. Splitting the
batch so that the largest activation stays below the ceiling lets the heap reuse the same memory: AugNet
went from 3.1 to 4.8 images/s and EfficientNet-Lite0 from 27 to 40 on the 2-core CPU (docs/performance.md).

Whole steps are sliced (preprocessing included), since every large temporary counts. The per-image size of
the largest module output is probed once per input shape, with forward hooks on a one-image batch. CUDA has
a caching allocator, so batches on a GPU are never split. Each image goes through the same network, so only
float rounding can differ from one whole batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

TENSOR_BUDGET_BYTES = 16 * 2**20  # half glibc's largest mmap threshold (32 MiB): slices stay on the heap


Forward = Callable[[torch.Tensor], torch.Tensor]


def largest_output_bytes(module: nn.Module, forward: Forward, x: torch.Tensor) -> int:
    """Bytes of the largest tensor any submodule of `module` outputs while `forward(x)` runs."""
    largest = 0

    def record(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal largest
        for item in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(item, torch.Tensor):
                largest = max(largest, item.numel() * item.element_size())

    handles = [sub.register_forward_hook(record) for sub in module.modules()]
    try:
        forward(x)
    finally:
        for handle in handles:
            handle.remove()
    return largest


class MicroBatcher:
    """Runs a batch function slice by slice on the CPU, each slice's largest activation within `budget`."""

    def __init__(self, module: nn.Module, device: torch.device | str, budget: int = TENSOR_BUDGET_BYTES):
        self.module = module
        self.device = torch.device(device)
        self.budget = budget
        self._per_item: dict[tuple[int, ...], int] = {}

    def slice_size(self, run: Forward, batch: torch.Tensor) -> int:
        """Items per slice for batches shaped like `batch` (all of them when computing off the CPU)."""
        if self.device.type != "cpu" or batch.shape[0] <= 1:
            return max(1, batch.shape[0])
        shape = tuple(batch.shape[1:])
        if shape not in self._per_item:
            self._per_item[shape] = max(1, largest_output_bytes(self.module, run, batch[:1]))
        return max(1, self.budget // self._per_item[shape])

    def __call__(self, run: Forward, batch: torch.Tensor) -> torch.Tensor:
        """`run(batch)`, computed slice by slice and concatenated."""
        step = self.slice_size(run, batch)
        if step >= batch.shape[0]:
            return run(batch)
        return torch.cat([run(batch[start : start + step]) for start in range(0, batch.shape[0], step)])
