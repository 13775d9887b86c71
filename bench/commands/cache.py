"""`fdbench cache verify|prune`: check every cache entry, or free space, under $FDBENCH_CACHE."""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from bench.errors import UserError

VERIFY_EPILOG = """exit status:
  0  every entry is sound (entries of an older format, which are simply recomputed, count as sound)
  1  damaged entries were found (also with --delete, after removing them)
  2  bad arguments"""

PRUNE_EPILOG = """sizes take binary units: 500M, 10G, 1.5T (K, M, G, T = 1024^1..4 bytes; a plain number
is bytes).

exit status:
  0  done (or, with --dry-run, the plan printed)
  2  bad arguments"""

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `cache` sub-command with its `verify` and `prune` actions."""
    parser = subparsers.add_parser("cache", help="verify or prune the feature and statistics cache")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify",
        help="check every cache entry's checksum and report damaged ones",
        description="Read every entry of every namespace under the cache folder and check its checksum.",
        epilog=VERIFY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("--delete", action="store_true", help="remove damaged and old-format entries")
    _add_root(verify)
    verify.set_defaults(handler=run_verify)
    prune = actions.add_parser(
        "prune",
        help="remove entries not read for a while, or beyond a size budget",
        description=(
            "Remove entries not read for --older-than days, then the least recently read ones until the "
            "cache fits --max-size. Temporary files of writes that never finished (over a day old) go too."
        ),
        epilog=PRUNE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prune.add_argument("--older-than", type=float, default=None, metavar="DAYS")
    prune.add_argument("--max-size", type=parse_size, default=None, metavar="SIZE", help="e.g. 10G")
    prune.add_argument("--dry-run", action="store_true", help="print what would be removed, remove nothing")
    _add_root(prune)
    prune.set_defaults(handler=run_prune)


def _add_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="cache folder (default: $FDBENCH_CACHE or the user cache)",
    )


def parse_size(text: str) -> int:
    """Bytes in `10G`, `500M`, `1.5T`, `2048` (binary units; an optional `B` or `iB` is accepted)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, flags=re.IGNORECASE)
    if match is None:
        raise argparse.ArgumentTypeError(f"cannot read size {text!r}; write e.g. 500M, 10G or 1.5T")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def human_size(size: int) -> str:
    """`size` bytes in the largest binary unit that keeps the number ≥ 1 (e.g. "1.5 GiB")."""
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} B"


def run_verify(args: argparse.Namespace) -> int:
    """Verify every entry; print per-namespace counts and each damaged entry with its reason."""
    from bench.cache import cache_root, verify_cache

    root = args.cache_dir or cache_root()
    report = verify_cache(root, delete=args.delete)
    for namespace, counts in sorted(report.per_namespace.items()):
        print(
            f"{namespace}: {counts['ok']} ok, {counts['damaged']} damaged, {counts['old format']} old format"
        )
    for entry, reason in report.damaged:
        print(f"damaged: {entry.namespace}/{entry.key}.npz: {reason}")
    total = report.ok + len(report.damaged) + len(report.legacy)
    summary = f"{total} entries under {root}: {report.ok} ok, {len(report.damaged)} damaged"
    summary += f", {len(report.legacy)} old format"
    if report.legacy:
        summary += " (recomputed when next needed)"
    if args.delete:
        summary += f"; deleted {report.deleted}"
    elif report.damaged:
        summary += "; run with --delete to remove the damaged ones"
    print(summary)
    return 1 if report.damaged else 0


def run_prune(args: argparse.Namespace) -> int:
    """Prune by age and/or size and print what was (or would be) freed."""
    from bench.cache import cache_root, prune_cache

    if args.older_than is None and args.max_size is None:
        raise UserError("give --older-than DAYS and/or --max-size SIZE (see fdbench cache prune --help)")
    if args.older_than is not None and args.older_than < 0:
        raise UserError(f"--older-than must be at least 0 days, got {args.older_than}")
    root = args.cache_dir or cache_root()
    report = prune_cache(root, args.older_than, args.max_size, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for entry in report.removed:
        last = time.strftime("%Y-%m-%d", time.localtime(entry.last_read))
        print(f"{verb}: {entry.namespace}/{entry.key}.npz ({human_size(entry.size)}, last read {last})")
    for temp in report.stale_temp_files:
        print(f"{verb}: {temp.parent.name}/{temp.name} (unfinished write)")
    print(
        f"{verb} {len(report.removed)} entries, {human_size(report.freed_bytes)}"
        f" (+{len(report.stale_temp_files)} unfinished writes); kept {report.kept} entries, "
        f"{human_size(report.kept_bytes)}, under {root}"
    )
    return 0
