"""Image sources backed by files: a folder tree or a zip archive."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from bench.decode import (
    IMAGE_EXTENSIONS,
    SKIP_BROKEN_LINK,
    SKIP_EXTENSION,
    SKIP_SYMLINK_LOOP,
    SKIP_UNSAFE_ZIP_PATH,
    DecodeError,
    DecodeLog,
    decode_image_bytes,
)
from bench.hashing import sha256_bytes, sha256_file
from bench.sources.base import ImageSource


class FolderSource(ImageSource):
    """Every image file under a folder, recursively, ordered by relative POSIX path.

    Extensions (case-insensitive): png, jpg/jpeg, webp, bmp, tif/tiff. Hidden files and folders (names
    starting with ".") are ignored silently; other files are listed as skipped ("unsupported file
    extension"). Symlinked folders are followed once: a link leading back to a folder already on the walk
    (a loop) is refused and recorded, as is a broken link. Ids are the relative paths.
    """

    def __init__(self, root: str | Path, strict: bool = False, hash_memo: bool = True) -> None:
        super().__init__()
        self.hash_memo = hash_memo
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        self.strict = strict
        self.scan_log = DecodeLog()
        self._paths = self._scan()
        self._manifest: dict | None = None

    def _scan(self) -> list[str]:
        found: list[str] = []
        self._walk(self.root, PurePosixPath(), {os.path.realpath(self.root)}, found)
        found.sort()
        return found

    def _walk(self, folder: Path, relative: PurePosixPath, ancestors: set[str], found: list[str]) -> None:
        for entry in sorted(os.scandir(folder), key=lambda item: item.name):
            if entry.name.startswith("."):
                continue
            rel = relative / entry.name
            if entry.is_symlink() and not os.path.exists(entry.path):
                self._refuse(str(rel), SKIP_BROKEN_LINK)
                continue
            if entry.is_dir(follow_symlinks=True):
                real = os.path.realpath(entry.path)
                if real in ancestors:
                    self._refuse(str(rel), SKIP_SYMLINK_LOOP)
                    continue
                self._walk(Path(entry.path), rel, ancestors | {real}, found)
            elif entry.is_file(follow_symlinks=True):
                if Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS:
                    found.append(str(rel))
                else:
                    self.scan_log.skip(str(rel), SKIP_EXTENSION)

    def _refuse(self, name: str, reason: str) -> None:
        if self.strict:
            raise DecodeError(f"{self.root}/{name}", reason)
        self.scan_log.skip(name, reason)

    def ids(self) -> list[str]:
        return list(self._paths)

    def path_of(self, image_id: str) -> Path:
        """The file behind an id."""
        return self.root / image_id

    def load(self, index: int) -> np.ndarray:
        relative = self._paths[index]
        data = (self.root / relative).read_bytes()
        return decode_image_bytes(data, relative, self.decode_log)

    def scan_skips(self) -> list[tuple[str, str]]:
        return list(self.scan_log.skipped)

    def manifest(self) -> dict:
        """Relative paths, sizes and sha256 of every candidate file.

        File hashes are remembered in the user cache (`manifests/`), keyed by the folder's absolute path,
        and reused while a file's size and modification time are unchanged, so a large folder is hashed
        once rather than on every run (`hash_memo=False` always rehashes).
        """
        if self._manifest is None:
            memo_path = self._memo_path() if self.hash_memo else None
            memo = _read_memo(memo_path)
            files, fresh = [], {}
            for relative in self._paths:
                stat = (self.root / relative).stat()
                known = memo.get(relative)
                if known and known[0] == stat.st_size and known[1] == stat.st_mtime_ns:
                    digest = known[2]
                else:
                    digest = sha256_file(self.root / relative)
                fresh[relative] = [stat.st_size, stat.st_mtime_ns, digest]
                files.append([relative, stat.st_size, digest])
            if memo_path is not None and fresh != memo:
                from bench.cache import atomic_write_bytes

                with contextlib.suppress(OSError):  # a read-only cache only costs speed
                    atomic_write_bytes(memo_path, json.dumps(fresh).encode())
            self._manifest = {"kind": "folder", "files": files}
        return self._manifest

    def _memo_path(self) -> Path:
        from bench.cache import cache_root

        key = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:32]
        return cache_root() / "manifests" / f"{key}.json"


def _read_memo(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        memo = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


class ZipSource(ImageSource):
    """Every image entry of a zip archive, ordered by entry name.

    Entries with absolute paths, drive letters or ".." components are refused and recorded (they are
    never resolved against the file system); folder entries are ignored.
    """

    def __init__(self, path: str | Path, strict: bool = False) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"zip archive not found: {self.path}")
        self.strict = strict
        self.scan_log = DecodeLog()
        try:
            with zipfile.ZipFile(self.path) as archive:
                infos = archive.infolist()
        except zipfile.BadZipFile as error:
            raise ValueError(f"{self.path} is not a readable zip archive: {error}") from error
        self._names: list[str] = []
        for info in sorted(infos, key=lambda item: item.filename):
            name = info.filename
            if info.is_dir():
                continue
            if not is_safe_member_name(name):
                if strict:
                    raise DecodeError(f"{self.path}:{name}", SKIP_UNSAFE_ZIP_PATH)
                self.scan_log.skip(name, SKIP_UNSAFE_ZIP_PATH)
                continue
            if any(part.startswith(".") for part in PurePosixPath(name).parts):
                continue
            if PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS:
                self._names.append(name)
            else:
                self.scan_log.skip(name, SKIP_EXTENSION)
        self._archive: zipfile.ZipFile | None = None
        self._manifest: dict | None = None

    def ids(self) -> list[str]:
        return list(self._names)

    def _read(self, name: str) -> bytes:
        if self._archive is None:
            self._archive = zipfile.ZipFile(self.path)
        return self._archive.read(name)

    def load(self, index: int) -> np.ndarray:
        name = self._names[index]
        try:
            data = self._read(name)
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise DecodeError(name, "corrupt zip entry", str(error)) from error
        return decode_image_bytes(data, name, self.decode_log)

    def scan_skips(self) -> list[tuple[str, str]]:
        return list(self.scan_log.skipped)

    def manifest(self) -> dict:
        if self._manifest is None:
            entries = []
            for name in self._names:
                try:
                    data = self._read(name)
                except (zipfile.BadZipFile, OSError, EOFError):
                    data = b""
                entries.append([name, len(data), sha256_bytes(data)])
            self._manifest = {"kind": "zip", "files": entries}
        return self._manifest

    def __del__(self) -> None:
        if getattr(self, "_archive", None) is not None:
            self._archive.close()


def is_safe_member_name(name: str) -> bool:
    """False for archive member names that are absolute, carry a drive letter, or climb with ".."."""
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        return False
    return ".." not in PurePosixPath(normalised).parts
