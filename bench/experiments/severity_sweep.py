"""Mistake severity under perturbation (METHODS §7): does a classifier err more, and worse, as images degrade?

The engine runs the clean images and one variant per (perturbation, level) through a logits space; its
cache keeps the logits, so a second sweep over the same images only computes what is new. Every variant's
top-1 error, mistake severity and hierarchical distance@k rest on the same labelled images, with
bootstrap intervals, and each level also gets the paired change from the clean images (one draw of
images per replicate for both), which says whether the degradation made a difference beyond resampling
noise.

Labels are WordNet ids (or class indices in the hierarchy's sorted leaf order), from a folder-per-class
layout or a CSV of file,label. `measure_severity` is the clean-only case behind `fdbench severity`.
"""

from __future__ import annotations

import csv
import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from bench.engine import CLEAN, WHOLE_IMAGE, Cohort, EngineResult, Variant, run_engine
from bench.errors import UserError
from bench.experiments.common import (
    EngineSettings,
    ExperimentOutput,
    ResultRow,
    engine_config,
    engine_notes,
    results_frame,
)
from bench.experiments.runner import register_experiment
from bench.hierarchy import Hierarchy
from bench.metrics.severity import (
    DEFAULT_KS,
    MISTAKE_SEVERITY,
    PerImageSeverity,
    metric_names,
    paired_change_with_intervals,
    per_image_severity,
    severity_with_intervals,
)
from bench.perturbations import Perturbation, make_perturbation
from bench.sources import ImageSource, open_source

EXPERIMENT = "severity_sweep"
LOGITS_SPACE = "efficientnet-lite0-imagenet-logits"
LOGITS_SUFFIX = "-logits"
CHANGE_SUFFIX = "_change"
FOLDER_LABELS = "folders"
DEFAULT_SWEEPS: list[dict[str, Any]] = [
    {"perturbation": "gaussian_blur", "parameter": "sigma", "levels": [1.0, 2.0, 4.0, 8.0]},
    {"perturbation": "jpeg", "parameter": "quality", "levels": [50, 20, 10, 5]},
    {"perturbation": "gaussian_noise", "parameter": "alpha", "levels": [0.1, 0.25, 0.5]},
]
SWEEP_KEYS = {"perturbation", "parameter", "levels", "params"}


@dataclass
class SeveritySweepConfig(EngineSettings):
    """Settings of a severity sweep (every field can be set from a TOML table)."""

    source: str = ""
    labels: str = FOLDER_LABELS  # "folders" (first folder of each image is its class) or a CSV file,label
    hierarchy: str = ""  # edge list ("parent child" per line) or nested-mapping .json
    space: str = LOGITS_SPACE  # a logits space, or a feature space with a "-logits" sibling
    ks: list[int] = field(default_factory=lambda: list(DEFAULT_KS))
    sweeps: list[dict[str, Any]] = field(default_factory=lambda: [dict(s) for s in DEFAULT_SWEEPS])
    bootstrap: int = 200
    clusters: str = "image"  # "image", or "folder": resample whole folders (e.g. several views of a photo)

    def __post_init__(self) -> None:
        if self.clusters not in ("image", "folder"):
            raise ValueError(f"clusters must be 'image' or 'folder', got {self.clusters!r}")
        for sweep in self.sweeps:
            unknown = sorted(set(sweep) - SWEEP_KEYS)
            missing = sorted({"perturbation", "parameter", "levels"} - set(sweep))
            if unknown or missing:
                raise ValueError(
                    f"a sweep is a table with perturbation, parameter, levels (and optional params); "
                    f"got {sorted(sweep)}"
                )


@dataclass(frozen=True)
class ImageLabels:
    """Class index of each labelled image id, and what could not be matched."""

    index_of: dict[str, int]
    unlabelled: list[str]  # images in the source without a label
    unmatched: list[str]  # CSV rows naming no image of the source

    def notes(self) -> list[str]:
        """Report lines for the images and rows left out."""
        notes = []
        if self.unlabelled:
            notes.append(f"{len(self.unlabelled)} images have no label and were left out")
        if self.unmatched:
            notes.append(
                f"{len(self.unmatched)} label rows name no image of the source (e.g. {self.unmatched[0]})"
            )
        return notes


