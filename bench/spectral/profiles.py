"""Azimuthally averaged Fourier profiles of image batches (docs/METHODS.md §4).

Two profile modes:

* ``durall`` reproduces the 1-D spectrum of Durall et al. 2020 ("Watch your up-convolution") exactly:
  grayscale 0.299 R + 0.587 G + 0.114 B, 2-D FFT, fftshift, add 1e-8 (to the real part, as numpy's
  ``fshift += epsilon`` does), S = 20·ln|F|, azimuthal mean of S over integer radius bins
  r = floor(hypot(x − cx, y − cy)) with centre ((W−1)/2, (H−1)/2); the r = 0 bin and the last (corner)
  bin are dropped. For an M × M image the profile has floor((M−1)/√2) − 1 entries (88, 179, 722 at
  128², 256², 1024²).
* ``power`` (extension, the textbook radial power spectrum): |F|² without log, centred on the DC
  coefficient, bins floor(hypot(fy, fx)) = 0 … min(H, W)/2 − 1 (up to the Nyquist radius).

The batched path works on the batch's device with ``torch.fft.rfft2`` and uses the Hermitian symmetry of
a real image's spectrum (|F(−k)| = |F(k)|, which still holds after adding a real epsilon) so that only the
half spectrum is transformed and logged; every half-spectrum coefficient is then scattered into the bins
of both full-grid positions it stands for. Images are never resized: a profile depends on the image size,
and the callers group or crop (see ``bench.spectral.collect``).

Precision: ``dtype=torch.float64`` (the default) agrees with a float64 numpy implementation to 1e-10;
``torch.float32`` is about twice as fast and agrees with float64 to 1e-3 in units of S (20·ln|F|; measured
≈ 4e-4 at 256² and 512² on photographs and on noise) and to 1e-5 relative in power mode; the tests check
these bounds.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

import numpy as np
import torch

ProfileMode = Literal["durall", "power"]
PROFILE_MODES: tuple[str, ...] = ("durall", "power")

GRAY_WEIGHTS = (0.299, 0.587, 0.114)
_GRAY_PER_MILLE = (299, 587, 114)
DURALL_EPSILON = 1e-8
CHUNK_PIXELS = 2**17


class SpectralInputError(ValueError):
    """An image batch that cannot be turned into spectral profiles (wrong shape, dtype or size)."""


def check_image_batch(images: torch.Tensor) -> None:
    """Raise SpectralInputError unless ``images`` is an N×3×H×W (or N×1×H×W) tensor with N, H, W ≥ 1."""
    if not isinstance(images, torch.Tensor):
        raise SpectralInputError(f"expected a torch tensor of images, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise SpectralInputError(
            f"expected images shaped N×3×H×W (RGB) or N×1×H×W (gray), got shape {tuple(images.shape)}"
        )
    if images.shape[0] == 0:
        raise SpectralInputError("empty image batch (N = 0)")
    if images.shape[2] < 4 or images.shape[3] < 4:
        raise SpectralInputError(f"images of {images.shape[2]}×{images.shape[3]} are too small (need ≥ 4×4)")


def to_grayscale(images: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """N×3×H×W (uint8 or float, any range) → N×H×W gray in ``dtype``: 0.299 R + 0.587 G + 0.114 B.

    Values keep the input's scale (uint8 images give gray in [0, 255]); no rounding, no resizing.
    Differentiable for floating inputs.
    """
    gray, scale = _scaled_grayscale(images, dtype)
    return gray * scale if scale != 1.0 else gray


def _scaled_grayscale(images: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, float]:
    """(gray / scale, scale): for uint8 RGB the exact integers 299 R + 587 G + 114 B and scale 0.001.

    The integer form is exact in float32 (≤ 255 000 < 2²⁴), costs one matrix product and one conversion,
    and the scale is folded into the profile after bin averaging (the FFT and the bin mean are linear).
    """
    check_image_batch(images)
    if images.shape[1] == 1:
        return images[:, 0].to(dtype), 1.0
    n, _, height, width = images.shape
    if images.dtype == torch.uint8 and not images.requires_grad:
        weights = torch.tensor([_GRAY_PER_MILLE], dtype=torch.float32, device=images.device)
        weighted = torch.matmul(weights, images.reshape(n, 3, height * width).to(torch.float32))
        return weighted.reshape(n, height, width).to(dtype), 0.001
    x = images.to(dtype)
    r, g, b = GRAY_WEIGHTS
    return r * x[:, 0] + g * x[:, 1] + b * x[:, 2], 1.0


def durall_profile_length(height: int, width: int) -> int:
    """Number of entries of the Durall profile of an H × W image: floor(hypot((W−1)/2, (H−1)/2)) − 1."""
    return int(np.floor(np.hypot((width - 1) / 2.0, (height - 1) / 2.0))) - 1


def power_profile_length(height: int, width: int) -> int:
    """Number of entries of the power profile: bins 0 … min(H, W)/2 − 1."""
    return min(height, width) // 2


def profile_length(height: int, width: int, mode: ProfileMode = "durall") -> int:
    """Profile length for an H × W image in ``mode``."""
    _check_mode(mode)
    return durall_profile_length(height, width) if mode == "durall" else power_profile_length(height, width)


def _check_mode(mode: str) -> None:
    if mode not in PROFILE_MODES:
        raise SpectralInputError(f"unknown profile mode {mode!r}; choose one of {', '.join(PROFILE_MODES)}")


@lru_cache(maxsize=32)
def _half_spectrum_bins(height: int, width: int, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Bin bookkeeping for the rfft2 half spectrum of an H × W image.

    Returns (primary, secondary, counts, n_bins): ``primary[k]`` is the profile bin of half-spectrum
    coefficient k at its own full-grid position, ``secondary[k]`` the bin of the conjugate position it also
    stands for (``n_bins`` = a discarded slot when there is none or the bin is dropped), ``counts`` the
    number of full-grid pixels per kept bin.
    """
    half_w = width // 2 + 1
    ky = np.arange(height)[:, None]
    kx = np.arange(half_w)[None, :]
    conj_ky = (-ky) % height
    conj_kx = (-kx) % width
    # A coefficient stands for a second full-grid position when its conjugate column lies outside the half.
    has_conjugate = np.broadcast_to(conj_kx >= half_w, (height, half_w))
    if mode == "durall":
        n_bins = durall_profile_length(height, width)

        def bins_of(fy: np.ndarray, fx: np.ndarray) -> np.ndarray:
            # fftshift moves frequency index k to position (k + n//2) mod n; centre ((n−1)/2) as Durall.
            y = (fy + height // 2) % height
            x = (fx + width // 2) % width
            r = np.floor(np.hypot(x - (width - 1) / 2.0, y - (height - 1) / 2.0)).astype(np.int64)
            # keep radii 1 … r_max − 1 (drop r = 0 and the corner bin r_max) → profile index r − 1
            kept = (r >= 1) & (r <= n_bins)
            return np.where(kept, r - 1, n_bins)

    else:
        n_bins = power_profile_length(height, width)

        def bins_of(fy: np.ndarray, fx: np.ndarray) -> np.ndarray:
            sy = np.where(fy > height // 2, fy - height, fy)
            sx = np.where(fx > width // 2, fx - width, fx)
            r = np.floor(np.hypot(sy, sx)).astype(np.int64)
            return np.where(r < n_bins, r, n_bins)

    primary = np.broadcast_to(bins_of(ky, kx), (height, half_w))
    secondary = np.where(has_conjugate, bins_of(conj_ky, conj_kx), n_bins)
    counts = np.bincount(primary.ravel(), minlength=n_bins + 1) + np.bincount(
        secondary.ravel(), minlength=n_bins + 1
    )
    counts = counts.copy()
    counts[n_bins] = 0
    if np.any(counts[:n_bins] == 0):  # pragma: no cover - cannot happen for integer radii on a grid
        raise SpectralInputError(f"empty radial bin for a {height}×{width} image")
    return primary.ravel().copy(), secondary.ravel().copy(), counts[:n_bins].astype(np.float64), n_bins


@lru_cache(maxsize=64)
def _bins_on_device(height: int, width: int, mode: str, device: torch.device, dtype: torch.dtype):
    primary, secondary, counts, n_bins = _half_spectrum_bins(height, width, mode)
    return (
        torch.from_numpy(primary).to(device),
        torch.from_numpy(secondary).to(device),
        torch.from_numpy(counts).to(device=device, dtype=dtype),
        n_bins,
    )


def _half_spectrum_values(gray: torch.Tensor, mode: str, scale: float) -> torch.Tensor:
    """Per-coefficient quantity on the rfft2 half spectrum of ``gray`` (the image divided by ``scale``).

    durall: ln|F + ε/scale|² (so that 20·ln|F·scale + ε| = 10·(this) + 20·ln scale, applied after the bin
    mean); power: |F|² (times scale² after the bin mean). Flattened to (N, K). The squared magnitude is
    one fused multiply-add, several times faster than a complex ``abs``.
    """
    spectrum = torch.fft.rfft2(gray)
    real, imag = spectrum.real, spectrum.imag
    if mode == "durall":
        # numpy's `fshift += 1e-8` adds to the real part; |conj(F) + ε| = |F + ε| keeps the symmetry.
        real = real + DURALL_EPSILON / scale
        squared = torch.addcmul(real * real, imag, imag)
        values = torch.log(squared) if squared.requires_grad else squared.log_()
    else:
        values = torch.addcmul(real * real, imag, imag)
    return values.reshape(values.shape[0], -1)


def profiles_from_gray(gray: torch.Tensor, mode: ProfileMode = "durall", scale: float = 1.0) -> torch.Tensor:
    """Profiles (N, L) of the N×H×W gray batch ``gray·scale``; differentiable, on the batch's device/dtype."""
    _check_mode(mode)
    if gray.ndim != 3:
        raise SpectralInputError(f"expected gray images shaped N×H×W, got {tuple(gray.shape)}")
    n, height, width = gray.shape
    primary, secondary, counts, n_bins = _bins_on_device(height, width, mode, gray.device, gray.dtype)
    values = _half_spectrum_values(gray, mode, scale)
    sums = values.new_zeros(n, n_bins + 1)
    sums.index_add_(1, primary, values)
    sums.index_add_(1, secondary, values)
    means = sums[:, :n_bins] / counts
    if mode == "durall":
        return 10.0 * means + 20.0 * math.log(scale)
    return means * (scale * scale)


def spectral_profiles(
    images: torch.Tensor,
    mode: ProfileMode = "durall",
    dtype: torch.dtype = torch.float64,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Profiles (N, L) of an N×3×H×W image batch, computed on the batch's device in ``dtype``.

    uint8 images are used on their 0–255 scale, as Durall's code reads them; float images as given.
    The batch is processed ``chunk_size`` images at a time (default: as many as fit in a budget of
    2¹⁷ pixels, e.g. 2 images at 256²), which keeps the working set in cache and bounds memory; the result
    does not depend on the chunking.
    """
    _check_mode(mode)
    check_image_batch(images)
    if dtype not in (torch.float32, torch.float64):
        raise SpectralInputError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if chunk_size is None:
        chunk_size = max(1, CHUNK_PIXELS // (images.shape[-2] * images.shape[-1]))
    chunks = []
    for start in range(0, images.shape[0], chunk_size):
        gray, scale = _scaled_grayscale(images[start : start + chunk_size], dtype)
        chunks.append(profiles_from_gray(gray, mode, scale))
    return chunks[0] if len(chunks) == 1 else torch.cat(chunks)


def durall_profiles(images: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The exact Durall et al. 1-D spectra of a batch (see the module docstring)."""
    return spectral_profiles(images, "durall", dtype)


def power_profiles(images: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Radial mean power spectra of a batch (textbook form, extension)."""
    return spectral_profiles(images, "power", dtype)


def log_magnitude_spectra(images: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Full 2-D Durall spectra S = 20·ln|fftshift(F) + 1e-8|, N×H×W, for spectrum images."""
    gray = to_grayscale(images, dtype)
    spectrum = torch.fft.fftshift(torch.fft.fft2(gray), dim=(-2, -1))
    return 20.0 * torch.log(torch.abs(spectrum + DURALL_EPSILON))


def frequency_axis(height: int, width: int, mode: ProfileMode = "durall") -> np.ndarray:
    """Radius (in frequency-index units) of each profile entry: 1 … L for durall, 0 … L − 1 for power."""
    length = profile_length(height, width, mode)
    start = 1 if mode == "durall" else 0
    return np.arange(start, start + length, dtype=np.float64)


def normalized_frequency(height: int, width: int, mode: ProfileMode = "durall") -> np.ndarray:
    """Profile radii as a fraction of the Nyquist radius min(H, W)/2 (1.0 = Nyquist along an axis)."""
    return frequency_axis(height, width, mode) / (min(height, width) / 2.0)


def resample_profiles(profiles: np.ndarray, source_nyquist: float, target_radii: np.ndarray) -> np.ndarray:
    """Linearly resample profiles given on radii 1 … L (durall) to ``target_radii`` (fractions of Nyquist).

    The spectrum is resampled, never the image (METHODS §4): a profile of an M × M image at entry i sits
    at radius (i + 1) / (M/2) of the Nyquist radius. Target radii outside the source range are clipped to
    its ends.
    """
    profiles = np.atleast_2d(np.asarray(profiles, dtype=np.float64))
    source = np.arange(1, profiles.shape[1] + 1, dtype=np.float64) / source_nyquist
    return np.stack([np.interp(target_radii, source, row) for row in profiles])
