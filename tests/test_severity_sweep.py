"""Severity under perturbation: labels, the logits-space rule, and a sweep on real photos checked against
the perturbations and the classifier applied directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.errors import UserError
from bench.experiments.severity_sweep import (
    SeveritySweepConfig,
    logits_space,
    read_labels,
    run_severity_sweep,
)
from bench.hierarchy import Hierarchy
from bench.metrics.severity import severity_metrics
from bench.perturbations import make_perturbation
from tests.test_hierarchy import SMALL_EDGES
from tests.test_severity import PHOTO_CLASSES, photo_pixels, write_photos


def test_labels_from_folders_and_from_a_csv(tmp_path: Path):
    tree = Hierarchy.from_edges(SMALL_EDGES)  # leaves: dog, plant, siamese, tabby
    ids = ["tabby/a.png", "dog/b.png", "loose.png", "x/deep/c.png"]
    with pytest.raises(UserError, match="1 labels are not classes"):
        read_labels(ids, "folders", tree)  # "x" is no class
    labelled = read_labels(ids[:3], "folders", tree)
    assert labelled.index_of == {"tabby/a.png": 3, "dog/b.png": 0}
    assert labelled.unlabelled == ["loose.png"]
    csv = tmp_path / "labels.csv"
    csv.write_text("file,label\nloose.png,2\nb.png,plant\nmissing.png,dog\n\n")
    labelled = read_labels(ids, str(csv), tree)
    assert labelled.index_of == {"loose.png": 2, "dog/b.png": 1}  # an index; a unique file name
    assert labelled.unmatched == ["missing.png"] and len(labelled.unlabelled) == 2
    assert any("name no image" in note for note in labelled.notes())


def test_a_feature_space_maps_to_its_logits_sibling():
    assert logits_space("efficientnet-lite0-imagenet") == "efficientnet-lite0-imagenet-logits"
    assert logits_space("efficientnet-lite0-imagenet-logits") == "efficientnet-lite0-imagenet-logits"
    with pytest.raises(UserError, match="exposes no class logits"):
        logits_space("pixels-randproj")
    with pytest.raises(ValueError, match="unknown feature space"):
        logits_space("no-such-space")


def test_sweeps_are_checked_when_configured():
    with pytest.raises(ValueError, match="a sweep is a table"):
        SeveritySweepConfig(sweeps=[{"perturbation": "jpeg", "levels": [10]}])
    with pytest.raises(ValueError, match="clusters must be"):
        SeveritySweepConfig(clusters="photo")


@pytest.mark.slow
def test_sweep_matches_perturbing_and_classifying_directly(shared_data: Path, tmp_path: Path, monkeypatch):
    import feature_spaces

    hierarchy_path = shared_data / "hierarchies" / "imagenet_isa.txt"
    if not hierarchy_path.is_file():
        pytest.skip(f"class hierarchy not found at {hierarchy_path}")
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path / "cache"))
    names = ["chelsea", "coffee", "grace_hopper"]
    folder, labels = write_photos(tmp_path, names)
    sweeps = [
        {"perturbation": "gaussian_blur", "parameter": "sigma", "levels": [6.0]},
        {"perturbation": "jpeg", "parameter": "quality", "levels": [5]},
        {"perturbation": "gaussian_noise", "parameter": "alpha", "levels": [0.5]},
    ]
    config = SeveritySweepConfig(
        source=str(folder),
        labels=str(labels),
        hierarchy=str(hierarchy_path),
        space="efficientnet-lite0-imagenet",
        ks=[1, 5],
        sweeps=sweeps,
        bootstrap=30,
        batch_size=2,
        progress=False,
    )
    output = run_severity_sweep(config)
    table = output.results
    assert set(table["n"][table["metric"] == "top1_error"]) == {3}

    # Oracle: perturb each photo with the same perturbation, classify it directly, compute the metrics.
    hierarchy = Hierarchy.load(hierarchy_path)
    distances = hierarchy.leaf_distances()
    extractor = feature_spaces.get("efficientnet-lite0-imagenet-logits").load("cpu")
    truth = np.array([hierarchy.leaf_index(PHOTO_CLASSES[name]) for name in sorted(names)])
    cases = {("clean", None): None}
    for sweep in sweeps:
        params = {sweep["parameter"]: sweep["levels"][0]}
        if sweep["perturbation"] == "gaussian_noise":
            params["seed"] = config.seed
        cases[(f"{sweep['perturbation']}:{sweep['parameter']}", float(sweep["levels"][0]))] = (
            make_perturbation(sweep["perturbation"], **params)
        )
    values = {}
    for (variant, level), perturbation in cases.items():
        logits = []
        for offset, name in enumerate(sorted(names)):  # the engine's stream order: sorted file names
            image = torch.from_numpy(np.ascontiguousarray(photo_pixels(name))).permute(2, 0, 1)[None]
            shown = image if perturbation is None else perturbation(image, offset=offset)
            logits.append(extractor(shown).numpy())
        values[variant] = severity_metrics(np.concatenate(logits), truth, distances, (1, 5))
        rows = table[
            (table["variant"] == variant)
            & (table["level"].isna() if level is None else table["level"] == level)
        ]
        for metric, expected in values[variant].items():
            got = rows[rows["metric"] == metric]["value"].iloc[0]
            assert got == pytest.approx(expected, nan_ok=True, rel=1e-6, abs=1e-6), (variant, metric)
        if variant != "clean":
            for metric in ("top1_error", "hdist@5"):
                change = rows[rows["metric"] == f"{metric}_change"]["value"].iloc[0]
                assert change == pytest.approx(values[variant][metric] - values["clean"][metric], abs=1e-9)
    # Heavy blur and JPEG at quality 5 do not make these photos easier to classify.
    assert values["gaussian_blur:sigma"]["hdist@5"] >= values["clean"]["hdist@5"]
    estimated = table[table["metric"] != "mistake_severity"].dropna(subset=["ci_low"])
    assert ((estimated["ci_low"] <= estimated["value"]) & (estimated["value"] <= estimated["ci_high"])).all()
    assert (table["ci_low"][table["metric"] == "top1_error"].dropna() >= 0).all()

    # The plot of the report, and a second run served from the engine's cache.
    from bench.reports.plots import experiment_figures

    captions = [caption for caption, _ in experiment_figures(table)]
    assert any("mistake severity against strength" in caption for caption in captions)
    again = run_severity_sweep(config)
    assert again.engine is not None and again.engine.cache_misses == 0
    assert again.results["value"].equals(table["value"])
