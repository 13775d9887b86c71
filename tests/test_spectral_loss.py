"""The differentiable spectral loss: correct values, real gradients, and gradient steps that lower it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.spectral.distances import minmax_normalize
from bench.spectral.loss import SpectralLoss, normalized_durall_profiles, spectral_bce
from bench.spectral.profiles import SpectralInputError
from tests.test_spectral_profiles import durall_profile_oracle, smooth_images

SIZE = 32


def checkerboard_artifact(images: torch.Tensor, strength: float = 0.15) -> torch.Tensor:
    """Float images with the up-convolution checkerboard: a 2×2-periodic gain on the content."""
    gain = 1.0 + strength * torch.tensor([[1.0, -1.0], [-0.6, 0.4]]).repeat(SIZE // 2, SIZE // 2)
    return images.double() * gain


def test_normalized_profiles_match_the_numpy_oracle():
    images = smooth_images(3, SIZE, seed=1).double()
    expected = np.stack([minmax_normalize(durall_profile_oracle(image)) for image in images.numpy()])
    actual = normalized_durall_profiles(images, torch.float64).numpy()
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-12)


def test_loss_value_is_torch_bce_against_the_mean_real_profile():
    real = smooth_images(6, SIZE, seed=2).double()
    generated = smooth_images(4, SIZE, seed=3).double()
    loss = SpectralLoss.from_real_images(real, torch.float64)
    target = torch.from_numpy(
        np.stack([minmax_normalize(durall_profile_oracle(image)) for image in real.numpy()]).mean(0)
    )
    prediction = torch.from_numpy(
        np.stack([minmax_normalize(durall_profile_oracle(image)) for image in generated.numpy()])
    )
    expected = torch.nn.functional.binary_cross_entropy(prediction, target.expand_as(prediction))
    assert loss(generated).item() == pytest.approx(expected.item(), rel=1e-10)
    assert spectral_bce(prediction, target.expand_as(prediction)).item() == pytest.approx(
        expected.item(), rel=1e-12
    )


def test_loss_ignores_the_intensity_scale_of_generated_images():
    real = smooth_images(6, SIZE, seed=2).double()
    generated = smooth_images(4, SIZE, seed=3).double()
    loss = SpectralLoss.from_real_images(real, torch.float64)
    as_unit_range = generated / 127.5 - 1.0  # what a tanh generator outputs
    # the −1 shift only changes the DC coefficient, which sits in the dropped r = 0 bin
    assert loss(as_unit_range).item() == pytest.approx(loss(generated).item(), rel=1e-6)


def test_gradients_reach_the_generated_pixels():
    loss = SpectralLoss.from_real_images(smooth_images(8, SIZE, seed=4).float())
    generated = checkerboard_artifact(smooth_images(2, SIZE, seed=5)).float().requires_grad_(True)
    loss(generated).backward()
    assert generated.grad is not None
    assert torch.isfinite(generated.grad).all()
    assert float(generated.grad.abs().sum()) > 0


def test_gradient_steps_lower_the_loss_on_a_planted_checkerboard():
    loss = SpectralLoss.from_real_images(smooth_images(16, SIZE, seed=6).float())
    start = checkerboard_artifact(smooth_images(4, SIZE, seed=7)).float()
    clean_loss = loss(smooth_images(4, SIZE, seed=7).float()).item()
    images = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([images], lr=0.5)
    values = []
    for _ in range(8):
        optimizer.zero_grad()
        value = loss(images)
        value.backward()
        optimizer.step()
        values.append(value.item())
    final = loss(images.detach()).item()
    assert values[0] > clean_loss  # the planted artifact does raise the loss
    assert final < values[0] - 0.25 * (values[0] - clean_loss)
    assert final < values[0]


def test_loss_input_errors():
    loss = SpectralLoss.from_real_images(smooth_images(4, SIZE, seed=8).float())
    with pytest.raises(SpectralInputError, match="floating-point"):
        loss(smooth_images(2, SIZE, seed=9))
    with pytest.raises(SpectralInputError, match="resolution"):
        loss(smooth_images(2, 64, seed=9).float())
    with pytest.raises(SpectralInputError, match="normalized profile"):
        SpectralLoss(torch.tensor([0.0, 2.0]))
