"""Up-sampling artifacts (Durall et al. 2020): ×f box down-sampling, then ×f up-sampling.

Modes: `nearest` (pixel repetition), `bilinear` (torch, align_corners=False) and `zero_insertion` (each
sample placed at the top-left of its f×f cell, zeros elsewhere, then a separable mirror-padded Gaussian
low-pass of σ = `sigma` px with gain f per axis; what a stride-f transposed convolution does before it
learns a good filter). The low-pass does not remove the spectral replicas completely, which is the point.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from bench.perturbations.base import Perturbation, quantize
from bench.perturbations.blur import separable_blur

MODES = ("nearest", "bilinear", "zero_insertion")


class Upsample(Perturbation):
    """Down by `factor` (mean of factor×factor blocks), then up by `factor` with `mode`."""

    name = "upsample"
    defaults: ClassVar[dict[str, Any]] = {"mode": "nearest", "factor": 2, "sigma": 1.0}

    def validate(self) -> None:
        if self.params["mode"] not in MODES:
            raise ValueError(f"upsample mode must be one of {MODES}, got {self.params['mode']!r}")
        if int(self.params["factor"]) != self.params["factor"] or self.params["factor"] < 1:
            raise ValueError(f"upsample factor must be a positive integer, got {self.params['factor']}")

    def is_identity(self) -> bool:
        return self.params["factor"] == 1

    def apply(self, images, masks, offset):
        factor = int(self.params["factor"])
        height, width = images.shape[-2:]
        if height % factor or width % factor:
            raise ValueError(f"upsample ×{factor} needs sides divisible by {factor}, got {height}×{width}")
        small = F.avg_pool2d(images.float(), factor)
        mode = self.params["mode"]
        if mode == "nearest":
            large = small.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)
        elif mode == "bilinear":
            large = F.interpolate(small, scale_factor=factor, mode="bilinear", align_corners=False)
        else:
            sparse = torch.zeros_like(images, dtype=small.dtype)
            sparse[..., ::factor, ::factor] = small
            sigma = float(self.params["sigma"])
            radius = max(int(3 * sigma + 0.5), factor)
            large = separable_blur(sparse, sigma, sigma, radius, radius) * float(factor * factor)
        return quantize(large)
