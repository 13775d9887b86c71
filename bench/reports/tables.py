"""Summary tables of a results table, rendered as Markdown or HTML.

Region-blur experiments get a region × space nFD table and a raw-FD table with its mean and trace terms;
generator comparisons get rankings and Kendall τ; everything else gets one pivot (rows × spaces) per
metric. Cells show the value and, where present, its confidence interval.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.reports.kinds import (
    ATTRIBUTE_PROPORTION,
    FD_TERM_METRICS,
    GENERATOR_COMPARISON,
    REGION_BLUR,
    STYLE_PROBE,
    experiment_kind,
    ordered_unique,
    split_experiments,
)
from bench.reports.manifest import manifest_notes
from bench.reports.rankings import generator_rankings, kendall_tau_matrix
from bench.reports.results import NOTE_COLUMN, PROBLEM_METRICS, key_label, row_key, validate_results

ROW_KEYS: tuple[str, ...] = ("variant", "region", "level")
MISSING = "–"
LEVEL_LABELS = {ATTRIBUTE_PROPORTION: "Δ", STYLE_PROBE: "α"}


@dataclass(frozen=True)
class Table:
    """A titled table whose cells are already formatted as text."""

    title: str
    frame: pd.DataFrame
    caption: str = ""


def format_number(value: Any, digits: int = 4) -> str:
    """A number with `digits` significant digits; missing values as a dash."""
    if value is None or value is pd.NA:
        return MISSING
    number = float(value)
    if math.isnan(number):
        return MISSING
    return format(number, f".{digits}g")


def format_cell(value: Any, ci_low: Any = None, ci_high: Any = None) -> str:
    """'value [low, high]' when both interval ends are present, else just the value."""
    text = format_number(value)
    if _present(ci_low) and _present(ci_high):
        text += f" [{format_number(ci_low)}, {format_number(ci_high)}]"
    return text


def nfd_table(block: pd.DataFrame) -> Table | None:
    """Region × space table of normalized FD (metric 'nfd'); None when there is none."""
    rows = block[block["metric"] == "nfd"]
    if rows.empty:
        return None
    return Table(
        title=f"{_experiment_name(block)}: normalized FD (nFD = FD(region blurred) / FD(all blurred))",
        frame=_pivot(rows, index=["region", *_varying(rows, ("variant", "level"))]),
        caption="Comparable across spaces; 1 means as sensitive as blurring the whole image.",
    )


def fd_terms_table(block: pd.DataFrame) -> Table | None:
    """Raw FD with its mean and trace terms, one line per (row keys, space); None without FD rows."""
    rows = block[block["metric"].isin(FD_TERM_METRICS)]
    if rows.empty or not (rows["metric"] == "fd").any():
        return None
    keys = [*_varying(rows, ROW_KEYS), "space"]
    lines = []
    for key_values, group in rows.groupby(keys, sort=False, dropna=False):
        by_metric = {metric: group[group["metric"] == metric].iloc[0] for metric in set(group["metric"])}
        fd = by_metric.get("fd")
        line = dict(zip(keys, _as_tuple(key_values), strict=False))
        line["FD"] = format_cell(*(fd[["value", "ci_low", "ci_high"]] if fd is not None else (None,)))
        line["mean term ‖μ1−μ2‖²"] = _term(by_metric.get("fd_mean_term"))
        line["trace term"] = _term(by_metric.get("fd_trace_term"))
        line["n"] = _count(fd)
        lines.append(line)
    frame = pd.DataFrame(lines)
    for key in keys:
        frame[key] = frame[key].map(_key_text)
    return Table(
        title=f"{_experiment_name(block)}: raw FD = mean term + trace term",
        frame=frame,
        caption="Raw FDs are not comparable across spaces; compare within a column of one space.",
    )


def metric_pivot(block: pd.DataFrame, metric: str) -> Table:
    """Rows (varying variant/region/level) × spaces table of one metric."""
    rows = block[block["metric"] == metric]
    index = _varying(rows, ROW_KEYS) or [key for key in ROW_KEYS if (rows[key].map(_key_text) != "").any()]
    frame = _pivot(rows, index=index)
    level_label = LEVEL_LABELS.get(experiment_kind(block))
    if level_label:
        frame = frame.rename(columns={"level": level_label})
    return Table(title=f"{_experiment_name(block)}: {metric}", frame=frame)


def ranking_table(block: pd.DataFrame, metric: str = "fd") -> Table:
    """Generators × spaces table of ranks (1 = closest to the reference)."""
    ranks = generator_rankings(block, metric)
    frame = ranks.astype("string").fillna(MISSING).reset_index()
    frame.columns = [str(column) for column in frame.columns]
    return Table(title=f"{_experiment_name(block)}: generator rank by {metric} per space", frame=frame)


def kendall_table(block: pd.DataFrame, metric: str = "fd") -> Table:
    """Spaces × spaces Kendall τ between generator rankings."""
    tau = kendall_tau_matrix(block, metric)
    frame = tau.map(lambda v: format_number(v, 3)).reset_index()
    frame.columns = [str(column) for column in frame.columns]
    return Table(
        title=f"{_experiment_name(block)}: rank agreement between spaces (Kendall τ)",
        frame=frame,
        caption="1: same ranking of generators; −1: reversed.",
    )


def experiment_tables(results: pd.DataFrame) -> list[Table]:
    """Every summary table for a results table, experiment by experiment."""
    table = validate_results(results)
    usable = table[~table["metric"].isin(PROBLEM_METRICS)]
    tables: list[Table] = []
    for _, block in split_experiments(usable):
        kind = experiment_kind(block)
        covered: set[str] = set()
        if kind == REGION_BLUR:
            for maker in (nfd_table, fd_terms_table):
                made = maker(block)
                if made is not None:
                    tables.append(made)
            covered |= {"nfd", *FD_TERM_METRICS}
        elif kind == GENERATOR_COMPARISON and block[block["metric"] == "fd"]["variant"].nunique() > 1:
            tables.append(ranking_table(block))
            if block[block["metric"] == "fd"]["space"].nunique() > 1:
                tables.append(kendall_table(block))
        for metric in ordered_unique(block["metric"]):
            if metric not in covered:
                tables.append(metric_pivot(block, metric))
    return tables


def problem_lines(results: pd.DataFrame, manifest: Mapping[str, Any] | None = None) -> list[str]:
    """Human-readable problems: manifest notes, skipped/failed rows (with their note), missing values."""
    lines = manifest_notes(manifest or {})
    table = validate_results(results)
    notes = table[NOTE_COLUMN] if NOTE_COLUMN in table.columns else pd.Series([""] * len(table))
    for (_, row), note in zip(table.iterrows(), notes, strict=False):
        label = key_label(row_key(row)[:-1]) or "(whole run)"
        if row["metric"] in PROBLEM_METRICS:
            lines.append(f"{row['metric']}: {label}" + (f" — {note}" if note else ""))
        elif math.isnan(row["value"]):
            lines.append(f"no value: {label} / {row['metric']}" + (f" — {note}" if note else ""))
    return list(dict.fromkeys(lines))


def to_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table with a heading and optional caption."""
    header = [str(column) for column in table.frame.columns]
    lines = [f"### {table.title}", ""]
    lines.append("| " + " | ".join(_md_escape(cell) for cell in header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for values in table.frame.itertuples(index=False):
        lines.append("| " + " | ".join(_md_escape(str(value)) for value in values) + " |")
    if table.caption:
        lines += ["", f"_{table.caption}_"]
    return "\n".join(lines) + "\n"


def to_html(table: Table) -> str:
    """An HTML table (escaped) with a heading and optional caption."""
    parts = [f"<h3>{html.escape(table.title)}</h3>", '<table class="results">', "<thead><tr>"]
    parts += [f"<th>{html.escape(str(column))}</th>" for column in table.frame.columns]
    parts.append("</tr></thead><tbody>")
    for values in table.frame.itertuples(index=False):
        parts.append("<tr>" + "".join(f"<td>{html.escape(str(value))}</td>" for value in values) + "</tr>")
    parts.append("</tbody></table>")
    if table.caption:
        parts.append(f'<p class="caption">{html.escape(table.caption)}</p>')
    return "\n".join(parts)


def markdown_report(
    results: pd.DataFrame, manifest: Mapping[str, Any] | None = None, title: str = "fdbench results"
) -> str:
    """The whole Markdown summary: every table, then the problems section."""
    parts = [f"# {title}", ""]
    parts += [to_markdown(table) for table in experiment_tables(results)]
    parts.append("## Problems\n")
    problems = problem_lines(results, manifest)
    parts.append("\n".join(f"- {line}" for line in problems) if problems else "None.")
    return "\n".join(parts).rstrip() + "\n"


def _pivot(rows: pd.DataFrame, index: Sequence[str]) -> pd.DataFrame:
    spaces = ordered_unique(rows["space"])
    index = list(index)
    lines: dict[tuple, dict[str, str]] = {}
    orders = {key: ordered_unique(rows[key]) for key in index}
    for row in rows.to_dict("records"):
        line_key = tuple(row[key] for key in index)
        line = lines.setdefault(line_key, {key: _key_text(row[key]) for key in index})
        line[row["space"] or "value"] = format_cell(row["value"], row["ci_low"], row["ci_high"])
    ordered = sorted(
        lines, key=lambda k: tuple(orders[key].index(v) for key, v in zip(index, k, strict=False))
    )
    columns = index + [space or "value" for space in spaces]
    frame = pd.DataFrame([lines[k] for k in ordered], columns=columns)
    return frame.fillna(MISSING)


def _varying(rows: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    return [key for key in keys if rows[key].map(_key_text).nunique() > 1]


def _key_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, ".6g")
    return str(value)


def _term(row: pd.Series | None) -> str:
    return MISSING if row is None else format_cell(row["value"], row["ci_low"], row["ci_high"])


def _count(row: pd.Series | None) -> str:
    if row is None or row["n"] is pd.NA:
        return MISSING
    return str(int(row["n"]))


def _present(value: Any) -> bool:
    if value is None or value is pd.NA:
        return False
    return not math.isnan(float(value))


def _as_tuple(value: Any) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def _experiment_name(block: pd.DataFrame) -> str:
    return ", ".join(dict.fromkeys(block["experiment"])) or "results"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
