"""Spaces whose weights are not obtainable offline: the real loaders are exercised with randomly
initialised state dicts written in each upstream file's exact format (same keys, prefixes, containers),
loaded through the registry from a temporary FDBENCH_WEIGHTS folder. Inception is checked against
pytorch-fid's own network fed the same weight file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as skdata

import feature_spaces as fs
from feature_spaces import WeightsFormatError, WeightsHashError


@pytest.fixture
def weights_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FDBENCH_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FDBENCH_OFFLINE", "1")
    return tmp_path


@pytest.fixture(autouse=True)
def _forget_test_spaces():
    """Spaces registered by a test are removed after it, so the registry stays as shipped."""
    yield
    for name in fs.names():
        if name.startswith("test-"):
            fs.unregister(name)


def unverified_copy(name: str) -> fs.FeatureSpace:
    """The built-in space with its sha256 pins dropped (random test weights cannot match them),
    registered under a test name with the same loader."""
    space = fs.get(name)
    weights = tuple(dataclasses.replace(w, sha256=None) for w in space.spec.weights)
    spec = dataclasses.replace(space.spec, name=f"test-{name}", weights=weights)
    return fs.register(spec, space.loader, replace=True)


def astronaut(size: int | None = None) -> torch.Tensor:
    image = torch.from_numpy(skdata.astronaut().copy()).permute(2, 0, 1)[None]
    if size is not None:
        image = torch.nn.functional.interpolate(image.float(), size=(size, size), mode="area").round().byte()
    return image


def randomize_batchnorm(module: torch.nn.Module, seed: int = 0) -> None:
    """Give BN layers non-trivial running statistics so a wrong key mapping would show."""
    generator = torch.Generator().manual_seed(seed)
    for layer in module.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            layer.running_mean.copy_(torch.randn(layer.running_mean.shape, generator=generator) * 0.1)
            layer.running_var.copy_(torch.rand(layer.running_var.shape, generator=generator) + 0.5)


# ---------------------------------------------------------------------------------------------- inception


def pytorch_fid_reference(weight_file: Path, monkeypatch: pytest.MonkeyPatch) -> torch.nn.Module:
    """pytorch-fid's InceptionV3([3]) with its download replaced by reading ``weight_file``."""
    from pytorch_fid import inception as pfi

    monkeypatch.setattr(
        pfi, "load_state_dict_from_url", lambda *a, **k: torch.load(weight_file, weights_only=True)
    )
    return pfi.InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True).eval()


@pytest.fixture
def inception_file(weights_dir: Path) -> Path:
    from feature_spaces.inception import FIDInceptionV3

    torch.manual_seed(0)
    model = FIDInceptionV3()
    randomize_batchnorm(model)
    path = weights_dir / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.mark.slow
