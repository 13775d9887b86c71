"""The TTUR swirl disturbance (Heusel et al. 2017), the inverse mapping of skimage.transform.swirl.

For an output pixel at polar coordinates (r, θ) around the image centre ((W−1)/2, (H−1)/2), the colour is
read at angle θ + α·exp(−r / (ρ·ln 2 / 5)), same radius, with bilinear interpolation and mirror padding.
TTUR uses ρ = 25 px and strengths α ∈ {0, 1, 2, 4}. (skimage's default centre is (W/2, H/2), half a pixel
off the geometric centre used here; with `center=((W−1)/2, (H−1)/2)` the two agree.)
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from bench.perturbations.base import Perturbation, quantize


def swirl_source_coordinates(
    height: int, width: int, strength: float, radius: float, device, dtype=torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Source (x, y) pixel coordinates, each H×W, read by every output pixel."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float64),
        torch.arange(width, device=device, dtype=torch.float64),
        indexing="ij",
    )
    centre_x, centre_y = (width - 1) / 2.0, (height - 1) / 2.0
    dx, dy = xs - centre_x, ys - centre_y
    rho = torch.sqrt(dx**2 + dy**2)
    theta = torch.atan2(dy, dx) + strength * torch.exp(-rho / (radius * math.log(2) / 5))
    return (centre_x + rho * torch.cos(theta)).to(dtype), (centre_y + rho * torch.sin(theta)).to(dtype)


class Swirl(Perturbation):
    """Swirl of strength α (radians at the centre) and extent ρ px around the image centre."""

    name = "swirl"
    defaults: ClassVar[dict[str, Any]] = {"strength": 1.0, "radius": 25.0}

    def validate(self) -> None:
        if self.params["radius"] <= 0:
            raise ValueError(f"swirl radius must be > 0, got {self.params['radius']}")

    def is_identity(self) -> bool:
        return self.params["strength"] == 0

    def apply(self, images, masks, offset):
        height, width = images.shape[-2:]
        source_x, source_y = swirl_source_coordinates(
            height, width, float(self.params["strength"]), float(self.params["radius"]), images.device
        )
        # grid_sample with align_corners=True maps −1/+1 to the centres of the border pixels.
        grid_x = 2.0 * source_x / max(width - 1, 1) - 1.0
        grid_y = 2.0 * source_y / max(height - 1, 1) - 1.0
        grid = torch.stack([grid_x, grid_y], dim=-1)[None].expand(images.shape[0], -1, -1, -1)
        sampled = F.grid_sample(
            images.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=True
        )
        return quantize(sampled)
