"""Style-statistics probe (METHODS §6): how much of a space's FD is channel statistics ("style").

Each image of the source is pushed towards the statistics of a style set by α-blended AdaIN, either in
pixel space (per-channel colour mean/std) or, for torch spaces, inside the backbone at a named layer
(per-channel feature mean/std). The curve FD(X, AdaIN_α X) / FD(X, AdaIN_1 X) over α shows how quickly a
space's distance responds to style alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from bench.device import resolve_device
from bench.engine import CLEAN, Cohort, Variant, run_engine
from bench.experiments.common import (
    EngineSettings,
    ExperimentOutput,
    ResultRow,
    engine_config,
    engine_notes,
    fd_between_cells,
    fd_diagnostics,
    results_frame,
)
from bench.experiments.region_blur import OFFLINE_SPACES
from bench.experiments.runner import register_experiment
from bench.metrics import frechet_distance
from bench.perturbations import AdaINColor, channel_mean_std, feature_adain
from bench.sources import ImageSource, open_source
from bench.stats import GaussianStats

EXPERIMENT = "style_probe"


@dataclass
class StyleProbeConfig(EngineSettings):
    """Settings of a style-statistics probe."""

    source: str = "dcgan-faces:count=500,seed=0"
    style: str = "dcgan-faces:count=64,seed=1"
    spaces: list[str] = field(default_factory=lambda: list(OFFLINE_SPACES))
    alphas: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    mode: str = "pixel"  # "pixel" or "feature"
    layers: dict[str, str] = field(default_factory=dict)  # feature mode: space -> layer name
    style_count: int = 64

    def __post_init__(self) -> None:
        if self.mode not in ("pixel", "feature"):
            raise ValueError(f"style probe mode must be 'pixel' or 'feature', got {self.mode!r}")
        if any(not 0.0 <= alpha <= 1.0 for alpha in self.alphas):
            raise ValueError(f"alphas must lie in [0, 1], got {self.alphas}")


def _style_images(config: StyleProbeConfig) -> torch.Tensor:
    source = open_source(config.style)
    images = []
    for _, batch in source.iter_batches(config.batch_size):
        images.append(batch)
        if sum(len(b) for b in images) >= config.style_count:
            break
    if not images:
        raise ValueError(f"style source {config.style} yielded no images")
    shapes = {tuple(b.shape[1:]) for b in images}
    if len(shapes) > 1:
        raise ValueError(f"style images must share one size for pixel statistics, got {sorted(shapes)}")
    return torch.cat(images)[: config.style_count]


def run_style_probe(config: StyleProbeConfig) -> ExperimentOutput:
    """FD(α) / FD(1) per space, from pixel-space or feature-space AdaIN."""
    source = open_source(config.source)
    if config.mode == "pixel":
        return _pixel_probe(config, source)
    return _feature_probe(config, source)


def _pixel_probe(config: StyleProbeConfig, source: ImageSource) -> ExperimentOutput:
    style = _style_images(config)
    by_alpha = {
        alpha: Variant(f"adain={alpha:g}", AdaINColor.from_reference(style, alpha=alpha))
        for alpha in dict.fromkeys([*config.alphas, 1.0])
    }
    # One cohort: every α and the reference α = 1 on the same ids (a face space may lose some).
    cohort = Cohort.of("style", CLEAN, *by_alpha.values())
    result = run_engine(
        source, [CLEAN, *by_alpha.values()], config.spaces, None, engine_config(config), [cohort]
    )
    notes = engine_notes(result)
    rows: list[ResultRow] = []
    for space in config.spaces:
        cells = result.cohort(cohort, space)
        if cells is None or cells.n < 2:
            notes.append(
                f"space {space}: fewer than 2 images with features in every α set; no ratio computed"
            )
            continue
        clean = cells.cell(CLEAN)
        reference = fd_between_cells(clean, cells.cell(by_alpha[1.0]))
        for alpha in config.alphas:
            fd = fd_between_cells(clean, cells.cell(by_alpha[alpha]))
            ratio = fd.value / reference.value if reference.value > 0 else math.nan
            common = {
                "n": cells.n,
                "lost": cells.lost,
                "variant": "pixel",
                "region": "All",
                "level": float(alpha),
            }
            notes_fd = fd_diagnostics(fd)
            rows.append(ResultRow(EXPERIMENT, space, "fd", fd.value, diagnostics=notes_fd, **common))
            rows.append(ResultRow(EXPERIMENT, space, "fd_ratio", ratio, diagnostics=notes_fd, **common))
    manifest = {
        "source_manifest_hash": source.manifest_hash(),
        "timings": result.timings,
        "config": asdict(config),
    }
    return ExperimentOutput(results_frame(rows), notes, manifest, result, list(result.decode_skips))


def _feature_probe(config: StyleProbeConfig, source: ImageSource) -> ExperimentOutput:
    import feature_spaces

    device = resolve_device(config.device)
    style = _style_images(config).to(device)
    notes: list[str] = []
    rows: list[ResultRow] = []
    for space in config.spaces:
        layer = config.layers.get(space)
        try:
            extractor = feature_spaces.get(space).load(device)
        except Exception as error:
            notes.append(f"space {space} could not load and was left out: {error}")
            continue
        if extractor.model is None or layer is None:
            notes.append(f"space {space}: feature AdaIN needs a torch model and a layer in `layers`; skipped")
            continue
        style_mean, style_std = _layer_statistics(extractor, layer, style)
        stats = {alpha: GaussianStats.empty(extractor.dim) for alpha in config.alphas}
        clean = GaussianStats.empty(extractor.dim)
        for _, batch in source.iter_batches(config.batch_size):
            batch = batch.to(device)
            with torch.no_grad():
                clean.update(extractor(batch))
                for alpha in config.alphas:
                    with feature_adain(extractor.model, layer, style_mean, style_std, alpha):
                        stats[alpha].update(extractor(batch))
        with torch.no_grad(), feature_adain(extractor.model, layer, style_mean, style_std, 1.0):
            full = GaussianStats.empty(extractor.dim)
            for _, batch in source.iter_batches(config.batch_size):
                full.update(extractor(batch.to(device)))
        reference = frechet_distance(clean, full).value
        for alpha in config.alphas:
            fd = frechet_distance(clean, stats[alpha])
            ratio = fd.value / reference if reference > 0 else math.nan
            common = {"n": clean.n, "variant": f"feature:{layer}", "region": "All", "level": float(alpha)}
            rows.append(
                ResultRow(EXPERIMENT, space, "fd", fd.value, diagnostics=fd_diagnostics(fd), **common)
            )
            rows.append(ResultRow(EXPERIMENT, space, "fd_ratio", ratio, **common))
    manifest = {"source_manifest_hash": source.manifest_hash(), "config": asdict(config)}
    return ExperimentOutput(results_frame(rows), notes, manifest)


def _layer_statistics(extractor: Any, layer: str, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over style images of their per-image channel mean/std at `layer` (captured by a hook)."""
    captured: list[torch.Tensor] = []
    module = extractor.model.get_submodule(layer)
    handle = module.register_forward_hook(lambda _m, _i, output: captured.append(output.detach()))
    try:
        with torch.no_grad():
            extractor(images)
    finally:
        handle.remove()
    mean, std = channel_mean_std(torch.cat(captured), 1e-5)
    return mean.mean(dim=0), std.mean(dim=0)


register_experiment(EXPERIMENT, StyleProbeConfig, run_style_probe)
