"""Class-histogram resampling (METHODS §10): on a planted class imbalance the learned weights match the
reference histogram (closed form), the matched draw's FD drops with a paired interval below zero, and the
experiment runs end to end on real weights through `fdbench resample`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import feature_spaces as fs
from bench.experiments.class_resampling import (
    MATCHED,
    RANDOM,
    ClassResamplingConfig,
    draw_sets,
    fd_before_after,
    learn_log_weights,
    run_class_resampling,
    top1_histogram,
    total_variation,
)
from bench.metrics import frechet_distance

UTKFACE = "faces/utkface200_crop_part1"


def planted(seed: int = 0) -> dict[str, np.ndarray]:
    """Five classes with distinct feature means; the reference is balanced, the candidates are not."""
    rng = np.random.default_rng(seed)
    classes, d = 5, 8
    centres = rng.standard_normal((classes, d)) * 3.0
    reference_labels = rng.integers(0, classes, 400)
    candidate_labels = rng.choice(classes, 1000, p=[0.5, 0.25, 0.12, 0.08, 0.05])
    return {
        "reference_labels": reference_labels,
        "reference": centres[reference_labels] + rng.standard_normal((400, d)),
        "candidate_labels": candidate_labels,
        "candidates": centres[candidate_labels] + rng.standard_normal((1000, d)),
    }


def test_learned_weights_match_the_closed_form() -> None:
    """The optimum weights a candidate of class c by t_c / count_c: equal within a class, and the
    weighted histogram equals the target."""
    data = planted()
    target = top1_histogram(data["reference_labels"], 5)
    weights = learn_log_weights(data["candidate_labels"], target, steps=400)
    counts = np.bincount(data["candidate_labels"], minlength=5)
    np.testing.assert_allclose(
        weights, target[data["candidate_labels"]] / counts[data["candidate_labels"]], rtol=2e-3
    )
    assert total_variation(top1_histogram(data["candidate_labels"], 5, weights), target) < 1e-3
    assert (
        total_variation(top1_histogram(data["candidate_labels"], 5), target) > 0.25
    )  # the planted imbalance


def test_unreachable_classes_leave_their_mass_as_the_floor() -> None:
    target = np.array([0.3, 0.3, 0.4])  # class 2 has no candidate
    labels = np.array([0, 0, 0, 1])
    weights = learn_log_weights(labels, target, steps=300)
    np.testing.assert_allclose(top1_histogram(labels, 3, weights), [0.5, 0.5, 0.0], atol=2e-3)
    assert total_variation(top1_histogram(labels, 3, weights), target) == pytest.approx(0.4, abs=2e-3)


def test_draws_are_seeded_and_without_replacement() -> None:
    weights = np.full(50, 1 / 50)
    first, second = draw_sets(weights, 20, seed=3), draw_sets(weights, 20, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert all(len(np.unique(indices)) == 20 for indices in first)
    with pytest.raises(ValueError, match="without replacement"):
        draw_sets(weights, 51, seed=0)


def test_matching_the_histogram_lowers_fd_with_a_paired_interval() -> None:
    data = planted()
    target = top1_histogram(data["reference_labels"], 5)
    weights = learn_log_weights(data["candidate_labels"], target)
    random_rows, matched_rows = draw_sets(weights, 150, seed=0)
    random_tv = total_variation(top1_histogram(data["candidate_labels"][random_rows], 5), target)
    matched_tv = total_variation(top1_histogram(data["candidate_labels"][matched_rows], 5), target)
    assert matched_tv < 0.5 * random_tv
    random_set, matched_set = data["candidates"][random_rows], data["candidates"][matched_rows]
    estimates = fd_before_after(data["reference"], random_set, matched_set, num_boot=100, seed=0)
    assert estimates["fd_random"].estimate == pytest.approx(
        frechet_distance(data["reference"], random_set).value
    )
    assert estimates["fd_matched"].estimate == pytest.approx(
        frechet_distance(data["reference"], matched_set).value
    )
    change = estimates["fd_change"]
    assert change.estimate == pytest.approx(
        estimates["fd_matched"].estimate - estimates["fd_random"].estimate
    )
    assert change.interval.high < 0  # the drop is not noise at this n
    assert estimates["fd_explained"].estimate > 0.5
    for estimate in estimates.values():
        assert estimate.interval.low <= estimate.estimate <= estimate.interval.high


def test_too_few_candidates_are_refused(tmp_path: Path) -> None:
    config = ClassResamplingConfig(
        reference="dcgan-faces:count=10,seed=1", candidates="dcgan-faces:count=30,seed=0"
    )
    config.size = 10
    with pytest.raises(ValueError, match="at least 5 × N candidates"):
        run_class_resampling(config)
    with pytest.raises(ValueError, match="size"):
        ClassResamplingConfig(size=1)


@pytest.mark.slow
def test_resample_command_on_real_faces(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`fdbench resample`: dcgan faces as candidates against real photographs, EfficientNet-Lite0 logits
    as the classifier, FD in its logit space. Every FD row is paired (same n) and carries an interval
    holding its estimate; the weighted histogram is at least as close to the reference as a random draw."""
    from bench.cli import main

    if not fs.get("efficientnet-lite0-imagenet").availability().ok:
        pytest.skip("efficientnet-lite0-imagenet cannot load here")
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path / "cache"))
    reference = tmp_path / "reference"
    reference.mkdir()
    for path in sorted((shared_data / UTKFACE).glob("*.jpg"))[:12]:
        (reference / path.name).symlink_to(path)
    out = tmp_path / "out"
    arguments = ["resample", "dcgan-faces:count=60,seed=0", "--reference", str(reference), "--out", str(out)]
    logits = "efficientnet-lite0-imagenet-logits"  # the classifier's own space: one network pass per image
    assert main([*arguments, "--spaces", logits, "--bootstrap", "30", "--quiet"]) == 0
    results = pd.read_csv(out / "results.csv")
    tv = results[results["metric"] == "top1_histogram_tv"].set_index("variant")["value"]
    assert tv["weighted"] <= tv[RANDOM] + 1e-9
    fd = results[results["metric"] == "fd"].set_index("variant")
    assert set(fd.index) == {RANDOM, MATCHED} and set(fd["n"]) == {12}
    assert ((fd["ci_low"] <= fd["value"]) & (fd["value"] <= fd["ci_high"])).all()
    assert (out / "report.html").is_file()
