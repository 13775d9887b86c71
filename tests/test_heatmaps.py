"""FD sensitivity heatmaps (METHODS §10): a planted patch lights up where it is, the layer gradient is the
closed form for a pooled layer, maps do not depend on batching, ViT tokens become maps, and the region
agreement recovers planted rankings. Real weights: EfficientNet-Lite0 and AugNet; random weights in the
real loaders: the FID Inception (no weights offline) and a DINOv2 ViT."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import feature_spaces as fs
from bench.engine import EngineConfig
from bench.masks import CELEBAMASK_HQ
from bench.metrics.frechet_grad import MemberGradient
from bench.sensitivity.agreement import (
    RegionMass,
    agreement_rows,
    blur_nfd,
    region_mass,
    spearman,
)
from bench.sensitivity.capture import LayerCaptureError, as_spatial_map
from bench.sensitivity.heatmaps import (
    HeatmapError,
    heatmaps,
    input_box,
    min_max,
    prepare_heatmaps,
    to_image_frame,
)
from bench.sources import TensorSource
from bench.stats import GaussianStats
from feature_spaces import Preprocessing

UTKFACE = "faces/utkface200_crop_part1"
UTKFACE_MASKS = "face_masks/utkface200_crop_part1__pseudo_mediapipe"
NO_CACHE = EngineConfig(progress=False, cache=False)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path / "cache"))
    yield
    for name in fs.names():
        if name.startswith("test-"):
            fs.unregister(name)


def faces(shared_data: Path, count: int, size: int = 128, start: int = 0) -> torch.Tensor:
    files = sorted((shared_data / UTKFACE).glob("*.jpg"))[start : start + count]
    arrays = [
        np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)) for f in files
    ]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def with_patch(images: torch.Tensor, top: int, left: int, side: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, 256, (images.shape[0], 3, side, side), generator=generator, dtype=torch.uint8)
    patched = images.clone()
    patched[:, :, top : top + side, left : left + side] = noise
    return patched


# ------------------------------------------------------------------------------------------ geometry, layout


def test_tokens_become_patch_maps() -> None:
    tokens = torch.arange(2 * 17 * 3, dtype=torch.float32).reshape(2, 17, 3)  # CLS + a 4 × 4 grid
    grid = as_spatial_map(tokens, 2)
    assert grid.shape == (2, 3, 4, 4)
    assert torch.equal(grid[1, 2, 1, 3], tokens[1, 1 + 4 * 1 + 3, 2])  # row-major patches after CLS
    assert torch.equal(as_spatial_map(tokens.transpose(0, 1), 2), grid)  # sequence-first transformers
    with pytest.raises(LayerCaptureError, match="square"):
        as_spatial_map(torch.zeros(2, 24, 3), 2)  # 24 − k is no square for k < 8


def test_centre_crop_maps_back_to_the_central_square() -> None:
    prep = Preprocessing(size=224, resize="bicubic-aa", crop="center")
    assert input_box(300, 400, prep) == (0, 50, 300, 350)  # the central 300 × 300 square of a 300 × 400 image
    assert input_box(300, 400, Preprocessing(size=224)) == (0, 0, 300, 400)  # squashed: the whole image
    frame = to_image_frame(np.ones((7, 7), np.float32), 300, 400, prep)
    assert frame[:, :50].max() == 0 and frame[:, 350:].max() == 0 and frame[:, 50:350].min() > 0.99


def test_min_max_and_a_constant_map() -> None:
    assert np.allclose(min_max(np.array([[2.0, 4.0], [6.0, 10.0]])), [[0.0, 0.25], [0.5, 1.0]])
    assert not min_max(np.full((3, 3), 5.0)).any()


def test_a_space_without_a_spatial_layer_is_refused() -> None:
    with pytest.raises(HeatmapError, match=r"names no spatial layer.*efficientnet-lite0-imagenet"):
        prepare_heatmaps(
            TensorSource(torch.zeros(2, 3, 8, 8, dtype=torch.uint8)), "unused", "pixels-randproj"
        )


# ------------------------------------------------------------------------------------------ planted patch


@pytest.mark.slow
@pytest.mark.parametrize(
    ("space", "count"),
    [("efficientnet-lite0-imagenet", 32), pytest.param("augnet-r50", 16, marks=pytest.mark.slow)],
)
def test_a_planted_patch_gets_the_heatmap_mass(shared_data: Path, space: str, count: int) -> None:
    """The generated set is the reference with a noise patch pasted in one place: the heatmaps must put
    well over the patch's area share of their mass inside it (a uniform map puts exactly that share)."""
    if not fs.get(space).availability().ok:
        pytest.skip(f"{space} cannot load here: {fs.get(space).availability().reason}")
    reference = faces(shared_data, count)
    top, left, side = 8, 80, 40  # top right of a 128² image: 9.8 % of the pixels
    generated = with_patch(reference, top, left, side)
    prepared = prepare_heatmaps(TensorSource(generated), TensorSource(reference), space, NO_CACHE)
    maps = prepared.maps(generated[:8])
    assert maps.shape == (8, 128, 128) and maps.min() >= 0.0 and maps.max() <= 1.0
    inside = np.zeros((128, 128), dtype=bool)
    inside[top : top + side, left : left + side] = True
    ratio = maps[:, inside].sum(axis=1) / maps.sum(axis=(1, 2)) / inside.mean()
    assert ratio.mean() >= 1.5, ratio
    assert (maps[:, inside].mean(axis=1) > maps[:, ~inside].mean(axis=1)).mean() >= 0.85


