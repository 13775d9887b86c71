"""dlib face machinery: descriptors in worker processes equal in-process ones, workers that die are
replaced by in-process computation, and the two face spaces share one landmark detector."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import feature_spaces as fs
from feature_spaces.dlib_pool import ENV_WORKERS, DescriptorComputer, face_workers
from feature_spaces.dlib_worker import describe
from feature_spaces.faces import DESCRIPTOR_CHIP, working_images
from tests.test_feature_spaces_offline import read_rgb, to_batch, utk_faces


@pytest.fixture(scope="module")
def chips(shared_data: Path) -> list[np.ndarray]:
    """Aligned 150² chips of six real faces (three men, three women), as dlib-face-id makes them."""
    import dlib

    space = fs.get("dlib-face-id")
    extractor = space.load("cpu")
    paths = utk_faces(shared_data, "male", 3) + utk_faces(shared_data, "female", 3)
    made = []
    for image in working_images(to_batch([read_rgb(p) for p in paths]), space.spec):
        shape = extractor.aligner.landmarks([image])[0]
        assert shape is not None
        made.append(dlib.get_face_chip(image, shape, size=DESCRIPTOR_CHIP, padding=0.25))
    return made


@pytest.fixture()
def model_path() -> Path:
    return Path(fs.get("dlib-face-id").weight_paths()[0])


def test_worker_descriptors_equal_in_process_ones(chips: list[np.ndarray], model_path: Path) -> None:
    computer = DescriptorComputer(model_path, workers=2)
    try:
        in_workers = computer(chips)
        odd_split = computer(chips[:5])  # 3 + 2 chips: a different split of the same faces
    finally:
        computer.close()
    alone = np.concatenate([describe(computer.encoder, [chip]) for chip in chips])
    assert in_workers.shape == (6, 128) and in_workers.dtype == np.float64
    np.testing.assert_array_equal(in_workers, alone)
    np.testing.assert_array_equal(odd_split, alone[:5])
    # Same person is < 0.6 apart, so six different people must not all collapse onto one point.
    assert np.linalg.norm(alone[0] - alone[3]) > 0.6


def test_dead_workers_are_replaced_by_in_process_computation(
    chips: list[np.ndarray], model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    computer = DescriptorComputer(model_path, workers=2)
    try:
        first = computer(chips)
        for process in computer._processes:
            process.kill()
            process.wait()
        with caplog.at_level(logging.WARNING, logger="fdbench.faces"):
            second = computer(chips)
    finally:
        computer.close()
    np.testing.assert_array_equal(first, second)
    assert computer.workers == 1
    assert "dlib worker processes failed" in caplog.text


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("1", 1), (" 3 ", 3)])
def test_worker_count_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: int
) -> None:
    monkeypatch.setenv(ENV_WORKERS, value)
    assert face_workers() == expected


@pytest.mark.parametrize("value", ["-1", "two", "1.5"])
def test_a_bad_worker_count_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(ENV_WORKERS, value)
    with pytest.raises(ValueError, match=ENV_WORKERS):
        face_workers()


def test_face_spaces_share_one_detector_and_detect_each_image_once(shared_data: Path) -> None:
    identity, attributes = fs.get("dlib-face-id").load("cpu"), fs.get("agegender").load("cpu")
    assert identity.aligner is attributes.aligner
    detector = identity.aligner.detector
    calls = []
    detect = detector.largest_faces
    detector.largest_faces = lambda images: calls.extend(images) or detect(images)
    try:
        # Fresh content: shift the pixels by one grey level so no earlier test remembered these images.
        batch = to_batch([read_rgb(p) for p in utk_faces(shared_data, "female", 2)])
        batch = torch.where(batch < 255, batch + 1, batch)
        landmarks = identity.prepare(batch)
        identity(batch)
        attributes(batch)
        attributes(torch.flip(batch, dims=[3]), landmarks)  # a perturbed copy reuses the clean landmarks
    finally:
        del detector.largest_faces
    assert len(calls) == 2


def test_small_faces_are_found_by_the_upsampled_hog_pass() -> None:
    """A face smaller than the HOG window in the working image needs the second (upsampled) pass."""
    from skimage import data as skdata

    from feature_spaces.faces import HogDetector

    space = fs.get("dlib-face-id")
    astronaut = (
        torch.nn.functional.interpolate(to_batch([skdata.astronaut()]).float(), size=(128, 128), mode="area")
        .round()
        .byte()
    )
    image = working_images(astronaut, space.spec)[0]
    assert HogDetector([0]).largest_faces([image]) == [None]
    assert HogDetector([0, 1]).largest_faces([image])[0] is not None


def test_chip_descriptors_equal_dlibs_own_full_image_call(shared_data: Path) -> None:
    """dlib-face-id cuts the 150² chip itself; dlib's full-image API (image + landmarks) must agree."""
    space = fs.get("dlib-face-id")
    extractor = space.load("cpu")
    batch = to_batch([read_rgb(p) for p in utk_faces(shared_data, "male", 2)])
    features = extractor(batch).double().numpy()
    for row, image in zip(features, working_images(batch, space.spec), strict=True):
        shape = extractor.aligner.landmarks([image])[0]
        padding = space.spec.extra["chip_padding"]
        direct = np.asarray(extractor.descriptors.encoder.compute_face_descriptor(image, shape, 0, padding))
        np.testing.assert_allclose(row, direct, rtol=0, atol=1e-6)  # float32 rows


def test_mtcnn_and_hog_find_the_same_face_and_bad_inputs_find_none() -> None:
    """Two independent detectors agree on the astronaut's face (box IoU > 0.5); an image smaller than
    MTCNN's smallest face yields no face instead of an error deep in facenet-pytorch."""
    from skimage import data as skdata

    from feature_spaces.faces import HogDetector, MtcnnDetector

    space = fs.get("dlib-face-id")
    image = np.ascontiguousarray(skdata.astronaut())
    mtcnn = MtcnnDetector(space.weight_paths()[2:])
    (box_a,), (box_b,) = mtcnn.largest_faces([image]), HogDetector([0, 1]).largest_faces([image])

    def area(box):
        return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])

    inner = (
        max(box_a[0], box_b[0]),
        max(box_a[1], box_b[1]),
        min(box_a[2], box_b[2]),
        min(box_a[3], box_b[3]),
    )
    assert area(inner) / (area(box_a) + area(box_b) - area(inner)) > 0.5
    assert mtcnn.largest_faces([image[:10, :10]]) == [None]
    with pytest.raises(ValueError, match="H×W×3"):
        mtcnn.largest_faces([image[:, :, 0]])
