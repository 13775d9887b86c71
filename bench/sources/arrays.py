"""Image sources backed by arrays: ADM-style `.npz` files, `.npy` files, and in-memory tensors or arrays."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import torch

from bench.hashing import sha256_file
from bench.sources.base import ImageSource
from bench.sources.names import display_path


def _as_channels_last(array: np.ndarray, where: str) -> np.ndarray:
    """Validate an N×H×W×3 (or N×3×H×W, or N×H×W grey) uint8 array; return a channels-last view of it."""
    if array.ndim == 2:
        raise ValueError(
            f"{where}: a 2-D array of shape {tuple(array.shape)} is not a batch of images "
            "(an (n, d) array of feature vectors is not an image source)"
        )
    if array.dtype != np.uint8:
        raise ValueError(f"{where}: images must be uint8, got {array.dtype}")
    if array.ndim == 3:  # grey: the three channels are views of one
        return np.broadcast_to(array[..., None], (*array.shape, 3))
    if array.ndim != 4:
        raise ValueError(f"{where}: expected N×H×W×3 images, got shape {tuple(array.shape)}")
    if array.shape[3] == 3:
        return array
    if array.shape[1] == 3:
        return array.transpose(0, 2, 3, 1)
    raise ValueError(f"{where}: expected 3 colour channels, got shape {tuple(array.shape)}")


class NpzSource(ImageSource):
    """Images stored as one uint8 array in an `.npz` (ADM's reference batches: `arr_0`, N×H×W×3)."""

    def __init__(self, path: str | Path, key: str = "arr_0") -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"npz file not found: {display_path(self.path)}")
        try:
            with np.load(self.path, allow_pickle=False) as bundle:
                if key not in bundle.files:
                    raise ValueError(
                        f"{display_path(self.path)} has no array {key!r} (arrays: {bundle.files})"
                    )
                images = bundle[key]
        except (OSError, EOFError, zipfile.BadZipFile) as error:
            raise ValueError(f"{display_path(self.path)} is not a readable .npz file: {error}") from None
        self._images = _as_channels_last(images, f"{display_path(self.path)}[{key}]")
        self.key = key
        self._manifest: dict | None = None

    def ids(self) -> list[str]:
        return [f"{index:06d}" for index in range(len(self._images))]

    def __len__(self) -> int:
        return len(self._images)

    def load(self, index: int) -> np.ndarray:
        return np.ascontiguousarray(self._images[index])

    def manifest(self) -> dict:
        if self._manifest is None:
            self._manifest = {
                "kind": "npz",
                "key": self.key,
                "size": self.path.stat().st_size,
                "sha256": sha256_file(self.path),
                "shape": list(self._images.shape),
            }
        return self._manifest


class NpySource(ImageSource):
    """Images stored as one uint8 array in a `.npy` file (N×H×W×3, N×3×H×W or N×H×W grey).

    The file is memory-mapped, so a large array is read image by image rather than all at once.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"npy file not found: {display_path(self.path)}")
        try:
            array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (OSError, EOFError, ValueError) as error:
            raise ValueError(f"{display_path(self.path)} is not a readable .npy array: {error}") from None
        self._images = _as_channels_last(array, display_path(self.path))
        self._manifest: dict | None = None

    def ids(self) -> list[str]:
        return [f"{index:06d}" for index in range(len(self._images))]

    def __len__(self) -> int:
        return len(self._images)

    def load(self, index: int) -> np.ndarray:
        return np.ascontiguousarray(self._images[index])

    def manifest(self) -> dict:
        if self._manifest is None:
            self._manifest = {
                "kind": "npy",
                "size": self.path.stat().st_size,
                "sha256": sha256_file(self.path),
                "shape": list(self._images.shape),
            }
        return self._manifest


class TensorSource(ImageSource):
    """Images held in memory: a uint8 tensor N×3×H×W, a uint8 array N×H×W×3, or a list of H×W×3 arrays."""

    def __init__(self, images, ids: list[str] | None = None) -> None:
        super().__init__()
        if isinstance(images, torch.Tensor):
            if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
                raise ValueError(f"expected a uint8 N×3×H×W tensor, got {images.dtype} {tuple(images.shape)}")
            self._images = list(images.detach().cpu().permute(0, 2, 3, 1).contiguous().numpy())
        elif isinstance(images, np.ndarray):
            self._images = list(_as_channels_last(images, "in-memory images"))
        else:
            self._images = [
                _as_channels_last(np.asarray(image)[None], "in-memory image")[0] for image in images
            ]
        if ids is not None and len(ids) != len(self._images):
            raise ValueError(f"{len(ids)} ids given for {len(self._images)} images")
        self._ids = list(ids) if ids is not None else [f"{i:06d}" for i in range(len(self._images))]
        self._manifest: dict | None = None

    def ids(self) -> list[str]:
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._images)

    def load(self, index: int) -> np.ndarray:
        return np.ascontiguousarray(self._images[index])

    def manifest(self) -> dict:
        if self._manifest is None:
            digest = hashlib.sha256()
            for image_id, image in zip(self._ids, self._images, strict=True):
                digest.update(f"{image_id}:{image.shape}".encode())
                digest.update(np.ascontiguousarray(image).tobytes())
            self._manifest = {"kind": "memory", "count": len(self._images), "sha256": digest.hexdigest()}
        return self._manifest
