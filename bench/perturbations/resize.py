"""Resize round trips: down to `scale` × the size and back with one library and filter.

The clean-fid study (Parmar et al. 2022) showed that resizing libraries and filters alone move FID; this
perturbation isolates that. PIL resizes each channel as a float32 ("F" mode) image, PIL's filters always
antialias; torch uses `F.interpolate` (align_corners=False) with `antialias` on or off (torch has no
Lanczos). Each resize is clipped to 0–255 (the intermediate is a valid image); the result is rounded
half to even.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from bench.perturbations.base import Perturbation, quantize

PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
TORCH_FILTERS = ("nearest", "bilinear", "bicubic")


def pil_resize_float(images: torch.Tensor, size: tuple[int, int], filter_name: str) -> torch.Tensor:
    """Resize float N×C×H×W (0–255) to (height, width) channel by channel with PIL in float32 mode.

    Results are clipped to 0–255 after each resize, as clean-fid's float PIL resizer does.
    """
    height, width = size
    arrays = images.detach().cpu().float().numpy()
    output = np.empty((*arrays.shape[:2], height, width), dtype=np.float32)
    for n in range(arrays.shape[0]):
        for c in range(arrays.shape[1]):
            channel = Image.fromarray(np.ascontiguousarray(arrays[n, c], dtype=np.float32))
            output[n, c] = np.asarray(channel.resize((width, height), PIL_FILTERS[filter_name]))
    np.clip(output, 0, 255, out=output)
    return torch.from_numpy(output).to(images.device)


def torch_resize_float(
    images: torch.Tensor, size: tuple[int, int], filter_name: str, antialias: bool
) -> torch.Tensor:
    """Resize float N×C×H×W with `F.interpolate`, clipped to 0–255 after the resize."""
    if filter_name == "nearest":
        return F.interpolate(images, size=size, mode="nearest").clamp_(0, 255)
    resized = F.interpolate(images, size=size, mode=filter_name, align_corners=False, antialias=antialias)
    return resized.clamp_(0, 255)


class ResizeRoundTrip(Perturbation):
    """Resize to round(scale·H) × round(scale·W) and back to H × W with the same library and filter."""

    name = "resize"
    defaults: ClassVar[dict[str, Any]] = {
        "library": "pil",
        "filter": "bicubic",
        "antialias": True,
        "scale": 0.5,
    }

    def validate(self) -> None:
        library, filter_name = self.params["library"], self.params["filter"]
        if library not in ("pil", "torch"):
            raise ValueError(f"resize library must be 'pil' or 'torch', got {library!r}")
        allowed = tuple(PIL_FILTERS) if library == "pil" else TORCH_FILTERS
        if filter_name not in allowed:
            raise ValueError(f"resize filter for {library} must be one of {allowed}, got {filter_name!r}")
        if library == "pil" and not self.params["antialias"]:
            raise ValueError("PIL always antialiases; use antialias=True with library='pil'")
        if filter_name == "nearest" and library == "torch" and self.params["antialias"]:
            raise ValueError("torch nearest resizing has no antialias option; use antialias=False")
        if not 0 < self.params["scale"] <= 4:
            raise ValueError(f"resize scale must be in (0, 4], got {self.params['scale']}")

    def is_identity(self) -> bool:
        return self.params["scale"] == 1

    def apply(self, images, masks, offset):
        height, width = images.shape[-2:]
        scale = float(self.params["scale"])
        small_size = (max(1, round(height * scale)), max(1, round(width * scale)))
        values = images.float()
        if self.params["library"] == "pil":
            small = pil_resize_float(values, small_size, self.params["filter"])
            back = pil_resize_float(small, (height, width), self.params["filter"])
        else:
            antialias = bool(self.params["antialias"])
            small = torch_resize_float(values, small_size, self.params["filter"], antialias)
            back = torch_resize_float(small, (height, width), self.params["filter"], antialias)
        return quantize(back)


def clean_fid_resize_study(scale: float = 0.5) -> list[ResizeRoundTrip]:
    """The library × filter × antialias grid of the clean-fid study, as round trips at `scale`."""
    variants = [
        ResizeRoundTrip(library="pil", filter=name, antialias=True, scale=scale) for name in PIL_FILTERS
    ]
    variants.append(ResizeRoundTrip(library="torch", filter="nearest", antialias=False, scale=scale))
    for name in ("bilinear", "bicubic"):
        for antialias in (True, False):
            variants.append(ResizeRoundTrip(library="torch", filter=name, antialias=antialias, scale=scale))
    return variants
