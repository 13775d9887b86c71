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
    REGION_BLUR_FD_METRICS,
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


def format_cell(value: Any, ci_low: Any = None, ci_high: Any = None, std: Any = None) -> str:
    """'value [low, high]' when both interval ends are present, 'value ± std' for a spread over draws,
    else just the value."""
    text = format_number(value)
    if _present(ci_low) and _present(ci_high):
        text += f" [{format_number(ci_low)}, {format_number(ci_high)}]"
    elif _present(std):
        text += f" ± {format_number(std)}"
    return text


NFD_FORMS: dict[str, tuple[str, str]] = {
    "nfd": (
        "normalized FD, conditional: nFD = FD(X_r, B_r X_r) / FD(X_r, B_All X_r) on the images holding r",
        "Comparable across spaces; 1 means as sensitive as blurring the whole image. n: images in each set.",
    ),
    "nfd_population": (
        "normalized FD, population: nFD = FD(X, B_r X) / FD(X, B_All X) on all images (B_r leaves images "
        "without r unchanged)",
        "The paper's literal form: rare regions are diluted by their prevalence. n: images in each set.",
    ),
}


def nfd_table(block: pd.DataFrame, metric: str = "nfd") -> Table | None:
    """Region × space table of one nFD form (`nfd` conditional, `nfd_population`), each cell with its
    interval and n; None when there is none."""
    rows = block[block["metric"] == metric]
    if rows.empty:
        return None
    if metric == "nfd_population":  # the whole-image row is the same in both forms: 1 by definition
        rows = pd.concat([block[(block["metric"] == "nfd") & (block["region"] == "All")], rows])
    title, caption = NFD_FORMS[metric]
    return Table(
        title=f"{_experiment_name(block)}: {title}",
        frame=_pivot(rows, index=["region", *_varying(rows, ("variant", "level"))], with_n=True),
        caption=caption,
    )


def diagnostics_table(block: pd.DataFrame) -> Table | None:
    """Every value that carries a diagnostic (n ≤ d, clamped mass, lost ids, rare regions, extended
    intervals), with its n and lost; None when no value has one."""
    rows = block[block["diagnostics"] != ""]
    if rows.empty:
        return None
    lines = [
        {
            "value": key_label(row_key(row)[1:]),
            "n": _count(row),
            "lost": _count(row, "lost"),
            "diagnostics": row["diagnostics"],
        }
        for _, row in rows.iterrows()
    ]
    return Table(
        title=f"{_experiment_name(block)}: diagnostics of the values above",
        frame=pd.DataFrame(lines),
        caption="lost: ids dropped from both sets of that value because a perturbed copy gave no feature.",
    )


def fd_terms_table(block: pd.DataFrame) -> Table | None:
    """Raw FD with its mean and trace terms, one line per (row keys, space); None without FD rows."""
    rows = block[block["metric"].isin(FD_TERM_METRICS)]
    if rows.empty or not (rows["metric"] == "fd").any():
        return None
    rows = rows[~rows["variant"].str.endswith("_sweep")]
    keys = [*_varying(rows, ROW_KEYS), "space"]
    lines = []
    for key_values, group in rows.groupby(keys, sort=False, dropna=False):
        by_metric = {metric: group[group["metric"] == metric].iloc[0] for metric in set(group["metric"])}
        fd = by_metric.get("fd")
        line = dict(zip(keys, _as_tuple(key_values), strict=False))
        line["FD"] = format_cell(*(fd[["value", "ci_low", "ci_high"]] if fd is not None else (None,)))
        line["mean term ‖μ1−μ2‖²"] = _term(by_metric.get("fd_mean_term"))
        line["trace term"] = _term(by_metric.get("fd_trace_term"))
        if (block["metric"] == "fd_all_blurred").any():
            same_ids = block[(block["metric"] == "fd_all_blurred") & (block["space"] == line["space"])]
            same_ids = same_ids[same_ids["region"] == line.get("region", "")]
            line["FD whole image blurred, same ids"] = _term(same_ids.iloc[0] if len(same_ids) else None)
        line["n"] = _count(fd)
        line["lost"] = _count(fd, "lost")
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
    """Spaces × spaces Kendall τ between generator rankings, with its bootstrap interval when the block
    holds `kendall_tau` rows (the second space of each in `region`)."""
    tau = kendall_tau_matrix(block, metric)
    cells = tau.map(lambda v: format_number(v, 3))
    for row in block[block["metric"] == "kendall_tau"].to_dict("records"):
        first, second = row["space"], row["region"]
        if first in cells.index and second in cells.columns:
            text = format_cell(row["value"], row["ci_low"], row["ci_high"])
            cells.loc[first, second] = cells.loc[second, first] = text
    frame = cells.reset_index()
    frame.columns = [str(column) for column in frame.columns]
    interval = "; brackets: percentile bootstrap interval" if (block["metric"] == "kendall_tau").any() else ""
    return Table(
        title=f"{_experiment_name(block)}: rank agreement between spaces (Kendall τ)",
        frame=frame,
        caption=f"1: same ranking of generators; −1: reversed{interval}.",
    )


