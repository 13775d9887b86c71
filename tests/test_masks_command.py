"""`fdbench masks SRC OUT`: label maps in the CelebAMask-HQ numbering, previews and a report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from bench.cli import main
from bench.commands.masks import label_file_name
from bench.masks import BISENET, CELEBAMASK_HQ, colour_overlay


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Keep manifest memos and parser caches out of the user's cache folder."""
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path / "cache"))


def test_label_maps_from_files_are_scaled_and_written(tmp_path, capsys):
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    labels_in = tmp_path / "labels_in"
    labels_in.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "sub/b", "c"):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / f"{name}.png")
    small = np.array([[0, 1], [13, 2]], dtype=np.uint8)
    Image.fromarray(small, "L").save(labels_in / "a.png")
    Image.fromarray(small[::-1].copy(), "L").save(labels_in / "b.png")
    # no label file for c
    out = tmp_path / "out"
    assert main(["masks", str(images), str(out), "--labels-from", str(labels_in)]) == 0
    written = np.asarray(Image.open(out / "labels" / "a.png"))
    np.testing.assert_array_equal(written, np.kron(small, np.ones((16, 16), dtype=np.uint8)))
    assert (out / "labels" / "sub" / "b.png").is_file() and (out / "preview" / "sub" / "b.jpg").is_file()
    report = json.loads((out / "masks.json").read_text())
    assert report["convention"] == "celebamask-hq" and report["written"] == 2
    assert report["missing_label_files"] == ["c.png"]
    assert "wrote 2 label maps" in capsys.readouterr().out


def test_parser_output_is_renumbered_to_celebamask_hq(tmp_path, monkeypatch):
    np.savez(tmp_path / "two.npz", arr_0=np.full((2, 48, 48, 3), 120, dtype=np.uint8))
    captured = {}

    class FakeParser:
        def __init__(self, **_kwargs):
            pass

        def parse(self, batch):
            import torch

            labels = torch.full((batch.shape[0], *batch.shape[2:]), BISENET.id_of("nose"), dtype=torch.uint8)
            captured["n"] = batch.shape[0]
            return labels

    monkeypatch.setattr("bench.face_parser.FaceParser", FakeParser)
    assert main(["masks", str(tmp_path / "two.npz"), str(tmp_path / "out"), "--no-preview"]) == 0
    written = np.asarray(Image.open(tmp_path / "out" / "labels" / "000001.png"))
    assert captured["n"] == 2 and set(np.unique(written)) == {CELEBAMASK_HQ.id_of("nose")}
    assert not (tmp_path / "out" / "preview").exists()


def test_user_errors(tmp_path, capsys):
    assert main(["masks", str(tmp_path / "absent"), str(tmp_path / "out")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "img").mkdir()
    assert (
        main(["masks", str(tmp_path / "img"), str(tmp_path / "o"), "--labels-from", str(tmp_path / "x")]) == 2
    )
    with pytest.raises(ValueError, match="outside"):
        label_file_name("../up.jpg")
    assert str(label_file_name("000003")) == "000003.png"


def test_colour_overlay_keeps_background():
    image = np.full((2, 2, 3), 100, dtype=np.uint8)
    labels = np.array([[0, 1], [13, 0]], dtype=np.uint8)
    out = colour_overlay(image, labels, CELEBAMASK_HQ, alpha=0.5)
    np.testing.assert_array_equal(out[0, 0], image[0, 0])
    np.testing.assert_array_equal(out[0, 1], [152, 50, 50])  # (100 + (204, 0, 0)) / 2


def test_annotation_layout_option(tmp_path):
    images = tmp_path / "CelebA-HQ-img"
    images.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(images / "2001.png")
    annotations = tmp_path / "CelebAMask-HQ-mask-anno" / "1"  # id 2001 lives in folder 2001 // 2000
    annotations.mkdir(parents=True)
    hair = np.zeros((16, 16), np.uint8)
    hair[:4] = 255
    Image.fromarray(hair, "L").save(annotations / "02001_hair.png")
    out = tmp_path / "out"
    args = ["masks", str(images), str(out), "--annotations", str(annotations.parent), "--no-preview"]
    assert main(args) == 0
    written = np.asarray(Image.open(out / "labels" / "2001.png"))
    assert written.shape == (32, 32)
    assert set(np.unique(written[:8])) == {13} and set(np.unique(written[8:])) == {0}
