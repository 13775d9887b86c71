"""``spectrum-durall``: the Durall et al. (2020) 1-D azimuthal spectral profile as a feature vector.

The profile is computed at each image's own resolution (METHODS §4: images are never resized before the
FFT) with `bench.spectral.profiles.durall_profiles`, in float64 on the batch's device; a non-square image
is first centre-cropped to its shorter side. The spectrum is then resampled, linearly in radius measured
as a fraction of the Nyquist radius, onto the bins of a 256² image (179 values), so images of any size give
comparable vectors. A 256² image's profile passes unchanged; smaller images are extended at their highest
radius (they hold no higher frequencies).
"""

from __future__ import annotations

import math

import torch

from bench.spectral.profiles import durall_profiles as _durall_profiles
from feature_spaces.extractor import Extractor
from feature_spaces.spec import FeatureSpaceSpec

GRID_SIDE = 256  # the profile grid: bins of a 256² image


def profile_length(side: int) -> int:
    """Number of profile bins for a side×side image."""
    return math.floor((side - 1) / math.sqrt(2.0)) - 1


def durall_profiles(images: torch.Tensor) -> torch.Tensor:
    """Durall profiles (float64, N × L) of a uint8 or 0..255 float N×3×M×M batch at its own size."""
    return _durall_profiles(images, dtype=torch.float64)


def resample_to_grid(profiles: torch.Tensor, side: int, grid_side: int = GRID_SIDE) -> torch.Tensor:
    """Linear resampling of profiles of a side² image onto the bins of a grid_side² image.

    Entry i of a side² profile sits at radius (i + 1) / (side / 2) of Nyquist; targets beyond the source's
    last radius take its last value.
    """
    if side == grid_side:
        return profiles
    source = torch.arange(1, profiles.shape[1] + 1, dtype=torch.float64, device=profiles.device) / (side / 2)
    target = torch.arange(1, profile_length(grid_side) + 1, dtype=torch.float64, device=profiles.device)
    target = (target / (grid_side / 2)).clamp(min=float(source[0]), max=float(source[-1]))
    upper = torch.searchsorted(source, target).clamp(1, len(source) - 1)
    lower = upper - 1
    weight = (target - source[lower]) / (source[upper] - source[lower])
    return profiles[:, lower] * (1 - weight) + profiles[:, upper] * weight


def centre_square(images: torch.Tensor) -> torch.Tensor:
    """The central side×side crop of an N×3×H×W batch, side = min(H, W)."""
    height, width = images.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return images[..., top : top + side, left : left + side]


class SpectrumExtractor(Extractor):
    """Profile at the image's own size (centre square), resampled onto the 256² bins."""

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        square = centre_square(images.to(self.device))
        return resample_to_grid(durall_profiles(square), square.shape[-1])


def loader(spec: FeatureSpaceSpec, device: torch.device, paths):
    return SpectrumExtractor(spec, device)
