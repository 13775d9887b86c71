"""The tidy results table: its schema, validation, canonical row keys, and CSV/JSON I/O.

Every experiment returns one pandas DataFrame with one row per number. The key columns
(experiment, space, variant, region, level, metric) identify a number; value, ci_low, ci_high and n
describe it. The detail columns say what else a reader must know about it: `lost` (ids dropped from both
sets of that value because a perturbed copy gave no feature), the bootstrap `bias` estimate, `mean`/`std`
over repeated draws (never stored in ci_low/ci_high, which only ever hold an interval), `ci_method` (how
the interval was made) and `diagnostics` (warnings such as n ≤ d, clamped eigenvalue mass, rare regions,
joined by "; "). Tables written before these columns existed read back with their defaults. An optional
`note` column carries a reason for skipped or failed rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.schema import (  # noqa: F401  (re-exported: the schema's home for report code)
    COLUMNS,
    DETAIL_COLUMNS,
    DIAGNOSTICS_SEPARATOR,
    KEY_COLUMNS,
    REQUIRED_COLUMNS,
    VALUE_COLUMNS,
)

TEXT_COLUMNS: tuple[str, ...] = (
    "experiment",
    "space",
    "variant",
    "region",
    "metric",
    "ci_method",
    "diagnostics",
)
FLOAT_COLUMNS: tuple[str, ...] = ("value", "ci_low", "ci_high", "bias", "mean", "std")
NOTE_COLUMN = "note"
PROBLEM_METRICS: frozenset[str] = frozenset({"skipped", "failed"})

RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"


class ResultsSchemaError(ValueError):
    """A results table that does not follow the tidy schema (missing columns, non-numeric values)."""


def empty_results() -> pd.DataFrame:
    """A results table with the schema's columns and no rows."""
    return validate_results(pd.DataFrame({column: [] for column in COLUMNS}))


def validate_results(results: pd.DataFrame, source: str | Path | None = None) -> pd.DataFrame:
    """A normalized copy of `results`, or ResultsSchemaError naming what is wrong and where.

    Text columns become strings ("" for missing), `level` holds floats for numeric levels, strings
    otherwise and None when absent, value/ci/bias/mean/std columns become float64 and `n`/`lost`
    nullable integers. Missing detail columns are added with their defaults (lost 0, NaN, ""). Extra
    columns are kept after the schema's columns.
    """
    where = f" in {source}" if source is not None else ""
    if not isinstance(results, pd.DataFrame):
        raise ResultsSchemaError(f"results{where} must be a pandas DataFrame, got {type(results).__name__}")
    missing = [column for column in REQUIRED_COLUMNS if column not in results.columns]
    if missing:
        raise ResultsSchemaError(
            f"results table{where} lacks column(s) {', '.join(missing)}; "
            f"the tidy schema needs {', '.join(REQUIRED_COLUMNS)}"
        )
    table = results.reset_index(drop=True).copy()
    for column, default in (("lost", 0), ("bias", math.nan), ("mean", math.nan), ("std", math.nan)):
        if column not in table.columns:
            table[column] = default
    for column in ("ci_method", "diagnostics"):
        if column not in table.columns:
            table[column] = ""
    for column in TEXT_COLUMNS:
        table[column] = [_as_text(value) for value in table[column]]
    if NOTE_COLUMN in table.columns:
        table[NOTE_COLUMN] = [_as_text(value) for value in table[NOTE_COLUMN]]
    table["level"] = pd.Series([normalize_level(value) for value in table["level"]], dtype=object)
    for column in FLOAT_COLUMNS:
        table[column] = _as_float_column(table[column], column, where)
    table["n"] = _as_count_column(table["n"], "n", where)
    table["lost"] = _as_count_column(table["lost"], "lost", where)
    extra = [column for column in table.columns if column not in COLUMNS]
    return table[list(COLUMNS) + extra]


