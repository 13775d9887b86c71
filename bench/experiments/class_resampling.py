"""Class-histogram resampling (Kynkäänniemi et al. 2023; METHODS §10): how much of a space's FD is
ImageNet-class matching rather than image quality?

An ImageNet classifier gives every reference and candidate image a Top-1 label. One log-weight per
candidate (softmax-normalised) is learned so that the weighted Top-1 histogram of the candidates matches
the reference's; N images drawn by those weights without replacement (seeded) form the "matched" set,
N drawn uniformly the "random" set. FD(reference, random) and FD(reference, matched) in every space, with
a paired bootstrap: each replicate resamples the reference once for both FDs (and each generated set on
its own), so their difference and the share of FD that matching removes carry intervals. FD in an
ImageNet-supervised space drops; in spaces that do not encode ImageNet classes it should barely move.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from bench.engine import CLEAN, Cell, EngineResult, run_engine
from bench.experiments.common import (
    EngineSettings,
    ExperimentOutput,
    ResultRow,
    engine_config,
    engine_notes,
    results_frame,
)
from bench.experiments.runner import register_experiment
from bench.metrics.bootstrap import bootstrap
from bench.metrics.frechet import frechet_distance_resampled
from bench.sources import open_source

EXPERIMENT = "class_resampling"
CLASSIFIER = "efficientnet-lite0-imagenet-logits"
DEFAULT_SPACES = ["efficientnet-lite0-imagenet", "augnet-r50", "dlib-face-id"]
MIN_CANDIDATE_RATIO = 5  # candidates ≥ 5 × N, as in the paper
RANDOM, MATCHED = "random", "class-matched"
PAIRED_CHANGE = ("FD(matched) − FD(random); the reference resampled once for both",)


@dataclass
class ClassResamplingConfig(EngineSettings):
    """Settings of a class-histogram resampling probe (every field can be set from a TOML table)."""

    reference: str = ""
    candidates: str = "dcgan-faces:count=640,seed=0"
    size: int | None = None  # N; default min(reference size, candidates // 5)
    classifier: str = CLASSIFIER  # a space whose features are ImageNet logits
    spaces: list[str] = field(default_factory=lambda: list(DEFAULT_SPACES))
    steps: int = 400  # Adam steps of the log-weight fit
    learning_rate: float = 0.1
    bootstrap: int = 200

    def __post_init__(self) -> None:
        if self.size is not None and self.size < 2:
            raise ValueError(f"size must be at least 2 images, got {self.size}")
        if self.steps < 1 or not self.learning_rate > 0:
            raise ValueError("steps must be ≥ 1 and learning_rate > 0")


# ------------------------------------------------------------------------------------------ histograms


def top1_histogram(labels: np.ndarray, num_classes: int, weights: np.ndarray | None = None) -> np.ndarray:
    """The (weighted) share of each class among Top-1 labels; sums to 1."""
    counts = np.bincount(labels, weights=weights, minlength=num_classes).astype(np.float64)
    return counts / counts.sum()


def total_variation(first: np.ndarray, second: np.ndarray) -> float:
    """½ Σ |p − q|: 0 for equal histograms, 1 for disjoint ones."""
    return float(0.5 * np.abs(np.asarray(first) - np.asarray(second)).sum())


def learn_log_weights(
    candidate_labels: np.ndarray, target: np.ndarray, *, steps: int = 400, learning_rate: float = 0.1
) -> np.ndarray:
    """Softmax weights over candidates whose weighted Top-1 histogram matches `target`.

    Minimises the cross-entropy −Σ_c t_c log h_c(w) of the weighted histogram h(w) = Σ_i w_i e_{label_i},
    w = softmax(θ), with Adam from θ = 0; its minimum is h = t renormalised over the classes some
    candidate holds (the rest of t cannot be reached by any weighting). Candidates of one class keep
    equal weights (they receive equal gradients), so no image is favoured within its class.
    """
    labels = torch.as_tensor(np.asarray(candidate_labels), dtype=torch.long)
    goal = torch.as_tensor(np.asarray(target), dtype=torch.float64)
    theta = torch.zeros(labels.numel(), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.Adam([theta], lr=learning_rate)
    tiny = torch.finfo(torch.float64).tiny
    for _ in range(steps):
        optimiser.zero_grad()
        weights = torch.softmax(theta, dim=0)
        histogram = torch.zeros_like(goal).index_add(0, labels, weights)
        loss = -(goal * torch.log(histogram + tiny)).sum()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return torch.softmax(theta, dim=0).numpy()


def draw_sets(weights: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(random, matched): `size` candidate indices drawn uniformly and by `weights`, both without
    replacement, from one seeded generator."""
    if size > weights.size:
        raise ValueError(f"cannot draw {size} images without replacement from {weights.size} candidates")
    rng = np.random.default_rng(seed)
    uniform = rng.choice(weights.size, size=size, replace=False)
    matched = rng.choice(weights.size, size=size, replace=False, p=weights / weights.sum())
    return np.sort(uniform), np.sort(matched)


