"""Inference-time rewrites that keep a network's function and save memory passes on the CPU.

An eval-mode BatchNorm is an affine map per channel, so it can be folded into the convolution that feeds
it (w' = w·γ/σ, b' = (b − μ)·γ/σ + β, computed in float64); a symmetric zero pad before a convolution can be
the convolution's own padding. Both change the output only by float rounding (checked by a test against
the unmodified network).
"""

from __future__ import annotations

import torch
from torch import nn


def fold_batchnorm(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    """Fold `norm` (eval mode, fed only by `conv`) into `conv`'s weight and bias, in place."""
    if norm.running_mean is None or norm.running_var is None:
        raise ValueError("only a BatchNorm with running statistics can be folded")
    weight = conv.weight.detach().double()
    mean, variance = norm.running_mean.double(), norm.running_var.double()
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(mean)
    gamma = norm.weight.detach().double() if norm.weight is not None else torch.ones_like(bias)
    beta = norm.bias.detach().double() if norm.bias is not None else torch.zeros_like(bias)
    scale = gamma / torch.sqrt(variance + norm.eps)
    dtype = conv.weight.dtype
    conv.weight = nn.Parameter((weight * scale.reshape(-1, 1, 1, 1)).to(dtype), requires_grad=False)
    conv.bias = nn.Parameter(((bias - mean) * scale + beta).to(dtype), requires_grad=False)


def absorb_symmetric_padding(conv: nn.Conv2d, pad: nn.ZeroPad2d) -> bool:
    """Make a symmetric `pad` (left = right, top = bottom) `conv`'s own padding; False if it is not."""
    left, right, top, bottom = pad.padding
    if left != right or top != bottom or conv.padding not in ((0, 0), 0):
        return False
    conv.padding = (top, left)
    return True
