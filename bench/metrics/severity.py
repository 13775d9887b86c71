"""Mistake-severity metrics of a classifier (METHODS §7; Bertinetto et al. 2020), with bootstrap intervals.

From logits, true class indices and a class-distance matrix (LCA heights, `bench.hierarchy`):

- top-1 error: the fraction of images whose highest logit is not the true class;
- mistake severity: the mean distance between the predicted and the true class over the mistakes only;
- hierarchical distance@k: the mean over images of the mean distance between the true class and each of
  the k highest-scoring classes (a correct class counts 0).

Rankings break ties between equal logits towards the lower class index. Intervals come from the shared
bootstrap (`bench.metrics.bootstrap`): images are resampled, or whole clusters of images when several
images are views of one photo, and every metric of a replicate uses the same draw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bench.metrics.bootstrap import BootstrapEstimate, bootstrap

DEFAULT_KS: tuple[int, ...] = (1, 5, 20)
TOP1_ERROR = "top1_error"
MISTAKE_SEVERITY = "mistake_severity"


def hdist_name(k: int) -> str:
    """The metric name of hierarchical distance@k."""
    return f"hdist@{k}"


def metric_names(ks: Sequence[int] = DEFAULT_KS) -> list[str]:
    """Metric names in report order."""
    return [TOP1_ERROR, MISTAKE_SEVERITY, *(hdist_name(k) for k in ks)]


def top_k(logits: np.ndarray, k: int) -> np.ndarray:
    """(N, k) class indices by decreasing logit; equal logits rank the lower index first."""
    return np.argsort(-np.asarray(logits, dtype=np.float64), axis=1, kind="stable")[:, :k]


@dataclass(frozen=True)
class PerImageSeverity:
    """Per-image terms whose means are the metrics: error (0/1), top-1 distance, mean top-k distances."""

    error: np.ndarray  # (N,) bool
    top1_distance: np.ndarray  # (N,) distance of the top-1 class to the true class (0 when correct)
    topk_distance: dict[int, np.ndarray]  # k -> (N,) mean distance of the top-k classes
    ceiling: float  # the largest distance between two classes

    @property
    def n(self) -> int:
        return int(self.error.size)

    def metrics(self, rows: np.ndarray | None = None) -> dict[str, float]:
        """The metrics over `rows` (all images by default; repeated rows count repeatedly)."""
        rows = np.arange(self.n) if rows is None else rows
        error = self.error[rows]
        values = {TOP1_ERROR: float(error.mean())}
        mistakes = int(error.sum())
        values[MISTAKE_SEVERITY] = float(self.top1_distance[rows][error].mean()) if mistakes else np.nan
        for k, distance in self.topk_distance.items():
            values[hdist_name(k)] = float(distance[rows].mean())
        return values


def per_image_severity(
    logits: np.ndarray, labels: np.ndarray, distances: np.ndarray, ks: Sequence[int] = DEFAULT_KS
) -> PerImageSeverity:
    """The per-image terms of every metric, after checking shapes, labels and values."""
    logits, labels, distances = _checked(logits, labels, distances, ks)
    ranked = top_k(logits, max(ks))
    ranked_distance = distances[labels[:, None], ranked].astype(np.float64)
    return PerImageSeverity(
        error=ranked[:, 0] != labels,
        top1_distance=ranked_distance[:, 0],
        topk_distance={k: ranked_distance[:, :k].mean(axis=1) for k in ks},
        ceiling=float(np.max(distances)),
    )


def severity_metrics(
    logits: np.ndarray, labels: np.ndarray, distances: np.ndarray, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """Top-1 error, mistake severity (NaN without mistakes) and hierarchical distance@k, as plain numbers."""
    return per_image_severity(logits, labels, distances, ks).metrics()


@dataclass
class SeverityEstimates:
    """Every metric with its bootstrap interval, the images it rests on and the mistakes among them."""

    estimates: dict[str, BootstrapEstimate]
    images: int
    mistakes: int
    clusters: int

    def counts(self, metric: str) -> int:
        """n of a metric: the mistakes for mistake severity, the images otherwise."""
        return self.mistakes if metric == MISTAKE_SEVERITY else self.images


def severity_with_intervals(
    logits: np.ndarray,
    labels: np.ndarray,
    distances: np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    clusters: np.ndarray | None = None,
    num_boot: int = 200,
    seed: int = 0,
    method: str = "basic",
) -> SeverityEstimates:
    """Metrics with bootstrap intervals; `clusters` (one id per image) resamples whole clusters instead."""
    terms = per_image_severity(logits, labels, distances, ks)
    rows_of, groups = _resampling(clusters, terms.n)

    def statistic(draw: dict[str, np.ndarray]) -> dict[str, float]:
        return terms.metrics(rows_of(draw))

    estimates = bootstrap(statistic, groups, num_boot=num_boot, seed=seed, method=method)
    ceiling = float(np.max(distances))
    clipped = {
        name: estimate.within(0.0, 1.0 if name == TOP1_ERROR else ceiling)
        for name, estimate in estimates.items()
    }
    return SeverityEstimates(clipped, terms.n, int(terms.error.sum()), next(iter(groups.values())))


def paired_change_with_intervals(
    before: PerImageSeverity,
    after: PerImageSeverity,
    *,
    clusters: np.ndarray | None = None,
    num_boot: int = 200,
    seed: int = 0,
    method: str = "basic",
) -> dict[str, BootstrapEstimate]:
    """metric(after) − metric(before) on the same images, each replicate drawing one set for both."""
    if before.n != after.n:
        raise ValueError(f"a paired change needs the same images before and after ({before.n} vs {after.n})")
    rows_of, groups = _resampling(clusters, before.n)

    def statistic(draw: dict[str, np.ndarray]) -> dict[str, float]:
        rows = rows_of(draw)
        first, second = before.metrics(rows), after.metrics(rows)
        return {name: second[name] - first[name] for name in first}

    estimates = bootstrap(statistic, groups, num_boot=num_boot, seed=seed, method=method)
    limits = {name: 1.0 if name == TOP1_ERROR else before.ceiling for name in estimates}
    return {name: estimate.within(-limits[name], limits[name]) for name, estimate in estimates.items()}


def _resampling(
    clusters: np.ndarray | None, n: int
) -> tuple[Callable[[dict[str, np.ndarray]], np.ndarray], dict[str, int]]:
    """The bootstrap group and how a draw becomes image rows: images themselves, or whole clusters.

    Clusters are numbered in order of first appearance; a drawn cluster contributes all its images.
    """
    if clusters is None:
        return (lambda draw: draw["images"]), {"images": n}
    clusters = np.asarray(clusters)
    if clusters.shape != (n,):
        raise ValueError(f"clusters must give one id per image ({n}), got shape {clusters.shape}")
    _, first, inverse = np.unique(clusters, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    members = [np.flatnonzero(inverse == cluster) for cluster in order]
    return (lambda draw: np.concatenate([members[i] for i in draw["clusters"]])), {"clusters": len(members)}


def _checked(
    logits: np.ndarray, labels: np.ndarray, distances: np.ndarray, ks: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    distances = np.asarray(distances)
    if logits.ndim != 2 or logits.shape[0] == 0:
        raise ValueError(f"logits must be a non-empty (N, classes) array, got shape {logits.shape}")
    n, classes = logits.shape
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be {n} integer class indices, got shape {labels.shape} {labels.dtype}")
    if distances.shape != (classes, classes):
        raise ValueError(
            f"the distance matrix must be {classes}×{classes} for {classes} logits, got {distances.shape}"
        )
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if bad.size:
        raise ValueError(f"labels out of range 0…{classes - 1} at row(s) {bad[:5].tolist()}")
    broken = np.flatnonzero(~np.isfinite(logits).all(axis=1))
    if broken.size:
        raise ValueError(f"logits are not finite in row(s) {broken[:5].tolist()}")
    if not ks or any(not 1 <= k <= classes for k in ks):
        raise ValueError(f"every k must lie in 1 … {classes}, got {list(ks)}")
    return logits, labels.astype(np.int64), distances
