"""Real-vs-generated detection: far above chance with a planted periodic artifact, at chance without."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.spectral.decay import dzanic_decay_features
from bench.spectral.detection import (
    detection_accuracy,
    most_discriminative_band,
    standardized_mean_difference,
)
from bench.spectral.profiles import SpectralInputError, durall_profiles, frequency_axis
from tests.test_spectral_profiles import smooth_images

SIZE = 64
N = 100


def ring_noise(n: int, r_low: float, r_high: float, pixel_std: float, seed: int) -> torch.Tensor:
    """Random-phase noise whose spectrum fills only the annulus r_low ≤ |k| < r_high, as N×1×H×W float."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(SIZE, 1.0 / SIZE)[:, None]
    fx = np.fft.rfftfreq(SIZE, 1.0 / SIZE)[None, :]
    ring = (np.hypot(fy, fx) >= r_low) & (np.hypot(fy, fx) < r_high)
    spectra = ring * np.exp(2j * np.pi * rng.random((n, *ring.shape)))
    noise = np.fft.irfft2(spectra, s=(SIZE, SIZE))
    noise *= pixel_std / noise.std(axis=(1, 2), keepdims=True)
    return torch.from_numpy(noise)[:, None].float()


def with_artifact(images: torch.Tensor, artifact: torch.Tensor) -> torch.Tensor:
    return (images.float() + artifact).clamp(0, 255).round().to(torch.uint8)


@pytest.fixture(scope="module")
def clean_sets():
    return smooth_images(N, SIZE, seed=1), smooth_images(N, SIZE, seed=2)


@pytest.mark.slow
def test_planted_periodic_artifact_is_detected_far_above_chance(clean_sets):
    real, other = clean_sets
    # the ×2 transposed-convolution signature: a 2×2-periodic gain (±5 %) on the content, which copies the
    # whole spectrum to replicas shifted by Nyquist along each axis and the diagonal
    gain = 1.0 + 0.05 * torch.tensor([[1.0, -0.5], [-0.3, -0.2]]).repeat(SIZE // 2, SIZE // 2)
    generated = (other.float() * gain).clamp(0, 255).round().to(torch.uint8)
    real_profiles, gen_profiles = durall_profiles(real).numpy(), durall_profiles(generated).numpy()
    for classifier in ("logreg", "svm"):
        result = detection_accuracy(real_profiles, gen_profiles, classifier)
        assert len(result.accuracies) == 10
        assert result.mean > 0.9, (classifier, result.accuracies)
        assert result.n_test == 40


def test_two_samples_of_one_source_are_at_chance(clean_sets):
    real, other = clean_sets
    real_profiles, other_profiles = durall_profiles(real).numpy(), durall_profiles(other).numpy()
    for classifier in ("logreg", "svm"):
        result = detection_accuracy(real_profiles, other_profiles, classifier)
        low, high = result.chance_interval()
        assert low <= result.mean <= high, (classifier, result.mean, (low, high))
    decay = detection_accuracy(
        dzanic_decay_features(real).numpy(), dzanic_decay_features(other).numpy(), "knn"
    )
    low, high = decay.chance_interval()
    assert low <= decay.mean <= high


def test_knn_on_decay_features_detects_missing_high_frequencies(clean_sets):
    real, other = clean_sets
    # a generator that cannot produce the finest detail: 3×3 box blur of otherwise identical images
    blurred = torch.nn.functional.avg_pool2d(other.float(), 3, stride=1, padding=1, count_include_pad=False)
    generated = blurred.round().to(torch.uint8)
    result = detection_accuracy(
        dzanic_decay_features(real).numpy(), dzanic_decay_features(generated).numpy(), "knn", knn_k=5
    )
    assert result.mean > 0.9


def test_most_discriminative_band_contains_the_planted_frequency(clean_sets):
    real, other = clean_sets
    # extra energy only at radii 19–21 (of Nyquist 32)
    generated = with_artifact(other, ring_noise(N, 19.0, 22.0, pixel_std=2.0, seed=3))
    result = detection_accuracy(durall_profiles(real).numpy(), durall_profiles(generated).numpy(), "logreg")
    assert result.mean > 0.8
    band = most_discriminative_band(result.coefficients, frequency_axis(SIZE, SIZE), nyquist=SIZE / 2)
    assert band.radius_low - 1 <= 20 <= band.radius_high + 1
    assert band.nyquist_fraction_low <= 20 / 32 <= band.nyquist_fraction_high + 2 / 32
    real_profiles, gen_profiles = durall_profiles(real).numpy(), durall_profiles(generated).numpy()
    effect = most_discriminative_band(
        standardized_mean_difference(real_profiles, gen_profiles),
        frequency_axis(SIZE, SIZE),
        nyquist=SIZE / 2,
    )
    assert effect.radius_low - 1 <= 20 <= effect.radius_high + 1


def test_standardized_mean_difference_closed_form():
    a = np.array([[0.0, 1.0, 5.0], [2.0, 1.0, 5.0], [4.0, 1.0, 5.0]])
    b = a + np.array([2.0, 0.0, 0.0])
    # column 0: means differ by 2, both variances 4 → d = 1; constant columns → 0
    np.testing.assert_allclose(standardized_mean_difference(a, b), [1.0, 0.0, 0.0])


def test_band_of_a_single_dominant_coefficient():
    weights = np.zeros(50)
    weights[30] = 5.0
    weights[10] = 1.0
    band = most_discriminative_band(weights, np.arange(1.0, 51.0), nyquist=25.0, width=4)
    assert band.first_bin <= 30 <= band.last_bin
    assert band.peak_bin == 30
    assert band.peak_radius == 31.0
    assert band.share_of_weight == pytest.approx(5.0 / 6.0)


def test_detection_input_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(SpectralInputError, match="equal d"):
        detection_accuracy(rng.normal(size=(20, 4)), rng.normal(size=(20, 5)))
    with pytest.raises(SpectralInputError, match="at least"):
        detection_accuracy(rng.normal(size=(3, 4)), rng.normal(size=(20, 4)))
    with pytest.raises(SpectralInputError, match="unknown classifier"):
        detection_accuracy(rng.normal(size=(20, 4)), rng.normal(size=(20, 4)), "forest")
    with pytest.raises(SpectralInputError, match="coefficients"):
        most_discriminative_band(np.ones(5), np.ones(6), nyquist=3.0)
