"""`fdbench spaces`: the feature-space registry as a table (name, family, dim, preprocessing, status)."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "spaces",
        help="list the registered feature spaces and whether each can load here",
        description="List every registered feature space: family, output dim, preprocessing, spec hash, "
        "and whether it can load on this machine now (and if not, why).",
    )
    parser.add_argument("--json", action="store_true", help="print the full specs as JSON")
    parser.add_argument("--available", action="store_true", help="show only the spaces that can load now")
    parser.set_defaults(handler=run)


def describe_preprocessing(prep) -> str:
    crop = "" if prep.crop == "none" else f"+{prep.crop}"
    norm = " mean/std" if prep.mean is not None else ""
    low, high = prep.value_range
    return f"{prep.size or 'native'}² {prep.resize}{crop} [{low:g},{high:g}]{norm}"


def run(args: argparse.Namespace) -> int:
    import feature_spaces

    status = feature_spaces.available()
    rows = []
    for name in feature_spaces.names():
        space = feature_spaces.get(name)
        if args.available and not status[name].ok:
            continue
        rows.append((space, status[name]))
    if args.json:
        payload = [
            {
                **space.spec.to_dict(),
                "spec_hash": space.spec_hash,
                "available": state.ok,
                "reason": state.reason,
            }
            for space, state in rows
        ]
        print(json.dumps(payload, indent=2, default=str))
        return 0
    header = ("name", "family", "dim", "preprocessing", "spec hash", "status")
    table = [
        (
            space.name,
            space.spec.family,
            str(space.spec.dim),
            describe_preprocessing(space.spec.preprocessing),
            space.spec_hash,
            "ready" if state.ok else "missing: see below",
        )
        for space, state in rows
    ]
    widths = [max(len(str(row[i])) for row in [header, *table]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *table]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    missing = [(space, state) for space, state in rows if not state.ok]
    if missing:
        print()
        for space, state in missing:
            print(f"{space.name}: {state.reason}")
    return 0