def normalize_level(value: Any) -> float | str | None:
    """A level as a float when it is numeric, a stripped string otherwise, None when absent."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
        return None if math.isnan(number) else number
    text = str(value).strip()
    if text == "" or text.lower() in {"nan", "none", "null"}:
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return None if math.isnan(number) else number


def level_text(value: Any) -> str:
    """The canonical text of a level, so 0.5, "0.5" and "0.50" give the same key."""
    level = normalize_level(value)
    if level is None:
        return ""
    if isinstance(level, float):
        return format(level, ".12g")
    return level


def row_key(row: Mapping[str, Any]) -> tuple[str, ...]:
    """The canonical key of one row: its key columns as strings (level in canonical form)."""
    return tuple(level_text(row["level"]) if c == "level" else _as_text(row[c]) for c in KEY_COLUMNS)


def key_label(key: Iterable[str]) -> str:
    """A short human label for a key: its non-empty parts joined by ' / '."""
    parts = [
        f"{name}={part}" if name == "level" else part for name, part in zip(KEY_COLUMNS, key, strict=False)
    ]
    return " / ".join(part for part, raw in zip(parts, key, strict=False) if raw != "")


def duplicate_keys(results: pd.DataFrame) -> list[tuple[str, ...]]:
    """Keys that occur on more than one row (a table used as a baseline must have unique keys)."""
    seen: set[tuple[str, ...]] = set()
    repeated: list[tuple[str, ...]] = []
    for row in results[list(KEY_COLUMNS)].to_dict("records"):
        key = row_key(row)
        if key in seen and key not in repeated:
            repeated.append(key)
        seen.add(key)
    return repeated


def save_results(results: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Write results.csv and results.json (records) into `out_dir`; returns their paths."""
    table = validate_results(results)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / RESULTS_CSV
    json_path = folder / RESULTS_JSON
    _write_text_atomic(csv_path, table.to_csv(index=False, float_format="%.17g"))
    _write_text_atomic(json_path, json.dumps(results_to_records(table), indent=1, allow_nan=False) + "\n")
    return {"csv": csv_path, "json": json_path}


def results_to_records(results: pd.DataFrame) -> list[dict[str, Any]]:
    """The table as JSON-ready records: NaN becomes null, numpy scalars become Python numbers."""
    records = []
    for row in validate_results(results).to_dict("records"):
        records.append({column: _json_scalar(value) for column, value in row.items()})
    return records


def load_results(path: str | Path) -> pd.DataFrame:
    """Read a results table from a .csv or .json file, or from a run folder holding results.csv/.json."""
    location = Path(path)
    if location.is_dir():
        for name in (RESULTS_CSV, RESULTS_JSON):
            if (location / name).is_file():
                return load_results(location / name)
        raise FileNotFoundError(f"no {RESULTS_CSV} or {RESULTS_JSON} in run folder {location}")
    if not location.is_file():
        raise FileNotFoundError(f"results file {location} does not exist")
    suffix = location.suffix.lower()
    if suffix == ".csv":
        raw = pd.read_csv(location, dtype=str, keep_default_na=False)
    elif suffix == ".json":
        try:
            records = json.loads(location.read_text())
        except json.JSONDecodeError as error:
            raise ResultsSchemaError(f"{location} is not valid JSON: {error}") from error
        if not isinstance(records, list):
            raise ResultsSchemaError(f"{location} must hold a JSON list of row records")
        raw = pd.DataFrame.from_records(records)
        if raw.empty and not records:
            raw = pd.DataFrame({column: [] for column in COLUMNS})
    else:
        raise ResultsSchemaError(f"results file {location} must end in .csv or .json")
    return validate_results(raw, source=location)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value).strip()


def _as_float_column(column: pd.Series, name: str, where: str) -> pd.Series:
    texts = column.map(lambda v: None if isinstance(v, str) and v.strip() == "" else v)
    numbers = pd.to_numeric(texts, errors="coerce").astype("float64")
    bad = numbers.isna() & texts.notna() & ~texts.map(_is_nan_like)
    if bad.any():
        rows = ", ".join(str(i) for i in list(np.flatnonzero(bad.to_numpy()))[:5])
        example = texts[bad].iloc[0]
        raise ResultsSchemaError(f"column {name!r}{where} has non-numeric value {example!r} at row(s) {rows}")
    return numbers


def _as_count_column(column: pd.Series, name: str, where: str) -> pd.Series:
    numbers = _as_float_column(column, name, where)
    finite = numbers.dropna()
    if ((finite != np.round(finite)) | (finite < 0)).any():
        raise ResultsSchemaError(f"column {name!r}{where} must hold non-negative whole numbers")
    return numbers.round().astype("Int64")


def _is_nan_like(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip().lower() in {"nan", "none", "null", ""}


def _json_scalar(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return None if math.isnan(number) or math.isinf(number) else number
    return value


def _write_text_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
