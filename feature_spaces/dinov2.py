"""DINOv2 ViT-S/14, ViT-B/14 and ViT-L/14 (LVD-142M), CLS token after the final norm.

Accepted weight files: the official ``dinov2_vit{s,b,l}14_pretrain.pth``, plain state dicts with keys
``cls_token``, ``pos_embed`` [1, 1370, D] (a 37×37 grid for 518² inputs), ``mask_token`` (dropped),
``patch_embed.proj.*``, ``blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}.*``
and ``norm.*``. The network is timm's ViT with DINOv2 settings (layer scale, LayerNorm eps 1e-6) built
for 224² inputs; the position embedding is resampled once at load time with DINOv2's own formula
(bicubic, no antialias, scale factor (16 + 0.1) / 37), which is what DINOv2 computes on every 224² call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from feature_spaces.weights import WeightsFormatError, load_strict, read_state_dict

TIMM_NAMES = {
    "vits14": "vit_small_patch14_dinov2",
    "vitb14": "vit_base_patch14_dinov2",
    "vitl14": "vit_large_patch14_dinov2",
}
INPUT_SIZE = 224
PATCH = 14
INTERPOLATE_OFFSET = 0.1


def resample_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """DINOv2's ``interpolate_pos_encoding`` for a square ``grid``×``grid`` patch layout."""
    class_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:].float()
    n_old = patch_pos.shape[1]
    side = int(math.sqrt(n_old))
    if side * side != n_old:
        raise WeightsFormatError(f"pos_embed has {n_old} patch positions, not a square grid")
    if side == grid:
        return pos_embed
    dim = patch_pos.shape[-1]
    scale = (grid + INTERPOLATE_OFFSET) / side
    resized = F.interpolate(
        patch_pos.reshape(1, side, side, dim).permute(0, 3, 1, 2),
        scale_factor=(scale, scale),
        mode="bicubic",
        antialias=False,
    )
    if tuple(resized.shape[-2:]) != (grid, grid):
        raise WeightsFormatError(f"resampled position grid is {tuple(resized.shape[-2:])}, expected {grid}")
    resized = resized.permute(0, 2, 3, 1).reshape(1, grid * grid, dim)
    return torch.cat([class_pos.to(resized.dtype), resized], dim=1).to(pos_embed.dtype)


class DinoV2Cls(nn.Module):
    """A timm DINOv2 ViT returning the normalised CLS token."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.forward_features(x)[:, 0]


def build_dinov2(variant: str, img_size: int = INPUT_SIZE) -> nn.Module:
    import timm

    # Random init is skipped: every parameter is overwritten by the checkpoint.
    return timm.create_model(
        TIMM_NAMES[variant], pretrained=False, img_size=img_size, num_classes=0, weight_init="skip"
    )


def load_dinov2(variant: str, paths: Sequence[Path]) -> DinoV2Cls:
    state = read_state_dict(paths[0])
    state.pop("mask_token", None)
    if "pos_embed" not in state:
        raise WeightsFormatError(f"{paths[0]} has no pos_embed: not a DINOv2 ViT checkpoint")
    state["pos_embed"] = resample_pos_embed(state["pos_embed"], INPUT_SIZE // PATCH)
    vit = build_dinov2(variant)
    load_strict(vit, state, paths[0])
    return DinoV2Cls(vit).eval()


def make_loader(variant: str):
    def loader(spec, device, paths):
        return load_dinov2(variant, paths)

    return loader
