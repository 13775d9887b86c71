"""Variants: the ways a run presents each image to the feature spaces (clean or perturbed).

A variant names a perturbation (None for the clean images), the region whose mask the perturbation gets,
and the image subsets whose statistics are kept. A subset is a region name (only images whose mask holds
that region count) or "all". The clean variant of a region-blur run keeps one subset per region, so each
region's FD compares the same images before and after the blur.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.hashing import stable_hash
from bench.perturbations import Perturbation

ALL_IMAGES = "all"


@dataclass(frozen=True)
class Variant:
    """One presentation of the images: a perturbation (or none), its mask region, and subsets kept."""

    name: str
    perturbation: Perturbation | None = None
    region: str | None = None
    subsets: tuple[str, ...] = (ALL_IMAGES,)

    def __post_init__(self) -> None:
        if not self.subsets:
            raise ValueError(f"variant {self.name!r} keeps no subsets; give at least ('all',)")

    @property
    def needs_masks(self) -> bool:
        """True when the perturbation uses a region mask or a subset selects images by region."""
        uses_region = self.region is not None and self.region != "All"
        return uses_region or any(subset not in (ALL_IMAGES, "All") for subset in self.subsets)

    def spec(self) -> dict[str, Any]:
        """What identifies this variant's pixels and subsets (part of every cache key)."""
        return {
            "name": self.name,
            "perturbation": None if self.perturbation is None else self.perturbation.spec(),
            "region": self.region,
            "subsets": list(self.subsets),
        }

    @property
    def key(self) -> str:
        """Short stable hash of `spec()`."""
        return stable_hash(self.spec())
