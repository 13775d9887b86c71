"""The committed baselines catch real changes of method and pass honest variations (METHODS §11).

Each test plants one regression in this process (monkeypatch), reruns the smallest part of a committed
configuration that exercises it (a space or two, the committed images, its own empty cache, since cache
keys do not see patched code) and compares the result with the baseline rows that part produces. A
planted regression must make those rows DRIFT (not go missing); an honest variation must pass. The
printed line of each test gives the ratio of the smallest and largest drift to its tolerance.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import pkgutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tomllib
import torch

from bench.reports.regression import DRIFT, EXTRA, MISSING, OK, Comparison, compare, load_baseline

REPO = Path(__file__).resolve().parents[1]
BASELINES = REPO / "reports" / "baselines"
SHIFT = 1.0e4  # added to every feature the statistics read: FD is translation-invariant


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test computes afresh in its own cache, from the repository root (the configs' paths)."""
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(REPO)


def run_part(name: str, **overrides: Any) -> pd.DataFrame:
    """The results of committed configuration `name` with some settings replaced, run in this process."""
    from bench.experiments.runner import experiment_config, run_experiment

    document = tomllib.loads((BASELINES / f"{name}.toml").read_text())
    settings = {**document["config"], "progress": False, **overrides}
    config = experiment_config(document["experiment"], settings, where=name)
    return run_experiment(document["experiment"], config).results


def check_part(name: str, results: pd.DataFrame, **selection: list[str]) -> Comparison:
    """`results` against the rows of baseline `name` that the partial run produces."""
    baseline = load_baseline(BASELINES / f"{name}.json")
    experiment = tomllib.loads((BASELINES / f"{name}.toml").read_text())["experiment"]
    return compare(results, baseline.subset({"experiment": [experiment], **selection}))


def plant(monkeypatch: pytest.MonkeyPatch, module: Any, attribute: str, replacement: Any) -> None:
    """Replace `module.attribute` in every fdbench module that imported it by name.

    Every module is imported first: one imported later, during the run, would otherwise bind the
    replacement for good and carry the planted regression into the tests that follow.
    """
    _import_every_module()
    original = getattr(module, attribute)
    for loaded in list(sys.modules.values()):
        name = getattr(loaded, "__name__", "")
        if name.startswith(("bench", "feature_spaces")) and getattr(loaded, attribute, None) is original:
            monkeypatch.setattr(loaded, attribute, replacement)


@functools.cache
def _import_every_module() -> None:
    import bench
    import feature_spaces

    for package in (bench, feature_spaces):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            with contextlib.suppress(Exception):  # optional dependencies (open_clip, timm) may be absent
                importlib.import_module(info.name)


def assert_drifts(comparison: Comparison, rows: Callable[[pd.DataFrame], pd.Series], label: str) -> None:
    """Every selected `value` line drifts; no row is missing or extra. Prints the ratios to tolerance."""
    table = comparison.table
    assert comparison.count(MISSING) == 0 and comparison.count(EXTRA) == 0, comparison.table
    chosen = table[(table["field"] == "value") & rows(table)]
    assert len(chosen) > 0, f"{label}: no baseline rows selected"
    statuses = chosen.set_index("key")["status"]
    assert (statuses == DRIFT).all(), f"{label}: rows not drifting:\n{statuses[statuses != DRIFT]}"
    print(f"\n{label}: {len(chosen)} rows drift, ratio to tolerance {chosen['ratio'].min():.3g} … "
          f"{chosen['ratio'].max():.3g}")  # fmt: skip


def assert_passes(comparison: Comparison, label: str) -> None:
    """Every compared number is within its tolerance and both sides hold the same rows."""
    failing = comparison.table[comparison.table["status"] != OK]
    assert not comparison.failed, f"{label}:\n{failing.to_string()}"
    largest = comparison.table["ratio"].max()
    print(f"\n{label}: {len(comparison.table)} numbers pass, largest ratio to tolerance {largest:.3g}")


