"""Spectral analysis of image sets (METHODS §4): Durall profiles, set distances, detection, spectral loss.

Modules: ``profiles`` (batched Durall and power profiles), ``collect`` (streaming per-set statistics and the
size policy), ``distances`` (BCE, L2, FD between sets), ``decay`` (Dzanic decay features), ``detection``
(real-vs-generated classifiers), ``loss`` (differentiable spectral loss), ``plots`` and ``section`` (the
report section used by ``fdbench spectral`` and experiment reports).
"""

from __future__ import annotations

from bench.spectral.collect import SpectralCollector, SpectralSet
from bench.spectral.decay import dzanic_decay_features
from bench.spectral.detection import detection_accuracy, most_discriminative_band
from bench.spectral.distances import profile_distances
from bench.spectral.loss import SpectralLoss
from bench.spectral.profiles import (
    SpectralInputError,
    durall_profile_length,
    durall_profiles,
    power_profiles,
    spectral_profiles,
)

__all__ = [
    "SpectralCollector",
    "SpectralInputError",
    "SpectralLoss",
    "SpectralSet",
    "detection_accuracy",
    "durall_profile_length",
    "durall_profiles",
    "dzanic_decay_features",
    "most_discriminative_band",
    "power_profiles",
    "profile_distances",
    "spectral_profiles",
]
