"""Face-region label maps and the region unions of the F?D protocol (docs METHODS §3).

Two numberings of the same 19 face classes exist and must never be confused: CelebAMask-HQ's own label
maps and the BiSeNet parser's output. Every label map here travels with its `LabelConvention`, and regions
are unions of class *names*, translated to numbers through the convention, never written as numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CLASS_NAMES = frozenset(
    {
        "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
        "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
    }
)  # fmt: skip


@dataclass(frozen=True)
class LabelConvention:
    """A numbering of the face classes: `names[i]` is the class with label id i."""

    name: str
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if set(self.names) != CLASS_NAMES or len(self.names) != len(CLASS_NAMES):
            raise ValueError(f"label convention {self.name!r} must name each of the 19 face classes once")

    def id_of(self, class_name: str) -> int:
        """The label id of a class name in this convention."""
        try:
            return self.names.index(class_name)
        except ValueError:
            raise ValueError(f"unknown face class {class_name!r}; known: {sorted(CLASS_NAMES)}") from None

    def ids_of(self, class_names: frozenset[str] | set[str]) -> list[int]:
        """Label ids of several class names, sorted."""
        return sorted(self.id_of(name) for name in class_names)


CELEBAMASK_HQ = LabelConvention(
    "celebamask-hq",
    (
        "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
        "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
    ),
)  # fmt: skip
BISENET = LabelConvention(
    "bisenet",
    (
        "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
        "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
    ),
)  # fmt: skip
CONVENTIONS = {convention.name: convention for convention in (CELEBAMASK_HQ, BISENET)}

#: Region name -> union of class names. "Foreground" and "All" are computed, not listed.
REGIONS: dict[str, frozenset[str]] = {
    "Background": frozenset({"background"}),
    "Foreground": CLASS_NAMES - {"background"},
    "Skin": frozenset({"skin"}),
    "Eyes": frozenset({"l_eye", "r_eye"}),
    "Eyeglasses": frozenset({"eye_g"}),
    "Eyes & Eyeglasses": frozenset({"l_eye", "r_eye", "eye_g"}),
    "Nose": frozenset({"nose"}),
    "Mouth & Lips": frozenset({"mouth", "u_lip", "l_lip"}),
    "Hair": frozenset({"hair"}),
    "Hat": frozenset({"hat"}),
    "All": CLASS_NAMES,
}

# CelebAMask-HQ's per-class annotation files are named `{id:05d}_{class}.png`; its class tags.
_ANNOTATION_TAGS = tuple(CELEBAMASK_HQ.names[1:])


def get_convention(convention: LabelConvention | str) -> LabelConvention:
    """A convention object from itself or its name."""
    if isinstance(convention, LabelConvention):
        return convention
    try:
        return CONVENTIONS[convention]
    except KeyError:
        raise ValueError(f"unknown label convention {convention!r}; known: {sorted(CONVENTIONS)}") from None


def region_mask(labels, convention: LabelConvention | str, region: str):
    """Boolean mask (same shape as `labels`, N×H×W) of the pixels in `region`.

    Works on numpy arrays and torch tensors (on their device). "All" is the whole image, whatever the
    labels say.
    """
    convention = get_convention(convention)
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; known: {list(REGIONS)}")
    ids = convention.ids_of(REGIONS[region])
    if _is_torch(labels):
        import torch

        if region == "All":
            return torch.ones(labels.shape, dtype=torch.bool, device=labels.device)
        table = torch.zeros(256, dtype=torch.bool, device=labels.device)
        table[ids] = True
        return table[labels.long().clamp(0, 255)]
    labels = np.asarray(labels)
    if region == "All":
        return np.ones(labels.shape, dtype=bool)
    return np.isin(labels, ids)


DEFAULT_MIN_REGION_FRACTION = 0.001  # METHODS §3: a region is present when it covers ≥ 0.1 % of the image


def region_area_fraction(labels, convention: LabelConvention | str, region: str):
    """Per-image fraction (length N, float) of the pixels in `region` (numpy or torch, as given)."""
    mask = region_mask(labels, convention, region)
    if _is_torch(mask):
        return mask.flatten(1).float().mean(dim=1)
    return mask.reshape(mask.shape[0], -1).mean(axis=1)


def region_present(
    labels, convention: LabelConvention | str, region: str, min_fraction: float = DEFAULT_MIN_REGION_FRACTION
):
    """Per-image flag (length N): does `region` cover at least `min_fraction` of the image (and at least
    one pixel)? A stray pixel is not a hat."""
    fraction = region_area_fraction(labels, convention, region)
    return (fraction >= min_fraction) & (fraction > 0)


def convert_labels(labels, source: LabelConvention | str, target: LabelConvention | str):
    """Renumber a label map from one convention to another, class by class (by name)."""
    source, target = get_convention(source), get_convention(target)
    lookup = np.array([target.id_of(name) for name in source.names], dtype=np.uint8)
    if _is_torch(labels):
        import torch

        table = torch.as_tensor(lookup, device=labels.device)
        return table[labels.long()]
    labels = np.asarray(labels)
    _check_label_range(labels, "label map")
    return lookup[labels]


@dataclass
class LabelMap:
    """A label map (H×W uint8) together with the convention its numbers follow."""

    labels: np.ndarray
    convention: LabelConvention

    def region(self, region: str) -> np.ndarray:
        """Boolean H×W mask of a region."""
        return region_mask(self.labels[None], self.convention, region)[0]

    def to(self, convention: LabelConvention | str) -> LabelMap:
        """The same map renumbered into another convention."""
        convention = get_convention(convention)
        return LabelMap(convert_labels(self.labels, self.convention, convention), convention)


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale an H×W label map to (height, width) with nearest-neighbour (labels are never blended)."""
    height, width = size
    if labels.shape == (height, width):
        return labels
    return np.asarray(Image.fromarray(labels).resize((width, height), Image.Resampling.NEAREST))


