"""`fdbench fid`, the pytorch-fid drop-in, against pytorch-fid itself on the same weight file and images.

The FID Inception weights are not obtainable offline, so both tools read one randomly initialised
`FIDInceptionA…E` network saved under pytorch-fid's file name (its batch-norm statistics calibrated on
real faces, so the features have a healthy spread): fdbench through FDBENCH_WEIGHTS, pytorch-fid through
its torch-hub cache (TORCH_HOME). Images are real faces from the shared test data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import feature_spaces as fs
from bench.cli import build_parser, main

WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FACES = 16  # per folder: a few dozen images in all


@pytest.fixture(scope="module")
def setting(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Two folders of faces, the weight file where both tools look, a shared cache, and the registry's
    inception-fid with its sha256 pin dropped (random weights cannot match it), restored afterwards."""
    root = tmp_path_factory.mktemp("fid")
    faces = sorted((shared_data / "faces" / "utkface200_crop_part1").iterdir())
    folders = {"a": root / "a", "b": root / "b"}
    for index, folder in enumerate(folders.values()):
        folder.mkdir()
        for path in faces[index * FACES : (index + 1) * FACES]:
            shutil.copy(path, folder / path.name)
    weights = root / "weights"
    hub = root / "torch-home" / "hub" / "checkpoints"
    weights.mkdir()
    hub.mkdir(parents=True)
    state = calibrated_random_inception(faces[-3:])  # faces not in either folder
    torch.save(state, weights / WEIGHTS_NAME)
    torch.save(state, hub / WEIGHTS_NAME)
    original = fs.get("inception-fid")
    unpinned = tuple(dataclasses.replace(w, sha256=None) for w in original.spec.weights)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FDBENCH_WEIGHTS", str(weights))
        patch.setenv("FDBENCH_CACHE", str(root / "cache"))
        patch.setenv("FDBENCH_OFFLINE", "1")
        patch.setenv("TORCH_HOME", str(root / "torch-home"))
        fs.register(dataclasses.replace(original.spec, weights=unpinned), original.loader, replace=True)
        try:
            yield {**folders, "root": root}
        finally:
            fs.register(original.spec, original.loader, replace=True)
            for dims in (64, 192, 768):
                fs.unregister(f"inception-fid-{dims}")


def calibrated_random_inception(images: list[Path]) -> dict[str, torch.Tensor]:
    """A seeded random FID Inception whose batch-norm running statistics are those of a few real faces
    (one pass in training mode), so that activations neither vanish nor explode through the layers."""
    from PIL import Image

    from feature_spaces.inception import FIDInceptionV3

    torch.manual_seed(0)
    model = FIDInceptionV3()
    for layer in model.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.momentum = None  # running statistics = this batch's
    arrays = [np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) for path in images]
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    batch = torch.nn.functional.interpolate(batch, size=(299, 299), mode="bilinear") / 127.5 - 1.0
    model.train()
    with torch.no_grad():
        model(batch)
    return model.eval().state_dict()


