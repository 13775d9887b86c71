"""CPU throughput of every feature space at batch 32 (images/s), for docs/performance.md.

Run: ``pytest tests/bench/test_bench_spaces.py --benchmark-only`` (add ``-k NAME`` for one space).
Input: 32 real face photographs resized to 256² (random uint8 pixels when the test data is absent);
each space resizes them itself, as it would real data.
Spaces whose real weights are not on this machine run with randomly initialised weights of the same
architecture (throughput does not depend on the weight values). Each test prints and records
``images_per_s`` in the benchmark's extra_info.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import feature_spaces as fs

BATCH = 32
SIDE = 256


def random_state_file(name: str, folder: Path) -> Path:
    """A randomly initialised weight file in the layout the space's loader expects."""
    filename = fs.get(name).spec.weights[0].filename
    path = folder / filename
    if name.startswith("inception"):
        from feature_spaces.inception import FIDInceptionV3

        state = FIDInceptionV3().state_dict()
    elif name.startswith("dinov2"):
        from feature_spaces.dinov2 import build_dinov2

        layout = build_dinov2(name.split("-")[1], img_size=518).state_dict()  # built without init
        state = {k: torch.randn_like(v) * 0.02 for k, v in layout.items()}
    elif name == "clip-vit-b32":
        import open_clip

        state = open_clip.create_model("ViT-B-32", pretrained=None, force_quick_gelu=True).state_dict()
    elif name in ("swav-r50", "swav-ffhq"):
        import torchvision

        state = {f"module.{k}": v for k, v in torchvision.models.resnet50().state_dict().items()}
    elif name == "fairface-r34":
        import torchvision

        state = torchvision.models.resnet34(num_classes=18).state_dict()
    elif name == "arcface-r34":
        from feature_spaces.arcface import IResNet

        state = IResNet().state_dict()
    else:
        raise KeyError(name)
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """32 real faces (UTKFace, resized to 256²) when the test data is present, else random pixels;
    face detectors take the no-face shortcut on random pixels, so real faces give honest numbers."""
    import numpy as np
    from PIL import Image

    from tests.conftest import shared_data_dir

    files = sorted((shared_data_dir() / "faces" / "utkface200_crop_part1").glob("*.jpg"))[:BATCH]
    if len(files) == BATCH:
        arrays = [np.array(Image.open(f).convert("RGB").resize((SIDE, SIDE), Image.BICUBIC)) for f in files]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (BATCH, 3, SIDE, SIDE), generator=generator, dtype=torch.uint8)


def extractor_for(name: str, folder: Path) -> fs.Extractor:
    space = fs.get(name)
    if fs.available()[name].ok:
        return space.load("cpu")
    path = random_state_file(name, folder)
    spec = dataclasses.replace(
        space.spec,
        name=f"bench-{name}",
        weights=tuple(dataclasses.replace(w, sha256=None) for w in space.spec.weights),
    )
    return fs.register(spec, space.loader, replace=True).load("cpu", weights=path)


@pytest.mark.slow
@pytest.mark.parametrize("name", fs.names())
def test_bench_space_cpu_batch32(benchmark, name: str, images: torch.Tensor, tmp_path: Path) -> None:
    extractor = extractor_for(name, tmp_path)
    extractor(images[:2])  # warm-up: lazy inits, allocator, dlib worker processes

    def fresh_faces() -> tuple[tuple[torch.Tensor], dict]:
        aligner = getattr(extractor, "aligner", None)
        if aligner is not None:
            aligner.forget()  # time face detection every round, not the remembered landmarks
        return (images,), {}

    features = benchmark.pedantic(extractor, setup=fresh_faces, rounds=2, iterations=1)
    assert features.shape == (BATCH, fs.get(name).spec.dim)
    rate = BATCH / benchmark.stats.stats.mean
    benchmark.extra_info["images_per_s"] = rate
    benchmark.extra_info["threads"] = torch.get_num_threads()
    threads = torch.get_num_threads()
    print(f"\n{name}: {rate:.1f} images/s (CPU, batch {BATCH}, {SIDE}² input, {threads} threads)")
