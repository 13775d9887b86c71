"""Targeted semantic attack (Abreu et al. 2022): can a small perturbation push a classifier to a *nearby*
class, and how severe are the mistakes it induces compared with pushing it to random classes?

For each image with true class y, PGD (Madry et al. 2018) minimises the cross-entropy towards a target set
T of k classes, −log Σ_{t∈T} softmax(z)_t, within an L∞ ball of radius ε around the image. T is either the
k classes semantically nearest to y (smallest LCA height, `bench.hierarchy`; ties by class index) or k
random classes other than y (seeded). Per ε and target mode the probe reports the success rate (top-1 in
T), the error rate (top-1 ≠ y) and the mistake severity (mean LCA height of predicted and true class over
the mistakes), each with a bootstrap interval over images, plus the paired gap in severity between
random and nearest targets at the same ε (same images in both).

Pixels: ε and the step size are on the 0–255 scale of the classifier's input image. Each image is first
resized as the space's preprocessing declares (so the attack perturbs exactly the pixels the network
sees), rounded to uint8, and attacked as float values in [0, 255]; adversarial images are classified
unrounded. Differentiable classifiers only: a space needs a torch model and a differentiable resize (not
PIL's "clean" resize, no uint8 rounding inside its preprocessing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from bench.device import resolve_device
from bench.errors import UserError
from bench.experiments.common import ExperimentOutput, ResultRow, results_frame
from bench.experiments.runner import register_experiment
from bench.experiments.severity_sweep import FOLDER_LABELS, LOGITS_SPACE, load_labelled_images, logits_space
from bench.hierarchy import Hierarchy, nearest_classes
from bench.metrics.bootstrap import bootstrap
from bench.perturbations import image_generator

EXPERIMENT = "semantic_attack"
TARGET_MODES = ("nearest", "random")
GAP_NOTE = "mistake severity of random minus nearest targets, on the same images"
Classifier = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class SemanticAttackConfig:
    """Settings of a semantic attack run (every field can be set from a TOML table)."""

    source: str = ""
    labels: str = FOLDER_LABELS
    hierarchy: str = ""
    space: str = LOGITS_SPACE
    epsilons: list[float] = field(default_factory=lambda: [0.0, 1.0, 2.0, 4.0, 8.0])  # L∞, 0–255 scale
    steps: int = 10
    step_factor: float = 2.5  # step size = step_factor · ε / steps (Madry et al.)
    k: int = 5  # classes in each target set
    random_start: bool = True
    bootstrap: int = 200
    seed: int = 0
    batch_size: int = 16
    device: str | None = None

    def __post_init__(self) -> None:
        if any(epsilon < 0 for epsilon in self.epsilons) or not self.epsilons:
            raise ValueError(f"epsilons must be ≥ 0 (0–255 pixel scale), got {self.epsilons}")
        if self.steps < 1 or self.k < 1:
            raise ValueError(f"steps and k must be ≥ 1, got steps={self.steps}, k={self.k}")


def differentiable_classifier(extractor) -> Classifier:
    """Logits of float images on the 0–255 scale through the space's own preprocessing, with gradients."""
    from feature_spaces.preprocess import normalize, resize_and_crop

    prep = extractor.spec.preprocessing
    name = extractor.spec.name
    if extractor.model is None:
        raise UserError(f"space {name} has no torch model; the attack needs gradients")
    if prep.resize == "clean" or prep.round_to_uint8:
        raise UserError(f"space {name}'s preprocessing is not differentiable (PIL resize or uint8 rounding)")
    model = extractor.model

    def classify(pixels: torch.Tensor) -> torch.Tensor:
        x = normalize(resize_and_crop(pixels, prep), prep)
        return model(x.contiguous(memory_format=torch.channels_last))

    return classify


def classifier_view(images: list[np.ndarray], extractor) -> torch.Tensor:
    """Each H×W×3 image resized and cropped as the space declares, rounded: a uint8 N×3×S×S batch."""
    from feature_spaces.preprocess import resize_and_crop

    prep = extractor.spec.preprocessing
    views = []
    for image in images:
        batch = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        views.append(resize_and_crop(batch, prep).round().clamp(0, 255).to(torch.uint8))
    sizes = {tuple(view.shape[-2:]) for view in views}
    if len(sizes) != 1:
        raise UserError(f"space {extractor.spec.name} does not resize to one size ({sorted(sizes)})")
    return torch.cat(views)


