"""Face spaces built on dlib: the dlib ResNet identity descriptor and the age/gender networks.

Both find and align the face the same way. The batch is resized to a declared working size (rounded back to
uint8, since dlib reads bytes); a face detector finds the largest face — MTCNN (facenet-pytorch's P-, R-
and O-Nets, the default) or dlib's HOG detector (at each declared upsampling in turn until it finds a
face) — and dlib's 5-point predictor, run in that box, gives the landmarks that align the face into the
chips the networks read.

Detection happens once, on the clean image (`prepare`): every perturbed copy of an image is aligned with
its clean image's landmarks, so a perturbation is measured by the features' response, never by the
detector's (METHODS §3). Landmarks are also remembered per image content, so the two spaces detect each
face once. An image with no detected face yields a NaN row; the extractor counts it (``n_skipped``) and
says why (``skip_reason``). It never raises for a face-less image.
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

DESCRIPTOR_CHIP = CHIP_SHAPE[0]  # the side of the aligned chip dlib's descriptor network reads
DETECTORS = ("mtcnn", "hog")
NO_FACE = {
    "mtcnn": "no face detected by MTCNN",
    "hog": "no face detected by dlib's HOG detector",
}


def _largest(boxes: Sequence[tuple[float, float, float, float]]) -> tuple[float, float, float, float] | None:
    """The box of largest area (ties: leftmost, then topmost), or None."""
    if not boxes:
        return None
    return max(boxes, key=lambda b: ((b[2] - b[0]) * (b[3] - b[1]), -b[0], -b[1]))


class HogDetector:
    """dlib's HOG frontal-face detector, tried at each upsampling in turn until it finds a face."""

    def __init__(self, upsamples: Sequence[int]):
        import dlib

        self.detector = dlib.get_frontal_face_detector()
        self.upsamples = tuple(int(u) for u in upsamples)

    def identity(self) -> tuple:
        return ("hog", self.upsamples)

    def largest_faces(self, images: Sequence[np.ndarray]) -> list[tuple[float, float, float, float] | None]:
        """(left, top, right, bottom) of each image's largest face, or None."""
        found = []
        for image in images:
            box = None
            for upsample in self.upsamples:
                rects = self.detector(image, upsample)
                if len(rects):
                    box = _largest([(r.left(), r.top(), r.right(), r.bottom()) for r in rects])
                    break
            found.append(box)
        return found


class MtcnnDetector:
    """facenet-pytorch's MTCNN (thresholds 0.6/0.7/0.7, scale factor 0.709, smallest face 20 px), one
    image at a time so a detection never depends on which other images share a batch."""

    def __init__(self, weight_paths: Sequence[Path], min_face_size: int = 20):
        from facenet_pytorch import MTCNN

        from feature_spaces.weights import read_state_dict

        self.model = MTCNN(min_face_size=min_face_size, keep_all=True, device=torch.device("cpu"))
        for network, path in zip(
            (self.model.pnet, self.model.rnet, self.model.onet), weight_paths, strict=True
        ):
            network.load_state_dict(read_state_dict(Path(path)))
        self.model.eval()
        self.min_face_size = min_face_size

    def identity(self) -> tuple:
        return ("mtcnn", self.min_face_size)

    def largest_faces(self, images: Sequence[np.ndarray]) -> list[tuple[float, float, float, float] | None]:
        found = []
        with torch.inference_mode():
            for image in images:
                if image.ndim != 3 or image.shape[2] != 3:
                    raise ValueError(f"MTCNN takes H×W×3 images, got shape {image.shape}")
                if min(image.shape[:2]) < self.min_face_size:  # no face this small can be found
                    found.append(None)
                    continue
                boxes, _ = self.model.detect(image[None])
                detected = boxes[0] if boxes is not None and boxes[0] is not None else []
                found.append(_largest([tuple(float(v) for v in box) for box in detected]))
        return found


class FaceAligner:
    """A face detector plus dlib's 5-point predictor in the detected box. The last ``remember`` images'
    landmarks are kept, keyed by content."""

    def __init__(self, detector: HogDetector | MtcnnDetector, predictor_path: Path, remember: int = 4096):
        import dlib

        self.detector = detector
        self.predictor = dlib.shape_predictor(str(predictor_path))
        self.remember = remember
        self._remembered: OrderedDict[bytes, Any] = OrderedDict()

    def landmarks(self, images: Sequence[np.ndarray]) -> list[Any]:
        """The 5-point shape of the largest face in each H×W×3 uint8 RGB image, or None."""
        import dlib

        keys = [
            hashlib.blake2b(i.tobytes(), digest_size=16).digest() + repr(i.shape).encode() for i in images
        ]
        found = {}
        for key in keys:
            if key in self._remembered:
                self._remembered.move_to_end(key)
                found[key] = self._remembered[key]
        unknown = [index for index, key in enumerate(keys) if key not in found]
        boxes = self.detector.largest_faces([images[index] for index in unknown])
        for index, box in zip(unknown, boxes, strict=True):
            shape = None
            if box is not None:
                shape = self.predictor(images[index], dlib.rectangle(*(round(v) for v in box)))
            found[keys[index]] = self._remembered[keys[index]] = shape
            if len(self._remembered) > self.remember:
                self._remembered.popitem(last=False)
        return [found[key] for key in keys]

    def forget(self) -> None:
        """Drop every remembered landmark set (the next call of each image detects again)."""
        self._remembered.clear()


_ALIGNERS: dict[tuple, FaceAligner] = {}


