"""Registry, spec hashing and preprocessing: contracts checked against independent implementations."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import feature_spaces as fs
from feature_spaces.spec import FeatureSpaceSpec, Preprocessing, SpecError, WeightsFile

LITERATURE = [
    "inception-fid",
    "inception-fid-clean",
    "clip-vit-b32",
    "swav-r50",
    "dinov2-vits14",
    "dinov2-vitb14",
    "dinov2-vitl14",
    "fairface-r34",
    "swav-ffhq",
    "arcface-r34",
]
DECLARED_DIMS = {
    "inception-fid": 2048,
    "clip-vit-b32": 512,
    "swav-r50": 2048,
    "dinov2-vits14": 384,
    "dinov2-vitb14": 768,
    "dinov2-vitl14": 1024,
    "fairface-r34": 512,
    "swav-ffhq": 2048,
    "arcface-r34": 512,
    "efficientnet-lite0-imagenet": 1280,
    "augnet-r50": 768,
    "dlib-face-id": 128,
    "spectrum-durall": 179,
}


def random_images(n: int = 2, height: int = 40, width: int = 56, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, height, width), generator=generator, dtype=torch.uint8)


# ------------------------------------------------------------------------------------------- registry


def test_every_space_of_the_issue_is_registered_with_its_dim() -> None:
    registered = set(fs.names())
    assert set(LITERATURE) <= registered
    for name, dim in DECLARED_DIMS.items():
        assert fs.get(name).spec.dim == dim


def test_unknown_space_is_a_value_error_listing_the_registered_ones() -> None:
    with pytest.raises(fs.UnknownSpaceError, match="inception-fid"):
        fs.get("inception-fjd")


def test_spec_hash_tracks_what_changes_numbers_only() -> None:
    spec = fs.get("pixels-randproj").spec
    renamed = dataclasses.replace(spec, name="pixels-randproj-copy", citation="elsewhere", license="other")
    assert renamed.spec_hash == spec.spec_hash
    for changed in (
        dataclasses.replace(
            spec, preprocessing=dataclasses.replace(spec.preprocessing, resize="legacy-pytorch")
        ),
        dataclasses.replace(spec, extra={"seed": 1}),
        dataclasses.replace(spec, weights=(WeightsFile("x.pth", sha256="ab" * 32),)),
        dataclasses.replace(spec, revision=2),
    ):
        assert changed.spec_hash != spec.spec_hash
    assert len({fs.get(name).spec_hash for name in fs.names()}) == len(fs.names())


def test_register_a_custom_space_in_one_call() -> None:
    spec = FeatureSpaceSpec(
        name="test-channel-means",
        family="pixels",
        architecture="per-channel mean",
        training_data="none",
        objective="none",
        feature="mean colour",
        dim=3,
        preprocessing=Preprocessing(size=8, resize="bilinear-aa"),
    )

    class ChannelMean(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3))

    try:
        space = fs.register(spec, lambda spec, device, paths: ChannelMean())
        assert fs.get("test-channel-means") is space
        assert fs.available()["test-channel-means"].ok
        images = torch.full((2, 3, 16, 16), 51, dtype=torch.uint8)
        features = space.load("cpu")(images)
        assert torch.allclose(features, torch.full((2, 3), 0.2))
        with pytest.raises(ValueError, match="already registered"):
            fs.register(spec, lambda spec, device, paths: ChannelMean())
    finally:
        fs.unregister("test-channel-means")
    assert "test-channel-means" not in fs.names()


def test_available_explains_missing_weights_and_packages(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("FDBENCH_WEIGHTS", raising=False)
    status = fs.available()
    inception = status["inception-fid"]
    assert not inception.ok
    assert "pt_inception-2015-12-05-6726825d.pth" in inception.reason
    assert "https://github.com/mseitzer/pytorch-fid/releases" in inception.reason
    assert str(tmp_path / "weights") in inception.reason
    spec = dataclasses.replace(
        fs.get("pixels-randproj").spec, name="test-needs-package", requires=("no_such_pkg_x",)
    )
    try:
        fs.register(spec, lambda *a: None)
        reason = fs.available()["test-needs-package"].reason
        assert "no_such_pkg_x" in reason
        with pytest.raises(fs.MissingDependencyError, match="no_such_pkg_x"):
            fs.get("test-needs-package").load("cpu")
    finally:
        fs.unregister("test-needs-package")


def test_extractors_reject_what_is_not_a_uint8_rgb_batch() -> None:
    extractor = fs.get("pixels-randproj").load("cpu")
    with pytest.raises(fs.ImageBatchError, match="uint8"):
        extractor(torch.rand(1, 3, 8, 8))
    with pytest.raises(fs.ImageBatchError, match="N×3×H×W"):
        extractor(torch.zeros(1, 4, 8, 8, dtype=torch.uint8))
    with pytest.raises(fs.ImageBatchError, match="N×3×H×W"):
        extractor(torch.zeros(3, 8, 8, dtype=torch.uint8))
    assert extractor(torch.zeros(0, 3, 8, 8, dtype=torch.uint8)).shape == (0, 512)


def test_bad_specs_are_rejected() -> None:
    with pytest.raises(SpecError, match="resize mode"):
        Preprocessing(size=8, resize="lanczos")
    with pytest.raises(SpecError, match="crop"):
        Preprocessing(size=8, crop="random")
    with pytest.raises(SpecError, match="together"):
        Preprocessing(size=8, mean=(0.5, 0.5, 0.5))
    base = fs.get("pixels-randproj").spec
    with pytest.raises(SpecError, match="name"):
        dataclasses.replace(base, name="two words")
    with pytest.raises(SpecError, match="dim"):
        dataclasses.replace(base, dim=0)


# ------------------------------------------------------------------------------------- preprocessing


def test_legacy_pytorch_resize_is_pytorch_fids() -> None:
    images = random_images(2, 40, 56)
    prep = Preprocessing(size=299, resize="legacy-pytorch", value_range=(-1.0, 1.0))
    # pytorch-fid: to [0, 1], bilinear (no antialias) to 299², then 2x − 1.
    expected = (
        2 * F.interpolate(images.float() / 255.0, size=(299, 299), mode="bilinear", align_corners=False) - 1
    )
    assert torch.allclose(fs.preprocess(images, prep), expected, atol=1e-5)


def test_clean_resize_is_clean_fids_pil_float_bicubic() -> None:
    from cleanfid.resize import make_resizer

    images = random_images(2, 40, 56)
    prep = Preprocessing(size=33, resize="clean", value_range=(0.0, 255.0))
    resizer = make_resizer("PIL", False, "bicubic", (33, 33))
    expected = np.stack([resizer(img.permute(1, 2, 0).numpy()) for img in images]).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(fs.preprocess(images, prep).numpy(), expected, rtol=0, atol=1e-4)


def test_bicubic_antialias_is_close_to_pil_and_differs_from_legacy() -> None:
    images = random_images(1, 96, 96)
    aa = fs.preprocess(images, Preprocessing(size=32, resize="bicubic-aa", value_range=(0.0, 255.0)))
    legacy = fs.preprocess(images, Preprocessing(size=32, resize="legacy-pytorch", value_range=(0.0, 255.0)))
    pil = np.stack(
        [
            np.asarray(
                Image.fromarray(c.numpy().astype(np.float32), mode="F").resize((32, 32), Image.BICUBIC)
            )
            for c in images[0]
        ]
    )
    assert float(np.abs(aa[0].numpy() - pil).max()) < 0.5  # same kernel family, float rounding apart
    assert float((aa - legacy).abs().max()) > 5.0  # the antialias choice matters on noise


def test_center_crop_and_normalisation() -> None:
    images = random_images(1, 30, 50)
    prep = Preprocessing(
        size=20,
        resize="bilinear-aa",
        crop="center",
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.25, 0.3),
        channels="BGR",
    )
    out = fs.preprocess(images, prep)
    resized = F.interpolate(
        images.float(), size=(20, 33), mode="bilinear", antialias=True, align_corners=False
    )
    cropped = resized[..., :, 6:26] / 255.0  # torchvision's offsets: round((33 − 20) / 2) = 6
    mean = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    assert torch.allclose(out, ((cropped - mean) / std).flip(1), atol=1e-5)


def test_rounding_rule_and_identity_at_target_size() -> None:
    images = random_images(1, 64, 64)
    same = fs.preprocess(images, Preprocessing(size=64, resize="bicubic-aa", value_range=(0.0, 255.0)))
    assert torch.equal(same, images.float())
    rounded = fs.preprocess(
        images, Preprocessing(size=21, resize="bicubic-aa", value_range=(0.0, 255.0), round_to_uint8=True)
    )
    assert torch.equal(rounded, rounded.round()) and float(rounded.min()) >= 0 and float(rounded.max()) <= 255
