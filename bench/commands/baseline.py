"""`fdbench baseline save RESULTS FILE`: store selected result rows and tolerances as a baseline."""

from __future__ import annotations

import argparse
from pathlib import Path

SELECT_OPTIONS = ("experiment", "space", "variant", "region", "metric")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `baseline` sub-command (with its `save` and `show` actions)."""
    parser = subparsers.add_parser(
        "baseline", help="store results as a regression baseline", description="Manage regression baselines."
    )
    actions = parser.add_subparsers(dest="baseline_action", required=True, metavar="ACTION")
    save = actions.add_parser(
        "save",
        help="save selected rows of a results table as a baseline file (JSON)",
        description="Save the selected rows of RESULTS (a results.csv/.json or run folder) with per-metric "
        "tolerances to FILE. Repeat a selection option to allow several values.",
    )
    save.add_argument("results", metavar="RESULTS", type=Path)
    save.add_argument("file", metavar="FILE", type=Path)
    for column in SELECT_OPTIONS:
        save.add_argument(
            f"--{column}", action="append", default=[], metavar="NAME", help=f"keep only this {column}"
        )
    save.add_argument(
        "--rtol", action="append", default=[], metavar="[METRIC=]VALUE", help="relative tolerance to store"
    )
    save.add_argument(
        "--atol", action="append", default=[], metavar="[METRIC=]VALUE", help="absolute tolerance to store"
    )
    save.set_defaults(handler=run_save)
    show = actions.add_parser("show", help="print a baseline's tolerances and rows")
    show.add_argument("file", metavar="FILE", type=Path)
    show.set_defaults(handler=run_show)


def parse_tolerance_options(entries: list[str], option: str) -> dict[str, float]:
    """'METRIC=VALUE' or 'VALUE' (all metrics, key '*') entries as a metric → float mapping."""
    from bench.cli import UserError

    parsed: dict[str, float] = {}
    for entry in entries:
        metric, _, text = entry.rpartition("=")
        try:
            value = float(text)
        except ValueError:
            raise UserError(f"{option} {entry!r}: expected [METRIC=]NUMBER") from None
        if not value >= 0:
            raise UserError(f"{option} {entry!r}: tolerances must be non-negative")
        parsed[metric.strip() or "*"] = value
    return parsed


def run_save(args: argparse.Namespace) -> int:
    """Select rows, apply tolerance options to the defaults, write the baseline file.

    A bare `--rtol VALUE` sets every metric's relative tolerance; `--rtol METRIC=VALUE` one metric's.
    """
    from bench.reports.regression import effective_tolerance, make_baseline, save_baseline
    from bench.reports.results import load_results

    results = load_results(args.results)
    selection = {column: getattr(args, column) for column in SELECT_OPTIONS if getattr(args, column)}
    rtol = parse_tolerance_options(args.rtol, "--rtol")
    atol = parse_tolerance_options(args.atol, "--atol")
    draft = make_baseline(results, selection, source=str(args.results))
    metrics = set(draft.tolerances) | set(rtol) | set(atol)
    tolerances = {m: effective_tolerance(draft.tolerance_for(m), m, rtol, atol) for m in sorted(metrics)}
    draft.tolerances = tolerances
    path = save_baseline(draft, args.file)
    print(f"saved {len(draft.rows)} row(s) to {path}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Print a baseline's selection, tolerances and row count."""
    from bench.reports.regression import load_baseline

    baseline = load_baseline(args.file)
    print(f"baseline {args.file}: {len(baseline.rows)} row(s) from {baseline.source or 'unknown source'}")
    print(f"selection: {baseline.selection or 'all rows'}")
    for metric, tolerance in sorted(baseline.tolerances.items()):
        print(f"  {metric}: {tolerance.text()}")
    return 0
