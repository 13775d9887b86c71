"""Reports: tidy results tables to CSV/JSON, Markdown, plots, a self-contained HTML page, and
regression checks against stored baselines. Start with `write_report`.

Names are imported on first use, so `fdbench check` (regression only) does not load matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "COLUMNS": "bench.reports.results",
    "KEY_COLUMNS": "bench.reports.results",
    "ResultsSchemaError": "bench.reports.results",
    "load_results": "bench.reports.results",
    "save_results": "bench.reports.results",
    "validate_results": "bench.reports.results",
    "build_manifest": "bench.reports.manifest",
    "load_manifest": "bench.reports.manifest",
    "write_manifest": "bench.reports.manifest",
    "ReportSection": "bench.reports.html",
    "write_report": "bench.reports.writer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bench.reports' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
