"""`fdbench report RUN_DIR`: rebuild a run's report.html (and report.md, plots) from its saved files."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `report` sub-command."""
    parser = subparsers.add_parser(
        "report",
        help="rebuild the HTML/Markdown report of a run folder",
        description="Rebuild report.html, report.md and plots/ from results.csv (or results.json) and "
        "manifest.json in RUN_DIR.",
    )
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", type=Path, help="folder holding results.csv + manifest.json"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the report here instead of RUN_DIR")
    parser.add_argument(
        "--title", default=None, help="page title (default: from the manifest or folder name)"
    )
    parser.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    """Load the run's table and manifest, write the report, print the page's path."""
    from bench.errors import UserError
    from bench.reports.manifest import load_manifest
    from bench.reports.results import load_results
    from bench.reports.writer import write_report

    run_dir: Path = args.run_dir
    if not run_dir.is_dir():
        raise UserError(f"run folder {run_dir} does not exist or is not a folder")
    results = load_results(run_dir)
    manifest = load_manifest(run_dir)
    out_dir = args.out or run_dir
    page = write_report(results, manifest, out_dir, title=args.title, save_tables=args.out is not None)
    print(page)
    return 0
