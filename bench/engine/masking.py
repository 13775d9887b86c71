"""Where a run's region masks come from: label-map files beside the images, or the BiSeNet face parser.

A mask provider returns, for a batch, uint8 label maps (N×H×W, on the batch's device) in its own label
convention plus a per-image flag saying whether a label map exists for that image. Images without one are
left out of every region subset (they still count for "all").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from bench.hashing import sha256_file
from bench.masks import LabelConvention, find_label_map, get_convention, read_label_map


class MaskProvider(Protocol):
    """Anything that can produce label maps for a batch of images."""

    convention: LabelConvention

    def identity(self) -> dict[str, Any]:
        """What determines the label maps (enters cache keys)."""
        ...

    def labels(self, ids: list[str], images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 N×H×W label maps, bool N "has a label map") on the images' device."""
        ...


class ParserMasks:
    """Label maps from the BiSeNet face parser (79999_iter.pth), cached per image content."""

    def __init__(self, device: str | torch.device | None = None, input_size: int = 512) -> None:
        from bench.face_parser import FaceParser

        self.parser = FaceParser(device=device, input_size=input_size)
        self.convention = self.parser.convention

    def identity(self) -> dict[str, Any]:
        return {
            "kind": "bisenet-parser",
            "weights": self.parser.weights_sha256,
            "input": self.parser.input_size,
        }

    def labels(self, ids: list[str], images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = self.parser.parse(images)
        return maps, torch.ones(len(ids), dtype=torch.bool, device=images.device)


class FolderMasks:
    """Label-map PNGs in a folder, matched to images by basename, scaled with nearest-neighbour."""

    def __init__(self, folder: str | Path, convention: LabelConvention | str = "celebamask-hq") -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"mask folder not found: {self.folder}")
        self.convention = get_convention(convention)
        self.missing: list[str] = []

    def identity(self) -> dict[str, Any]:
        files = sorted(path for path in self.folder.rglob("*.png") if path.is_file())
        return {
            "kind": "folder",
            "convention": self.convention.name,
            "files": [[str(path.relative_to(self.folder)), sha256_file(path)] for path in files],
        }

    def labels(self, ids: list[str], images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = images.shape[-2:]
        maps = np.zeros((len(ids), height, width), dtype=np.uint8)
        present = np.zeros(len(ids), dtype=bool)
        for row, image_id in enumerate(ids):
            path = find_label_map(image_id, self.folder)
            if path is None:
                self.missing.append(image_id)
                continue
            maps[row] = read_label_map(path, size=(height, width), convention=self.convention).labels
            present[row] = True
        return torch.from_numpy(maps).to(images.device), torch.from_numpy(present).to(images.device)
