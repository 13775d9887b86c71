"""Face spaces built on dlib: the dlib ResNet identity descriptor and the age/gender networks.

Both find the face the same way: the batch is resized to a declared working size (rounded back to uint8,
since dlib reads bytes), dlib's HOG frontal-face detector runs on each image at each declared upsampling in
turn until it finds a face (0 first: a face filling the 256² image is found at its own scale four times
faster; then 1 for faces smaller than the detector's 80² window), the largest detection is kept, and
dlib's 5-point predictor gives the landmarks that align the face. Landmarks are remembered per image
content, so the two spaces detect each face once. An image with no detected face yields a NaN row; the
extractor counts it (``n_skipped``) and says why (``skip_reason``). It never raises for a face-less image.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from feature_spaces.dlib_pool import DescriptorComputer
from feature_spaces.dlib_worker import CHIP_SHAPE
from feature_spaces.extractor import Extractor
from feature_spaces.preprocess import resize_and_crop
from feature_spaces.spec import FeatureSpaceSpec

NO_FACE = "no face detected by dlib's HOG detector"
DESCRIPTOR_CHIP = CHIP_SHAPE[0]  # the side of the aligned chip dlib's descriptor network reads


class DlibFaceAligner:
    """HOG detection at each of ``upsamples`` until a face is found, then 5-point landmarks of the largest
    face. The last ``remember`` images' landmarks are kept, keyed by content."""

    def __init__(self, predictor_path: Path, upsamples: Sequence[int], remember: int = 4096):
        import dlib

        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(predictor_path))
        self.upsamples = tuple(int(u) for u in upsamples)
        self.remember = remember
        self._remembered: OrderedDict[bytes, Any] = OrderedDict()

    def landmarks(self, image: np.ndarray) -> Any:
        """The 5-point shape of the largest face in an H×W×3 uint8 RGB image, or None."""
        key = hashlib.blake2b(image.tobytes(), digest_size=16).digest() + repr(image.shape).encode()
        if key in self._remembered:
            self._remembered.move_to_end(key)
            return self._remembered[key]
        shape = self._detect(image)
        self._remembered[key] = shape
        if len(self._remembered) > self.remember:
            self._remembered.popitem(last=False)
        return shape

    def forget(self) -> None:
        """Drop every remembered landmark set (the next call of each image detects again)."""
        self._remembered.clear()

    def _detect(self, image: np.ndarray) -> Any:
        for upsample in self.upsamples:
            boxes = self.detector(image, upsample)
            if len(boxes):
                box = max(boxes, key=lambda b: (b.width() * b.height(), -b.left(), -b.top()))
                return self.predictor(image, box)
        return None


_ALIGNERS: dict[tuple[str, tuple[int, ...]], DlibFaceAligner] = {}


def shared_aligner(predictor_path: Path, upsamples: Sequence[int]) -> DlibFaceAligner:
    """One aligner per (predictor file, upsamplings) in this process, shared by every face space."""
    key = (str(Path(predictor_path).resolve()), tuple(int(u) for u in upsamples))
    if key not in _ALIGNERS:
        _ALIGNERS[key] = DlibFaceAligner(predictor_path, key[1])
    return _ALIGNERS[key]


def working_images(images: torch.Tensor, spec: FeatureSpaceSpec) -> list[np.ndarray]:
    """The batch at the declared working size as contiguous H×W×3 uint8 arrays (dlib's input)."""
    x = resize_and_crop(images, spec.preprocessing).round().clamp(0, 255).to("cpu", torch.uint8)
    return [np.ascontiguousarray(img.permute(1, 2, 0).numpy()) for img in x]


class DlibFaceIdExtractor(Extractor):
    """128-d dlib ResNet face descriptors (same person ≈ Euclidean distance < 0.6), computed from aligned
    150² chips in worker processes (see `feature_spaces.dlib_pool`)."""

    def __init__(self, spec: FeatureSpaceSpec, device: torch.device, paths: Sequence[Path]):
        super().__init__(spec, device)
        self.aligner = shared_aligner(paths[1], spec.extra["detector_upsample"])
        self.descriptors = DescriptorComputer(paths[0])

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        import dlib

        rows = np.full((images.shape[0], self.spec.dim), np.nan, dtype=np.float64)
        padding = float(self.spec.extra["chip_padding"])
        chips, with_face = [], []
        for i, image in enumerate(working_images(images, self.spec)):
            shape = self.aligner.landmarks(image)
            if shape is not None:
                chips.append(dlib.get_face_chip(image, shape, size=DESCRIPTOR_CHIP, padding=padding))
                with_face.append(i)
        if chips:
            rows[with_face] = self.descriptors(chips)
        self.record_skips(int(np.isnan(rows[:, 0]).sum()), NO_FACE)
        return torch.from_numpy(rows).to(self.device, torch.float32)


class AgeGenderExtractor(Extractor):
    """Concatenated class probabilities of the Cydral gender (2: female, male) and age (81: 0…80 years)
    networks, each fed its own dlib-aligned chip (32² and 64², padding 0.2, (RGB − mean) / 256)."""

    GENDER_LABELS = ("female", "male")

    def __init__(self, spec: FeatureSpaceSpec, device: torch.device, paths: Sequence[Path]):
        import onnxruntime as ort

        super().__init__(spec, device)
        self.aligner = shared_aligner(paths[2], spec.extra["detector_upsample"])
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        self.gender = ort.InferenceSession(str(paths[0]), options, providers=providers)
        self.age = ort.InferenceSession(str(paths[1]), options, providers=providers)
        self.means = np.asarray(spec.extra["channel_means"], dtype=np.float32)

    def _chip_input(self, chip: np.ndarray) -> np.ndarray:
        values = chip.astype(np.float32)
        values -= self.means
        values /= np.float32(256.0)
        return np.ascontiguousarray(values.transpose(2, 0, 1)[None])

    def probabilities(self, image: np.ndarray) -> np.ndarray | None:
        """[p(female), p(male), p(age 0) … p(age 80)] for one H×W×3 uint8 image, or None if no face."""
        import dlib

        shape = self.aligner.landmarks(image)
        if shape is None:
            return None
        padding = float(self.spec.extra["chip_padding"])
        gender_chip = dlib.get_face_chip(
            image, shape, size=int(self.spec.extra["gender_chip"]), padding=padding
        )
        age_chip = dlib.get_face_chip(image, shape, size=int(self.spec.extra["age_chip"]), padding=padding)
        gender = self.gender.run(None, {"images": self._chip_input(gender_chip)})[0][0]
        age = self.age.run(None, {"images": self._chip_input(age_chip)})[0][0]
        return np.concatenate([gender, age]).astype(np.float64)

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        rows = np.full((images.shape[0], self.spec.dim), np.nan, dtype=np.float64)
        for i, image in enumerate(working_images(images, self.spec)):
            probs = self.probabilities(image)
            if probs is not None:
                rows[i] = probs
        self.record_skips(int(np.isnan(rows[:, 0]).sum()), NO_FACE)
        return torch.from_numpy(rows).to(self.device, torch.float32)


def dlib_face_id_loader(spec, device, paths):
    return DlibFaceIdExtractor(spec, device, paths)


def agegender_loader(spec, device, paths):
    return AgeGenderExtractor(spec, device, paths)
