"""AdaIN (Huang & Belongie 2017) as a probe, in pixel space and inside a feature extractor (METHODS §6).

AdaIN(x, y) = σ(y)·(x − μ(x))/σ(x) + μ(y), statistics per sample and channel over spatial positions
(population standard deviation). With blending α, the target statistics are μ' = (1−α)·μ(x) + α·μ(y)
and σ' = (1−α)·σ(x) + α·σ(y), so α = 0 is the identity and α = 1 is full AdaIN.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from bench.perturbations.base import Perturbation, quantize

FEATURE_EPS = 1e-5


def channel_mean_std(values: torch.Tensor, eps: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and std (sqrt(var + eps), population variance) of N×C×... values."""
    flat = values.flatten(2)
    mean = flat.mean(dim=2)
    std = torch.sqrt(flat.var(dim=2, unbiased=False) + eps)
    return mean, std


def adain(
    values: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor, alpha: float, eps: float
) -> torch.Tensor:
    """α-blended AdaIN of N×C×... `values` towards style statistics of shape (C,) or (N, C)."""
    mean, std = channel_mean_std(values, eps)
    style_mean = torch.as_tensor(style_mean, dtype=values.dtype, device=values.device)
    style_std = torch.as_tensor(style_std, dtype=values.dtype, device=values.device)
    target_mean = (1 - alpha) * mean + alpha * style_mean.expand_as(mean)
    target_std = (1 - alpha) * std + alpha * style_std.expand_as(std)
    shape = (*mean.shape, *([1] * (values.ndim - 2)))
    ratio = target_std / std.clamp_min(torch.finfo(values.dtype).tiny)
    return (values - mean.view(shape)) * ratio.view(shape) + target_mean.view(shape)


class AdaINColor(Perturbation):
    """Match each image's per-channel colour mean/std (0–255 units) to a reference, α-blended."""

    name = "adain_color"
    defaults: ClassVar[dict[str, Any]] = {
        "alpha": 1.0,
        "mean": [127.5, 127.5, 127.5],
        "std": [64.0, 64.0, 64.0],
    }

    def validate(self) -> None:
        if not 0.0 <= self.params["alpha"] <= 1.0:
            raise ValueError(f"adain_color alpha must be in [0, 1], got {self.params['alpha']}")
        if len(self.params["mean"]) != 3 or len(self.params["std"]) != 3:
            raise ValueError("adain_color needs three channel means and three channel stds")
        self.params["mean"] = [float(v) for v in self.params["mean"]]
        self.params["std"] = [float(v) for v in self.params["std"]]

    def is_identity(self) -> bool:
        return self.params["alpha"] == 0

    @classmethod
    def from_reference(cls, references: torch.Tensor, alpha: float = 1.0) -> AdaINColor:
        """Reference statistics = the average over a uint8 reference batch of per-image channel mean/std."""
        mean, std = channel_mean_std(references.double())
        return cls(alpha=alpha, mean=mean.mean(dim=0).tolist(), std=std.mean(dim=0).tolist())

    def apply(self, images, masks, offset):
        values = images.double()
        style_mean = torch.tensor(self.params["mean"], dtype=torch.float64)
        style_std = torch.tensor(self.params["std"], dtype=torch.float64)
        return quantize(adain(values, style_mean, style_std, float(self.params["alpha"]), eps=0.0))


@contextlib.contextmanager
def feature_adain(
    model: nn.Module,
    layer: str,
    style_mean: torch.Tensor | Sequence[float],
    style_std: torch.Tensor | Sequence[float],
    alpha: float = 1.0,
    eps: float = FEATURE_EPS,
) -> Iterator[nn.Module]:
    """Within the block, replace the channel statistics of `model.<layer>`'s output with a style's.

    A forward hook on the named submodule (e.g. "layer2" or "blocks.3") applies α-blended AdaIN with
    σ = sqrt(var + eps) to every output; style statistics are (C,) for one style or (N, C) per image.
    The hook is removed on exit, also after an exception. Yields the hooked submodule.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"feature AdaIN alpha must be in [0, 1], got {alpha}")
    try:
        module = model.get_submodule(layer)
    except AttributeError as error:
        raise ValueError(f"model has no submodule {layer!r}: {error}") from None

    def hook(_module: nn.Module, _inputs, output: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.ndim < 3:
            raise ValueError(f"feature AdaIN needs an N×C×... tensor output at {layer!r}")
        return adain(output, style_mean, style_std, alpha, eps)

    handle = module.register_forward_hook(hook)
    try:
        yield module
    finally:
        handle.remove()


@torch.no_grad()
def feature_channel_stats(
    model: nn.Module, layer: str, inputs: torch.Tensor, eps: float = FEATURE_EPS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Style statistics of a set at `model.<layer>`: per-image channel mean/std, averaged over images."""
    captured: list[torch.Tensor] = []
    handle = model.get_submodule(layer).register_forward_hook(
        lambda _m, _i, output: captured.append(output.detach())
    )
    try:
        model(inputs)
    finally:
        handle.remove()
    mean, std = channel_mean_std(captured[0], eps)
    return mean.mean(dim=0), std.mean(dim=0)
