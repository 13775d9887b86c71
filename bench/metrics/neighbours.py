"""k-NN manifold metrics: precision/recall (Kynkäänniemi et al. 2019), density/coverage (Naeem et al. 2020).

Each real sample gets a radius, the distance to its k-th nearest real neighbour (itself excluded). Precision
is the fraction of generated samples inside at least one real ball; recall swaps the roles (balls around
generated samples). Density counts, per generated sample, how many real balls contain it (divided by k);
coverage is the fraction of real balls that contain at least one generated sample. Distances are
Euclidean, computed in float64 in row chunks so memory stays bounded.

Ties follow each metric's reference code, and the results say which: precision/recall count a sample at
exactly the radius as inside (distance ≤ radius, NVIDIA's code, k = 3); density/coverage count it as
outside (distance < radius, the authors' `prdc` package, k = 5).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.stats import FeatureError, as_float64_features

_CHUNK_ROWS = 1024


INSIDE_OR_ON = "distance ≤ radius"  # precision/recall (NVIDIA)
STRICTLY_INSIDE = "distance < radius"  # density/coverage (prdc)


@dataclass
class PrecisionRecall:
    """Precision and recall with the k used for the radii and the tie rule for "inside a ball"."""

    precision: float
    recall: float
    k: int
    inside: str = INSIDE_OR_ON

    def notes(self) -> tuple[str, ...]:
        """k and the tie rule, as a phrase for a results table."""
        return (f"k = {self.k}, inside a ball when {self.inside}",)


@dataclass
class DensityCoverage:
    """Density and coverage with the k used for the radii and the tie rule for "inside a ball"."""

    density: float
    coverage: float
    k: int
    inside: str = STRICTLY_INSIDE

    def notes(self) -> tuple[str, ...]:
        """k and the tie rule, as a phrase for a results table."""
        return (f"k = {self.k}, inside a ball when {self.inside}",)


def _distance_chunks(rows: np.ndarray, columns: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield (row slice, Euclidean distances of those rows to every column point), float64."""
    column_norms = np.einsum("ij,ij->i", columns, columns)
    for start in range(0, rows.shape[0], _CHUNK_ROWS):
        block = rows[start : start + _CHUNK_ROWS]
        squared = (
            np.einsum("ij,ij->i", block, block)[:, None] + column_norms[None, :] - 2.0 * block @ columns.T
        )
        yield slice(start, start + block.shape[0]), np.sqrt(np.clip(squared, 0.0, None))


def knn_radii(points: np.ndarray, k: int) -> np.ndarray:
    """Distance from each point to its k-th nearest other point of the same set."""
    if not 1 <= k < points.shape[0]:
        raise FeatureError(f"k = {k} nearest neighbours need between 1 and n − 1 = {points.shape[0] - 1}")
    radii = np.empty(points.shape[0])
    for rows, distances in _distance_chunks(points, points):
        # Index k in the sorted row skips the point itself (distance 0 at index 0).
        radii[rows] = np.partition(distances, k, axis=1)[:, k]
    return radii


def _validate(real: Any, fake: Any) -> tuple[np.ndarray, np.ndarray]:
    first = as_float64_features(real, name="real features")
    second = as_float64_features(fake, name="generated features")
    if first.shape[1] != second.shape[1]:
        raise FeatureError(f"dimension mismatch: real d = {first.shape[1]}, generated d = {second.shape[1]}")
    return first, second


def _fraction_inside_any_ball(queries: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    """Fraction of queries within distance ≤ radius of at least one centre."""
    inside = np.zeros(queries.shape[0], dtype=bool)
    for rows, distances in _distance_chunks(queries, centres):
        inside[rows] = (distances <= radii[None, :]).any(axis=1)
    return float(inside.mean())


def precision_recall(real: Any, fake: Any, k: int = 3) -> PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi et al. 2019), k = 3 by default (NVIDIA convention)."""
    first, second = _validate(real, fake)
    precision = _fraction_inside_any_ball(second, first, knn_radii(first, k))
    recall = _fraction_inside_any_ball(first, second, knn_radii(second, k))
    return PrecisionRecall(precision=precision, recall=recall, k=k)


def density_coverage(real: Any, fake: Any, k: int = 5) -> DensityCoverage:
    """Density and coverage (Naeem et al. 2020), k = 5 by default; radii from the real set only; a sample
    is inside a ball when its distance is strictly below the radius, as in the authors' `prdc`."""
    first, second = _validate(real, fake)
    radii = knn_radii(first, k)
    ball_counts = np.zeros(second.shape[0])
    for rows, distances in _distance_chunks(second, first):
        ball_counts[rows] = (distances < radii[None, :]).sum(axis=1)
    covered = np.zeros(first.shape[0], dtype=bool)
    for rows, distances in _distance_chunks(first, second):
        covered[rows] = distances.min(axis=1) < radii[rows]
    return DensityCoverage(
        density=float(ball_counts.sum() / (k * second.shape[0])), coverage=float(covered.mean()), k=k
    )
