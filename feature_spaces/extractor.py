"""Extractors: callables from a uint8 RGB batch to float32 (N, d) features."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from bench.microbatch import MicroBatcher
from feature_spaces.preprocess import check_uint8_batch, preprocess
from feature_spaces.spec import FeatureSpaceSpec

LOG = logging.getLogger("fdbench.spaces")


class Extractor:
    """Base extractor. Rows it cannot compute are NaN; ``skip_reason`` says why (last call), and
    ``n_skipped`` counts such rows over the extractor's life.

    A space that must see each image the same way in every variant (a face space aligns the face it
    detected on the *clean* image) computes that per-image state in ``prepare(clean_images)``; the engine
    passes it back with every perturbed copy (``extractor(perturbed, prepared)``), so a perturbation is
    measured by the features' response, not by the detector's. Other spaces need no state: ``prepare``
    returns None.
    """

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

    def prepare(self, images: torch.Tensor) -> list | None:
        """Per-image state computed on the clean images and reused for their perturbed copies (one list
        entry per image), or None when the space needs none."""
        return None

    def __call__(self, images: torch.Tensor, prepared: list | None = None) -> torch.Tensor:
        """(N, d) float32 features of a uint8 N×3×H×W batch; `prepared` is `prepare`'s state for these
        very images (rows in the same order), computed on their clean versions."""
        check_uint8_batch(images)
        self.skip_reason = None
        if images.shape[0] == 0:
            return torch.empty(0, self.spec.dim, dtype=torch.float32, device=self.device)
        if prepared is not None and len(prepared) != images.shape[0]:
            raise ValueError(f"prepared state for {len(prepared)} images given with {images.shape[0]} images")
        with torch.inference_mode():
            features = self.extract(images) if prepared is None else self.extract(images, prepared)
        features = features.to(torch.float32).reshape(images.shape[0], -1)
        if features.shape[1] != self.spec.dim:
            raise RuntimeError(
                f"feature space {self.spec.name!r} produced {features.shape[1]} features, "
                f"its spec says {self.spec.dim}"
            )
        self.n_seen += images.shape[0]
        return features

    def extract(self, images: torch.Tensor, prepared: list | None = None) -> torch.Tensor:
        raise NotImplementedError

    def record_skips(self, n_rows: int, reason: str) -> None:
        """Note that ``n_rows`` rows of the current batch are NaN, and why."""
        if n_rows:
            self.n_skipped += n_rows
            self.skip_reason = f"{n_rows} image(s) skipped: {reason}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.name!r}, device={self.device})"


class TorchExtractor(Extractor):
    """Declared preprocessing on the device, then ``forward(model, x)`` (default: ``model(x)``).

    Fast-path settings (off by default, so the plain float32 numbers are the default ones; see
    feature_spaces.precision for how they are chosen and checked):

    - ``autocast``: a reduced-precision dtype (bfloat16/float16) the network runs under `torch.autocast`;
      preprocessing stays float32 and features come back float32.
    - ``compile_requested``: run the network through `torch.compile`. The first batch is computed both
      ways; the compiled network is kept only if it ran and agreed with the eager one (`compile_status`
      says what happened), otherwise the extractor stays eager.
    - Out of memory on a batch: the batch is halved and retried, and later batches are cut to the size
      that fitted (``memory_limit``); each halving is recorded in ``oom_fallbacks``.
    """

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
        self.autocast: torch.dtype | None = None
        self.compile_requested = False
        self.compile_status: str | None = None
        self._compiled: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.memory_limit: int | None = None
        self.oom_fallbacks: list[tuple[int, int]] = []

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        if self.memory_limit is not None and images.shape[0] > self.memory_limit:
            return torch.cat([self.extract(part) for part in images.split(self.memory_limit)])
        try:
            return self.micro_batches(self._extract_slice, images)
        except torch.OutOfMemoryError:
            if images.shape[0] == 1:
                raise
        self._shrink_after_oom(images.shape[0])
        return self.extract(images)

    def _shrink_after_oom(self, failed: int) -> None:
        """Halve the batch that ran out of memory; release what the failed attempt cached."""
        self.memory_limit = max(1, failed // 2)
        self.oom_fallbacks.append((failed, self.memory_limit))
        LOG.warning("%s: out of memory on %d images; continuing with %d", self.spec.name, failed, failed // 2)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _extract_slice(self, images: torch.Tensor) -> torch.Tensor:
        x = preprocess(images, self.spec.preprocessing, self.device)
        x = x.contiguous(memory_format=torch.channels_last)
        if self.compile_requested and self.compile_status is None:
            return self._settle_compile(x)
        if self._compiled is None:
            return self._network(x)
        try:
            return self._compiled(x)
        except torch.OutOfMemoryError:
            raise
        except Exception as error:  # a recompilation for a new input shape can fail too: go eager
            self._compiled = None
            self.compile_status = (
                f"eager (the compiled network failed later: {type(error).__name__}: {error})"
            )
            LOG.warning("%s: %s", self.spec.name, self.compile_status[:500])
            return self._network(x)

    def _network(self, x: torch.Tensor) -> torch.Tensor:
        """The network on a preprocessed batch, under autocast when a reduced precision is set."""
        assert self.model is not None
        with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            return self.forward(self.model, x) if self.forward is not None else self.model(x)

    def _settle_compile(self, x: torch.Tensor) -> torch.Tensor:
        """Compile on the first batch; keep the compiled network only if it runs and agrees with eager."""
        eager = self._network(x)
        try:
            compiled = torch.compile(self._network)
            result = compiled(x)
        except Exception as error:  # any compiler failure falls back to eager, with its reason kept
            self.compile_status = f"eager (torch.compile failed: {type(error).__name__}: {error})"[:500]
            LOG.warning("%s: %s", self.spec.name, self.compile_status)
            return eager
        deviation = _relative_deviation(result, eager)
        tolerance = COMPILE_TOLERANCE[self.autocast]
        if not deviation <= tolerance:
            self.compile_status = f"eager (compiled result deviates by {deviation:.2e} > {tolerance:.0e})"
            LOG.warning("%s: %s", self.spec.name, self.compile_status)
            return eager
        self._compiled = compiled
        self.compile_status = f"compiled (first batch within {deviation:.1e} of eager)"
        return eager


# How far a compiled network's output may stray from the eager one (max |difference| / max |eager|): the
# rounding of a reordered float computation, in each precision.
COMPILE_TOLERANCE: dict[torch.dtype | None, float] = {None: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


def _relative_deviation(result: torch.Tensor, reference: torch.Tensor) -> float:
    if result.shape != reference.shape:
        return float("inf")
    scale = reference.float().abs().max().clamp_min(1e-30)
    return float(((result.float() - reference.float()).abs().max() / scale).item())