def fdbench_fid(*argv: str) -> float:
    """Run `fdbench fid` in this process and return the number it prints as pytorch-fid does."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["fid", *argv]) == 0
    label, value = out.getvalue().split()
    assert label == "FID:"
    return float(value)


def pytorch_fid(paths: list[Path], dims: int) -> float:
    from pytorch_fid.fid_score import calculate_fid_given_paths

    return float(calculate_fid_given_paths([str(p) for p in paths], 50, "cpu", dims, num_workers=0))


@pytest.mark.slow
def test_folder_vs_folder_equals_pytorch_fid(setting: dict[str, Path]) -> None:
    ours = fdbench_fid(str(setting["a"]), str(setting["b"]), "--device", "cpu", "--dims", "64")
    theirs = pytorch_fid([setting["a"], setting["b"]], 64)
    assert theirs > 0.1  # the network separates the two folders: the comparison is not between zeros
    assert ours == pytest.approx(theirs, rel=1e-6)


@pytest.mark.slow
def test_saved_statistics_are_read_by_pytorch_fid_and_give_the_same_fid(setting: dict[str, Path]) -> None:
    from pytorch_fid.fid_score import calculate_frechet_distance, compute_statistics_of_path

    root = setting["root"]
    for name in ("a", "b"):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert (
                main(["fid", "--save-stats", str(setting[name]), str(root / f"{name}.npz"), "--dims", "64"])
                == 0
            )
    mu_a, sigma_a = compute_statistics_of_path(str(root / "a.npz"), None, 50, 64, "cpu")
    mu_b, sigma_b = compute_statistics_of_path(str(root / "b.npz"), None, 50, 64, "cpu")
    assert mu_a.shape == (64,) and sigma_a.shape == (64, 64)
    from_files = fdbench_fid(str(root / "a.npz"), str(root / "b.npz"), "--dims", "64")
    from_folders = fdbench_fid(str(setting["a"]), str(setting["b"]), "--dims", "64")
    mixed = fdbench_fid(str(setting["a"]), str(root / "b.npz"), "--dims", "64")
    assert from_files == pytest.approx(from_folders, rel=1e-9)  # the statistics route equals the folder route
    assert mixed == pytest.approx(from_folders, rel=1e-9)
    assert float(calculate_frechet_distance(mu_a, sigma_a, mu_b, sigma_b)) == pytest.approx(
        from_files, rel=1e-6
    )
    status = main(["fid", "--save-stats", str(setting["a"]), str(root / "a.npz"), "--dims", "64"])
    assert status == 2  # pytorch-fid too refuses to overwrite an existing output file


def test_every_pytorch_fid_flag_is_accepted() -> None:
    from pytorch_fid.fid_score import parser as theirs

    their_flags = {flag for action in theirs._actions for flag in action.option_strings if flag != "-h"}
    assert their_flags == {"--batch-size", "--num-workers", "--device", "--dims", "--save-stats", "--help"}
    argv = [
        "--batch-size",
        "7",
        "--num-workers",
        "3",
        "--device",
        "cpu",
        "--dims",
        "192",
        "--save-stats",
        "x",
        "y",
    ]
    args = build_parser().parse_args(["fid", *argv])
    theirs_parsed = theirs.parse_args(argv)
    for name in ("batch_size", "num_workers", "device", "dims", "save_stats", "path"):
        assert getattr(args, name) == getattr(theirs_parsed, name)
    defaults, their_defaults = build_parser().parse_args(["fid", "x", "y"]), theirs.parse_args(["x", "y"])
    for name in ("batch_size", "num_workers", "device", "dims", "save_stats"):
        assert getattr(defaults, name) == getattr(their_defaults, name)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fid", "--dims", "100", "x", "y"])  # the same four choices


def test_files_read_are_pytorch_fids(tmp_path: Path) -> None:
    """The folder's own files with pytorch-fid's extensions (lower case; no sub-folders)."""
    from pytorch_fid import fid_score

    from bench.commands.fid import PYTORCH_FID_EXTENSIONS, pytorch_fid_files

    assert set(PYTORCH_FID_EXTENSIONS) == fid_score.IMAGE_EXTENSIONS
    for name in ("b.png", "a.jpg", "c.JPG", "d.pgm", "e.txt", "f.webp", "g.jpeg.bak"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "h.png").write_bytes(b"")
    theirs = sorted(file for ext in fid_score.IMAGE_EXTENSIONS for file in tmp_path.glob(f"*.{ext}"))
    names, passed_over = pytorch_fid_files(tmp_path)
    assert names == [path.name for path in theirs] == ["a.jpg", "b.png", "d.pgm", "f.webp"]
    assert passed_over == 4  # c.JPG, e.txt, g.jpeg.bak and the sub-folder


def test_no_scipy_sqrtm_is_called(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """scipy 1.18 removed sqrtm's `disp` (pytorch-fid and clean-fid crash there): fdbench never calls it."""
    import scipy.linalg

    from bench.stats import GaussianStats

    def removed(*args, **kwargs):
        raise TypeError("sqrtm() got an unexpected keyword argument 'disp'")

    monkeypatch.setattr(scipy.linalg, "sqrtm", removed)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((80, 16)), rng.standard_normal((70, 16)) + 0.3
    GaussianStats.from_features(x).save_pytorch_fid(tmp_path / "x.npz")
    GaussianStats.from_features(y).save_pytorch_fid(tmp_path / "y.npz")
    value = fdbench_fid(str(tmp_path / "x.npz"), str(tmp_path / "y.npz"))
    from tests.oracles import fd_sqrtm_oracle

    monkeypatch.undo()
    oracle = fd_sqrtm_oracle(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert value == pytest.approx(oracle, rel=1e-9)


def test_image_reading_matches_pillow_convert_rgb_except_for_alpha() -> None:
    """pytorch-fid reads `Image.open(path).convert("RGB")`. fdbench's decoding gives the same pixels for
    RGB, grey, palette and CMYK files; an alpha channel is composited on black instead of dropped."""
    from PIL import Image

    from bench.decode import decode_image_bytes

    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    cases = {
        "RGB png": (rgb, "PNG"),
        "grey png": (rgb.convert("L"), "PNG"),
        "palette png": (rgb.convert("P"), "PNG"),
        "CMYK jpeg": (rgb.convert("CMYK"), "JPEG"),
        "RGB jpeg": (rgb, "JPEG"),
    }
    for label, (image, fmt) in cases.items():
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        data = buffer.getvalue()
        expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        np.testing.assert_array_equal(decode_image_bytes(data, label), expected, err_msg=label)
    translucent = rgb.convert("RGBA")
    translucent.putalpha(128)
    buffer = io.BytesIO()
    translucent.save(buffer, format="PNG")
    ours = decode_image_bytes(buffer.getvalue(), "RGBA png").astype(int)
    theirs = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")).astype(int)
    np.testing.assert_array_equal(ours, (theirs * 128 + 127) // 255)  # composited on black


@pytest.mark.slow
def test_every_dims_reads_pytorch_fids_block(setting: dict[str, Path]) -> None:
    """--dims 64, 192, 768 and 2048 read the blocks pytorch-fid's InceptionV3([block]) returns."""
    from PIL import Image
    from pytorch_fid.inception import InceptionV3

    from bench.commands.fid import DIMS
    from feature_spaces.inception import pytorch_fid_space

    pixels = np.asarray(Image.open(sorted(setting["a"].iterdir())[0]).convert("RGB"))
    batch = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].contiguous()
    with torch.no_grad():
        blocks = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[dims] for dims in DIMS]).eval()(
            batch.float() / 255
        )
    for dims, block in zip(DIMS, blocks, strict=True):
        theirs = torch.nn.functional.adaptive_avg_pool2d(block, 1).flatten(1)
        ours = fs.get(pytorch_fid_space(dims)).load("cpu")(batch)
        assert ours.shape == theirs.shape == (1, dims)
        assert float((ours - theirs).abs().max()) <= 1e-4 * float(theirs.abs().max()), dims
