"""`fdbench baseline save` and `fdbench check`: drift beyond tolerance, missing and new rows, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.cli import main
from bench.reports.regression import (
    DEFAULT_TOLERANCES,
    DRIFT,
    MISSING,
    NEW,
    OK,
    BaselineError,
    Tolerance,
    compare,
    format_comparison,
    load_baseline,
    make_baseline,
    save_baseline,
)
from bench.reports.results import save_results, validate_results
from tests.test_reports_support import full_results

EYES_FD = "region_blur / toy-linear / Eyes / fd"


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    return validate_results(full_results())


@pytest.fixture()
def run(tmp_path: Path, results: pd.DataFrame) -> dict[str, Path]:
    """A saved run and a baseline saved from it through the CLI."""
    save_results(results, tmp_path / "run")
    baseline = tmp_path / "baseline.json"
    assert main(["baseline", "save", str(tmp_path / "run" / "results.csv"), str(baseline)]) == 0
    return {"dir": tmp_path / "run", "csv": tmp_path / "run" / "results.csv", "baseline": baseline}


def _write_variant(results: pd.DataFrame, folder: Path, edit) -> Path:
    changed = results.copy()
    edit(changed)
    return save_results(changed, folder)["csv"]


def _eyes_fd(table: pd.DataFrame) -> pd.Series:
    return (
        (table["experiment"] == "region_blur")
        & (table["space"] == "toy-linear")
        & (table["region"] == "Eyes")
        & (table["metric"] == "fd")
    )


def test_same_table_passes(run: dict[str, Path], capsys) -> None:
    capsys.readouterr()
    assert main(["check", str(run["csv"]), "--baseline", str(run["baseline"])]) == 0
    out = capsys.readouterr().out
    assert "0 drifted, 0 missing, 0 new" in out


def test_drift_beyond_tolerance_fails_and_names_the_row(run, results, tmp_path, capsys) -> None:
    def bump(table):
        table.loc[_eyes_fd(table), "value"] *= 1.01  # 1 % > default rtol 0.1 %

    current = _write_variant(results, tmp_path / "drifted", bump)
    capsys.readouterr()
    assert main(["check", str(current), "--baseline", str(run["baseline"])]) == 1
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header == ["key", "baseline", "current", "abs_diff", "rel_diff", "tolerance", "status"]
    line = next(line for line in out.splitlines() if line.startswith(EYES_FD))
    assert line.split()[-1] == DRIFT
    expected = results.loc[_eyes_fd(results), "value"].item()
    assert f"{expected:.6g}" in line and f"{expected * 1.01:.6g}" in line and "0.01" in line
    assert "1 drifted" in out


def test_drift_within_tolerance_passes(run, results, tmp_path) -> None:
    def nudge(table):
        table.loc[_eyes_fd(table), "value"] *= 1 + 2e-4

    current = _write_variant(results, tmp_path / "nudged", nudge)
    assert main(["check", str(current), "--baseline", str(run["baseline"])]) == 0


def test_tolerance_override_on_the_command_line(run, results, tmp_path) -> None:
    def bump(table):
        table.loc[_eyes_fd(table), "value"] *= 1.01

    current = str(_write_variant(results, tmp_path / "drifted", bump))
    baseline = str(run["baseline"])
    assert main(["check", current, "--baseline", baseline, "--rtol-fd", "0.02"]) == 0
    assert main(["check", current, "--baseline", baseline, "--rtol", "fd=0.02"]) == 0
    assert main(["check", current, "--baseline", baseline, "--rtol", "0.02"]) == 0
    assert main(["check", current, "--baseline", baseline, "--rtol-nfd", "0.02"]) == 1
    assert main(["check", current, "--baseline", baseline, "--rtol", "0.02", "--rtol-fd", "0.001"]) == 1


def test_missing_rows_fail_and_new_rows_are_reported(run, results, tmp_path, capsys) -> None:
    without = results[~_eyes_fd(results)]
    current = save_results(without, tmp_path / "missing")["csv"]
    capsys.readouterr()
    assert main(["check", str(current), "--baseline", str(run["baseline"])]) == 1
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith(EYES_FD))
    assert line.split()[-1] == MISSING

    extra = results.iloc[[0]].assign(region="Ears")
    current = save_results(pd.concat([results, extra]), tmp_path / "new")["csv"]
    assert main(["check", str(current), "--baseline", str(run["baseline"])]) == 0
    out = capsys.readouterr().out
    assert next(line for line in out.splitlines() if "/ Ears /" in line).split()[-1] == NEW
    assert "1 new" in out


def test_baseline_selection_limits_what_is_compared(results, tmp_path) -> None:
    save_results(results, tmp_path)
    baseline = tmp_path / "nfd.json"
    argv = [
        "baseline",
        "save",
        str(tmp_path),
        str(baseline),
        "--experiment",
        "region_blur",
        "--metric",
        "nfd",
    ]
    assert main([*argv, "--rtol", "nfd=0.05", "--atol", "1e-4"]) == 0
    stored = json.loads(baseline.read_text())
    assert stored["selection"] == {"experiment": ["region_blur"], "metric": ["nfd"]}
    assert stored["tolerances"]["nfd"] == {"rtol": 0.05, "atol": 1e-4}
    assert stored["tolerances"]["*"]["atol"] == 1e-4 and stored["tolerances"]["kid"]["atol"] == 1e-4
    assert stored["tolerances"]["kid"]["rtol"] == DEFAULT_TOLERANCES["kid"].rtol
    assert len(stored["rows"]) == 14 and {r["metric"] for r in stored["rows"]} == {"nfd"}
    # a drift in a metric outside the selection is neither a failure nor a "new" row
    comparison = compare(results.assign(value=results["value"].where(results["metric"] == "nfd", 0.0)),
                         load_baseline(baseline))  # fmt: skip
    assert not comparison.failed and comparison.count(NEW) == 0 and comparison.count(OK) == 14


def test_nan_values_compare_as_equal_only_to_nan(results) -> None:
    baseline = make_baseline(results, {"experiment": ["style_probe"]})
    same = compare(results, baseline)
    assert not same.failed
    gap = results.copy()
    gap.loc[gap["experiment"] == "style_probe", "value"] = np.nan
    assert compare(gap, baseline).count(DRIFT) == 10


def test_duplicate_keys_and_bad_files_are_clear_errors(run, results, tmp_path, capsys) -> None:
    doubled = save_results(pd.concat([results, results.iloc[[4]]]), tmp_path / "doubled")["csv"]
    capsys.readouterr()
    assert main(["check", str(doubled), "--baseline", str(run["baseline"])]) == 2
    assert "repeat key" in capsys.readouterr().err
    assert main(["baseline", "save", str(doubled), str(tmp_path / "b.json")]) == 2
    assert "one row per key" in capsys.readouterr().err
    not_baseline = tmp_path / "other.json"
    not_baseline.write_text('{"rows": []}')
    assert main(["check", str(run["csv"]), "--baseline", str(not_baseline)]) == 2
    assert "is not an fdbench baseline" in capsys.readouterr().err
    assert main(["check", str(run["csv"]), "--baseline", str(tmp_path / "absent.json")]) == 2
    assert "absent.json does not exist" in capsys.readouterr().err
    assert main(["check", str(run["csv"]), "--baseline", str(run["baseline"]), "--rtol", "fd=abc"]) == 2
    assert "expected [METRIC=]NUMBER" in capsys.readouterr().err
    with pytest.raises(BaselineError, match="matches no result rows"):
        make_baseline(results, {"space": ["nonexistent"]})
    with pytest.raises(BaselineError, match="cannot select on column 'value'"):
        make_baseline(results, {"value": ["1"]})


def test_baseline_round_trip_and_show(results, tmp_path, capsys) -> None:
    baseline = make_baseline(results, tolerances={"fd": Tolerance(rtol=0.5, atol=0.0)}, source="toy")
    path = save_baseline(baseline, tmp_path / "b.json")
    loaded = load_baseline(path)
    assert loaded.tolerance_for("fd") == Tolerance(0.5, 0.0)
    assert loaded.tolerance_for("unlisted") == DEFAULT_TOLERANCES["*"]
    assert not compare(results, loaded).failed
    assert main(["baseline", "show", str(path)]) == 0
    assert "fd: rtol=0.5 atol=0" in capsys.readouterr().out


def test_diff_table_lists_only_problems_unless_asked(results) -> None:
    baseline = make_baseline(results, {"experiment": ["generator_comparison"]})
    comparison = compare(results, baseline)
    assert format_comparison(comparison).startswith("10 key(s) compared: 10 ok")
    assert len(format_comparison(comparison, show_all=True).splitlines()) == 2 + 10 + 2


@settings(max_examples=60, deadline=None)
@given(
    expected=st.floats(-1e6, 1e6, allow_nan=False),
    relative_change=st.floats(-0.01, 0.01),
    rtol=st.floats(0, 0.01),
    atol=st.floats(0, 1e-3),
)
def test_pass_rule_agrees_with_numpy_isclose(expected, relative_change, rtol, atol) -> None:
    """The check's pass/fail rule is numpy.isclose(current, baseline, rtol, atol), row by row."""
    actual = expected * (1 + relative_change) + relative_change * 1e-3
    row = {"experiment": "e", "space": "s", "variant": "", "region": "", "level": None, "metric": "fd"}
    table = validate_results(
        pd.DataFrame([{**row, "value": expected, "ci_low": None, "ci_high": None, "n": 1}])
    )
    baseline = make_baseline(table, tolerances={"fd": Tolerance(rtol, atol)})
    comparison = compare(table.assign(value=actual), baseline)
    assert comparison.failed == (not np.isclose(actual, expected, rtol=rtol, atol=atol))
