"""Generator comparison (METHODS §3): every metric of several generated sets against one reference, in
every feature space, with per-space rankings and the rank agreement (Kendall τ) between spaces."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bench.engine import ALL_IMAGES, Variant, run_engine
from bench.experiments.common import EngineSettings, ResultRow, engine_config, fd_between_cells, results_frame
from bench.experiments.region_blur import OFFLINE_SPACES, ExperimentOutput, engine_notes
from bench.experiments.runner import register_experiment
from bench.metrics import density_coverage, kernel_inception_distance, precision_recall
from bench.sources import open_source

EXPERIMENT = "generator_comparison"
METRICS = ("fd", "kid", "precision", "recall", "density", "coverage")


@dataclass
class GeneratorComparisonConfig(EngineSettings):
    """Settings of a generator comparison."""

    reference: str = ""
    generators: dict[str, str] = field(default_factory=dict)  # name -> source spec
    spaces: list[str] = field(default_factory=lambda: list(OFFLINE_SPACES))
    metrics: list[str] = field(default_factory=lambda: list(METRICS))
    kid_subsets: int = 100
    spectral: bool = False  # add a spectral section: reference against every generator
    spectral_crop: int | None = None  # centre-crop every image to this side (else group by size)
    reservoir_size: int = 5000


def run_generator_comparison(config: GeneratorComparisonConfig) -> ExperimentOutput:
    """Extract every set once, then all metrics per (generator, space); ranks come from the FD rows."""
    unknown = sorted(set(config.metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    if not config.generators:
        raise ValueError("a generator comparison needs at least one entry in `generators`")
    clean = [Variant("clean", None, None, (ALL_IMAGES,))]
    settings = engine_config(config)
    reference = open_source(config.reference)
    reference_result = run_engine(reference, clean, config.spaces, None, settings)
    notes = engine_notes(reference_result)
    skipped = [(f"reference/{name}", reason) for name, reason in reference_result.decode_skips]
    manifest: dict[str, Any] = {"sources": {"reference": reference.manifest_hash()}}
    rows: list[dict[str, Any]] = []
    for name, spec in config.generators.items():
        source = open_source(spec)
        manifest["sources"][name] = source.manifest_hash()
        result = run_engine(source, clean, config.spaces, None, settings)
        notes.extend(note for note in engine_notes(result) if note not in notes)
        skipped.extend((f"{name}/{file}", reason) for file, reason in result.decode_skips)
        for space in config.spaces:
            ref_cell, gen_cell = reference_result.cell("clean", space), result.cell("clean", space)
            if ref_cell is None or gen_cell is None or ref_cell.n < 2 or gen_cell.n < 2:
                notes.append(f"generator {name}, space {space}: fewer than 2 images with features; skipped")
                continue
            rows.extend(_metric_rows(config, name, space, ref_cell, gen_cell, notes))
    manifest["config"] = asdict(config)
    return ExperimentOutput(results_frame(rows), notes, manifest, skipped_files=skipped)


def _metric_rows(config, name, space, ref_cell, gen_cell, notes) -> list[dict[str, Any]]:
    rows = []
    n = min(ref_cell.n, gen_cell.n)
    if "fd" in config.metrics:
        fd = fd_between_cells(ref_cell, gen_cell)
        rows += [
            ResultRow(EXPERIMENT, space, metric, value, n, variant=name, region="All")
            for metric, value in (
                ("fd", fd.value),
                ("fd_mean_term", fd.mean_term),
                ("fd_trace_term", fd.trace_term),
            )
        ]
    sample_metrics = [m for m in config.metrics if m != "fd"]
    if not sample_metrics:
        return rows
    if ref_cell.features is None or gen_cell.features is None:
        return rows
    if not (ref_cell.reservoir_is_complete and gen_cell.reservoir_is_complete):
        notes.append(
            f"{name}/{space}: KID and P/R use the seeded reservoir of {config.reservoir_size} images"
        )
    real, fake = ref_cell.features, gen_cell.features
    used = min(len(real), len(fake))
    if "kid" in sample_metrics and used >= 2:
        kid = kernel_inception_distance(real, fake, num_subsets=config.kid_subsets, seed=config.seed)
        rows.append(
            ResultRow(
                EXPERIMENT,
                space,
                "kid",
                kid.mean,
                kid.subset_size,
                variant=name,
                region="All",
                mean=kid.mean,
                std=kid.std,
            )
        )
    if {"precision", "recall"} & set(sample_metrics) and used > 3:
        pr = precision_recall(real, fake)
        rows += [
            ResultRow(EXPERIMENT, space, m, getattr(pr, m), used, variant=name, region="All")
            for m in ("precision", "recall")
            if m in sample_metrics
        ]
    if {"density", "coverage"} & set(sample_metrics) and used > 5:
        dc = density_coverage(real, fake)
        rows += [
            ResultRow(EXPERIMENT, space, m, getattr(dc, m), used, variant=name, region="All")
            for m in ("density", "coverage")
            if m in sample_metrics
        ]
    return rows


register_experiment(EXPERIMENT, GeneratorComparisonConfig, run_generator_comparison)
