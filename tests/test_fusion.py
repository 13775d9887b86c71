"""Inference rewrites keep the network's function: folded BatchNorms and absorbed pads against the
unmodified modules, and the fused EfficientNet-Lite0 against the package's own network on real faces."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

import feature_spaces as fs
from feature_spaces.fusion import absorb_symmetric_padding, fold_batchnorm
from feature_spaces.preprocess import preprocess
from tests.test_feature_spaces_offline import read_rgb, to_batch, utk_faces


def trained_batchnorm(channels: int, generator: torch.Generator) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels, eps=1e-3).double().eval()
    with torch.no_grad():
        norm.weight.copy_(torch.randn(channels, generator=generator, dtype=torch.float64))
        norm.bias.copy_(torch.randn(channels, generator=generator, dtype=torch.float64))
        norm.running_mean.copy_(torch.randn(channels, generator=generator, dtype=torch.float64))
        norm.running_var.copy_(torch.rand(channels, generator=generator, dtype=torch.float64) + 0.1)
    return norm


@pytest.mark.parametrize(("groups", "bias"), [(1, False), (1, True), (8, False)])
def test_folded_batchnorm_equals_conv_then_batchnorm(groups: int, bias: bool) -> None:
    generator = torch.Generator().manual_seed(groups + 10 * bias)
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=groups, bias=bias).double()
    norm = trained_batchnorm(8, generator)
    x = torch.randn(4, 8, 9, 9, generator=generator, dtype=torch.float64)
    expected = norm(conv(x))
    fold_batchnorm(conv, norm)
    torch.testing.assert_close(conv(x), expected, rtol=1e-12, atol=1e-12)


def test_symmetric_pad_becomes_the_convolutions_padding() -> None:
    generator = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(3, 4, 3).double()
    x = torch.randn(2, 3, 8, 8, generator=generator, dtype=torch.float64)
    pad = nn.ZeroPad2d((1, 1, 1, 1))
    expected = conv(pad(x))
    assert absorb_symmetric_padding(conv, pad)
    torch.testing.assert_close(conv(x), expected, rtol=0, atol=0)
    assert not absorb_symmetric_padding(nn.Conv2d(3, 4, 3, stride=2), nn.ZeroPad2d((0, 1, 0, 1)))


def test_fused_efficientnet_matches_the_package_network(shared_data: Path) -> None:
    from efficientnet_lite_pytorch import EfficientNet

    from feature_spaces.efficientnet import EfficientNetLitePooled
    from feature_spaces.weights import read_state_dict

    space = fs.get("efficientnet-lite0-imagenet")
    fused = space.load("cpu").model
    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(read_state_dict(space.weight_paths()[0]))
    plain = EfficientNetLitePooled(copy.deepcopy(net).eval()).eval()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    paths = utk_faces(shared_data, "female", 2) + utk_faces(shared_data, "male", 2)
    faces = to_batch([read_rgb(p) for p in paths])
    x = preprocess(faces, space.spec.preprocessing, torch.device("cpu"))
    with torch.inference_mode():
        expected, got = plain(x).double(), fused(x).double()
    assert float((got - expected).abs().max() / expected.abs().max()) < 1e-5
