"""Cohorts: the image ids on which several variants are compared, so that every FD is paired.

A cohort lists member variants (clean first, by convention) and optionally a variant whose region its
images must hold (`within`). An image id belongs to the cohort when every member has a feature for it, so
all the statistics of one cohort rest on exactly the same ids: FD(clean, blurred) compares image i with
its own blurred copy, and the numerator and denominator of a ratio use the same images (METHODS §3).

A member may name a `fallback`: where its variant was not applied to an image (the image does not hold
the variant's region, so the variant leaves it unchanged), the fallback's feature stands in. That is the
population form of region blur: B_r leaves images without r unchanged.

Ids the cohort would hold but for a perturbed copy that gave no feature (a face space, say) are counted as
`lost`; ids whose first member (the clean image) has no feature are not the cohort's to lose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from bench.engine.reservoir import Reservoir
from bench.engine.variants import Variant
from bench.stats import GaussianStats


@dataclass(frozen=True)
class Member:
    """A cohort member: a variant, and the variant whose feature stands in where it was not applied."""

    variant: Variant
    fallback: Variant | None = None


@dataclass(frozen=True)
class Cohort:
    """Ids compared across member variants; `within` keeps only ids that variant was applied to."""

    name: str
    members: tuple[Member, ...]
    within: Variant | None = None

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError(f"cohort {self.name!r} has no members")
        chosen = [member.variant for member in self.members]
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"cohort {self.name!r} lists a variant twice")

    @classmethod
    def of(cls, name: str, *variants: Variant, within: Variant | None = None) -> Cohort:
        """A cohort whose members have no fallbacks."""
        return cls(name, tuple(Member(variant) for variant in variants), within)

    def variants(self) -> list[Variant]:
        """Every variant the cohort reads: members, their fallbacks and `within`."""
        found = [member.variant for member in self.members]
        found += [member.fallback for member in self.members if member.fallback is not None]
        if self.within is not None:
            found.append(self.within)
        return list(dict.fromkeys(found))


@dataclass
class ChunkFeatures:
    """What one (chunk, variant, space) produced: the ids it was applied to, the ids that had a label
    map, and the ids with a finite feature row (with those rows)."""

    applied: list[str]
    labelled: list[str]
    ids: list[str]
    features: np.ndarray

    def __post_init__(self) -> None:
        self.row_of = {image_id: row for row, image_id in enumerate(self.ids)}
        self.applied_set = set(self.applied)
        self.labelled_set = set(self.labelled)


def select_members(
    cohort: Cohort, parts: Mapping[Variant, ChunkFeatures], order: Sequence[str]
) -> tuple[list[str], list[np.ndarray], int]:
    """The cohort's ids among `order` (one chunk's decoded ids, in stream order), each member's feature
    rows for them, and how many eligible ids were lost."""
    first = cohort.members[0].variant
    masked = [variant for variant in cohort.variants() if variant.needs_masks]
    kept: list[str] = []
    sources: list[list[tuple[ChunkFeatures, int]]] = [[] for _ in cohort.members]
    lost = 0
    for image_id in order:
        if cohort.within is not None and image_id not in parts[cohort.within].applied_set:
            continue
        if any(image_id not in parts[variant].labelled_set for variant in masked):
            continue
        if image_id not in parts[first].row_of:
            continue  # no feature even for the clean image: not this cohort's loss
        found = [_feature_of(member, parts, image_id) for member in cohort.members]
        if any(entry is None for entry in found):
            lost += 1
            continue
        kept.append(image_id)
        for slot, entry in zip(sources, found, strict=True):
            slot.append(entry)
    dim = parts[first].features.shape[1]
    rows = [
        np.stack([part.features[row] for part, row in slot]) if slot else np.zeros((0, dim), np.float32)
        for slot in sources
    ]
    return kept, rows, lost


def _feature_of(member: Member, parts: Mapping[Variant, ChunkFeatures], image_id: str):
    own = parts[member.variant]
    if image_id in own.row_of:
        return own, own.row_of[image_id]
    if member.fallback is not None and image_id not in own.applied_set:
        fallback = parts[member.fallback]
        if image_id in fallback.row_of:
            return fallback, fallback.row_of[image_id]
    return None


@dataclass
class Cell:
    """Statistics and feature reservoir of one cohort member in one space (ids sorted, as in every other
    member of the cohort)."""

    variant: Variant
    space: str
    stats: GaussianStats | None
    ids: list[str]
    features: np.ndarray | None

    @property
    def n(self) -> int:
        """Images summarised (0 when none qualified)."""
        return 0 if self.stats is None or self.stats.n is None else self.stats.n

    @property
    def reservoir_is_complete(self) -> bool:
        """True when the reservoir holds every row, so exact feature-based metrics can use it."""
        return self.features is not None and len(self.ids) == self.n


@dataclass
class CohortCells:
    """One cohort in one space: a cell per member, all on the same `n` ids, and the ids it lost."""

    cohort: Cohort
    space: str
    cells: dict[Variant, Cell]
    lost: int

    @property
    def n(self) -> int:
        """Ids every member has a feature for."""
        return next(iter(self.cells.values())).n

    @property
    def complete(self) -> bool:
        """True when every member's reservoir holds all n rows (features available for exact metrics)."""
        return all(cell.reservoir_is_complete for cell in self.cells.values())

    def cell(self, variant: Variant) -> Cell:
        """The member cell of `variant`."""
        return self.cells[variant]

    def features(self, variant: Variant) -> np.ndarray:
        """The member's feature rows, aligned with every other member's (sorted ids)."""
        features = self.cells[variant].features
        if features is None:
            raise ValueError(f"cohort {self.cohort.name!r} holds no features in space {self.space}")
        return features


@dataclass
class CohortAccumulator:
    """Running statistics and reservoirs of one cohort in one space, merged chunk after chunk."""

    cohort: Cohort
    space: str
    dim: int
    reservoir_size: int
    reservoir_seed: int
    stats: list[GaussianStats] = field(default_factory=list)
    reservoirs: list[Reservoir] = field(default_factory=list)
    lost: int = 0

    def __post_init__(self) -> None:
        count = len(self.cohort.members)
        self.stats = self.stats or [GaussianStats.empty(self.dim) for _ in range(count)]
        self.reservoirs = self.reservoirs or [
            Reservoir(self.reservoir_size, self.reservoir_seed) for _ in range(count)
        ]

    def add(self, ids: list[str], rows: list[np.ndarray], lost: int) -> None:
        """Fold one chunk's selected ids and member rows in."""
        self.lost += lost
        if not ids:
            return
        for index, member_rows in enumerate(rows):
            self.stats[index] = self.stats[index].merge(GaussianStats.from_features(member_rows))
            self.reservoirs[index].offer(ids, member_rows)

    def merge(self, other: CohortAccumulator) -> None:
        """Fold another shard's accumulator of the same cohort and space in (rank order)."""
        self.lost += other.lost
        for index in range(len(self.stats)):
            self.stats[index] = self.stats[index].merge(other.stats[index])
            self.reservoirs[index].merge(other.reservoirs[index])

    def finish(self) -> CohortCells:
        """The cohort's cells."""
        cells = {}
        for member, stats, reservoir in zip(self.cohort.members, self.stats, self.reservoirs, strict=True):
            ids, features = reservoir.ordered()
            cells[member.variant] = Cell(
                member.variant, self.space, stats if stats.n else None, ids, features
            )
        return CohortCells(self.cohort, self.space, cells, self.lost)
