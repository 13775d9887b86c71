"""OpenAI CLIP image towers through open_clip: ViT-B/32 (projected 512-d embedding, not normalised) and
ViT-L/14 at 336 px (projected 768-d embedding, L2-normalised: the CMMD features, METHODS §9).

Accepted weight files: OpenAI's ``ViT-B-32.pt`` and ``ViT-L-14-336px.pt`` (TorchScript archives whose
``state_dict()`` has the original CLIP keys: ``visual.conv1.weight``, ``visual.class_embedding``,
``visual.positional_embedding``, ``visual.transformer.resblocks.N.*``, ``visual.ln_post.*``,
``visual.proj``, ``transformer.*``, ``token_embedding.weight``, ``positional_embedding``, ``ln_final.*``,
``text_projection``, ``logit_scale``), or the same keys saved as a plain state dict or safetensors. Loaded
with open_clip's ``build_model_from_openai_state_dict`` (QuickGELU, as OpenAI trained it; the architecture
is read from the keys) and cast to float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from feature_spaces.weights import WeightsFormatError, read_state_dict

OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")


class ClipImageEmbedding(nn.Module):
    """CLIP's projected image embedding; with ``normalise`` divided by its L2 norm (unit vectors)."""

    def __init__(self, clip_model: nn.Module, normalise: bool = False):
        super().__init__()
        self.clip = clip_model
        self.normalise = normalise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embedding = self.clip.encode_image(x)
        return F.normalize(embedding, dim=-1) if self.normalise else embedding


def load_openai_clip(paths: Sequence[Path], normalise: bool = False) -> ClipImageEmbedding:
    """The CLIP model of an OpenAI checkpoint (architecture read from its keys), image tower in float32."""
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
    return ClipImageEmbedding(model.float(), normalise=normalise).eval()


def loader(spec, device, paths):
    return load_openai_clip(paths)


def normalised_loader(spec, device, paths):
    """For spaces whose feature is the unit-norm embedding (CMMD's clip-vit-l14-336)."""
    return load_openai_clip(paths, normalise=True)
