"""Image sources backed by files on disk: a folder tree, or a list of paths.

Both read each file whole, decode it with `bench.decode`, and describe themselves by a manifest of
(id, size, sha256) per file whose hashes are remembered between runs. Nothing a file system holds stops a
run: every entry that is not a readable image file is left out and recorded with its reason.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.decode import (
    MAX_FILE_BYTES,
    SKIP_BROKEN_LINK,
    SKIP_DIRECTORY,
    SKIP_DUPLICATE,
    SKIP_EXTENSION,
    SKIP_FILE_TOO_LARGE,
    SKIP_NAME_CLASH,
    SKIP_NOT_FOUND,
    SKIP_NOT_REGULAR,
    SKIP_SYMLINK_LOOP,
    SKIP_UNREADABLE,
    SKIP_UNREADABLE_FOLDER,
    DecodeError,
    decode_image_bytes,
    has_image_extension,
)
from bench.hashing import sha256_file
from bench.sources.base import ImageSource
from bench.sources.names import display_path, printable_name


def read_image_file(path: str, name: str) -> bytes:
    """The bytes of one image file, or `DecodeError` naming why it cannot be read (never an OSError)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_FILE_BYTES:
                raise DecodeError(name, SKIP_FILE_TOO_LARGE, f"{size} bytes, limit {MAX_FILE_BYTES}")
            return handle.read()
    except FileNotFoundError as error:
        raise DecodeError(name, SKIP_NOT_FOUND, "gone since the folder was listed") from error
    except IsADirectoryError as error:
        raise DecodeError(name, SKIP_DIRECTORY) from error
    except OSError as error:
        raise DecodeError(name, SKIP_UNREADABLE, error.strerror or str(error)) from error


