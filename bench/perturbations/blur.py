"""Gaussian blurs: the TTUR whole-image blur and the F?D region blur (docs METHODS §3).

Both are separable Gaussian filters with mirror ("reflect", edge pixel not repeated: d c b | a b c d |
c b a) padding, computed as two banded matrix products per channel on the batch's device: the 1-D filter
and its padding are folded into an n×n matrix once per (size, σ, radius), and each output block only
multiplies the input band it depends on. For the region blur's 111-tap kernel this beats direct
convolution several times on a CPU while giving the same numbers (it is the same linear map).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, ClassVar

import torch

from bench.masks import REGIONS
from bench.perturbations.base import Perturbation, image_generator, quantize

REFERENCE_SIDE = 512
REFERENCE_KERNEL = 111
REFERENCE_SIGMA = 100.0
_BLOCK = 128


def gaussian_weights(sigma: float, radius: int) -> torch.Tensor:
    """Normalised float64 Gaussian taps exp(−j²/2σ²), j = −radius … radius (a delta when σ = 0)."""
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    if sigma <= 0:
        return (offsets == 0).to(torch.float64)
    weights = torch.exp(-(offsets**2) / (2.0 * sigma**2))
    return weights / weights.sum()


def mirror_index(position: int, size: int) -> int:
    """Index of `position` after mirror padding (period 2·(size − 1), as scipy.ndimage mode='mirror')."""
    if size == 1:
        return 0
    period = 2 * (size - 1)
    position = abs(position) % period
    return period - position if position >= size else position


@lru_cache(maxsize=64)
def _blur_matrix_cpu(size: int, sigma: float, radius: int) -> torch.Tensor:
    weights = gaussian_weights(sigma, radius).tolist()
    matrix = torch.zeros(size, size, dtype=torch.float64)
    for row in range(size):
        for tap, weight in enumerate(weights):
            matrix[row, mirror_index(row + tap - radius, size)] += weight
    return matrix


def blur_matrix(size: int, sigma: float, radius: int) -> torch.Tensor:
    """The n×n float64 matrix of a 1-D mirror-padded Gaussian filter (rows: outputs)."""
    return _blur_matrix_cpu(size, float(sigma), int(radius)).clone()


@lru_cache(maxsize=256)
def _blur_blocks(
    size: int, sigma: float, radius: int, start: int, stop: int, device: str, dtype: torch.dtype
):
    """Row blocks of the blur matrix for outputs start…stop−1, each with the input band it reads."""
    matrix = _blur_matrix_cpu(size, sigma, radius)
    blocks = []
    for first_row in range(start, stop, _BLOCK):
        last_row = min(first_row + _BLOCK, stop)
        used = (matrix[first_row:last_row] != 0).any(dim=0).nonzero().flatten()
        first, last = int(used.min()), int(used.max()) + 1
        block = matrix[first_row:last_row, first:last].to(device=device, dtype=dtype).contiguous()
        blocks.append((first_row - start, last_row - start, first, last, block))
    return blocks


def separable_blur(
    images: torch.Tensor,
    sigma_y: float,
    sigma_x: float,
    radius_y: int,
    radius_x: int,
    rows: tuple[int, int] | None = None,
    cols: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Blur a float N×C×H×W tensor with a mirror-padded separable Gaussian (same dtype and device).

    With `rows=(r0, r1)` and `cols=(c0, c1)` only that output box is computed and returned
    (N×C×(r1−r0)×(c1−c0)); it equals the same box of the full blur.
    """
    height, width = images.shape[-2:]
    row_start, row_stop = rows if rows is not None else (0, height)
    col_start, col_stop = cols if cols is not None else (0, width)
    device, dtype = str(images.device), images.dtype
    vertical = _blur_blocks(height, float(sigma_y), int(radius_y), row_start, row_stop, device, dtype)
    horizontal = _blur_blocks(width, float(sigma_x), int(radius_x), col_start, col_stop, device, dtype)
    # Rows of the horizontally blurred image that the vertical blocks read.
    band_start = min(block[2] for block in vertical)
    band_stop = max(block[3] for block in vertical)
    source = images[..., band_start:band_stop, :]
    across = images.new_empty((*images.shape[:-2], band_stop - band_start, col_stop - col_start))
    for out_first, out_last, first, last, block in horizontal:
        across[..., out_first:out_last] = source[..., first:last] @ block.T
    result = images.new_empty((*images.shape[:-2], row_stop - row_start, col_stop - col_start))
    for out_first, out_last, first, last, block in vertical:
        result[..., out_first:out_last, :] = block @ across[..., first - band_start : last - band_start, :]
    return result


def region_blur_geometry(height: int, width: int, sigma_512: float = REFERENCE_SIGMA) -> tuple[int, float]:
    """Kernel size and σ for the region blur at this image size.

    Both scale with the shorter image side s: σ = σ₅₁₂ · s / 512, and the kernel size is the odd integer
    nearest to 111 · s / 512 (2·⌊(111·s/512 − 1)/2 + ½⌋ + 1): 111 at 512, 55 at 256, 13 at 64, 223 at 1024.
    Using the shorter side keeps the radius below both sides, so mirror padding is a single reflection.
    """
    side = min(height, width)
    scale = side / REFERENCE_SIDE
    kernel = 2 * math.floor((REFERENCE_KERNEL * scale - 1) / 2 + 0.5) + 1
    return max(kernel, 1), sigma_512 * scale


