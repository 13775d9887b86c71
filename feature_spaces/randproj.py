"""``pixels-randproj``: a seeded Gaussian random projection of downsized pixels; a no-semantics baseline.

The image is resized to the declared square size, scaled to [0, 1] and flattened (3·s² values, channel
-major); the feature is x·W with W ~ N(0, 1/d) of shape (3·s², d), drawn in float64 on the CPU from
``torch.Generator().manual_seed(seed)`` so it is identical on every machine. Distances between
projections approximate pixel distances (Johnson–Lindenstrauss).
"""

from __future__ import annotations

import math

import torch

from feature_spaces.extractor import Extractor
from feature_spaces.preprocess import preprocess
from feature_spaces.spec import FeatureSpaceSpec


def projection_matrix(in_dim: int, out_dim: int, seed: int) -> torch.Tensor:
    """The (in_dim, out_dim) float64 projection, N(0, 1/out_dim) entries, from a seeded CPU generator."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(in_dim, out_dim, generator=generator, dtype=torch.float64) / math.sqrt(out_dim)


class RandomProjectionExtractor(Extractor):
    def __init__(self, spec: FeatureSpaceSpec, device: torch.device):
        super().__init__(spec, device)
        side = spec.preprocessing.size
        assert side is not None
        self.matrix = projection_matrix(3 * side * side, spec.dim, int(spec.extra["seed"])).to(self.device)

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        x = preprocess(images, self.spec.preprocessing, self.device).to(torch.float64)
        return x.reshape(x.shape[0], -1) @ self.matrix


def loader(spec: FeatureSpaceSpec, device: torch.device, paths):
    return RandomProjectionExtractor(spec, device)
