"""The spectral section of a report: collect, compare, detect, plot, and return tidy rows + PNG figures.

``spectral_section`` is the one entry point used by ``fdbench spectral`` and by experiment reports that ask
for a spectral section. Rows follow the tidy results schema (experiment="spectral"; space names the
feature: "spectrum-durall" for Durall profiles, "spectrum-power" for power profiles, "spectrum-dzanic" for
the decay features; variant = the generated set's name; level = the image size "H×W").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench.spectral.collect import SpectralCollector, SpectralSet, describe_size_policy, iterate_batches
from bench.spectral.detection import (
    detection_accuracy,
    most_discriminative_band,
    standardized_mean_difference,
)
from bench.spectral.distances import profile_distances
from bench.spectral.profiles import frequency_axis

EXPERIMENT = "spectral"
SPACE_DURALL = "spectrum-durall"
SPACE_POWER = "spectrum-power"
SPACE_DECAY = "spectrum-dzanic"
SUMMARY_METRICS = (
    "bce",
    "bce_excess",
    "l2_log_profile",
    "fd_profile",
    "acc_logreg",
    "acc_svm",
    "acc_knn_decay",
    "effect_band_low_nyquist",
    "effect_band_high_nyquist",
)


@dataclass
class SpectralSection:
    """What the section produced: the tidy table, the PNG files, a markdown summary, the size policy."""

    results: pd.DataFrame
    figures: dict[str, Path]
    markdown: str
    size_policy: str
    sets: dict[str, list[SpectralSet]] = field(default_factory=dict, repr=False)

    def summary_table(self) -> pd.DataFrame:
        """One row per (generated set, size): the distances and accuracies of the markdown summary."""
        done = self.results[self.results["metric"].isin(SUMMARY_METRICS)]
        table = done.pivot_table(index=["variant", "level"], columns="metric", values="value", sort=False)
        return table.reindex(columns=[metric for metric in SUMMARY_METRICS if metric in table.columns])

    def to_report_section(self, title: str = "Spectral analysis"):
        """A ``bench.reports.html.ReportSection`` (size policy, summary table, every figure) for the page."""
        from html import escape

        from bench.reports.html import ReportSection

        body = f"<p>{escape(self.size_policy)}.</p>"
        if not self.summary_table().empty:
            body += self.summary_table().to_html(float_format=lambda value: f"{value:.4g}", border=0)
        skipped = self.results[self.results["metric"] == "skipped"]
        for note in skipped.get("note", []):
            body += f"<p>Skipped: {escape(str(note))}</p>"
        figures = [(name.replace("_", " "), path) for name, path in self.figures.items()]
        return ReportSection(title=title, html=body, figures=figures)


def collect_spectral_set(
    images: Any,
    name: str,
    size_policy: str = "group",
    crop_size: int | None = None,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> SpectralCollector:
    """Spectral statistics of an ImageSource, a tensor, or an iterable of batches, on ``device``."""
    collector = SpectralCollector(name, size_policy=size_policy, crop_size=crop_size, dtype=dtype)
    target = torch.device(device) if device is not None else None
    return collector.add_all(iterate_batches(images, batch_size, target))


def _row(variant: str, level: str, metric: str, value: float, n: int, space: str = SPACE_DURALL, **extra):
    row = {
        "experiment": EXPERIMENT,
        "space": space,
        "variant": variant,
        "region": "All",
        "level": level,
        "metric": metric,
        "value": float(value),
        "ci_low": math.nan,
        "ci_high": math.nan,
        "n": int(n),
    }
    row.update(extra)
    return row


def compare_sets(real: SpectralSet, generated: SpectralSet, seeds: tuple[int, ...] = tuple(range(10))):
    """Tidy rows comparing one generated group with the real group of the same image size."""
    level = real.size_label
    variant = generated.name
    n_pair = real.n + generated.n
    rows = []
    for mode, space in (("durall", SPACE_DURALL), ("power", SPACE_POWER)):
        distances = profile_distances(real.profile_array(mode), generated.profile_array(mode), mode)
        rows += [_row(variant, level, metric, value, n_pair, space) for metric, value in distances.items()]
    real_profiles, gen_profiles = real.profile_array("durall"), generated.profile_array("durall")
    detections = {
        "acc_logreg": detection_accuracy(real_profiles, gen_profiles, "logreg", seeds),
        "acc_svm": detection_accuracy(real_profiles, gen_profiles, "svm", seeds),
    }
    decay = detection_accuracy(real.decay_array(), generated.decay_array(), "knn", seeds)
    for metric, result in detections.items():
        rows.append(_row(variant, level, metric, result.mean, n_pair))
        rows.append(_row(variant, level, f"{metric}_std", result.std, n_pair))
    rows.append(_row(variant, level, "acc_knn_decay", decay.mean, n_pair, SPACE_DECAY))
    rows.append(_row(variant, level, "acc_knn_decay_std", decay.std, n_pair, SPACE_DECAY))
    radii = frequency_axis(real.height, real.width, "durall")
    nyquist = min(real.height, real.width) / 2.0
    # the classifier's band (largest |standardized coefficient|) and, because coefficients of strongly
    # correlated neighbouring bins are unstable, the band where the two sets differ most bin by bin (|d|)
    band = most_discriminative_band(detections["acc_logreg"].coefficients, radii, nyquist)
    effect = standardized_mean_difference(real_profiles, gen_profiles)
    effect_band = most_discriminative_band(effect, radii, nyquist)
    for prefix, found in (("band", band), ("effect_band", effect_band)):
        rows.append(_row(variant, level, f"{prefix}_low_nyquist", found.nyquist_fraction_low, n_pair))
        rows.append(_row(variant, level, f"{prefix}_high_nyquist", found.nyquist_fraction_high, n_pair))
        rows.append(_row(variant, level, f"{prefix}_peak_radius", found.peak_radius, n_pair))
        rows.append(_row(variant, level, f"{prefix}_weight_share", found.share_of_weight, n_pair))
    rows.append(_row(variant, level, "effect_band_max_d", float(effect.max()), n_pair))
    return rows, band, effect_band


def _save(figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure.savefig(path)
    plt.close(figure)
    return path


def analyze_spectral_sets(
    real: SpectralCollector,
    generated: Mapping[str, SpectralCollector],
    out_dir: str | Path,
    figure_prefix: str = "spectral_",
    seeds: tuple[int, ...] = tuple(range(10)),
) -> SpectralSection:
    """Compare collected sets size group by size group; write PNGs to ``out_dir``; return the section."""
    from bench.spectral import plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    figures: dict[str, Path] = {}
    lines: list[str] = [f"Image sizes: {real.policy_description}.", ""]
    real_groups = real.sets()
    gen_groups = {name: collector.sets() for name, collector in generated.items()}
    for (height, width), real_set in real_groups.items():
        matches = [groups[(height, width)] for groups in gen_groups.values() if (height, width) in groups]
        if not matches:
            continue
        tag = f"{height}x{width}"
        for gen_set in matches:
            gen_rows, band, effect_band = compare_sets(real_set, gen_set, seeds)
            rows += gen_rows
            lines.append(
                f"- {gen_set.name} vs {real_set.name} at {real_set.size_label} "
                f"(n = {real_set.n} + {gen_set.n}): logistic regression's most discriminative band "
                f"{band.nyquist_fraction_low:.2f}–{band.nyquist_fraction_high:.2f} of Nyquist "
                f"(radii {band.radius_low:.0f}–{band.radius_high:.0f}); largest per-bin separation "
                f"{effect_band.nyquist_fraction_low:.2f}–{effect_band.nyquist_fraction_high:.2f} of Nyquist"
            )
        figures[f"profiles_{tag}"] = _save(
            plots.plot_mean_profiles([real_set, *matches]), out / f"{figure_prefix}profiles_{tag}.png"
        )
        figures[f"power_ratio_{tag}"] = _save(
            plots.plot_power_ratio(real_set, matches), out / f"{figure_prefix}power_ratio_{tag}.png"
        )
        all_sets = [real_set, *matches]
        spectra = [s.mean_spectrum() for s in all_sets]
        vmin = min(float(np.percentile(s, 1)) for s in spectra if s is not None)
        vmax = max(float(s.max()) for s in spectra if s is not None)
        for spectral_set in all_sets:
            slug = _slug(spectral_set.name)
            figures[f"spectrum_{slug}_{tag}"] = _save(
                plots.plot_mean_spectrum(spectral_set, vmin, vmax),
                out / f"{figure_prefix}spectrum_{slug}_{tag}.png",
            )
        bars = []
        for gen_set in matches:
            for metric, label in (
                ("acc_logreg", "logreg"),
                ("acc_svm", "linear SVM"),
                ("acc_knn_decay", "kNN decay"),
            ):
                mean = _value(rows, gen_set.name, real_set.size_label, metric)
                std = _value(rows, gen_set.name, real_set.size_label, f"{metric}_std")
                bars.append((f"{gen_set.name}: {label}", mean, std))
        figures[f"detection_{tag}"] = _save(
            plots.plot_detection(bars), out / f"{figure_prefix}detection_{tag}.png"
        )
    unmatched = _unmatched_rows(real_groups, gen_groups)
    rows += unmatched
    for row in unmatched:
        lines.append(f"- skipped {row['variant']}: {row['note']}")
    results = pd.DataFrame(rows)
    if "note" not in results.columns:
        results["note"] = ""
    results["note"] = results["note"].fillna("")
    markdown = _markdown(results, lines)
    sets = {real.name: list(real_groups.values())}
    sets.update({name: list(groups.values()) for name, groups in gen_groups.items()})
    return SpectralSection(results, figures, markdown, real.policy_description, sets)


def _unmatched_rows(real_groups, gen_groups) -> list[dict[str, Any]]:
    rows = []
    real_sizes = sorted(f"{h}×{w}" for h, w in real_groups)
    for name, groups in gen_groups.items():
        for (height, width), gen_set in groups.items():
            if (height, width) in real_groups:
                continue
            note = (
                f"no real images of size {height}×{width} (real sizes: {', '.join(real_sizes)}); images are "
                "never resized before the FFT: use --crop SIZE to compare centre crops"
            )
            row = _row(name, gen_set.size_label, "skipped", math.nan, gen_set.n, note=note)
            rows.append(row)
    return rows


def _value(rows: list[dict[str, Any]], variant: str, level: str, metric: str) -> float:
    for row in rows:
        if row["variant"] == variant and row["level"] == level and row["metric"] == metric:
            return row["value"]
    return math.nan


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in text).strip("-") or "set"


def _markdown(results: pd.DataFrame, lines: list[str]) -> str:
    """A small markdown summary: the size policy, one line per comparison, and a metric table."""
    out = ["## Spectral analysis", "", *lines, ""]
    done = results[results["metric"] != "skipped"]
    if len(done):
        metrics = [
            ("spectrum-durall", "bce"),
            ("spectrum-durall", "bce_excess"),
            ("spectrum-durall", "l2_log_profile"),
            ("spectrum-durall", "fd_profile"),
            ("spectrum-durall", "acc_logreg"),
            ("spectrum-durall", "acc_svm"),
            ("spectrum-dzanic", "acc_knn_decay"),
        ]
        header = "| set | size | " + " | ".join(metric for _, metric in metrics) + " |"
        out += [header, "|" + "---|" * (len(metrics) + 2)]
        for (variant, level), block in done.groupby(["variant", "level"], sort=False):
            cells = []
            for space, metric in metrics:
                value = block[(block["space"] == space) & (block["metric"] == metric)]["value"]
                std = block[(block["space"] == space) & (block["metric"] == f"{metric}_std")]["value"]
                if value.empty:
                    cells.append("–")
                elif metric.startswith("acc"):
                    cells.append(f"{100 * value.iloc[0]:.1f} ± {100 * std.iloc[0]:.1f} %")
                else:
                    cells.append(f"{value.iloc[0]:.4g}")
            out.append(f"| {variant} | {level} | " + " | ".join(cells) + " |")
        out.append("")
        out.append("Accuracies: mean ± std over 10 stratified 80/20 splits (chance = 50 %).")
    return "\n".join(out) + "\n"


def spectral_section(
    real: Any,
    generated: Any | Mapping[str, Any],
    out_dir: str | Path,
    *,
    real_name: str = "real",
    generated_name: str = "generated",
    size_policy: str = "group",
    crop_size: int | None = None,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    seeds: tuple[int, ...] = tuple(range(10)),
    figure_prefix: str = "spectral_",
) -> SpectralSection:
    """Full spectral section for a real set and one or more generated sets.

    ``real`` / ``generated`` are ImageSources (e.g. from ``bench.sources.open_source``), uint8 tensors or
    iterables of batches; ``generated`` may be a mapping name → set. Writes the PNG figures to ``out_dir``
    and returns the tidy rows, the figure paths and a markdown summary (nothing else is written).
    """
    policy = describe_size_policy(size_policy, crop_size)
    real_collector = collect_spectral_set(real, real_name, size_policy, crop_size, batch_size, device)
    named = dict(generated) if isinstance(generated, Mapping) else {generated_name: generated}
    gen_collectors = {
        name: collect_spectral_set(images, name, size_policy, crop_size, batch_size, device)
        for name, images in named.items()
    }
    section = analyze_spectral_sets(real_collector, gen_collectors, out_dir, figure_prefix, seeds)
    section.size_policy = policy
    return section
