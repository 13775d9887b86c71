"""The `fdbench` command line: a thin dispatcher over the modules in `bench.commands`.

Each module there defines `register(subparsers)`, which adds one sub-command whose handler is a single API
call plus argument parsing and progress display. Heavy imports (torch, models) happen inside handlers so
that `fdbench --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from bench import __version__, commands
from bench.errors import UserError

__all__ = ["UserError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command found in `bench.commands`."""
    parser = argparse.ArgumentParser(
        prog="fdbench",
        description="Fréchet distances and friends in many feature spaces, and what each space sees.",
    )
    parser.add_argument("--version", action="version", version=f"fdbench {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.commands.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    # Back torch's large CPU tensors with transparent huge pages (when the kernel allows it on request):
    # every first touch of a fresh activation page is a page fault, and with 4 KiB pages a quarter of the cold
    # demo's CPU time went to faulting (docs/performance.md). Set before torch is imported; explicit wins.
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.handler(args)
    except (UserError, FileNotFoundError, ValueError) as error:
        print(f"fdbench {args.command}: error: {error}", file=sys.stderr)
        return 2
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