# ------------------------------------------------------------------------------ random-weight ports


def unverified_copy(name: str) -> fs.FeatureSpace:
    space = fs.get(name)
    weights = tuple(dataclasses.replace(w, sha256=None) for w in space.spec.weights)
    return fs.register(dataclasses.replace(space.spec, name=f"test-{name}", weights=weights), space.loader)


@pytest.fixture
def random_inception(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The inception-fid space loading a randomly initialised network saved in pytorch-fid's layout."""
    from feature_spaces.inception import FIDInceptionV3

    monkeypatch.setenv("FDBENCH_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("FDBENCH_OFFLINE", "1")
    torch.manual_seed(0)
    model = FIDInceptionV3()
    generator = torch.Generator().manual_seed(0)
    for layer in model.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.running_mean.copy_(torch.randn(layer.running_mean.shape, generator=generator) * 0.1)
            layer.running_var.copy_(torch.rand(layer.running_var.shape, generator=generator) + 0.5)
    torch.save(model.state_dict(), tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    return unverified_copy("inception-fid").name


@pytest.mark.slow
def test_inception_mixed_7c_gradient_is_the_pooled_feature_gradient(random_inception: str) -> None:
    """pool3 is the spatial mean of Mixed_7c, so ∂FD/∂A_c(p) = (∂FD/∂f_c) / (h·w) at every position and
    the heatmap is Σ_c (∂FD/∂f_c)² A_c up to scale: checked against that closed form, against the
    extractor's own features, and for independence from the batch split."""
    generator = torch.Generator().manual_seed(3)
    reference = torch.randint(0, 256, (4, 3, 64, 64), generator=generator, dtype=torch.uint8)
    generated = torch.randint(60, 200, (4, 3, 64, 64), generator=generator, dtype=torch.uint8)
    prepared = prepare_heatmaps(TensorSource(generated), TensorSource(reference), random_inception, NO_CACHE)
    images = generated[:2]
    features, layer = prepared.forward_with_layer(images)
    assert layer.shape == (2, 2048, 8, 8)
    expected_features = prepared.extractor(images)
    assert torch.allclose(features.detach(), expected_features, atol=1e-4, rtol=1e-4)
    spatial, spatial_grad = prepared.layer_and_gradient(images)
    feature_grad = prepared.gradient(features.detach()).float()
    assert torch.allclose(
        spatial_grad, (feature_grad / 64.0)[:, :, None, None].expand_as(spatial_grad), atol=1e-9
    )
    maps = prepared.maps(images)
    for row in range(2):
        cam = np.einsum("c,chw->hw", feature_grad[row].double().numpy() ** 2, spatial[row].double().numpy())
        expected = to_image_frame(min_max(cam), 64, 64, prepared.extractor.spec.preprocessing)
        np.testing.assert_allclose(maps[row], expected, atol=1e-5)
    one_by_one = np.concatenate([prepared.maps(images[i : i + 1]) for i in range(2)])
    np.testing.assert_allclose(one_by_one, maps, atol=1e-5)


@pytest.fixture
def random_vit() -> str:
    """dinov2-vits14's spec (preprocessing, spatial layer `vit.blocks.10`) on a seeded random DINOv2-style
    timm ViT narrowed to 64 channels, so a CPU test runs it in moments (no DINOv2 weights offline)."""
    import timm

    from feature_spaces.dinov2 import TIMM_NAMES, DinoV2Cls

    def loader(spec, device, paths):
        vit = timm.create_model(
            TIMM_NAMES["vits14"], pretrained=False, img_size=224, num_classes=0, embed_dim=64, num_heads=2
        )
        generator = torch.Generator().manual_seed(5)
        with torch.no_grad():
            for parameter in vit.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
        return DinoV2Cls(vit).eval()

    base = fs.get("dinov2-vits14").spec
    spec = dataclasses.replace(base, name="test-dinov2-vits14", weights=(), dim=64)
    return fs.register(spec, loader).name


def test_member_gradient_of_the_engine_statistics_matches_a_direct_computation(random_vit: str) -> None:
    """The gradient field prepared from the engine's cached statistics is that of the set's own
    features (statistics recomputed here with numpy from the extractor's output)."""
    generator = torch.Generator().manual_seed(4)
    reference = torch.randint(0, 256, (6, 3, 56, 56), generator=generator, dtype=torch.uint8)
    generated = torch.randint(0, 256, (6, 3, 56, 56), generator=generator, dtype=torch.uint8)
    prepared = prepare_heatmaps(TensorSource(generated), TensorSource(reference), random_vit, NO_CACHE)
    extractor = prepared.extractor
    direct = MemberGradient.at(
        GaussianStats.from_features(extractor(generated).double().numpy()),
        GaussianStats.from_features(extractor(reference).double().numpy()),
    )
    assert math.isclose(prepared.fd, direct.value, rel_tol=1e-6)
    probe = extractor(generated[:2])
    np.testing.assert_allclose(prepared.gradient(probe).numpy(), direct(probe).numpy(), rtol=1e-4, atol=1e-9)


def test_vit_patch_tokens_give_a_heatmap(random_vit: str) -> None:
    generator = torch.Generator().manual_seed(6)
    reference = torch.randint(0, 256, (5, 3, 56, 56), generator=generator, dtype=torch.uint8)
    generated = with_patch(reference, 0, 0, 20)
    prepared = prepare_heatmaps(TensorSource(generated), TensorSource(reference), random_vit, NO_CACHE)
    spatial, spatial_grad = prepared.layer_and_gradient(generated[:2])
    assert spatial.shape == (2, 64, 16, 16) and spatial_grad.abs().sum() > 0
    maps = prepared.maps(generated[:2])
    assert maps.shape == (2, 56, 56) and np.isfinite(maps).all()
    assert maps.max() == pytest.approx(1.0, abs=1e-6)
    listed = heatmaps(TensorSource(generated), TensorSource(reference), random_vit, limit=3, config=NO_CACHE)
    assert [entry.image_id for entry in listed] == ["000000", "000001", "000002"]
    np.testing.assert_allclose(np.stack([entry.values for entry in listed[:2]]), maps, atol=1e-5)


# ------------------------------------------------------------------------------------------ region agreement


def test_region_mass_of_uniform_and_concentrated_maps() -> None:
    labels = np.zeros((2, 10, 10), dtype=np.uint8)  # CelebAMask-HQ numbering
    labels[:, :5, :] = CELEBAMASK_HQ.id_of("skin")  # half the image
    labels[:, 8:, 8:] = CELEBAMASK_HQ.id_of("nose")  # 4 %
    labels[1, 0, 0] = CELEBAMASK_HQ.id_of("hat")  # one stray pixel: 1 % of this tiny image
    maps = np.ones((2, 10, 10))
    maps[1] = 0.0
    maps[1, 8:, 8:] = 1.0  # image 1: all mass on the nose
    regions = ("Skin", "Nose", "Hat", "Hair")
    shares, fractions = region_mass(maps, labels, CELEBAMASK_HQ, regions, min_fraction=0.02)
    np.testing.assert_allclose(shares[:, :2], [[0.5, 0.04], [0.0, 1.0]])
    np.testing.assert_allclose(fractions[:, :2], [[0.5, 0.04], [0.49, 0.04]])  # the hat pixel was skin
    assert np.isnan(shares[:, 2:]).all()  # a 1 % hat is below a_min = 2 %, hair is absent
    mass = RegionMass("space-a", regions)
    mass.add(["a", "b"], shares, fractions)
    np.testing.assert_allclose(mass.densities[:, :2], [[1.0, 1.0], [0.0, 25.0]])  # 1 = uniform


def test_spearman_matches_a_hand_computation_with_ties() -> None:
    first, second = np.array([3.0, 1.0, 2.0, 2.0]), np.array([10.0, 40.0, 30.0, 20.0])
    ranks_first, ranks_second = np.array([4.0, 1.0, 2.5, 2.5]), np.array([1.0, 4.0, 3.0, 2.0])
    expected = np.corrcoef(ranks_first, ranks_second)[0, 1]
    assert spearman(first, second) == pytest.approx(expected, abs=1e-12)
    assert math.isnan(spearman(np.ones(3), np.arange(3.0)))


REGION_FRACTIONS = {"Skin": 0.5, "Eyes": 0.02, "Nose": 0.01, "Hair": 0.2}


def planted_mass(densities: list[float], images: int = 40, seed: int = 0) -> RegionMass:
    """Per-image densities around the given region means (lognormal noise), with fixed area fractions;
    about 10 % of the (image, region) pairs are absent."""
    rng = np.random.default_rng(seed)
    fractions = np.tile(list(REGION_FRACTIONS.values()), (images, 1))
    values = np.asarray(densities)[None, :] * rng.lognormal(0.0, 0.2, fractions.shape)
    absent = rng.random(values.shape) < 0.1
    values[absent], fractions[absent] = np.nan, np.nan
    mass = RegionMass("space-a", tuple(REGION_FRACTIONS))
    mass.add([f"{i:03d}" for i in range(images)], values * fractions, fractions)
    return mass


NFD = {"Skin": 0.5, "Eyes": 0.2, "Nose": 0.1, "Hair": 0.4, "Hat": 0.9}


def test_agreement_recovers_planted_orders() -> None:
    same, _ = agreement_rows(planted_mass([5.0, 2.0, 1.0, 4.0]), NFD, num_boot=100)
    rho = next(row for row in same if row.metric == "spearman_rho")
    assert rho.value == pytest.approx(1.0) and rho.n == 40 and rho.ci_low <= rho.value <= rho.ci_high
    assert rho.ci_low >= -1.0 and rho.ci_high <= 1.0
    density = {row.region: row for row in same if row.metric == "heatmap_density"}
    assert set(density) == {"Skin", "Eyes", "Nose", "Hair"}  # Hat has an nFD but no heatmap column
    assert density["Skin"].ci_low <= density["Skin"].value <= density["Skin"].ci_high
    assert density["Skin"].value == pytest.approx(5.0, rel=0.1)
    copied = {row.region: row.value for row in same if row.metric == "region_blur_nfd"}
    assert copied == {region: NFD[region] for region in density}


def test_density_and_mass_share_can_disagree() -> None:
    """Small regions dense with heatmap mass (eyes, nose) but little of it in total: the per-pixel view
    ranks them first, the share view (like a whole-region blur) last."""
    rows, _ = agreement_rows(planted_mass([1.0, 4.0, 5.0, 2.0]), NFD, num_boot=50)
    values = {row.metric: row.value for row in rows if row.region == "All"}
    assert values["spearman_rho"] == pytest.approx(-1.0)
    assert values["spearman_rho_mass_share"] == pytest.approx(1.0)


def test_agreement_needs_three_regions() -> None:
    rows, notes = agreement_rows(planted_mass([5.0, 2.0, 1.0, 4.0]), {"Skin": 0.5, "Eyes": 0.2}, num_boot=20)
    assert not [row for row in rows if row.metric.startswith("spearman")]
    assert any("needs 3 regions" in note for note in notes)
    assert any("region Nose has no region-blur nFD" in note for note in notes)


def blur_row(space: str, region: str, value: float, **changes: object) -> dict[str, object]:
    """One row of a region-blur results table (conditional nFD unless `changes` say otherwise)."""
    row = {"experiment": "region_blur", "space": space, "variant": "blur", "region": region, "level": None}
    row.update({"metric": "nfd", "value": value, "ci_low": value, "ci_high": value, "n": 12})
    row.update(changes)
    return row


def test_blur_nfd_reads_only_conditional_region_rows() -> None:
    table = pd.DataFrame(
        [
            blur_row("s", "Skin", 0.3),
            blur_row("s", "All", 1.0),
            blur_row("s", "Skin", 0.1, variant="sigma_sweep", level=50.0),
            blur_row("s", "Eyes", 7.0, metric="fd"),
            blur_row("t", "Eyes", 0.2),
        ]
    )
    assert blur_nfd(table, "s") == {"Skin": 0.3}


@pytest.mark.slow
def test_heatmap_command_end_to_end(shared_data: Path, tmp_path: Path) -> None:
    """`fdbench heatmap` on real faces with their label maps and a region-blur table: overlays, a page
    with everything embedded, and agreement rows whose interval holds the estimate."""
    from bench.cli import main

    if not fs.get("efficientnet-lite0-imagenet").availability().ok:
        pytest.skip("efficientnet-lite0-imagenet cannot load here")
    files = sorted((shared_data / UTKFACE).glob("*.jpg"))
    generated, reference = tmp_path / "generated", tmp_path / "reference"
    for folder, chosen in ((generated, files[:12]), (reference, files[200:230])):
        folder.mkdir()
        for path in chosen:
            (folder / path.name).symlink_to(path)
    planted = {"Background": 0.4, "Skin": 0.6, "Eyes": 0.1, "Nose": 0.05, "Mouth & Lips": 0.08}
    table = pd.DataFrame([blur_row("efficientnet-lite0-imagenet", r, v) for r, v in planted.items()])
    table.to_csv(tmp_path / "blur.csv", index=False)
    out = tmp_path / "out"
    arguments = ["heatmap", str(generated), "--reference", str(reference), "--out", str(out)]
    arguments += ["--space", "efficientnet-lite0-imagenet", "--bootstrap", "30", "--quiet"]
    arguments += ["--masks", str(shared_data / UTKFACE_MASKS), "--agreement", str(tmp_path / "blur.csv")]
    status = main([*arguments, "--regions", *planted])
    assert status == 0
    assert len(list((out / "efficientnet-lite0-imagenet").glob("*.png"))) == 12
    page = (out / "heatmaps.html").read_text()
    assert page.count("data:image/png;base64,") >= 13 and "http://" not in page and "https://" not in page
    results = pd.read_csv(out / "results.csv")
    rho = results[results["metric"] == "spearman_rho"].iloc[0]
    assert rho["n"] == 12 and rho["ci_low"] <= rho["value"] <= rho["ci_high"]
    assert set(results.loc[results["metric"] == "heatmap_density", "region"]) <= set(planted)


def test_a_misnamed_spatial_layer_is_a_clear_error(random_vit: str) -> None:
    space = fs.get(random_vit)
    bad = fs.register(
        dataclasses.replace(space.spec, name="test-bad-layer", spatial_layer="vit.nope"), space.loader
    )
    images = torch.randint(
        0, 256, (3, 3, 28, 28), generator=torch.Generator().manual_seed(7), dtype=torch.uint8
    )
    prepared = prepare_heatmaps(TensorSource(images), TensorSource(images.flip(0)), bad.name, NO_CACHE)
    with pytest.raises(HeatmapError, match=r"no layer 'vit\.nope'"):
        prepared.maps(images)
