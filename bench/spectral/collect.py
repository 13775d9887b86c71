"""Streaming per-set spectral statistics: profiles, their mean and std, decay features, mean 2-D spectrum.

Images are never resized before the FFT (METHODS §4). A set whose images differ in size is handled by an
explicit policy that every report states:

* ``group`` (default): one group per image size; sets are compared size by size.
* ``crop``: every image is centre-cropped to a common ``crop_size`` × ``crop_size`` square first
  (an image smaller than that is an error, never up-sampled).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bench.spectral.decay import dzanic_decay_features
from bench.spectral.profiles import (
    PROFILE_MODES,
    SpectralInputError,
    check_image_batch,
    log_magnitude_spectra,
    spectral_profiles,
)
from bench.stats import GaussianStats

SIZE_POLICIES = ("group", "crop")


def describe_size_policy(policy: str, crop_size: int | None = None) -> str:
    """One sentence for reports saying how images of different sizes were handled."""
    if policy == "group":
        return "images grouped by size (no resizing, no cropping); sets compared size by size"
    return f"every image centre-cropped to {crop_size}×{crop_size} before the FFT (no resizing)"


def centre_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Centre-crop an N×C×H×W batch to size × size; SpectralInputError when an image is smaller."""
    height, width = images.shape[-2:]
    if height < size or width < size:
        raise SpectralInputError(
            f"cannot centre-crop {height}×{width} images to {size}×{size}: images are never up-sampled; "
            "choose a smaller --crop or the 'group' policy"
        )
    top, left = (height - size) // 2, (width - size) // 2
    return images[..., top : top + size, left : left + size]