# ------------------------------------------------------------------------------------------ FD before/after


def fd_before_after(
    reference: np.ndarray,
    random_set: np.ndarray,
    matched_set: np.ndarray,
    *,
    num_boot: int,
    seed: int,
) -> dict[str, Any]:
    """FD(reference, random), FD(reference, matched), their difference and the share explained, each a
    `BootstrapEstimate`; one reference draw per replicate serves both FDs (paired)."""

    def statistic(draw: dict[str, np.ndarray]) -> dict[str, float]:
        before = frechet_distance_resampled(reference, draw["reference"], random_set, draw[RANDOM]).value
        after = frechet_distance_resampled(reference, draw["reference"], matched_set, draw[MATCHED]).value
        values = {"fd_random": before, "fd_matched": after, "fd_change": after - before}
        if before > 0:
            values["fd_explained"] = (before - after) / before
        return values

    groups = {"reference": len(reference), RANDOM: len(random_set), MATCHED: len(matched_set)}
    return bootstrap(statistic, groups, num_boot=num_boot, seed=seed)


# ------------------------------------------------------------------------------------------ the experiment


@dataclass
class _Candidates:
    """The classifier's view of the candidates: ids (sorted, as in the engine's cells) and Top-1 labels."""

    ids: list[str]
    labels: np.ndarray


def _labels_of(cell: Cell | None, role: str) -> _Candidates:
    if cell is None or cell.features is None or not cell.reservoir_is_complete or cell.n < 2:
        raise ValueError(f"the classifier gave no complete set of logits for the {role} images")
    return _Candidates(list(cell.ids), np.asarray(cell.features).argmax(axis=1))


