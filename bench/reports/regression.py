"""Regression checks: store selected result rows as a baseline, later compare a run against it.

A row passes when |current − baseline| ≤ atol + rtol·|baseline| (numpy's `isclose` rule) with the
tolerance of its metric. Rows of the baseline absent from the run are MISSING (a failure); rows of the
run inside the baseline's selection but absent from it are NEW (reported, not a failure).
"""

from __future__ import annotations

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
BASELINE_VERSION = 1
DEFAULT_KEY = "*"
SELECTABLE = ("experiment", "space", "variant", "region", "metric")

OK, DRIFT, MISSING, NEW = "ok", "DRIFT", "MISSING", "NEW"
DIFF_COLUMNS = ("key", "baseline", "current", "abs_diff", "rel_diff", "tolerance", "status")


class BaselineError(ValueError):
    """A baseline file or selection that cannot be used (bad format, duplicate keys, nothing selected)."""


@dataclass(frozen=True)
class Tolerance:
    """Allowed drift: |current − baseline| ≤ atol + rtol·|baseline|."""

    rtol: float
    atol: float

    def __post_init__(self) -> None:
        if not (self.rtol >= 0 and self.atol >= 0):
            raise BaselineError(f"tolerances must be non-negative, got rtol={self.rtol}, atol={self.atol}")

    def bound(self, baseline: float) -> float:
        """The largest allowed absolute difference from `baseline`."""
        return self.atol + self.rtol * abs(baseline)

    def text(self) -> str:
        """Short display form, e.g. 'rtol=0.001 atol=1e-08'."""
        return f"rtol={self.rtol:g} atol={self.atol:g}"


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


@dataclass
class Baseline:
    """Stored rows (unique keys), per-metric tolerances ('*' is the default) and the row selection."""

    rows: pd.DataFrame
    tolerances: dict[str, Tolerance] = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))
    selection: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""

    def tolerance_for(self, metric: str) -> Tolerance:
        """The metric's own tolerance, else the default one."""
        return self.tolerances.get(metric) or self.tolerances.get(DEFAULT_KEY) or DEFAULT_TOLERANCES["*"]


@dataclass(frozen=True)
class Comparison:
    """The outcome of a check: one diff line per compared key, with its status."""

    table: pd.DataFrame

    def count(self, status: str) -> int:
        """How many lines have `status`."""
        return int((self.table["status"] == status).sum())

    @property
    def failed(self) -> bool:
        """True on any drift beyond tolerance or any missing row."""
        return self.count(DRIFT) > 0 or self.count(MISSING) > 0


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


def make_baseline(
    results: pd.DataFrame,
    selection: Mapping[str, Sequence[str]] | None = None,
    tolerances: Mapping[str, Tolerance] | None = None,
    source: str = "",
) -> Baseline:
    """A baseline from the selected rows (skipped/failed rows left out), with the default tolerances
    updated by `tolerances`."""
    chosen = select_rows(results, selection)
    chosen = chosen[~chosen["metric"].isin(PROBLEM_METRICS)].reset_index(drop=True)
    if chosen.empty:
        raise BaselineError(f"the selection {dict(selection or {})} matches no result rows")
    repeated = duplicate_keys(chosen)
    if repeated:
        raise BaselineError(
            "a baseline needs one row per key; repeated: " + "; ".join(key_label(k) for k in repeated[:5])
        )
    merged = dict(DEFAULT_TOLERANCES)
    merged.update(tolerances or {})
    clean_selection = {k: [str(v) for v in vs] for k, vs in (selection or {}).items() if vs}
    return Baseline(rows=chosen, tolerances=merged, selection=clean_selection, source=source)