def logits_space(name: str) -> str:
    """The registered space that gives class logits for `name`: itself, or its "-logits" sibling."""
    import feature_spaces

    if name.endswith(LOGITS_SUFFIX):
        feature_spaces.get(name)
        return name
    sibling = name + LOGITS_SUFFIX
    if sibling in feature_spaces.names():
        return sibling
    feature_spaces.get(name)  # an unknown name gets the registry's error
    logit_spaces = [space for space in feature_spaces.names() if space.endswith(LOGITS_SUFFIX)]
    raise UserError(
        f"feature space {name!r} exposes no class logits; use one of: {', '.join(logit_spaces) or 'none'}"
    )


def class_index(label: str, hierarchy: Hierarchy) -> int | None:
    """The sorted-leaf index of a WordNet id or a class index given as text; None when it is neither."""
    text = label.strip()
    if hierarchy.is_leaf(text):
        return hierarchy.leaf_index(text)
    if text.isdigit() and int(text) < len(hierarchy.leaves):
        return int(text)
    return None


def read_labels(ids: list[str], labels: str, hierarchy: Hierarchy) -> ImageLabels:
    """Labels of a source's images: from the first folder of each id, or from a CSV of file,label rows.

    A CSV's file column is the image's path relative to the source (or its file name, when unique); a
    first row whose label is not a class is taken as a header.
    """
    if labels == FOLDER_LABELS:
        named = {image_id: PurePosixPath(image_id).parts[0] for image_id in ids if "/" in image_id}
        unmatched: list[str] = []
    else:
        named, unmatched = _csv_labels(Path(labels), ids, hierarchy)
    index_of: dict[str, int] = {}
    unknown: list[str] = []
    for image_id, label in named.items():
        index = class_index(label, hierarchy)
        if index is None:
            unknown.append(label)
        else:
            index_of[image_id] = index
    if unknown:
        shown = ", ".join(sorted(set(unknown))[:5])
        raise UserError(
            f"{len(unknown)} labels are not classes of {hierarchy.source} (e.g. {shown}); give WordNet ids "
            f"of its leaves or class indices 0…{len(hierarchy.leaves) - 1}"
        )
    unlabelled = [image_id for image_id in ids if image_id not in index_of]
    return ImageLabels(index_of, unlabelled, unmatched)


def _csv_labels(path: Path, ids: list[str], hierarchy: Hierarchy) -> tuple[dict[str, str], list[str]]:
    if not path.is_file():
        raise FileNotFoundError(f"labels file not found: {path} (give a CSV of file,label or 'folders')")
    by_name: dict[str, list[str]] = {}
    for image_id in ids:
        by_name.setdefault(PurePosixPath(image_id).name, []).append(image_id)
    known = set(ids)
    named: dict[str, str] = {}
    unmatched: list[str] = []
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    for number, row in enumerate(rows, start=1):
        if len(row) < 2:
            raise UserError(f"{path}:{number}: expected file,label, got {','.join(row)!r}")
        file, label = row[0].strip(), row[1].strip()
        if (
            number == 1
            and class_index(label, hierarchy) is None
            and file not in known
            and file not in by_name
        ):
            continue  # a header
        if file in known:
            named[file] = label
        elif len(by_name.get(file, ())) == 1:
            named[by_name[file][0]] = label
        else:
            unmatched.append(file)
    return named, unmatched


@dataclass
class LabelledImages:
    """Decoded labelled images (H×W×3 uint8, sizes may differ) with their ids and class indices."""

    ids: list[str]
    images: list[np.ndarray]
    labels: np.ndarray
    notes: list[str]