def test_inception_fid_matches_pytorch_fid(inception_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = pytorch_fid_reference(inception_file, monkeypatch)
    ours = unverified_copy("inception-fid").load("cpu")
    generator = torch.Generator().manual_seed(1)
    images = torch.cat(
        [astronaut(), torch.randint(0, 256, (1, 3, 512, 512), generator=generator, dtype=torch.uint8)]
    )
    features = ours(images)
    with torch.inference_mode():
        expected = reference(images.float() / 255.0)[0].squeeze(-1).squeeze(-1)
    assert features.shape == (2, 2048)
    assert torch.isfinite(features).all()
    assert float(expected.abs().max()) > 1e-3  # the comparison is not between two zero vectors
    assert float((features - expected).abs().max()) <= 1e-4


def test_inception_real_spec_rejects_a_file_with_the_wrong_hash(inception_file: Path) -> None:
    with pytest.raises(WeightsHashError, match="6726825d"):
        fs.get("inception-fid").load("cpu")


def test_inception_clean_variant_differs_only_in_resize(inception_file: Path) -> None:
    legacy, clean = fs.get("inception-fid").spec, fs.get("inception-fid-clean").spec
    assert legacy.spec_hash != clean.spec_hash
    assert dataclasses.replace(clean.preprocessing, resize="legacy-pytorch") == legacy.preprocessing
    extractor = unverified_copy("inception-fid-clean").load("cpu")
    assert extractor(astronaut(128)).shape == (1, 2048)


def test_inception_loader_names_missing_keys(weights_dir: Path) -> None:
    from feature_spaces.inception import FIDInceptionV3

    state = FIDInceptionV3().state_dict()
    del state["Mixed_7c.branch_pool.conv.weight"]
    torch.save(state, weights_dir / "pt_inception-2015-12-05-6726825d.pth")
    with pytest.raises(WeightsFormatError, match=r"Mixed_7c\.branch_pool\.conv\.weight"):
        unverified_copy("inception-fid").load("cpu")


# ------------------------------------------------------------------------------------------- ResNets


def torchvision_resnet_state(depth: int, num_classes: int = 1000) -> dict[str, torch.Tensor]:
    import torchvision

    torch.manual_seed(depth)
    model = {34: torchvision.models.resnet34, 50: torchvision.models.resnet50}[depth](num_classes=num_classes)
    randomize_batchnorm(model)
    return model.state_dict()


@pytest.mark.slow
def test_swav_r50_loads_the_module_prefixed_release_format(weights_dir: Path) -> None:
    state = {f"module.{k}": v for k, v in torchvision_resnet_state(50).items() if not k.startswith("fc.")}
    state["module.projection_head.0.weight"] = torch.randn(2048, 2048)
    state["module.prototypes.weight"] = torch.randn(3000, 128)
    torch.save(state, weights_dir / "swav_800ep_pretrain.pth.tar")
    features = unverified_copy("swav-r50").load("cpu")(astronaut(224))
    assert features.shape == (1, 2048) and torch.isfinite(features).all()


@pytest.mark.slow
def test_swav_ffhq_loads_a_swav_training_checkpoint(weights_dir: Path) -> None:
    backbone = {f"module.{k}": v for k, v in torchvision_resnet_state(50).items() if not k.startswith("fc.")}
    checkpoint = {"epoch": 400, "state_dict": backbone, "optimizer": {"state": {}, "param_groups": []}}
    torch.save(checkpoint, weights_dir / "swav_ffhq.pth")
    features = unverified_copy("swav-ffhq").load("cpu")(astronaut(224))
    assert features.shape == (1, 2048) and torch.isfinite(features).all()


def test_swav_rejects_a_checkpoint_missing_backbone_keys(weights_dir: Path) -> None:
    state = {f"module.{k}": v for k, v in torchvision_resnet_state(50).items() if not k.startswith("layer4.")}
    torch.save(state, weights_dir / "swav_ffhq.pth")
    with pytest.raises(WeightsFormatError, match="layer4"):
        unverified_copy("swav-ffhq").load("cpu")


def test_fairface_r34_loads_the_18_way_state_dict(weights_dir: Path) -> None:
    import torchvision

    state = torchvision_resnet_state(34, num_classes=18)
    torch.save(state, weights_dir / "res34_fair_align_multi_7_20190809.pt")
    extractor = unverified_copy("fairface-r34").load("cpu")
    image = astronaut(224)
    features = extractor(image)
    # Independent check: torchvision's ResNet-34 with fc removed, on the declared ImageNet preprocessing.
    reference = torchvision.models.resnet34(num_classes=18)
    reference.load_state_dict(state)
    reference.fc = torch.nn.Identity()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.inference_mode():
        expected = reference.eval()((image.float() / 255 - mean) / std)
    assert features.shape == (1, 512)
    assert torch.allclose(features, expected, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------------------- ArcFace


def test_arcface_r34_loads_an_insightface_backbone(weights_dir: Path) -> None:
    from feature_spaces.arcface import IResNet

    torch.manual_seed(3)
    model = IResNet((3, 4, 6, 3))
    randomize_batchnorm(model)
    state = model.state_dict()
    assert "layer1.0.downsample.0.weight" in state and "features.running_var" in state
    assert state["fc.weight"].shape == (512, 512 * 7 * 7)
    torch.save(state, weights_dir / "glint360k_cosface_r34_fp16_0.1_backbone.pth")
    features = unverified_copy("arcface-r34").load("cpu")(astronaut(112))
    assert features.shape == (1, 512) and torch.isfinite(features).all()


# ---------------------------------------------------------------------------------------------- DINOv2


def official_dinov2_state(variant: str) -> dict[str, torch.Tensor]:
    """A random DINOv2 checkpoint in the official layout: 518² position grid (37×37 + CLS), mask_token."""
    from feature_spaces.dinov2 import build_dinov2

    generator = torch.Generator().manual_seed(4)
    # The architecture is built without init (the loader overwrites everything); fill it with N(0, 0.02²).
    layout = build_dinov2(variant, img_size=518).state_dict()
    state = {k: torch.randn(v.shape, generator=generator) * 0.02 for k, v in layout.items()}
    state["mask_token"] = torch.zeros(1, state["cls_token"].shape[-1])
    assert state["pos_embed"].shape[1] == 37 * 37 + 1
    return state


@pytest.mark.parametrize(
    ("variant", "dim"),
    [
        ("vits14", 384),
        pytest.param("vitb14", 768, marks=pytest.mark.slow),
        pytest.param("vitl14", 1024, marks=pytest.mark.slow),
    ],
)
def test_dinov2_loads_the_official_checkpoint_layout(weights_dir: Path, variant: str, dim: int) -> None:
    torch.save(official_dinov2_state(variant), weights_dir / f"dinov2_{variant}_pretrain.pth")
    features = unverified_copy(f"dinov2-{variant}").load("cpu")(astronaut(224))
    assert features.shape == (1, dim) and torch.isfinite(features).all()


def test_dinov2_position_resampling_follows_the_official_formula() -> None:
    """Oracle: DINOv2's interpolate_pos_encoding written out with numpy-side bookkeeping."""
    from feature_spaces.dinov2 import resample_pos_embed

    generator = torch.Generator().manual_seed(5)
    pos = torch.randn(1, 1 + 37 * 37, 8, generator=generator)
    out = resample_pos_embed(pos, 16)
    grid = pos[:, 1:].reshape(1, 37, 37, 8).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(grid, scale_factor=(16.1 / 37, 16.1 / 37), mode="bicubic")
    expected = expected.permute(0, 2, 3, 1).reshape(1, 256, 8)
    assert out.shape == (1, 257, 8)
    assert torch.equal(out[:, 0], pos[:, 0])
    np.testing.assert_allclose(out[:, 1:].numpy(), expected.numpy(), rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------------- CLIP


class _Holder(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def module_holding(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A scriptable module whose state_dict() is exactly ``state`` (dotted keys become submodules)."""
    root = _Holder()
    for key, value in state.items():
        *path, leaf = key.split(".")
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, _Holder())
            module = getattr(module, part)
        module.register_buffer(leaf, value.clone())
    return root


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_clip_vit_b32_loads_openai_keys(weights_dir: Path) -> None:
    import open_clip

    torch.manual_seed(6)
    model = open_clip.create_model("ViT-B-32", pretrained=None, force_quick_gelu=True)
    state = model.state_dict()
    for key in ("visual.proj", "visual.class_embedding", "text_projection", "logit_scale"):
        assert key in state  # the OpenAI key layout
    state.update({"input_resolution": torch.tensor(224), "context_length": torch.tensor(77)})
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    # OpenAI ships a TorchScript archive (fp16) whose state_dict() carries these keys: write one.
    torch.jit.script(module_holding(half)).save(str(weights_dir / "ViT-B-32.pt"))
    extractor = unverified_copy("clip-vit-b32").load("cpu")
    image = astronaut(256)
    features = extractor(image)
    assert features.shape == (1, 512) and torch.isfinite(features).all()
    model.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    with torch.inference_mode():
        x = fs.preprocess(image, extractor.spec.preprocessing)
        expected = model.eval().encode_image(x)
    assert torch.allclose(features, expected, atol=1e-4, rtol=1e-4)