def save_baseline(baseline: Baseline, path: str | Path) -> Path:
    """Write the baseline as JSON; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "format": BASELINE_FORMAT,
        "version": BASELINE_VERSION,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": baseline.source,
        "selection": baseline.selection,
        "tolerances": {m: {"rtol": t.rtol, "atol": t.atol} for m, t in sorted(baseline.tolerances.items())},
        "rows": results_to_records(baseline.rows),
    }
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    temporary.replace(target)
    return target


def load_baseline(path: str | Path) -> Baseline:
    """Read a baseline JSON file; FileNotFoundError or BaselineError says what is wrong and where."""
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"baseline file {source} does not exist")
    try:
        document = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise BaselineError(f"baseline {source} is not valid JSON: {error}") from error
    if not isinstance(document, dict) or document.get("format") != BASELINE_FORMAT:
        raise BaselineError(f'{source} is not an fdbench baseline (no "format": "{BASELINE_FORMAT}")')
    if document.get("version") != BASELINE_VERSION:
        raise BaselineError(f"baseline {source} has version {document.get('version')}, expected 1")
    try:
        tolerances = {
            str(m): Tolerance(rtol=float(t["rtol"]), atol=float(t["atol"]))
            for m, t in document.get("tolerances", {}).items()
        }
    except (KeyError, TypeError, ValueError) as error:
        raise BaselineError(f"baseline {source} has malformed tolerances: {error}") from error
    rows = validate_results(pd.DataFrame.from_records(document.get("rows") or []), source=source)
    return Baseline(
        rows=rows, tolerances=tolerances, selection=document.get("selection") or {}, source=str(source)
    )


def compare(
    results: pd.DataFrame,
    baseline: Baseline,
    rtol: Mapping[str, float] | None = None,
    atol: Mapping[str, float] | None = None,
) -> Comparison:
    """Compare a run with a baseline key by key.

    `rtol` / `atol` override the baseline's tolerances per metric name ('*' for every metric); a
    metric's own override wins over '*', which wins over the baseline file.
    """
    current = select_rows(results, baseline.selection)
    current = current[~current["metric"].isin(PROBLEM_METRICS)]
    repeated = duplicate_keys(current)
    if repeated:
        raise BaselineError(
            "the results repeat key(s), cannot compare: " + "; ".join(key_label(k) for k in repeated[:5])
        )
    current_values = {row_key(row): float(row["value"]) for row in current.to_dict("records")}
    lines: list[dict[str, Any]] = []
    seen: set[tuple[str, ...]] = set()
    for row in baseline.rows.to_dict("records"):
        key = row_key(row)
        seen.add(key)
        metric = key[KEY_COLUMNS.index("metric")]
        tolerance = effective_tolerance(baseline.tolerance_for(metric), metric, rtol or {}, atol or {})
        expected = float(row["value"])
        if key not in current_values:
            lines.append(_line(key, expected, math.nan, tolerance, MISSING))
            continue
        actual = current_values[key]
        lines.append(_line(key, expected, actual, tolerance, _status(expected, actual, tolerance)))
    for key, actual in current_values.items():
        if key not in seen:
            lines.append(_line(key, math.nan, actual, None, NEW))
    return Comparison(table=pd.DataFrame(lines, columns=list(DIFF_COLUMNS)))


def effective_tolerance(
    stored: Tolerance, metric: str, rtol: Mapping[str, float], atol: Mapping[str, float]
) -> Tolerance:
    """The stored tolerance with any per-metric (or '*') rtol/atol override applied."""
    return Tolerance(
        rtol=float(rtol.get(metric, rtol.get(DEFAULT_KEY, stored.rtol))),
        atol=float(atol.get(metric, atol.get(DEFAULT_KEY, stored.atol))),
    )


def format_comparison(comparison: Comparison, show_all: bool = False) -> str:
    """A plain-text diff table (failing, missing and new lines; every line with `show_all`) and a summary."""
    table = comparison.table
    shown = table if show_all else table[table["status"] != OK]
    summary = (
        f"{len(table)} key(s) compared: {comparison.count(OK)} ok, {comparison.count(DRIFT)} drifted, "
        f"{comparison.count(MISSING)} missing, {comparison.count(NEW)} new"
    )
    if shown.empty:
        return summary + "\n"
    cells = [list(DIFF_COLUMNS)]
    for line in shown.to_dict("records"):
        cells.append(
            [
                line["key"],
                _number(line["baseline"]),
                _number(line["current"]),
                _number(line["abs_diff"]),
                _number(line["rel_diff"]),
                line["tolerance"],
                line["status"],
            ]
        )
    widths = [max(len(row[i]) for row in cells) for i in range(len(DIFF_COLUMNS))]
    rendered = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
        for row in cells
    ]
    rendered.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join([*rendered, "", summary]) + "\n"


def _status(expected: float, actual: float, tolerance: Tolerance) -> str:
    if math.isnan(expected) or math.isnan(actual):
        return OK if math.isnan(expected) and math.isnan(actual) else DRIFT
    return OK if abs(actual - expected) <= tolerance.bound(expected) else DRIFT


def _line(
    key: tuple[str, ...], expected: float, actual: float, tolerance: Tolerance | None, status: str
) -> dict[str, Any]:
    difference = abs(actual - expected)
    relative = difference / abs(expected) if expected not in (0.0,) and not math.isnan(expected) else math.nan
    return {
        "key": key_label(key),
        "baseline": expected,
        "current": actual,
        "abs_diff": difference,
        "rel_diff": relative,
        "tolerance": tolerance.text() if tolerance is not None else "",
        "status": status,
    }


def _number(value: float) -> str:
    return "" if math.isnan(value) else format(value, ".6g")
