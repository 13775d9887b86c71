"""Semantic class hybrids with MagicMix (Liew et al. 2022), as used by Abreu et al. 2023 to probe how a
classifier's classes align with their meaning.

MagicMix keeps the *layout* of an image of class A and paints the *content* of a prompt for class B with
a latent-diffusion model (Stable Diffusion components from `diffusers`). With T denoising steps
(DDIM timesteps t_0 > … > t_{T−1}), kmax and kmin fractions of noise and a mix factor ν:

1. encode the layout image to latents x₀, draw one noise ε and start from z = q(x₀, ε, t_s), the layout
   noised to step s = T − ⌊kmax·T⌋ (about kmax of the full noise level);
2. layout phase, steps s ≤ i < e = T − ⌊kmin·T⌋: mix z ← ν·z + (1 − ν)·q(x₀, ε, t_i) with the layout
   noised to the same level, then take one guided denoising step;
3. content phase, steps e ≤ i < T: guided denoising steps only;

where q(x₀, ε, t) = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε and a guided step predicts ε̂ = ε_u + g·(ε_c − ε_u) from the
unconditional (empty prompt) and the prompt-conditioned noise predictions. The same noise ε noises the
layout at every level. Defaults: kmin 0.3, kmax 0.6, ν 0.5, 50 steps, guidance 7.5.

The probe generates hybrids for class pairs chosen by their hierarchy distance (layout images of class A,
prompt "a photo of a B") and reports how the classifier reads them (as A, as B, as something else, and
the LCA heights of its predictions to A and B) and the FD in every space between each hybrid set and the
real images of A and of B. Stable Diffusion weights are the user's: `weights` names a local folder in
the diffusers layout (unet/, vae/, text_encoder/, tokenizer/, scheduler/); nothing is downloaded.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.device import resolve_device
from bench.errors import UserError
from bench.experiments.common import ExperimentOutput, ResultRow, results_frame
from bench.experiments.runner import register_experiment
from bench.experiments.severity_sweep import FOLDER_LABELS, LOGITS_SPACE, load_labelled_images, logits_space
from bench.hierarchy import Hierarchy
from bench.metrics import frechet_distance

EXPERIMENT = "magicmix"
LAYOUT, CONTENT = "layout", "content"
PROMPT_TEMPLATE = "a photo of a {}"
COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")  # sub-folders of a diffusers folder


@dataclass(frozen=True)
class MagicMixSchedule:
    """The MagicMix parameters: steps, the noise fractions kmin < kmax, mix factor ν, guidance scale."""

    steps: int = 50
    kmin: float = 0.3
    kmax: float = 0.6
    mix_factor: float = 0.5
    guidance: float = 7.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.kmin < self.kmax <= 1.0:
            raise ValueError(f"MagicMix needs 0 ≤ kmin < kmax ≤ 1, got kmin={self.kmin}, kmax={self.kmax}")
        if not 0.0 <= self.mix_factor <= 1.0 or self.steps < 1:
            raise ValueError(
                f"mix factor must lie in [0, 1] and steps ≥ 1, got {self.mix_factor}, {self.steps}"
            )

    @property
    def first_step(self) -> int:
        """Index of the first denoising step (the layout noised to about kmax)."""
        return self.steps - int(self.kmax * self.steps)

    @property
    def content_step(self) -> int:
        """Index of the first content-phase step (about kmin of the noise left)."""
        return self.steps - int(self.kmin * self.steps)

    def phase(self, index: int) -> str:
        """ "layout" or "content" for step `index` (≥ first_step)."""
        return LAYOUT if index < self.content_step else CONTENT


@dataclass
class StepRecord:
    """One denoising step of a mix, for inspection: what went into the UNet and what came out."""

    index: int
    timestep: int
    phase: str
    layout_noised: torch.Tensor | None  # q(x₀, ε, t) in the layout phase
    unet_input: torch.Tensor
    noise_unconditional: torch.Tensor
    noise_text: torch.Tensor
    noise: torch.Tensor  # the guided prediction
    latents: torch.Tensor  # after the scheduler step


class MagicMix:
    """MagicMix on Stable Diffusion components: a UNet2DConditionModel, an AutoencoderKL, a CLIP text
    encoder with its tokenizer and a DDIM scheduler."""

    def __init__(self, unet: Any, vae: Any, text_encoder: Any, tokenizer: Any, scheduler: Any, device=None):
        self.device = resolve_device(device)
        self.unet = unet.to(self.device).eval()
        self.vae = vae.to(self.device).eval()
        self.text_encoder = text_encoder.to(self.device).eval()
        self.tokenizer = tokenizer
        self.scheduler = scheduler

    @classmethod
    def from_pretrained(cls, folder: str | Path, device=None) -> MagicMix:
        """Load the components from a local folder in the diffusers layout (no download)."""
        try:
            from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
            from transformers import CLIPTextModel, CLIPTokenizer
        except ImportError as error:
            raise UserError(
                f"MagicMix needs diffusers and transformers (pip install 'fdbench[diffusion]'): {error}"
            ) from error
        root = Path(folder).expanduser()
        missing = [part for part in COMPONENTS if not (root / part).is_dir()]
        if missing:
            raise UserError(
                f"{root} is not a Stable Diffusion folder in the diffusers layout; "
                f"missing: {', '.join(missing)}"
            )
        local = {"local_files_only": True}
        return cls(
            UNet2DConditionModel.from_pretrained(root, subfolder="unet", **local),
            AutoencoderKL.from_pretrained(root, subfolder="vae", **local),
            CLIPTextModel.from_pretrained(root, subfolder="text_encoder", **local),
            CLIPTokenizer.from_pretrained(root, subfolder="tokenizer", **local),
            DDIMScheduler.from_pretrained(root, subfolder="scheduler", **local),
            device,
        )

    @torch.no_grad()
    def embed_prompts(self, prompts: list[str]) -> torch.Tensor:
        """CLIP text embeddings of prompts, padded to the tokenizer's length."""
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        return self.text_encoder(tokens.input_ids.to(self.device))[0]

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 N×3×H×W images → scaled latents (the mean of the VAE's posterior)."""
        x = images.to(self.device, torch.float32) / 127.5 - 1.0
        return self.vae.encode(x).latent_dist.mean * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents → uint8 N×3×H×W images."""
        x = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()

    def noised(self, latents: torch.Tensor, noise: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """q(x₀, ε, t): the latents noised to `timestep` with the scheduler's ᾱ."""
        return self.scheduler.add_noise(latents, noise, timestep.reshape(1))

    @torch.no_grad()
    def mix(
        self,
        layout: torch.Tensor,
        prompt: str,
        schedule: MagicMixSchedule | None = None,
        seed: int = 0,
        trace: list[StepRecord] | None = None,
    ) -> torch.Tensor:
        """Hybrids of uint8 N×3×H×W layout images with `prompt`'s content, as uint8 images.

        `seed` fixes the noise (one CPU generator, so the result does not depend on the device); a `trace`
        list receives one StepRecord per denoising step.
        """
        schedule = schedule or MagicMixSchedule()
        self.scheduler.set_timesteps(schedule.steps)
        timesteps = self.scheduler.timesteps
        layout_latents = self.encode(layout)
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(layout_latents.shape, generator=generator).to(self.device)
        embeddings = self.embed_prompts(["", prompt])
        count = layout_latents.shape[0]
        conditioning = torch.cat([embeddings[:1].expand(count, -1, -1), embeddings[1:].expand(count, -1, -1)])
        latents = self.noised(layout_latents, noise, timesteps[schedule.first_step])
        for index in range(schedule.first_step, schedule.steps):
            timestep = timesteps[index]
            phase = schedule.phase(index)
            layout_noised = None
            if phase == LAYOUT:
                layout_noised = self.noised(layout_latents, noise, timestep)
                latents = schedule.mix_factor * latents + (1.0 - schedule.mix_factor) * layout_noised
            unet_input = self.scheduler.scale_model_input(torch.cat([latents, latents]), timestep)
            predicted = self.unet(unet_input, timestep, encoder_hidden_states=conditioning).sample
            unconditional, text = predicted.chunk(2)
            guided = unconditional + schedule.guidance * (text - unconditional)
            following = self.scheduler.step(guided, timestep, latents).prev_sample
            if trace is not None:
                trace.append(
                    StepRecord(
                        index,
                        int(timestep),
                        phase,
                        layout_noised,
                        latents,
                        unconditional,
                        text,
                        guided,
                        following,
                    )
                )
            latents = following
        return self.decode(latents)


# -- the probe -------------------------------------------------------------------------------------------


@dataclass
class MagicMixConfig:
    """Settings of a hybrid probe (every field can be set from a TOML table)."""

    source: str = ""  # labelled real images: layouts and the real sets the hybrids are compared with
    labels: str = FOLDER_LABELS
    hierarchy: str = ""
    weights: str = ""  # local Stable Diffusion folder (diffusers layout)
    classifier: str = LOGITS_SPACE
    spaces: list[str] = field(default_factory=lambda: ["efficientnet-lite0-imagenet", "pixels-randproj"])
    pairs: list[list[str]] = field(default_factory=list)  # [layout class, content class]; empty: by distance
    names: str = ""  # CSV of class,name for prompts; empty: ImageNet-1k names when the classes are those
    size: int = 512  # side the layout images are resized to (a multiple of the VAE's factor)
    steps: int = 50
    kmin: float = 0.3
    kmax: float = 0.6
    mix_factor: float = 0.5
    guidance: float = 7.5
    seed: int = 0
    device: str | None = None

    def schedule(self) -> MagicMixSchedule:
        return MagicMixSchedule(self.steps, self.kmin, self.kmax, self.mix_factor, self.guidance)


def class_names(hierarchy: Hierarchy, names: str = "") -> list[str]:
    """A prompt name per class (sorted leaf order): from a CSV of class,name, or ImageNet-1k's names."""
    if names:
        table = {}
        for line in Path(names).read_text(encoding="utf-8").splitlines():
            wnid, _, name = line.partition(",")
            if name.strip():
                table[wnid.strip()] = name.strip()
        absent = [leaf for leaf in hierarchy.leaves if leaf not in table]
        if absent:
            raise UserError(f"{names} names no prompt for {len(absent)} classes (e.g. {absent[0]})")
        return [table[leaf] for leaf in hierarchy.leaves]
    from torchvision.models import ResNet50_Weights

    categories = list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])  # ImageNet-1k, sorted-wnid order
    if len(categories) != len(hierarchy.leaves):
        raise UserError(f"{hierarchy.source} is not ImageNet-1k: give class names with names = CSV")
    return categories


