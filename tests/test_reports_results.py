"""The tidy results schema, its CSV/JSON round trip, and the run manifest."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest

from bench.reports.manifest import build_manifest, load_manifest, manifest_notes, write_manifest
from bench.reports.results import (
    COLUMNS,
    ResultsSchemaError,
    duplicate_keys,
    level_text,
    load_results,
    row_key,
    save_results,
    validate_results,
)
from tests.test_reports_support import full_results, oracle_fd, region_blur_results


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    return full_results()


def test_missing_columns_are_named(results: pd.DataFrame) -> None:
    with pytest.raises(ResultsSchemaError, match=r"lacks column\(s\) ci_low, n"):
        validate_results(results.drop(columns=["ci_low", "n"]))


def test_non_numeric_value_names_column_and_row(results: pd.DataFrame) -> None:
    broken = results.copy()
    broken["value"] = broken["value"].astype(object)
    broken.loc[3, "value"] = "twelve"
    with pytest.raises(ResultsSchemaError, match=r"'value'.*'twelve'.*row\(s\) 3"):
        validate_results(broken)


def test_negative_or_fractional_counts_are_rejected(results: pd.DataFrame) -> None:
    broken = results.astype({"n": "float64"})
    broken.loc[0, "n"] = 2.5
    with pytest.raises(ResultsSchemaError, match="whole numbers"):
        validate_results(broken)
    broken.loc[0, "n"] = -3
    with pytest.raises(ResultsSchemaError, match="non-negative"):
        validate_results(broken)


def test_not_a_dataframe_is_rejected() -> None:
    with pytest.raises(ResultsSchemaError, match="DataFrame"):
        validate_results([{"experiment": "x"}])  # type: ignore[arg-type]


def test_validation_normalizes_types(results: pd.DataFrame) -> None:
    table = validate_results(results)
    assert list(table.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert "note" in table.columns
    assert table["value"].dtype == np.float64
    assert str(table["n"].dtype) == "Int64"
    levels = set(map(type, table["level"]))
    assert levels <= {float, type(None)}


@pytest.mark.parametrize("suffix", ["csv", "json"])
def test_round_trip_keeps_every_number_exactly(results: pd.DataFrame, tmp_path, suffix: str) -> None:
    paths = save_results(results, tmp_path)
    loaded = load_results(paths[suffix])
    original = validate_results(results)
    assert len(loaded) == len(original)
    assert [row_key(r) for r in loaded.to_dict("records")] == [
        row_key(r) for r in original.to_dict("records")
    ]
    for column in ("value", "ci_low", "ci_high"):
        np.testing.assert_array_equal(loaded[column].to_numpy(), original[column].to_numpy())
    assert loaded["n"].tolist() == original["n"].tolist()
    assert loaded["note"].tolist() == original["note"].tolist()


def test_json_is_records_with_null_for_missing(results: pd.DataFrame, tmp_path) -> None:
    save_results(results, tmp_path)
    records = json.loads((tmp_path / "results.json").read_text())
    assert isinstance(records, list) and len(records) == len(results)
    skipped = next(r for r in records if r["metric"] == "skipped")
    assert skipped["value"] is None and skipped["note"] == "region Hat absent from every mask"
    delta = next(r for r in records if r["experiment"] == "attribute_proportion")
    assert isinstance(delta["level"], float)


def test_saved_values_match_an_independent_recomputation(tmp_path) -> None:
    """The FD stored for the whole-image blur equals a fresh float64 computation."""
    from tests.test_reports_support import ALL_REGION, blur, latents, space_maps

    save_results(region_blur_results(n_boot=2), tmp_path)
    loaded = load_results(tmp_path / "results.csv")
    row = loaded[
        (loaded["region"] == ALL_REGION) & (loaded["metric"] == "fd") & (loaded["space"] == "toy-tanh")
    ]
    embed = space_maps(0)["toy-tanh"]
    z = latents(300, 0)
    expected = oracle_fd(embed(z), embed(blur(z, ALL_REGION))).value
    assert row["value"].item() == pytest.approx(expected, rel=1e-12)


def test_load_from_run_folder_and_errors(results: pd.DataFrame, tmp_path) -> None:
    save_results(results, tmp_path)
    assert len(load_results(tmp_path)) == len(results)
    with pytest.raises(FileNotFoundError, match=r"absent\.csv does not exist"):
        load_results(tmp_path / "absent.csv")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"no results\.csv or results\.json in run folder"):
        load_results(empty)
    bad = tmp_path / "table.parquet"
    bad.write_text("x")
    with pytest.raises(ResultsSchemaError, match=r"\.csv or \.json"):
        load_results(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ResultsSchemaError, match="not valid JSON"):
        load_results(broken)


def test_level_keys_are_canonical() -> None:
    assert level_text(0.5) == level_text("0.50") == level_text(np.float32(0.5)) == "0.5"
    assert level_text(None) == level_text(float("nan")) == level_text("") == ""
    assert level_text("q=90") == "q=90"
    assert level_text(5) == level_text("5.0")


def test_duplicate_keys_are_found(results: pd.DataFrame) -> None:
    assert duplicate_keys(results) == []
    doubled = pd.concat([results, results.iloc[[5]]], ignore_index=True)
    assert duplicate_keys(doubled) == [row_key(results.iloc[5])]


def test_manifest_records_versions_hashes_and_device(tmp_path) -> None:
    weight = tmp_path / "weights.bin"
    weight.write_bytes(np.random.default_rng(0).bytes(4096))
    manifest = build_manifest(
        config={"spaces": ["toy-linear"], "sigma": 100.0},
        seeds={"bootstrap": 7},
        weights={"toy": weight, "given": "abc123"},
        data_manifest_hash="f00d",
        timings={"features_s": 1.5},
        notes=["space X could not load: weights missing"],
    )
    assert manifest["packages"]["numpy"] == np.__version__
    assert manifest["packages"]["pandas"] == pd.__version__
    assert manifest["packages"]["fdbench"] is not None
    assert manifest["weights"]["toy"] == hashlib.sha256(weight.read_bytes()).hexdigest()
    assert manifest["weights"]["given"] == "abc123"
    assert manifest["device"]["cpu"]
    assert "gpu" in manifest["device"]
    assert manifest["seeds"] == {"bootstrap": 7}
    path = write_manifest(manifest, tmp_path)
    assert path.name == "manifest.json"
    assert load_manifest(tmp_path) == manifest
    assert manifest_notes(manifest) == ["space X could not load: weights missing"]


def test_manifest_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.bin"):
        build_manifest(weights={"toy": tmp_path / "missing.bin"}, device={"cpu": "test"})
    with pytest.raises(FileNotFoundError, match=r"manifest\.json"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_manifest(tmp_path)


def test_oracle_fd_is_zero_for_identical_sets_and_symmetric() -> None:
    """Sanity of the test oracle itself (FD properties), so table checks rest on firm ground."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(200, 6)), rng.normal(0.5, 1.3, size=(150, 6))
    assert abs(oracle_fd(x, x).value) < 1e-9
    assert oracle_fd(x, y).value == pytest.approx(oracle_fd(y, x).value, rel=1e-9)
    assert math.isclose(oracle_fd(x, y).value, oracle_fd(x, y).mean_term + oracle_fd(x, y).trace_term)