def load_labelled_images(source: str, labels: str, hierarchy: Hierarchy) -> LabelledImages:
    """Every decodable labelled image of a source, in source order, for probes that work on pixels."""
    opened = open_source(source)
    labelled = read_labels(opened.ids(), labels, hierarchy)
    ids, images = [], []
    for image_id, image in opened.iter_images():
        if image_id in labelled.index_of:
            ids.append(image_id)
            images.append(image)
    if not ids:
        raise UserError(f"no decodable labelled image in {source} ({labels})")
    notes = labelled.notes()
    undecodable = len(labelled.index_of) - len(ids)
    if undecodable:
        notes.append(f"{undecodable} labelled images could not be decoded and were left out")
    label_array = np.array([labelled.index_of[image_id] for image_id in ids], dtype=np.int64)
    return LabelledImages(ids, images, label_array, notes)


def image_clusters(ids: list[str], mode: str) -> np.ndarray | None:
    """Cluster id of each image for the bootstrap: None (each image alone) or its folder."""
    if mode == "image":
        return None
    return np.array([str(PurePosixPath(image_id).parent) for image_id in ids])


def sweep_variants(config: SeveritySweepConfig) -> list[tuple[Variant, str]]:
    """The clean images, then one variant per (perturbation, level), each with its results label."""
    variants: list[tuple[Variant, str]] = [(CLEAN, CLEAN.name)]
    for sweep in config.sweeps:
        name, parameter = str(sweep["perturbation"]), str(sweep["parameter"])
        fixed = dict(sweep.get("params", {}))
        label = f"{name}:{parameter}"
        for level in sweep["levels"]:
            perturbation = _perturbation(name, parameter, level, fixed, config.seed)
            variants.append((Variant(f"{label}={level:g}", perturbation, level=float(level)), label))
    return variants


def _perturbation(name: str, parameter: str, level: Any, fixed: dict[str, Any], seed: int) -> Perturbation:
    probe = make_perturbation(name, **fixed)
    if parameter not in probe.defaults:
        raise ValueError(
            f"perturbation {name!r} has no parameter {parameter!r}; known: {sorted(probe.defaults)}"
        )
    params = {**fixed, parameter: level}
    if "seed" in probe.defaults and "seed" not in fixed:
        params["seed"] = seed
    return make_perturbation(name, **params)


@dataclass
class _Measured:
    """The labelled images every variant gave logits for, their labels and logits."""

    hierarchy: Hierarchy
    space: str
    ids: list[str]
    labels: np.ndarray
    logits: dict[Variant, np.ndarray]  # rows in `ids` order
    lost: int
    notes: list[str]
    result: EngineResult
    source: ImageSource


def _measure(config: SeveritySweepConfig, variants: list[Variant]) -> _Measured:
    """Labels, then one engine run whose cohort holds the ids with logits in every variant."""
    if not config.hierarchy:
        raise UserError("a severity run needs a class hierarchy (--hierarchy / hierarchy = PATH)")
    hierarchy = Hierarchy.load(config.hierarchy)
    space = logits_space(config.space)
    source = open_source(config.source)
    labelled = read_labels(source.ids(), config.labels, hierarchy)
    if not labelled.index_of:
        raise UserError(f"no image of {config.source} has a label ({config.labels})")
    cohort = Cohort.of("severity", *variants)
    settings = dataclasses.replace(
        engine_config(config), reservoir_size=max(config.reservoir_size, len(source))
    )
    result = run_engine(source, variants, [space], None, settings, cohorts=[cohort])
    if space in result.space_errors:
        raise UserError(f"space {space} could not load: {result.space_errors[space]}")
    dim = result.spaces[space]["dim"]
    if dim != len(hierarchy.leaves):
        raise UserError(
            f"space {space} gives {dim} logits but {hierarchy.source} has {len(hierarchy.leaves)} classes"
        )
    cells = result.cohort(cohort, space)
    assert cells is not None and cells.complete  # the reservoir was sized to hold every image
    ids = cells.cell(CLEAN).ids
    keep = [row for row, image_id in enumerate(ids) if image_id in labelled.index_of]
    if not keep:
        raise UserError(f"no labelled image of {config.source} gave logits in every variant")
    logits = {variant: np.asarray(cells.features(variant), dtype=np.float64)[keep] for variant in variants}
    kept = [ids[row] for row in keep]
    labels = np.array([labelled.index_of[image_id] for image_id in kept], dtype=np.int64)
    notes = [*labelled.notes(), *engine_notes(result)]
    lost = len(labelled.index_of) - len(kept)
    if lost:
        notes.append(f"{lost} labelled images gave no logits in some variant and were left out of all")
    return _Measured(hierarchy, space, kept, labels, logits, lost, notes, result, source)


