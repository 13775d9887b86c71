"""Run an experiment by name and write its report folder (results, manifest, Markdown, plots, HTML)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.experiments.common import ConfigError, ExperimentOutput, config_from_dict
from bench.experiments.region_blur import RegionBlurConfig, run_region_blur

LOG = logging.getLogger("fdbench.run")
EXPERIMENTS: dict[str, tuple[type, Any]] = {
    "region_blur": (RegionBlurConfig, run_region_blur),
}


def register_experiment(name: str, config_type: type, runner: Any) -> None:
    """Make an experiment available to `fdbench run` under `name`."""
    EXPERIMENTS[name] = (config_type, runner)


def _ensure_all_registered() -> None:
    # Imported for their register_experiment side effect; each module is one experiment.
    from bench.experiments import (  # noqa: F401
        attribute_proportion,
        class_resampling,
        generator_comparison,
        severity_sweep,
        style_probe,
    )
    from bench.probes import magicmix, semantic_attack  # noqa: F401


def experiment_config(kind: str, settings: dict[str, Any], where: str = "config") -> Any:
    """The typed config of experiment `kind` from a plain dict."""
    _ensure_all_registered()
    if kind not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {kind!r}; known: {sorted(EXPERIMENTS)}")
    return config_from_dict(EXPERIMENTS[kind][0], settings, where=where)


def run_experiment(kind: str, config: Any) -> ExperimentOutput:
    """Run experiment `kind` with its typed config."""
    _ensure_all_registered()
    return EXPERIMENTS[kind][1](config)


def weight_hashes_of(space_names: list[str]) -> dict[str, str]:
    """sha256 of each space's weight files, as declared by the registry (for the run manifest)."""
    import feature_spaces

    hashes: dict[str, str] = {}
    for name in space_names:
        try:
            spec = feature_spaces.get(name).spec
        except Exception:  # unknown spaces are already reported as run notes
            continue
        for weights in getattr(spec, "weights", None) or ():
            sha = getattr(weights, "sha256", None)
            hashes[f"{name}:{getattr(weights, 'filename', '?')}"] = sha or "not declared"
    return hashes


@dataclass
class SpectralRequest:
    """A spectral section to add to a run's report: one real set against named generated sets."""

    real: str
    generated: dict[str, str]
    crop: int | None = None


def spectral_request(config: Any, table: dict[str, Any] | None = None) -> SpectralRequest | None:
    """The spectral section a run asks for: a `[spectral]` TOML table (any experiment), or
    `spectral = true` in a generator comparison (reference against every generator)."""
    if table:
        unknown = sorted(set(table) - {"real", "generated", "crop"})
        if unknown or "real" not in table or not isinstance(table.get("generated"), dict):
            raise ConfigError(
                "[spectral] needs real = SOURCE and a [spectral.generated] table of name = SOURCE "
                f"(optional crop = SIDE); got keys {sorted(table)}"
            )
        return SpectralRequest(table["real"], dict(table["generated"]), table.get("crop"))
    if getattr(config, "spectral", False) and getattr(config, "generators", None):
        return SpectralRequest(
            config.reference, dict(config.generators), getattr(config, "spectral_crop", None)
        )
    return None


def spectral_report_section(request: SpectralRequest, out_dir: Path, device: str | None) -> Any:
    """Run the spectral analysis and return (its tidy rows, its report section)."""
    from bench.sources import open_source
    from bench.spectral.section import spectral_section

    section = spectral_section(
        open_source(request.real),
        {name: open_source(spec) for name, spec in request.generated.items()},
        out_dir,
        real_name="real",
        size_policy="crop" if request.crop else "group",
        crop_size=request.crop,
        device=device,
    )
    return section.results, section.to_report_section()


def write_run(
    kind: str,
    config: Any,
    output: ExperimentOutput,
    out_dir: str | Path,
    elapsed: float,
    spectral: SpectralRequest | None = None,
) -> Path:
    """Write results.csv/json, manifest.json, report.md, plots and report.html; return the HTML path."""
    import pandas as pd

    from bench.reports import build_manifest, write_report
    from bench.reports.samples import sample_strip_section
    from bench.sensitivity.report import agreement_section

    settings = asdict(config)
    manifest = build_manifest(
        config={"experiment": kind, **settings},
        seeds={"seed": settings.get("seed", 0)},
        weights=weight_hashes_of(list(settings.get("spaces", []))),
        data_manifest_hash=output.manifest.get("source_manifest_hash"),
        device=settings.get("device"),
        timings={"wall_seconds": elapsed, **output.manifest.get("timings", {})},
        notes=output.notes,
        extra={key: value for key, value in output.manifest.items() if key not in ("timings", "config")},
    )
    results, sections = output.results, []
    strip = sample_strip_section(output.samples)
    if strip is not None:
        sections.append(strip)
    agreement = agreement_section(results)
    if agreement is not None:
        sections.append(agreement)
    if spectral is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        rows, section = spectral_report_section(spectral, Path(out_dir), settings.get("device"))
        results = pd.concat([results, rows], ignore_index=True)
        sections.append(section)
    title = f"fdbench {kind.replace('_', ' ')}"
    page = write_report(results, manifest, out_dir, extra_sections=sections, title=title)
    write_run_log(output, Path(out_dir) / "run.log")
    return page


def write_run_log(output: ExperimentOutput, path: Path) -> Path:
    """The run log: every problem note, then every skipped file with its reason, one per line."""
    lines = [f"note: {note}" for note in output.notes]
    lines += [f"skipped: {name}: {reason}" for name, reason in output.skipped_files]
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    for line in lines:
        LOG.warning(line)
    return path


def run_and_report(
    kind: str, config: Any, out_dir: str | Path, spectral: SpectralRequest | None = None
) -> tuple[ExperimentOutput, Path]:
    """Run an experiment and write its report; both the output and the HTML path are returned."""
    started = time.perf_counter()
    output = run_experiment(kind, config)
    page = write_run(kind, config, output, out_dir, time.perf_counter() - started, spectral)
    return output, page
