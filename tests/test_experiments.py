"""Experiments end to end on real images: region blur, attribute proportions, generator comparison, style."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import feature_spaces
from bench.engine import EngineConfig
from bench.experiments.attribute_proportion import AttributeProportionConfig, run_attribute_proportion
from bench.experiments.common import ConfigError, config_from_dict, load_config
from bench.experiments.generator_comparison import GeneratorComparisonConfig, run_generator_comparison
from bench.experiments.region_blur import RegionBlurConfig, run_region_blur
from bench.experiments.runner import EXPERIMENTS, experiment_config
from bench.experiments.style_probe import StyleProbeConfig, run_style_probe
from bench.masks import read_label_map, region_mask
from bench.perturbations import make_perturbation
from bench.sources import open_source
from tests.oracles import fd_sqrtm_oracle

REPO = Path(__file__).resolve().parents[1]
FAST_SPACES = ["pixels-randproj", "spectrum-durall"]


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture()
def real_faces(shared_data: Path, tmp_path: Path) -> tuple[Path, Path]:
    """12 real UTKFace photos (200²) and their landmark label maps, copied to a temp folder."""
    images, masks = tmp_path / "faces", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    source = shared_data / "faces" / "utkface200_crop_part1"
    mask_source = shared_data / "face_masks" / "utkface200_crop_part1__pseudo_mediapipe"
    chosen = [
        p
        for p in sorted(source.iterdir())
        if (mask_source / p.name.replace(".jpg.chip.jpg", ".jpg.chip.png")).is_file()
    ]
    for path in chosen[:12]:
        shutil.copy(path, images / path.name)
        mask_name = path.name.replace(".jpg.chip.jpg", ".jpg.chip.png")
        shutil.copy(mask_source / mask_name, masks / mask_name)
    return images, masks


@contextlib.contextmanager
def channel_mean_space(name: str, finds_face: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Register, for the duration, a 3-d space of channel means that gives NaN rows (like a face space
    finding no face) wherever `finds_face(images)` is False."""
    import dataclasses

    import feature_spaces as fs
    from feature_spaces.extractor import Extractor

    class ChannelMeans(Extractor):
        def extract(self, images: torch.Tensor) -> torch.Tensor:
            values = images.float().mean(dim=(2, 3))
            return torch.where(finds_face(images)[:, None], values, torch.full_like(values, float("nan")))

    spec = dataclasses.replace(fs.get("pixels-randproj").spec, name=name, dim=3, extra={"variant": name})
    fs.register(spec, lambda spec, device, paths: ChannelMeans(spec, device), replace=True)
    try:
        yield
    finally:
        fs.unregister(name)


def test_region_blur_nfd_matches_an_independent_computation(real_faces, cache_dir) -> None:
    images, masks = real_faces
    config = RegionBlurConfig(
        source=str(images),
        spaces=["pixels-randproj"],
        regions=["Skin", "Nose", "Hair"],
        masks=str(masks),
        bootstrap=20,
        progress=False,
        chunk_size=5,
        batch_size=4,
    )
    output = run_region_blur(config)
    table = output.results
    nfd = table[(table.metric == "nfd")].set_index("region")["value"]
    # Independent path: blur each image ourselves, extract, FD with scipy's sqrtm oracle.
    source = open_source(str(images))
    extractor = feature_spaces.get("pixels-randproj").load("cpu")
    clean, whole, nose, nose_rows = [], [], [], []
    blur_all = make_perturbation("region_blur", region="All")
    blur_nose = make_perturbation("region_blur", region="Nose")
    for index, (image_id, image) in enumerate(source.iter_images()):
        batch = torch.from_numpy(image).permute(2, 0, 1)[None].contiguous()
        labels = read_label_map(masks / Path(image_id).name.replace(".jpg.chip.jpg", ".jpg.chip.png")).labels
        mask = region_mask(torch.from_numpy(labels)[None], "celebamask-hq", "Nose")
        clean.append(extractor(batch).double().numpy()[0])
        whole.append(extractor(blur_all(batch, offset=index)).double().numpy()[0])
        if mask.any():
            nose_rows.append(index)
            nose.append(extractor(blur_nose(batch, mask, offset=index)).double().numpy()[0])
    clean, whole, nose = np.array(clean), np.array(whole), np.array(nose)

    def oracle(a: np.ndarray, b: np.ndarray) -> float:
        return fd_sqrtm_oracle(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))

    # n = 12 < d = 512: compare through the tiny-n-stable low-rank identity by checking the ratio only.
    expected_all = table[(table.metric == "fd") & (table.region == "All")]["value"].item()
    from bench.metrics import frechet_distance

    assert expected_all == pytest.approx(frechet_distance(clean, whole).value, rel=1e-6)
    expected_nose = frechet_distance(clean[nose_rows], nose).value / frechet_distance(clean, whole).value
    assert nfd["Nose"] == pytest.approx(expected_nose, rel=1e-6)
    assert nfd["All"] == 1.0
    assert 0 < nfd["Nose"] < nfd["Skin"] < 1
    # The landmark masks label no hair: the region is reported, not fatal.
    assert "Hair" not in set(table.region)
    assert any("region Hair: absent from every mask" in note for note in output.notes)
    ci = table[(table.metric == "nfd") & (table.region == "Skin")][["ci_low", "ci_high"]].iloc[0]
    assert ci.ci_low < nfd["Skin"] < ci.ci_high
    del oracle


