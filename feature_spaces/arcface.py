"""ArcFace/CosFace IResNet-34 (insightface ``arcface_torch``), 512-d identity embedding.

Accepted weight file: insightface's ``backbone.pth`` for ``glint360k_cosface_r34_fp16_0.1`` (or any
``r34`` arcface_torch backbone), a plain state dict with keys ``conv1.weight``, ``bn1.*``, ``prelu.weight``,
``layerK.N.{bn1,conv1,bn2,prelu,conv2,bn3}.*``, ``layerK.0.downsample.{0,1}.*``, ``bn2.*``, ``fc.*``
[512 × 25088] and ``features.*`` (BatchNorm1d). A ``module.`` prefix is stripped if present.
Input: a 112×112 aligned face crop scaled as (x − 127.5) / 127.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from feature_spaces.weights import load_strict, read_state_dict, strip_prefix, unwrap_state_dict


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """BN → conv → BN → PReLU → conv(stride) → BN, plus the (projected) identity."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = _conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = self.downsample(x) if self.downsample is not None else x
        return out + identity


class IResNet(nn.Module):
    """insightface's IResNet for 112×112 inputs; the output is the 512-d embedding."""

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), num_features: int = 512):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1])
        self.layer3 = self._make_layer(256, layers[2])
        self.layer4 = self._make_layer(512, layers[3])
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=0.0)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)

    def _make_layer(self, planes: int, blocks: int) -> nn.Sequential:
        downsample = nn.Sequential(
            nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=2, bias=False),
            nn.BatchNorm2d(planes, eps=1e-5),
        )
        layers = [IBasicBlock(self.inplanes, planes, 2, downsample)]
        self.inplanes = planes
        layers += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.bn2(x), 1)
        return self.features(self.fc(self.dropout(x)))


def load_iresnet34(paths: Sequence[Path]) -> IResNet:
    state = strip_prefix(unwrap_state_dict(read_state_dict(paths[0])), "module.")
    model = IResNet((3, 4, 6, 3))
    load_strict(model, state, paths[0])
    return model.eval()


def loader(spec, device, paths):
    return load_iresnet34(paths)
