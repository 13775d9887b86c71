"""The spaces whose real weights are on this machine, on real faces and public-domain images:
declared dimension, finite values, determinism across runs and batch sizes, and semantics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

import feature_spaces as fs

OFFLINE_SPACES = [
    "efficientnet-lite0-imagenet",
    "augnet-r50",
    "dlib-face-id",
    "agegender",
    "spectrum-durall",
    "pixels-randproj",
]
FACE_SPACES = {"dlib-face-id", "agegender"}

# UTKFace file names encode age_gender(0 male, 1 female)_race_timestamp.
UTK = "faces/utkface200_crop_part1"


def to_batch(arrays: list[np.ndarray]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1) for a in arrays])


def read_rgb(path: Path, size: int | None = None) -> np.ndarray:
    with Image.open(path) as image:
        image = image.convert("RGB")
        if size is not None and image.size != (size, size):
            image = image.resize((size, size), Image.BICUBIC)
        return np.asarray(image).copy()


def utk_faces(root: Path, gender: str, count: int) -> list[Path]:
    code = {"male": "0", "female": "1"}[gender]
    files = sorted(p for p in (root / UTK).glob("*.jpg") if p.name.split("_")[1] == code)
    adults = [p for p in files if 20 <= int(p.name.split("_")[0]) <= 60]
    return adults[:count]


@pytest.fixture(scope="module")
def faces(shared_data: Path) -> torch.Tensor:
    """Two real adult faces at 200² (a man, a woman) and the astronaut resized to 200²."""
    paths = utk_faces(shared_data, "male", 1) + utk_faces(shared_data, "female", 1)
    arrays = [read_rgb(p) for p in paths]
    arrays.append(np.asarray(Image.fromarray(skdata.astronaut()).resize((200, 200), Image.BICUBIC)))
    return to_batch(arrays)


def relative_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    mask = torch.isfinite(a[:, 0]) & torch.isfinite(b[:, 0])
    a, b = a[mask].double(), b[mask].double()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


@pytest.mark.parametrize("name", OFFLINE_SPACES)
def test_offline_space_is_available_here(name: str) -> None:
    status = fs.available()[name]
    assert status.ok, status.reason


@pytest.mark.slow
@pytest.mark.parametrize("name", OFFLINE_SPACES)
def test_offline_space_on_real_faces(name: str, faces: torch.Tensor) -> None:
    extractor = fs.get(name).load("cpu")
    first = extractor(faces)
    assert first.dtype == torch.float32
    assert first.shape == (faces.shape[0], fs.get(name).spec.dim)
    found = torch.isfinite(first).all(dim=1)
    if name in FACE_SPACES:
        assert int(found.sum()) >= faces.shape[0] - 1, extractor.skip_reason
        assert torch.isnan(first[~found]).all()  # a missing face is a whole NaN row
    else:
        assert bool(found.all())
    single = extractor(faces[:1])
    split = torch.cat([single, extractor(faces[1:])])  # other batch sizes, second run
    assert relative_gap(split, first) <= 1e-5
    assert torch.equal(torch.isfinite(split), torch.isfinite(first))
    assert relative_gap(extractor(faces[:1]), single) <= 1e-6  # same call again


def test_loaded_models_are_cached_per_process() -> None:
    assert fs.get("pixels-randproj").load("cpu") is fs.get("pixels-randproj").load("cpu")


@pytest.mark.slow
def test_efficientnet_lite0_labels_coffee_as_espresso_like() -> None:
    extractor = fs.get("efficientnet-lite0-imagenet").load("cpu")
    image = to_batch([skdata.coffee()])
    x = fs.preprocess(image, extractor.spec.preprocessing)
    with torch.inference_mode():
        probabilities = extractor.model.logits(x).softmax(dim=1)[0]
    espresso_like = {967: "espresso", 968: "cup", 504: "coffee mug"}
    assert int(probabilities.argmax()) in espresso_like
    assert float(probabilities[list(espresso_like)].sum()) > 0.5


def test_dlib_identity_mirror_close_strangers_far(shared_data: Path) -> None:
    extractor = fs.get("dlib-face-id").load("cpu")
    man, woman = utk_faces(shared_data, "male", 1)[0], utk_faces(shared_data, "female", 1)[0]
    batch = to_batch([read_rgb(man), read_rgb(woman)])
    features = extractor(batch).double()
    mirrored = extractor(batch.flip(-1)).double()
    assert torch.isfinite(features).all() and torch.isfinite(mirrored).all(), extractor.skip_reason
    assert float((features - mirrored).norm(dim=1).max()) < 0.6
    assert float((features[0] - features[1]).norm()) > 0.6


def test_face_spaces_mark_faceless_images_without_crashing() -> None:
    generator = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (1, 3, 128, 128), generator=generator, dtype=torch.uint8)
    flat = torch.full((1, 3, 128, 128), 128, dtype=torch.uint8)
    astronaut = (
        torch.nn.functional.interpolate(to_batch([skdata.astronaut()]).float(), size=(128, 128), mode="area")
        .round()
        .byte()
    )
    for name in ("dlib-face-id", "agegender"):
        extractor = fs.get(name).load("cpu")
        before = extractor.n_skipped
        features = extractor(torch.cat([noise, astronaut, flat]))
        assert torch.isnan(features[0]).all() and torch.isnan(features[2]).all()
        assert torch.isfinite(features[1]).all()
        assert extractor.n_skipped - before == 2
        assert extractor.skip_reason is not None and "2 image(s)" in extractor.skip_reason


def test_agegender_calls_the_astronaut_female() -> None:
    extractor = fs.get("agegender").load("cpu")
    features = extractor(to_batch([skdata.astronaut()]))[0].double()
    assert torch.isfinite(features).all()
    p_female, p_male = float(features[0]), float(features[1])
    assert p_female > 0.5 > p_male
    assert abs(p_female + p_male - 1.0) < 1e-3 and abs(float(features[2:].sum()) - 1.0) < 1e-3


# ----------------------------------------------------------------------------------- spectrum (oracle)


def durall_reference(rgb_uint8: np.ndarray) -> np.ndarray:
    """Durall et al.'s published azimuthalAverage recipe in float64 numpy (argsort + cumsum)."""
    gray = rgb_uint8.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    spectrum = np.fft.fftshift(np.fft.fft2(gray)) + 1e-8
    magnitude = 20 * np.log(np.abs(spectrum))
    y, x = np.indices(magnitude.shape)
    center = np.array([(x.max() - x.min()) / 2.0, (y.max() - y.min()) / 2.0])
    r = np.hypot(x - center[0], y - center[1])
    order = np.argsort(r.flat, kind="stable")
    r_int = r.flat[order].astype(int)
    values = magnitude.flat[order]
    edges = np.where(r_int[1:] - r_int[:-1])[0]
    counts = edges[1:] - edges[:-1]
    cumulative = np.cumsum(values, dtype=float)
    return (cumulative[edges[1:]] - cumulative[edges[:-1]]) / counts


