"""`fdbench check RESULTS --baseline FILE`: exit 1 when results drift from a baseline beyond tolerance."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Metrics that get their own --rtol-METRIC / --atol-METRIC options; any other metric is reached with
# --rtol METRIC=VALUE.
KNOWN_METRICS = (
    "fd",
    "nfd",
    "fd_mean_term",
    "fd_trace_term",
    "fd_ratio",
    "fd_inf",
    "kid",
    "kid_std",
    "precision",
    "recall",
    "density",
    "coverage",
    "kendall_tau",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `check` sub-command."""
    parser = subparsers.add_parser(
        "check",
        help="compare results with a baseline; exit 1 on drift or missing rows",
        description="Compare RESULTS (results.csv/.json or a run folder) with a baseline key by key "
        "(experiment, space, variant, region, level, metric). Exit 0 when every baseline row is present and "
        "within tolerance, 1 otherwise; new rows are listed but do not fail the check.",
        epilog="Tolerances: a row passes when |current - baseline| <= atol + rtol*|baseline|, with the "
        "metric's tolerances from the baseline file. Override them with --rtol/--atol METRIC=VALUE (a bare "
        "VALUE applies to every metric) or --rtol-METRIC/--atol-METRIC VALUE for "
        + ", ".join(KNOWN_METRICS)
        + ".",
    )
    parser.add_argument("results", metavar="RESULTS", type=Path)
    parser.add_argument("--baseline", required=True, type=Path, metavar="FILE", help="baseline JSON file")
    parser.add_argument(
        "--rtol", action="append", default=[], metavar="[METRIC=]VALUE", help="override a relative tolerance"
    )
    parser.add_argument(
        "--atol", action="append", default=[], metavar="[METRIC=]VALUE", help="override an absolute tolerance"
    )
    for metric in KNOWN_METRICS:
        names = dict.fromkeys([metric, metric.replace("_", "-")])
        for kind in ("rtol", "atol"):
            parser.add_argument(
                *(f"--{kind}-{name}" for name in names),
                dest=f"{kind}_metric_{metric}",
                type=float,
                default=None,
                metavar="X",
                help=argparse.SUPPRESS,
            )
    parser.add_argument("--all", action="store_true", help="list every compared key, not only problems")
    parser.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    """Load both tables, compare, print the diff table; 1 on drift or missing rows."""
    from bench.commands.baseline import parse_tolerance_options
    from bench.reports.regression import compare, format_comparison, load_baseline
    from bench.reports.results import load_results

    rtol = parse_tolerance_options(args.rtol, "--rtol")
    atol = parse_tolerance_options(args.atol, "--atol")
    for metric in KNOWN_METRICS:
        for kind, overrides in (("rtol", rtol), ("atol", atol)):
            value = getattr(args, f"{kind}_metric_{metric}")
            if value is not None:
                overrides[metric] = value
    baseline = load_baseline(args.baseline)
    results = load_results(args.results)
    comparison = compare(results, baseline, rtol=rtol, atol=atol)
    print(format_comparison(comparison, show_all=args.all), end="")
    if comparison.failed:
        print(f"check failed against {args.baseline}", file=sys.stderr)
        return 1
    return 0