class GaussianBlur(Perturbation):
    """Whole-image Gaussian blur of standard deviation `sigma` px (TTUR levels 0, 1, 2, 4).

    The kernel radius is int(truncate·σ + 0.5) as in scipy.ndimage.gaussian_filter (truncate 4).
    """

    name = "gaussian_blur"
    defaults: ClassVar[dict[str, Any]] = {"sigma": 1.0, "truncate": 4.0}

    def validate(self) -> None:
        if self.params["sigma"] < 0 or self.params["truncate"] <= 0:
            raise ValueError(f"gaussian_blur needs sigma ≥ 0 and truncate > 0, got {self.params}")

    def is_identity(self) -> bool:
        return self.params["sigma"] == 0

    def apply(self, images, masks, offset):
        sigma = float(self.params["sigma"])
        radius = int(self.params["truncate"] * sigma + 0.5)
        return quantize(separable_blur(images.float(), sigma, sigma, radius, radius))


class RegionBlur(Perturbation):
    """Blur only inside a region mask: x_r = M ⊙ blur(x) + (1 − M) ⊙ x (docs METHODS §3).

    `sigma` is given at 512² (default 100, kernel 111) and scaled with the image (`region_blur_geometry`).
    `fraction` < 1 blurs only a seeded subset of images (image i when u(seed, i) < fraction), for the
    fraction sweep. `region` is a label for the spec; the pixels come from the masks passed in (no masks:
    the whole image, i.e. region "All"). Pixels outside the mask are returned bit-identical.
    """

    name = "region_blur"
    defaults: ClassVar[dict[str, Any]] = {
        "sigma": REFERENCE_SIGMA,
        "fraction": 1.0,
        "seed": 0,
        "region": "All",
    }
    uses_masks = True

    def validate(self) -> None:
        if self.params["sigma"] < 0:
            raise ValueError(f"region_blur sigma must be ≥ 0, got {self.params['sigma']}")
        if not 0.0 <= self.params["fraction"] <= 1.0:
            raise ValueError(f"region_blur fraction must be in [0, 1], got {self.params['fraction']}")
        if self.params["region"] not in REGIONS:
            raise ValueError(
                f"region_blur region must be one of {list(REGIONS)}, got {self.params['region']!r}"
            )

    def is_identity(self) -> bool:
        return self.params["sigma"] == 0 or self.params["fraction"] == 0

    def selected(self, count: int, offset: int) -> torch.Tensor:
        """Which images of a batch the fraction sweep blurs (bool, CPU)."""
        fraction = float(self.params["fraction"])
        if fraction >= 1.0:
            return torch.ones(count, dtype=torch.bool)
        draws = [
            torch.rand(1, generator=image_generator(self.name, self.params["seed"], offset + i)).item()
            for i in range(count)
        ]
        return torch.tensor(draws) < fraction

    def apply(self, images, masks, offset):
        height, width = images.shape[-2:]
        kernel, sigma = region_blur_geometry(height, width, float(self.params["sigma"]))
        radius = kernel // 2
        chosen = self.selected(images.shape[0], offset).to(images.device)
        if masks is None and bool(chosen.all()):
            whole = separable_blur(images.float(), sigma, sigma, radius, radius)
            return whole.round_().clamp_(0, 255).byte()
        where = chosen[:, None, None].expand(-1, height, width)
        if masks is not None:
            where = where & masks
        rows_any, cols_any = where.any(dim=(0, 2)), where.any(dim=(0, 1))
        if not bool(rows_any.any()):
            return images.clone()
        # Blur only the bounding box of the pixels that change (all images of the batch together).
        row_index, col_index = rows_any.nonzero().flatten(), cols_any.nonzero().flatten()
        rows = (int(row_index[0]), int(row_index[-1]) + 1)
        cols = (int(col_index[0]), int(col_index[-1]) + 1)
        box = separable_blur(images.float(), sigma, sigma, radius, radius, rows=rows, cols=cols)
        result = images.clone()
        window = result[..., rows[0] : rows[1], cols[0] : cols[1]]
        inside = where[:, None, rows[0] : rows[1], cols[0] : cols[1]]
        blurred = box.round_().clamp_(0, 255).byte()  # round half to even, as `quantize`
        result[..., rows[0] : rows[1], cols[0] : cols[1]] = torch.where(inside, blurred, window)
        return result


def region_blur_sigma_sweep(
    sigmas: tuple[float, ...] = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100), region: str = "All"
) -> list[RegionBlur]:
    """Region blurs at increasing σ (given at 512²), all images blurred."""
    return [RegionBlur(sigma=float(sigma), region=region) for sigma in sigmas]


def region_blur_fraction_sweep(
    fractions: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    region: str = "All",
    seed: int = 0,
) -> list[RegionBlur]:
    """Region blurs at σ = 100 (at 512²) applied to a growing seeded fraction of the images."""
    return [RegionBlur(fraction=float(p), region=region, seed=seed) for p in fractions]
