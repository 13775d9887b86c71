"""`fdbench baseline save|show`: store result rows with a tolerance per number as a regression baseline.

fdbench baseline save --calibrate CONFIG.toml FILE   # rerun CONFIG under honest variations (the usual way)
fdbench baseline save RESULTS FILE                   # rows of an existing run, per-metric default tolerances
fdbench baseline show FILE
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.errors import UserError

SELECT_OPTIONS = ("experiment", "space", "variant", "region", "metric")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `baseline` sub-command (with its `save` and `show` actions)."""
    parser = subparsers.add_parser(
        "baseline", help="store results as a regression baseline", description="Manage regression baselines."
    )
    actions = parser.add_subparsers(dest="baseline_action", required=True, metavar="ACTION")
    save = actions.add_parser(
        "save",
        help="save a baseline file (JSON): calibrated from a configuration, or from a results table",
        description="With --calibrate, INPUT is a run configuration (TOML): it is run once as the reference "
        "and once per honest variation (ATen/MKL/oneDNN kernels at their most basic instruction set, one "
        "thread, another batch size; on a GPU TF32 on and off), each in its own process with an empty cache, "
        "and every number's tolerance is MULTIPLE × the largest difference seen, with a floor. Without it, "
        "INPUT is a results table (results.csv/.json or a run folder), with per-metric default tolerances. "
        "Repeat a selection option to allow several values. See docs/regression.md.",
    )
    save.add_argument("input", metavar="INPUT", type=Path, help="run configuration (--calibrate) or results")
    save.add_argument("file", metavar="FILE", type=Path)
    save.add_argument(
        "--calibrate", action="store_true", help="INPUT is a configuration: rerun and calibrate"
    )
    save.add_argument(
        "--multiple", type=float, default=None, help="tolerance = MULTIPLE × spread (default 10)"
    )
    save.add_argument("--rtol-floor", type=float, default=None, help="relative floor (default 1e-7)")
    save.add_argument("--atol-floor", type=float, default=None, help="absolute floor (default 1e-12)")
    save.add_argument(
        "--keep-runs", type=Path, default=None, metavar="DIR", help="keep the variation runs here"
    )
    for column in SELECT_OPTIONS:
        save.add_argument(
            f"--{column}", action="append", default=[], metavar="NAME", help=f"keep only this {column}"
        )
    save.add_argument(
        "--rtol",
        action="append",
        default=[],
        metavar="[METRIC=]VALUE",
        help="relative tolerance (no --calibrate)",
    )
    save.add_argument(
        "--atol",
        action="append",
        default=[],
        metavar="[METRIC=]VALUE",
        help="absolute tolerance (no --calibrate)",
    )
    save.set_defaults(handler=run_save)
    show = actions.add_parser("show", help="print a baseline's platform, calibration and tolerances")
    show.add_argument("file", metavar="FILE", type=Path)
    show.set_defaults(handler=run_show)


def parse_tolerance_options(entries: list[str], option: str) -> dict[str, float]:
    """'METRIC=VALUE' or 'VALUE' (all metrics, key '*') entries as a metric → float mapping."""
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
    """Write a calibrated baseline (--calibrate) or one with per-metric default tolerances."""
    from bench.reports.regression import save_baseline

    selection = {column: getattr(args, column) for column in SELECT_OPTIONS if getattr(args, column)}
    if args.calibrate:
        if args.rtol or args.atol:
            raise UserError(
                "--rtol/--atol set uncalibrated tolerances; with --calibrate use --multiple/--*-floor"
            )
        baseline = _calibrated(args, selection)
    else:
        if args.multiple is not None or args.rtol_floor is not None or args.atol_floor is not None:
            raise UserError("--multiple/--rtol-floor/--atol-floor need --calibrate")
        if args.input.suffix.lower() == ".toml":
            raise UserError(f"{args.input} is a configuration; add --calibrate to run and calibrate it")
        baseline = _uncalibrated(args, selection)
    path = save_baseline(baseline, args.file)
    print(f"saved {len(baseline.rows)} row(s) to {path}")
    return 0


