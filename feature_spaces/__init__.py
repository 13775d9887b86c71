"""The registry of feature extractors, one module per family, and weight resolution.

``get(name)`` returns a `FeatureSpace` (``.spec``, ``.spec_hash``, ``.load(device)`` → extractor);
``available()`` says which spaces can load here and now and why the others cannot; ``register(spec,
loader)`` adds a space of your own.
"""

from __future__ import annotations

from feature_spaces.extractor import Extractor, TorchExtractor
from feature_spaces.preprocess import ImageBatchError, preprocess
from feature_spaces.registry import (
    Availability,
    FeatureSpace,
    MissingDependencyError,
    UnknownSpaceError,
    available,
    clear_loaded,
    get,
    names,
    register,
    unregister,
)
from feature_spaces.spec import FeatureSpaceSpec, Preprocessing, SpecError, WeightsFile
from feature_spaces.weights import MissingWeightsError, WeightsFormatError, WeightsHashError

__all__ = [
    "Availability",
    "Extractor",
    "FeatureSpace",
    "FeatureSpaceSpec",
    "ImageBatchError",
    "MissingDependencyError",
    "MissingWeightsError",
    "Preprocessing",
    "SpecError",
    "TorchExtractor",
    "UnknownSpaceError",
    "WeightsFile",
    "WeightsFormatError",
    "WeightsHashError",
    "available",
    "clear_loaded",
    "get",
    "names",
    "preprocess",
    "register",
    "unregister",
]
