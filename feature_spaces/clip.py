"""CLIP ViT-B/32 (OpenAI weights) through open_clip; the projected 512-d image embedding (not normalised).

Accepted weight files: OpenAI's ``ViT-B-32.pt`` (a TorchScript archive whose ``state_dict()`` has the
original CLIP keys: ``visual.conv1.weight``, ``visual.class_embedding``, ``visual.positional_embedding``,
``visual.transformer.resblocks.N.*``, ``visual.ln_post.*``, ``visual.proj``, ``transformer.*``,
``token_embedding.weight``, ``positional_embedding``, ``ln_final.*``, ``text_projection``,
``logit_scale``), or the same keys saved as a plain state dict or safetensors. Loaded with open_clip's
``build_model_from_openai_state_dict`` (QuickGELU, as OpenAI trained it) and cast to float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from feature_spaces.weights import WeightsFormatError, read_state_dict

OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")


class ClipImageEmbedding(nn.Module):
    def __init__(self, clip_model: nn.Module):
        super().__init__()
        self.clip = clip_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(x)


def load_openai_clip(paths: Sequence[Path]) -> ClipImageEmbedding:
    from open_clip.model import build_model_from_openai_state_dict

    state = read_state_dict(paths[0], "torchscript")
    for key in OPENAI_EXTRA_KEYS:
        state.pop(key, None)
    if "visual.proj" not in state:
        raise WeightsFormatError(f"{paths[0]} is not an OpenAI CLIP ViT state dict (no visual.proj)")
    try:
        model = build_model_from_openai_state_dict(state, quick_gelu=True, cast_dtype=None)
    except (KeyError, RuntimeError) as error:
        raise WeightsFormatError(f"{paths[0]} does not match the CLIP ViT layout: {error}") from error
    return ClipImageEmbedding(model.float()).eval()


def loader(spec, device, paths):
    return load_openai_clip(paths)
