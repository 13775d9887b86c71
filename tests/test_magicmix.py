"""MagicMix on a tiny randomly initialised Stable Diffusion pipeline built from configs: every step's
arithmetic (noise levels, layout mixing, guidance, the DDIM update) against float64 formulas, and the
hybrid probe end to end. Image quality is not the point; no pretrained weights exist here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from bench.errors import UserError
from bench.probes.magicmix import MagicMix, MagicMixConfig, MagicMixSchedule, run_hybrid_probe

PROMPT = "a photo of a cat"
TRAIN_STEPS = 1000


def tiny_tokenizer(folder: Path) -> CLIPTokenizer:
    """A CLIP BPE tokenizer over single letters (no merges), written to `folder`."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "!": 1, "<|endoftext|>": 2}
    for suffix in ("", "</w>"):
        for letter in letters:
            vocab[letter + suffix] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16, pad_token="!"
    )


def tiny_pipeline(folder: Path) -> MagicMix:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    vae = AutoencoderKL(
        block_out_channels=[16, 32],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        norm_num_groups=16,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            pad_token_id=1,
            eos_token_id=2,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=64,
            max_position_embeddings=16,
        )
    )
    # Stable Diffusion's scheduler settings (scaled-linear βs, "leading" spacing with offset 1).
    scheduler = DDIMScheduler(
        num_train_timesteps=TRAIN_STEPS,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return MagicMix(unet, vae, text, tiny_tokenizer(folder), scheduler, device="cpu")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks are many small kernels: one thread avoids the synchronisation cost of shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> MagicMix:
    return tiny_pipeline(tmp_path_factory.mktemp("tokenizer"))


def layout_images(count: int = 2, side: int = 32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    return torch.randint(0, 256, (count, 3, side, side), generator=generator, dtype=torch.uint8)


def test_schedule_indices_and_validation():
    schedule = MagicMixSchedule()
    assert (schedule.steps, schedule.kmin, schedule.kmax, schedule.mix_factor, schedule.guidance) == (
        50,
        0.3,
        0.6,
        0.5,
        7.5,
    )
    assert (schedule.first_step, schedule.content_step) == (20, 35)  # 30 denoising steps: 15 + 15
    assert schedule.phase(34) == "layout" and schedule.phase(35) == "content"
    with pytest.raises(ValueError, match="kmin < kmax"):
        MagicMixSchedule(kmin=0.6, kmax=0.3)
    with pytest.raises(ValueError, match="mix factor"):
        MagicMixSchedule(mix_factor=1.5)


def test_every_step_follows_the_magicmix_arithmetic(pipeline: MagicMix):
    schedule, seed, images = MagicMixSchedule(), 3, layout_images()
    captured: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def record(module, args, kwargs, output):
        captured.append((args[0].clone(), kwargs["encoder_hidden_states"].clone(), output.sample.clone()))

    handle = pipeline.unet.register_forward_hook(record, with_kwargs=True)
    trace = []
    try:
        hybrids = pipeline.mix(images, PROMPT, schedule, seed=seed, trace=trace)
    finally:
        handle.remove()

    # Independent ingredients, in float64: the VAE latents, the seeded noise, the scheduler's ᾱ.
    vae = pipeline.vae
    with torch.no_grad():
        x0 = (vae.encode(images.float() / 127.5 - 1).latent_dist.mean * 0.18215).double()
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed)).double()
    alpha_bar = pipeline.scheduler.alphas_cumprod.double()
    stride = TRAIN_STEPS // schedule.steps

    def noised(t: int) -> torch.Tensor:
        return alpha_bar[t].sqrt() * x0 + (1 - alpha_bar[t]).sqrt() * noise

    assert len(trace) == len(captured) == 30
    # DDIM "leading" timesteps with offset 1: t_i = (steps − 1 − i)·stride + 1.
    assert [record.timestep for record in trace] == [(49 - i) * stride + 1 for i in range(20, 50)]
    assert trace[0].timestep == 581 and trace[15].timestep == 281  # the kmax and kmin noise levels
    assert [record.phase for record in trace] == ["layout"] * 15 + ["content"] * 15

    with torch.no_grad():
        tokens = pipeline.tokenizer(["", PROMPT], padding="max_length", max_length=16, return_tensors="pt")
        embedded = pipeline.text_encoder(tokens.input_ids)[0]
    previous = noised(trace[0].timestep)
    for record, (unet_input, conditioning, predicted) in zip(trace, captured, strict=True):
        t = record.timestep
        expected_input = 0.5 * previous + 0.5 * noised(t) if record.phase == "layout" else previous
        torch.testing.assert_close(unet_input.double(), torch.cat([expected_input] * 2), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(conditioning[:2], embedded[:1].expand(2, -1, -1))
        torch.testing.assert_close(conditioning[2:], embedded[1:].expand(2, -1, -1))
        unconditional, text = predicted.double().chunk(2)
        guided = unconditional + 7.5 * (text - unconditional)
        torch.testing.assert_close(record.noise.double(), guided, rtol=1e-5, atol=1e-5)
        # One deterministic DDIM step (η = 0) from the guided noise.
        prior = alpha_bar[t - stride] if t - stride >= 0 else alpha_bar[0]
        z = expected_input
        x0_hat = (z - (1 - alpha_bar[t]).sqrt() * guided) / alpha_bar[t].sqrt()
        expected = prior.sqrt() * x0_hat + (1 - prior).sqrt() * guided
        torch.testing.assert_close(record.latents.double(), expected, rtol=1e-4, atol=1e-4)
        previous = expected
    with torch.no_grad():
        decoded = vae.decode(trace[-1].latents / 0.18215).sample
    expected_images = ((decoded.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    assert hybrids.dtype == torch.uint8 and hybrids.shape == images.shape
    assert (hybrids.int() - expected_images.int()).abs().max() <= 1


def test_seeded_and_the_mix_factor_matters(pipeline: MagicMix):
    images = layout_images()
    short = MagicMixSchedule(steps=10)
    first = pipeline.mix(images, PROMPT, short, seed=1)
    assert torch.equal(first, pipeline.mix(images, PROMPT, short, seed=1))
    assert not torch.equal(first, pipeline.mix(images, PROMPT, short, seed=2))
    trace_keep, trace_free = [], []
    pipeline.mix(images, PROMPT, MagicMixSchedule(steps=10, mix_factor=0.0), seed=1, trace=trace_keep)
    pipeline.mix(images, PROMPT, MagicMixSchedule(steps=10, mix_factor=1.0), seed=1, trace=trace_free)
    # ν = 0 replaces the latents by the noised layout at every layout step; ν = 1 ignores the layout.
    for record in trace_keep[
        : MagicMixSchedule(steps=10).content_step - MagicMixSchedule(steps=10).first_step
    ]:
        torch.testing.assert_close(record.unet_input, record.layout_noised)
    assert not torch.allclose(trace_free[1].unet_input, trace_free[1].layout_noised)


def test_loads_a_saved_folder_and_refuses_an_incomplete_one(pipeline: MagicMix, tmp_path: Path):
    folder = tmp_path / "tiny-sd"
    for part, component in (
        ("unet", pipeline.unet),
        ("vae", pipeline.vae),
        ("text_encoder", pipeline.text_encoder),
        ("tokenizer", pipeline.tokenizer),
        ("scheduler", pipeline.scheduler),
    ):
        component.save_pretrained(folder / part)
    loaded = MagicMix.from_pretrained(folder, device="cpu")
    images, short = layout_images(1), MagicMixSchedule(steps=10)
    assert torch.equal(loaded.mix(images, PROMPT, short, seed=4), pipeline.mix(images, PROMPT, short, seed=4))
    (folder / "vae" / "config.json").unlink()
    for leftover in (folder / "vae").iterdir():
        leftover.unlink()
    (folder / "vae").rmdir()
    with pytest.raises(UserError, match="missing: vae"):
        MagicMix.from_pretrained(folder)


@pytest.mark.slow
def test_hybrid_probe_end_to_end(pipeline: MagicMix, shared_data: Path, tmp_path: Path, monkeypatch):
    """Two real photo classes (two views each) mixed both ways; the real classifier reads the hybrids and
    every space gives an FD to both parent classes."""
    from PIL import Image
    from skimage import data as skdata

    hierarchy = shared_data / "hierarchies" / "imagenet_isa.txt"
    if not hierarchy.is_file():
        pytest.skip(f"class hierarchy not found at {hierarchy}")
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path / "cache"))
    photos = {"n02123045": skdata.chelsea(), "n07920052": skdata.coffee()}  # tabby, espresso
    for wnid, pixels in photos.items():
        (tmp_path / "images" / wnid).mkdir(parents=True)
        Image.fromarray(pixels).save(tmp_path / "images" / wnid / "full.png")
        Image.fromarray(np.ascontiguousarray(pixels[:, ::-1])).save(
            tmp_path / "images" / wnid / "mirrored.png"
        )
    config = MagicMixConfig(
        source=str(tmp_path / "images"),
        hierarchy=str(hierarchy),
        spaces=["pixels-randproj", "no-such-space"],
        size=32,
        steps=10,
        device="cpu",
    )
    output = run_hybrid_probe(config, pipeline=pipeline)
    table = output.results
    assert any("no-such-space" in note for note in output.notes)
    assert set(table["variant"]) == {"n02123045+n07920052", "n07920052+n02123045"}
    for _, block in table.groupby("variant"):
        reads = block[block["metric"].str.startswith("read_as_")]
        assert reads["value"].sum() == pytest.approx(1.0) and set(reads["n"]) == {2}
        assert set(block["level"]) == {15.0}  # a tabby and an espresso meet only at the root (height 15)
        fds = block[block["space"] == "pixels-randproj"]
        assert set(fds["metric"]) == {"fd_to_layout", "fd_to_content"}
        assert (fds["value"] >= 0).all()
