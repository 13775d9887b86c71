"""CPU findings behind docs/performance.md: bootstrap threads, micro-batches, face detection passes.

Run: ``pytest tests/bench/test_bench_cpu.py --benchmark-only -s`` (``tox -e bench`` sets
THP_MEM_ALLOC_ENABLE=1 as ``fdbench`` does). Each test prints what it measured.
"""

from __future__ import annotations

import resource
import time

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from bench.metrics.frechet import frechet_distance_resampled
from bench.parallel import map_small_linalg

# ------------------------------------------------------------------------------ bootstrap replicates


@pytest.fixture(scope="module")
def replicate_task():
    """84 resampled FDs like the demo's bootstrap: 7 pairs of 500 × 1280 features, 12 draws."""
    rng = np.random.default_rng(0)
    d = 1280
    decay = np.exp(-np.arange(d) / 200)
    pairs = [(rng.standard_normal((500, d)) * decay, rng.standard_normal((500, d)) * decay) for _ in range(7)]
    draws = [rng.integers(0, 500, 500) for _ in range(12)]

    def replicate(rows: np.ndarray) -> list[float]:
        return [frechet_distance_resampled(a, rows, b, rows).value for a, b in pairs]

    return replicate, draws


@pytest.mark.benchmark(group="bootstrap-84-fds")
def test_bench_bootstrap_fdbench_threads(benchmark, replicate_task) -> None:
    replicate, draws = replicate_task
    benchmark.pedantic(map_small_linalg, args=(replicate, draws), rounds=3, iterations=1)


@pytest.mark.benchmark(group="bootstrap-84-fds")
def test_bench_bootstrap_serial_default_blas(benchmark, replicate_task) -> None:
    replicate, draws = replicate_task
    benchmark.pedantic(lambda: [replicate(rows) for rows in draws], rounds=3, iterations=1)


@pytest.mark.benchmark(group="bootstrap-84-fds")
def test_bench_bootstrap_serial_one_blas_thread(benchmark, replicate_task) -> None:
    replicate, draws = replicate_task

    def serial() -> list[list[float]]:
        with threadpool_limits(limits=1, user_api="blas"):
            return [replicate(rows) for rows in draws]

    benchmark.pedantic(serial, rounds=3, iterations=1)


# ---------------------------------------------------------------------------------- CPU micro-batches


def test_bench_matmul_peak(benchmark) -> None:
    """float32 matrix-product rate of this CPU (the bound quoted for AugNet's convolutions)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    benchmark.pedantic(torch.mm, args=(a, b), rounds=5, iterations=1)
    print(f"\nfloat32 2048² torch.mm: {2 * 2048**3 / benchmark.stats.stats.median / 1e9:.0f} GFLOP/s")


def test_bench_augnet_sliced_against_one_batch(benchmark) -> None:
    """AugNet on 32 dcgan faces per call, sliced (the default) and as one batch: images/s, kernel time
    and page faults per call. Not a pytest-benchmark group: the two settings share one process."""
    import feature_spaces as fs
    from bench.sources.generator import DCGANFacesSource

    _, images = next(DCGANFacesSource(32, seed=0).iter_batches(32))
    extractor = fs.get("augnet-r50").load("cpu")
    budget = extractor.micro_batches.budget
    extractor(images[:4])
    report = []
    try:
        for label, setting in (("sliced", budget), ("one batch", 10**15)):
            extractor.micro_batches.budget = setting
            extractor(images)  # warm the allocator for this setting
            before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            for _ in range(2):
                extractor(images)
            seconds = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_SELF)
            kernel, faults = (after.ru_stime - before.ru_stime) / 2, (after.ru_minflt - before.ru_minflt) // 2
            report.append(
                f"{label}: {64 / seconds:.2f} images/s, kernel {kernel:.1f} s and {faults} page faults "
                "per 32 images"
            )
    finally:
        extractor.micro_batches.budget = budget
    benchmark.pedantic(extractor, args=(images,), rounds=1, iterations=1)
    print("\nAugNet, batch 32: " + "; ".join(report))


# ------------------------------------------------------------------------------ face detection passes


def test_bench_face_detection_passes(benchmark, shared_data_or_none) -> None:
    """Faces found and ms per image: detection at the image's own scale then upsampled once (the spaces'
    setting) against a single upsampled pass, on 500 dcgan faces and on real photos."""
    import feature_spaces as fs
    from bench.sources.generator import DCGANFacesSource
    from feature_spaces.faces import working_images

    space = fs.get("dlib-face-id")
    aligner = space.load("cpu").aligner
    sets = {"dcgan-faces (500)": []}
    for _, images in DCGANFacesSource(500, seed=0).iter_batches(100):
        sets["dcgan-faces (500)"] += working_images(images, space.spec)
    if shared_data_or_none is not None:
        from PIL import Image

        photos = sorted((shared_data_or_none / "faces").glob("*/*"))[::4]
        arrays = [np.asarray(Image.open(p).convert("RGB")) for p in photos]
        batches = [torch.from_numpy(a).permute(2, 0, 1)[None] for a in arrays]
        sets[f"real photos ({len(photos)})"] = [working_images(b, space.spec)[0] for b in batches]
    lines = []
    for name, images in sets.items():
        start = time.perf_counter()
        both = sum(aligner._detect(image) is not None for image in images)
        both_ms = (time.perf_counter() - start) / len(images) * 1000
        start = time.perf_counter()
        upsampled = sum(len(aligner.detector(image, 1)) > 0 for image in images)
        upsampled_ms = (time.perf_counter() - start) / len(images) * 1000
        lines.append(
            f"{name}: own scale then upsampled {both} found ({both_ms:.1f} ms/image); "
            f"upsampled only {upsampled} found ({upsampled_ms:.1f} ms/image)"
        )
    benchmark.pedantic(aligner._detect, args=(sets["dcgan-faces (500)"][0],), rounds=3, iterations=1)
    print("\n" + "\n".join(lines))


@pytest.fixture()
def shared_data_or_none():
    from tests.conftest import shared_data_dir

    root = shared_data_dir()
    return root if (root / "faces").is_dir() else None
