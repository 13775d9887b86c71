"""Durall and power profiles against float64 numpy oracles written from METHODS §4, and their properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.spectral.collect import SpectralCollector, centre_crop
from bench.spectral.profiles import (
    SpectralInputError,
    durall_profile_length,
    durall_profiles,
    frequency_axis,
    log_magnitude_spectra,
    power_profiles,
    resample_profiles,
    spectral_profiles,
    to_grayscale,
)


# ------------------------------------------------------------------------------------------- oracles
def gray_oracle(image: np.ndarray) -> np.ndarray:
    """0.299 R + 0.587 G + 0.114 B of one 3×H×W image, float64."""
    image = image.astype(np.float64)
    return 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]


def durall_profile_oracle(image: np.ndarray) -> np.ndarray:
    """METHODS §4, literally: full fft2, fftshift, + 1e-8, 20·ln|·|, mean over floor(hypot) bins about
    ((W−1)/2, (H−1)/2), drop the r = 0 bin and the last bin."""
    gray = gray_oracle(image)
    height, width = gray.shape
    spectrum = 20.0 * np.log(np.abs(np.fft.fftshift(np.fft.fft2(gray)) + 1e-8))
    y, x = np.indices((height, width))
    radius = np.floor(np.hypot(x - (width - 1) / 2.0, y - (height - 1) / 2.0)).astype(int)
    means = np.bincount(radius.ravel(), spectrum.ravel()) / np.bincount(radius.ravel())
    return means[1:-1]


def power_profile_oracle(image: np.ndarray) -> np.ndarray:
    """Mean |F|² over floor(hypot(fy, fx)) bins with integer frequencies centred on DC, bins 0 … M/2 − 1."""
    gray = gray_oracle(image)
    height, width = gray.shape
    power = np.abs(np.fft.fft2(gray)) ** 2
    fy = np.fft.fftfreq(height, 1.0 / height)[:, None]
    fx = np.fft.fftfreq(width, 1.0 / width)[None, :]
    radius = np.floor(np.hypot(fy, fx)).astype(int)
    means = np.bincount(radius.ravel(), power.ravel()) / np.bincount(radius.ravel())
    return means[: min(height, width) // 2]


def random_images(n: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, height, width), generator=generator, dtype=torch.uint8)


def smooth_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Photograph-like test images: bicubic up-sampled noise, so the spectrum falls off like a photo's."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size // 8, size // 8, generator=generator) * 255
    fine = torch.rand(n, 3, size, size, generator=generator) * 6
    up = torch.nn.functional.interpolate(coarse, size=size, mode="bicubic", align_corners=False)
    return (up + fine).clamp(0, 255).round().to(torch.uint8)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float) -> None:
    """numpy's assert_allclose on tensors (torch.testing's first call costs seconds of imports)."""
    np.testing.assert_allclose(actual.cpu().numpy(), expected.cpu().numpy(), rtol=rtol, atol=atol)


def available_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


# ------------------------------------------------------------------------------------------- lengths
@pytest.mark.parametrize(("size", "length"), [(128, 88), (256, 179), (1024, 722)])
def test_durall_profile_lengths_match_the_paper(size, length):
    assert durall_profile_length(size, size) == length
    assert int(np.floor((size - 1) / np.sqrt(2))) - 1 == length
    image = random_images(1, size, size, seed=size)
    assert durall_profiles(image).shape == (1, length)


@pytest.mark.parametrize(("height", "width"), [(64, 64), (37, 50), (65, 64), (30, 31)])
def test_lengths_equal_the_oracle_for_odd_and_non_square_sizes(height, width):
    image = random_images(1, height, width)
    assert durall_profiles(image).shape[1] == durall_profile_oracle(image[0].numpy()).size
    assert power_profiles(image).shape[1] == min(height, width) // 2


# ------------------------------------------------------------------------------------------- oracle
@pytest.mark.parametrize(("height", "width"), [(128, 128), (64, 64), (37, 50), (65, 64), (33, 33)])
def test_batched_durall_profile_agrees_with_numpy_oracle_to_1e_10(height, width):
    images = random_images(5, height, width, seed=height * width)
    batched = durall_profiles(images).numpy()
    expected = np.stack([durall_profile_oracle(image) for image in images.numpy()])
    np.testing.assert_allclose(batched, expected, rtol=0, atol=1e-10)
    # float input takes the general (non-integer) grayscale path: same numbers
    np.testing.assert_allclose(durall_profiles(images.double()).numpy(), expected, rtol=0, atol=1e-10)


def test_durall_profile_of_smooth_images_agrees_with_oracle():
    images = smooth_images(4, 128, seed=3)
    expected = np.stack([durall_profile_oracle(image) for image in images.numpy()])
    np.testing.assert_allclose(durall_profiles(images).numpy(), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize(("height", "width"), [(64, 64), (37, 50), (65, 64)])
def test_power_profile_agrees_with_numpy_oracle(height, width):
    images = random_images(3, height, width, seed=7)
    expected = np.stack([power_profile_oracle(image) for image in images.numpy()])
    np.testing.assert_allclose(power_profiles(images).numpy(), expected, rtol=1e-10, atol=0)


def test_log_magnitude_spectra_match_numpy():
    images = random_images(2, 32, 48, seed=1)
    gray = np.stack([gray_oracle(image) for image in images.numpy()])
    expected = 20 * np.log(np.abs(np.fft.fftshift(np.fft.fft2(gray), axes=(-2, -1)) + 1e-8))
    np.testing.assert_allclose(log_magnitude_spectra(images).numpy(), expected, rtol=0, atol=1e-10)


def test_grayscale_weights():
    images = random_images(2, 8, 8, seed=2)
    expected = np.stack([gray_oracle(image) for image in images.numpy()])
    np.testing.assert_allclose(to_grayscale(images).numpy(), expected, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------- sinusoid
@pytest.mark.parametrize(("fy", "fx"), [(0, 20), (12, 16), (-9, 30), (25, 7)])
def test_pure_sinusoid_profile_peaks_at_its_radius(fy, fx):
    size = 128
    y, x = np.indices((size, size))
    wave = 100 * np.cos(2 * np.pi * (fy * y + fx * x) / size + 0.3)  # zero mean: no DC peak
    image = torch.from_numpy(np.repeat(wave[None, None], 3, axis=1))
    radius = np.hypot(fy, fx)
    power = power_profiles(image)[0].numpy()
    assert int(np.argmax(power)) == int(np.floor(radius))
    durall = durall_profiles(image)[0].numpy()
    peak_radius = frequency_axis(size, size)[int(np.argmax(durall))]
    # Durall's centre sits half a pixel before the DC coefficient (at +½, +½), so +k and −k lie at
    # hypot(fy ± ½, fx ± ½) from it: the peak is in one of those two integer bins, next to the radius.
    expected_bins = {int(np.floor(np.hypot(fy + s, fx + s))) for s in (0.5, -0.5)}
    assert int(peak_radius) in expected_bins
    assert abs(peak_radius - radius) < 1.0 + np.sqrt(0.5)
    others = np.delete(durall, [int(np.argmax(durall))])
    assert durall.max() > np.median(others) + 3.0


# ------------------------------------------------------------------------------------ devices, batching
@pytest.mark.parametrize("device", available_devices())
def test_profiles_identical_on_every_available_device(device):
    images = random_images(4, 64, 96, seed=11)
    reference = durall_profiles(images)
    on_device = durall_profiles(images.to(device)).cpu()
    assert_close(on_device, reference, rtol=0, atol=1e-10)
    assert_close(power_profiles(images.to(device)).cpu(), power_profiles(images), rtol=1e-10, atol=0)


def test_profiles_do_not_depend_on_batch_composition_or_chunking():
    images = random_images(7, 48, 48, seed=5)
    whole = durall_profiles(images)
    singles = torch.cat([durall_profiles(images[i : i + 1]) for i in range(7)])
    chunked = spectral_profiles(images, "durall", chunk_size=3)
    assert_close(singles, whole, rtol=0, atol=1e-11)
    assert_close(chunked, whole, rtol=0, atol=1e-11)


def test_float32_mode_is_within_the_documented_tolerance():
    images = torch.cat([smooth_images(3, 256, seed=4), random_images(2, 256, 256, seed=4)])
    exact = durall_profiles(images)
    fast = durall_profiles(images, torch.float32)
    assert fast.dtype == torch.float32
    assert float((fast.double() - exact).abs().max()) < 1e-3
    relative = (
        power_profiles(images, torch.float32).double() - power_profiles(images)
    ).abs() / power_profiles(images)
    assert float(relative.max()) < 1e-5


def test_power_mode_is_invariant_to_circular_shifts():
    images = random_images(2, 40, 40, seed=9)
    shifted = torch.roll(images, shifts=(7, -3), dims=(2, 3))
    assert_close(power_profiles(shifted), power_profiles(images), rtol=1e-10, atol=0)
    assert_close(durall_profiles(shifted), durall_profiles(images), rtol=0, atol=1e-9)


# ------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.zeros(3, 8, 8, dtype=torch.uint8), "N×3×H×W"),
        (torch.zeros(2, 4, 8, 8, dtype=torch.uint8), "N×3×H×W"),
        (torch.zeros(0, 3, 8, 8, dtype=torch.uint8), "empty"),
        (torch.zeros(1, 3, 2, 8, dtype=torch.uint8), "too small"),
        (np.zeros((1, 3, 8, 8)), "torch tensor"),
    ],
)
def test_bad_batches_raise_a_specific_error(images, message):
    with pytest.raises(SpectralInputError, match=message):
        durall_profiles(images)


def test_unknown_mode_and_dtype_are_rejected():
    images = random_images(1, 8, 8)
    with pytest.raises(SpectralInputError, match="unknown profile mode"):
        spectral_profiles(images, "fourier")
    with pytest.raises(SpectralInputError, match="dtype"):
        spectral_profiles(images, "durall", torch.float16)


# ------------------------------------------------------------------------------------------- streaming sets
def test_streaming_mean_and_std_equal_numpy_over_uneven_batches():
    images = random_images(11, 32, 32, seed=21)
    collector = SpectralCollector("set", decay_features=False)
    for start, stop in ((0, 1), (1, 5), (5, 11)):
        collector.add(images[start:stop])
    (group,) = collector.sets().values()
    oracle = np.stack([durall_profile_oracle(image) for image in images.numpy()])
    np.testing.assert_allclose(group.mean(), oracle.mean(0), rtol=0, atol=1e-10)
    np.testing.assert_allclose(group.std(), oracle.std(0, ddof=1), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(group.profile_array(), oracle, rtol=0, atol=1e-10)
    assert group.n == 11
    mean_spectrum = np.mean(
        [20 * np.log(np.abs(np.fft.fftshift(np.fft.fft2(gray_oracle(im))) + 1e-8)) for im in images.numpy()],
        axis=0,
    )
    np.testing.assert_allclose(group.mean_spectrum(), mean_spectrum, rtol=0, atol=1e-9)


def test_group_policy_keeps_sizes_apart_and_crop_policy_crops():
    small, large = random_images(3, 32, 32, seed=1), random_images(2, 48, 40, seed=2)
    grouped = SpectralCollector("mixed", decay_features=False).add_all([small, large])
    assert {key: group.n for key, group in grouped.sets().items()} == {(32, 32): 3, (48, 40): 2}
    cropped = SpectralCollector("mixed", size_policy="crop", crop_size=32, decay_features=False)
    cropped.add_all([small, large])
    (group,) = cropped.sets().values()
    assert group.n == 5
    expected = np.stack([durall_profile_oracle(im) for im in centre_crop(large, 32).numpy()])
    np.testing.assert_allclose(group.profile_array()[3:], expected, rtol=0, atol=1e-10)
    assert "centre-cropped to 32×32" in cropped.policy_description
    assert "grouped by size" in grouped.policy_description


def test_crop_larger_than_an_image_is_an_error_not_an_upsample():
    collector = SpectralCollector("x", size_policy="crop", crop_size=64)
    with pytest.raises(SpectralInputError, match="never up-sampled"):
        collector.add(random_images(1, 32, 80))
    with pytest.raises(SpectralInputError, match="crop size"):
        SpectralCollector("x", size_policy="crop")
    with pytest.raises(SpectralInputError, match="size policy"):
        SpectralCollector("x", size_policy="resize")


def test_resampled_profile_interpolates_linearly_on_the_nyquist_axis():
    profile = np.arange(1.0, 11.0)[None]  # value = radius on an image with Nyquist radius 10
    targets = np.array([0.1, 0.25, 0.5, 1.0])
    np.testing.assert_allclose(resample_profiles(profile, 10.0, targets)[0], [1.0, 2.5, 5.0, 10.0])