def classify_path(path: str) -> str | None:
    """None for a regular file (after following links), else the `SKIP_*` reason it cannot be one."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        if os.path.islink(path):
            return SKIP_SYMLINK_LOOP if error.errno == errno.ELOOP else SKIP_BROKEN_LINK
        return SKIP_NOT_FOUND if isinstance(error, FileNotFoundError) else SKIP_UNREADABLE
    if stat.S_ISDIR(mode):
        return SKIP_DIRECTORY
    return None if stat.S_ISREG(mode) else SKIP_NOT_REGULAR


class _FileSource(ImageSource):
    """Files on disk, each under an id; subclasses fill `_ids` and `_paths` (the real names) when listing."""

    manifest_kind = "files"

    def __init__(self, strict: bool, hash_memo: bool) -> None:
        super().__init__()
        self.strict = strict
        self.hash_memo = hash_memo
        self._ids: list[str] = []
        self._paths: list[str] = []
        self._manifest: dict | None = None

    def ids(self) -> list[str]:
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def load(self, index: int) -> np.ndarray:
        return self.decode(index, self.encoded(index))

    def encoded(self, index: int) -> bytes:
        """The file's bytes as stored (for decoders other than bench.decode's)."""
        return read_image_file(self._paths[index], self._ids[index])

    def decode(self, index: int, data: bytes) -> np.ndarray:
        """`data`, the bytes of entry `index`, decoded by bench.decode (counted in the decode log)."""
        return decode_image_bytes(data, self._ids[index], self.decode_log)

    def _memo_identity(self) -> bytes:
        """Bytes naming this collection of files (the memo of their hashes is stored under it)."""
        raise NotImplementedError

    def manifest(self) -> dict:
        """Ids, sizes and sha256 of every candidate file (size -1 for a file that cannot be read).

        File hashes are remembered in the user cache (`manifests/`) and reused while a file's size and
        modification time are unchanged, so a large folder is hashed once rather than on every run
        (`hash_memo=False` always rehashes).
        """
        if self._manifest is None:
            memo_path = self._memo_path() if self.hash_memo else None
            memo = _read_memo(memo_path)
            files, fresh = [], {}
            for name, path in zip(self._ids, self._paths, strict=True):
                try:
                    info = os.stat(path)
                    known = memo.get(name)
                    if known and known[0] == info.st_size and known[1] == info.st_mtime_ns:
                        digest = known[2]
                    else:
                        digest = sha256_file(path)
                except OSError:  # it will be skipped as unreadable when loaded
                    files.append([name, -1, ""])
                    continue
                fresh[name] = [info.st_size, info.st_mtime_ns, digest]
                files.append([name, info.st_size, digest])
            if memo_path is not None and fresh != memo:
                from bench.cache import atomic_write_bytes

                with contextlib.suppress(OSError):  # a read-only cache only costs speed
                    atomic_write_bytes(memo_path, json.dumps(fresh).encode())
            self._manifest = {"kind": self.manifest_kind, "files": files}
        return self._manifest

    def _memo_path(self) -> Path:
        from bench.cache import cache_root

        key = hashlib.sha256(self._memo_identity()).hexdigest()[:32]
        return cache_root() / "manifests" / f"{key}.json"


def _read_memo(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        memo = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


class FolderSource(_FileSource):
    """Every image file under a folder, recursively, ordered by id (the relative POSIX path).

    Extensions (case-insensitive): png, jpg/jpeg, webp, bmp, tif/tiff. Hidden files and folders (names
    starting with ".") are ignored silently. Everything else that is not a readable image file is left
    out and recorded while listing: other extensions, broken symlinks, symlink loops (a link back to a
    folder already on the walk, or links that point at each other), devices/FIFOs/sockets, unreadable
    folders, and folders named like image files (recorded, and still walked). Symlinked folders are
    followed. Names in any encoding work: see `bench.sources.names` for the ids of non-UTF-8 names.
    """

    manifest_kind = "folder"

    def __init__(self, root: str | Path, strict: bool = False, hash_memo: bool = True) -> None:
        super().__init__(strict, hash_memo)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {display_path(self.root)}")
        try:
            os.scandir(self.root).close()
        except OSError as error:
            raise ValueError(
                f"cannot list image folder {display_path(self.root)}: {error.strerror}"
            ) from None
        found: list[tuple[str, str]] = []
        self._walk(str(self.root), "", {os.path.realpath(self.root)}, found)
        self._admit(found)

    def _walk(self, folder: str, relative: str, ancestors: set[str], found: list[tuple[str, str]]) -> None:
        """Append (id, relative real name) of every image file under `folder`; record the rest."""
        try:
            entries = sorted(os.scandir(folder), key=lambda item: item.name)
        except OSError as error:
            self._refuse(printable_name(relative), SKIP_UNREADABLE_FOLDER, error.strerror)
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            raw = f"{relative}/{entry.name}" if relative else entry.name
            name = printable_name(raw)
            reason = classify_path(entry.path)
            if reason == SKIP_DIRECTORY:
                real = os.path.realpath(entry.path)
                if real in ancestors:
                    self._refuse(name, SKIP_SYMLINK_LOOP)
                    continue
                if has_image_extension(entry.name):
                    self._refuse(name, SKIP_DIRECTORY)
                self._walk(entry.path, raw, ancestors | {real}, found)
            elif reason is not None:
                self._refuse(name, reason)
            elif has_image_extension(entry.name):
                found.append((name, raw))
            else:
                self._refuse(name, SKIP_EXTENSION)

    def _admit(self, found: list[tuple[str, str]]) -> None:
        """Keep files in id order; a non-UTF-8 name whose escaped id equals a real name is left out."""
        by_id: dict[str, list[str]] = {}
        for name, raw in found:
            by_id.setdefault(name, []).append(raw)
        for name in sorted(by_id):
            candidates = sorted(by_id[name], key=lambda raw: raw != name)  # the genuine name first
            self._ids.append(name)
            self._paths.append(os.path.join(self.root, candidates[0]))
            for _ in candidates[1:]:
                self._refuse(name, SKIP_NAME_CLASH)

    def _refuse(self, name: str, reason: str, detail: str | None = None) -> None:
        where = f"{display_path(self.root)}/{name}" + (f" ({detail})" if detail else "")
        self.refuse(name, reason, where)

    def path_of(self, image_id: str) -> Path:
        """The file behind an id."""
        return Path(self._paths[self._ids.index(image_id)])

    def _memo_identity(self) -> bytes:
        return os.fsencode(str(self.root.resolve()))


class PathListSource(_FileSource):
    """Image files named one by one, in the order given: a list of paths, or a text file of them.

    Each path is its own id (as written). Relative paths in a list file are taken relative to the list
    file's folder. Files are decoded whatever their extension (the list says they are images); missing
    files, folders, broken links and repeated entries are left out and recorded.
    """

    manifest_kind = "list"

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        strict: bool = False,
        base: str | Path | None = None,
        hash_memo: bool = True,
    ) -> None:
        super().__init__(strict, hash_memo)
        self.base = Path(base) if base is not None else None
        self.list_file: Path | None = None
        seen: dict[str, str] = {}  # id → the entry text it came from
        for entry in paths:
            text = os.fspath(entry)
            name = printable_name(text)
            if name in seen:
                self.refuse(name, SKIP_DUPLICATE if seen[name] == text else SKIP_NAME_CLASH)
                continue
            seen[name] = text
            path = os.path.join(self.base, text) if self.base is not None else text
            reason = classify_path(path)
            if reason is not None:
                self.refuse(name, reason)
                continue
            self._ids.append(name)
            self._paths.append(path)

    @classmethod
    def from_list_file(cls, list_file: str | Path, strict: bool = False) -> PathListSource:
        """Paths from a text file: one per line; blank lines and lines starting with `#` are ignored.

        Lines are split on newlines and stripped of surrounding white space; bytes that are not UTF-8 are
        kept (the line names the file byte for byte, as on POSIX).
        """
        list_file = Path(list_file).expanduser()
        try:
            data = list_file.read_bytes()
        except OSError as error:
            raise FileNotFoundError(
                f"list of image paths {display_path(list_file)} cannot be read: {error.strerror}"
            ) from None
        lines = [os.fsdecode(line.strip()) for line in data.splitlines()]
        paths = [line for line in lines if line and not line.startswith("#")]
        source = cls(paths, strict=strict, base=list_file.parent)
        source.list_file = list_file
        return source

    def _memo_identity(self) -> bytes:
        return b"\0".join(os.fsencode(os.path.abspath(path)) for path in self._paths)