def run_class_resampling(config: ClassResamplingConfig) -> ExperimentOutput:
    """Label, learn weights, draw the random and matched sets and compare their FDs in every space."""
    if not config.reference:
        raise ValueError("class resampling needs a reference source (reference = ...)")
    reference, candidates = open_source(config.reference), open_source(config.candidates)
    size = config.size or min(len(reference), len(candidates) // MIN_CANDIDATE_RATIO)
    if len(candidates) < MIN_CANDIDATE_RATIO * size or size < 2:
        raise ValueError(
            f"class resampling needs at least {MIN_CANDIDATE_RATIO} × N candidates: N = {size}, "
            f"{len(candidates)} candidates given"
        )
    spaces = list(dict.fromkeys([config.classifier, *config.spaces]))
    settings = dataclasses.replace(
        engine_config(config), reservoir_size=max(config.reservoir_size, len(reference), len(candidates))
    )
    ref_result = run_engine(reference, [CLEAN], spaces, None, settings)
    cand_result = run_engine(candidates, [CLEAN], spaces, None, settings)
    notes = list(dict.fromkeys(engine_notes(ref_result) + engine_notes(cand_result)))
    if config.classifier in ref_result.space_errors:
        reason = ref_result.space_errors[config.classifier]
        raise ValueError(f"classifier {config.classifier} could not load: {reason}")
    ref_labels = _labels_of(ref_result.cell(CLEAN, config.classifier), "reference")
    pool = _labels_of(cand_result.cell(CLEAN, config.classifier), "candidate")
    num_classes = int(ref_result.spaces[config.classifier]["dim"])
    target = top1_histogram(ref_labels.labels, num_classes)
    weights = learn_log_weights(pool.labels, target, steps=config.steps, learning_rate=config.learning_rate)
    random_rows, matched_rows = draw_sets(weights, size, config.seed)
    rows = _histogram_rows(config, target, pool, weights, random_rows, matched_rows, num_classes)
    drawn = {RANDOM: [pool.ids[i] for i in random_rows], MATCHED: [pool.ids[i] for i in matched_rows]}
    for space in config.spaces:
        if space in ref_result.space_errors:
            continue
        rows.extend(_fd_rows(config, space, ref_result, cand_result, drawn, notes))
    manifest = {
        "sources": {"reference": reference.manifest_hash(), "candidates": candidates.manifest_hash()},
        "source_manifest_hash": candidates.manifest_hash(),
        "size": size,
        "drawn": drawn,
        "spaces": {**ref_result.spaces},
        "config": asdict(config),
    }
    skipped = [(f"reference/{n}", r) for n, r in ref_result.decode_skips]
    skipped += [(f"candidates/{n}", r) for n, r in cand_result.decode_skips]
    return ExperimentOutput(results_frame(rows), notes, manifest, skipped_files=skipped)


def _histogram_rows(
    config: ClassResamplingConfig,
    target: np.ndarray,
    pool: _Candidates,
    weights: np.ndarray,
    random_rows: np.ndarray,
    matched_rows: np.ndarray,
    num_classes: int,
) -> list[ResultRow]:
    """Top-1 histogram distance to the reference: random draw, learned weighting, matched draw."""
    reachable = float(target[np.unique(pool.labels)].sum())
    floor = (f"reference mass on classes no candidate holds: {1.0 - reachable:.3f} (the least TV possible)",)
    values = {
        RANDOM: total_variation(top1_histogram(pool.labels[random_rows], num_classes), target),
        "weighted": total_variation(top1_histogram(pool.labels, num_classes, weights), target),
        MATCHED: total_variation(top1_histogram(pool.labels[matched_rows], num_classes), target),
    }
    counts = {RANDOM: len(random_rows), "weighted": len(pool.labels), MATCHED: len(matched_rows)}
    return [
        ResultRow(
            experiment=EXPERIMENT,
            space=config.classifier,
            metric="top1_histogram_tv",
            value=value,
            n=counts[variant],
            variant=variant,
            region="All",
            diagnostics=floor,
        )
        for variant, value in values.items()
    ]


def _fd_rows(
    config: ClassResamplingConfig,
    space: str,
    ref_result: EngineResult,
    cand_result: EngineResult,
    drawn: dict[str, list[str]],
    notes: list[str],
) -> list[ResultRow]:
    """FD random/matched with paired intervals, their change and the share explained, in one space."""
    ref_cell, cand_cell = ref_result.cell(CLEAN, space), cand_result.cell(CLEAN, space)
    cells = (ref_cell, cand_cell)
    if any(cell is None or not cell.reservoir_is_complete for cell in cells):
        notes.append(f"space {space}: no complete feature sets; left out")
        return []
    row_of = {image_id: row for row, image_id in enumerate(cand_cell.ids)}
    kept = {name: [row_of[i] for i in ids if i in row_of] for name, ids in drawn.items()}
    lost = {name: len(drawn[name]) - len(rows) for name, rows in kept.items()}
    if ref_cell.n < 2 or min(len(rows) for rows in kept.values()) < 2:
        notes.append(f"space {space}: fewer than 2 images with features in a set; left out")
        return []
    features = np.asarray(cand_cell.features)
    random_set, matched_set = features[kept[RANDOM]], features[kept[MATCHED]]
    estimates = fd_before_after(
        np.asarray(ref_cell.features), random_set, matched_set, num_boot=config.bootstrap, seed=config.seed
    )
    n = {RANDOM: min(ref_cell.n, len(kept[RANDOM])), MATCHED: min(ref_cell.n, len(kept[MATCHED]))}
    both = min(n.values())
    rows = [
        _estimate_row(space, "fd", estimates["fd_random"], n[RANDOM], RANDOM, lost=lost[RANDOM]),
        _estimate_row(space, "fd", estimates["fd_matched"], n[MATCHED], MATCHED, lost=lost[MATCHED]),
        _estimate_row(space, "fd_change", estimates["fd_change"], both, MATCHED, diagnostics=PAIRED_CHANGE),
    ]
    explained = estimates.get("fd_explained")
    if explained is not None and math.isfinite(explained.estimate):
        note = ("share of FD(random) removed by class-histogram matching",)
        rows.append(_estimate_row(space, "fd_explained", explained, both, MATCHED, diagnostics=note))
    return rows


def _estimate_row(space: str, metric: str, estimate: Any, n: int, variant: str, **details: Any) -> ResultRow:
    """A row holding a bootstrap estimate with its interval."""
    row = ResultRow(EXPERIMENT, space, metric, estimate.estimate, n, variant=variant, region="All", **details)
    return row.with_bootstrap(estimate)


register_experiment(EXPERIMENT, ClassResamplingConfig, run_class_resampling)
