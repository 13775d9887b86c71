"""The TTUR disturbances that add or remove pixels: Gaussian noise, salt & pepper, black rectangles.

Heusel et al. 2017 (Fig. A1–A6): Gaussian noise (1 − α)·X + α·N with N Gaussian noise scaled to [0, 255]
(α ∈ {0, .25, .5, .75}); salt and pepper with a fraction α of pixels set to white or black, 50/50
(α ∈ {0, .1, .2, .3}); five black rectangles of side α × the image side at random places
(α ∈ {0, .25, .5, .75}). Noise is drawn per image from its seeded generator on the CPU.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from bench.perturbations.base import Perturbation, image_generator, quantize


class GaussianNoise(Perturbation):
    """(1 − α)·x + α·N, N = standard normal noise min–max scaled to [0, 255] per image."""

    name = "gaussian_noise"
    defaults: ClassVar[dict[str, Any]] = {"alpha": 0.25, "seed": 0}

    def validate(self) -> None:
        if not 0.0 <= self.params["alpha"] <= 1.0:
            raise ValueError(f"gaussian_noise alpha must be in [0, 1], got {self.params['alpha']}")

    def is_identity(self) -> bool:
        return self.params["alpha"] == 0

    def apply(self, images, masks, offset):
        alpha = float(self.params["alpha"])
        noise = torch.stack(
            [
                torch.randn(
                    images.shape[1:], generator=image_generator(self.name, self.params["seed"], offset + i)
                )
                for i in range(images.shape[0])
            ]
        )
        low = noise.flatten(1).min(dim=1).values[:, None, None, None]
        high = noise.flatten(1).max(dim=1).values[:, None, None, None]
        scaled = 255.0 * (noise - low) / (high - low)
        return quantize((1 - alpha) * images.float() + alpha * scaled.to(images.device))


class SaltPepper(Perturbation):
    """A fraction `amount` of pixels (all channels) set to white or black with equal probability."""

    name = "salt_pepper"
    defaults: ClassVar[dict[str, Any]] = {"amount": 0.1, "seed": 0}

    def validate(self) -> None:
        if not 0.0 <= self.params["amount"] <= 1.0:
            raise ValueError(f"salt_pepper amount must be in [0, 1], got {self.params['amount']}")

    def is_identity(self) -> bool:
        return self.params["amount"] == 0

    def apply(self, images, masks, offset):
        count, _, height, width = images.shape
        draws = []
        for i in range(count):
            generator = image_generator(self.name, self.params["seed"], offset + i)
            draws.append(torch.rand(2, height, width, generator=generator))
        draws = torch.stack(draws).to(images.device)
        hit = (draws[:, 0] < float(self.params["amount"]))[:, None]
        white = (draws[:, 1] < 0.5)[:, None]
        result = torch.where(hit & white, torch.full_like(images, 255), images)
        return torch.where(hit & ~white, torch.zeros_like(images), result)


class BlackRectangles(Perturbation):
    """`count` black rectangles of round(α·H) × round(α·W) px, top-left corners uniform within the image."""

    name = "black_rectangles"
    defaults: ClassVar[dict[str, Any]] = {"alpha": 0.25, "count": 5, "seed": 0}

    def validate(self) -> None:
        if not 0.0 <= self.params["alpha"] <= 1.0 or self.params["count"] < 0:
            raise ValueError(f"black_rectangles needs alpha in [0, 1] and count ≥ 0, got {self.params}")

    def is_identity(self) -> bool:
        return self.params["alpha"] == 0 or self.params["count"] == 0

    def rectangles(self, index: int, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """(top, left, rect_height, rect_width) of each rectangle for stream image `index`."""
        alpha = float(self.params["alpha"])
        rect_h, rect_w = round(alpha * height), round(alpha * width)
        generator = image_generator(self.name, self.params["seed"], index)
        boxes = []
        for _ in range(int(self.params["count"])):
            top = int(torch.randint(0, height - rect_h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - rect_w + 1, (1,), generator=generator))
            boxes.append((top, left, rect_h, rect_w))
        return boxes

    def apply(self, images, masks, offset):
        result = images.clone()
        height, width = images.shape[-2:]
        for i in range(images.shape[0]):
            for top, left, rect_h, rect_w in self.rectangles(offset + i, height, width):
                result[i, :, top : top + rect_h, left : left + rect_w] = 0
        return result
