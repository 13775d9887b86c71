"""Seaborn plots: each draws the numbers of the table it is given, on the layout its experiment needs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from bench.reports.plots import (
    NothingToPlotError,
    experiment_figures,
    figure_png,
    plot_delta_curves,
    plot_generator_ranks,
    plot_kendall_tau,
    plot_nfd_heatmap,
    plot_region_blur_nfd,
    plot_style_probe,
)
from bench.reports.rankings import kendall_tau_matrix
from bench.reports.results import validate_results
from tests.test_reports_support import full_results, nfd_oracle


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    return validate_results(full_results())


def _block(results: pd.DataFrame, experiment: str) -> pd.DataFrame:
    return results[results["experiment"] == experiment]


def test_region_bars_draw_the_nfd_values_with_a_zoom_panel(results: pd.DataFrame) -> None:
    figure = plot_region_blur_nfd(_block(results, "region_blur"))
    assert isinstance(figure, Figure)
    main, zoom = figure.axes[:2]
    heights = sorted(round(p.get_height(), 9) for p in main.patches if p.get_height() > 0)
    rows = results[(results["metric"] == "nfd")]
    assert heights == sorted(round(v, 9) for v in rows["value"] if v > 0)
    zoom_labels = [t.get_text() for t in zoom.get_xticklabels()]
    assert set(zoom_labels) == {"Skin", "Eyes", "Nose", "Mouth & Lips"}
    # the zoomed panel's scale fits the small regions, not the whole-image blur
    assert zoom.get_ylim()[1] < 0.5 * main.get_ylim()[1]
    eyes = nfd_oracle("Eyes", "toy-tanh")
    assert any(abs(p.get_height() - eyes) < 1e-3 * eyes for p in zoom.patches)


def test_no_zoom_panel_when_all_regions_are_large(results: pd.DataFrame) -> None:
    block = _block(results, "region_blur")
    large = block[block["region"].isin(["Background", "All"])]
    assert len(plot_region_blur_nfd(large).axes) == 1


def test_heatmap_holds_region_by_space_matrix(results: pd.DataFrame) -> None:
    figure = plot_nfd_heatmap(_block(results, "region_blur"))
    mesh = figure.axes[0].collections[0]
    matrix = np.asarray(mesh.get_array()).reshape(7, 2)
    assert matrix[3, 1] == pytest.approx(nfd_oracle("Eyes", "toy-tanh"), rel=1e-9)
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["toy-linear", "toy-tanh"]


def test_delta_curves_have_three_log_panels(results: pd.DataFrame) -> None:
    figure = plot_delta_curves(_block(results, "attribute_proportion"))
    panels = figure.axes[:3]
    assert [ax.get_title() for ax in panels] == ["FD", "mean term ‖μA−μB‖²", "trace term"]
    assert all(ax.get_yscale() == "log" for ax in panels)
    rows = results[(results["experiment"] == "attribute_proportion") & (results["metric"] == "fd")]
    expected = rows[rows["space"] == "toy-linear"].sort_values("level")["value"].to_numpy()
    drawn = [line.get_ydata() for line in panels[0].get_lines() if len(line.get_ydata()) == len(expected)]
    assert any(np.allclose(y, expected) for y in drawn)


def test_style_probe_curve_ends_at_one(results: pd.DataFrame) -> None:
    figure = plot_style_probe(_block(results, "style_probe"))
    lines = [line for line in figure.axes[0].get_lines() if len(line.get_xdata()) == 5]
    assert len(lines) == 2
    for line in lines:
        assert line.get_xdata()[-1] == 1.0 and line.get_ydata()[-1] == pytest.approx(1.0)
        assert np.all(np.diff(line.get_ydata()) > 0)  # more style swapped, larger FD


def test_rank_and_tau_heatmaps(results: pd.DataFrame) -> None:
    block = _block(results, "generator_comparison")
    ranks = plot_generator_ranks(block).axes[0].collections[0].get_array()
    assert sorted(np.asarray(ranks).reshape(5, 2)[:, 0]) == [1, 2, 3, 4, 5]
    tau = np.asarray(plot_kendall_tau(block).axes[0].collections[0].get_array()).reshape(2, 2)
    np.testing.assert_allclose(tau, kendall_tau_matrix(block).to_numpy())


def test_experiment_figures_cover_every_experiment_and_render(results: pd.DataFrame) -> None:
    figures = experiment_figures(results)
    captions = [caption for caption, _ in figures]
    assert len(captions) == 6
    assert captions[0].startswith("region_blur") and captions[-1].startswith("style_probe")
    png = figure_png(figures[0][1])
    assert png.startswith(b"\x89PNG")


def test_plotting_without_the_metric_is_a_clear_error(results: pd.DataFrame) -> None:
    with pytest.raises(NothingToPlotError, match="'nfd'"):
        plot_region_blur_nfd(_block(results, "style_probe"))
    with pytest.raises(NothingToPlotError, match="fd_mean_term"):
        plot_delta_curves(_block(results, "style_probe"))
