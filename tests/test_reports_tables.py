"""Markdown/HTML summary tables, problems section and generator rankings, checked against recomputation."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata

from bench.reports.rankings import generator_rankings, generator_scores, kendall_tau_matrix
from bench.reports.results import validate_results
from bench.reports.tables import (
    experiment_tables,
    fd_terms_table,
    markdown_report,
    nfd_table,
    problem_lines,
    to_html,
    to_markdown,
)
from tests.test_reports_support import (
    GENERATORS,
    REGIONS,
    full_results,
    generator_features,
    nfd_oracle,
    oracle_fd,
    space_maps,
)


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    return validate_results(full_results())


def _block(results: pd.DataFrame, experiment: str) -> pd.DataFrame:
    return results[results["experiment"] == experiment]


def test_nfd_table_cells_match_recomputed_nfd(results: pd.DataFrame) -> None:
    table = nfd_table(_block(results, "region_blur"))
    frame = table.frame.set_index("region")
    assert list(frame.columns) == ["toy-linear", "toy-tanh"]
    assert list(frame.index) == [*REGIONS, "All"]
    for region in ("Eyes", "Hair"):
        for space in ("toy-linear", "toy-tanh"):
            cell = frame.loc[region, space]
            value = float(cell.split(" ")[0])
            assert value == pytest.approx(nfd_oracle(region, space), rel=1e-3)
            low, high = (float(x) for x in cell.split("[")[1].split("]")[0].split(", "))
            assert low <= high
            assert cell.endswith(f"(n={_n_of(results, region, space)})")
    assert frame.loc["All", "toy-linear"].startswith("1 ")


def _n_of(results: pd.DataFrame, region: str, space: str) -> int:
    rows = results[(results.metric == "nfd") & (results.region == region) & (results.space == space)]
    return int(rows["n"].iloc[0])


def test_fd_terms_add_up(results: pd.DataFrame) -> None:
    frame = fd_terms_table(_block(results, "region_blur")).frame
    assert {"region", "space", "FD", "trace term", "n"} <= set(frame.columns)
    mean_column = next(c for c in frame.columns if c.startswith("mean term"))
    for line in frame.to_dict("records"):
        total = float(line[mean_column]) + float(line["trace term"])
        assert total == pytest.approx(float(line["FD"]), rel=2e-3, abs=1e-6)
        assert line["n"] == "300"


def test_every_experiment_gets_tables(results: pd.DataFrame) -> None:
    titles = [table.title for table in experiment_tables(results)]
    assert any(t.startswith("region_blur: normalized FD, conditional") for t in titles)
    assert any(t.startswith("region_blur: raw FD") for t in titles)
    assert "attribute_proportion: fd" in titles and "attribute_proportion: fd_trace_term" in titles
    assert any("generator rank" in t for t in titles) and any("Kendall" in t for t in titles)
    assert "style_probe: fd_ratio" in titles
    assert not any("skipped" in t for t in titles)


def test_delta_pivot_shows_mean_and_std_band(results: pd.DataFrame) -> None:
    table = next(t for t in experiment_tables(results) if t.title == "attribute_proportion: fd")
    frame = table.frame.set_index("Δ")
    rows = results[(results["experiment"] == "attribute_proportion") & (results["metric"] == "fd")]
    row = rows[(rows["space"] == "toy-tanh") & (rows["level"] == 0.5)].iloc[0]
    assert frame.loc["0.5", "toy-tanh"] == f"{row['value']:.4g} ± {row['std']:.4g}"
    assert "[" not in frame.loc["0.5", "toy-tanh"]  # a spread over draws is never shown as an interval


def test_markdown_is_well_formed(results: pd.DataFrame) -> None:
    for table in experiment_tables(results):
        lines = [line for line in to_markdown(table).splitlines() if line.startswith("|")]
        widths = {line.replace("\\|", "").count("|") for line in lines}
        assert len(widths) == 1, table.title
        assert len(lines) == len(table.frame) + 2


def test_html_table_escapes_text() -> None:
    frame = validate_results(
        pd.DataFrame(
            [
                {
                    "experiment": "x",
                    "space": "<b>s</b>",
                    "variant": "a|b",
                    "region": "",
                    "level": None,
                    "metric": "fd",
                    "value": 1.0,
                    "ci_low": None,
                    "ci_high": None,
                    "n": 3,
                }
            ]
        )
    )
    rendered = to_html(experiment_tables(frame)[0])
    assert "<b>s</b>" not in rendered and "&lt;b&gt;s&lt;/b&gt;" in rendered
    assert "a\\|b" in to_markdown(experiment_tables(frame)[0])


def test_problems_list_skips_manifest_notes_and_missing_values(results: pd.DataFrame) -> None:
    with_gap = results.copy()
    with_gap.loc[with_gap.index[0], "value"] = np.nan
    lines = problem_lines(with_gap, {"notes": ["space clip-vit-b32 could not load: no network"]})
    assert lines[0] == "space clip-vit-b32 could not load: no network"
    assert "skipped: region_blur / toy-linear / Hat — region Hat absent from every mask" in lines
    assert any(line.startswith("no value: region_blur / toy-linear / Background") for line in lines)
    report = markdown_report(with_gap, {"problems": ["region Hat absent from every mask"]})
    assert "## Problems" in report and "- region Hat absent from every mask" in report


def test_no_problems_says_none(results: pd.DataFrame) -> None:
    clean = results[results["metric"] != "skipped"]
    assert problem_lines(clean, {}) == []
    assert markdown_report(clean).rstrip().endswith("None.")


def test_rankings_match_scipy_rankdata(results: pd.DataFrame) -> None:
    block = _block(results, "generator_comparison")
    ranks = generator_rankings(block)
    scores = generator_scores(block)
    assert list(ranks.index) == list(GENERATORS)
    for space in ranks.columns:
        np.testing.assert_array_equal(ranks[space].to_numpy(dtype=int), rankdata(scores[space], method="min"))


def test_generator_scores_are_the_recomputed_fds(results: pd.DataFrame) -> None:
    scores = generator_scores(_block(results, "generator_comparison"))
    reference, generated = generator_features()
    embed = space_maps(0)["toy-linear"]
    for name, z in generated.items():
        assert scores.loc[name, "toy-linear"] == pytest.approx(oracle_fd(embed(reference), embed(z)).value)


def test_kendall_tau_matches_pair_counting(results: pd.DataFrame) -> None:
    block = _block(results, "generator_comparison")
    scores = generator_scores(block)
    a, b = scores["toy-linear"].to_numpy(), scores["toy-tanh"].to_numpy()
    signs = [np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) for i, j in itertools.combinations(range(len(a)), 2)]
    expected = sum(signs) / len(signs)
    tau = kendall_tau_matrix(block)
    assert tau.loc["toy-linear", "toy-tanh"] == pytest.approx(expected)
    assert tau.loc["toy-tanh", "toy-linear"] == pytest.approx(expected)
    assert tau.loc["toy-linear", "toy-linear"] == 1.0
    assert -1.0 < expected < 1.0  # the toy spaces disagree on some pairs


def test_ranking_needs_the_metric(results: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="no rows with metric 'kid'"):
        generator_rankings(_block(results, "generator_comparison"), metric="kid")


def test_table_from_fdbench_frechet_distance_matches_the_oracle() -> None:
    """A region table built with bench.metrics.frechet_distance reports the oracle's nFD."""
    metrics = pytest.importorskip("bench.metrics")
    from tests.test_reports_support import ALL_REGION, blur, latents

    z = latents(200, 1)
    embed = space_maps(1)["toy-linear"]
    clean = embed(z)
    rows = []
    for region in ("Hair", ALL_REGION):
        fd = metrics.frechet_distance(clean, embed(blur(z, region)))
        for metric, value in (
            ("fd", fd.value),
            ("fd_mean_term", fd.mean_term),
            ("fd_trace_term", fd.trace_term),
        ):
            rows.append(
                {"experiment": "region_blur", "space": "toy-linear", "variant": "", "region": region,
                 "level": None, "metric": metric, "value": value, "ci_low": None, "ci_high": None, "n": 200}
            )  # fmt: skip
    fds = {r["region"]: r["value"] for r in rows if r["metric"] == "fd"}
    rows.append({**rows[0], "metric": "nfd", "value": fds["Hair"] / fds[ALL_REGION]})
    table = nfd_table(validate_results(pd.DataFrame(rows)))
    expected = (
        oracle_fd(clean, embed(blur(z, "Hair"))).value / oracle_fd(clean, embed(blur(z, ALL_REGION))).value
    )
    assert float(table.frame.set_index("region").loc["Hair", "toy-linear"].split(" ")[0]) == pytest.approx(
        expected, rel=1e-3
    )


def test_text_levels_pivot_in_their_order() -> None:
    """Spectral-style rows (level = image size text) get a generic pivot, one row per variant/level."""
    rng = np.random.default_rng(5)
    real = rng.normal(size=(100, 4))
    rows = []
    for size, scale in (("64×64", 1.0), ("128×128", 1.5)):
        for variant, shift in (("gan", 0.2), ("diffusion", 0.1)):
            fd = oracle_fd(real, rng.normal(shift, scale, (100, 4))).value
            rows.append(
                {"experiment": "spectral", "space": "spectrum-durall", "variant": variant, "region": "All",
                 "level": size, "metric": "fd", "value": fd, "ci_low": None, "ci_high": None, "n": 200}
            )  # fmt: skip
    tables = experiment_tables(pd.DataFrame(rows))
    assert [t.title for t in tables] == ["spectral: fd"]
    frame = tables[0].frame
    assert list(frame.columns) == ["variant", "level", "spectrum-durall"]
    assert frame["level"].tolist() == ["64×64", "128×128", "64×64", "128×128"]
    assert frame["variant"].tolist() == ["gan", "gan", "diffusion", "diffusion"]
