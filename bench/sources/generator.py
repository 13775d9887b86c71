"""Generator sources: images from a callable on a seeded latent stream, and the built-in DCGAN faces.

The latent stream is split into fixed chunks of `CHUNK` vectors; chunk k is drawn from a CPU
`torch.Generator` seeded with a hash of (seed, k). Image i therefore depends only on (seed, i), and the
generator is always run on whole chunks, so every count and batch size yields identical bytes.
Float outputs in [-1, 1] become uint8 by `round((x + 1) · 127.5)` (round half to even) clamped to 0–255.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.device import resolve_device
from bench.hashing import sha256_file
from bench.sources.base import ImageSource

CHUNK = 64

DCGAN_WEIGHTS_FILE = "weights.tar"
DCGAN_WEIGHTS_SHA256 = "0c3b90b138cfc4e8a73310b9fd5ce2a8f1f3a542a037de277412307fcd28771f"
DCGAN_WEIGHTS_SIZE = 14_322_251


def chunk_seed(seed: int, chunk: int) -> int:
    """A 63-bit seed for latent chunk `chunk` of stream `seed` (independent across chunks)."""
    digest = hashlib.sha256(f"fdbench-latents:{seed}:{chunk}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def latent_chunk(seed: int, chunk: int, latent_shape: tuple[int, ...]) -> torch.Tensor:
    """The `chunk`-th block of `CHUNK` standard-normal latents of stream `seed` (float32, CPU)."""
    generator = torch.Generator(device="cpu").manual_seed(chunk_seed(seed, chunk))
    return torch.randn((CHUNK, *latent_shape), generator=generator, dtype=torch.float32)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Map generator output in [-1, 1] to uint8: round((x + 1) · 127.5), clamped to 0–255."""
    if images.dtype == torch.uint8:
        return images
    return ((images.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


class GeneratorSource(ImageSource):
    """`count` images from `generate(latents) -> N×3×H×W` on a seeded latent stream.

    `generate` receives float32 latents of shape (CHUNK, *latent_shape) on `device` and returns either
    uint8 images or floats in [-1, 1]. `identity` (e.g. the weights' sha256) enters the manifest.
    """

    def __init__(
        self,
        generate: Callable[[torch.Tensor], torch.Tensor],
        latent_shape: tuple[int, ...],
        count: int,
        seed: int = 0,
        identity: dict | None = None,
        device: str | torch.device | None = "cpu",
    ) -> None:
        super().__init__()
        if count < 0:
            raise ValueError(f"count must be non-negative, got {count}")
        self.generate = generate
        self.latent_shape = tuple(latent_shape)
        self.count = int(count)
        self.seed = int(seed)
        self.identity = identity or {"callable": getattr(generate, "__qualname__", repr(generate))}
        self.device = resolve_device(device)

    def ids(self) -> list[str]:
        return [f"{index:06d}" for index in range(self.count)]

    def __len__(self) -> int:
        return self.count

    @torch.no_grad()
    def generate_chunk(self, chunk: int) -> torch.Tensor:
        """Images CHUNK·chunk … CHUNK·(chunk+1) − 1 of the stream as uint8 on the CPU."""
        latents = latent_chunk(self.seed, chunk, self.latent_shape).to(self.device)
        return to_uint8(self.generate(latents)).cpu()

    def load(self, index: int) -> np.ndarray:
        chunk = self.generate_chunk(index // CHUNK)
        return chunk[index % CHUNK].permute(1, 2, 0).contiguous().numpy()

    def iter_images(self) -> Iterator[tuple[str, np.ndarray]]:
        for chunk_index in range((self.count + CHUNK - 1) // CHUNK):
            images = self.generate_chunk(chunk_index).permute(0, 2, 3, 1).contiguous().numpy()
            for row in range(min(CHUNK, self.count - chunk_index * CHUNK)):
                yield f"{chunk_index * CHUNK + row:06d}", images[row]

    def iter_batches(self, batch_size: int) -> Iterator[tuple[list[str], torch.Tensor]]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        ids: list[str] = []
        parts: list[torch.Tensor] = []
        held = 0
        for chunk_index in range((self.count + CHUNK - 1) // CHUNK):
            start = chunk_index * CHUNK
            images = self.generate_chunk(chunk_index)[: min(CHUNK, self.count - start)]
            offset = 0
            while offset < len(images):
                take = min(batch_size - held, len(images) - offset)
                parts.append(images[offset : offset + take])
                ids.extend(f"{start + offset + row:06d}" for row in range(take))
                held += take
                offset += take
                if held == batch_size:
                    yield ids, torch.cat(parts).contiguous()
                    ids, parts, held = [], [], 0
        if held:
            yield ids, torch.cat(parts).contiguous()

    def manifest(self) -> dict:
        return {
            "kind": "generator",
            "identity": self.identity,
            "latent_shape": list(self.latent_shape),
            "latent_stream": f"chunked-sha256-v1/{CHUNK}",
            "seed": self.seed,
            "count": self.count,
        }


class DCGANGenerator(nn.Module):
    """The DCGAN generator of `gan-face-generate` (PyTorch DCGAN tutorial layout): z (nz×1×1) → 3×64×64."""

    def __init__(self, nz: int = 100, ngf: int = 64, channels: int = 3) -> None:
        super().__init__()
        widths = [ngf * 8, ngf * 4, ngf * 2, ngf]
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, widths[0], 4, 1, 0, bias=False)]
        layers += [nn.BatchNorm2d(widths[0]), nn.ReLU(True)]
        for width_in, width_out in itertools.pairwise(widths):
            layers += [nn.ConvTranspose2d(width_in, width_out, 4, 2, 1, bias=False)]
            layers += [nn.BatchNorm2d(width_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(ngf, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.main(latents)


def find_dcgan_weights(path: str | Path | None = None) -> Path:
    """Locate `weights.tar`: explicit path, $FDBENCH_WEIGHTS, the user cache, or the installed package."""
    from bench.cache import cache_root

    candidates: list[Path] = []
    if path is not None:
        candidates.append(Path(path))
    elif os.environ.get("FDBENCH_WEIGHTS"):
        candidates.append(Path(os.environ["FDBENCH_WEIGHTS"]) / "gan_face_generate" / DCGAN_WEIGHTS_FILE)
    if path is None:
        candidates.append(cache_root() / "weights" / "gan_face_generate" / DCGAN_WEIGHTS_FILE)
        spec = importlib.util.find_spec("gan_face_generate")
        if spec is not None and spec.submodule_search_locations:
            for folder in spec.submodule_search_locations:
                candidates.append(Path(folder) / DCGAN_WEIGHTS_FILE)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"DCGAN face generator weights '{DCGAN_WEIGHTS_FILE}' ({DCGAN_WEIGHTS_SIZE / 1e6:.1f} MB, sha256 "
        f"{DCGAN_WEIGHTS_SHA256[:12]}…) not found; looked in: {', '.join(map(str, candidates))}. "
        "Get it with `pip install --no-deps gan-face-generate==1.1.1` (it ships inside the package) or put "
        f"the file at {cache_root() / 'weights' / 'gan_face_generate' / DCGAN_WEIGHTS_FILE}."
    )


_VERIFIED: dict[str, str] = {}


def load_dcgan_generator(path: str | Path | None = None, device: str | torch.device | None = "cpu"):
    """The pretrained DCGAN face generator in eval mode, after checking the file's sha256."""
    weights = find_dcgan_weights(path)
    key = str(weights.resolve())
    if key not in _VERIFIED:
        _VERIFIED[key] = sha256_file(weights)
    if _VERIFIED[key] != DCGAN_WEIGHTS_SHA256:
        raise ValueError(
            f"{weights} has sha256 {_VERIFIED[key]}, "
            f"expected {DCGAN_WEIGHTS_SHA256} (gan-face-generate 1.1.1)"
        )
    checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
    model = DCGANGenerator()
    model.load_state_dict(checkpoint["netG_state_dict"])
    return model.eval().to(resolve_device(device))


class DCGANFacesSource(GeneratorSource):
    """`count` 64×64 faces from the `gan-face-generate` DCGAN (trained on DigiFace1M), seed → same bytes.

    Latents are N(0, 1) of shape (100, 1, 1) from the chunked stream above. Runs on the CPU by default so
    the bytes are the same on every machine; a CUDA device is faster but may differ in the last bit.
    """

    def __init__(
        self,
        count: int,
        seed: int = 0,
        weights: str | Path | None = None,
        device: str | torch.device | None = "cpu",
    ) -> None:
        model = load_dcgan_generator(weights, device)
        super().__init__(
            generate=model,
            latent_shape=(100, 1, 1),
            count=count,
            seed=seed,
            identity={"name": "dcgan-faces", "weights_sha256": DCGAN_WEIGHTS_SHA256},
            device=device,
        )
