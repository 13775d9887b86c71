"""Image sources: where the uint8 RGB batches come from (DESIGN "ImageSource").

`open_source(spec)` turns a user's argument into a source: a folder path, a `.zip`, an `.npz`, or a
generator spec such as `dcgan-faces:count=500,seed=0`.
"""

from __future__ import annotations

from pathlib import Path

from bench.sources.arrays import NpzSource, TensorSource
from bench.sources.base import ImageSource, stack_images
from bench.sources.files import FolderSource, ZipSource
from bench.sources.generator import (
    CHUNK,
    DCGANFacesSource,
    DCGANGenerator,
    GeneratorSource,
    find_dcgan_weights,
    load_dcgan_generator,
    to_uint8,
)

__all__ = [
    "CHUNK",
    "DCGANFacesSource",
    "DCGANGenerator",
    "FolderSource",
    "GeneratorSource",
    "ImageSource",
    "NpzSource",
    "TensorSource",
    "ZipSource",
    "find_dcgan_weights",
    "load_dcgan_generator",
    "open_source",
    "parse_generator_spec",
    "stack_images",
    "to_uint8",
]

_GENERATORS = {"dcgan-faces": DCGANFacesSource}


def parse_generator_spec(spec: str) -> tuple[str, dict[str, int]]:
    """Split `name:key=value,...` into the name and integer options (count, seed)."""
    name, _, options_text = spec.partition(":")
    options: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in options_text.split(","))):
        key, separator, value = item.partition("=")
        if not separator or key not in ("count", "seed"):
            raise ValueError(f"bad option {item!r} in source {spec!r}; expected count=N and seed=S")
        try:
            options[key] = int(value)
        except ValueError:
            raise ValueError(f"option {key} in source {spec!r} must be an integer, got {value!r}") from None
    if "count" not in options:
        raise ValueError(f"source {spec!r} needs a count, e.g. {name}:count=500,seed=0")
    return name, options


def open_source(spec: str | Path | ImageSource, strict: bool = False, device=None) -> ImageSource:
    """An `ImageSource` from a folder, a `.zip`, an `.npz`, or `dcgan-faces:count=N,seed=S`."""
    if isinstance(spec, ImageSource):
        return spec
    text = str(spec)
    name = text.partition(":")[0]
    if name in _GENERATORS and not Path(text).exists():
        generator_name, options = parse_generator_spec(text)
        kwargs = {"device": device} if device is not None else {}
        return _GENERATORS[generator_name](options["count"], options.get("seed", 0), **kwargs)
    path = Path(text).expanduser()
    if path.is_dir():
        return FolderSource(path, strict=strict)
    if path.is_file() and path.suffix.lower() == ".zip":
        return ZipSource(path, strict=strict)
    if path.is_file() and path.suffix.lower() == ".npz":
        return NpzSource(path)
    if path.exists():
        raise ValueError(f"cannot read images from {path}: expected a folder, a .zip or an .npz")
    raise FileNotFoundError(
        f"image source {text!r} not found: give a folder, a .zip, an .npz, or one of "
        f"{', '.join(f'{g}:count=N,seed=S' for g in _GENERATORS)}"
    )