def pairs_by_distance(present: list[int], distances: np.ndarray) -> list[tuple[int, int]]:
    """For each class with images, the nearest and the farthest other class with images (ties by index)."""
    pairs = []
    for layout in present:
        others = [content for content in present if content != layout]
        if not others:
            continue
        ranked = sorted(others, key=lambda content: (distances[layout, content], content))
        pairs.append((layout, ranked[0]))
        if ranked[-1] != ranked[0]:
            pairs.append((layout, max(others, key=lambda content: (distances[layout, content], -content))))
    return pairs


def hybrid_rows(
    pipeline: MagicMix,
    images: torch.Tensor,
    labels: np.ndarray,
    hierarchy: Hierarchy,
    names: list[str],
    config: MagicMixConfig,
    pairs: list[tuple[int, int]],
) -> tuple[list[ResultRow], list[str]]:
    """Generate the hybrids of every pair; classifier confusion and FDs to both parents in every space."""
    import feature_spaces

    device = resolve_device(config.device)
    classifier = feature_spaces.get(logits_space(config.classifier)).load(device)
    extractors, notes = {}, []
    for space in config.spaces:
        try:
            extractors[space] = feature_spaces.get(space).load(device)
        except Exception as error:  # a space that cannot load is reported, the others go on
            notes.append(f"space {space} could not load and was left out: {error}")
    distances = hierarchy.leaf_distances()
    rows: list[ResultRow] = []
    for layout, content in pairs:
        chosen = np.flatnonzero(labels == layout)
        prompt = PROMPT_TEMPLATE.format(names[content])
        hybrids = pipeline.mix(images[chosen], prompt, config.schedule(), seed=config.seed)
        pair = HybridPair(
            f"{hierarchy.leaves[layout]}+{hierarchy.leaves[content]}", float(distances[layout, content])
        )
        predicted = classifier(hybrids).argmax(1).cpu().numpy()
        rows += pair.confusion_rows(classifier.spec.name, predicted, layout, content, distances)
        parents = {LAYOUT: images[chosen], CONTENT: images[np.flatnonzero(labels == content)]}
        for space, extractor in extractors.items():
            rows += pair.fd_rows(space, extractor, hybrids, parents)
    return rows, notes


