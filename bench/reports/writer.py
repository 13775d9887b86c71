"""`write_report`: one results table and its manifest in, a run folder of report files out."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from bench.reports.html import ReportSection, render_page
from bench.reports.manifest import write_manifest
from bench.reports.plots import experiment_figures, figure_png
from bench.reports.results import save_results, validate_results
from bench.reports.tables import experiment_tables, markdown_report, problem_lines, to_html

REPORT_HTML = "report.html"
REPORT_MD = "report.md"
PLOTS_DIR = "plots"


def write_report(
    results: pd.DataFrame,
    manifest: Mapping[str, Any],
    out_dir: str | Path,
    extra_sections: Iterable[ReportSection] = (),
    *,
    title: str | None = None,
    save_tables: bool = True,
) -> Path:
    """Write a run's report files into `out_dir` and return the path of its report.html.

    Files: results.csv, results.json and manifest.json (unless `save_tables` is False, as when
    rebuilding a page from them), report.md (the tables and problems), plots/*.png and the
    self-contained report.html with every plot embedded. `extra_sections` lets other modules
    (spectral analysis, for one) add a titled block of HTML and figures to the page.
    """
    table = validate_results(results)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    page_title = title or str(manifest.get("title") or f"fdbench report: {folder.resolve().name}")
    if save_tables:
        save_results(table, folder)
        write_manifest(manifest, folder)
    _write_text(folder / REPORT_MD, markdown_report(table, manifest, title=page_title))
    rendered = [(caption, figure_png(figure)) for caption, figure in experiment_figures(table)]
    plots = folder / PLOTS_DIR
    if rendered:
        plots.mkdir(exist_ok=True)
        for index, (caption, png) in enumerate(rendered, start=1):
            (plots / f"{index:02d}-{_slug(caption)}.png").write_bytes(png)
    page = render_page(
        title=page_title,
        tables_html=[to_html(summary) for summary in experiment_tables(table)],
        figures=rendered,
        problems=problem_lines(table, manifest),
        manifest=manifest,
        extra_sections=list(extra_sections),
    )
    target = folder / REPORT_HTML
    _write_text(target, page)
    return target


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "plot"


def _write_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