def test_empty_folder_is_a_note_not_a_crash(tmp_path: Path, cache_dir) -> None:
    (tmp_path / "empty").mkdir()
    output = run_region_blur(
        RegionBlurConfig(source=str(tmp_path / "empty"), spaces=FAST_SPACES, progress=False)
    )
    assert output.results.empty
    assert output.notes == [f"source {tmp_path / 'empty'} holds no images: nothing to measure"]


def test_unknown_space_and_too_few_images_are_notes(cache_dir) -> None:
    config = RegionBlurConfig(
        source="dcgan-faces:count=1,seed=0",
        spaces=["pixels-randproj", "no-such-space"],
        regions=["Skin"],
        parser_input_size=128,
        bootstrap=0,
        progress=False,
    )
    output = run_region_blur(config)
    assert output.results.empty
    assert any("space no-such-space could not load" in note for note in output.notes)
    assert any("fewer than 2 images" in note for note in output.notes)


def test_config_files_load_and_bad_keys_are_named(tmp_path: Path) -> None:
    for path in sorted((REPO / "bench" / "configs").glob("*.toml")):
        import tomllib

        document = tomllib.loads(path.read_text())
        config = experiment_config(document["experiment"], document.get("config", {}), where=str(path))
        assert type(config) is EXPERIMENTS[document["experiment"]][0]
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['sigmaa'\]"):
        config_from_dict(RegionBlurConfig, {"sigmaa": 3})
    with pytest.raises(ConfigError, match="bootstrap = 'many' is not a <class 'int'>"):
        config_from_dict(RegionBlurConfig, {"bootstrap": "many"})
    bad = tmp_path / "bad.toml"
    bad.write_text("experiment = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(RegionBlurConfig, bad)
    with pytest.raises(ValueError, match=r"unknown region\(s\) \['Ears'\]"):
        RegionBlurConfig(regions=["Ears"])


def test_attribute_proportion_curve_grows_with_delta(shared_data: Path, tmp_path: Path, cache_dir) -> None:
    """Counterfactual = the same photo with the hair-free background darkened: FD must rise with Δ."""
    from PIL import Image

    root = tmp_path / "pairs"
    (root / "base").mkdir(parents=True)
    (root / "cf_dark").mkdir()
    photos = sorted((shared_data / "faces" / "utkface200_crop_part1").iterdir())[:40]
    for path in photos:
        image = np.asarray(Image.open(path).convert("RGB"))
        Image.fromarray(image).save(root / "base" / f"{path.name.split('.')[0]}.png")
        Image.fromarray((image * 0.6).astype(np.uint8)).save(
            root / "cf_dark" / f"{path.name.split('.')[0]}.png"
        )
    config = AttributeProportionConfig(
        root=str(root),
        spaces=["pixels-randproj"],
        deltas=[0.0, 50.0, 100.0],
        pairs=30,
        draws=4,
        progress=False,
    )
    output = run_attribute_proportion(config)
    fd = output.results[output.results.metric == "fd"].set_index("level")["value"]
    assert fd[0.0] < fd[50.0] < fd[100.0]
    assert any("fewer than the 30 asked" in note for note in output.notes) is False
    rows = output.results[(output.results.metric == "fd") & (output.results.level == 100.0)].iloc[0]
    assert rows.ci_low <= rows.value <= rows.ci_high and rows.n == 30


def test_attribute_proportion_at_full_shift_is_the_fd_between_the_two_folders(
    shared_data: Path, tmp_path: Path, cache_dir
) -> None:
    """At Δ = 100 % with every pair drawn, set A is all of base/ and set B all of cf_*/ (in some order),
    so every draw's FD is FD(base, cf) computed directly from the folders' features, with zero spread."""
    from PIL import Image

    from bench.metrics import frechet_distance

    root = tmp_path / "pairs"
    (root / "base").mkdir(parents=True)
    (root / "cf_dark").mkdir()
    base, dark = [], []
    for path in sorted((shared_data / "faces" / "utkface200_crop_part1").iterdir())[:12]:
        image = np.asarray(Image.open(path).convert("RGB"))
        darker = (image * 0.6).astype(np.uint8)
        Image.fromarray(image).save(root / "base" / f"{path.stem}.png")
        Image.fromarray(darker).save(root / "cf_dark" / f"{path.stem}.png")
        base.append(image)
        dark.append(darker)
    config = AttributeProportionConfig(
        root=str(root), spaces=["pixels-randproj"], deltas=[100.0], pairs=12, draws=3, progress=False
    )
    output = run_attribute_proportion(config)
    result = output.results[output.results.metric == "fd"].iloc[0]
    extractor = feature_spaces.get("pixels-randproj").load("cpu")

    def features(images: list[np.ndarray]) -> np.ndarray:
        return extractor(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()).double().numpy()

    direct = frechet_distance(features(base), features(dark)).value
    assert result.value == pytest.approx(direct, rel=1e-9)
    assert result.ci_high - result.ci_low == pytest.approx(0.0, abs=1e-9 * direct)  # mean ± std, std = 0


def test_generator_comparison_ranks_a_closer_generator_first(cache_dir) -> None:
    config = GeneratorComparisonConfig(
        reference="dcgan-faces:count=60,seed=0",
        generators={"same-model": "dcgan-faces:count=60,seed=1", "other": "dcgan-faces:count=60,seed=2"},
        spaces=FAST_SPACES,
        kid_subsets=10,
        progress=False,
    )
    output = run_generator_comparison(config)
    table = output.results
    assert set(table.metric) >= {"fd", "kid", "precision", "recall", "density", "coverage"}
    assert set(table.variant) == {"same-model", "other"}
    assert table[table.metric == "precision"]["value"].between(0, 1).all()


def test_style_probe_pixel_ratio_runs_from_zero_to_one(cache_dir) -> None:
    config = StyleProbeConfig(
        source="dcgan-faces:count=40,seed=0",
        style="dcgan-faces:count=16,seed=5",
        spaces=["pixels-randproj"],
        alphas=[0.0, 0.5, 1.0],
        style_count=16,
        progress=False,
    )
    ratios = run_style_probe(config).results.query("metric == 'fd_ratio'").set_index("level")["value"]
    assert ratios[0.0] == pytest.approx(0.0, abs=1e-9)
    assert ratios[1.0] == pytest.approx(1.0)
    assert 0 < ratios[0.5] < 1


def test_engine_config_defaults_are_sane() -> None:
    assert EngineConfig().chunk_size % 64 == 0  # generator latent blocks never straddle chunks


def test_run_command_adds_a_spectral_section_when_asked(tmp_path: Path, cache_dir) -> None:
    """`fdbench run` on a generator comparison with `spectral = true`: spectral rows and an HTML section."""
    import pandas as pd

    from bench.cli import main

    config = tmp_path / "compare.toml"
    config.write_text(
        'experiment = "generator_comparison"\n'
        "[config]\n"
        'reference = "dcgan-faces:count=40,seed=0"\n'
        'spaces = ["pixels-randproj"]\n'
        'metrics = ["fd"]\n'
        "spectral = true\n"
        "progress = false\n"
        "[config.generators]\n"
        'other-seed = "dcgan-faces:count=40,seed=1"\n'
    )
    assert main(["run", str(config), "--out", str(tmp_path / "run")]) == 0
    results = pd.read_csv(tmp_path / "run" / "results.csv")
    spectral = results[results.experiment == "spectral"]
    assert {"bce", "l2_log_profile", "acc_logreg"} <= set(spectral.metric)
    # Two samples of one generator: the detector must sit near chance, not near 100 %.
    accuracy = spectral[(spectral.metric == "acc_logreg")]["value"].iloc[0]
    assert accuracy < 0.8
    page = (tmp_path / "run" / "report.html").read_text()
    assert "spectral" in page.lower() and page.count("data:image/png;base64") >= 2
    assert (tmp_path / "run" / "run.log").exists()


def test_region_blur_with_a_space_that_loses_different_images(cache_dir, tmp_path: Path) -> None:
    """A face-like space finds no 'face' in some clean and some blurred images (NaN rows): the run
    counts them, and the bootstrap resamples images rather than assuming row-aligned sets."""

    def contrasty(images: torch.Tensor) -> torch.Tensor:
        return images.float().std(dim=(1, 2, 3)) > 45

    config = RegionBlurConfig(
        source="dcgan-faces:count=48,seed=0",
        spaces=["test-picky"],
        regions=["Skin"],
        parser_input_size=128,
        bootstrap=10,
        progress=False,
    )
    with channel_mean_space("test-picky", contrasty):
        output = run_region_blur(config)
    table = output.results
    fd_rows = table[table.metric == "fd"].set_index("region")
    assert fd_rows.loc["All", "n"] < 48  # the whole-image blur lowers the contrast of many images
    assert any("test-picky" in note and "gave no features" in note for note in output.notes)
    skin = table[(table.metric == "nfd") & (table.region == "Skin")].iloc[0]
    assert np.isfinite(skin.ci_low) and np.isfinite(skin.ci_high)


def test_a_space_with_no_features_after_the_whole_blur_is_a_note(cache_dir) -> None:
    """A face space that finds no face once the whole image is blurred: its rows are left out with a
    note, and the other spaces' results are still there."""

    def sharp(images: torch.Tensor) -> torch.Tensor:
        return images.float().diff(dim=-1).abs().mean(dim=(1, 2, 3)) > 6

    config = RegionBlurConfig(
        source="dcgan-faces:count=12,seed=0",
        spaces=["test-sharp", "pixels-randproj"],
        regions=["Skin"],
        parser_input_size=128,
        bootstrap=3,
        progress=False,
    )
    with channel_mean_space("test-sharp", sharp):
        output = run_region_blur(config)
    assert set(output.results.space) == {"pixels-randproj"}
    assert any(
        note.startswith("space test-sharp: fewer than 2 images with features") for note in output.notes
    )