@dataclass(frozen=True)
class HybridPair:
    """One (layout class, content class) pair: its label in the table and its LCA height."""

    name: str
    distance: float

    def row(self, space: str, metric: str, value: float, n: int, *notes: str) -> ResultRow:
        return ResultRow(
            EXPERIMENT, space, metric, value, n, variant=self.name, level=self.distance, diagnostics=notes
        )

    def confusion_rows(
        self, space: str, predicted: np.ndarray, layout: int, content: int, distances: np.ndarray
    ) -> list[ResultRow]:
        """How the classifier reads the hybrids: as the layout class, the content class, or another."""
        n = len(predicted)
        other = (predicted != layout) & (predicted != content)
        return [
            self.row(space, "read_as_layout", float(np.mean(predicted == layout)), n),
            self.row(space, "read_as_content", float(np.mean(predicted == content)), n),
            self.row(space, "read_as_other", float(np.mean(other)), n),
            self.row(space, "lca_to_layout", float(distances[layout, predicted].mean()), n),
            self.row(space, "lca_to_content", float(distances[content, predicted].mean()), n),
        ]

    def fd_rows(
        self, space: str, extractor: Any, hybrids: torch.Tensor, parents: dict[str, torch.Tensor]
    ) -> list[ResultRow]:
        """FD between the hybrids and the real images of each parent class in one space."""
        hybrid_features = extractor(hybrids).cpu().numpy().astype(np.float64)
        rows = []
        for parent, real_images in parents.items():
            real = extractor(real_images).cpu().numpy().astype(np.float64)
            detail = f"{len(hybrid_features)} hybrids vs {len(real)} real images"
            if min(len(real), len(hybrid_features)) < 2:
                rows.append(
                    self.row(space, f"fd_to_{parent}", math.nan, len(real), detail, "fewer than 2 images")
                )
                continue
            fd = frechet_distance(hybrid_features, real)
            rows.append(
                self.row(space, f"fd_to_{parent}", fd.value, min(len(real), len(hybrid_features)), detail)
            )
        return rows