def _rows(
    config: SeveritySweepConfig,
    measured: _Measured,
    variant: Variant,
    label: str,
    distances: np.ndarray,
    clean: PerImageSeverity | None,
) -> list[ResultRow]:
    """Metric rows of one variant (and, for a perturbed one, the paired change from clean)."""
    clusters = image_clusters(measured.ids, config.clusters)
    logits, labels = measured.logits[variant], measured.labels
    estimated = severity_with_intervals(
        logits, labels, distances, config.ks, clusters=clusters, num_boot=config.bootstrap, seed=config.seed
    )
    terms = per_image_severity(logits, labels, distances, config.ks)
    notes = [f"resampled {estimated.clusters} folders"] if clusters is not None else []
    common = {"variant": label, "region": WHOLE_IMAGE, "level": variant.level}
    rows = []
    for metric in metric_names(config.ks):
        extra = list(notes)
        if metric == MISTAKE_SEVERITY:
            extra.append(f"mean over {estimated.mistakes} mistakes of {estimated.images} images")
            if not estimated.mistakes:
                extra.append("no mistakes: undefined")
        row = ResultRow(
            EXPERIMENT,
            measured.space,
            metric,
            estimated.estimates[metric].estimate,
            estimated.counts(metric),
            lost=measured.lost,
            diagnostics=tuple(extra),
            **common,
        )
        rows.append(row.with_bootstrap(estimated.estimates[metric]))
    if clean is not None:
        changes = paired_change_with_intervals(
            clean, terms, clusters=clusters, num_boot=config.bootstrap, seed=config.seed
        )
        for metric in metric_names(config.ks):
            row = ResultRow(
                EXPERIMENT,
                measured.space,
                metric + CHANGE_SUFFIX,
                changes[metric].estimate,
                estimated.images,
                lost=measured.lost,
                diagnostics=(*notes, "paired with the clean images"),
                **common,
            )
            rows.append(row.with_bootstrap(changes[metric]))
    return rows


def run_severity_sweep(config: SeveritySweepConfig) -> ExperimentOutput:
    """Severity metrics of the clean images and of every perturbation level, as a tidy table."""
    planned = sweep_variants(config)
    measured = _measure(config, [variant for variant, _ in planned])
    distances = measured.hierarchy.leaf_distances()
    clean = per_image_severity(measured.logits[CLEAN], measured.labels, distances, config.ks)
    rows: list[ResultRow] = []
    for variant, label in planned:
        reference = None if variant.is_clean else clean
        rows.extend(_rows(config, measured, variant, label, distances, reference))
    manifest = {
        "source": measured.source.manifest(),
        "source_manifest_hash": measured.source.manifest_hash(),
        "hierarchy": measured.hierarchy.describe(),
        "images": len(measured.ids),
        "spaces": measured.result.spaces,
        "cache": {"hits": measured.result.cache_hits, "misses": measured.result.cache_misses},
        "timings": measured.result.timings,
        "config": asdict(config),
    }
    return ExperimentOutput(
        results_frame(rows), measured.notes, manifest, measured.result, list(measured.result.decode_skips)
    )


def measure_severity(config: SeveritySweepConfig) -> ExperimentOutput:
    """The clean images only: what `fdbench severity` prints."""
    return run_severity_sweep(dataclasses.replace(config, sweeps=[]))


register_experiment(EXPERIMENT, SeveritySweepConfig, run_severity_sweep)
