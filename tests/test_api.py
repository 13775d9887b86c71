"""The Python API (`bench.stats`, `bench.fd`, `bench.compare`): its doctests, its numbers against an
independent computation from the image files, the statistics route, the spec checks, bad files, the cache."""

from __future__ import annotations

import dataclasses
import doctest
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import bench
import feature_spaces as fs
from bench.errors import UserError
from feature_spaces.extractor import Extractor
from tests.oracles import fd_sqrtm_oracle

MEANS_SPACE = "test-channel-means"


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def channel_means() -> str:
    """A 3-d space: each image's mean R, G, B (an oracle needs nothing but numpy to reproduce it)."""

    class ChannelMeans(Extractor):
        def extract(self, images: torch.Tensor) -> torch.Tensor:
            return images.double().mean(dim=(2, 3))

    spec = dataclasses.replace(fs.get("pixels-randproj").spec, name=MEANS_SPACE, dim=3, extra={"means": 1})
    fs.register(spec, lambda spec, device, paths: ChannelMeans(spec, device), replace=True)
    yield MEANS_SPACE
    fs.unregister(MEANS_SPACE)


@pytest.fixture
def faces(shared_data: Path, tmp_path: Path) -> dict[str, Path]:
    """Two folders of 30 real faces each (UTKFace, 200²)."""
    files = sorted((shared_data / "faces" / "utkface200_crop_part1").iterdir())
    folders = {}
    for index, name in enumerate(("a", "b")):
        folder = tmp_path / name
        folder.mkdir()
        for path in files[index * 30 : (index + 1) * 30]:
            shutil.copy(path, folder / path.name)
        folders[name] = folder
    return folders


def channel_means_of(folder: Path) -> np.ndarray:
    """Each image's mean R, G, B from Pillow's pixels, rounded to float32 as every extractor's output is."""
    means = [
        np.asarray(Image.open(p).convert("RGB"), dtype=np.float64).mean(axis=(0, 1))
        for p in sorted(folder.iterdir())
    ]
    return np.stack(means).astype(np.float32).astype(np.float64)


def oracle_fd(x: np.ndarray, y: np.ndarray) -> float:
    return fd_sqrtm_oracle(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))