def _calibrated(args: argparse.Namespace, selection: dict[str, list[str]]):
    from bench.reports.calibration import CalibrationError, CalibrationRule, calibrate

    if args.input.suffix.lower() != ".toml":
        raise UserError(f"--calibrate needs a run configuration (.toml), got {args.input}")
    defaults = CalibrationRule()
    try:
        rule = CalibrationRule(
            multiple=defaults.multiple if args.multiple is None else args.multiple,
            rtol_floor=defaults.rtol_floor if args.rtol_floor is None else args.rtol_floor,
            atol_floor=defaults.atol_floor if args.atol_floor is None else args.atol_floor,
        )
    except ValueError as error:
        raise UserError(str(error)) from None
    print(
        f"calibrating {args.input}: tolerance = {rule.multiple:g} × spread, "
        f"floors rtol {rule.rtol_floor:g}, atol {rule.atol_floor:g}"
    )
    try:
        baseline, summary = calibrate(args.input, selection, rule, work_dir=args.keep_runs)
    except CalibrationError as error:
        raise UserError(str(error)) from None
    if not summary.empty:
        print("largest relative difference from the reference run, per metric and variation:")
        print(summary.to_string(float_format=lambda value: f"{value:.2g}"))
    return baseline


def _uncalibrated(args: argparse.Namespace, selection: dict[str, list[str]]):
    from bench.reports.regression import DEFAULT_TOLERANCES, effective_tolerance, make_baseline
    from bench.reports.results import load_results

    rtol = parse_tolerance_options(args.rtol, "--rtol")
    atol = parse_tolerance_options(args.atol, "--atol")
    metrics = set(DEFAULT_TOLERANCES) | set(rtol) | set(atol)
    table = {
        metric: effective_tolerance(
            DEFAULT_TOLERANCES.get(metric, DEFAULT_TOLERANCES["*"]), metric, rtol, atol
        )
        for metric in metrics
    }
    given = {
        metric: tolerance for metric, tolerance in table.items() if tolerance.origin.startswith("command")
    }
    return make_baseline(load_results(args.input), selection, tolerances=given, source=str(args.input))


def run_show(args: argparse.Namespace) -> int:
    """Print a baseline's platform, calibration runs and a summary of its tolerances."""
    import math
    from collections import Counter

    from bench.reports.regression import COUNT_CHECKS, describe_platform, load_baseline
    from bench.reports.results import key_label, row_key

    baseline = load_baseline(args.file)
    print(f"baseline {args.file}: {len(baseline.rows)} row(s) from {baseline.source or 'unknown source'}")
    print(f"selection: {baseline.selection or 'all rows'}")
    print(f"recorded on: {describe_platform(baseline.platform)}")
    calibration = baseline.calibration
    if calibration:
        rule = calibration.get("rule", {})
        print(
            f"calibrated: tolerance = {rule.get('multiple')} × spread, floors rtol {rule.get('rtol_floor')}, "
            f"atol {rule.get('atol_floor')}; runs:"
        )
        for run in calibration.get("runs", []):
            print(
                f"  {run['name']}: {run.get('seconds')} s, kernels {run.get('aten_capability')}, "
                f"{run.get('threads')} thread(s)"
            )
    else:
        print("not calibrated")
    origins = Counter(
        tolerance.origin.split(":")[0].split(" (")[0]
        for per_row in baseline.checks.values()
        for tolerance in per_row.values()
    )
    print("tolerances: " + ", ".join(f"{count} {origin}" for origin, count in origins.most_common()))
    widest = []
    for row in baseline.rows.to_dict("records"):
        key = row_key(row)
        for column, tolerance in baseline.checks.get(key, {}).items():
            value = float(row[column]) if row.get(column) is not None else math.nan
            if column not in COUNT_CHECKS and math.isfinite(value) and value != 0:
                widest.append((tolerance.bound(value) / abs(value), key_label(key), column))
    for relative, label, column in sorted(widest, reverse=True)[:5]:
        print(f"  widest: {label} [{column}]: ±{relative:.2g} relative")
    return 0
