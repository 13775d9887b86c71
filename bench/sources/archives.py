"""Image sources backed by archives: zip, and tar (plain, gzip, bzip2 or xz), with one set of safety rules.

Members are read from the archive, never extracted, and their names are never resolved against the file
system. Refused and recorded: absolute names, drive letters and ".." parts; links; devices and FIFOs;
folder members named like images; members whose data is damaged; and every earlier member repeated under
a name (the last one is used, as extraction would leave it). Hidden members (a part starting with ".") and
other folder members are ignored silently; other extensions are recorded as usual. Ids are member names,
ordered by name; tar names lose a leading "./", so a tar of a folder has the folder's ids.
"""

from __future__ import annotations

import contextlib
import os
import tarfile
import tempfile
import threading
import weakref
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from bench.decode import (
    MAX_FILE_BYTES,
    SKIP_ARCHIVE_CUT,
    SKIP_ARCHIVE_LINK,
    SKIP_CORRUPT_MEMBER,
    SKIP_DIRECTORY,
    SKIP_DUPLICATE_MEMBER,
    SKIP_EXTENSION,
    SKIP_FILE_TOO_LARGE,
    SKIP_NOT_REGULAR,
    SKIP_UNSAFE_MEMBER_PATH,
    DecodeError,
    decode_image_bytes,
    has_image_extension,
)
from bench.hashing import sha256_bytes
from bench.sources.base import ImageSource
from bench.sources.names import display_path, printable_name

# Failures of reading one member's bytes (damaged compressed data, bad CRC, encryption, odd methods).
_MEMBER_FAILURES = (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, zlib.error)


def is_safe_member_name(name: str) -> bool:
    """False for archive member names that are absolute, carry a drive letter, or climb with ".."."""
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        return False
    return ".." not in PurePosixPath(normalised).parts


@dataclass(frozen=True)
class Member:
    """One archive member: its name, what it is ("file", "dir", "link", "other"), size and where it is."""

    name: str
    kind: str
    size: int
    locator: Any


def member_verdict(name: str, kind: str) -> str | None:
    """ "keep", "ignore", or the `SKIP_*` reason a member named `name` of this kind is left out."""
    if not is_safe_member_name(name):
        return SKIP_UNSAFE_MEMBER_PATH
    if any(part.startswith(".") for part in PurePosixPath(name).parts):
        return "ignore"
    if kind == "dir":
        return SKIP_DIRECTORY if has_image_extension(name) else "ignore"
    if kind == "link":
        return SKIP_ARCHIVE_LINK
    if kind != "file":
        return SKIP_NOT_REGULAR
    return "keep" if has_image_extension(PurePosixPath(name).name) else SKIP_EXTENSION


class _ArchiveSource(ImageSource):
    """Members of one archive file; subclasses list `Member`s and read one member's bytes."""

    manifest_kind = "archive"

    def __init__(self, path: str | Path, strict: bool) -> None:
        super().__init__()
        self.path = Path(path)
        self.strict = strict
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.manifest_kind} archive not found: {display_path(self.path)}")
        self._ids: list[str] = []
        self._members: list[Member] = []
        self._manifest: dict | None = None

    def _admit(self, members: Iterable[Member]) -> None:
        """Keep the image members (the last of a repeated name), ordered by id; record the rest."""
        kept: dict[str, Member] = {}
        for member in members:
            name = printable_name(member.name)
            verdict = member_verdict(member.name, member.kind)
            if verdict == "ignore":
                continue
            if verdict != "keep":
                self.refuse(name, verdict, f"{display_path(self.path)}:{name}")
                continue
            if name in kept:
                self.refuse(name, SKIP_DUPLICATE_MEMBER, f"{display_path(self.path)}:{name}")
            kept[name] = member
        self._ids = sorted(kept)
        self._members = [kept[name] for name in self._ids]

    def _read_member(self, member: Member) -> bytes:
        raise NotImplementedError

    def _member_bytes(self, index: int) -> bytes:
        name, member = self._ids[index], self._members[index]
        if member.size > MAX_FILE_BYTES:
            raise DecodeError(name, SKIP_FILE_TOO_LARGE, f"{member.size} bytes, limit {MAX_FILE_BYTES}")
        try:
            data = self._read_member(member)
        except _MEMBER_FAILURES as error:
            raise DecodeError(name, SKIP_CORRUPT_MEMBER, str(error)) from error
        if len(data) != member.size:
            raise DecodeError(name, SKIP_CORRUPT_MEMBER, f"{len(data)} of {member.size} bytes present")
        return data

    def ids(self) -> list[str]:
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def load(self, index: int) -> np.ndarray:
        return self.decode(index, self.encoded(index))

    def encoded(self, index: int) -> bytes:
        """The member's bytes as stored (for decoders other than bench.decode's)."""
        return self._member_bytes(index)

    def decode(self, index: int, data: bytes) -> np.ndarray:
        """`data`, the bytes of entry `index`, decoded by bench.decode (counted in the decode log)."""
        return decode_image_bytes(data, self._ids[index], self.decode_log)

    def manifest(self) -> dict:
        """Member ids, sizes and sha256 (size 0 and the empty digest for a member that cannot be read)."""
        if self._manifest is None:
            entries = []
            for index, name in enumerate(self._ids):
                try:
                    data = self._member_bytes(index)
                except DecodeError:
                    data = b""
                entries.append([name, len(data), sha256_bytes(data)])
            self._manifest = {"kind": self.manifest_kind, "files": entries}
        return self._manifest