def module(name: str) -> Any:
    """The module itself: `import a.b as b` gives package a's attribute b, and fdbench's packages export
    functions named like some of their modules (bench.stats, feature_spaces.preprocess)."""
    return importlib.import_module(name)


def metric_is(*metrics: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda table: table["key"].str.rsplit(" / ", n=1).str[-1].isin(metrics)


def region_is(*regions: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda table: table["key"].str.contains("|".join(f"/ {region} /" for region in regions))


# ------------------------------------------------------------------------------------ planted regressions


@pytest.mark.slow
def test_resize_filter_bicubic_to_bilinear_is_caught(monkeypatch) -> None:
    preprocess = module("feature_spaces.preprocess")
    original = preprocess.resize_float

    def bilinear_instead(x, size, mode):
        return original(x, size, "bilinear-aa" if mode == "bicubic-aa" else mode)

    monkeypatch.setattr(preprocess, "resize_float", bilinear_instead)
    spaces = ["efficientnet-lite0-imagenet"]  # bicubic 64² → 224²
    results = run_part("attribute_proportion_small", spaces=spaces)
    comparison = check_part("attribute_proportion_small", results, space=spaces)
    assert_drifts(comparison, metric_is("fd"), "resize bicubic → bilinear")


def test_rgb_read_as_bgr_is_caught(monkeypatch) -> None:
    from bench.sources import FolderSource

    original = FolderSource.load
    monkeypatch.setattr(FolderSource, "load", lambda self, index: original(self, index)[..., ::-1].copy())
    spaces = ["pixels-randproj", "spectrum-durall"]
    results = run_part("region_blur_small", spaces=spaces)
    comparison = check_part("region_blur_small", results, space=spaces)
    assert_drifts(comparison, metric_is("fd"), "RGB ↔ BGR")


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["missing", "doubled"])
def test_missing_or_doubled_normalisation_is_caught(monkeypatch, fault) -> None:
    preprocess = module("feature_spaces.preprocess")
    original = preprocess.preprocess

    def normalised_wrongly(images, prep, device=None):
        if fault == "missing":
            return original(images, dataclasses.replace(prep, mean=None, std=None), device)
        x = original(images, prep, device)
        mean = torch.tensor(prep.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(prep.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).contiguous()

    plant(monkeypatch, preprocess, "preprocess", normalised_wrongly)
    spaces, generators = (
        ["efficientnet-lite0-imagenet"],
        {"pixelated": "reports/baselines/data/faces/cf_pixelated"},
    )
    results = run_part("generator_comparison_small", spaces=spaces, generators=generators)
    # region All: rows comparing a pair of generators (region = the other one) need both
    comparison = check_part(
        "generator_comparison_small", results, space=spaces, variant=list(generators), region=["All"]
    )
    assert_drifts(comparison, metric_is("fd", "kid"), f"{fault} normalisation")


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_blur_sigma_off_by_ten_percent_is_caught(monkeypatch, factor) -> None:
    blur = module("bench.perturbations.blur")

    original = blur.region_blur_geometry

    def scaled(height, width, sigma_512=blur.REFERENCE_SIGMA):
        kernel, sigma = original(height, width, sigma_512)
        return kernel, sigma * factor

    monkeypatch.setattr(blur, "region_blur_geometry", scaled)
    spaces = ["pixels-randproj"]
    results = run_part("region_blur_small", spaces=spaces)
    comparison = check_part("region_blur_small", results, space=spaces)
    assert_drifts(comparison, metric_is("fd"), f"blur σ × {factor}")


def test_label_numbering_swapped_is_caught_where_the_numberings_differ(monkeypatch) -> None:
    masks = module("bench.masks")

    # the committed BiSeNet label maps read with CelebAMask-HQ's numbering
    swapped = masks.LabelConvention("bisenet", masks.CELEBAMASK_HQ.names)
    monkeypatch.setitem(masks.CONVENTIONS, "bisenet", swapped)
    spaces = ["pixels-randproj"]
    results = run_part("region_blur_small", spaces=spaces)
    comparison = check_part("region_blur_small", results, space=spaces)
    assert_drifts(
        comparison, lambda t: metric_is("fd")(t) & region_is("Hair", "Nose")(t), "label numbering swapped"
    )
    # background (0) and skin (1) have the same number in both conventions, and All uses no mask
    table = comparison.table
    same = table[(table["field"] == "value") & region_is("All", "Background", "Skin")(table)]
    assert (same["status"] == OK).all(), same


def test_generator_left_in_training_mode_is_caught(monkeypatch) -> None:
    """Without `.eval()` the DCGAN's BatchNorm layers normalise with (and update) batch statistics."""
    monkeypatch.setattr(torch.nn.Module, "eval", lambda self: self)
    spaces, generators = ["pixels-randproj"], {"dcgan-seed1": "dcgan-faces:count=64,seed=1"}
    results = run_part("generator_comparison_small", spaces=spaces, generators=generators)
    comparison = check_part(
        "generator_comparison_small", results, space=spaces, variant=list(generators), region=["All"]
    )
    assert_drifts(
        comparison, metric_is("fd", "fd_mean_term", "fd_trace_term", "kid"), "network in training mode"
    )


def _statistics_read_shifted_features(monkeypatch, dtype: type) -> None:
    """Every feature set enters the statistics shifted by SHIFT, as `dtype`. In float64 the shift keeps
    every bit of the float32 spectrum features (values about 10², spacing 2⁻¹⁶: 10⁴ + x needs 30 bits),
    so float64 statistics give the same FDs; in float32 the shift rounds the features' low bits away and
    the sums cancel."""
    stats = module("bench.stats")

    original = stats.as_float64_features

    def shifted(features, *, name="features"):
        return (original(features, name=name) + SHIFT).astype(dtype)

    plant(monkeypatch, stats, "as_float64_features", shifted)


def test_float32_statistics_on_a_shifted_input_are_caught(monkeypatch) -> None:
    _statistics_read_shifted_features(monkeypatch, np.float32)
    spaces = ["spectrum-durall"]
    results = run_part("region_blur_small", spaces=spaces)
    comparison = check_part("region_blur_small", results, space=spaces)
    assert_drifts(comparison, metric_is("fd"), "float32 statistics, shifted input")


# ------------------------------------------------------------------------------------ honest variations


def test_float64_statistics_on_a_shifted_input_pass(monkeypatch) -> None:
    _statistics_read_shifted_features(monkeypatch, np.float64)
    spaces = ["spectrum-durall"]
    results = run_part("region_blur_small", spaces=spaces)
    assert_passes(check_part("region_blur_small", results, space=spaces), "float64 statistics, shifted input")


@pytest.mark.slow
@pytest.mark.parametrize("variation", ["batch=13", "threads=1"])
def test_honest_variations_pass(variation) -> None:
    """A network space (float32 convolutions whose sums change order) and two exact ones."""
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    try:
        if variation == "threads=1":
            torch.set_num_threads(1)
        with threadpool_limits(limits=1 if variation == "threads=1" else None):
            batch = {"batch_size": 13} if variation == "batch=13" else {}
            network = run_part("attribute_proportion_small", spaces=["efficientnet-lite0-imagenet"], **batch)
            exact = run_part("region_blur_small", spaces=["pixels-randproj", "spectrum-durall"], **batch)
    finally:
        torch.set_num_threads(threads)
    comparison = check_part("attribute_proportion_small", network, space=["efficientnet-lite0-imagenet"])
    assert_passes(comparison, f"{variation}, efficientnet-lite0-imagenet")
    comparison = check_part("region_blur_small", exact, space=["pixels-randproj", "spectrum-durall"])
    assert_passes(comparison, f"{variation}, pixels-randproj and spectrum-durall")
