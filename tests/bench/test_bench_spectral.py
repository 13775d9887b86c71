"""Benchmark: batched Durall profiles at 256² against a per-image numpy loop (target ≥ 10× on the CPU).

The numpy baseline is the authors' published per-image recipe (full `fft2`, `fftshift`, 20·ln|·|, and an
azimuthal average by sorting radii and differencing a cumulative sum), one image at a time. Run

    pytest tests/bench/test_bench_spectral.py --benchmark-only

or, for a printed ratio without pytest-benchmark, `python tests/bench/test_bench_spectral.py` (it reports
one intra-op thread and torch's default; on a shared, oversubscribed CPU the single thread is faster,
because every small multi-threaded operation waits for a second core).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from bench.spectral.profiles import durall_profiles

SIZE = 256
COUNT = 64


def _images(device: str = "cpu") -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (COUNT, 3, SIZE, SIZE), generator=generator, dtype=torch.uint8).to(device)


def _azimuthal_average_by_sorting(image: np.ndarray) -> np.ndarray:
    """Durall et al.'s azimuthal average: sort pixels by radius, difference a cumulative sum per bin."""
    y, x = np.indices(image.shape)
    centre = np.array([(x.max() - x.min()) / 2.0, (y.max() - y.min()) / 2.0])
    radius = np.hypot(x - centre[0], y - centre[1])
    order = np.argsort(radius.flat)
    radius_int = radius.flat[order].astype(int)
    values = image.flat[order]
    boundaries = np.where(radius_int[1:] - radius_int[:-1])[0]
    cumulative = np.cumsum(values, dtype=float)
    return (cumulative[boundaries[1:]] - cumulative[boundaries[:-1]]) / (boundaries[1:] - boundaries[:-1])


def numpy_per_image_loop(images: np.ndarray) -> np.ndarray:
    """One image at a time, the authors' way, in float64."""
    profiles = []
    for image in images.astype(np.float64):
        gray = 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]
        spectrum = 20 * np.log(np.abs(np.fft.fftshift(np.fft.fft2(gray)) + 1e-8))
        profiles.append(_azimuthal_average_by_sorting(spectrum))
    return np.stack(profiles)


def test_numpy_loop_matches_the_batched_path():
    images = _images()[:4]
    np.testing.assert_allclose(
        numpy_per_image_loop(images.numpy()), durall_profiles(images).numpy(), rtol=0, atol=1e-8
    )


def test_bench_numpy_per_image_loop(benchmark):
    images = _images().numpy()[:16]  # per image cost; the ratio below divides by the count
    benchmark.extra_info["images"] = 16
    benchmark.pedantic(numpy_per_image_loop, args=(images,), rounds=3, iterations=1)


@pytest.fixture(params=[1, None], ids=["1-thread", "default-threads"])
def torch_threads(request):
    """Run with one intra-op thread, then with torch's default (restored afterwards)."""
    previous = torch.get_num_threads()
    if request.param is not None:
        torch.set_num_threads(request.param)
    yield torch.get_num_threads()
    torch.set_num_threads(previous)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_bench_batched_torch_cpu(benchmark, dtype, torch_threads):
    images = _images()
    benchmark.extra_info["images"] = COUNT
    benchmark.extra_info["threads"] = torch_threads
    benchmark.pedantic(durall_profiles, args=(images, dtype), rounds=5, iterations=1, warmup_rounds=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_bench_batched_torch_cuda(benchmark):
    images = _images("cuda")

    def run():
        out = durall_profiles(images)
        torch.cuda.synchronize()
        return out

    benchmark.extra_info["images"] = COUNT
    benchmark.pedantic(run, rounds=10, iterations=1, warmup_rounds=2)


def per_image_seconds(function, images, count: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function(images)
        best = min(best, time.perf_counter() - start)
    return best / count


def main() -> None:
    for threads in sorted({1, torch.get_num_threads()}):
        torch.set_num_threads(threads)
        report()


def report() -> None:
    """Print ms/image and the speed-up over the numpy loop at the current torch thread count."""
    images = _images()
    baseline = per_image_seconds(numpy_per_image_loop, images.numpy()[:16], 16)
    print(f"{SIZE}² images, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"numpy per-image loop : {1e3 * baseline:7.2f} ms/image")
    for dtype in (torch.float64, torch.float32):
        durall_profiles(images[:4], dtype)
        seconds = per_image_seconds(lambda x, d=dtype: durall_profiles(x, d), images, COUNT)
        name = str(dtype).removeprefix("torch.")
        print(f"batched torch {name:<7}: {1e3 * seconds:7.2f} ms/image  ({baseline / seconds:5.1f}× faster)")
    if torch.cuda.is_available():
        gpu = images.cuda()
        durall_profiles(gpu)
        torch.cuda.synchronize()

        def run(x):
            durall_profiles(x)
            torch.cuda.synchronize()

        seconds = per_image_seconds(run, gpu, COUNT)
        print(f"batched torch cuda   : {1e3 * seconds:7.3f} ms/image  ({baseline / seconds:5.1f}× faster)")


if __name__ == "__main__":
    main()