def significance_table(block: pd.DataFrame) -> Table | None:
    """Per space and pair of generators: FD(a) − FD(b) with its paired-bootstrap interval, the fraction of
    replicates keeping the order, and whether this n can tell the two apart; None without such rows."""
    from bench.experiments.generator_comparison import NOT_DISTINGUISHABLE, pair_verdict

    rows = block[block["metric"] == "fd_difference"]
    if rows.empty:
        return None
    kept = {
        (row["space"], row["variant"], row["region"]): row["value"]
        for row in block[block["metric"] == "fd_order_kept"].to_dict("records")
    }
    lines = []
    for row in rows.to_dict("records"):
        first, second = row["variant"], row["region"]
        verdict = pair_verdict(first, second, row["value"], row["ci_low"], row["ci_high"])
        lines.append(
            {
                "space": row["space"],
                "pair (a − b)": f"{first} − {second}",
                "FD(a) − FD(b)": format_cell(row["value"], row["ci_low"], row["ci_high"]),
                "order kept": format_number(kept.get((row["space"], first, second)), 3),
                "n": _count(row),
                "verdict": verdict,
            }
        )
    return Table(
        title=f"{_experiment_name(block)}: which generator is closer, and can this n tell?",
        frame=pd.DataFrame(lines),
        caption="Paired bootstrap (reference resampled once per replicate for both generators); "
        "'order kept' is the fraction of replicates with the observed sign. A pair whose interval holds 0 "
        f"is {NOT_DISTINGUISHABLE}.",
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
            made = [nfd_table(block), nfd_table(block, "nfd_population"), fd_terms_table(block)]
            tables.extend(table for table in made if table is not None)
            covered |= {*NFD_FORMS, *FD_TERM_METRICS, *REGION_BLUR_FD_METRICS}
        elif kind == GENERATOR_COMPARISON and block[block["metric"] == "fd"]["variant"].nunique() > 1:
            tables.append(ranking_table(block))
            significance = significance_table(block)
            if significance is not None:
                tables.append(significance)
            if block[block["metric"] == "fd"]["space"].nunique() > 1:
                tables.append(kendall_table(block))
            covered |= {"fd_difference", "fd_order_kept", "kendall_tau"}
        for metric in ordered_unique(block["metric"]):
            if metric not in covered:
                tables.append(metric_pivot(block, metric))
        diagnostics = diagnostics_table(block)
        if diagnostics is not None:
            tables.append(diagnostics)
    return tables


def problem_lines(results: pd.DataFrame, manifest: Mapping[str, Any] | None = None) -> list[str]:
    """Human-readable problems: manifest notes, skipped/failed rows (with their note), missing values."""
    lines = manifest_notes(manifest or {})
    table = validate_results(results)
    notes = table[NOTE_COLUMN] if NOTE_COLUMN in table.columns else table["diagnostics"]
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


def to_text(table: Table) -> str:
    """The table as aligned plain text for a terminal: a title line, the header, a rule, the rows."""
    header = [str(column) for column in table.frame.columns]
    body = [[str(value) for value in values] for values in table.frame.itertuples(index=False)]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [table.title] if table.title else []
    lines.append("  ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True)).rstrip())
    lines.append("  ".join("-" * width for width in widths))
    lines += [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in body
    ]
    if table.caption:
        lines.append(table.caption)
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


def _pivot(rows: pd.DataFrame, index: Sequence[str], with_n: bool = False) -> pd.DataFrame:
    spaces = ordered_unique(rows["space"])
    index = list(index)
    lines: dict[tuple, dict[str, str]] = {}
    orders = {key: ordered_unique(rows[key]) for key in index}
    for row in rows.to_dict("records"):
        line_key = tuple(row[key] for key in index)
        line = lines.setdefault(line_key, {key: _key_text(row[key]) for key in index})
        spread = row["std"] if row.get("ci_method", "") == "" else None  # bootstrap SEs are not shown
        text = format_cell(row["value"], row["ci_low"], row["ci_high"], spread)
        if with_n and row["n"] is not pd.NA:
            text += f" (n={int(row['n'])})"
        line[row["space"] or "value"] = text
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


def _count(row: pd.Series | None, column: str = "n") -> str:
    if row is None or row[column] is pd.NA:
        return MISSING
    return str(int(row[column]))


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
