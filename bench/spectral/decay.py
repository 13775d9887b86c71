"""Spectral decay features of Dzanic, Shah & Witherden 2020 (METHODS §4).

Per image: the magnitude spectrum |F| of the grayscale image (no log, divided by H·W so that sizes are
comparable), azimuthally averaged into 200 equal-width radial bins over 0 … r_max, where r_max = min(H, W)/2
is the Nyquist radius; only the bins above 0.5·r_max are kept (empty bins, which occur at small sizes
because pixel radii are discrete, are skipped), smoothed by a moving average of 5, and a power law
y ≈ y_i·(x/x_1)^b is fitted by least squares in log–log coordinates on that upper band (x_1 = first kept
radius). Features [b, y_i, y_f]: the decay exponent, the fitted value at x_1, and the smoothed observed value
at the highest kept radius (our reading of "y_f"; it carries the highest-frequency level the fit may miss).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from bench.spectral.profiles import to_grayscale

DECAY_BINS = 200
UPPER_BAND_START = 0.5
MOVING_AVERAGE = 5
DECAY_FEATURE_NAMES = ("decay_b", "decay_y_i", "decay_y_f")


@lru_cache(maxsize=16)
def _decay_binning(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bin of each rfft2 coefficient with its multiplicity weight, bin centres kept, kept bin ids)."""
    r_max = min(height, width) / 2.0
    fy = np.fft.fftfreq(height, d=1.0 / height)[:, None]
    fx = np.fft.rfftfreq(width, d=1.0 / width)[None, :]
    radius = np.hypot(fy, fx)
    bins = np.floor(radius / r_max * DECAY_BINS).astype(np.int64)
    bins = np.where(radius < r_max, bins, DECAY_BINS)  # beyond Nyquist radius: discarded slot
    half_w = width // 2 + 1
    conj_kx = (-np.arange(half_w)) % width
    weight = np.where(conj_kx >= half_w, 2.0, 1.0)[None, :].repeat(height, axis=0)
    counts = np.bincount(bins.ravel(), weights=weight.ravel(), minlength=DECAY_BINS + 1)[:DECAY_BINS]
    centres = (np.arange(DECAY_BINS) + 0.5) / DECAY_BINS * r_max
    kept = np.flatnonzero((centres > UPPER_BAND_START * r_max) & (counts > 0))
    return np.stack([bins.ravel(), weight.ravel()]), centres[kept], kept


def reduced_magnitude_spectra(images: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """Azimuthal mean of |F|/(H·W) on the kept upper-band bins: (N, K) float64 and the K bin radii."""
    gray = to_grayscale(images, torch.float64)
    n, height, width = gray.shape
    binning, centres, kept = _decay_binning(height, width)
    magnitude = torch.fft.rfft2(gray).abs().reshape(n, -1) / (height * width)
    bins = torch.from_numpy(binning[0].astype(np.int64)).to(gray.device)
    weight = torch.from_numpy(binning[1]).to(gray.device)
    sums = magnitude.new_zeros(n, DECAY_BINS + 1).index_add(1, bins, magnitude * weight)
    counts = weight.new_zeros(DECAY_BINS + 1).index_add(0, bins, weight)
    kept_t = torch.from_numpy(kept).to(gray.device)
    return (sums[:, kept_t] / counts[kept_t]), centres


def fit_decay(spectra: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """[b, y_i, y_f] per row of ``spectra`` (N, K) given on ``radii`` (K,), after a moving average of 5."""
    spectra = np.atleast_2d(np.asarray(spectra, dtype=np.float64))
    window = np.ones(MOVING_AVERAGE) / MOVING_AVERAGE
    smooth = np.stack([np.convolve(row, window, mode="valid") for row in spectra])
    x = np.convolve(radii, window, mode="valid")
    log_x = np.log(x / x[0])
    log_y = np.log(np.clip(smooth, np.finfo(float).tiny, None))
    design = np.stack([np.ones_like(log_x), log_x], axis=1)
    coef, *_ = np.linalg.lstsq(design, log_y.T, rcond=None)
    intercept, slope = coef
    return np.stack([slope, np.exp(intercept), smooth[:, -1]], axis=1)


def dzanic_decay_features(images: torch.Tensor) -> torch.Tensor:
    """Decay features (N, 3) float64 [b, y_i, y_f] of an image batch (see the module docstring)."""
    spectra, radii = reduced_magnitude_spectra(images)
    return torch.from_numpy(fit_decay(spectra.cpu().numpy(), radii))
