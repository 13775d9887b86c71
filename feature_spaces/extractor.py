"""Extractors: callables from a uint8 RGB batch to float32 (N, d) features."""

from __future__ import annotations

from collections.abc import Callable

import torch

from feature_spaces.microbatch import MicroBatcher
from feature_spaces.preprocess import check_uint8_batch, preprocess
from feature_spaces.spec import FeatureSpaceSpec


class Extractor:
    """Base extractor. Rows it cannot compute are NaN; ``skip_reason`` says why (last call), and
    ``n_skipped`` counts such rows over the extractor's life."""

    def __init__(self, spec: FeatureSpaceSpec, device: torch.device, model: torch.nn.Module | None = None):
        self.spec = spec
        self.device = torch.device(device)
        self.model = model
        self.skip_reason: str | None = None
        self.n_skipped = 0
        self.n_seen = 0

    @property
    def dim(self) -> int:
        return self.spec.dim

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        check_uint8_batch(images)
        self.skip_reason = None
        if images.shape[0] == 0:
            return torch.empty(0, self.spec.dim, dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            features = self.extract(images)
        features = features.to(torch.float32).reshape(images.shape[0], -1)
        if features.shape[1] != self.spec.dim:
            raise RuntimeError(
                f"feature space {self.spec.name!r} produced {features.shape[1]} features, "
                f"its spec says {self.spec.dim}"
            )
        self.n_seen += images.shape[0]
        return features

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def record_skips(self, n_rows: int, reason: str) -> None:
        """Note that ``n_rows`` rows of the current batch are NaN, and why."""
        if n_rows:
            self.n_skipped += n_rows
            self.skip_reason = f"{n_rows} image(s) skipped: {reason}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.name!r}, device={self.device})"


class TorchExtractor(Extractor):
    """Declared preprocessing on the device, then ``forward(model, x)`` (default: ``model(x)``)."""

    def __init__(
        self,
        spec: FeatureSpaceSpec,
        device: torch.device,
        model: torch.nn.Module,
        forward: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor] | None = None,
    ):
        # Channels-last memory lets oneDNN/cuDNN pick their fastest convolution kernels (about 1.5× for a
        # ResNet-50 on a CPU); the numbers are those of the default layout to float rounding.
        super().__init__(spec, device, model.to(device).eval().to(memory_format=torch.channels_last))
        self.forward = forward
        self.micro_batches = MicroBatcher(self.model, self.device)

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        return self.micro_batches(self._extract_slice, images)

    def _extract_slice(self, images: torch.Tensor) -> torch.Tensor:
        x = preprocess(images, self.spec.preprocessing, self.device)
        x = x.contiguous(memory_format=torch.channels_last)
        assert self.model is not None
        return self.forward(self.model, x) if self.forward is not None else self.model(x)
