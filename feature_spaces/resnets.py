"""ResNet spaces: SwAV (ImageNet and FFHQ), FairFace ResNet-34 and AugNet (imgsim) ResNet-50.

Accepted weight files (every backbone key is required; extra heads are ignored):

- ``swav_800ep_pretrain.pth.tar``: a flat state dict with ``module.``-prefixed torchvision ResNet-50 keys
  (``module.conv1.weight`` … ``module.layer4.2.bn3.running_var``) plus ``module.projection_head.*`` and
  ``module.prototypes.weight`` (ignored). SwAV's own ResNet pads the input by one and uses padding 2 in
  conv1; that is numerically torchvision's padding 3.
- ddpm-segmentation ``swav_checkpoints/ffhq.pth``: a SwAV training checkpoint, ``{"state_dict": {...},
  "epoch": ..., ...}`` whose state dict has the same ``module.``-prefixed keys as above; a bare state dict
  is accepted too.
- FairFace ``res34_fair_align_multi_7_20190809.pt``: torchvision ResNet-34 keys with ``fc`` replaced by
  an 18-way ``Linear(512, 18)`` (7 race + 2 gender + 9 age); a ``module.`` prefix is stripped if present.
- imgsim ``model.pth``: ``module.pre.*`` torchvision ResNet-50 keys with ``pre.fc`` = ``Linear(2048, 768)``;
  the feature is ``tanh(pre(x))`` (768-d).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from feature_spaces.weights import load_strict, read_state_dict, strip_prefix, unwrap_state_dict


def _resnet(depth: int, num_classes: int = 1000) -> nn.Module:
    import torchvision

    build = {34: torchvision.models.resnet34, 50: torchvision.models.resnet50}[depth]
    return build(weights=None, num_classes=num_classes)


class PooledBackbone(nn.Module):
    """A torchvision ResNet read out after global average pooling (the fc layer is kept but unused)."""

    def __init__(self, resnet: nn.Module):
        super().__init__()
        self.resnet = resnet

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.resnet
        x = r.maxpool(r.relu(r.bn1(r.conv1(x))))
        x = r.layer4(r.layer3(r.layer2(r.layer1(x))))
        return torch.flatten(r.avgpool(x), 1)


def load_swav_resnet50(paths: Sequence[Path]) -> nn.Module:
    """SwAV ResNet-50 backbone from an official or ddpm-segmentation checkpoint (see module doc)."""
    state = strip_prefix(unwrap_state_dict(read_state_dict(paths[0])), "module.")
    resnet = _resnet(50)
    resnet.fc = nn.Identity()
    load_strict(resnet, state, paths[0], ignore=("projection_head.", "prototypes.", "fc."))
    return PooledBackbone(resnet).eval()


def load_fairface_resnet34(paths: Sequence[Path]) -> nn.Module:
    """FairFace ResNet-34 (18-way head), read out at the 512-d penultimate layer."""
    state = strip_prefix(unwrap_state_dict(read_state_dict(paths[0])), "module.")
    resnet = _resnet(34, num_classes=18)
    load_strict(resnet, state, paths[0])
    return PooledBackbone(resnet).eval()


class AugNet(nn.Module):
    """imgsim's network: ResNet-50 whose fc maps 2048 → 768, followed by tanh."""

    def __init__(self) -> None:
        super().__init__()
        self.pre = _resnet(50)
        self.pre.fc = nn.Linear(2048, 768)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.pre(x))


def load_augnet(paths: Sequence[Path]) -> nn.Module:
    state = strip_prefix(read_state_dict(paths[0]), "module.")
    model = AugNet()
    load_strict(model, state, paths[0])
    return model.eval()


def swav_loader(spec, device, paths):
    return load_swav_resnet50(paths)


def fairface_loader(spec, device, paths):
    return load_fairface_resnet34(paths)


def augnet_loader(spec, device, paths):
    return load_augnet(paths)
