"""Perturbations: contract properties for every one, and each checked against an independent oracle."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage, stats

from bench.perturbations import (
    AdaINColor,
    Perturbation,
    RegionBlur,
    available,
    clean_fid_resize_study,
    feature_adain,
    feature_channel_stats,
    make_perturbation,
    region_blur_fraction_sweep,
    region_blur_geometry,
    region_blur_sigma_sweep,
    ttur_presets,
    upsample_presets,
)

STRONG = {
    "region_blur": {"sigma": 100.0},
    "gaussian_blur": {"sigma": 2.0},
    "gaussian_noise": {"alpha": 0.5, "seed": 3},
    "salt_pepper": {"amount": 0.2, "seed": 3},
    "black_rectangles": {"alpha": 0.25, "seed": 3},
    "swirl": {"strength": 4.0, "radius": 25.0},
    "jpeg": {"quality": 30},
    "webp": {"quality": 30},
    "resize": {"library": "torch", "filter": "bicubic", "antialias": True, "scale": 0.5},
    "upsample": {"mode": "zero_insertion"},
    "adain_color": {"alpha": 1.0, "mean": [90.0, 120.0, 160.0], "std": [20.0, 40.0, 60.0]},
}
ZERO = {
    "region_blur": {"sigma": 0.0},
    "gaussian_blur": {"sigma": 0.0},
    "gaussian_noise": {"alpha": 0.0},
    "salt_pepper": {"amount": 0.0},
    "black_rectangles": {"alpha": 0.0},
    "swirl": {"strength": 0.0},
    "webp": {"lossless": True},
    "resize": {"scale": 1.0},
    "upsample": {"factor": 1},
    "adain_color": {"alpha": 0.0},
}
SEEDED = ("gaussian_noise", "salt_pepper", "black_rectangles")
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def smooth_images(count: int = 3, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Photo-like test images: smooth colour fields plus a little texture."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 4, 4, generator=generator) * 255
    fields = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    texture = torch.randn(count, 3, size, size, generator=generator) * 12
    return (fields + texture).round().clamp(0, 255).to(torch.uint8)


def to_numpy(images: torch.Tensor) -> np.ndarray:
    return images.cpu().numpy().astype(np.float64)


def test_every_registered_perturbation_is_covered():
    from bench.perturbations.base import _REGISTRY

    # Other test modules register their own perturbations (test_brighten, ...); only fdbench's count here.
    shipped = {name for name in available() if _REGISTRY[name].__module__.startswith("bench.")}
    assert shipped == set(STRONG)
    assert set(ZERO) == set(STRONG) - {"jpeg"}  # JPEG has no lossless setting


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(STRONG))
def test_contract_dtype_shape_device_determinism(name, device):
    images = smooth_images().to(device)
    masks = torch.zeros(3, 64, 64, dtype=torch.bool, device=device)
    masks[:, 16:48, 10:40] = True
    perturbation = make_perturbation(name, **STRONG[name])
    first = perturbation(images, masks)
    assert first.dtype == torch.uint8 and first.shape == images.shape and first.device == images.device
    assert not torch.equal(first, images)
    assert torch.equal(make_perturbation(name, **STRONG[name])(images, masks), first)
    # Batch-size independence: the tail of the batch, given its stream offset, is perturbed identically.
    tail = perturbation(images[1:], masks[1:], offset=1)
    assert torch.equal(tail, first[1:])
    assert images.dtype == torch.uint8  # input untouched
    assert torch.equal(images, smooth_images().to(device))


@pytest.mark.parametrize("name", SEEDED)
def test_seed_changes_random_perturbations(name):
    images = smooth_images()
    params = dict(STRONG[name])
    same = make_perturbation(name, **params)(images)
    params["seed"] = 4
    assert not torch.equal(make_perturbation(name, **params)(images), same)


@pytest.mark.parametrize("name", sorted(ZERO))
def test_identity_at_zero_strength(name):
    images = smooth_images()
    perturbation = make_perturbation(name, **ZERO[name])
    assert torch.equal(perturbation(images), images)
    assert torch.equal(perturbation.apply(images, None, 0), images) or name in ("webp",)


def test_specs_and_errors():
    a, b = make_perturbation("jpeg", quality=50), make_perturbation("jpeg", quality=51)
    assert a.spec() == {"name": "jpeg", "version": 1, "params": {"quality": 50, "subsampling": "4:2:0"}}
    assert a.key != b.key and a.key == make_perturbation("jpeg", quality=50).key
    assert RegionBlur(region="Hair").key != RegionBlur(region="Skin").key
    assert RegionBlur(sigma=100).key == RegionBlur(sigma=100.0).key == RegionBlur().key
    assert make_perturbation("upsample", factor=2.0).params["factor"] == 2
    with pytest.raises(ValueError, match="factor must be int"):
        make_perturbation("upsample", factor=1.5)
    with pytest.raises(ValueError, match="region must be one of"):
        RegionBlur(region="Ears")
    with pytest.raises(ValueError, match="unknown perturbation"):
        make_perturbation("pixelate")
    with pytest.raises(ValueError, match="no parameter"):
        make_perturbation("jpeg", qualty=3)
    with pytest.raises(ValueError, match="mode"):
        make_perturbation("upsample", mode="cubic")
    with pytest.raises(ValueError, match="uint8"):
        make_perturbation("jpeg")(smooth_images().float())
    with pytest.raises(ValueError, match="masks must be"):
        RegionBlur()(smooth_images(), torch.ones(3, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="divisible"):
        make_perturbation("upsample")(smooth_images(size=63))
    assert isinstance(make_perturbation("swirl"), Perturbation)


# ---------------------------------------------------------------- region blur (METHODS §3)


def oracle_blur(images: np.ndarray, sigma: float, radius: int) -> np.ndarray:
    """float64 scipy correlation with normalised Gaussian taps, mirror padding, along H then W."""
    taps = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2 * sigma**2))
    taps /= taps.sum()
    out = ndimage.correlate1d(images, taps, axis=-1, mode="mirror")
    return ndimage.correlate1d(out, taps, axis=-2, mode="mirror")


def test_region_blur_geometry_scales_with_resolution():
    assert region_blur_geometry(512, 512) == (111, 100.0)
    assert region_blur_geometry(256, 256) == (55, 50.0)
    assert region_blur_geometry(1024, 1024) == (223, 200.0)
    assert region_blur_geometry(64, 64) == (13, 12.5)
    assert region_blur_geometry(256, 512) == (55, 50.0)  # the shorter side rules
    assert region_blur_geometry(512, 512, sigma_512=30.0) == (111, 30.0)


@pytest.mark.parametrize("size", [64, 512])
def test_region_blur_all_equals_whole_image_blur_oracle(size):
    images = smooth_images(count=1 if size == 512 else 3, size=size)
    out = RegionBlur()(images)  # no masks: the "All" region
    kernel, sigma = region_blur_geometry(size, size)
    expected = np.round(oracle_blur(to_numpy(images), sigma, kernel // 2))
    difference = np.abs(out.numpy().astype(np.float64) - expected)
    assert difference.max() <= 1 and (difference == 0).mean() > 0.999
    all_mask = torch.ones(images.shape[0], size, size, dtype=torch.bool)
    assert torch.equal(RegionBlur(region="All")(images, all_mask), out)


def test_region_blur_touches_only_the_mask():
    images = smooth_images(size=96)
    masks = torch.zeros(3, 96, 96, dtype=torch.bool)
    masks[0, 20:60, 30:70] = True
    masks[1, ::7, ::5] = True
    # image 2: empty mask
    out = RegionBlur()(images, masks)
    outside = ~masks[:, None].expand_as(images)
    assert torch.equal(out[outside], images[outside])
    inside = masks[:, None].expand_as(images)
    assert (out[inside] != images[inside]).float().mean() > 0.9
    whole = RegionBlur()(images)
    assert torch.equal(out[inside], whole[inside])
    assert torch.equal(out[2], images[2])


def test_region_blur_sweeps():
    sigmas = region_blur_sigma_sweep(region="Hair")
    assert [p.params["sigma"] for p in sigmas][:3] == [0.0, 10.0, 20.0] and sigmas[-1].params["sigma"] == 100
    images = smooth_images(size=64)
    changes = [float((p(images).double() - images.double()).abs().mean()) for p in sigmas]
    assert changes[0] == 0 and all(b >= a for a, b in itertools.pairwise(changes))
    fractions = region_blur_fraction_sweep()
    assert fractions[0].params["fraction"] == 0 and fractions[-1].params["fraction"] == 1
    many = smooth_images(count=200, size=16, seed=2)
    half = RegionBlur(fraction=0.5, seed=1)(many)
    changed = (half != many).flatten(1).any(dim=1)
    blurred = RegionBlur()(many)
    assert torch.equal(half[changed], blurred[changed]) and torch.equal(half[~changed], many[~changed])
    assert 70 <= int(changed.sum()) <= 130  # Binomial(200, 0.5): ±4.2σ


# ---------------------------------------------------------------- TTUR disturbances


def test_gaussian_blur_matches_scipy():
    images = smooth_images()
    out = make_perturbation("gaussian_blur", sigma=2.0)(images).numpy().astype(np.float64)
    expected = np.round(ndimage.gaussian_filter(to_numpy(images), sigma=(0, 0, 2.0, 2.0), mode="mirror"))
    difference = np.abs(out - expected)
    assert difference.max() <= 1 and (difference == 0).mean() > 0.999


def test_gaussian_noise_mixes_with_min_max_scaled_noise():
    images = smooth_images()
    pure = make_perturbation("gaussian_noise", alpha=1.0, seed=5)(images)
    assert pure.flatten(1).min(dim=1).values.tolist() == [0, 0, 0]
    assert pure.flatten(1).max(dim=1).values.tolist() == [255, 255, 255]
    for image in pure.double():
        standardized = ((image - image.mean()) / image.std()).flatten().numpy()
        assert stats.kstest(standardized, "norm").pvalue > 1e-3  # Gaussian noise, affinely scaled
    mixed = make_perturbation("gaussian_noise", alpha=0.5, seed=5)(images)
    expected = 0.5 * images.double() + 0.5 * pure.double()
    assert (mixed.double() - expected).abs().max() <= 1.0


def test_salt_and_pepper_statistics():
    images = torch.full((4, 3, 64, 64), 100, dtype=torch.uint8)
    out = make_perturbation("salt_pepper", amount=0.3, seed=1)(images)
    hit = (out != 100).any(dim=1)
    assert abs(hit.double().mean().item() - 0.3) < 0.02
    values = out.permute(0, 2, 3, 1)[hit]
    assert bool(((values == 0).all(dim=1) | (values == 255).all(dim=1)).all())
    assert abs((values[:, 0] == 255).double().mean().item() - 0.5) < 0.03


def test_black_rectangles_geometry():
    images = torch.full((2, 3, 64, 64), 200, dtype=torch.uint8)
    perturbation = make_perturbation("black_rectangles", alpha=0.25, count=5, seed=2)
    out = perturbation(images)
    for i in range(2):
        expected = torch.full((64, 64), True)
        for top, left, h, w in perturbation.rectangles(i, 64, 64):
            assert (h, w) == (16, 16) and 0 <= top <= 48 and 0 <= left <= 48
            expected[top : top + h, left : left + w] = False
        black = (out[i] == 0).all(dim=0)
        assert torch.equal(~black, expected)
        assert 256 <= int(black.sum()) <= 5 * 256


def test_swirl_matches_skimage():
    from skimage.transform import swirl

    images = smooth_images(count=2, size=48)
    out = make_perturbation("swirl", strength=2.0, radius=25.0)(images).numpy().astype(np.float64)
    for i in range(2):
        channels_last = to_numpy(images[i]).transpose(1, 2, 0)
        # skimage's default centre is (W/2, H/2); ours is the geometric centre of the pixel grid.
        expected = swirl(
            channels_last, center=(23.5, 23.5), strength=2.0, radius=25.0, order=1, mode="reflect",
            preserve_range=True,
        )  # fmt: skip
        difference = np.abs(out[i].transpose(1, 2, 0) - np.round(expected))
        assert difference.max() <= 1 and (difference == 0).mean() > 0.99


def test_ttur_presets_levels():
    presets = ttur_presets()
    assert [p.params["alpha"] for p in presets["gaussian_noise"]] == [0.0, 0.25, 0.5, 0.75]
    assert [p.params["sigma"] for p in presets["gaussian_blur"]] == [0.0, 1.0, 2.0, 4.0]
    assert [p.params["strength"] for p in presets["swirl"]] == [0.0, 1.0, 2.0, 4.0]
    assert [p.params["amount"] for p in presets["salt_pepper"]] == [0.0, 0.1, 0.2, 0.3]
    assert [p.params["alpha"] for p in presets["black_rectangles"]] == [0.0, 0.25, 0.5, 0.75]


# ---------------------------------------------------------------- codecs


@pytest.mark.parametrize(("quality", "subsampling"), [(10, "4:2:0"), (75, "4:4:4"), (95, "4:2:2")])
def test_jpeg_equals_pillow_encoder(quality, subsampling):
    images = smooth_images(count=2)
    out = make_perturbation("jpeg", quality=quality, subsampling=subsampling)(images)
    for i in range(2):
        buffer = io.BytesIO()
        Image.fromarray(images[i].permute(1, 2, 0).numpy()).save(
            buffer, "JPEG", quality=quality, subsampling=subsampling
        )
        expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        np.testing.assert_array_equal(out[i].permute(1, 2, 0).numpy(), expected)
    low, high = (make_perturbation("jpeg", quality=q)(images) for q in (10, 95))
    assert (low.double() - images.double()).abs().mean() > (high.double() - images.double()).abs().mean()


def test_webp_equals_pillow_encoder():
    images = smooth_images(count=1)
    out = make_perturbation("webp", quality=40)(images)
    buffer = io.BytesIO()
    Image.fromarray(images[0].permute(1, 2, 0).numpy()).save(buffer, "WEBP", quality=40, method=4)
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    np.testing.assert_array_equal(out[0].permute(1, 2, 0).numpy(), expected)


# ---------------------------------------------------------------- resizing and up-sampling


def bilinear_up2(values: np.ndarray) -> np.ndarray:
    """×2 bilinear up-sampling, align_corners=False, edges clamped, along the last two axes (numpy)."""
    for axis in (-2, -1):
        n = values.shape[axis]
        index = np.arange(2 * n)
        source = np.clip((index + 0.5) / 2 - 0.5, 0, n - 1)
        low = np.floor(source).astype(int)
        high = np.minimum(low + 1, n - 1)
        weight = source - low
        shape = [1] * values.ndim
        shape[axis] = 2 * n
        values = np.take(values, low, axis=axis) * (1 - weight.reshape(shape)) + np.take(
            values, high, axis=axis
        ) * weight.reshape(shape)
    return values


def box_down2(values: np.ndarray) -> np.ndarray:
    n, c, h, w = values.shape
    return values.reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))


def test_upsample_modes_against_numpy():
    images = smooth_images(count=2, size=32)
    small = box_down2(to_numpy(images))
    nearest = make_perturbation("upsample", mode="nearest")(images).numpy()
    np.testing.assert_array_equal(nearest, np.round(small.repeat(2, axis=2).repeat(2, axis=3)))
    bilinear = make_perturbation("upsample", mode="bilinear")(images).numpy().astype(np.float64)
    assert np.abs(bilinear - np.round(bilinear_up2(small))).max() <= 1
    zero = make_perturbation("upsample", mode="zero_insertion", sigma=1.0)(images).numpy().astype(np.float64)
    sparse = np.zeros(to_numpy(images).shape)
    sparse[..., ::2, ::2] = small
    expected = np.clip(np.round(4 * oracle_blur(sparse, 1.0, 3)), 0, 255)
    assert np.abs(zero - expected).max() <= 1
    # On a flat image nearest and bilinear stay flat; zero insertion leaves a period-2 ripple (the artifact).
    flat = torch.full((1, 3, 32, 32), 128, dtype=torch.uint8)
    for mode in ("nearest", "bilinear"):
        assert torch.equal(make_perturbation("upsample", mode=mode)(flat), flat)
    rippled = make_perturbation("upsample", mode="zero_insertion")(flat).double()
    assert rippled[..., ::2, ::2].mean() - rippled[..., 1::2, 1::2].mean() > 2
    assert [p.params["mode"] for p in upsample_presets()] == ["nearest", "bilinear", "zero_insertion"]


def test_torch_bilinear_round_trip_is_box_down_and_bilinear_up():
    images = smooth_images(count=2, size=32)
    out = make_perturbation("resize", library="torch", filter="bilinear", antialias=False, scale=0.5)(images)
    expected = np.round(bilinear_up2(box_down2(to_numpy(images))))
    assert np.abs(out.numpy() - expected).max() <= 1


@pytest.mark.parametrize("filter_name", ["bicubic", "lanczos", "bilinear"])
def test_pil_round_trip_matches_clean_fid_resizer(filter_name):
    from cleanfid.resize import make_resizer

    images = smooth_images(count=1, size=40)
    out = make_perturbation("resize", library="pil", filter=filter_name, scale=0.5)(images)
    down = make_resizer("PIL", False, filter_name, (20, 20))
    up = make_resizer("PIL", False, filter_name, (40, 40))
    expected = np.round(up(down(images[0].permute(1, 2, 0).numpy())))
    np.testing.assert_array_equal(out[0].permute(1, 2, 0).numpy(), expected)


def test_clean_fid_study_grid():
    variants = clean_fid_resize_study()
    described = {(p.params["library"], p.params["filter"], p.params["antialias"]) for p in variants}
    assert len(described) == len(variants) == 9
    assert ("pil", "lanczos", True) in described and ("torch", "bicubic", False) in described
    with pytest.raises(ValueError, match="no antialias"):
        make_perturbation("resize", library="torch", filter="nearest", antialias=True)
    with pytest.raises(ValueError, match="filter"):
        make_perturbation("resize", library="torch", filter="lanczos", antialias=False)


# ---------------------------------------------------------------- AdaIN (METHODS §6)


def test_adain_color_matches_float64_oracle():
    images = smooth_images()
    mean, std = np.array([90.0, 120.0, 160.0]), np.array([20.0, 40.0, 60.0])
    for alpha in (1.0, 0.3):
        out = AdaINColor(alpha=alpha, mean=mean.tolist(), std=std.tolist())(images).numpy()
        x = to_numpy(images)
        mu, sd = x.mean(axis=(2, 3), keepdims=True), x.std(axis=(2, 3), keepdims=True)
        target_mu = (1 - alpha) * mu + alpha * mean[None, :, None, None]
        target_sd = (1 - alpha) * sd + alpha * std[None, :, None, None]
        expected = np.clip(np.round((x - mu) / sd * target_sd + target_mu), 0, 255)
        np.testing.assert_array_equal(out, expected)
    reference = smooth_images(count=4, seed=9)
    matched = AdaINColor.from_reference(reference)(images).double()
    ref_means = reference.double().mean(dim=(2, 3)).mean(dim=0)
    assert (matched.mean(dim=(0, 2, 3)) - ref_means).abs().max() < 1.5


@pytest.mark.slow
def test_feature_adain_hook_on_resnet18_matches_numpy():
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    inputs = torch.randn(2, 3, 64, 64)
    captured: list[torch.Tensor] = []
    handle = model.layer2.register_forward_hook(lambda _m, _i, out: captured.append(out.detach().clone()))
    with torch.no_grad():
        clean_logits = model(inputs)
        style_mean, style_std = torch.linspace(-1, 1, 128), torch.linspace(0.5, 2.0, 128)
        handle.remove()
        with feature_adain(model, "layer2", style_mean, style_std, alpha=0.7) as hooked:
            assert hooked is model.layer2
            handle = model.layer2.register_forward_hook(
                lambda _m, _i, out: captured.append(out.detach().clone())
            )
            styled_logits = model(inputs)
            handle.remove()
        after_logits = model(inputs)
    raw, styled = captured[0].double().numpy(), captured[1].double().numpy()
    mu = raw.mean(axis=(2, 3), keepdims=True)
    sd = np.sqrt(raw.var(axis=(2, 3), keepdims=True) + 1e-5)
    alpha = 0.7
    target_mu = (1 - alpha) * mu + alpha * style_mean.double().numpy()[None, :, None, None]
    target_sd = (1 - alpha) * sd + alpha * style_std.double().numpy()[None, :, None, None]
    expected = (raw - mu) / sd * target_sd + target_mu
    np.testing.assert_allclose(styled, expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(styled_logits, clean_logits)
    assert torch.equal(after_logits, clean_logits)  # hook removed on exit
    mean, std = feature_channel_stats(model, "layer2", inputs)
    np.testing.assert_allclose(mean.double().numpy(), mu.mean(axis=0).ravel(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(std.double().numpy(), sd.mean(axis=0).ravel(), rtol=1e-4, atol=1e-5)
    with (
        pytest.raises(ValueError, match="no submodule"),
        feature_adain(model, "layer9", style_mean, style_std),
    ):
        pass
