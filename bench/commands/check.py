"""`fdbench check RESULTS --baseline FILE`: exit 1 when results drift from a baseline beyond tolerance, or
when a baseline row is missing or the run has a row the baseline lacks; `--update` rewrites the baseline."""

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
        help="compare results with a baseline; exit 1 on drift, missing or extra rows",
        description="Compare RESULTS (results.csv/.json or a run folder) with a baseline row by row "
        "(experiment, space, variant, region, level, metric) and number by number (value, interval, bias, "
        "mean, std, n, lost). Exit 0 when every number is within its tolerance and both hold the same rows, "
        "1 on any drift, missing row or extra row, 2 when a file cannot be used. The report lists each "
        "failing number with the baseline, the value, the tolerance, their ratio and where the tolerance "
        "came from.",
        epilog="Tolerances: a number passes when |current - baseline| <= atol + rtol*|baseline|, with the "
        "number's own tolerances from the baseline file. Override them with --rtol/--atol METRIC=VALUE (a "
        "bare VALUE applies to every metric) or --rtol-METRIC/--atol-METRIC VALUE for "
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
    parser.add_argument("--all", action="store_true", help="list every compared number, not only problems")
    parser.add_argument(
        "--update",
        action="store_true",
        help="rewrite the baseline's values from RESULTS (tolerances kept; new rows get default ones)",
    )
    parser.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    """Load both tables, compare, print the drift report; 1 on drift, missing or extra rows."""
    from bench.commands.baseline import parse_tolerance_options
    from bench.reports.regression import (
        compare,
        describe_platform,
        format_comparison,
        load_baseline,
        save_baseline,
        update_baseline,
    )
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
    print(
        f"baseline {args.baseline}: {len(baseline.rows)} row(s), "
        f"recorded on {describe_platform(baseline.platform)}"
    )
    print(format_comparison(comparison, show_all=args.all), end="")
    if args.update:
        updated, counts = update_baseline(baseline, results)
        save_baseline(updated, args.baseline)
        print(
            f"updated {args.baseline} from {args.results}: "
            f"{counts['kept']} row(s) kept with their tolerances, "
            f"{counts['added']} added with default tolerances, {counts['dropped']} dropped; rerun "
            "`fdbench baseline save --calibrate` to recalibrate"
        )
        return 0
    if comparison.failed:
        print(f"check failed against {args.baseline}", file=sys.stderr)
        return 1
    return 0