def target_sets(
    labels: np.ndarray, distances: np.ndarray, k: int, mode: str, rng: np.random.Generator
) -> np.ndarray:
    """(N, k) target classes per image: the k semantically nearest to its label, or k random others."""
    classes = len(distances)
    if not 1 <= k < classes:
        raise ValueError(f"k must lie in 1 … {classes - 1}, got {k}")
    if mode == "nearest":
        return np.stack([nearest_classes(distances, int(label), k) for label in labels])
    if mode == "random":
        others = [np.delete(np.arange(classes), label) for label in labels]
        return np.stack([rng.choice(choices, size=k, replace=False) for choices in others])
    raise ValueError(f"target mode must be one of {TARGET_MODES}, got {mode!r}")


def pgd_toward(
    classify: Classifier,
    images: torch.Tensor,
    targets: torch.Tensor,
    epsilon: float,
    steps: int,
    step_size: float,
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    """Float images within ε (L∞, 0–255) of `images` that minimise the cross-entropy towards `targets`.

    `targets` is (N, k): the loss is logsumexp(z) − logsumexp(z_T), i.e. −log of the probability mass on
    the target set. Each step moves every pixel by `step_size` against the gradient's sign, then projects
    back into the ε-ball and the valid pixel range. `start` (values in [−1, 1], scaled by ε) is the
    initial offset; None starts at the images themselves.
    """
    clean = images.float()
    if epsilon == 0:
        return clean.clone()
    delta = torch.zeros_like(clean) if start is None else start.to(clean) * epsilon
    delta = (clean + delta).clamp(0, 255) - clean
    for _ in range(steps):
        delta.requires_grad_(True)
        with torch.enable_grad():
            logits = classify(clean + delta)
            loss = (torch.logsumexp(logits, 1) - torch.logsumexp(logits.gather(1, targets), 1)).sum()
            (gradient,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() - step_size * gradient.sign()).clamp(-epsilon, epsilon)
        delta = (clean + delta).clamp(0, 255) - clean
    return (clean + delta).detach()


@dataclass(frozen=True)
class AttackOutcome:
    """Top-1 predictions of one (target mode, ε) attack, with the targets they were pushed to."""

    mode: str
    epsilon: float
    predictions: np.ndarray
    targets: np.ndarray


def random_starts(images: torch.Tensor, offset: int, seed: int) -> torch.Tensor:
    """Uniform [−1, 1] start offsets, image i of the stream drawn from its own seeded generator (so the
    attack does not depend on the batch size)."""
    return torch.stack(
        [
            torch.rand(images.shape[1:], generator=image_generator(EXPERIMENT, seed, offset + i)) * 2 - 1
            for i in range(images.shape[0])
        ]
    )


def attack_predictions(
    classify: Classifier,
    images: torch.Tensor,
    labels: np.ndarray,
    distances: np.ndarray,
    config: SemanticAttackConfig,
    device: torch.device,
) -> list[AttackOutcome]:
    """Run every (target mode, ε) attack on a uint8 batch; targets and random starts are seeded."""
    outcomes = []
    for mode_index, mode in enumerate(TARGET_MODES):
        rng = np.random.default_rng([config.seed, mode_index])
        targets = target_sets(labels, distances, config.k, mode, rng)
        for epsilon in config.epsilons:
            predictions = []
            for first in range(0, len(labels), config.batch_size):
                chunk = slice(first, first + config.batch_size)
                batch = images[chunk].to(device)
                wanted = torch.from_numpy(targets[chunk]).to(device)
                start = random_starts(batch, first, config.seed) if config.random_start else None
                step = config.step_factor * epsilon / config.steps
                adversarial = pgd_toward(classify, batch, wanted, epsilon, config.steps, step, start)
                with torch.no_grad():
                    predictions.append(classify(adversarial).argmax(1).cpu().numpy())
            outcomes.append(AttackOutcome(mode, float(epsilon), np.concatenate(predictions), targets))
    return outcomes


def outcome_statistic(
    outcome: AttackOutcome, labels: np.ndarray, distances: np.ndarray
) -> Callable[[np.ndarray], dict[str, float]]:
    """Success rate, error rate and mistake severity of an attack over a drawn set of image rows."""
    success = (outcome.targets == outcome.predictions[:, None]).any(axis=1)
    error = outcome.predictions != labels
    severity = distances[labels, outcome.predictions].astype(np.float64)

    def statistic(rows: np.ndarray) -> dict[str, float]:
        wrong = error[rows]
        return {
            "success_rate": float(success[rows].mean()),
            "error_rate": float(wrong.mean()),
            "mistake_severity": float(severity[rows][wrong].mean()) if wrong.any() else np.nan,
        }

    return statistic


def attack_rows(
    outcomes: list[AttackOutcome],
    labels: np.ndarray,
    distances: np.ndarray,
    space: str,
    config: SemanticAttackConfig,
) -> list[ResultRow]:
    """Result rows per (mode, ε), and the paired random − nearest severity gap per ε."""
    rows: list[ResultRow] = []
    groups = {"images": len(labels)}
    ceiling = float(distances.max())
    by_key = {(outcome.mode, outcome.epsilon): outcome for outcome in outcomes}
    for outcome in outcomes:
        statistic = outcome_statistic(outcome, labels, distances)
        estimates = bootstrap(
            lambda draw, statistic=statistic: statistic(draw["images"]),
            groups,
            num_boot=config.bootstrap,
            seed=config.seed,
        )
        mistakes = int((outcome.predictions != labels).sum())
        target_height = float(distances[labels[:, None], outcome.targets].mean())
        for metric, estimate in estimates.items():
            estimate = estimate.within(0.0, 1.0 if metric != "mistake_severity" else ceiling)
            n = mistakes if metric == "mistake_severity" else len(labels)
            notes = (f"k={config.k} {outcome.mode} targets, mean target LCA height {target_height:.2f}",)
            row = ResultRow(
                EXPERIMENT,
                space,
                metric,
                estimate.estimate,
                n,
                variant=outcome.mode,
                level=outcome.epsilon,
                diagnostics=notes,
            )
            rows.append(row.with_bootstrap(estimate))
    for epsilon in config.epsilons:
        near, far = by_key[("nearest", float(epsilon))], by_key[("random", float(epsilon))]
        near_stat = outcome_statistic(near, labels, distances)
        far_stat = outcome_statistic(far, labels, distances)

        def gap(draw: dict[str, np.ndarray], near_stat=near_stat, far_stat=far_stat) -> dict[str, float]:
            far_severity = far_stat(draw["images"])["mistake_severity"]
            return {"severity_gap": far_severity - near_stat(draw["images"])["mistake_severity"]}

        estimate = bootstrap(gap, groups, num_boot=config.bootstrap, seed=config.seed)["severity_gap"]
        estimate = estimate.within(-ceiling, ceiling)
        row = ResultRow(
            EXPERIMENT,
            space,
            "severity_gap",
            estimate.estimate,
            len(labels),
            variant="random-nearest",
            level=float(epsilon),
            diagnostics=(GAP_NOTE,),
        )
        rows.append(row.with_bootstrap(estimate))
    return rows


def run_semantic_attack(config: SemanticAttackConfig) -> ExperimentOutput:
    """Attack every labelled image towards nearest and random target sets at every ε."""
    import feature_spaces

    if not config.hierarchy:
        raise UserError("the semantic attack needs a class hierarchy (hierarchy = PATH)")
    hierarchy = Hierarchy.load(config.hierarchy)
    space = logits_space(config.space)
    device = resolve_device(config.device)
    extractor = feature_spaces.get(space).load(device)
    if extractor.dim != len(hierarchy.leaves):
        raise UserError(
            f"space {space} gives {extractor.dim} logits but {hierarchy.source} has "
            f"{len(hierarchy.leaves)} classes"
        )
    labelled = load_labelled_images(config.source, config.labels, hierarchy)
    images = classifier_view(labelled.images, extractor)
    distances = hierarchy.leaf_distances()
    classify = differentiable_classifier(extractor)
    outcomes = attack_predictions(classify, images, labelled.labels, distances, config, device)
    rows = attack_rows(outcomes, labelled.labels, distances, space, config)
    manifest = {"hierarchy": hierarchy.describe(), "images": len(labelled.ids), "config": asdict(config)}
    return ExperimentOutput(results_frame(rows), labelled.notes, manifest)


register_experiment(EXPERIMENT, SemanticAttackConfig, run_semantic_attack)
