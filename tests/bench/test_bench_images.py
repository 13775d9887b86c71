"""Benchmarks: region blur and BiSeNet face parsing at 512² on the CPU.

Run with `pytest tests/bench/test_bench_images.py --benchmark-only`. Each benchmark stores images/s in
`extra_info`. The region blur is a separable Gaussian (111 taps at 512², σ = 100, mirror padding) done as
banded matrix products; `test_region_blur_direct_conv` times the same filter as two direct 1-D
convolutions (`F.conv2d`) for the ratio. Target on a 2-core CPU: region blur ≥ 50 images/s.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.perturbations import RegionBlur, gaussian_weights, region_blur_geometry

BATCH = 16
SIDE = 512


@pytest.fixture(scope="module")
def images_512():
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (BATCH, 3, SIDE, SIDE), dtype=torch.uint8, generator=generator)


@pytest.fixture(scope="module")
def masks_512():
    masks = torch.zeros(BATCH, SIDE, SIDE, dtype=torch.bool)
    masks[:, 128:384, 96:416] = True
    return masks


def test_region_blur_512(benchmark, images_512, masks_512):
    blur = RegionBlur()
    blur(images_512[:1], masks_512[:1])  # build the banded matrices once
    benchmark.pedantic(blur, args=(images_512, masks_512), rounds=3, iterations=1, warmup_rounds=1)
    rate = BATCH / benchmark.stats.stats.median
    benchmark.extra_info["images_per_second"] = rate
    print(f"\nregion blur 512² (banded separable matmul): {rate:.1f} images/s")


def test_region_blur_direct_conv(benchmark, images_512):
    kernel, sigma = region_blur_geometry(SIDE, SIDE)
    taps = gaussian_weights(sigma, kernel // 2).float()
    radius = kernel // 2

    def direct(images):
        x = images.float().reshape(-1, 1, SIDE, SIDE)
        x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), taps.view(1, 1, 1, -1))
        x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), taps.view(1, 1, -1, 1))
        return x.round().clamp(0, 255).to(torch.uint8)

    benchmark.pedantic(direct, args=(images_512[:4],), rounds=2, iterations=1, warmup_rounds=0)
    rate = 4 / benchmark.stats.stats.median
    benchmark.extra_info["images_per_second"] = rate
    print(f"\nregion blur 512² (direct separable conv2d): {rate:.1f} images/s")


def test_bisenet_512_cpu(benchmark, images_512):
    from bench.face_parser import FaceParser

    try:
        parser = FaceParser(device="cpu", cache=False)
    except FileNotFoundError as error:
        pytest.skip(str(error))
    batch = images_512[:4]
    benchmark.pedantic(parser.parse_uncached, args=(batch,), rounds=2, iterations=1, warmup_rounds=1)
    rate = batch.shape[0] / benchmark.stats.stats.median
    benchmark.extra_info["images_per_second"] = rate
    print(f"\nBiSeNet label maps 512² on CPU: {rate:.2f} images/s (computed once per image, then cached)")
