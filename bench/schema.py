"""The columns of fdbench's tidy results table, shared by the experiments that fill it and the reports
that read it (bench.reports.results validates and documents them)."""

from __future__ import annotations

KEY_COLUMNS: tuple[str, ...] = ("experiment", "space", "variant", "region", "level", "metric")
VALUE_COLUMNS: tuple[str, ...] = ("value", "ci_low", "ci_high", "n")
DETAIL_COLUMNS: tuple[str, ...] = ("lost", "bias", "mean", "std", "ci_method", "diagnostics")
COLUMNS: tuple[str, ...] = KEY_COLUMNS + VALUE_COLUMNS + DETAIL_COLUMNS
REQUIRED_COLUMNS: tuple[str, ...] = KEY_COLUMNS + VALUE_COLUMNS
DIAGNOSTICS_SEPARATOR = "; "
