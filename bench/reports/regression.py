"""Regression checks: results rows stored as a baseline with a tolerance per number, and the comparison
of a later run against it (docs/regression.md, METHODS §11).

A baseline row keeps its results record plus, for each number checked (`value`, and `ci_low`, `ci_high`,
`bias`, `mean`, `std`, `n`, `lost` where the row has them), a `Tolerance`: the number passes when
|current − baseline| ≤ atol + rtol·|baseline| (numpy's `isclose` rule). Each tolerance says where it
came from: calibrated from the spread of honest reruns (bench.reports.calibration), a per-metric default,
or the command line. A check fails on any DRIFT, on a baseline row the run lacks (MISSING) and on a row
the run has inside the baseline's selection that the baseline lacks (EXTRA).

Version-1 baselines (one tolerance per metric, only `value` checked) are read and converted on load.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.reports.results import (
    KEY_COLUMNS,
    PROBLEM_METRICS,
    duplicate_keys,
    key_label,
    results_to_records,
    row_key,
    validate_results,
)

BASELINE_FORMAT = "fdbench-baseline"
BASELINE_VERSION = 2
READABLE_VERSIONS = (1, 2)
DEFAULT_KEY = "*"
SELECTABLE = ("experiment", "space", "variant", "region", "metric")
FLOAT_CHECKS = ("value", "ci_low", "ci_high", "bias", "mean", "std")
COUNT_CHECKS = ("n", "lost")
CHECKED_COLUMNS = FLOAT_CHECKS + COUNT_CHECKS

OK, DRIFT, MISSING, EXTRA = "ok", "DRIFT", "MISSING", "EXTRA"
FAILING = (DRIFT, MISSING, EXTRA)
DIFF_COLUMNS = (
    "key",
    "field",
    "baseline",
    "current",
    "abs_diff",
    "rel_diff",
    "bound",
    "ratio",
    "tolerance",
    "origin",
    "status",
)
RowKey = tuple[str, ...]


class BaselineError(ValueError):
    """A baseline file or selection that cannot be used (bad format, duplicate keys, nothing selected)."""


@dataclass(frozen=True)
class Tolerance:
    """Allowed drift of one number: |current − baseline| ≤ atol + rtol·|baseline|.

    `origin` says how the tolerance was obtained; `spread` is the largest difference seen between honest
    reruns when it was calibrated (None otherwise).
    """

    rtol: float
    atol: float
    origin: str = ""
    spread: float | None = None

    def __post_init__(self) -> None:
        if not (self.rtol >= 0 and self.atol >= 0):
            raise BaselineError(f"tolerances must be non-negative, got rtol={self.rtol}, atol={self.atol}")

    def bound(self, baseline: float) -> float:
        """The largest allowed absolute difference from `baseline`."""
        return self.atol + self.rtol * abs(baseline)

    def text(self) -> str:
        """Short display form, e.g. 'rtol=0.001 atol=1e-08'."""
        return f"rtol={self.rtol:g} atol={self.atol:g}"

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"rtol": self.rtol, "atol": self.atol, "origin": self.origin}
        if self.spread is not None:
            record["spread"] = self.spread
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Tolerance:
        spread = record.get("spread")
        return cls(
            rtol=float(record["rtol"]),
            atol=float(record["atol"]),
            origin=str(record.get("origin", "")),
            spread=None if spread is None else float(spread),
        )


# Tolerances of a baseline saved from a results table without calibration (one per metric, '*' default).
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    DEFAULT_KEY: Tolerance(rtol=1e-3, atol=1e-8),
    "nfd": Tolerance(rtol=2e-3, atol=1e-6),
    "kid": Tolerance(rtol=1e-2, atol=1e-6),
    "kid_std": Tolerance(rtol=5e-2, atol=1e-6),
    "precision": Tolerance(rtol=0.0, atol=5e-3),
    "recall": Tolerance(rtol=0.0, atol=5e-3),
    "density": Tolerance(rtol=0.0, atol=5e-3),
    "coverage": Tolerance(rtol=0.0, atol=5e-3),
    "kendall_tau": Tolerance(rtol=0.0, atol=1e-6),
}


def metric_tolerance(metric: str, table: Mapping[str, Tolerance] | None = None) -> Tolerance:
    """The metric's own entry of a per-metric table (default: DEFAULT_TOLERANCES), else its '*' entry."""
    table = DEFAULT_TOLERANCES if table is None else table
    return table.get(metric) or table.get(DEFAULT_KEY) or DEFAULT_TOLERANCES[DEFAULT_KEY]


