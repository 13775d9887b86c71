"""`fdbench stats compute`: statistics of any source equal a float64 oracle on the same images, and the file
says which space, preprocessing and images they describe."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import feature_spaces
from bench.cli import main
from bench.sources import FolderSource, stack_images
from bench.stats import GaussianStats

SPACE = "pixels-randproj"


@pytest.fixture
def faces(shared_data, tmp_path, monkeypatch) -> Path:
    """Sixteen real faces and one unreadable file, with a private cache."""
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "faces"
    folder.mkdir()
    for path in sorted((shared_data / "faces" / "utkface200_crop_part1").glob("*.jpg"))[:16]:
        shutil.copy(path, folder / path.name)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


def _oracle(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance in float64 of the space's features of the folder's decoded images."""
    images = [image for _, image in FolderSource(folder).iter_images()]
    with torch.no_grad():
        features = feature_spaces.get(SPACE).load("cpu")(stack_images(images)).double().numpy()
    return features.mean(axis=0), np.cov(features, rowvar=False)


def test_compute_writes_statistics_with_their_provenance(faces, tmp_path, capsys):
    out = tmp_path / "faces_stats.npz"
    assert main(["stats", "compute", str(faces), str(out), "--space", SPACE, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "n = 16 of 17 files" in printed and "1 skipped" in printed
    assert "broken.jpg: not an image (unrecognised format)" in printed
    stats = GaussianStats.load(out)
    mean, cov = _oracle(faces)
    assert stats.n == 16
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(stats.cov, cov, rtol=1e-4, atol=1e-7 * np.abs(cov).max())
    provenance = stats.provenance
    assert provenance["space"] == SPACE
    assert provenance["spec_hash"] == feature_spaces.get(SPACE).spec_hash
    assert provenance["source_manifest_hash"] == FolderSource(faces).manifest_hash()
    assert provenance["n"] == 16 and provenance["images_total"] == 17
    assert provenance["decode_skips"] == [
        {"file": "broken.jpg", "reason": "not an image (unrecognised format)"}
    ]

    again = tmp_path / "again.npz"
    assert main(["stats", "compute", str(faces), str(again), "--space", SPACE, "--no-progress"]) == 0
    assert "1 hit(s) / 0 computed" in capsys.readouterr().out  # served from the cache
    second = GaussianStats.load(again)
    np.testing.assert_array_equal(second.mean, stats.mean)
    np.testing.assert_array_equal(second.cov, stats.cov)


def test_pytorch_fid_format_is_a_plain_mu_sigma_file(faces, tmp_path):
    ours, theirs = tmp_path / "ours.npz", tmp_path / "theirs.npz"
    assert main(["stats", "compute", str(faces), str(ours), "--space", SPACE, "--no-progress"]) == 0
    command = ["stats", "compute", str(faces), str(theirs), "--space", SPACE, "--format", "pytorch-fid"]
    assert main([*command, "--no-progress"]) == 0
    with np.load(theirs) as bundle:
        assert sorted(bundle.files) == ["mu", "sigma"]
        mu, sigma = bundle["mu"], bundle["sigma"]
    reference = GaussianStats.load(ours)
    np.testing.assert_array_equal(mu, reference.mean)
    np.testing.assert_array_equal(sigma, reference.cov)


def test_any_source_kind_works_and_agrees(faces, tmp_path):
    """A tar of the folder and a list of its files give the same statistics as the folder."""
    import tarfile

    archive = tmp_path / "faces.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        handle.add(faces, arcname=".")
    listing = tmp_path / "faces.txt"
    listing.write_text(
        "".join(f"{path}\n" for path in sorted(faces.glob("*.jpg")) if path.name != "broken.jpg")
    )
    results = []
    for source in (str(faces), str(archive), f"@{listing}"):
        out = tmp_path / f"{len(results)}.npz"
        assert main(["stats", "compute", source, str(out), "--space", SPACE, "--no-progress"]) == 0
        results.append(GaussianStats.load(out))
    for other in results[1:]:
        assert other.n == 16
        np.testing.assert_allclose(other.mean, results[0].mean, rtol=1e-12)
        np.testing.assert_allclose(other.cov, results[0].cov, rtol=1e-10, atol=1e-12)


def test_strict_bad_sources_and_statistics_inputs_are_clear_errors(faces, tmp_path, capsys):
    out = tmp_path / "s.npz"
    assert (
        main(["stats", "compute", str(faces), str(out), "--space", SPACE, "--strict", "--no-progress"]) == 2
    )
    assert "broken.jpg: not an image" in capsys.readouterr().err
    assert not out.exists()
    assert main(["stats", "compute", str(faces), str(out), "--space", SPACE, "--no-progress"]) == 0
    capsys.readouterr()
    # Served from the cache, a strict run still sees the skip the cached chunk recorded.
    strict_again = ["stats", "compute", str(faces), str(tmp_path / "t.npz"), "--space", SPACE, "--strict"]
    assert main(strict_again) == 2
    assert "could not be read (strict): broken.jpg" in capsys.readouterr().err
    assert main(["stats", "compute", str(out), str(tmp_path / "u.npz"), "--space", SPACE]) == 2
    assert "statistics are computed from images, not from statistics" in capsys.readouterr().err
    assert main(["stats", "compute", str(faces), str(tmp_path / "v.npz"), "--space", "no-such-space"]) == 2
    assert "unknown feature space 'no-such-space'" in capsys.readouterr().err
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(next(faces.glob("1*.jpg")), one)
    assert main(["stats", "compute", str(one), str(tmp_path / "w.npz"), "--space", SPACE]) == 2
    assert "at least 2 images" in capsys.readouterr().err
