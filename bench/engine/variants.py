"""Variants: the ways a run presents each image to the feature spaces (clean or perturbed).

A variant is a typed record: a perturbation (None for the clean images), the face region it acts on, and
the sweep level it stands for. Its identity is its spec (perturbation spec, region, level), never its
display name, so experiments look cells up by the Variant object they built. A variant whose region is a
face region is applied only to the images in which that region is present (see `bench.masks`); the
others are left unchanged and are not extracted again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.hashing import stable_hash
from bench.perturbations import Perturbation

WHOLE_IMAGE = "All"


@dataclass(frozen=True, eq=False)
class Variant:
    """One presentation of the images: a perturbation (or none), the region it acts on, a sweep level.

    `name` is a display label that must be unique within a run (it names cache entries and log lines).
    """

    name: str
    perturbation: Perturbation | None = None
    region: str = WHOLE_IMAGE
    level: float | None = None

    @property
    def is_clean(self) -> bool:
        """True for the unperturbed images."""
        return self.perturbation is None

    @property
    def needs_masks(self) -> bool:
        """True when the variant acts on a face region (its images are chosen and masked by region)."""
        return self.region != WHOLE_IMAGE

    def spec(self) -> dict[str, Any]:
        """What identifies this variant's pixels (part of every cache key)."""
        return {
            "perturbation": None if self.perturbation is None else self.perturbation.spec(),
            "region": self.region,
            "level": self.level,
        }

    @property
    def key(self) -> str:
        """Short stable hash of `spec()`."""
        return stable_hash(self.spec())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Variant) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)


CLEAN = Variant("clean")
