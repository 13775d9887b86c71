"""The registry: names → feature spaces (spec + loader), what can load here, and loaded-model caching."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.device import resolve_device
from feature_spaces.extractor import Extractor, TorchExtractor
from feature_spaces.spec import FeatureSpaceSpec
from feature_spaces.weights import MissingWeightsError, find_local, missing_message, offline, resolve

Loader = Callable[[FeatureSpaceSpec, torch.device, Sequence[Path]], "Extractor | torch.nn.Module"]


class UnknownSpaceError(ValueError):
    """No feature space of that name is registered."""


class MissingDependencyError(ImportError):
    """A Python package a feature space needs is not installed."""


@dataclass(frozen=True)
class Availability:
    """Whether a space can load here and now, and if not the one-line reason."""

    name: str
    ok: bool
    reason: str | None = None
    weights: tuple[str, ...] = ()


_SPACES: dict[str, FeatureSpace] = {}
_LOADED: dict[tuple[str, str, str, tuple[str, ...]], Extractor] = {}
_LOCK = threading.Lock()
_BUILTINS_DONE = False


class FeatureSpace:
    """A registered space: its spec, and ``load(device)`` returning a (cached) extractor."""

    def __init__(self, spec: FeatureSpaceSpec, loader: Loader):
        self.spec = spec
        self.loader = loader

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def spec_hash(self) -> str:
        return self.spec.spec_hash

    def missing_modules(self) -> list[str]:
        """Required importable modules that are not installed."""
        return [module for module in self.spec.requires if importlib.util.find_spec(module) is None]

    def weight_paths(
        self, weights: str | Path | Sequence[str | Path] | None = None, allow_download: bool | None = None
    ) -> list[Path]:
        """Resolved, verified paths of every weight file, in spec order (explicit paths first)."""
        explicit = _explicit_list(weights, len(self.spec.weights), self.name)
        return [
            resolve(w, explicit=e, space=self.name, allow_download=allow_download)
            for w, e in zip(self.spec.weights, explicit, strict=True)
        ]

    def availability(self) -> Availability:
        """Can this space load now without the network? Checks packages and local weight files."""
        missing = self.missing_modules()
        if missing:
            return Availability(
                self.name, False, f"needs Python package(s) {', '.join(missing)} (pip install)"
            )
        located: list[str] = []
        for w in self.spec.weights:
            found = find_local(w)
            if found is None:
                online = " (would download when online)" if w.url and not w.manual and not offline() else ""
                return Availability(self.name, False, missing_message(w, self.name) + online)
            located.append(str(found[1]))
        return Availability(self.name, True, None, tuple(located))

    def load(
        self,
        device: str | torch.device | None = None,
        weights: str | Path | Sequence[str | Path] | None = None,
    ) -> Extractor:
        """An extractor on ``device``; models are built once per process and (space, device, weights)."""
        resolved_device = resolve_device(device)
        missing = self.missing_modules()
        if missing:
            raise MissingDependencyError(
                f"feature space {self.name!r} needs Python package(s) {', '.join(missing)}; pip install them"
            )
        paths = self.weight_paths(weights)
        key = (self.name, self.spec_hash, str(resolved_device), tuple(str(p.resolve()) for p in paths))
        with _LOCK:
            cached = _LOADED.get(key)
            if cached is not None:
                return cached
            built = self.loader(self.spec, resolved_device, paths)
            extractor = (
                built if isinstance(built, Extractor) else TorchExtractor(self.spec, resolved_device, built)
            )
            _LOADED[key] = extractor
            return extractor

    def __repr__(self) -> str:
        return f"FeatureSpace({self.name!r}, dim={self.spec.dim}, hash={self.spec_hash})"


def _explicit_list(weights: Any, count: int, name: str = "") -> list[Any]:
    if weights is None:
        return [None] * count
    items = [weights] if isinstance(weights, (str, Path)) else list(weights)
    if count and len(items) != count:
        raise ValueError(f"feature space {name!r} needs {count} weight file(s), {len(items)} given")
    return items


def _ensure_builtins() -> None:
    global _BUILTINS_DONE
    if not _BUILTINS_DONE:
        _BUILTINS_DONE = True
        from feature_spaces import builtin

        builtin.register_all()


def register(spec: FeatureSpaceSpec, loader: Loader, replace: bool = False) -> FeatureSpace:
    """Add a space. ``loader(spec, device, weight_paths)`` returns an Extractor, or an nn.Module whose
    output on the preprocessed batch is the (N, d) feature. Re-registering a name needs ``replace=True``."""
    _ensure_builtins()
    if not isinstance(spec, FeatureSpaceSpec):
        raise TypeError(f"register() needs a FeatureSpaceSpec, got {type(spec).__name__}")
    if spec.name in _SPACES and not replace:
        raise ValueError(f"feature space {spec.name!r} is already registered (pass replace=True)")
    space = FeatureSpace(spec, loader)
    _SPACES[spec.name] = space
    with _LOCK:
        for key in [k for k in _LOADED if k[0] == spec.name]:
            del _LOADED[key]
    return space


def register_builtin(spec: FeatureSpaceSpec, loader: Loader) -> None:
    """Used by `feature_spaces.builtin` only (no recursion into the builtin loader)."""
    _SPACES[spec.name] = FeatureSpace(spec, loader)


def unregister(name: str) -> None:
    """Remove a space (and its loaded models)."""
    _SPACES.pop(name, None)
    with _LOCK:
        for key in [k for k in _LOADED if k[0] == name]:
            del _LOADED[key]


def get(name: str) -> FeatureSpace:
    """The registered space called ``name``."""
    _ensure_builtins()
    try:
        return _SPACES[name]
    except KeyError:
        raise UnknownSpaceError(
            f"unknown feature space {name!r}; registered: {', '.join(sorted(_SPACES))}"
        ) from None


def names() -> list[str]:
    """Names of all registered spaces, in registration order."""
    _ensure_builtins()
    return list(_SPACES)


def available() -> dict[str, Availability]:
    """For every registered space: can it load here and now, and if not why not."""
    _ensure_builtins()
    return {name: space.availability() for name, space in _SPACES.items()}


def clear_loaded() -> None:
    """Forget every loaded model (tests, memory pressure)."""
    with _LOCK:
        _LOADED.clear()


__all__ = [
    "Availability",
    "FeatureSpace",
    "MissingDependencyError",
    "MissingWeightsError",
    "UnknownSpaceError",
    "available",
    "clear_loaded",
    "get",
    "names",
    "register",
    "unregister",
]
