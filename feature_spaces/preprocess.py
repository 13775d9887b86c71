"""Turn a uint8 RGB batch into a network input, exactly as a space's `Preprocessing` declares."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from feature_spaces.spec import Preprocessing


class ImageBatchError(ValueError):
    """The images handed to an extractor are not a uint8 N×3×H×W batch."""


def check_uint8_batch(images: torch.Tensor) -> None:
    """Raise ImageBatchError unless ``images`` is a uint8 tensor of shape N×3×H×W."""
    if not isinstance(images, torch.Tensor):
        raise ImageBatchError(f"expected a torch.Tensor of uint8 images, got {type(images).__name__}")
    if images.dtype != torch.uint8:
        raise ImageBatchError(f"expected uint8 images (0..255), got dtype {images.dtype}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ImageBatchError(f"expected an N×3×H×W RGB batch, got shape {tuple(images.shape)}")


def resize_clean(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """clean-fid's resize: PIL bicubic on each channel as a float32 'F' image, clipped to [0, 255].

    PIL has no device kernels, so this runs on the CPU and returns float32 on the input's device.
    """
    height, width = size
    array = images.detach().to("cpu", torch.float32).numpy()
    out = np.empty((array.shape[0], array.shape[1], height, width), dtype=np.float32)
    for n in range(array.shape[0]):
        for c in range(array.shape[1]):
            channel = Image.fromarray(np.ascontiguousarray(array[n, c]), mode="F")
            out[n, c] = np.asarray(channel.resize((width, height), resample=Image.BICUBIC))
    return torch.from_numpy(np.clip(out, 0.0, 255.0)).to(images.device)


def resize_float(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize a float batch with one of the declared modes (values stay in their range)."""
    if tuple(x.shape[-2:]) == tuple(size) and mode != "clean":
        return x
    if mode == "legacy-pytorch":
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    if mode == "bicubic-aa":
        return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
    if mode == "bilinear-aa":
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    raise ValueError(f"resize mode {mode!r} is not a float-tensor mode")


def target_size(height: int, width: int, prep: Preprocessing) -> tuple[int, int]:
    """The size an H×W image is resized to before any crop."""
    if prep.resize == "none" or prep.size is None:
        return height, width
    if prep.crop in ("center", "keep-aspect"):
        scale = prep.size / min(height, width)
        # torchvision's Resize(int) rule: the shorter side becomes exactly `size`.
        if height <= width:
            return prep.size, max(prep.size, int(width * scale))
        return max(prep.size, int(height * scale)), prep.size
    return prep.size, prep.size


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central size×size square (torchvision's rounding of the offsets)."""
    height, width = x.shape[-2:]
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return x[..., top : top + size, left : left + size]


def resize_and_crop(images: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """Resize and crop a uint8 batch; returns float32 values on the 0..255 scale."""
    height, width = images.shape[-2:]
    size = target_size(height, width, prep)
    if prep.resize == "clean":
        x = resize_clean(images, size) if size != (height, width) else images.float()
    elif prep.resize == "none":
        x = images.float()
    else:
        x = resize_float(images.float(), size, prep.resize)
    if prep.crop == "center" and prep.size is not None:
        x = center_crop(x, prep.size)
    if prep.round_to_uint8:
        x = x.round().clamp_(0.0, 255.0)
    return x


def preprocess(
    images: torch.Tensor, prep: Preprocessing, device: torch.device | str | None = None
) -> torch.Tensor:
    """The network input for a uint8 N×3×H×W RGB batch: float32 on ``device`` (default: the batch's)."""
    check_uint8_batch(images)
    if device is not None:
        images = images.to(device)
    return normalize(resize_and_crop(images, prep), prep).contiguous()


def normalize(x: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """Float values on the 0..255 scale → the network's value range, mean/std and channel order.

    Differentiable, so gradient-based probes (adversarial attacks) reach the pixels through it.
    """
    low, high = prep.value_range
    x = x * ((high - low) / 255.0) + low
    if prep.mean is not None and prep.std is not None:
        mean = torch.tensor(prep.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(prep.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / std
    if prep.channels == "BGR":
        x = x.flip(1)
    return x
