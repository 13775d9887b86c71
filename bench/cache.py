"""On-disk content cache: atomic writes, self-verifying array bundles keyed by content, and locks.

Every cached artefact (parser label maps, feature statistics, ...) is written to a temporary file in the
destination folder, flushed to disk and then renamed over the final name, so a crash mid-write never leaves
a partial file where a reader would find it. A per-key file lock lets several processes share one cache.

Each entry carries a record of its key and a sha256 of its arrays (names, dtypes, shapes and bytes). A load
checks both, so an entry that was truncated, overwritten (even with another entry's bytes), bit-flipped or
replaced by garbage is never used: it is reported (`ContentCache.damaged`, and a logged warning), removed,
and treated as a miss, so the caller recomputes it. Entries written before checksums existed are misses.

Layout: `cache_root()/NAMESPACE/KEY.npz`. The folders `weights/` and `manifests/` under the root hold
other things (downloaded weights, folder hash memos) and are never namespaces; `verify_cache` and
`prune_cache` look at every other folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from filelock import FileLock

LOG = logging.getLogger("fdbench.cache")

_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
RESERVED_FOLDERS = frozenset({"weights", "manifests"})
ENTRY_RECORD = "__fdbench_entry__"
ENTRY_FORMAT = "fdbench-cache-entry-v2"
LEGACY_ENTRY = "written by an older fdbench (no checksum)"
# Temporary files of writes that never finished (a killed process) are removed by `prune_cache` after this.
STALE_TEMP_SECONDS = 24 * 3600


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


def content_checksum(key: str, arrays: dict[str, np.ndarray]) -> str:
    """sha256 of a key and its arrays: every name, dtype, shape and byte, in name order."""
    digest = hashlib.sha256(key.encode())
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"\0{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.data if array.size else b"")
    return digest.hexdigest()


def read_entry(path: Path, key: str) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """(arrays, None) for a sound entry of `key`; (None, problem) otherwise (`LEGACY_ENTRY` for old ones)."""
    try:
        with np.load(path, allow_pickle=False) as bundle:
            arrays = {name: bundle[name] for name in bundle.files}
    except FileNotFoundError:
        raise
    except Exception as error:  # any parse failure (BadZipFile, bad CRC, pickles, zlib, ...) is damage
        return None, f"unreadable ({type(error).__name__}: {error})"
    if ENTRY_RECORD not in arrays:
        return None, LEGACY_ENTRY
    try:
        record = json.loads(str(arrays.pop(ENTRY_RECORD)))
        stored_key, stored_sum = record["key"], record["sha256"]
    except (ValueError, TypeError, KeyError):
        return None, "entry record unreadable"
    if stored_key != key:
        return None, f"holds the entry of another key ({stored_key})"
    if content_checksum(key, arrays) != stored_sum:
        return None, "checksum mismatch (the arrays changed after they were written)"
    return arrays, None


class ContentCache:
    """A folder of self-verifying `.npz` bundles, one per content key, under `root/namespace`.

    Keys are short hex digests (or other file-name-safe strings) derived from content hashes; the cache
    never interprets them. Loads use `allow_pickle=False` and verify the entry (see the module docstring);
    `damaged` lists (key, reason) for every entry this object found damaged and discarded.
    """

    def __init__(self, namespace: str, root: str | Path | None = None) -> None:
        if not _SAFE_KEY.match(namespace) or namespace in RESERVED_FOLDERS:
            raise ValueError(
                f"cache namespace {namespace!r} must be a plain file name other than "
                f"{', '.join(sorted(RESERVED_FOLDERS))}"
            )
        self.namespace = namespace
        self.folder = (Path(root) if root is not None else cache_root()) / namespace
        self.damaged: list[tuple[str, str]] = []

    def path(self, key: str) -> Path:
        """Where the bundle for `key` lives (it may not exist yet)."""
        if not _SAFE_KEY.match(key):
            raise ValueError(f"cache key {key!r} must be a plain file name (letters, digits, . _ -)")
        return self.folder / f"{key}.npz"

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        """The arrays saved under `key`, or None when absent, old or damaged (damage is reported)."""
        location = self.path(key)
        try:
            before = os.stat(location)
            arrays, problem = read_entry(location, key)
        except FileNotFoundError:
            return None
        if problem == LEGACY_ENTRY:
            return None
        if problem is not None:
            self.damaged.append((key, problem))
            LOG.warning(
                "cache entry %s/%s is damaged (%s); discarded, it will be recomputed",
                self.namespace,
                key,
                problem,
            )
            _remove_if_unchanged(location, before)
            return None
        with contextlib.suppress(OSError):  # record the read for `prune_cache`; a read-only cache is fine
            os.utime(location, ns=(time.time_ns(), before.st_mtime_ns))
        return arrays

    def save(self, key: str, arrays: dict[str, np.ndarray]) -> Path:
        """Store `arrays` under `key` atomically, with the record that lets a load verify them."""
        if ENTRY_RECORD in arrays:
            raise ValueError(f"array name {ENTRY_RECORD!r} is reserved for the cache's own record")
        values = {name: np.asarray(value) for name, value in arrays.items()}
        record = {"format": ENTRY_FORMAT, "key": key, "sha256": content_checksum(key, values)}
        return atomic_save_npz(self.path(key), **values, **{ENTRY_RECORD: np.array(json.dumps(record))})

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float = -1) -> Iterator[None]:
        """Hold an inter-process lock for `key` (compute-then-save without duplicated work)."""
        location = self.path(key)
        location.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(location) + ".lock", timeout=timeout):
            yield


def _remove_if_unchanged(path: Path, seen: os.stat_result) -> None:
    """Delete `path` unless another process has replaced it since `seen` (its fresh entry is kept)."""
    with contextlib.suppress(OSError):
        now = os.stat(path)
        if (now.st_ino, now.st_size, now.st_mtime_ns) == (seen.st_ino, seen.st_size, seen.st_mtime_ns):
            os.unlink(path)


# ------------------------------------------------------------------------------------------ maintenance
@dataclass
class CacheEntry:
    """One entry file: namespace, key, path, size in bytes, and when it was last read (epoch seconds)."""

    namespace: str
    key: str
    path: Path
    size: int
    last_read: float


def _namespace_folders(root: str | Path | None) -> list[Path]:
    base = Path(root) if root is not None else cache_root()
    if not base.is_dir():
        return []
    return [
        folder
        for folder in sorted(base.iterdir())
        if folder.is_dir() and folder.name not in RESERVED_FOLDERS and not folder.name.startswith(".")
    ]


def iter_entries(root: str | Path | None = None) -> Iterator[CacheEntry]:
    """Every entry file of every namespace under `root` (default `cache_root()`), in name order."""
    for folder in _namespace_folders(root):
        for path in sorted(folder.glob("*.npz")):
            if path.name.startswith("."):
                continue
            try:
                info = path.stat()
            except FileNotFoundError:  # removed meanwhile by another process
                continue
            last_read = max(info.st_atime, info.st_mtime)
            yield CacheEntry(folder.name, path.stem, path, info.st_size, last_read)


@dataclass
class VerifyReport:
    """What `verify_cache` found: sound entries, old-format ones, damaged ones with reasons."""

    ok: int = 0
    legacy: list[CacheEntry] = field(default_factory=list)
    damaged: list[tuple[CacheEntry, str]] = field(default_factory=list)
    deleted: int = 0
    per_namespace: dict[str, dict[str, int]] = field(default_factory=dict)


def verify_cache(root: str | Path | None = None, delete: bool = False) -> VerifyReport:
    """Read and check every entry; with `delete`, remove the damaged and old-format ones."""
    report = VerifyReport()
    for entry in iter_entries(root):
        counts = report.per_namespace.setdefault(entry.namespace, {"ok": 0, "old format": 0, "damaged": 0})
        try:
            _, problem = read_entry(entry.path, entry.key)
        except FileNotFoundError:
            continue
        if problem is None:
            report.ok += 1
            counts["ok"] += 1
            continue
        if problem == LEGACY_ENTRY:
            report.legacy.append(entry)
            counts["old format"] += 1
        else:
            report.damaged.append((entry, problem))
            counts["damaged"] += 1
        if delete:
            with contextlib.suppress(FileNotFoundError):
                entry.path.unlink()
                report.deleted += 1
    return report


@dataclass
class PruneReport:
    """What `prune_cache` removed (or would remove, in a dry run) and what it kept."""

    removed: list[CacheEntry] = field(default_factory=list)
    stale_temp_files: list[Path] = field(default_factory=list)
    kept: int = 0
    kept_bytes: int = 0
    dry_run: bool = False

    @property
    def freed_bytes(self) -> int:
        """Bytes of the removed entries."""
        return sum(entry.size for entry in self.removed)


def prune_cache(
    root: str | Path | None = None,
    older_than_days: float | None = None,
    max_bytes: int | None = None,
    dry_run: bool = False,
    now: float | None = None,
) -> PruneReport:
    """Remove entries not read for `older_than_days`, then the least recently read beyond `max_bytes`.

    Temporary files left by writes that never finished (older than a day) go too. With `dry_run` nothing
    is deleted and the report says what would be.
    """
    now = time.time() if now is None else now
    entries = sorted(iter_entries(root), key=lambda entry: entry.last_read, reverse=True)  # newest first
    report = PruneReport(dry_run=dry_run)
    kept: list[CacheEntry] = []
    for entry in entries:
        too_old = older_than_days is not None and now - entry.last_read > older_than_days * 86400
        (report.removed if too_old else kept).append(entry)
    if max_bytes is not None:
        total = 0
        for index, entry in enumerate(kept):
            total += entry.size
            if total > max_bytes:
                report.removed.extend(kept[index:])
                kept = kept[:index]
                break
    report.kept, report.kept_bytes = len(kept), sum(entry.size for entry in kept)
    for folder in _namespace_folders(root):
        for temp in sorted(folder.glob(".*.tmp")):
            with contextlib.suppress(FileNotFoundError):
                if now - temp.stat().st_mtime > STALE_TEMP_SECONDS:
                    report.stale_temp_files.append(temp)
    if not dry_run:
        for path in [entry.path for entry in report.removed] + report.stale_temp_files:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return report
