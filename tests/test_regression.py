"""`fdbench baseline save` and `fdbench check`: per-number tolerances, drift, missing and extra rows, the
drift report, `--update`, version-1 baselines, and the calibration rule on planted spreads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.cli import main
from bench.reports.calibration import (
    CalibrationError,
    CalibrationRule,
    calibrated_checks,
    honest_variations,
    spread_summary,
)
from bench.reports.regression import (
    DEFAULT_TOLERANCES,
    DRIFT,
    EXTRA,
    MISSING,
    OK,
    BaselineError,
    Tolerance,
    compare,
    format_comparison,
    load_baseline,
    make_baseline,
    save_baseline,
    update_baseline,
)
from bench.reports.results import row_key, save_results, validate_results
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


def _line(output: str, label: str, field: str = "value") -> list[str]:
    return next(
        line.split() for line in output.splitlines() if line.startswith(label + "  ") and f" {field} " in line
    )


def test_same_table_passes(run: dict[str, Path], capsys) -> None:
    capsys.readouterr()
    assert main(["check", str(run["csv"]), "--baseline", str(run["baseline"])]) == 0
    out = capsys.readouterr().out
    assert "0 drifted; 0 missing row(s), 0 extra row(s)" in out


def test_drift_report_names_row_value_baseline_tolerance_and_origin(run, results, tmp_path, capsys) -> None:
    def bump(table):
        table.loc[_eyes_fd(table), "value"] *= 1.01  # 1 % > default rtol 0.1 %

    current = _write_variant(results, tmp_path / "drifted", bump)
    capsys.readouterr()
    assert main(["check", str(current), "--baseline", str(run["baseline"])]) == 1
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("row "))
    assert header.split()[:7] == ["row", "field", "baseline", "current", "|diff|", "allowed", "ratio"]
    expected = results.loc[_eyes_fd(results), "value"].item()
    cells = _line(out, EYES_FD)
    allowed = 1e-8 + 1e-3 * expected  # the default '*' tolerance: rtol 1e-3, atol 1e-8
    assert cells[-1] == DRIFT
    assert f"{expected:.6g}" in cells and f"{expected * 1.01:.6g}" in cells and f"{allowed:.6g}" in cells
    ratio = float(cells[cells.index(f"{allowed:.6g}") + 1])
    assert ratio == pytest.approx(0.01 * expected / allowed, rel=1e-5)
    assert "default tolerance for metric '*', rtol=0.001 atol=1e-08 (not calibrated)" in out
    assert "1 drifted" in out and "largest ratio to tolerance" in out


def test_drift_within_tolerance_passes(run, results, tmp_path) -> None:
    def nudge(table):
        table.loc[_eyes_fd(table), "value"] *= 1 + 2e-4

    current = _write_variant(results, tmp_path / "nudged", nudge)
    assert main(["check", str(current), "--baseline", str(run["baseline"])]) == 0


def test_intervals_and_counts_are_checked_too(run, results, tmp_path, capsys) -> None:
    nfd_row = (results["metric"] == "nfd") & (results["region"] == "Skin") & (results["space"] == "toy-tanh")

    def move_interval(table):
        table.loc[nfd_row, "ci_low"] -= 0.05

    def lose_an_image(table):
        table.loc[nfd_row, "n"] -= 1

    for name, edit, field in (("interval", move_interval, "ci_low"), ("count", lose_an_image, "n")):
        current = _write_variant(results, tmp_path / name, edit)
        capsys.readouterr()
        assert main(["check", str(current), "--baseline", str(run["baseline"])]) == 1
        out = capsys.readouterr().out
        assert _line(out, "region_blur / toy-tanh / Skin / nfd", field)[-1] == DRIFT
        assert "1 drifted" in out, out


def test_tolerance_override_on_the_command_line(run, results, tmp_path, capsys) -> None:
    def bump(table):
        table.loc[_eyes_fd(table), "value"] *= 1.01

    current = str(_write_variant(results, tmp_path / "drifted", bump))
    baseline = str(run["baseline"])
    assert main(["check", current, "--baseline", baseline, "--rtol-fd", "0.02"]) == 0
    assert main(["check", current, "--baseline", baseline, "--rtol", "fd=0.02"]) == 0
    assert main(["check", current, "--baseline", baseline, "--rtol", "0.02"]) == 0
    assert main(["check", current, "--baseline", baseline, "--rtol-nfd", "0.02"]) == 1
    capsys.readouterr()
    assert main(["check", current, "--baseline", baseline, "--rtol", "0.02", "--rtol-fd", "0.001"]) == 1
    assert "command line: rtol 0.001" in capsys.readouterr().out


def test_missing_and_extra_rows_fail(run, results, tmp_path, capsys) -> None:
    without = results[~_eyes_fd(results)]
    current = save_results(without, tmp_path / "missing")["csv"]
    capsys.readouterr()
    assert main(["check", str(current), "--baseline", str(run["baseline"])]) == 1
    out = capsys.readouterr().out
    assert _line(out, EYES_FD, "row")[-1] == MISSING and "1 missing row(s)" in out

    extra = results.iloc[[0]].assign(region="Ears")
    current = save_results(pd.concat([results, extra]), tmp_path / "extra")["csv"]
    assert main(["check", str(current), "--baseline", str(run["baseline"])]) == 1
    out = capsys.readouterr().out
    assert next(line for line in out.splitlines() if "/ Ears /" in line).split()[-1] == EXTRA
    assert "1 extra row(s)" in out


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
    assert stored["version"] == 2
    assert stored["selection"] == {"experiment": ["region_blur"], "metric": ["nfd"]}
    nfd_rows = results[(results["experiment"] == "region_blur") & (results["metric"] == "nfd")]
    assert len(stored["rows"]) == len(nfd_rows) and {r["metric"] for r in stored["rows"]} == {"nfd"}
    value_check = stored["rows"][0]["checks"]["value"]
    assert (value_check["rtol"], value_check["atol"]) == (0.05, 1e-4)
    assert stored["rows"][0]["checks"]["n"] == {
        "rtol": 0.0,
        "atol": 0.0,
        "origin": "counts must match (not calibrated)",
    }
    # a drift in a metric outside the selection is neither a failure nor an extra row
    comparison = compare(results.assign(value=results["value"].where(results["metric"] == "nfd", 0.0)),
                         load_baseline(baseline))  # fmt: skip
    assert not comparison.failed and comparison.count(EXTRA) == 0
    assert comparison.lines(OK)["field"].eq("value").sum() == len(nfd_rows)


def test_subset_compares_only_the_rows_a_partial_run_produces(results) -> None:
    baseline = make_baseline(results, {"experiment": ["region_blur"]})
    partial = results[(results["experiment"] == "region_blur") & (results["space"] == "toy-tanh")]
    assert compare(partial, baseline).count(MISSING) > 0
    narrowed = baseline.subset({"space": ["toy-tanh"]})
    comparison = compare(partial, narrowed)
    assert not comparison.failed and comparison.count(OK) > 0
    assert narrowed.selection == {"experiment": ["region_blur"], "space": ["toy-tanh"]}


def test_nan_values_compare_as_equal_only_to_nan(results) -> None:
    baseline = make_baseline(results, {"experiment": ["style_probe"]})
    assert not compare(results, baseline).failed
    gap = results.copy()
    gap.loc[gap["experiment"] == "style_probe", "value"] = np.nan
    drifted = compare(gap, baseline).lines(DRIFT)
    assert len(drifted) == (results["experiment"] == "style_probe").sum()
    assert set(drifted["field"]) == {"value"} and np.isinf(drifted["ratio"]).all()


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
    future = tmp_path / "future.json"
    future.write_text(json.dumps({"format": "fdbench-baseline", "version": 9, "rows": []}))
    assert main(["check", str(run["csv"]), "--baseline", str(future)]) == 2
    assert "has version 9; this fdbench reads versions 1, 2" in capsys.readouterr().err
    assert main(["check", str(run["csv"]), "--baseline", str(tmp_path / "absent.json")]) == 2
    assert "absent.json does not exist" in capsys.readouterr().err
    assert main(["check", str(run["csv"]), "--baseline", str(run["baseline"]), "--rtol", "fd=abc"]) == 2
    assert "expected [METRIC=]NUMBER" in capsys.readouterr().err
    assert main(["baseline", "save", str(tmp_path / "x.toml"), str(tmp_path / "b.json")]) == 2
    assert "add --calibrate" in capsys.readouterr().err
    assert main(["baseline", "save", "--calibrate", str(run["csv"]), str(tmp_path / "b.json")]) == 2
    assert "needs a run configuration (.toml)" in capsys.readouterr().err
    with pytest.raises(BaselineError, match="matches no result rows"):
        make_baseline(results, {"space": ["nonexistent"]})
    with pytest.raises(BaselineError, match="cannot select on column 'value'"):
        make_baseline(results, {"value": ["1"]})


def test_round_trip_keeps_every_tolerance_platform_and_calibration(results, tmp_path, capsys) -> None:
    baseline = make_baseline(results, tolerances={"fd": Tolerance(rtol=0.5, atol=0.0)}, source="toy")
    key = next(iter(baseline.checks))
    baseline.checks[key]["value"] = Tolerance(0.0, 3e-6, "calibrated: 10 × spread 3e-07 (threads=1)", 3e-7)
    baseline.platform = {"cpu": "Test CPU", "aten_capability": "AVX2", "torch": "2.x", "threads": 4}
    baseline.calibration = {"rule": CalibrationRule().to_dict(), "runs": [{"name": "reference"}]}
    path = save_baseline(baseline, tmp_path / "b.json")
    loaded = load_baseline(path)
    assert loaded.checks == baseline.checks
    assert loaded.platform == baseline.platform and loaded.calibration == baseline.calibration
    assert not compare(results, loaded).failed
    assert json.loads(path.read_text(), parse_constant=lambda token: pytest.fail(f"{token} in JSON"))
    assert main(["baseline", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "recorded on: Test CPU, ATen kernels AVX2, torch 2.x, 4 thread(s)" in out and "widest:" in out


def test_version_1_baselines_are_read_with_their_per_metric_tolerances(results, tmp_path) -> None:
    chosen = results[(results["experiment"] == "region_blur") & (results["metric"] != "skipped")]
    records = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in chosen[["experiment", "space", "variant", "region", "level", "metric", "value", "ci_low",
                           "ci_high", "n"]].to_dict("records")
    ]  # fmt: skip
    for record in records:
        record["n"] = int(record["n"])
    document = {
        "format": "fdbench-baseline",
        "version": 1,
        "selection": {"experiment": ["region_blur"]},
        "tolerances": {"*": {"rtol": 1e-3, "atol": 1e-8}, "nfd": {"rtol": 0.02, "atol": 0.0}},
        "rows": records,
    }
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(document))
    loaded = load_baseline(path)
    nfd_key = next(key for key in loaded.checks if key[-1] == "nfd")
    assert loaded.checks[nfd_key] == {"value": Tolerance(0.02, 0.0, "version-1 tolerance for metric 'nfd', "
                                                                       "rtol=0.02 atol=0")}  # fmt: skip
    assert not compare(results, loaded).failed
    moved = results.assign(
        value=np.where(results["metric"] == "nfd", results["value"] * 1.01, results["value"])
    )
    assert not compare(moved, loaded).failed  # 1 % is inside nfd's 2 %
    moved = results.assign(
        value=np.where(results["metric"] == "fd", results["value"] * 1.01, results["value"])
    )
    assert compare(moved, loaded).count(DRIFT) == (chosen["metric"] == "fd").sum()


def test_update_rewrites_values_only_when_asked_and_keeps_tolerances(run, results, tmp_path, capsys) -> None:
    def bump(table):
        table.loc[_eyes_fd(table), "value"] *= 1.01

    current = _write_variant(results, tmp_path / "drifted", bump)
    before = load_baseline(run["baseline"])
    assert main(["check", str(current), "--baseline", str(run["baseline"])]) == 1
    assert load_baseline(run["baseline"]).rows.equals(before.rows)  # a failing check changes nothing
    capsys.readouterr()
    assert main(["check", str(current), "--baseline", str(run["baseline"]), "--update"]) == 0
    assert "updated" in capsys.readouterr().out
    after = load_baseline(run["baseline"])
    assert after.checks == before.checks
    assert main(["check", str(current), "--baseline", str(run["baseline"])]) == 0
    assert main(["check", str(run["csv"]), "--baseline", str(run["baseline"])]) == 1


def test_update_drops_missing_rows_and_adds_new_ones_with_default_tolerances(results) -> None:
    baseline = make_baseline(results, {"experiment": ["region_blur"]})
    extra = results[results["experiment"] == "region_blur"].iloc[[0]].assign(region="Ears")
    changed = pd.concat([results[~_eyes_fd(results)], extra])
    updated, counts = update_baseline(baseline, changed)
    assert counts == {"kept": len(baseline.checks) - 1, "added": 1, "dropped": 1}
    assert not compare(changed, updated).failed


def test_diff_table_lists_only_problems_unless_asked(results) -> None:
    baseline = make_baseline(results, {"experiment": ["generator_comparison"]})
    comparison = compare(results, baseline)
    numbers = len(comparison.table)
    assert format_comparison(comparison).startswith(f"{numbers} number(s) compared: {numbers} ok")
    assert len(format_comparison(comparison, show_all=True).splitlines()) == 2 + numbers + 2


@settings(max_examples=60, deadline=None)
@given(
    expected=st.floats(-1e6, 1e6, allow_nan=False),
    relative_change=st.floats(-0.01, 0.01),
    rtol=st.floats(0, 0.01),
    atol=st.floats(0, 1e-3),
)
def test_pass_rule_agrees_with_numpy_isclose(expected, relative_change, rtol, atol) -> None:
    """The check's pass/fail rule is numpy.isclose(current, baseline, rtol, atol), number by number."""
    actual = expected * (1 + relative_change) + relative_change * 1e-3
    row = {"experiment": "e", "space": "s", "variant": "", "region": "", "level": None, "metric": "fd"}
    table = validate_results(
        pd.DataFrame([{**row, "value": expected, "ci_low": None, "ci_high": None, "n": 1}])
    )
    baseline = make_baseline(table, tolerances={"fd": Tolerance(rtol, atol)})
    comparison = compare(table.assign(value=actual), baseline)
    assert comparison.failed == (not np.isclose(actual, expected, rtol=rtol, atol=atol))


