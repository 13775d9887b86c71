"""Reading a network's spatial layer with gradients: a forward hook that hands the rest of the network a
leaf copy of the layer's output, so back-propagation from the features stops there.

Nothing before the layer is recorded (the model's parameters are frozen and its input needs no gradient),
so memory stays at inference level up to the layer. ViT token layers (N × L × D, batch-first or not)
become D × h × w maps of their patch tokens: the class and register tokens at the front are dropped and
the remaining tokens must form a square grid.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn


class LayerCaptureError(RuntimeError):
    """The named layer is missing, did not run, or its output is not a spatial map."""


class SpatialCapture:
    """Within `with SpatialCapture(model, name) as capture:`, forward passes store the layer's output as
    `capture.activation`, a leaf tensor that requires grad (the last call wins)."""

    def __init__(self, model: nn.Module, layer: str) -> None:
        try:
            self.module = model.get_submodule(layer)
        except AttributeError as error:
            raise LayerCaptureError(f"the model has no layer {layer!r}: {error}") from None
        self.layer = layer
        self.activation: torch.Tensor | None = None
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise LayerCaptureError(f"layer {self.layer!r} returns {type(output).__name__}, not a tensor")
        self.activation = output.detach().requires_grad_(True)
        return self.activation

    def __enter__(self) -> SpatialCapture:
        self.activation = None
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


@contextlib.contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[None]:
    """Parameters need no gradient inside the block (so nothing before the captured layer is recorded);
    their previous flags are restored after it."""
    flags = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def as_spatial_map(values: torch.Tensor, batch: int) -> torch.Tensor:
    """A (batch, C, h, w) view of a captured layer output (or of its gradient).

    4-D outputs are convolutional maps already. 3-D outputs are tokens: (batch, L, D), or (L, batch, D)
    for sequence-first transformers; the patch tokens are the last h·w = L − k of them, k < 8 prefix
    tokens, with h = w.
    """
    if values.ndim == 4 and values.shape[0] == batch:
        return values
    if values.ndim != 3:
        raise LayerCaptureError(
            f"a spatial layer must give N×C×h×w maps or tokens, got {tuple(values.shape)}"
        )
    if values.shape[0] != batch and values.shape[1] == batch:
        values = values.transpose(0, 1)
    if values.shape[0] != batch:
        raise LayerCaptureError(f"token output {tuple(values.shape)} does not hold a batch of {batch}")
    length = values.shape[1]
    for prefix in range(8):
        side = math.isqrt(length - prefix)
        if side * side == length - prefix and side > 0:
            patches = values[:, prefix:, :]
            return patches.transpose(1, 2).reshape(batch, values.shape[2], side, side)
    raise LayerCaptureError(f"{length} tokens do not hold a square patch grid after ≤ 7 prefix tokens")
