"""Perturbations: pure, seeded, batched functions on uint8 image batches (DESIGN "Perturbation").

`make_perturbation(name, **params)` builds one; `available()` lists the names. Presets bundle the
sweeps of the literature: the TTUR disturbance levels, the clean-fid resize study, the up-sampling modes
and the region-blur σ and fraction sweeps.
"""

from __future__ import annotations

from bench.perturbations.adain import (
    AdaINColor,
    adain,
    channel_mean_std,
    feature_adain,
    feature_channel_stats,
)
from bench.perturbations.base import Perturbation, available, image_generator, make_perturbation, quantize
from bench.perturbations.blur import (
    GaussianBlur,
    RegionBlur,
    blur_matrix,
    gaussian_weights,
    region_blur_fraction_sweep,
    region_blur_geometry,
    region_blur_sigma_sweep,
    separable_blur,
)
from bench.perturbations.codecs import JPEG, WebP
from bench.perturbations.noise import BlackRectangles, GaussianNoise, SaltPepper
from bench.perturbations.resize import ResizeRoundTrip, clean_fid_resize_study
from bench.perturbations.swirl import Swirl
from bench.perturbations.upsample import MODES as UPSAMPLE_MODES
from bench.perturbations.upsample import Upsample

__all__ = [
    "JPEG",
    "UPSAMPLE_MODES",
    "AdaINColor",
    "BlackRectangles",
    "GaussianBlur",
    "GaussianNoise",
    "Perturbation",
    "RegionBlur",
    "ResizeRoundTrip",
    "SaltPepper",
    "Swirl",
    "Upsample",
    "WebP",
    "adain",
    "available",
    "blur_matrix",
    "channel_mean_std",
    "clean_fid_resize_study",
    "feature_adain",
    "feature_channel_stats",
    "gaussian_weights",
    "image_generator",
    "make_perturbation",
    "quantize",
    "region_blur_fraction_sweep",
    "region_blur_geometry",
    "region_blur_sigma_sweep",
    "separable_blur",
    "ttur_presets",
    "upsample_presets",
]

TTUR_LEVELS = {
    "gaussian_noise": ("alpha", (0.0, 0.25, 0.5, 0.75)),
    "gaussian_blur": ("sigma", (0.0, 1.0, 2.0, 4.0)),
    "black_rectangles": ("alpha", (0.0, 0.25, 0.5, 0.75)),
    "swirl": ("strength", (0.0, 1.0, 2.0, 4.0)),
    "salt_pepper": ("amount", (0.0, 0.1, 0.2, 0.3)),
}


def ttur_presets(seed: int = 0) -> dict[str, list[Perturbation]]:
    """The disturbance levels of Heusel et al. 2017 (Fig. A1–A5), one list per disturbance."""
    presets: dict[str, list[Perturbation]] = {}
    for name, (parameter, levels) in TTUR_LEVELS.items():
        extra = {} if name in ("gaussian_blur", "swirl") else {"seed": seed}
        presets[name] = [make_perturbation(name, **{parameter: level}, **extra) for level in levels]
    return presets


def upsample_presets(factor: int = 2) -> list[Perturbation]:
    """×factor down then up with each up-sampling mode."""
    return [Upsample(mode=mode, factor=factor) for mode in UPSAMPLE_MODES]
