"""What a feature space is, as data: the spec every cache key and manifest is built from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bench.hashing import stable_hash

RESIZE_MODES = ("clean", "legacy-pytorch", "bicubic-aa", "bilinear-aa", "none")
CROP_POLICIES = ("none", "center", "keep-aspect")


class SpecError(ValueError):
    """A feature-space spec (or its preprocessing) is inconsistent."""


@dataclass(frozen=True)
class Preprocessing:
    """How a uint8 N×3×H×W batch becomes the network input; part of the space's identity.

    Steps, in order: resize (``resize`` mode; with ``crop="center"`` the shorter side goes to ``size`` and
    the centre ``size``×``size`` square is kept, otherwise the image is resized straight to
    ``size``×``size``; ``crop="keep-aspect"`` sends the shorter side to ``size`` and crops nothing),
    optional rounding back to integers (``round_to_uint8``), linear scaling of [0, 255] onto
    ``value_range``, then ``(x - mean) / std`` per channel when ``mean``/``std`` are set.
    ``channels`` is the channel order the network expects (batches always arrive RGB).

    Resize modes: ``clean`` = PIL bicubic on float32 per channel (clean-fid; runs on the CPU),
    ``legacy-pytorch`` = torch bilinear without antialias (pytorch-fid), ``bicubic-aa`` / ``bilinear-aa`` =
    torch with antialias (on the device), ``none`` = feed the image at its own size.
    """

    size: int | None
    resize: str = "bicubic-aa"
    crop: str = "none"
    value_range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    round_to_uint8: bool = False
    channels: str = "RGB"

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise SpecError(f"unknown resize mode {self.resize!r}; expected one of {RESIZE_MODES}")
        if self.crop not in CROP_POLICIES:
            raise SpecError(f"unknown crop policy {self.crop!r}; expected one of {CROP_POLICIES}")
        if self.resize != "none" and (self.size is None or self.size < 1):
            raise SpecError(f"resize mode {self.resize!r} needs a positive size, got {self.size!r}")
        if (self.mean is None) != (self.std is None):
            raise SpecError("mean and std must be given together")
        if self.channels not in ("RGB", "BGR"):
            raise SpecError(f"channels must be 'RGB' or 'BGR', got {self.channels!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WeightsFile:
    """One weight file a space needs, and every place it may come from.

    ``sha256`` is the full hex digest, a hex prefix (the torch-hub file-name convention, e.g. the
    ``6726825d`` in ``pt_inception-2015-12-05-6726825d.pth``), or None when no reliable digest is known
    (verification is then skipped with a logged warning). ``package``/``package_path`` name an installed
    distribution's top-level module and the file's path inside it. ``format`` says how to read it:
    ``torch`` (``torch.load(weights_only=True)``), ``safetensors``, ``torchscript``, ``dlib`` or ``onnx``.
    ``manual=True`` marks ``url`` as a page to fetch the file from by hand (a folder share, an archive to
    unpack): it is named in errors but never downloaded automatically. ``pip`` is the requirement that
    ships the file, if any.
    """

    filename: str
    url: str | None = None
    sha256: str | None = None
    size: int | None = None
    package: str | None = None
    package_path: str | None = None
    format: str = "torch"
    manual: bool = False
    pip: str | None = None

    def identity(self) -> dict[str, Any]:
        """What identifies the file's content: its digest when known, else its name and origin."""
        if self.sha256 and len(self.sha256) == 64:
            return {"sha256": self.sha256}
        return {"filename": self.filename, "url": self.url, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class FeatureSpaceSpec:
    """A feature space described as data: what it is, what it was trained on, how it reads images.

    ``feature`` names the layer read out (e.g. "pool3"), ``dim`` its width. ``requires`` lists importable
    modules the loader needs. ``revision`` is bumped when the extraction code changes its numbers, so old
    caches stop matching. ``spatial_layer`` names, for a differentiable space, the submodule of the loaded
    model whose output is its last spatial map (C × h × w, or ViT tokens with a square patch grid), where
    FD sensitivity heatmaps are read; it does not change the features, so it is not part of the hash.
    """

    name: str
    family: str
    architecture: str
    training_data: str
    objective: str
    feature: str
    dim: int
    preprocessing: Preprocessing
    weights: tuple[WeightsFile, ...] = ()
    license: str = ""
    citation: str = ""
    requires: tuple[str, ...] = ()
    notes: str = ""
    revision: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    spatial_layer: str | None = None

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.strip() or " " in self.name:
            raise SpecError(f"feature-space name must be a non-empty token without spaces, got {self.name!r}")
        if self.dim < 1:
            raise SpecError(f"feature space {self.name!r}: dim must be positive, got {self.dim}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for manifests and reports)."""
        return asdict(self)

    def hash_payload(self) -> dict[str, Any]:
        """What the spec hash covers: architecture, read-out, weights identity, preprocessing."""
        return {
            "architecture": self.architecture,
            "feature": self.feature,
            "dim": self.dim,
            "weights": [w.identity() for w in self.weights],
            "preprocessing": self.preprocessing.to_dict(),
            "extra": self.extra,
            "revision": self.revision,
        }

    @property
    def spec_hash(self) -> str:
        """Stable 16-hex key for caches: changes whenever the numbers a space produces could change."""
        return stable_hash(self.hash_payload())
