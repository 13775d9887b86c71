"""CPU micro-batches that keep every activation below glibc's mmap ceiling.

On Linux, glibc serves an allocation of 32 MiB or more with fresh pages from the kernel and returns them
on free, so a network whose activations exceed that size page-faults on every page of every layer of every
batch: the first cold demo spent 712 of its 2 988 CPU-seconds in the kernel. Splitting the batch so that
the largest activation stays below the ceiling lets the heap reuse the same memory (with huge pages, AugNet
went from 3.1 to 4.1 images/s in the spaces benchmark, and the cold demo's kernel time fell to 26 s;
docs/performance.md).

Whole steps are sliced (preprocessing included), since every large temporary counts. The per-image size of
the largest module output is probed once per input shape, with forward hooks on the batch's first image
(whose result is kept). CUDA has a caching allocator, so batches on a GPU are never split. Each image goes
through the same network, so only float rounding can differ from one whole batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

TENSOR_BUDGET_BYTES = 16 * 2**20  # half glibc's largest mmap threshold (32 MiB): slices stay on the heap


Forward = Callable[[torch.Tensor], torch.Tensor]


def forward_recording_largest(
    module: nn.Module, forward: Forward, x: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """`forward(x)`, and the bytes of the largest tensor any submodule of `module` output meanwhile."""
    largest = 0

    def record(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal largest
        for item in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(item, torch.Tensor):
                largest = max(largest, item.numel() * item.element_size())

    handles = [sub.register_forward_hook(record) for sub in module.modules()]
    try:
        result = forward(x)
    finally:
        for handle in handles:
            handle.remove()
    return result, largest


class MicroBatcher:
    """Runs a batch function slice by slice on the CPU, each slice's largest activation within `budget`."""

    def __init__(self, module: nn.Module, device: torch.device | str, budget: int = TENSOR_BUDGET_BYTES):
        self.module = module
        self.device = torch.device(device)
        self.budget = budget
        self._per_item: dict[tuple[int, ...], int] = {}

    def __call__(self, run: Forward, batch: torch.Tensor) -> torch.Tensor:
        """`run(batch)`, computed slice by slice and concatenated (whole when computing off the CPU)."""
        if self.device.type != "cpu" or batch.shape[0] <= 1:
            return run(batch)
        shape = tuple(batch.shape[1:])
        done: list[torch.Tensor] = []
        if shape not in self._per_item:
            # The probe on the first image is that image's result, not extra work.
            first, largest = forward_recording_largest(self.module, run, batch[:1])
            self._per_item[shape] = max(1, largest)
            done.append(first)
        step = max(1, self.budget // self._per_item[shape])
        if not done and step >= batch.shape[0]:
            return run(batch)
        done += [run(batch[start : start + step]) for start in range(len(done), batch.shape[0], step)]
        return torch.cat(done)