@dataclass
class SpectralSet:
    """Spectral statistics of the images of one set at one image size."""

    name: str
    height: int
    width: int
    stats: dict[str, GaussianStats] = field(default_factory=dict)
    profiles: dict[str, list[np.ndarray]] = field(default_factory=dict)
    decay: list[np.ndarray] = field(default_factory=list)
    spectrum_sum: np.ndarray | None = None
    ids: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Number of images."""
        return next(iter(self.stats.values())).n if self.stats else 0

    @property
    def size_label(self) -> str:
        """'H×W' label of this group."""
        return f"{self.height}×{self.width}"

    def mean(self, mode: str = "durall") -> np.ndarray:
        """Mean profile (float64)."""
        return self.stats[mode].mean

    def std(self, mode: str = "durall") -> np.ndarray:
        """Per-bin standard deviation of the profiles (unbiased, ddof = 1); zeros for a single image."""
        stats = self.stats[mode]
        if stats.n < 2:
            return np.zeros(stats.dim)
        return np.sqrt(np.clip(np.diag(stats.cov), 0.0, None))

    def profile_array(self, mode: str = "durall") -> np.ndarray:
        """All profiles of the set, (n, L) float64 (needs ``keep_profiles=True`` when collecting)."""
        rows = self.profiles.get(mode)
        if not rows:
            raise SpectralInputError(f"set {self.name!r} kept no individual {mode} profiles")
        return np.concatenate(rows)

    def decay_array(self) -> np.ndarray:
        """Dzanic decay features (n, 3): [b, y_i, y_f]."""
        if not self.decay:
            raise SpectralInputError(f"set {self.name!r} has no decay features")
        return np.concatenate(self.decay)

    def mean_spectrum(self) -> np.ndarray | None:
        """Mean 2-D Durall spectrum S (H×W, fftshifted), or None when not collected."""
        if self.spectrum_sum is None or self.n == 0:
            return None
        return self.spectrum_sum / self.n


class SpectralCollector:
    """Accumulate spectral statistics of one image set batch by batch, on the batches' device.

    Mean and std come from float64 streaming statistics (Chan et al. merge, independent of batch size);
    individual profiles and decay features are kept for detection and FD when ``keep_profiles`` is true.
    """

    def __init__(
        self,
        name: str,
        modes: Iterable[str] = ("durall", "power"),
        size_policy: str = "group",
        crop_size: int | None = None,
        dtype: torch.dtype = torch.float64,
        keep_profiles: bool = True,
        mean_spectrum: bool = True,
        decay_features: bool = True,
    ) -> None:
        self.name = name
        self.modes = tuple(modes)
        for mode in self.modes:
            if mode not in PROFILE_MODES:
                raise SpectralInputError(f"unknown profile mode {mode!r}; choose from {PROFILE_MODES}")
        if size_policy not in SIZE_POLICIES:
            raise SpectralInputError(f"unknown size policy {size_policy!r}; choose 'group' or 'crop'")
        if size_policy == "crop" and (crop_size is None or crop_size < 4):
            raise SpectralInputError("the 'crop' size policy needs an explicit crop size ≥ 4")
        self.size_policy = size_policy
        self.crop_size = crop_size
        self.dtype = dtype
        self.keep_profiles = keep_profiles
        self.collect_spectrum = mean_spectrum
        self.collect_decay = decay_features
        self.groups: dict[tuple[int, int], SpectralSet] = {}

    @property
    def policy_description(self) -> str:
        """How sizes were handled, for the report."""
        return describe_size_policy(self.size_policy, self.crop_size)

    def add(self, images: torch.Tensor, ids: list[str] | None = None) -> None:
        """Fold one batch (N×3×H×W, uint8 or float, any device) into the statistics."""
        check_image_batch(images)
        if self.size_policy == "crop":
            images = centre_crop(images, int(self.crop_size))  # type: ignore[arg-type]
        height, width = int(images.shape[-2]), int(images.shape[-1])
        group = self.groups.get((height, width))
        if group is None:
            group = SpectralSet(self.name, height, width)
            self.groups[(height, width)] = group
        for mode in self.modes:
            profiles = spectral_profiles(images, mode, self.dtype)
            batch_stats = GaussianStats.from_features(profiles.to(torch.float64))
            current = group.stats.get(mode)
            group.stats[mode] = batch_stats if current is None else current.merge(batch_stats)
            if self.keep_profiles:
                group.profiles.setdefault(mode, []).append(profiles.detach().cpu().to(torch.float64).numpy())
        if self.collect_decay:
            group.decay.append(dzanic_decay_features(images).cpu().numpy())
        if self.collect_spectrum:
            total = log_magnitude_spectra(images, self.dtype).sum(dim=0).cpu().to(torch.float64).numpy()
            group.spectrum_sum = total if group.spectrum_sum is None else group.spectrum_sum + total
        group.ids.extend(
            ids if ids is not None else [f"{self.name}:{len(group.ids) + i}" for i in range(len(images))]
        )

    def add_all(self, batches: Iterable[Any]) -> SpectralCollector:
        """Add every batch of an iterable of tensors or (ids, tensor) pairs; returns self."""
        for item in batches:
            if isinstance(item, tuple) and len(item) == 2:
                self.add(item[1], list(item[0]))
            else:
                self.add(item)
        return self

    def sets(self) -> dict[tuple[int, int], SpectralSet]:
        """The collected groups, keyed by (H, W), largest group first."""
        return dict(sorted(self.groups.items(), key=lambda kv: -kv[1].n))


def iterate_batches(images: Any, batch_size: int = 64, device: torch.device | None = None) -> Iterator[Any]:
    """Batches from an ImageSource (``iter_batches``), a tensor, or an iterable of tensors / (ids, tensor)."""
    if isinstance(images, torch.Tensor):
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start : start + batch_size]
            yield chunk if device is None else chunk.to(device)
        return
    iterator = images.iter_batches(batch_size) if hasattr(images, "iter_batches") else images
    for item in iterator:
        if isinstance(item, tuple) and len(item) == 2:
            ids, batch = item
            yield (ids, batch if device is None else batch.to(device))
        else:
            yield item if device is None else item.to(device)