class ZipSource(_ArchiveSource):
    """Every image member of a zip archive, ordered by member name (see the module docstring)."""

    manifest_kind = "zip"

    def __init__(self, path: str | Path, strict: bool = False) -> None:
        super().__init__(path, strict)
        try:
            with zipfile.ZipFile(self.path) as archive:
                infos = archive.infolist()
        except (zipfile.BadZipFile, OSError, UnicodeDecodeError) as error:
            raise ValueError(f"{display_path(self.path)} is not a readable zip archive: {error}") from None
        self._admit(
            Member(info.filename.rstrip("/"), _zip_kind(info), info.file_size, info) for info in infos
        )
        self._archive: zipfile.ZipFile | None = None
        self._archive_pid = 0

    def _read_member(self, member: Member) -> bytes:
        if self._archive is None or self._archive_pid != os.getpid():  # a forked worker opens its own
            self._archive = zipfile.ZipFile(self.path)
            self._archive_pid = os.getpid()
        return self._archive.read(member.locator)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_archive": None}

    def __del__(self) -> None:
        archive = getattr(self, "_archive", None)
        if archive is not None and self._archive_pid == os.getpid():
            archive.close()


def _zip_kind(info: zipfile.ZipInfo) -> str:
    if info.is_dir():
        return "dir"
    unix_type = (info.external_attr >> 16) & 0o170000
    if unix_type == 0o120000:
        return "link"
    return "file" if unix_type in (0, 0o100000) else "other"


class TarSource(_ArchiveSource):
    """Every image member of a tar archive (plain, .gz, .bz2 or .xz), ordered by member name.

    A plain tar is read in place. A compressed one is decompressed once, while listing, and its image
    members are kept in a temporary file (removed with the source) so that any member can be read at
    once; decompressing on every read would cost a pass over the archive per image.
    """

    manifest_kind = "tar"

    def __init__(self, path: str | Path, strict: bool = False) -> None:
        super().__init__(path, strict)
        self._data_path = str(self.path)
        self._handle: Any = None
        self._handle_pid = 0
        self._lock = threading.Lock()
        with open(self.path, "rb") as handle:
            compressed = handle.read(6).startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00"))
        members = self._list_compressed() if compressed else self._list_plain()
        self._admit(members)

    def _list_plain(self) -> list[Member]:
        members: list[Member] = []
        try:
            with tarfile.open(self.path, "r:") as archive:
                for info in archive:
                    members.append(Member(_tar_name(info), _tar_kind(info), info.size, info.offset_data))
        except (tarfile.TarError, EOFError, OSError) as error:
            self._cut(members, error)
        return members

    def _list_compressed(self) -> list[Member]:
        handle, spool_path = tempfile.mkstemp(prefix="fdbench-tar-", suffix=".spool")
        weakref.finalize(self, _remove_quietly, spool_path)
        self._data_path = spool_path
        members: list[Member] = []
        with os.fdopen(handle, "wb") as spool:
            try:
                with tarfile.open(self.path, "r|*") as archive:
                    for info in archive:
                        name, kind = _tar_name(info), _tar_kind(info)
                        locator = None
                        if member_verdict(name, kind) == "keep" and info.size <= MAX_FILE_BYTES:
                            stream = archive.extractfile(info)
                            data = stream.read() if stream is not None else b""
                            locator = spool.tell()
                            spool.write(data)
                        members.append(Member(name, kind, info.size, locator))
            except (tarfile.TarError, EOFError, OSError, zlib.error, ValueError) as error:
                self._cut(members, error)
        return members

    def _cut(self, members: list[Member], error: BaseException) -> None:
        """Record where a damaged archive stops yielding members (fatal only with nothing listed)."""
        if not members:
            raise ValueError(f"{display_path(self.path)} is not a readable tar archive: {error}") from None
        where = f"{display_path(self.path)} after {printable_name(members[-1].name)}"
        self.refuse(where, SKIP_ARCHIVE_CUT, f"{where} ({error})")

    def _read_member(self, member: Member) -> bytes:
        if member.locator is None:
            raise EOFError("the archive ended inside this entry")
        with self._lock:
            if self._handle is None or self._handle_pid != os.getpid():
                self._handle = open(self._data_path, "rb")  # noqa: SIM115 - held for the source's life
                self._handle_pid = os.getpid()
            self._handle.seek(member.locator)
            return self._handle.read(member.size)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handle": None, "_lock": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def _tar_name(info: tarfile.TarInfo) -> str:
    """The member name without a leading "./" (as `tar -C folder -cf x.tar .` writes them)."""
    name = info.name
    while name.startswith("./"):
        name = name[2:]
    return name


def _tar_kind(info: tarfile.TarInfo) -> str:
    if info.isdir():
        return "dir"
    if info.issym() or info.islnk():
        return "link"
    return "file" if info.isreg() and not info.issparse() else "other"


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