def _planted_runs() -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """A reference table and three reruns whose differences are planted, row by row."""
    rows = [
        {"experiment": "e", "space": "s", "variant": "", "region": r, "level": None, "metric": "fd",
         "value": v, "ci_low": v - 1, "ci_high": v + 1, "n": 50}
        for r, v in (("A", 200.0), ("B", 4.0), ("C", 0.0))
    ]  # fmt: skip
    reference = validate_results(pd.DataFrame(rows))
    shifts = {"kernels=x": (2e-4, 0.0, 0.0), "threads=1": (-5e-4, 3e-9, 0.0), "batch=3": (1e-4, 0.0, 0.0)}
    reruns = {}
    for name, (shift_a, shift_b, _) in shifts.items():
        table = reference.copy()
        table.loc[table["region"] == "A", ["value", "ci_high"]] += shift_a
        table.loc[table["region"] == "B", "value"] += shift_b
        reruns[name] = table
    return reference, reruns


def test_calibrated_tolerance_is_the_multiple_of_the_spread_with_a_floor() -> None:
    reference, reruns = _planted_runs()
    rule = CalibrationRule(multiple=10, rtol_floor=1e-7, atol_floor=1e-12)
    checks = calibrated_checks(reference, reruns, rule)
    by_region = {key[3]: value for key, value in checks.items()}
    a = by_region["A"]
    assert a["value"].spread == pytest.approx(5e-4) and a["value"].atol == pytest.approx(5e-3)
    assert a["value"].rtol == 0 and a["value"].origin == "calibrated: 10 × spread 0.0005 (threads=1)"
    assert a["ci_high"].atol == pytest.approx(5e-3) and a["ci_low"].spread == 0
    assert a["ci_low"].atol == pytest.approx(1e-7 * 200.0)  # the relative floor, scaled by the row's value
    assert a["ci_low"].origin == "floor 1e-07 × |value| (identical in 3 variations)"
    assert by_region["B"]["value"].atol == pytest.approx(1e-7 * 4.0)  # 10 × 3e-9 is under the floor
    assert by_region["C"]["value"].atol == 1e-12 and by_region["C"]["value"].origin.startswith("floor atol")
    assert a["n"] == Tolerance(0.0, 0.0, "calibrated: equal in 3 variations", 0.0)
    summary = spread_summary(reference, reruns)
    assert summary.loc["e: fd", "threads=1"] == pytest.approx(5e-4 / 200.0)
    assert summary.loc["e: fd [ci_high]", "kernels=x"] == pytest.approx(2e-4 / 200.0)


