"""Mistake-severity metrics: hand-computed answers, a brute-force oracle, bootstrap properties, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.hierarchy import Hierarchy
from bench.metrics.severity import (
    paired_change_with_intervals,
    per_image_severity,
    severity_metrics,
    severity_with_intervals,
    top_k,
)
from tests.test_hierarchy import SMALL_DISTANCES


def brute_force(logits, labels, distances, ks):
    """The definitions of METHODS §7, one image and one class at a time in plain Python."""
    ranked = []
    for row in logits:
        order = sorted(range(len(row)), key=lambda c: (-float(row[c]), c))
        ranked.append(order)
    errors = [order[0] != label for order, label in zip(ranked, labels, strict=True)]
    severities = [
        distances[label][order[0]]
        for order, label, wrong in zip(ranked, labels, errors, strict=True)
        if wrong
    ]
    result = {
        "top1_error": sum(errors) / len(errors),
        "mistake_severity": sum(severities) / len(severities) if severities else math.nan,
    }
    for k in ks:
        per_image = [
            sum(distances[label][c] for c in order[:k]) / k
            for order, label in zip(ranked, labels, strict=True)
        ]
        result[f"hdist@{k}"] = sum(per_image) / len(per_image)
    return result


def test_hand_computed_answers_on_the_small_tree():
    # classes in sorted leaf order: 0 dog, 1 plant, 2 siamese, 3 tabby
    logits = np.array(
        [
            [0.1, 0.0, 0.3, 0.9],  # tabby, correct; top-2 tabby, siamese
            [0.1, 0.0, 0.9, 0.3],  # true tabby, predicted siamese: severity 1; top-2 siamese, tabby
            [0.9, 0.0, 0.3, 0.1],  # true tabby, predicted dog: severity 2; top-2 dog, siamese
            [0.0, 0.9, 0.3, 0.1],  # true dog, predicted plant: severity 3; top-2 plant, siamese
        ]
    )
    labels = np.array([3, 3, 3, 0])
    metrics = severity_metrics(logits, labels, SMALL_DISTANCES, ks=(1, 2))
    assert metrics["top1_error"] == pytest.approx(3 / 4)
    assert metrics["mistake_severity"] == pytest.approx((1 + 2 + 3) / 3)
    assert metrics["hdist@1"] == pytest.approx((0 + 1 + 2 + 3) / 4)
    # top-2 distances per image: (0+1)/2, (1+0)/2, (2+1)/2, (3+2)/2
    assert metrics["hdist@2"] == pytest.approx((0.5 + 0.5 + 1.5 + 2.5) / 4)


def test_no_mistakes_leaves_severity_undefined_and_ties_rank_the_lower_index_first():
    logits = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 2.0]])
    assert top_k(logits, 2).tolist() == [[0, 1], [2, 3]]
    metrics = severity_metrics(logits, np.array([0, 2]), SMALL_DISTANCES, ks=(1, 2))
    assert metrics["top1_error"] == 0.0
    assert math.isnan(metrics["mistake_severity"])
    assert metrics["hdist@2"] == pytest.approx((3 / 2 + 1 / 2) / 2)


@pytest.mark.parametrize("seed", range(4))
def test_matches_brute_force_on_random_trees(seed: int):
    rng = np.random.default_rng(seed)
    edges = [(f"n{int(rng.integers(0, child))}", f"n{child}") for child in range(1, 80)]
    tree = Hierarchy.from_edges(edges)
    distances = tree.leaf_distances()
    classes = len(tree.leaves)
    logits = rng.normal(size=(60, classes)).round(1)  # rounding makes ties common
    labels = rng.integers(0, classes, 60)
    ks = (1, 3, min(7, classes))
    ours = severity_metrics(logits, labels, distances, ks)
    expected = brute_force(logits.tolist(), labels.tolist(), distances.tolist(), ks)
    assert ours.keys() == expected.keys()
    for name, value in expected.items():
        assert ours[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name


def test_intervals_hold_the_estimate_and_clusters_of_copies_equal_images():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(40, 4))
    labels = rng.integers(0, 4, 40)
    alone = severity_with_intervals(logits, labels, SMALL_DISTANCES, (1, 2), num_boot=100, seed=5)
    for name, estimate in alone.estimates.items():
        assert estimate.interval.contains(estimate.estimate), name
        assert estimate.interval.method == "basic"
    assert alone.images == 40 and alone.mistakes == round(alone.estimates["top1_error"].estimate * 40)
    # Three identical copies of every image, resampled as clusters: the same draws give the same numbers.
    copies = severity_with_intervals(
        np.repeat(logits, 3, axis=0),
        np.repeat(labels, 3),
        SMALL_DISTANCES,
        (1, 2),
        clusters=np.repeat(np.arange(40), 3),
        num_boot=100,
        seed=5,
    )
    assert copies.clusters == 40 and copies.images == 120
    for name, estimate in alone.estimates.items():
        other = copies.estimates[name]
        assert other.estimate == pytest.approx(estimate.estimate)
        assert (other.interval.low, other.interval.high) == pytest.approx(
            (estimate.interval.low, estimate.interval.high)
        )


def test_paired_change_is_zero_for_the_same_predictions_and_the_difference_otherwise():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(50, 4))
    labels = rng.integers(0, 4, 50)
    before = per_image_severity(logits, labels, SMALL_DISTANCES, (1, 2))
    same = paired_change_with_intervals(before, before, num_boot=50)
    assert all(e.estimate == 0 and e.interval.low == e.interval.high == 0 for e in same.values())
    shuffled = per_image_severity(rng.normal(size=(50, 4)), labels, SMALL_DISTANCES, (1, 2))
    change = paired_change_with_intervals(before, shuffled, num_boot=50)
    for name in ("top1_error", "hdist@2"):
        assert change[name].estimate == pytest.approx(shuffled.metrics()[name] - before.metrics()[name])


@pytest.mark.slow
def test_top1_error_intervals_cover_the_true_rate():
    """95 % basic intervals of the top-1 error contain the population error rate near their nominal rate."""
    rng = np.random.default_rng(11)
    truth, n, covered, trials = 0.3, 150, 0, 120
    for _ in range(trials):
        labels = np.zeros(n, dtype=np.int64)
        wrong = rng.random(n) < truth
        logits = np.zeros((n, 4))
        logits[~wrong, 0] = 1.0
        logits[wrong, 3] = 1.0
        estimate = severity_with_intervals(logits, labels, SMALL_DISTANCES, (1,), num_boot=100, seed=1)
        covered += estimate.estimates["top1_error"].interval.contains(truth)
    assert 0.88 <= covered / trials <= 0.99


@pytest.mark.parametrize(
    ("logits", "labels", "message"),
    [
        (np.zeros((2, 3)), np.array([0, 1]), "distance matrix must be 3×3"),
        (np.zeros((2, 4)), np.array([0, 4]), "out of range"),
        (np.array([[0.0, np.nan, 0, 0], [0, 0, 0, 0]]), np.array([0, 1]), r"not finite in row\(s\) \[0\]"),
        (np.zeros((2, 4)), np.array([0.0, 1.0]), "integer class indices"),
        (np.zeros((0, 4)), np.zeros(0, dtype=int), "non-empty"),
    ],
)
def test_bad_input_is_a_clear_error(logits, labels, message):
    with pytest.raises(ValueError, match=message):
        severity_metrics(logits, labels, SMALL_DISTANCES, ks=(1,))


def test_k_beyond_the_classes_is_refused():
    with pytest.raises(ValueError, match="every k must lie in 1 … 4"):
        severity_metrics(np.zeros((1, 4)), np.array([0]), SMALL_DISTANCES, ks=(1, 5))


# -- EfficientNet-Lite0 on real photos, and the command line ---------------------------------------------

PHOTO_CLASSES = {  # photo: the ImageNet-1k class a person would give it (WordNet id)
    "chelsea": "n02123045",  # tabby
    "coffee": "n07920052",  # espresso
    "rocket": "n03773504",  # missile
    "motorcycle": "n03785016",  # moped (ImageNet-1k has no motorcycle)
    "china": "n03877845",  # palace
    "flower": "n11939491",  # daisy
    "grace_hopper": "n03763968",  # military uniform
}


def photo_pixels(name: str) -> np.ndarray:
    """A real photo that ships with scikit-image, scikit-learn or matplotlib, as a writable H×W×3 uint8."""
    return np.array(_photo(name), dtype=np.uint8)


def _photo(name: str) -> np.ndarray:
    from skimage import data

    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_images

        china, flower = load_sample_images().images
        return china if name == "china" else flower
    if name == "grace_hopper":
        import matplotlib.cbook as cbook
        from PIL import Image

        with cbook.get_sample_data("grace_hopper.jpg") as handle:
            return np.asarray(Image.open(handle).convert("RGB"))
    if name == "motorcycle":
        return data.stereo_motorcycle()[0]
    return getattr(data, name)()


def write_photos(root: Path, names: list[str]) -> tuple[Path, Path]:
    """The named photos as PNGs in root/photos and a labels CSV (with a header) beside the folder."""
    from PIL import Image

    folder = root / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["file,label"]
    for name in names:
        Image.fromarray(photo_pixels(name)).save(folder / f"{name}.png")
        lines.append(f"{name}.png,{PHOTO_CLASSES[name]}")
    labels = root / "labels.csv"
    labels.write_text("\n".join(lines) + "\n")
    return folder, labels


@pytest.fixture
def imagenet_hierarchy(shared_data: Path) -> Path:
    path = shared_data / "hierarchies" / "imagenet_isa.txt"
    if not path.is_file():
        pytest.skip(f"class hierarchy not found at {path}")
    return path


@pytest.mark.slow
def test_efficientnet_gets_real_photos_right_or_near(imagenet_hierarchy: Path, monkeypatch, tmp_path: Path):
    import feature_spaces

    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path / "cache"))
    hierarchy = Hierarchy.load(imagenet_hierarchy)
    distances = hierarchy.leaf_distances()
    extractor = feature_spaces.get("efficientnet-lite0-imagenet-logits").load("cpu")
    top1, ranks = {}, {}
    for name, wnid in PHOTO_CLASSES.items():
        image = torch.from_numpy(np.ascontiguousarray(photo_pixels(name))).permute(2, 0, 1)[None]
        logits = extractor(image).numpy()
        order = top_k(logits, 5)[0]
        label = hierarchy.leaf_index(wnid)
        top1[name] = distances[label, order[0]]
        ranks[name] = list(order).index(label) if label in order else None
    assert all(rank is not None for rank in ranks.values()), ranks  # the true class is always in the top 5
    easy = ["chelsea", "coffee", "motorcycle", "flower", "grace_hopper"]
    assert all(top1[name] <= 4 for name in easy), top1  # correct, or another domestic cat for the tabby
    assert sum(top1[name] == 0 for name in easy) >= 4


def run_cli(arguments: list[str], capsys) -> tuple[int, str, str]:
    from bench.cli import main

    status = main(arguments)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.slow
def test_severity_command_prints_metrics_with_intervals(imagenet_hierarchy, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path / "cache"))
    folder, labels = write_photos(tmp_path, ["chelsea", "coffee", "flower", "grace_hopper"])
    base = ["severity", str(folder), "--labels", str(labels), "--hierarchy", str(imagenet_hierarchy)]
    status, out, _ = run_cli([*base, "--space", "efficientnet-lite0-imagenet", "--bootstrap", "50"], capsys)
    assert status == 0
    assert "efficientnet-lite0-imagenet-logits on 4 labelled images" in out
    for title in (
        "top-1 error",
        "average mistake severity",
        *(f"hierarchical distance@{k}" for k in (1, 5, 20)),
    ):
        assert title in out
    status, out, _ = run_cli([*base, "--json", "--bootstrap", "50", "--k", "1,5"], capsys)
    document = json.loads(out)
    rows = {row["metric"]: row for row in document["results"]}
    assert set(rows) == {"top1_error", "mistake_severity", "hdist@1", "hdist@5"}
    assert document["images"] == 4 and rows["hdist@1"]["n"] == 4
    # One mistake among these four (the tabby is read as an Egyptian cat, LCA height 4).
    assert rows["top1_error"]["value"] == pytest.approx(0.25) and rows["mistake_severity"]["value"] == 4
    assert rows["mistake_severity"]["n"] == 1
    for row in rows.values():
        assert row["ci_low"] <= row["value"] <= row["ci_high"] and row["ci_method"].startswith("basic")


def test_severity_command_errors_are_one_line(imagenet_hierarchy, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path / "cache"))
    folder, labels = write_photos(tmp_path, ["coffee"])
    bad = tmp_path / "bad.csv"
    bad.write_text("coffee.png,n99999999\n")
    base = ["severity", str(folder), "--hierarchy", str(imagenet_hierarchy)]
    cases = {
        "labels are not classes": [*base, "--labels", str(bad)],
        "no image of": [*base],  # folder-per-class labels, but the photo sits at the top level
        "exposes no class logits": [*base, "--labels", str(labels), "--space", "pixels-randproj"],
        "labels file not found": [*base, "--labels", str(tmp_path / "missing.csv")],
        "--k needs whole numbers": [*base, "--labels", str(labels), "--k", "0"],
    }
    for message, arguments in cases.items():
        status, _, err = run_cli(arguments, capsys)
        assert status == 2 and message in err and err.count("\n") == 1, (message, err)
