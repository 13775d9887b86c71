"""`fdbench spectral` and the report section: files written, tidy rows, size policies, real faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from bench.cli import main
from bench.reports.results import validate_results
from bench.spectral.section import SPACE_DURALL, spectral_section
from tests.test_spectral_profiles import durall_profile_oracle, smooth_images


def write_pngs(folder: Path, images: torch.Tensor) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{index:03d}.png")
    return folder


def checkerboard_gain(images: torch.Tensor, strength: float = 0.06) -> torch.Tensor:
    size = images.shape[-1]
    gain = 1.0 + strength * torch.tensor([[1.0, -0.5], [-0.3, -0.2]]).repeat(size // 2, size // 2)
    return (images.float() * gain).clamp(0, 255).round().to(torch.uint8)


@pytest.mark.slow
def test_section_rows_figures_and_values(tmp_path):
    real, other = smooth_images(40, 32, seed=1), smooth_images(40, 32, seed=2)
    section = spectral_section(real, {"artifact": checkerboard_gain(other)}, tmp_path, seeds=(0, 1, 2))
    table = validate_results(section.results)
    assert set(table["experiment"]) == {"spectral"}
    durall = table[(table["space"] == SPACE_DURALL) & (table["variant"] == "artifact")]
    metrics = set(durall["metric"])
    assert {"bce", "bce_excess", "l2_log_profile", "fd_profile", "acc_logreg", "acc_svm"} <= metrics
    assert "acc_knn_decay" in set(table["metric"])
    # the L2 row is the distance between the oracle's mean profiles
    real_mean = np.mean([durall_profile_oracle(image) for image in real.numpy()], axis=0)
    gen_mean = np.mean([durall_profile_oracle(image) for image in checkerboard_gain(other).numpy()], axis=0)
    l2 = durall[durall["metric"] == "l2_log_profile"]["value"].item()
    assert l2 == pytest.approx(np.linalg.norm(real_mean - gen_mean), rel=1e-9)
    assert durall[durall["metric"] == "acc_logreg"]["value"].item() > 0.9
    assert (durall["n"] == 80).all()
    assert set(durall["level"]) == {"32×32"}
    for path in section.figures.values():
        assert path.is_file() and path.stat().st_size > 1000
        assert path.name.startswith("spectral_")
    assert {"profiles_32x32", "power_ratio_32x32", "detection_32x32"} <= set(section.figures)
    assert "grouped by size" in section.markdown


@pytest.mark.slow
def test_section_plugs_into_the_html_report(tmp_path):
    from bench.reports.writer import write_report

    real, other = smooth_images(20, 32, seed=7), smooth_images(20, 32, seed=8)
    section = spectral_section(real, {"gain": checkerboard_gain(other)}, tmp_path / "figs", seeds=(0, 1))
    summary = section.summary_table()
    assert list(summary.index) == [("gain", "32×32")]
    assert summary["acc_logreg"].item() == section.results.query("metric == 'acc_logreg'")["value"].item()
    page = write_report(section.results, {"title": "t"}, tmp_path / "run", [section.to_report_section()])
    html = page.read_text()
    assert "Spectral analysis" in html
    assert html.count("data:image/png;base64") >= len(section.figures)


@pytest.mark.slow
def test_cli_writes_results_figures_and_summary(tmp_path, capsys):
    real = write_pngs(tmp_path / "real", smooth_images(24, 32, seed=3))
    generated = write_pngs(tmp_path / "gen", checkerboard_gain(smooth_images(24, 32, seed=4)))
    out = tmp_path / "out"
    status = main(["spectral", str(real), str(generated), "--out", str(out), "--seeds", "2"])
    assert status == 0
    results = pd.read_csv(out / "results.csv")
    assert {"bce", "l2_log_profile", "fd_profile", "acc_logreg", "acc_svm", "acc_knn_decay"} <= set(
        results["metric"]
    )
    assert (out / "summary.md").read_text().startswith("Real: ")
    assert len(list(out.glob("spectral_*.png"))) >= 5
    assert "Spectral analysis" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_refuses_sets_without_a_common_size_and_crop_fixes_it(tmp_path, capsys):
    real = write_pngs(tmp_path / "real", smooth_images(12, 32, seed=5))
    generated = write_pngs(tmp_path / "gen", smooth_images(12, 48, seed=6))
    status = main(["spectral", str(real), str(generated), "--out", str(tmp_path / "a"), "--seeds", "1"])
    assert status == 2
    assert "never resized" in capsys.readouterr().err
    status = main(
        ["spectral", str(real), str(generated), "--out", str(tmp_path / "b"), "--seeds", "1", "--crop", "32"]
    )
    assert status == 0
    assert "centre-cropped to 32×32" in (tmp_path / "b" / "summary.md").read_text()
    status = main(["spectral", str(real), str(generated), "--out", str(tmp_path / "c"), "--crop", "40"])
    assert status == 2
    assert "never up-sampled" in capsys.readouterr().err


def test_cli_missing_folder_is_a_clear_error(tmp_path, capsys):
    status = main(["spectral", str(tmp_path / "nope"), str(tmp_path / "nope2"), "--out", str(tmp_path / "o")])
    assert status == 2
    assert "nope" in capsys.readouterr().err


@pytest.mark.slow
def test_real_faces_against_their_zero_insertion_upsampled_copies(shared_data, tmp_path):
    """Real photographs (UTKFace, downscaled to 64² with antialiasing) vs the same after ×2 zero-insertion."""
    from bench.perturbations import make_perturbation

    folder = shared_data / "faces" / "utkface200_crop_part1"
    files = sorted(folder.glob("*.jpg"))[:60]
    faces = []
    for path in files:
        with Image.open(path) as image:
            small = image.convert("RGB").resize((64, 64), Image.Resampling.LANCZOS)
        faces.append(torch.from_numpy(np.asarray(small).copy()).permute(2, 0, 1))
    real = torch.stack(faces)
    upsampled = make_perturbation("upsample", mode="zero_insertion")(real)
    section = spectral_section(real, {"zero_insertion": upsampled}, tmp_path, seeds=(0, 1, 2))
    table = section.results
    accuracy = table[(table["metric"] == "acc_logreg") & (table["space"] == SPACE_DURALL)]["value"].item()
    assert accuracy > 0.9