@dataclass
class Baseline:
    """Stored rows (unique keys) with a tolerance per checked number, the row selection, the platform the
    numbers were recorded on, and how the tolerances were calibrated (empty when they were not)."""

    rows: pd.DataFrame
    checks: dict[RowKey, dict[str, Tolerance]]
    selection: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""
    config: str | None = None
    platform: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)

    def subset(self, selection: Mapping[str, Sequence[str]]) -> Baseline:
        """The baseline narrowed to the rows matching `selection` too (e.g. the spaces a partial run has)."""
        narrowed = {k: list(v) for k, v in self.selection.items()}
        for column, values in selection.items():
            wanted = [str(v) for v in values]
            narrowed[column] = [v for v in narrowed[column] if v in wanted] if column in narrowed else wanted
            if not narrowed[column]:
                raise BaselineError(
                    f"{column} {wanted} lies outside the baseline's selection {self.selection}"
                )
        rows = select_rows(self.rows, selection).reset_index(drop=True)
        keys = {row_key(row) for row in rows.to_dict("records")}
        checks = {key: value for key, value in self.checks.items() if key in keys}
        return dataclasses.replace(self, rows=rows, checks=checks, selection=narrowed)


@dataclass(frozen=True)
class Comparison:
    """The outcome of a check: one line per compared number (or per missing/extra row), with its status."""

    table: pd.DataFrame

    def count(self, status: str) -> int:
        """How many lines have `status`."""
        return int((self.table["status"] == status).sum())

    @property
    def failed(self) -> bool:
        """True on any drift beyond tolerance, any missing row or any extra row."""
        return any(self.count(status) for status in FAILING)

    def lines(self, status: str) -> pd.DataFrame:
        """The lines with `status`."""
        return self.table[self.table["status"] == status]


def select_rows(results: pd.DataFrame, selection: Mapping[str, Sequence[str]] | None) -> pd.DataFrame:
    """Rows whose columns take one of the selected values (an empty selection keeps every row)."""
    table = validate_results(results)
    mask = pd.Series(True, index=table.index)
    for column, values in (selection or {}).items():
        if column not in SELECTABLE:
            raise BaselineError(f"cannot select on column {column!r}; choose from {', '.join(SELECTABLE)}")
        if values:
            mask &= table[column].isin([str(v) for v in values])
    return table[mask]


def checked_columns(row: Mapping[str, Any]) -> list[str]:
    """The numbers of a row a baseline checks: `value` always, the others where the row has them."""
    present = ["value"]
    for column in CHECKED_COLUMNS[1:]:
        number = row.get(column)
        if (
            number is not None
            and number is not pd.NA
            and not (isinstance(number, float) and math.isnan(number))
        ):
            present.append(column)
    return present


def baseline_rows(
    results: pd.DataFrame, selection: Mapping[str, Sequence[str]] | None = None
) -> pd.DataFrame:
    """The selected rows that can enter a baseline: skipped/failed rows left out, keys unique."""
    chosen = select_rows(results, selection)
    chosen = chosen[~chosen["metric"].isin(PROBLEM_METRICS)].reset_index(drop=True)
    if chosen.empty:
        raise BaselineError(f"the selection {dict(selection or {})} matches no result rows")
    repeated = duplicate_keys(chosen)
    if repeated:
        raise BaselineError(
            "a baseline needs one row per key; repeated: " + "; ".join(key_label(k) for k in repeated[:5])
        )
    return chosen