def resized(images: list[np.ndarray], size: int) -> torch.Tensor:
    """H×W×3 images as one uint8 N×3×size×size batch (antialiased bicubic, as the classifier's resize)."""
    from feature_spaces.preprocess import resize_float

    batch = []
    for image in images:
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
        batch.append(resize_float(x, (size, size), "bicubic-aa").round().clamp(0, 255).to(torch.uint8))
    return torch.cat(batch)


def run_hybrid_probe(config: MagicMixConfig, pipeline: MagicMix | None = None) -> ExperimentOutput:
    """Hybrids for the configured (or distance-chosen) class pairs, and what the classifier and the
    feature spaces make of them."""
    if not config.hierarchy:
        raise UserError("the hybrid probe needs a class hierarchy (hierarchy = PATH)")
    hierarchy = Hierarchy.load(config.hierarchy)
    if pipeline is None:
        if not config.weights:
            raise UserError(
                "the hybrid probe needs Stable Diffusion weights: weights = FOLDER (diffusers layout)"
            )
        pipeline = MagicMix.from_pretrained(config.weights, config.device)
    labelled = load_labelled_images(config.source, config.labels, hierarchy)
    images = resized(labelled.images, config.size)
    distances = hierarchy.leaf_distances()
    if config.pairs:
        pairs = [(hierarchy.leaf_index(a), hierarchy.leaf_index(b)) for a, b in config.pairs]
    else:
        pairs = pairs_by_distance(sorted(set(labelled.labels.tolist())), distances)
    absent = [hierarchy.leaves[layout] for layout, _ in pairs if not (labelled.labels == layout).any()]
    if absent:
        raise UserError(f"no layout images of class(es) {', '.join(sorted(set(absent)))} in {config.source}")
    rows, notes = hybrid_rows(
        pipeline, images, labelled.labels, hierarchy, class_names(hierarchy, config.names), config, pairs
    )
    manifest = {"hierarchy": hierarchy.describe(), "images": len(labelled.ids), "config": asdict(config)}
    return ExperimentOutput(results_frame(rows), [*labelled.notes, *notes], manifest)


register_experiment(EXPERIMENT, MagicMixConfig, run_hybrid_probe)
