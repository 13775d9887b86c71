"""Lossy compression round trips through the real encoders (Pillow's libjpeg and libwebp)."""

from __future__ import annotations

import io
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from bench.perturbations.base import Perturbation


def pillow_round_trip(images: torch.Tensor, format_name: str, **options) -> torch.Tensor:
    """Encode each image with Pillow (`format_name`, `options`) and decode it back, as uint8 RGB."""
    arrays = images.detach().cpu().permute(0, 2, 3, 1).numpy()
    decoded = []
    for array in arrays:
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(array), "RGB").save(buffer, format=format_name, **options)
        buffer.seek(0)
        with Image.open(buffer) as image:
            decoded.append(np.asarray(image.convert("RGB")))
    stacked = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).contiguous()
    return stacked.to(images.device)


class JPEG(Perturbation):
    """JPEG at `quality` (1–95) with chroma `subsampling` ("4:4:4", "4:2:2" or "4:2:0", Pillow's default)."""

    name = "jpeg"
    defaults: ClassVar[dict[str, Any]] = {"quality": 75, "subsampling": "4:2:0"}

    def validate(self) -> None:
        if not 1 <= int(self.params["quality"]) <= 100:
            raise ValueError(f"jpeg quality must be 1–100, got {self.params['quality']}")
        if self.params["subsampling"] not in ("4:4:4", "4:2:2", "4:2:0"):
            raise ValueError(
                f"jpeg subsampling must be 4:4:4, 4:2:2 or 4:2:0, got {self.params['subsampling']}"
            )

    def apply(self, images, masks, offset):
        return pillow_round_trip(
            images, "JPEG", quality=int(self.params["quality"]), subsampling=self.params["subsampling"]
        )


class WebP(Perturbation):
    """WebP at `quality` (0–100), lossy unless `lossless` (then the round trip is exact)."""

    name = "webp"
    defaults: ClassVar[dict[str, Any]] = {"quality": 75, "lossless": False, "method": 4}

    def validate(self) -> None:
        if not 0 <= int(self.params["quality"]) <= 100:
            raise ValueError(f"webp quality must be 0–100, got {self.params['quality']}")

    def is_identity(self) -> bool:
        return bool(self.params["lossless"])

    def apply(self, images, masks, offset):
        return pillow_round_trip(
            images,
            "WEBP",
            quality=int(self.params["quality"]),
            lossless=bool(self.params["lossless"]),
            method=int(self.params["method"]),
        )
