"""On-disk content cache: atomic writes, array bundles keyed by content, and cross-process locks.

Every cached artefact (parser label maps, feature statistics, ...) is written to a temporary file in the
destination folder, flushed to disk and then renamed over the final name, so a crash mid-write never leaves
a partial file where a reader would find it. A per-key file lock lets several processes share one cache.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from filelock import FileLock

_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def cache_root() -> Path:
    """The cache folder: $FDBENCH_CACHE when set, else the platform's user cache dir for "fdbench"."""
    configured = os.environ.get("FDBENCH_CACHE")
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("fdbench"))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` via a temp file in the same folder, fsync, then `os.replace`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    return target


def atomic_save_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    """Save arrays as an uncompressed `.npz` atomically (no partial file ever under the final name)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.asarray(value) for name, value in arrays.items()})
    return atomic_write_bytes(path, buffer.getvalue())


class ContentCache:
    """A folder of `.npz` bundles, one per content key, under `root/namespace`.

    Keys are short hex digests (or other file-name-safe strings) derived from content hashes; the cache
    never interprets them. Loads use `allow_pickle=False`; an unreadable file counts as a miss.
    """

    def __init__(self, namespace: str, root: str | Path | None = None) -> None:
        if not _SAFE_KEY.match(namespace):
            raise ValueError(f"cache namespace {namespace!r} must be a plain file name")
        self.namespace = namespace
        self.folder = Path(root) if root is not None else cache_root()
        self.folder = self.folder / namespace

    def path(self, key: str) -> Path:
        """Where the bundle for `key` lives (it may not exist yet)."""
        if not _SAFE_KEY.match(key):
            raise ValueError(f"cache key {key!r} must be a plain file name (letters, digits, . _ -)")
        return self.folder / f"{key}.npz"

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        """The arrays saved under `key`, or None when absent or unreadable."""
        location = self.path(key)
        try:
            with np.load(location, allow_pickle=False) as bundle:
                return {name: bundle[name] for name in bundle.files}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError):
            return None

    def save(self, key: str, arrays: dict[str, np.ndarray]) -> Path:
        """Store `arrays` under `key` atomically."""
        return atomic_save_npz(self.path(key), **arrays)

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float = -1) -> Iterator[None]:
        """Hold an inter-process lock for `key` (compute-then-save without duplicated work)."""
        location = self.path(key)
        location.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(location) + ".lock", timeout=timeout):
            yield