def make_baseline(
    results: pd.DataFrame,
    selection: Mapping[str, Sequence[str]] | None = None,
    tolerances: Mapping[str, Tolerance] | None = None,
    source: str = "",
) -> Baseline:
    """An uncalibrated baseline from the selected rows: each checked number gets its metric's tolerance
    (DEFAULT_TOLERANCES updated by `tolerances`); counts must match exactly."""
    chosen = baseline_rows(results, selection)
    table = dict(DEFAULT_TOLERANCES)
    table.update(tolerances or {})
    checks: dict[RowKey, dict[str, Tolerance]] = {}
    for row in chosen.to_dict("records"):
        metric = str(row["metric"])
        named = metric if metric in table else DEFAULT_KEY
        given = tolerances is not None and named in tolerances
        per_metric = metric_tolerance(metric, table)
        kind = "given" if given else "default"
        origin = f"{kind} tolerance for metric {named!r}, {per_metric.text()} (not calibrated)"
        checks[row_key(row)] = {
            column: Tolerance(0.0, 0.0, "counts must match (not calibrated)")
            if column in COUNT_CHECKS
            else dataclasses.replace(per_metric, origin=origin)
            for column in checked_columns(row)
        }
    clean_selection = {k: [str(v) for v in vs] for k, vs in (selection or {}).items() if vs}
    return Baseline(rows=chosen, checks=checks, selection=clean_selection, source=source)


