"""CMMD (METHODS §9): both estimators against a float64 brute force, their closed forms and properties, and
the clip-vit-l14-336 space built from a randomly initialised ViT-L/14-336 in OpenAI's key layout."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.metrics.cmmd import CMMDResult, cmmd
from bench.stats import FeatureError


def brute_force(x: np.ndarray, y: np.ndarray, sigma: float = 10.0) -> tuple[float, float]:
    """Both estimators ×1000 from the full kernel matrices, float64, distances by explicit differences."""

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        squared = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
        return np.exp(-squared / (2.0 * sigma**2))

    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    m, n = len(x), len(y)
    biased = k_xx.mean() + k_yy.mean() - 2.0 * k_xy.mean()
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return 1000.0 * biased, 1000.0 * (within_x + within_y - 2.0 * k_xy.mean())


def unit_rows(rng: np.random.Generator, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    """L2-normalised Gaussian rows (CLIP embeddings are unit vectors), optionally shifted first."""
    x = rng.standard_normal((n, d))
    x[:, 0] += shift
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("block", [7, 2048])
def test_both_forms_equal_the_brute_force(block: int) -> None:
    rng = np.random.default_rng(0)
    x, y = unit_rows(rng, 45, 16), unit_rows(rng, 38, 16, shift=1.5)
    biased, unbiased = brute_force(x, y)
    result = cmmd(x, y, block=block)
    assert result.value == pytest.approx(biased, rel=1e-10)
    assert result.unbiased == pytest.approx(unbiased, rel=1e-10)
    assert (result.n1, result.n2, result.sigma, result.scale) == (45, 38, 10.0, 1000.0)


def test_unnormalised_features_and_another_bandwidth_match_the_brute_force() -> None:
    rng = np.random.default_rng(1)
    x, y = 4.0 * rng.standard_normal((30, 5)), 4.0 * rng.standard_normal((25, 5)) + 1.0
    biased, unbiased = brute_force(x, y, sigma=3.0)
    result = cmmd(x, y, sigma=3.0, block=8)
    assert result.value == pytest.approx(biased, rel=1e-10)
    assert result.unbiased == pytest.approx(unbiased, rel=1e-10)


def test_identical_sets_give_exactly_zero_and_the_closed_form_unbiased_value() -> None:
    rng = np.random.default_rng(2)
    x = unit_rows(rng, 60, 32)
    result = cmmd(x, x.copy(), block=16)
    assert result.value == 0.0  # exactly: the three kernel sums are the same numbers
    # U-statistic of a set against itself: 2 (ΣK − n) / (n (n−1)) − 2 ΣK / n² = −2 (n² − ΣK) / (n² (n − 1)).
    squared = ((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)
    total = np.exp(-squared / 200.0).sum()
    n = len(x)
    closed_form = -1000.0 * 2.0 * (n * n - total) / (n * n * (n - 1))
    assert closed_form < 0
    assert result.unbiased == pytest.approx(closed_form, rel=1e-9)


def test_two_samples_of_one_distribution_are_near_zero_and_a_shift_is_not() -> None:
    rng = np.random.default_rng(3)
    x, y, shifted = unit_rows(rng, 400, 24), unit_rows(rng, 400, 24), unit_rows(rng, 400, 24, shift=2.0)
    same, different = cmmd(x, y), cmmd(x, shifted)
    assert different.value > 1.0 and different.unbiased > 1.0
    assert abs(same.unbiased) < 0.02 * different.unbiased
    assert 0 < same.value < 0.05 * different.value  # the V-statistic keeps a positive O(1/n) bias


def test_set_order_does_not_matter() -> None:
    rng = np.random.default_rng(4)
    x, y = unit_rows(rng, 50, 8), unit_rows(rng, 40, 8, shift=0.5)
    result = cmmd(x, y, block=9)
    shuffled = cmmd(x[rng.permutation(50)], y[rng.permutation(40)], block=9)
    assert shuffled.value == pytest.approx(result.value, rel=1e-10)
    assert shuffled.unbiased == pytest.approx(result.unbiased, rel=1e-10)
    swapped = cmmd(y, x, block=9)
    assert swapped.value == pytest.approx(result.value, rel=1e-10)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(FeatureError, match="dimension mismatch"):
        cmmd(np.ones((3, 2)), np.ones((3, 4)))
    with pytest.raises(FeatureError, match="at least 2 samples"):
        cmmd(np.ones((1, 2)), np.ones((3, 2)))
    with pytest.raises(FeatureError, match="NaN"):
        cmmd(np.array([[np.nan, 0.0], [1.0, 1.0]]), np.ones((3, 2)))
    with pytest.raises(ValueError, match="sigma"):
        cmmd(np.eye(3), np.eye(3), sigma=0.0)


def test_result_serialises_to_plain_json() -> None:
    import json

    result = cmmd(np.eye(4), np.eye(4)[::-1] * 0.5)
    record = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert set(record) == {"cmmd", "cmmd_unbiased", "n1", "n2", "sigma", "scale"}
    assert isinstance(result, CMMDResult)


# ------------------------------------------------------------------------------- the CLIP ViT-L/14-336 space


@pytest.fixture
def weights_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FDBENCH_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FDBENCH_OFFLINE", "1")
    return tmp_path


def test_space_is_registered_with_the_cmmd_preprocessing_and_a_clear_offline_error(weights_dir: Path) -> None:
    import feature_spaces as fs

    space = fs.get("clip-vit-l14-336")
    prep = space.spec.preprocessing
    assert (space.spec.dim, prep.size, prep.crop, prep.resize) == (768, 336, "center", "bicubic-aa")
    assert prep.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert space.spec.weights[0].filename == "ViT-L-14-336px.pt"
    with pytest.raises(fs.MissingWeightsError, match=r"ViT-L-14-336px\.pt.*openaipublic"):
        space.load("cpu")


def test_preprocessing_matches_open_clips_own_transform() -> None:
    """Shorter side to 336, centre crop, CLIP mean/std: open_clip's eval transform on the PIL image agrees
    to resampling differences (PIL's bicubic kernel is not torch's); squashing without the crop would not."""
    import open_clip
    from PIL import Image
    from skimage import data as skdata

    import feature_spaces as fs

    image = skdata.astronaut()[:, 60:460]  # 512 × 400: the crop matters
    transform = open_clip.image_transform(
        336, is_train=False, mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD
    )
    theirs = transform(Image.fromarray(image))[None]
    ours = fs.preprocess(
        torch.from_numpy(image.copy()).permute(2, 0, 1)[None], fs.get("clip-vit-l14-336").spec.preprocessing
    )
    assert ours.shape == theirs.shape == (1, 3, 336, 336)
    assert float((ours - theirs).abs().mean()) < 0.02  # squashing the 512 × 400 image instead gives 0.6


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_openai_layout_of_vit_l14_336_rebuilds_as_that_architecture() -> None:
    """The loader builds whatever architecture a checkpoint's keys describe; for ViT-L-14-336's OpenAI
    layout that is a 336-px ViT-L/14 with a 768-d embedding (checked on the meta device: no weights)."""
    import open_clip
    from open_clip.model import build_model_from_openai_state_dict

    with torch.device("meta"):
        reference = open_clip.create_model(
            "ViT-L-14-336", pretrained=None, force_quick_gelu=True, device="meta"
        )
        rebuilt = build_model_from_openai_state_dict(
            dict(reference.state_dict()), quick_gelu=True, cast_dtype=None
        )
    shapes = {key: tuple(value.shape) for key, value in rebuilt.state_dict().items()}
    assert shapes == {key: tuple(value.shape) for key, value in reference.state_dict().items()}
    assert rebuilt.visual.image_size == (336, 336) and rebuilt.visual.output_dim == 768
    assert shapes["visual.conv1.weight"] == (1024, 3, 14, 14)  # ViT-L: width 1024, 14-px patches


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.load, tried first for OpenAI's archives
def test_space_gives_the_models_unit_embeddings(weights_dir: Path) -> None:
    """A randomly initialised CLIP in OpenAI's key layout (a small ViT at 336 px with a 768-d embedding, so
    the test runs in seconds; the loader reads the architecture from the keys) loads through the registry,
    and the space's features are the model's image embeddings of the declared preprocessing, L2-normalised."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    import feature_spaces as fs

    torch.manual_seed(0)
    vision = CLIPVisionCfg(layers=2, width=128, patch_size=14, image_size=336)
    text = CLIPTextCfg(context_length=77, vocab_size=49408, width=128, heads=2, layers=1)
    model = CLIP(embed_dim=768, vision_cfg=vision, text_cfg=text, quick_gelu=True).eval()
    state = {key: value.half() for key, value in model.state_dict().items()}  # OpenAI ships fp16
    torch.save(state, weights_dir / "ViT-L-14-336px.pt")
    model.load_state_dict({key: value.float() for key, value in state.items()})
    space = fs.get("clip-vit-l14-336")
    spec = dataclasses.replace(
        space.spec,
        name="test-clip-l14-336",
        weights=(dataclasses.replace(space.spec.weights[0], sha256=None),),
    )
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (2, 3, 300, 420), generator=generator, dtype=torch.uint8)
    try:
        features = fs.register(spec, space.loader).load("cpu")(images)
    finally:
        fs.unregister("test-clip-l14-336")
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(
            model.encode_image(fs.preprocess(images, spec.preprocessing)), dim=-1
        )
    assert features.shape == (2, 768)
    assert torch.allclose(features.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(features, expected, atol=1e-5)
    assert float((features[0] - features[1]).abs().max()) > 1e-3  # two images, two embeddings
