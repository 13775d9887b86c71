"""Targeted semantic attack: target sets, PGD against a closed form, and EfficientNet-Lite0 on real photos."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bench.errors import UserError
from bench.probes.semantic_attack import (
    SemanticAttackConfig,
    attack_predictions,
    differentiable_classifier,
    pgd_toward,
    run_semantic_attack,
    target_sets,
)
from tests.test_hierarchy import SMALL_DISTANCES


def test_target_sets_nearest_by_hand_and_random_seeded():
    labels = np.array([3, 0])  # tabby, dog (sorted leaves: dog, plant, siamese, tabby)
    nearest = target_sets(labels, SMALL_DISTANCES, 2, "nearest", np.random.default_rng(0))
    assert nearest.tolist() == [[2, 0], [2, 3]]  # tabby: siamese (1), dog (2); dog: siamese, tabby (2, 2)
    first = target_sets(labels, SMALL_DISTANCES, 3, "random", np.random.default_rng(5))
    again = target_sets(labels, SMALL_DISTANCES, 3, "random", np.random.default_rng(5))
    assert np.array_equal(first, again)
    for row, label in zip(first, labels, strict=True):
        assert len(set(row)) == 3 and label not in row
    with pytest.raises(ValueError, match="target mode"):
        target_sets(labels, SMALL_DISTANCES, 1, "far", np.random.default_rng(0))


def linear_classifier(weights: torch.Tensor):
    """Logits W·x of flattened float pixels: for two classes the loss gradient has a constant sign."""
    return lambda pixels: pixels.flatten(1) @ weights.T


def test_pgd_reaches_the_closed_form_optimum_of_a_linear_two_class_model():
    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(2, 3 * 4 * 4, generator=generator) * 1e-3  # logits far from saturating the softmax
    images = torch.randint(60, 190, (3, 3, 4, 4), generator=generator, dtype=torch.uint8)
    targets = torch.ones(3, 1, dtype=torch.long)  # push every image to class 1
    epsilon = 8.0
    start = torch.rand(images.shape, generator=generator) * 2 - 1
    for initial in (None, start):
        adversarial = pgd_toward(
            linear_classifier(weights), images, targets, epsilon, 10, 2.5 * epsilon / 10, initial
        )
        # The loss log(1 + exp(z0 − z1)) falls fastest along −sign(w0 − w1); the ε-ball's corner is optimal.
        optimum = images.float() - epsilon * torch.sign(weights[0] - weights[1]).reshape(1, 3, 4, 4)
        torch.testing.assert_close(adversarial, optimum.expand_as(adversarial))
    assert torch.equal(pgd_toward(linear_classifier(weights), images, targets, 0.0, 10, 1.0), images.float())


def test_pgd_stays_in_the_ball_and_the_pixel_range():
    generator = torch.Generator().manual_seed(1)
    weights = torch.randn(5, 3 * 6 * 6, generator=generator)
    images = torch.randint(0, 256, (4, 3, 6, 6), generator=generator, dtype=torch.uint8)
    targets = torch.tensor([[1, 2], [0, 3], [4, 1], [2, 0]])
    adversarial = pgd_toward(linear_classifier(weights), images, targets, 3.0, 7, 1.1)
    assert (adversarial - images.float()).abs().max() <= 3.0 + 1e-5
    assert adversarial.min() >= 0 and adversarial.max() <= 255


def test_attack_does_not_depend_on_the_batch_size():
    generator = torch.Generator().manual_seed(2)
    weights = torch.randn(4, 3 * 5 * 5, generator=generator)
    images = torch.randint(0, 256, (5, 3, 5, 5), generator=generator, dtype=torch.uint8)
    labels = np.array([0, 1, 2, 3, 0])
    outcomes = {}
    for batch_size in (1, 2, 5):
        config = SemanticAttackConfig(epsilons=[0.0, 2.0, 6.0], steps=3, k=2, batch_size=batch_size, seed=3)
        found = attack_predictions(linear_classifier(weights), images, labels, SMALL_DISTANCES, config, "cpu")
        outcomes[batch_size] = [
            (o.mode, o.epsilon, o.predictions.tolist(), o.targets.tolist()) for o in found
        ]
    assert outcomes[1] == outcomes[2] == outcomes[5]


def test_only_differentiable_spaces_are_attacked():
    import feature_spaces

    clean_resize = feature_spaces.get("inception-fid-clean").spec
    with pytest.raises(UserError, match="not differentiable"):
        differentiable_classifier(SimpleNamespace(spec=clean_resize, model=torch.nn.Identity()))
    with pytest.raises(UserError, match="no torch model"):
        differentiable_classifier(SimpleNamespace(spec=clean_resize, model=None))


@pytest.fixture
def photos(tmp_path: Path, shared_data: Path) -> tuple[Path, Path, Path]:
    """Four real photos (scikit-image, scikit-learn, matplotlib samples) with their ImageNet classes."""
    from tests.test_severity import write_photos

    hierarchy = shared_data / "hierarchies" / "imagenet_isa.txt"
    if not hierarchy.is_file():
        pytest.skip(f"class hierarchy not found at {hierarchy}")
    folder, labels = write_photos(tmp_path, ["chelsea", "coffee", "grace_hopper", "flower"])
    return folder, labels, hierarchy


@pytest.mark.slow
def test_nearest_targets_succeed_more_with_epsilon_and_err_less_severely(photos, monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: one thread is fastest on shared cores
    try:
        attack_and_check(photos, monkeypatch)
    finally:
        torch.set_num_threads(threads)


def attack_and_check(photos, monkeypatch):
    monkeypatch.setenv("FDBENCH_CACHE", str(photos[0].parent / "cache"))
    folder, labels, hierarchy = photos
    config = SemanticAttackConfig(
        source=str(folder),
        labels=str(labels),
        hierarchy=str(hierarchy),
        space="efficientnet-lite0-imagenet",
        epsilons=[0.0, 0.25, 8.0],
        steps=5,
        bootstrap=50,
        device="cpu",
    )
    results = run_semantic_attack(config).results
    table = results.set_index(["variant", "level", "metric"])["value"]
    success = [table[("nearest", epsilon, "success_rate")] for epsilon in config.epsilons]
    assert success[0] <= success[1] <= success[2] and success[2] > success[0]
    assert success[2] == 1.0  # ε = 8 of 255 moves every one of these photos into its nearby target set
    # Nearby classes are the easier targets, and the mistakes they induce are the milder ones.
    assert all(
        table[("random", e, "success_rate")] <= table[("nearest", e, "success_rate")] for e in config.epsilons
    )
    near = table[("nearest", 8.0, "mistake_severity")]
    far = table[("random", 8.0, "mistake_severity")]
    assert near < far - 1
    assert table[("random-nearest", 8.0, "severity_gap")] == pytest.approx(far - near)