def test_docstring_examples_run() -> None:
    import bench.api

    result = doctest.testmod(bench.api, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 10 and result.failed == 0


def test_fd_of_two_folders_equals_the_fd_of_their_pixels(faces, channel_means) -> None:
    result = bench.fd(faces["a"], faces["b"], channel_means)
    x, y = channel_means_of(faces["a"]), channel_means_of(faces["b"])
    distance = result.distance()
    assert distance.fd.value == pytest.approx(oracle_fd(x, y), rel=1e-9)
    delta = x.mean(0) - y.mean(0)
    assert distance.fd.mean_term == pytest.approx(delta @ delta, rel=1e-9)
    assert (distance.fd.n1, distance.fd.n2, distance.fd.d) == (30, 30, 3)
    assert result.value == distance.fd.value
    frame = result.to_frame()
    assert frame.set_index("metric").loc["fd", "diagnostics"].startswith("n_reference = 30, n_B = 30")


def test_statistics_route_equals_the_image_route_and_records_its_space(
    faces, channel_means, tmp_path
) -> None:
    computed = bench.stats(faces["a"], channel_means)
    assert computed.n == 30 and computed.stats.provenance["space"] == channel_means
    assert computed.stats.provenance["spec_hash"] == fs.get(channel_means).spec_hash
    np.testing.assert_allclose(
        computed.stats.cov, np.cov(channel_means_of(faces["a"]), rowvar=False), rtol=1e-10
    )
    saved = computed.save(tmp_path / "a.npz")
    images = bench.fd(faces["a"], faces["b"], channel_means).value
    assert bench.fd(saved, faces["b"]).value == pytest.approx(images, rel=1e-9)  # its space from the file
    pytorch_fid_file = computed.save(tmp_path / "a-pytorch-fid.npz", format="pytorch-fid")
    mixed = bench.fd(pytorch_fid_file, faces["b"], channel_means)
    assert mixed.value == pytest.approx(images, rel=1e-9)
    assert any("records no feature space" in note for note in mixed.notes)


def test_statistics_of_another_space_or_preprocessing_are_refused(faces, channel_means, tmp_path) -> None:
    saved = bench.stats(faces["a"], channel_means).save(tmp_path / "a.npz")
    with pytest.raises(
        UserError, match=rf"space '{channel_means}' \(spec [0-9a-f]+\).*'pixels-randproj' \(spec"
    ):
        bench.fd(saved, faces["b"], "pixels-randproj")
    spec = fs.get(channel_means).spec
    fs.register(dataclasses.replace(spec, extra={"means": 2}), fs.get(channel_means).loader, replace=True)
    with pytest.raises(UserError, match=rf"spec {spec.spec_hash}.*now has spec"):
        bench.fd(saved, faces["b"])  # same name, other preprocessing: the hashes differ
    other = bench.stats(faces["b"], "pixels-randproj").save(tmp_path / "b.npz")
    with pytest.raises(UserError, match="different spaces or preprocessings"):
        bench.fd(saved, other)


def test_bad_files_are_counted_and_leave_the_fd_of_the_good_ones(faces, channel_means, tmp_path) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(faces["a"], mixed)
    (mixed / "empty.jpg").write_bytes(b"")
    (mixed / "not-an-image.png").write_bytes(b"plain text, not a PNG")
    good = next(iter(sorted(faces["a"].iterdir()))).read_bytes()
    (mixed / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (mixed / "folder.jpg").mkdir()
    result = bench.fd(mixed, faces["b"], channel_means)
    assert result.value == pytest.approx(bench.fd(faces["a"], faces["b"], channel_means).value, rel=1e-12)
    skipped = result.a.skip_counts()
    assert sum(skipped.values()) == 4 and len(skipped) >= 3  # each bad file once, by its reason
    assert any("4 file(s) skipped" in note for note in result.notes)
    with pytest.raises(ValueError, match=r"empty|truncated|not an image|director"):
        bench.fd(mixed, faces["b"], channel_means, strict=True)


def test_second_call_is_served_from_the_cache(faces, channel_means) -> None:
    first = bench.fd(faces["a"], faces["b"], channel_means)
    assert not first.a.served_from_cache
    second = bench.fd(faces["a"], faces["b"], channel_means)
    assert second.a.served_from_cache and second.b.served_from_cache
    assert second.value == first.value


def test_arrays_tensors_and_features_are_sets(channel_means) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)
    others = rng.integers(0, 200, (25, 16, 16, 3), dtype=np.uint8)
    from_arrays = bench.fd(images, torch.from_numpy(others).permute(0, 3, 1, 2).contiguous(), channel_means)
    expected = oracle_fd(images.mean(axis=(1, 2)), others.mean(axis=(1, 2)))
    assert from_arrays.value == pytest.approx(expected, rel=1e-9)
    features = bench.fd(images.mean(axis=(1, 2)), others.mean(axis=(1, 2)).astype(np.float32))
    assert features.spaces == ["given"] and features.value == pytest.approx(expected, rel=1e-6)
    with pytest.raises(UserError, match="name a feature space"):
        bench.fd(images, others)


def test_bootstrap_interval_and_extras_serialise_as_plain_json(faces, channel_means) -> None:
    result = bench.fd(
        faces["a"], faces["b"], channel_means, metrics=["kid", "precision", "recall"], bootstrap=30
    )
    distance = result.distance()
    interval = distance.fd_interval.interval
    assert interval.method == "basic" and interval.contains(distance.fd.value)
    assert distance.kid is not None and distance.precision_recall is not None
    text = json.dumps(result.to_dict(), allow_nan=False)  # no NaN tokens, numpy scalars converted
    record = json.loads(text)["spaces"][channel_means]
    assert record["fd"]["interval"]["ci_method"].startswith("basic")
    assert set(record) >= {"fd", "kid", "precision_recall"}
    frame = result.to_frame()
    assert set(frame.metric) == {"fd", "fd_mean_term", "fd_trace_term", "kid", "precision", "recall"}


def test_compare_ranks_and_reports(faces, channel_means, tmp_path) -> None:
    shifted = tmp_path / "darker"
    shifted.mkdir()
    for path in sorted(faces["b"].iterdir()):
        Image.fromarray((np.asarray(Image.open(path).convert("RGB")) * 0.6).astype(np.uint8)).save(
            shifted / f"{path.stem}.png"
        )
    result = bench.compare(
        {"similar": faces["b"], "darker": shifted}, faces["a"], [channel_means], bootstrap=50
    )
    fds = {d.generator: d.fd.value for d in result.outcome.distances}
    assert fds["similar"] == pytest.approx(
        oracle_fd(channel_means_of(faces["a"]), channel_means_of(faces["b"])), rel=1e-9
    )
    assert fds["similar"] < fds["darker"]
    (pair,) = result.outcome.pairs
    assert (pair.first, pair.second, pair.verdict) == ("similar", "darker", "similar closer")
    json.dumps(result.to_dict(), allow_nan=False)
    page = result.write_report(tmp_path / "report")
    html = page.read_text()
    assert "can this n tell" in html and html.count("data:image/png;base64") >= 2


def test_the_package_exports_the_calls_even_beside_the_statistics_module() -> None:
    import sys

    import bench.api
    from bench.stats import GaussianStats  # the module bench/stats.py, imported as usual

    assert bench.stats is bench.api.stats and bench.fd is bench.api.fd and bench.compare is bench.api.compare
    assert sys.modules["bench.stats"].GaussianStats is GaussianStats
    assert {"stats", "fd", "compare"} <= set(dir(bench))