def shared_aligner(
    spec: FeatureSpaceSpec, predictor_path: Path, detector_paths: Sequence[Path]
) -> FaceAligner:
    """One aligner per (predictor file, detector settings) in this process, shared by every face space."""
    detector_name = spec.extra.get("detector", "hog")
    if detector_name not in DETECTORS:
        raise ValueError(
            f"feature space {spec.name!r}: unknown face detector {detector_name!r}; use {DETECTORS}"
        )
    if detector_name == "mtcnn":
        settings: tuple = ("mtcnn", tuple(str(Path(p).resolve()) for p in detector_paths))
    else:
        settings = ("hog", tuple(int(u) for u in spec.extra["detector_upsample"]))
    key = (str(Path(predictor_path).resolve()), settings)
    if key not in _ALIGNERS:
        detector = MtcnnDetector(detector_paths) if detector_name == "mtcnn" else HogDetector(settings[1])
        _ALIGNERS[key] = FaceAligner(detector, predictor_path)
    return _ALIGNERS[key]


def working_images(images: torch.Tensor, spec: FeatureSpaceSpec) -> list[np.ndarray]:
    """The batch at the declared working size as contiguous H×W×3 uint8 arrays (dlib's input)."""
    x = resize_and_crop(images, spec.preprocessing).round().clamp(0, 255).to("cpu", torch.uint8)
    return [np.ascontiguousarray(img.permute(1, 2, 0).numpy()) for img in x]


class FaceExtractor(Extractor):
    """The part both face spaces share: align once on the clean image, NaN rows without a face."""

    def __init__(
        self, spec: FeatureSpaceSpec, device: torch.device, predictor: Path, detector: Sequence[Path]
    ):
        super().__init__(spec, device)
        self.aligner = shared_aligner(spec, predictor, detector)
        self.no_face = NO_FACE[spec.extra.get("detector", "hog")]

    def prepare(self, images: torch.Tensor) -> list:
        """Landmarks of each clean image's largest face (None where there is none)."""
        return self.aligner.landmarks(working_images(images, self.spec))

    def extract(self, images: torch.Tensor, prepared: list | None = None) -> torch.Tensor:
        working = working_images(images, self.spec)
        shapes = self.aligner.landmarks(working) if prepared is None else prepared
        rows = np.full((images.shape[0], self.spec.dim), np.nan, dtype=np.float64)
        with_face = [index for index, shape in enumerate(shapes) if shape is not None]
        if with_face:
            rows[with_face] = self.describe([working[i] for i in with_face], [shapes[i] for i in with_face])
        self.record_skips(int(np.isnan(rows[:, 0]).sum()), self.no_face)
        return torch.from_numpy(rows).to(self.device, torch.float32)

    def describe(self, images: list[np.ndarray], shapes: list[Any]) -> np.ndarray:
        """Feature rows of faces given their working images and landmarks."""
        raise NotImplementedError


class DlibFaceIdExtractor(FaceExtractor):
    """128-d dlib ResNet face descriptors (same person ≈ Euclidean distance < 0.6), computed from aligned
    150² chips in worker processes (see `feature_spaces.dlib_pool`)."""

    def __init__(self, spec: FeatureSpaceSpec, device: torch.device, paths: Sequence[Path]):
        super().__init__(spec, device, paths[1], paths[2:])
        self.descriptors = DescriptorComputer(paths[0])

    def describe(self, images: list[np.ndarray], shapes: list[Any]) -> np.ndarray:
        import dlib

        padding = float(self.spec.extra["chip_padding"])
        chips = [
            dlib.get_face_chip(image, shape, size=DESCRIPTOR_CHIP, padding=padding)
            for image, shape in zip(images, shapes, strict=True)
        ]
        return self.descriptors(chips)


class AgeGenderExtractor(FaceExtractor):
    """Concatenated class probabilities of the Cydral gender (2: female, male) and age (81: 0…80 years)
    networks, each fed its own dlib-aligned chip (32² and 64², padding 0.2, (RGB − mean) / 256)."""

    GENDER_LABELS = ("female", "male")

    def __init__(self, spec: FeatureSpaceSpec, device: torch.device, paths: Sequence[Path]):
        import onnxruntime as ort

        super().__init__(spec, device, paths[2], paths[3:])
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

    def describe(self, images: list[np.ndarray], shapes: list[Any]) -> np.ndarray:
        return np.stack(
            [self._probabilities(image, shape) for image, shape in zip(images, shapes, strict=True)]
        )

    def _probabilities(self, image: np.ndarray, shape: Any) -> np.ndarray:
        """[p(female), p(male), p(age 0) … p(age 80)] of one aligned face."""
        import dlib

        padding = float(self.spec.extra["chip_padding"])
        gender_chip = dlib.get_face_chip(
            image, shape, size=int(self.spec.extra["gender_chip"]), padding=padding
        )
        age_chip = dlib.get_face_chip(image, shape, size=int(self.spec.extra["age_chip"]), padding=padding)
        gender = self.gender.run(None, {"images": self._chip_input(gender_chip)})[0][0]
        age = self.age.run(None, {"images": self._chip_input(age_chip)})[0][0]
        return np.concatenate([gender, age]).astype(np.float64)

    def probabilities(self, image: np.ndarray) -> np.ndarray | None:
        """[p(female), p(male), p(age 0) … p(age 80)] of one H×W×3 uint8 working image, or None (no face)."""
        shape = self.aligner.landmarks([image])[0]
        return None if shape is None else self._probabilities(image, shape)


def dlib_face_id_loader(spec, device, paths):
    return DlibFaceIdExtractor(spec, device, paths)


def agegender_loader(spec, device, paths):
    return AgeGenderExtractor(spec, device, paths)
