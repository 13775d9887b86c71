"""Label conventions, region unions (METHODS §3) and reading CelebAMask-HQ label maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bench.masks import (
    BISENET,
    CELEBAMASK_HQ,
    REGIONS,
    LabelConvention,
    convert_labels,
    find_label_map,
    read_annotation_layout,
    read_label_map,
    region_mask,
    region_present,
)

# The two numberings exactly as written in METHODS §3 (an independent restatement, not the module's table).
CELEBAMASK_IDS = {"background": 0, "skin": 1, "nose": 2, "eye_g": 3, "l_eye": 4, "r_eye": 5, "l_brow": 6,
                  "r_brow": 7, "l_ear": 8, "r_ear": 9, "mouth": 10, "u_lip": 11, "l_lip": 12, "hair": 13,
                  "hat": 14, "ear_r": 15, "neck_l": 16, "neck": 17, "cloth": 18}  # fmt: skip
BISENET_IDS = {"background": 0, "skin": 1, "l_brow": 2, "r_brow": 3, "l_eye": 4, "r_eye": 5, "eye_g": 6,
               "l_ear": 7, "r_ear": 8, "ear_r": 9, "nose": 10, "mouth": 11, "u_lip": 12, "l_lip": 13,
               "neck": 14, "neck_l": 15, "cloth": 16, "hair": 17, "hat": 18}  # fmt: skip
REGION_IDS_CELEBAMASK = {"Skin": {1}, "Eyes": {4, 5}, "Eyeglasses": {3}, "Eyes & Eyeglasses": {3, 4, 5},
                         "Nose": {2}, "Mouth & Lips": {10, 11, 12}, "Hair": {13}, "Hat": {14},
                         "Background": {0}, "Foreground": set(range(1, 19))}  # fmt: skip


def test_conventions_match_the_methods_page():
    assert {name: CELEBAMASK_HQ.id_of(name) for name in CELEBAMASK_IDS} == CELEBAMASK_IDS
    assert {name: BISENET.id_of(name) for name in BISENET_IDS} == BISENET_IDS
    with pytest.raises(ValueError, match="unknown face class"):
        CELEBAMASK_HQ.id_of("beard")
    with pytest.raises(ValueError, match="19 face classes"):
        LabelConvention("broken", ("background",) * 19)


def test_region_ids_by_name_in_both_conventions():
    labels = np.arange(19, dtype=np.uint8)[None, None, :]  # one pixel per label id
    for region, ids in REGION_IDS_CELEBAMASK.items():
        found = set(np.flatnonzero(region_mask(labels, CELEBAMASK_HQ, region)[0, 0]))
        assert found == ids, region
        names = {name for name, i in CELEBAMASK_IDS.items() if i in ids}
        bisenet_ids = {BISENET_IDS[name] for name in names}
        assert set(np.flatnonzero(region_mask(labels, BISENET, region)[0, 0])) == bisenet_ids, region
    assert region_mask(labels, "bisenet", "All").all()
    assert set(REGIONS) == {*REGION_IDS_CELEBAMASK, "All"}
    with pytest.raises(ValueError, match="unknown region"):
        region_mask(labels, BISENET, "Ears")


def test_same_picture_in_both_numberings_gives_same_regions():
    rng = np.random.default_rng(0)
    celebamask = rng.integers(0, 19, (3, 20, 20)).astype(np.uint8)
    bisenet = convert_labels(celebamask, CELEBAMASK_HQ, BISENET)
    np.testing.assert_array_equal(convert_labels(bisenet, BISENET, CELEBAMASK_HQ), celebamask)
    for region in REGIONS:
        np.testing.assert_array_equal(
            region_mask(celebamask, CELEBAMASK_HQ, region), region_mask(bisenet, BISENET, region)
        )
        tensor_mask = region_mask(torch.from_numpy(bisenet), BISENET, region)
        assert tensor_mask.dtype == torch.bool
        np.testing.assert_array_equal(tensor_mask.numpy(), region_mask(bisenet, BISENET, region))
    present = region_present(np.zeros((2, 4, 4), np.uint8), CELEBAMASK_HQ, "Hair")
    assert present.tolist() == [False, False]


def test_read_label_map_scales_with_nearest_neighbour(tmp_path):
    labels = np.array([[0, 1], [13, 18]], dtype=np.uint8)
    Image.fromarray(labels, "L").save(tmp_path / "img7.png")
    read = read_label_map(tmp_path / "img7.png", size=(4, 6))
    assert read.convention is CELEBAMASK_HQ
    np.testing.assert_array_equal(read.labels, np.repeat(np.repeat(labels, 2, axis=0), 3, axis=1))
    assert read.region("Hair").sum() == 6
    assert find_label_map(tmp_path / "photos" / "img7.jpg", tmp_path) == tmp_path / "img7.png"
    assert find_label_map(tmp_path / "img8.jpg", tmp_path) is None
    np.testing.assert_array_equal(read.to(BISENET).labels[0], [0, 0, 0, 1, 1, 1])


def test_read_label_map_rejects_bad_files(tmp_path):
    Image.fromarray(np.full((3, 3), 40, np.uint8), "L").save(tmp_path / "high.png")
    with pytest.raises(ValueError, match="0–18"):
        read_label_map(tmp_path / "high.png")
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="single-channel"):
        read_label_map(tmp_path / "rgb.png")
    with pytest.raises(FileNotFoundError, match="label map not found"):
        read_label_map(tmp_path / "none.png")


def test_annotation_layout_is_assembled_in_label_order(tmp_path):
    size = 8
    skin = np.zeros((size, size), np.uint8)
    skin[2:6, 2:6] = 255
    nose = np.zeros((size, size), np.uint8)
    nose[3:5, 3:5] = 255
    hair = np.zeros((size, size), np.uint8)
    hair[0:2, :] = 255
    (tmp_path / "0").mkdir()
    for tag, mask in {"skin": skin, "nose": nose, "hair": hair}.items():
        Image.fromarray(mask, "L").save(tmp_path / "0" / f"00042_{tag}.png")
    Image.fromarray(hair, "L").save(tmp_path / "0" / "00043_hair.png")  # another image: ignored
    read = read_annotation_layout(tmp_path, 42, size=(16, 16))
    expected = np.zeros((size, size), np.uint8)
    expected[skin > 0] = 1
    expected[nose > 0] = 2
    expected[hair > 0] = 13
    np.testing.assert_array_equal(read.labels, np.repeat(np.repeat(expected, 2, 0), 2, 1))
    with pytest.raises(FileNotFoundError, match="00099_"):
        read_annotation_layout(tmp_path, 99)


def test_ground_truth_masks_of_the_shared_data(shared_data):
    """The four CelebAMask-HQ GT maps: 512² label ids, left eye on the image right (PROVENANCE.md)."""
    folder = shared_data / "face_masks" / "celebamaskhq_maskgan_samples_gt"
    for index in range(4):
        label_map = read_label_map(folder / f"{index}.png", size=(1024, 1024))
        assert label_map.labels.shape == (1024, 1024)
        left_eye = np.argwhere(label_map.labels == 4)
        right_eye = np.argwhere(label_map.labels == 5)
        assert left_eye[:, 1].mean() > right_eye[:, 1].mean()
        assert 0.1 < label_map.region("Skin").mean() < 0.6
