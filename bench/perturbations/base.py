"""The `Perturbation` contract: a pure, seeded, batched function on uint8 images with a hashable spec.

A perturbation takes a uint8 N×3×H×W batch (and, for region perturbations, boolean N×H×W masks) and returns
a new uint8 batch of the same shape on the same device. Its `spec()` (name, version, parameters) is part
of every cache key. Randomness comes only from the `seed` parameter: image i of a stream uses a CPU
generator seeded from (perturbation name, seed, offset + i), so results do not depend on batch size or
device. Float results are quantised by round-half-to-even (`torch.round`) and clamped to 0–255.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import torch

from bench.hashing import stable_hash

_REGISTRY: dict[str, type[Perturbation]] = {}


class Perturbation:
    """Base class: subclasses set `name`, `defaults` and implement `apply`."""

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    defaults: ClassVar[dict[str, Any]] = {}
    uses_masks: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            _REGISTRY[cls.name] = cls

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"perturbation {self.name!r} has no parameter(s) {unknown}; known: {sorted(self.defaults)}"
            )
        self.params: dict[str, Any] = {
            name: _coerce(self.name, name, value, self.defaults[name]) for name, value in params.items()
        }
        self.params = {**self.defaults, **self.params}
        self.validate()

    def validate(self) -> None:
        """Raise ValueError for out-of-range parameters (subclasses extend)."""

    def is_identity(self) -> bool:
        """True when these parameters leave every image unchanged (zero strength)."""
        return False

    def apply(self, images: torch.Tensor, masks: torch.Tensor | None, offset: int) -> torch.Tensor:
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """Name, version and parameters: what enters cache keys."""
        return {"name": self.name, "version": self.version, "params": dict(sorted(self.params.items()))}

    @property
    def key(self) -> str:
        """Short stable hash of `spec()`."""
        return stable_hash(self.spec())

    def __call__(
        self, images: torch.Tensor, masks: torch.Tensor | None = None, *, offset: int = 0
    ) -> torch.Tensor:
        """Perturb a uint8 N×3×H×W batch; `offset` is the stream index of its first image."""
        check_images(images)
        if masks is not None:
            masks = check_masks(masks, images)
        if self.is_identity():
            return images.clone()
        result = self.apply(images, masks, offset)
        if result.dtype != torch.uint8 or result.shape != images.shape or result.device != images.device:
            raise RuntimeError(f"perturbation {self.name} broke the uint8/shape/device contract")
        return result

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in sorted(self.params.items()))
        return f"{self.name}({arguments})"


def _coerce(perturbation: str, name: str, value: Any, default: Any) -> Any:
    """Give a parameter its default's type, so `sigma=100` and `sigma=100.0` make the same spec and key."""
    try:
        if isinstance(default, bool):
            if not isinstance(value, (bool, int)) or value not in (0, 1):
                raise TypeError
            return bool(value)
        if isinstance(default, float):
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if isinstance(default, int):
            if isinstance(value, bool) or float(value) != int(value):
                raise TypeError
            return int(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"perturbation {perturbation!r}: {name} must be {type(default).__name__}, got {value!r}"
        ) from None
    return value


def make_perturbation(name: str, **params: Any) -> Perturbation:
    """Build a registered perturbation by name, e.g. `make_perturbation("jpeg", quality=50)`."""
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown perturbation {name!r}; known: {sorted(_REGISTRY)}") from None
    return cls(**params)


def available() -> list[str]:
    """Names of all registered perturbations."""
    return sorted(_REGISTRY)


def check_images(images: torch.Tensor) -> None:
    """Raise ValueError unless `images` is a uint8 N×3×H×W tensor."""
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        raise ValueError(f"images must be a uint8 torch tensor, got {getattr(images, 'dtype', type(images))}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be N×3×H×W, got shape {tuple(images.shape)}")


def check_masks(masks: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Boolean N×H×W masks on the images' device (N×1×H×W accepted)."""
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    expected = (images.shape[0], images.shape[2], images.shape[3])
    if tuple(masks.shape) != expected:
        raise ValueError(f"masks must be N×H×W = {expected}, got {tuple(masks.shape)}")
    return masks.to(device=images.device, dtype=torch.bool)


def image_generator(name: str, seed: int, index: int) -> torch.Generator:
    """A CPU generator for image `index` of a stream, seeded from (perturbation name, seed, index)."""
    digest = hashlib.sha256(f"fdbench-perturbation:{name}:{seed}:{index}".encode()).digest()
    return torch.Generator(device="cpu").manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def quantize(values: torch.Tensor) -> torch.Tensor:
    """Float pixel values (0–255 scale) to uint8: round half to even, clamp to 0–255."""
    return values.round().clamp_(0, 255).to(torch.uint8)
