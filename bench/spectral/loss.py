"""A differentiable spectral loss for generator training (Durall et al. 2020, METHODS §4).

L_spec = BCE(normalized generated profile, mean normalized real profile), averaged over the generated
batch, where a profile is the Durall 1-D spectrum and "normalized" is per-image min–max scaling to [0, 1].
Add it to the generator's loss as λ·L_spec. Unlike the authors' code, which detached the profile
computation, every step here (grayscale, FFT, log-magnitude, azimuthal mean, min–max) carries gradients
back to the generated pixels. Min–max normalization of a log spectrum removes any global intensity scale,
so generated images may be in [−1, 1], [0, 1] or [0, 255] independently of the real ones.
"""

from __future__ import annotations

import torch

from bench.spectral.profiles import SpectralInputError, check_image_batch, profiles_from_gray, to_grayscale

LOG_CLAMP = -100.0


def normalized_durall_profiles(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Min–max normalized Durall profiles (N, L) of float images, differentiable."""
    check_image_batch(images)
    profiles = profiles_from_gray(to_grayscale(images, dtype), "durall")
    low = profiles.amin(dim=1, keepdim=True)
    high = profiles.amax(dim=1, keepdim=True)
    return (profiles - low) / (high - low).clamp_min(torch.finfo(dtype).tiny)


def spectral_bce(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy with logs clamped at −100 (``torch.nn.BCELoss``'s rule), differentiable.

    A min–max-normalized profile holds an exact 0 and 1; their logs are the constant −100 with zero
    gradient (a plain clamp after the log would give 0·∞ = NaN gradients there).
    """
    return -(target * _clamped_log(prediction) + (1.0 - target) * _clamped_log(1.0 - prediction)).mean()


def _clamped_log(values: torch.Tensor) -> torch.Tensor:
    positive = values > 0
    safe = torch.where(positive, values, torch.ones_like(values))
    return torch.where(positive, torch.log(safe), torch.full_like(values, LOG_CLAMP)).clamp_min(LOG_CLAMP)


class SpectralLoss(torch.nn.Module):
    """λ-free spectral loss against a fixed target: the mean normalized Durall profile of real images."""

    def __init__(self, target_profile: torch.Tensor, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        target = torch.as_tensor(target_profile).detach().to(dtype).reshape(-1)
        if target.numel() < 2 or torch.any(target < 0) or torch.any(target > 1):
            raise SpectralInputError("the target must be a normalized profile with values in [0, 1]")
        self.register_buffer("target", target)
        self.dtype = dtype

    @classmethod
    def from_real_images(
        cls, real_images: torch.Tensor, dtype: torch.dtype = torch.float32, batch_size: int = 64
    ) -> SpectralLoss:
        """Target = mean over ``real_images`` (N×3×H×W, any range) of their normalized profiles."""
        check_image_batch(real_images)
        with torch.no_grad():
            chunks = [
                normalized_durall_profiles(real_images[i : i + batch_size].to(dtype), dtype)
                for i in range(0, real_images.shape[0], batch_size)
            ]
        return cls(torch.cat(chunks).mean(dim=0), dtype)

    def forward(self, generated: torch.Tensor) -> torch.Tensor:
        """Loss of a generated float batch N×3×H×W (same size as the real images); a scalar tensor."""
        if not torch.is_floating_point(generated):
            raise SpectralInputError("the spectral loss needs floating-point images to differentiate")
        profiles = normalized_durall_profiles(generated.to(self.dtype), self.dtype)
        if profiles.shape[1] != self.target.numel():
            raise SpectralInputError(
                f"generated images give profiles of length {profiles.shape[1]} but the target has "
                f"{self.target.numel()}: train at the resolution of the real images"
            )
        return spectral_bce(profiles, self.target.to(profiles.device).expand_as(profiles))
