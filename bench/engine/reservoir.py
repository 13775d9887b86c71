"""A seeded feature reservoir that does not depend on chunking, sharding or processing order.

Every image gets a priority u = hash(seed, image id) in [0, 1); the reservoir keeps the `size` images of
lowest priority. Selecting per chunk and then across chunks gives the same set as selecting over the whole
source at once, so reservoirs from shards and resumed runs merge exactly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np


def priority(seed: int, image_id: str) -> float:
    """Uniform pseudo-random priority in [0, 1) determined by (seed, image id) alone."""
    digest = hashlib.sha256(f"fdbench-reservoir:{seed}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2.0**64


@dataclass
class Reservoir:
    """Up to `size` feature rows (float32) with their ids, chosen by lowest priority."""

    size: int
    seed: int
    ids: list[str] = field(default_factory=list)
    features: np.ndarray | None = None
    priorities: np.ndarray = field(default_factory=lambda: np.empty(0))

    def offer(self, ids: list[str], features: np.ndarray) -> None:
        """Consider new rows; keep the `size` of lowest priority among those held and offered."""
        if self.size <= 0 or not ids:
            return
        offered = np.array([priority(self.seed, image_id) for image_id in ids])
        all_ids = self.ids + list(ids)
        all_features = features if self.features is None else np.concatenate([self.features, features])
        all_priorities = np.concatenate([self.priorities, offered])
        keep = np.sort(np.argsort(all_priorities, kind="stable")[: self.size])
        self.ids = [all_ids[i] for i in keep]
        self.features = all_features[keep]
        self.priorities = all_priorities[keep]

    def merge(self, other: Reservoir) -> None:
        """Fold another reservoir of the same seed and size into this one."""
        if other.features is not None:
            self.offer(other.ids, other.features)

    def ordered(self) -> tuple[list[str], np.ndarray | None]:
        """Held ids and features sorted by id, so results do not depend on arrival order."""
        if self.features is None:
            return [], None
        order = sorted(range(len(self.ids)), key=self.ids.__getitem__)
        return [self.ids[i] for i in order], self.features[order]