def read_label_map(
    path: str | Path,
    size: tuple[int, int] | None = None,
    convention: LabelConvention | str = CELEBAMASK_HQ,
) -> LabelMap:
    """Read a single-channel PNG of label ids (0–18), optionally scaled to `size` = (height, width)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label map not found: {path}")
    with Image.open(path) as image:
        if image.mode not in ("L", "P", "I", "I;16"):
            raise ValueError(f"label map {path} has mode {image.mode}; expected a single-channel PNG")
        labels = np.asarray(image if image.mode in ("L", "P") else image.convert("I"))
    labels = labels.astype(np.int64)
    _check_label_range(labels, str(path))
    labels = labels.astype(np.uint8)
    if size is not None:
        labels = resize_labels(labels, size)
    return LabelMap(labels, get_convention(convention))


def find_label_map(image_path: str | Path, mask_folder: str | Path) -> Path | None:
    """The label map for an image: same basename (stem) with `.png` in `mask_folder`, if present."""
    image_path = Path(image_path)
    candidate = Path(mask_folder) / f"{image_path.stem}.png"
    if candidate.is_file():
        return candidate
    # UTKFace-style "x.jpg.chip.jpg" -> "x.jpg.chip.png" is covered by stem; try the full name too.
    alternative = Path(mask_folder) / f"{image_path.name}.png"
    return alternative if alternative.is_file() else None


def read_annotation_layout(
    folder: str | Path, image_id: int, size: tuple[int, int] | None = None
) -> LabelMap:
    """Assemble a CelebAMask-HQ label map from its per-class files `{id:05d}_{class}.png`.

    The release stores image k's files in subfolder `k // 2000` ("CelebAMask-HQ-mask-anno/0/00000_skin.png");
    that folder and `folder` itself are looked in first, then the whole tree. Classes are painted in
    CelebAMask-HQ label order, so a later class overwrites an earlier one where binary masks overlap, as
    the dataset's own `g_mask.py` does. A missing class file means the class is absent. Raises
    FileNotFoundError when no file at all exists for the id.
    """
    folder = Path(folder)
    prefix = f"{image_id:05d}_"
    files: dict[str, Path] = {}
    for place in (folder / str(image_id // 2000), folder):
        files = _annotation_files(place.glob(f"{prefix}*.png"), prefix)
        if files:
            break
    if not files:
        files = _annotation_files(folder.rglob(f"{prefix}*.png"), prefix)
    if not files:
        raise FileNotFoundError(f"no CelebAMask-HQ annotation files {prefix}<class>.png under {folder}")
    labels: np.ndarray | None = None
    for tag in _ANNOTATION_TAGS:
        if tag not in files:
            continue
        with Image.open(files[tag]) as image:
            binary = np.asarray(image.convert("L")) > 127
        if labels is None:
            labels = np.zeros(binary.shape, dtype=np.uint8)
        if binary.shape != labels.shape:
            raise ValueError(f"{files[tag]} is {binary.shape}, other class files are {labels.shape}")
        labels[binary] = CELEBAMASK_HQ.id_of(tag)
    assert labels is not None
    if size is not None:
        labels = resize_labels(labels, size)
    return LabelMap(labels, CELEBAMASK_HQ)


def _annotation_files(paths, prefix: str) -> dict[str, Path]:
    found = {}
    for path in paths:
        tag = path.name[len(prefix) : -len(".png")]
        if tag in _ANNOTATION_TAGS:
            found[tag] = path
    return found


def _check_label_range(labels: np.ndarray, where: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() > 18):
        raise ValueError(f"{where}: label ids must be 0–18, found {int(labels.min())}–{int(labels.max())}")


def _is_torch(value) -> bool:
    return type(value).__module__.startswith("torch")


#: Preview colours per class name (RGB), shared by every convention.
CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "background": (0, 0, 0), "skin": (204, 0, 0), "nose": (76, 153, 0), "eye_g": (204, 204, 0),
    "l_eye": (51, 51, 255), "r_eye": (204, 0, 204), "l_brow": (0, 255, 255), "r_brow": (255, 204, 204),
    "l_ear": (102, 51, 0), "r_ear": (255, 0, 0), "mouth": (102, 204, 0), "u_lip": (255, 255, 0),
    "l_lip": (0, 0, 153), "hair": (0, 0, 204), "hat": (255, 51, 153), "ear_r": (0, 204, 204),
    "neck_l": (0, 51, 0), "neck": (255, 153, 51), "cloth": (0, 204, 0),
}  # fmt: skip


def colour_overlay(
    image: np.ndarray, labels: np.ndarray, convention: LabelConvention | str, alpha: float = 0.5
) -> np.ndarray:
    """Blend class colours over an H×W×3 uint8 image (background left as is), for previews."""
    convention = get_convention(convention)
    palette = np.array([CLASS_COLOURS[name] for name in convention.names], dtype=np.float64)
    colours = palette[labels]
    blended = (1 - alpha) * image.astype(np.float64) + alpha * colours
    keep = labels == convention.id_of("background")
    blended[keep] = image[keep]
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)
