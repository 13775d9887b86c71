"""Spectral set distances and Dzanic decay features against independent oracles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.spectral.decay import DECAY_BINS, dzanic_decay_features, fit_decay
from bench.spectral.distances import (
    bce_distance,
    bce_excess,
    binary_cross_entropy,
    l2_log_profile,
    log_profiles,
    minmax_normalize,
    profile_distances,
)
from bench.spectral.profiles import SpectralInputError
from tests.oracles import fd_sqrtm_oracle


def test_minmax_normalization_maps_each_profile_to_unit_range():
    profiles = np.array([[3.0, 5.0, 4.0], [-1.0, -1.0, -1.0]])
    np.testing.assert_allclose(minmax_normalize(profiles), [[0.0, 1.0, 0.5], [0.0, 0.0, 0.0]])


def test_bce_matches_torch_bce_loss_including_its_log_clamp():
    rng = np.random.default_rng(0)
    target = minmax_normalize(rng.normal(size=50))
    prediction = minmax_normalize(rng.normal(size=50))  # contains an exact 0 and 1: clamped logs
    expected = torch.nn.functional.binary_cross_entropy(
        torch.from_numpy(prediction), torch.from_numpy(target)
    ).item()
    assert binary_cross_entropy(prediction, target) == pytest.approx(expected, rel=1e-12)
    real_mean, gen_mean = rng.normal(size=30), rng.normal(size=30)
    expected_distance = torch.nn.functional.binary_cross_entropy(
        torch.from_numpy(minmax_normalize(gen_mean)), torch.from_numpy(minmax_normalize(real_mean))
    ).item()
    assert bce_distance(real_mean, gen_mean) == pytest.approx(expected_distance, rel=1e-12)


def test_bce_excess_is_zero_for_identical_and_positive_otherwise():
    rng = np.random.default_rng(1)
    mean = rng.normal(size=40)
    assert bce_excess(mean, mean) == pytest.approx(0.0, abs=1e-12)
    assert bce_excess(mean, 2.0 * mean + 7.0) == pytest.approx(0.0, abs=1e-12)  # min–max removes affine maps
    assert bce_excess(mean, rng.normal(size=40)) > 0.01


def test_l2_log_profile_closed_form_and_power_logging():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.0, 4.0, 3.0 + np.sqrt(5.0)])
    assert l2_log_profile(a, b) == pytest.approx(3.0)
    power = np.array([[1.0, np.e, np.e**2]])
    np.testing.assert_allclose(log_profiles(power, "power"), [[0.0, 10.0, 20.0]])
    with pytest.raises(SpectralInputError, match="lengths differ"):
        l2_log_profile(a, b[:2])


def test_profile_distances_against_oracles():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(60, 6)) * [1, 2, 3, 1, 1, 2]
    generated = rng.normal(size=(50, 6)) + 0.5
    result = profile_distances(real, generated, "durall")
    expected_fd = fd_sqrtm_oracle(
        real.mean(0), np.cov(real, rowvar=False), generated.mean(0), np.cov(generated, rowvar=False)
    )
    assert result["fd_profile"] == pytest.approx(expected_fd, rel=1e-9)
    assert result["l2_log_profile"] == pytest.approx(
        np.linalg.norm(real.mean(0) - generated.mean(0)), rel=1e-12
    )
    assert result["fd_profile_mean_term"] == pytest.approx(np.sum((real.mean(0) - generated.mean(0)) ** 2))
    same = profile_distances(real, real, "durall")
    assert same["fd_profile"] == pytest.approx(0.0, abs=1e-8)
    assert same["l2_log_profile"] == 0.0
    assert same["bce_excess"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(SpectralInputError, match="equal L"):
        profile_distances(real, generated[:, :5], "durall")


# ------------------------------------------------------------------------------------------- decay
def power_law_image(size: int, exponent: float, seed: int) -> torch.Tensor:
    """A gray image whose magnitude spectrum is exactly |k|^exponent (random phases), as N×1×H×W."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(size, 1.0 / size)[:, None]
    fx = np.fft.rfftfreq(size, 1.0 / size)[None, :]
    radius = np.hypot(fy, fx)
    magnitude = np.where(radius > 0, radius, 1.0) ** exponent
    half = magnitude * np.exp(2j * np.pi * rng.random(radius.shape))
    image = np.fft.irfft2(half, s=(size, size))
    return torch.from_numpy(image)[None, None]


def decay_oracle(image: np.ndarray) -> np.ndarray:
    """Dzanic features from METHODS §4 written independently: full fft2, 200 bins on [0, Nyquist), keep the
    non-empty bins above half Nyquist, moving average 5, log–log least squares (numpy.polyfit)."""
    height, width = image.shape
    magnitude = np.abs(np.fft.fft2(image)) / (height * width)
    fy = np.fft.fftfreq(height, 1.0 / height)[:, None]
    fx = np.fft.fftfreq(width, 1.0 / width)[None, :]
    radius = np.broadcast_to(np.hypot(fy, fx), magnitude.shape)
    r_max = min(height, width) / 2
    inside = radius < r_max
    bins = np.floor(radius[inside] / r_max * DECAY_BINS).astype(int)
    sums = np.bincount(bins, magnitude[inside], minlength=DECAY_BINS)
    counts = np.bincount(bins, minlength=DECAY_BINS)
    centres = (np.arange(DECAY_BINS) + 0.5) * r_max / DECAY_BINS
    keep = (centres > r_max / 2) & (counts > 0)
    y = np.convolve(sums[keep] / counts[keep], np.ones(5) / 5, mode="valid")
    x = np.convolve(centres[keep], np.ones(5) / 5, mode="valid")
    slope, intercept = np.polyfit(np.log(x / x[0]), np.log(y), 1)
    return np.array([slope, np.exp(intercept), y[-1]])


@pytest.mark.parametrize("exponent", [-1.0, -2.0, -0.5])
def test_decay_exponent_of_an_exact_power_law(exponent):
    features = dzanic_decay_features(power_law_image(128, exponent, seed=1)).numpy()[0]
    assert features[0] == pytest.approx(exponent, abs=0.02)


@pytest.mark.parametrize("size", [64, 96])
def test_decay_features_agree_with_an_independent_oracle(size):
    generator = torch.Generator().manual_seed(size)
    images = torch.randint(0, 256, (3, 3, size, size), generator=generator, dtype=torch.uint8)
    features = dzanic_decay_features(images).numpy()
    gray = images.double().numpy()
    gray = 0.299 * gray[:, 0] + 0.587 * gray[:, 1] + 0.114 * gray[:, 2]
    expected = np.stack([decay_oracle(image) for image in gray])
    np.testing.assert_allclose(features, expected, rtol=1e-8)


def test_fit_decay_recovers_a_planted_power_law():
    radii = np.linspace(10, 30, 40)
    spectra = 3.0 * (radii / radii[2]) ** -1.5  # the moving average starts at radii[2]
    b, y_i, y_f = fit_decay(spectra[None], radii)[0]
    assert b == pytest.approx(-1.5, abs=0.01)  # the moving average of a convex curve bends it slightly
    assert y_i == pytest.approx(3.0, rel=1e-2)
    assert y_f == pytest.approx(np.convolve(spectra, np.ones(5) / 5, mode="valid")[-1])