def test_spectrum_matches_durall_reference_at_256() -> None:
    image = np.asarray(Image.fromarray(skdata.astronaut()).resize((256, 256), Image.BICUBIC))
    features = fs.get("spectrum-durall").load("cpu")(to_batch([image]))
    expected = durall_reference(image)
    assert expected.shape == (179,) == tuple(features.shape[1:])
    np.testing.assert_allclose(features[0].double().numpy(), expected, rtol=1e-6, atol=1e-4)


def test_spectrum_resamples_spectra_of_other_sizes_never_images() -> None:
    """A 128² image: its own Durall profile (numpy oracle), linearly resampled in Nyquist units."""
    image = np.asarray(Image.fromarray(skdata.astronaut()).resize((128, 128), Image.BICUBIC))
    features = fs.get("spectrum-durall").load("cpu")(to_batch([image]))[0].double().numpy()
    own = durall_reference(image)  # 88 bins at radii (i + 1) / 64 of Nyquist
    target = np.arange(1, 180) / 128.0
    expected = np.interp(target, np.arange(1, 89) / 64.0, own)
    np.testing.assert_allclose(features, expected, rtol=1e-6, atol=1e-4)
    wide = np.concatenate([image, image[:, :40]], axis=1)  # 128 × 168: the centre square is used
    centre = wide[:, 20:148]
    np.testing.assert_allclose(
        fs.get("spectrum-durall").load("cpu")(to_batch([wide]))[0].double().numpy(),
        np.interp(target, np.arange(1, 89) / 64.0, durall_reference(np.ascontiguousarray(centre))),
        rtol=1e-6,
        atol=1e-4,
    )


def test_spectrum_profile_length_formula() -> None:
    from feature_spaces.spectrum import durall_profiles, profile_length

    for side, length in ((128, 88), (256, 179), (1024, 722)):
        assert profile_length(side) == length
    zeros = torch.rand(1, 3, 128, 128, dtype=torch.float64) * 255
    assert durall_profiles(zeros).shape == (1, 88)


# ---------------------------------------------------------------------------------- pixels (oracle)


def test_pixels_randproj_is_the_declared_linear_map() -> None:
    from feature_spaces.randproj import projection_matrix

    image = np.asarray(Image.fromarray(skdata.astronaut()).resize((64, 64), Image.BICUBIC))
    other = np.asarray(Image.fromarray(skdata.coffee()).resize((64, 64), Image.BICUBIC))
    features = fs.get("pixels-randproj").load("cpu")(to_batch([image, other])).double().numpy()
    matrix = projection_matrix(3 * 64 * 64, 512, seed=0).numpy()
    assert abs(matrix.mean()) < 1e-3 and abs(matrix.var() * 512 - 1) < 0.01
    flat = np.stack([a.transpose(2, 0, 1).reshape(-1) / 255.0 for a in (image, other)])
    np.testing.assert_allclose(features, flat @ matrix, rtol=1e-5, atol=1e-4)
    # Johnson–Lindenstrauss: pixel distances survive within a few percent at d = 512.
    ratio = np.linalg.norm(features[0] - features[1]) / np.linalg.norm(flat[0] - flat[1])
    assert 0.85 < ratio < 1.15
