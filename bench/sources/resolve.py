"""From what a user holds to a source: one resolving rule for every command and API call.

`open_source(spec)` gives an `ImageSource` for:

- an existing folder (read recursively), `.zip`, `.tar`/`.tar.gz`/`.tgz`/`.tar.bz2`/`.tar.xz`;
- an `.npz` of images (`arr_0`, N×H×W×3 uint8: ADM/guided-diffusion sample and reference batches; their
  `mu`/`sigma` arrays, TensorFlow-Inception statistics, are not used) or an `.npy` uint8 image array;
- `@list.txt`: a text file naming one image path per line (relative to the list file's folder; blank
  lines and `#` comments ignored); a Python list of paths does the same;
- a generator spec, `dcgan-faces:count=N,seed=S`;
- an in-memory uint8 tensor (N×3×H×W) or array (N×H×W×3), or an `ImageSource` (returned as it is).

An existing path always wins over the `@` and generator readings of the same text.
`resolve_input(spec)` also accepts saved statistics: an `.npz` written by fdbench (`fdbench stats
compute`), pytorch-fid or clean-fid (`mu`/`sigma`), returned as `GaussianStats`.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.sources.archives import TarSource, ZipSource
from bench.sources.arrays import NpySource, NpzSource, TensorSource
from bench.sources.base import ImageSource
from bench.sources.files import FolderSource, PathListSource
from bench.sources.generator import DCGANFacesSource
from bench.sources.names import display_path
from bench.stats import GaussianStats, StatsFileError

_GENERATORS = {"dcgan-faces": DCGANFacesSource}
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
ACCEPTED = (
    "a folder, a .zip, a .tar[.gz|.bz2|.xz], an .npz (arr_0 images) or .npy image array, "
    "@list.txt (one image path per line), or " + ", ".join(f"{name}:count=N,seed=S" for name in _GENERATORS)
)


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


def open_source(spec: Any, strict: bool = False, device: Any = None) -> ImageSource:
    """An `ImageSource` for anything a user holds (see the module docstring for the forms).

    `strict=True` makes every skipped entry an error (`DecodeError`); `device` runs a generator there.
    Statistics files are refused with a message saying so (use `resolve_input` where they are welcome).
    """
    if isinstance(spec, ImageSource):
        return spec
    if isinstance(spec, (torch.Tensor, np.ndarray)):
        return TensorSource(spec)
    if isinstance(spec, (list, tuple)):
        return _open_sequence(spec, strict)
    text = _spec_text(spec)
    path = Path(text).expanduser()
    if not path.exists():
        if text.startswith("@"):
            return PathListSource.from_list_file(text[1:], strict=strict)
        if text.partition(":")[0] in _GENERATORS:
            generator_name, options = parse_generator_spec(text)
            kwargs = {"device": device} if device is not None else {}
            return _GENERATORS[generator_name](options["count"], options.get("seed", 0), **kwargs)
        raise FileNotFoundError(f"image source {display_path(text)!r} not found: give {ACCEPTED}")
    return _open_path(path, strict)


def resolve_input(spec: Any, strict: bool = False, device: Any = None) -> ImageSource | GaussianStats:
    """What a distance can be computed from: an `ImageSource`, or `GaussianStats` for a statistics file.

    An `.npz` is images when it holds `arr_0`, statistics when it holds fdbench's (`n`, `mean`, `cov`) or
    pytorch-fid/clean-fid's (`mu`, `sigma`) arrays, and otherwise an error listing its arrays.
    """
    if isinstance(spec, GaussianStats):
        return spec
    if isinstance(spec, (str, os.PathLike, bytes)):
        path = Path(_spec_text(spec)).expanduser()
        if path.is_file() and path.name.lower().endswith(".npz") and "arr_0" not in _npz_keys(path):
            return _load_statistics(path)
    return open_source(spec, strict=strict, device=device)


def _spec_text(spec: Any) -> str:
    if isinstance(spec, bytes):
        return os.fsdecode(spec)
    if isinstance(spec, (str, os.PathLike)):
        return os.fspath(spec)
    raise TypeError(f"cannot read images from a {type(spec).__name__}: give {ACCEPTED}, or a uint8 tensor")


def _open_sequence(items: Sequence[Any], strict: bool) -> ImageSource:
    """A list of paths becomes a `PathListSource`; a list of arrays or tensors a `TensorSource`."""
    if all(isinstance(item, (str, os.PathLike)) for item in items):
        return PathListSource(list(items), strict=strict)
    if all(isinstance(item, (np.ndarray, torch.Tensor)) for item in items):
        return TensorSource([np.asarray(item) for item in items])
    raise TypeError("a list source must hold only paths or only H×W×3 uint8 arrays")


def _open_path(path: Path, strict: bool) -> ImageSource:
    name = path.name.lower()
    if path.is_dir():
        return FolderSource(path, strict=strict)
    if name.endswith(".zip"):
        return ZipSource(path, strict=strict)
    if name.endswith(_TAR_SUFFIXES):
        return TarSource(path, strict=strict)
    if name.endswith(".npy"):
        return NpySource(path)
    if name.endswith(".npz"):
        if "arr_0" in _npz_keys(path):
            return NpzSource(path)
        _load_statistics(path)  # raises when it is not statistics either
        raise ValueError(
            f"{display_path(path)} holds feature statistics, not images; a command that compares sets "
            "(fdbench fd) takes it as it is"
        )
    hint = f" (for a list of image paths write @{display_path(path)})" if name.endswith(".txt") else ""
    raise ValueError(f"cannot read images from {display_path(path)}: give {ACCEPTED}{hint}")


def _npz_keys(path: Path) -> list[str]:
    try:
        with np.load(path, allow_pickle=False) as bundle:
            return list(bundle.files)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"{display_path(path)} is not a readable .npz file: {error}") from None


def _load_statistics(path: Path) -> GaussianStats:
    try:
        return GaussianStats.load(path)
    except StatsFileError as error:
        raise ValueError(
            f"{display_path(path)}: no 'arr_0' image array (N×H×W×3 uint8), and not readable as statistics: "
            f"{error}"
        ) from None