def test_calibration_refuses_configurations_whose_rows_depend_on_the_machine() -> None:
    reference, reruns = _planted_runs()
    reruns["threads=1"] = reruns["threads=1"].iloc[1:]
    reruns["batch=3"] = reruns["batch=3"].assign(value=[np.nan, 4.0, 0.0])
    with pytest.raises(CalibrationError) as raised:
        calibrated_checks(reference, reruns, CalibrationRule())
    message = str(raised.value)
    assert "threads=1 lacks row e / s / A / fd" in message
    assert "batch=3 gives nan for e / s / A / fd [value], reference 200.0" in message


def test_row_keys_of_a_baseline_are_its_results_keys(results) -> None:
    baseline = make_baseline(results)
    assert set(baseline.checks) == {row_key(row) for row in baseline.rows.to_dict("records")}
    assert DEFAULT_TOLERANCES["*"].bound(100.0) == pytest.approx(0.1 + 1e-8)


def test_honest_variations_change_one_thing_each() -> None:
    reference, *others = honest_variations(32, on_gpu=True)
    assert reference.name == "reference" and reference.batch_size is None and reference.tf32 is None
    settings = {variation.name: variation.describe() for variation in others}
    assert settings["kernels=aten-default"]["environment"]["ATEN_CPU_CAPABILITY"] == "default"
    assert settings["kernels=oldest"]["environment"]["ONEDNN_MAX_CPU_ISA"] == "SSE41"
    assert settings["threads=1"]["environment"] == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert settings["batch=24"]["batch_size"] == 24
    assert settings["tf32=on"]["tf32"] == "on" and settings["tf32=off"]["tf32"] == "off"
    assert [v.name for v in honest_variations(8)] == [
        "reference", "kernels=aten-default", "kernels=oldest", "threads=1", "batch=6"
    ]  # fmt: skip
