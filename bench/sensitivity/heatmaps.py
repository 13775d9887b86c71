"""Per-image FD sensitivity heatmaps (Kynkäänniemi et al. 2023; METHODS §10).

For a generated image x of a set G (N images) compared with a reference R in a differentiable space:
replace x in G's statistics by itself through the exact member update, so FD(G, R) becomes a function
of x's features, and back-propagate it to the space's spatial layer A (C × h × w, named by the space's
spec). Channel weights w_c = spatial mean of (∂FD/∂A_c)²; the heatmap Σ_c w_c A_c (no ReLU) is min–max
normalised and upsampled with Lanczos (PIL) onto the part of the image the network saw.

The statistics of G and R come from the engine (the clean variant, cached per data set and space), so
repeated calls extract nothing twice; ∂FD/∂Σ_G is formed once per (G, R) and every image's feature
gradient is a closed form of it (`MemberGradient`), so a batch costs one forward and one partial backward.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

import feature_spaces
from bench.engine import CLEAN, EngineConfig, run_engine
from bench.metrics.frechet_grad import FixedReference, MemberGradient
from bench.sensitivity.capture import LayerCaptureError, SpatialCapture, as_spatial_map, frozen_parameters
from bench.sources import ImageSource, open_source
from bench.stats import GaussianStats
from feature_spaces import Preprocessing, TorchExtractor, preprocess
from feature_spaces.preprocess import target_size

LOG = logging.getLogger("fdbench.heatmaps")


class HeatmapError(ValueError):
    """A heatmap cannot be made: the space has no spatial layer, a set has too few images, and so on."""


def differentiable_spaces() -> list[str]:
    """Registered spaces whose spec names a spatial layer."""
    return [name for name in feature_spaces.names() if feature_spaces.get(name).spec.spatial_layer]


@dataclass(frozen=True)
class Heatmap:
    """One image's heatmap: H × W float32 values in [0, 1] at the image's own size."""

    image_id: str
    space: str
    values: np.ndarray


@dataclass
class FDHeatmaps:
    """What every heatmap of one (generated set, reference, space) needs, prepared once."""

    space: str
    layer: str
    extractor: TorchExtractor
    gradient: MemberGradient
    n_generated: int
    n_reference: int
    notes: list[str] = field(default_factory=list)

    @property
    def fd(self) -> float:
        """FD(generated, reference) in this space, from the engine's statistics."""
        return self.gradient.value

    def maps(self, images: torch.Tensor) -> np.ndarray:
        """(B, H, W) heatmaps in [0, 1] of a uint8 B×3×H×W batch of members of the generated set."""
        spatial, spatial_grad = self.layer_and_gradient(images)
        weights = spatial_grad.double().pow(2).mean(dim=(2, 3))
        combined = torch.einsum("bc,bchw->bhw", weights, spatial.double()).cpu().numpy()
        height, width = images.shape[-2:]
        return np.stack(
            [
                to_image_frame(min_max(cam), height, width, self.extractor.spec.preprocessing)
                for cam in combined
            ]
        )

    def forward_with_layer(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The space's (B, d) features of a batch, recorded from its spatial layer on, and that layer's
        output as a leaf tensor (the features are those the extractor gives, to float rounding)."""
        extractor = self.extractor
        model = extractor.model
        assert model is not None
        x = preprocess(images, extractor.spec.preprocessing, extractor.device)
        x = x.contiguous(memory_format=torch.channels_last)
        try:
            with SpatialCapture(model, self.layer) as capture, frozen_parameters(model), torch.enable_grad():
                features = extractor.forward(model, x) if extractor.forward is not None else model(x)
        except LayerCaptureError as error:
            raise HeatmapError(f"space {self.space}: {error}") from None
        if capture.activation is None:
            raise HeatmapError(f"space {self.space}: layer {self.layer!r} did not run in the forward pass")
        return features.reshape(images.shape[0], -1), capture.activation

    def layer_and_gradient(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The spatial layer A of each image (B, C, h, w) and ∂FD/∂A, the image replacing itself."""
        features, activation = self.forward_with_layer(images)
        feature_grad = self.gradient(features.detach()).to(features.dtype)
        (layer_grad,) = torch.autograd.grad(features, activation, feature_grad, allow_unused=True)
        if layer_grad is None:
            raise HeatmapError(f"space {self.space}: the features do not depend on layer {self.layer!r}")
        batch = images.shape[0]
        try:
            return as_spatial_map(activation.detach(), batch), as_spatial_map(layer_grad, batch)
        except LayerCaptureError as error:
            raise HeatmapError(f"space {self.space}, layer {self.layer!r}: {error}") from None


def min_max(values: np.ndarray) -> np.ndarray:
    """Values scaled to [0, 1] (all zeros when they are constant)."""
    low, high = float(values.min()), float(values.max())
    if not high > low:
        return np.zeros_like(values, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def input_box(height: int, width: int, prep: Preprocessing) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the part of an H × W image the network input shows.

    The whole image unless the preprocessing centre-crops; the crop offsets round as
    `feature_spaces.preprocess.center_crop` does.
    """
    resized_h, resized_w = target_size(height, width, prep)
    top = left = 0
    crop_h, crop_w = resized_h, resized_w
    if prep.crop == "center" and prep.size is not None:
        top, left = round((resized_h - prep.size) / 2.0), round((resized_w - prep.size) / 2.0)
        crop_h = crop_w = prep.size
    scale_y, scale_x = height / resized_h, width / resized_w
    return (
        round(top * scale_y),
        round(left * scale_x),
        round((top + crop_h) * scale_y),
        round((left + crop_w) * scale_x),
    )


def to_image_frame(cam: np.ndarray, height: int, width: int, prep: Preprocessing) -> np.ndarray:
    """An h × w map in [0, 1] upsampled with Lanczos onto the image region the network saw (0 outside),
    clipped back to [0, 1] (Lanczos rings slightly past its input's range)."""
    top, left, bottom, right = input_box(height, width, prep)
    resized = Image.fromarray(cam.astype(np.float32), mode="F").resize(
        (right - left, bottom - top), Image.Resampling.LANCZOS
    )
    frame = np.zeros((height, width), dtype=np.float32)
    frame[top:bottom, left:right] = np.clip(np.asarray(resized), 0.0, 1.0)
    return frame


def clean_statistics(source: ImageSource, space: str, config: EngineConfig, role: str) -> GaussianStats:
    """The engine's statistics of a source's clean images in one space (computed or read from cache)."""
    result = run_engine(source, [CLEAN], [space], None, config)
    if space in result.space_errors:
        raise HeatmapError(f"space {space} could not load: {result.space_errors[space]}")
    cell = result.cell(CLEAN, space)
    if cell is None or cell.stats is None or cell.n < 2:
        count = 0 if cell is None else cell.n
        raise HeatmapError(f"the {role} set has {count} image(s) with {space} features; it needs at least 2")
    return cell.stats


def prepare_heatmaps(
    generated: str | Path | ImageSource,
    reference: str | Path | ImageSource,
    space: str,
    config: EngineConfig | None = None,
) -> FDHeatmaps:
    """Statistics of both sets (engine cache), the loaded extractor and the FD gradient field."""
    config = config or EngineConfig()
    spec = feature_spaces.get(space).spec
    if not spec.spatial_layer:
        raise HeatmapError(
            f"space {space} names no spatial layer, so it has no heatmaps; spaces that do: "
            f"{', '.join(differentiable_spaces())}"
        )
    reference_stats = clean_statistics(open_source(reference), space, config, "reference")
    generated_stats = clean_statistics(open_source(generated), space, config, "generated")
    extractor = feature_spaces.get(space).load(config.device)
    if not isinstance(extractor, TorchExtractor):
        raise HeatmapError(f"space {space} is not a torch network ({type(extractor).__name__}); no gradients")
    notes = []
    if generated_stats.singular_by_count:
        notes.append(
            f"space {space}: the generated set has n = {generated_stats.n} ≤ d = {generated_stats.dim}, "
            "so its covariance is singular (FD and its gradient stay exact, FD is biased upward)"
        )
    gradient = MemberGradient.at(generated_stats, FixedReference.from_stats(reference_stats))
    return FDHeatmaps(
        space=space,
        layer=spec.spatial_layer,
        extractor=extractor,
        gradient=gradient,
        n_generated=int(generated_stats.n or 0),
        n_reference=int(reference_stats.n or 0),
        notes=notes,
    )


def iter_heatmaps(
    prepared: FDHeatmaps, generated: str | Path | ImageSource, batch_size: int = 16, limit: int | None = None
) -> Iterator[tuple[list[str], torch.Tensor, np.ndarray]]:
    """(ids, uint8 images, heatmaps) batch by batch over the first `limit` images of the generated set."""
    source = open_source(generated)
    done = 0
    for ids, images in source.iter_batches(batch_size):
        if limit is not None and done >= limit:
            return
        if limit is not None:
            ids, images = ids[: limit - done], images[: limit - done]
        done += len(ids)
        yield ids, images, prepared.maps(images)


def heatmaps(
    generated: str | Path | ImageSource,
    reference: str | Path | ImageSource,
    space: str,
    *,
    limit: int | None = None,
    batch_size: int = 16,
    config: EngineConfig | None = None,
) -> list[Heatmap]:
    """Heatmaps of the first `limit` generated images (all by default) against the reference."""
    source = open_source(generated)
    prepared = prepare_heatmaps(source, reference, space, config)
    found: list[Heatmap] = []
    for ids, _, maps in iter_heatmaps(prepared, source, batch_size, limit):
        found.extend(Heatmap(image_id, space, values) for image_id, values in zip(ids, maps, strict=True))
    return found


def describe(prepared: FDHeatmaps) -> dict[str, Any]:
    """What a page or manifest says about one space's heatmaps."""
    return {
        "space": prepared.space,
        "layer": prepared.layer,
        "fd": prepared.fd,
        "n_generated": prepared.n_generated,
        "n_reference": prepared.n_reference,
    }