def save_baseline(baseline: Baseline, path: str | Path) -> Path:
    """Write the baseline as JSON (version 2); returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for record in results_to_records(baseline.rows):
        key = row_key(record)
        checks = baseline.checks.get(key, {})
        rows.append({**record, "checks": {column: checks[column].to_dict() for column in checks}})
    document = {
        "format": BASELINE_FORMAT,
        "version": BASELINE_VERSION,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": baseline.source,
        "config": baseline.config,
        "selection": baseline.selection,
        "platform": baseline.platform,
        "calibration": baseline.calibration,
        "rows": rows,
    }
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    temporary.replace(target)
    return target


def load_baseline(path: str | Path) -> Baseline:
    """Read a baseline JSON file (version 1 or 2); FileNotFoundError or BaselineError says what is wrong."""
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"baseline file {source} does not exist")
    try:
        document = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise BaselineError(f"baseline {source} is not valid JSON: {error}") from error
    if not isinstance(document, dict) or document.get("format") != BASELINE_FORMAT:
        raise BaselineError(f'{source} is not an fdbench baseline (no "format": "{BASELINE_FORMAT}")')
    version = document.get("version")
    if version not in READABLE_VERSIONS:
        raise BaselineError(
            f"baseline {source} has version {version}; this fdbench reads versions "
            + ", ".join(map(str, READABLE_VERSIONS))
        )
    records = document.get("rows") or []
    if not isinstance(records, list) or not all(isinstance(record, dict) for record in records):
        raise BaselineError(f"baseline {source}: 'rows' must be a list of row records")
    plain = [{k: v for k, v in record.items() if k != "checks"} for record in records]
    rows = validate_results(pd.DataFrame.from_records(plain), source=source)
    repeated = duplicate_keys(rows)
    if repeated:
        raise BaselineError(f"baseline {source} repeats row {key_label(repeated[0])}")
    try:
        if version == 1:
            checks = _checks_from_version_1(rows, document.get("tolerances", {}))
        else:
            checks = {
                row_key(row): {
                    str(c): Tolerance.from_dict(t) for c, t in (record.get("checks") or {}).items()
                }
                for row, record in zip(rows.to_dict("records"), records, strict=True)
            }
    except (KeyError, TypeError, ValueError) as error:
        raise BaselineError(f"baseline {source} has malformed tolerances: {error}") from error
    unknown = sorted({c for per_row in checks.values() for c in per_row} - set(CHECKED_COLUMNS))
    if unknown:
        raise BaselineError(f"baseline {source} checks unknown column(s) {unknown}")
    return Baseline(
        rows=rows,
        checks=checks,
        selection=document.get("selection") or {},
        source=str(document.get("source") or source),
        config=document.get("config"),
        platform=document.get("platform") or {},
        calibration=document.get("calibration") or {},
    )


def _checks_from_version_1(
    rows: pd.DataFrame, stored: Mapping[str, Mapping[str, Any]]
) -> dict[RowKey, dict[str, Tolerance]]:
    """Version 1 checked `value` only, with one tolerance per metric ('*' for the rest)."""
    table = {str(m): Tolerance(float(t["rtol"]), float(t["atol"])) for m, t in stored.items()}
    checks = {}
    for row in rows.to_dict("records"):
        metric = str(row["metric"])
        named = metric if metric in table else DEFAULT_KEY
        tolerance = dataclasses.replace(
            metric_tolerance(metric, table),
            origin=f"version-1 tolerance for metric {named!r}, {metric_tolerance(metric, table).text()}",
        )
        checks[row_key(row)] = {"value": tolerance}
    return checks


def compare(
    results: pd.DataFrame,
    baseline: Baseline,
    rtol: Mapping[str, float] | None = None,
    atol: Mapping[str, float] | None = None,
) -> Comparison:
    """Compare a run with a baseline, number by number.

    `rtol` / `atol` override the stored tolerances per metric name ('*' for every metric); a metric's own
    override wins over '*', which wins over the baseline file.
    """
    current = select_rows(results, baseline.selection)
    current = current[~current["metric"].isin(PROBLEM_METRICS)]
    repeated = duplicate_keys(current)
    if repeated:
        raise BaselineError(
            "the results repeat key(s), cannot compare: " + "; ".join(key_label(k) for k in repeated[:5])
        )
    current_rows = {row_key(row): row for row in current.to_dict("records")}
    lines: list[dict[str, Any]] = []
    for row in baseline.rows.to_dict("records"):
        key = row_key(row)
        metric = key[KEY_COLUMNS.index("metric")]
        checks = baseline.checks.get(key) or {"value": metric_tolerance(metric)}
        if key not in current_rows:
            lines.append(_missing_or_extra(key, float(row["value"]), math.nan, MISSING))
            continue
        for column, stored in checks.items():
            tolerance = effective_tolerance(stored, metric, rtol or {}, atol or {})
            expected, actual = _number(row.get(column)), _number(current_rows[key].get(column))
            lines.append(_line(key, column, expected, actual, tolerance))
    stored = {row_key(row) for row in baseline.rows.to_dict("records")}
    for key, row in current_rows.items():
        if key not in stored:
            lines.append(_missing_or_extra(key, math.nan, float(row["value"]), EXTRA))
    return Comparison(table=pd.DataFrame(lines, columns=list(DIFF_COLUMNS)))


def effective_tolerance(
    stored: Tolerance, metric: str, rtol: Mapping[str, float], atol: Mapping[str, float]
) -> Tolerance:
    """The stored tolerance with any per-metric (or '*') rtol/atol override applied."""
    overridden = [
        f"{kind} {value:g}"
        for kind, table in (("rtol", rtol), ("atol", atol))
        if (value := table.get(metric, table.get(DEFAULT_KEY))) is not None
    ]
    if not overridden:
        return stored
    return Tolerance(
        rtol=float(rtol.get(metric, rtol.get(DEFAULT_KEY, stored.rtol))),
        atol=float(atol.get(metric, atol.get(DEFAULT_KEY, stored.atol))),
        origin="command line: " + " ".join(overridden),
        spread=stored.spread,
    )


def _number(value: Any) -> float:
    if value is None or value is pd.NA:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _line(key: RowKey, column: str, expected: float, actual: float, tolerance: Tolerance) -> dict[str, Any]:
    """One compared number: its difference, the allowed bound, their ratio and the status."""
    both_nan = math.isnan(expected) and math.isnan(actual)
    one_nan = math.isnan(expected) != math.isnan(actual)
    difference = 0.0 if both_nan else abs(actual - expected)
    bound = tolerance.bound(expected) if not math.isnan(expected) else 0.0
    if both_nan:
        ratio = 0.0
    elif one_nan:
        ratio = math.inf
    else:
        ratio = difference / bound if bound > 0 else (0.0 if difference == 0 else math.inf)
    return {
        "key": key_label(key),
        "field": column,
        "baseline": expected,
        "current": actual,
        "abs_diff": difference,
        "rel_diff": difference / abs(expected) if not math.isnan(expected) and expected != 0 else math.nan,
        "bound": bound,
        "ratio": ratio,
        "tolerance": tolerance.text(),
        "origin": tolerance.origin,
        "status": OK if ratio <= 1.0 else DRIFT,
    }


def _missing_or_extra(key: RowKey, expected: float, actual: float, status: str) -> dict[str, Any]:
    return {
        "key": key_label(key),
        "field": "row",
        "baseline": expected,
        "current": actual,
        "abs_diff": math.nan,
        "rel_diff": math.nan,
        "bound": math.nan,
        "ratio": math.nan,
        "tolerance": "",
        "origin": "not in the run" if status == MISSING else "not in the baseline",
        "status": status,
    }


# (drift-report heading, comparison column) in display order
SHOWN_COLUMNS = (
    ("row", "key"),
    ("field", "field"),
    ("baseline", "baseline"),
    ("current", "current"),
    ("|diff|", "abs_diff"),
    ("allowed", "bound"),
    ("ratio", "ratio"),
    ("tolerance from", "origin"),
    ("status", "status"),
)


def format_comparison(comparison: Comparison, show_all: bool = False) -> str:
    """A plain-text report: the failing lines (every line with `show_all`), largest ratio first, with the
    baseline, the value, their difference, the allowed difference (the tolerance), the ratio of the two and
    where the tolerance came from; then a one-line summary."""
    table = comparison.table
    shown = table if show_all else table[table["status"] != OK]
    shown = shown.assign(_order=shown["ratio"].fillna(math.inf)).sort_values("_order", ascending=False)
    numbers = table[table["field"] != "row"]
    summary = (
        f"{len(numbers)} number(s) compared: {comparison.count(OK)} ok, {comparison.count(DRIFT)} drifted; "
        f"{comparison.count(MISSING)} missing row(s), {comparison.count(EXTRA)} extra row(s)"
    )
    finite = numbers[numbers["ratio"].notna()]
    if not finite.empty:
        worst = finite.loc[finite["ratio"].idxmax()]
        summary += f"; largest ratio to tolerance {_text(worst['ratio'])}"
        if worst["ratio"] > 0:
            summary += f" ({worst['key']} [{worst['field']}])"
    if shown.empty:
        return summary + "\n"
    cells = [[heading for heading, _ in SHOWN_COLUMNS]]
    for line in shown.to_dict("records"):
        cells.append([line[c] if isinstance(line[c], str) else _text(line[c]) for _, c in SHOWN_COLUMNS])
    widths = [max(len(row[i]) for row in cells) for i in range(len(SHOWN_COLUMNS))]
    rendered = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    rendered.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join([*rendered, "", summary]) + "\n"


def describe_platform(platform: Mapping[str, Any]) -> str:
    """One line naming the machine a baseline was recorded on."""
    if not platform:
        return "platform not recorded"
    parts = [
        str(platform.get("cpu", "unknown CPU")),
        f"ATen kernels {platform['aten_capability']}" if platform.get("aten_capability") else "",
        f"torch {platform['torch']}" if platform.get("torch") else "",
        f"{platform['threads']} thread(s)" if platform.get("threads") else "",
        f"device {platform['device']}" if platform.get("device") else "",
    ]
    return ", ".join(part for part in parts if part)


def update_baseline(baseline: Baseline, results: pd.DataFrame) -> tuple[Baseline, dict[str, int]]:
    """The baseline with its values replaced by the run's: tolerances of kept rows stay as they were,
    rows the run lacks are dropped, rows it adds get their metric's default tolerance (not calibrated)."""
    current = baseline_rows(select_rows(results, baseline.selection))
    fresh = make_baseline(current, source=baseline.source)
    checks = {}
    kept = added = 0
    for key, per_row in fresh.checks.items():
        if key in baseline.checks:
            old = baseline.checks[key]
            checks[key] = {column: old.get(column, tolerance) for column, tolerance in per_row.items()}
            kept += 1
        else:
            checks[key] = per_row
            added += 1
    updated = dataclasses.replace(baseline, rows=fresh.rows, checks=checks)
    return updated, {"kept": kept, "added": added, "dropped": len(baseline.checks) - kept}


def _text(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, ".6g")
