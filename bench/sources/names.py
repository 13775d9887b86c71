"""Entry names from file systems and archives as ids that are printable, JSON-safe and hashable.

On POSIX a file name is bytes; Python hands names that are not valid UTF-8 over as text with lone
surrogates (`surrogateescape`), which cannot be encoded, hashed or written as UTF-8 JSON. Such a name gets
an id that spells its undecodable bytes as `\\xNN` escapes (`b"caf\\xe9.png"` → `"caf\\xe9.png"`); every
name that is valid Unicode is its own id, so ids of ordinary files never change. The file itself is always
opened by its real name, never by the id.
"""

from __future__ import annotations

import os


def printable_name(name: str) -> str:
    """`name` itself when it is valid Unicode, else the same name with undecodable bytes as `\\xNN`."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        try:
            raw = os.fsencode(name)
        except UnicodeEncodeError:  # lone surrogates that did not come from a byte name
            return name.encode("utf-8", "backslashreplace").decode("utf-8")
        return raw.decode("utf-8", "backslashreplace")
    return name


def display_path(path: str | os.PathLike[str]) -> str:
    """A path for messages and reports (undecodable bytes as `\\xNN`), safe to print on any terminal."""
    return printable_name(os.fspath(path))
