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
from bench.perturbations import make_perturbation
from bench.sources import open_source

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


def test_empty_folder_is_a_note_not_a_crash(tmp_path: Path, cache_dir) -> None:
    (tmp_path / "empty").mkdir()
    output = run_region_blur(
        RegionBlurConfig(source=str(tmp_path / "empty"), spaces=FAST_SPACES, progress=False, samples=0)
    )
    assert output.results.empty
    assert output.notes == [f"source {tmp_path / 'empty'} holds no images: nothing to measure"]


def test_unknown_space_and_too_few_images_are_notes(cache_dir) -> None:
    config = RegionBlurConfig(
        samples=0,
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
    fd = output.results[output.results.metric == "fd"].set_index("level")
    assert fd.loc[0.0, "value"] < fd.loc[50.0, "value"] < fd.loc[100.0, "value"]
    assert not any("fewer than" in note for note in output.notes)
    # mean ± std over the 4 draws sit in their own columns; ci_low/ci_high hold no interval here
    assert (fd["n"] == 30).all() and (fd["value"] == fd["mean"]).all() and (fd["std"] > 0).all()
    assert fd["ci_low"].isna().all() and fd["ci_high"].isna().all()


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
    assert result["std"] == pytest.approx(0.0, abs=1e-9 * direct)


def test_generator_comparison_ranks_a_closer_generator_first(cache_dir) -> None:
    """Another seed of the reference's own generator must rank ahead of noisy samples of it in every
    space, by FD and by KID."""
    from bench.sources import TensorSource

    noisy = make_perturbation("gaussian_noise", alpha=0.25)
    images = torch.cat([batch for _, batch in open_source("dcgan-faces:count=60,seed=2").iter_batches(60)])
    config = GeneratorComparisonConfig(
        reference="dcgan-faces:count=60,seed=0",
        generators={"same-model": "dcgan-faces:count=60,seed=1", "noisy": TensorSource(noisy(images))},
        spaces=FAST_SPACES,
        kid_subsets=10,
        progress=False,
    )
    table = run_generator_comparison(config).results
    assert set(table.variant) >= {"same-model", "noisy"}
    for metric in ("fd", "kid"):
        values = table[table.metric == metric].pivot_table(index="space", columns="variant", values="value")
        assert (values["same-model"] < values["noisy"]).all(), (metric, values)
    assert table[table.metric == "precision"]["value"].between(0, 1).all()


def test_style_probe_pixel_ratios_equal_an_independent_computation(cache_dir) -> None:
    """FD(X, AdaIN_α X) / FD(X, AdaIN_1 X) on a 6-d space, against pixels restyled here and scipy's sqrtm."""
    from bench.perturbations import AdaINColor
    from tests.test_region_blur import channel_statistics_space, oracle

    config = StyleProbeConfig(
        source="dcgan-faces:count=40,seed=0",
        style="dcgan-faces:count=16,seed=5",
        alphas=[0.0, 0.5, 1.0],
        style_count=16,
        progress=False,
    )
    style = torch.cat([b for _, b in open_source(config.style).iter_batches(16)])
    images = torch.cat([b for _, b in open_source(config.source).iter_batches(40)])
    with channel_statistics_space() as space:
        config.spaces = [space]
        ratios = run_style_probe(config).results.query("metric == 'fd_ratio'").set_index("level")["value"]
        extractor = feature_spaces.get(space).load("cpu")
        clean = extractor(images).numpy()
        restyled = {
            a: extractor(AdaINColor.from_reference(style, alpha=a)(images)).numpy() for a in (0.5, 1.0)
        }
    assert ratios[0.0] == pytest.approx(0.0, abs=1e-9)  # α = 0 leaves every image unchanged
    expected = oracle(clean, restyled[0.5]) / oracle(clean, restyled[1.0])
    assert ratios[0.5] == pytest.approx(expected, rel=1e-6) and 0 < expected < 1


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
    """A face-like space finds no 'face' in some clean and some blurred images (NaN rows): each FD keeps
    only the ids with a feature in both of its sets, counts the blurred-only losses as `lost`, and its
    interval contains its estimate."""

    def contrasty(images: torch.Tensor) -> torch.Tensor:
        return images.float().std(dim=(1, 2, 3)) > 45

    config = RegionBlurConfig(
        source="dcgan-faces:count=48,seed=0",
        spaces=["test-picky"],
        regions=["Skin"],
        parser_input_size=128,
        bootstrap=20,
        progress=False,
        samples=0,
    )
    with channel_mean_space("test-picky", contrasty):
        output = run_region_blur(config)
    images = torch.cat([b for _, b in open_source(config.source).iter_batches(48)])
    clean_found = contrasty(images).numpy()
    blurred_found = contrasty(make_perturbation("region_blur", region="All")(images)).numpy()
    table = output.results
    whole = table[(table.metric == "fd") & (table.region == "All")].iloc[0]
    assert whole.n == (clean_found & blurred_found).sum() < clean_found.sum()
    assert whole.lost == (clean_found & ~blurred_found).sum() > 0
    assert any("test-picky" in note and "gave no features" in note for note in output.notes)
    skin = table[(table.metric == "nfd") & (table.region == "Skin")].iloc[0]
    assert skin.ci_low <= skin.value <= skin.ci_high


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
        samples=0,
    )
    with channel_mean_space("test-sharp", sharp):
        output = run_region_blur(config)
    assert set(output.results.space) == {"pixels-randproj"}
    assert any(
        note.startswith("space test-sharp: fewer than 2 images with features clean and blurred")
        for note in output.notes
    )


def test_a_row_interval_holds_the_rows_value_when_the_bootstrap_estimate_differs_in_the_last_bits() -> None:
    """The row's FD may come from the exact low-rank path and the bootstrap's estimate from the resampled
    one; they agree to rounding, and the reported interval must hold the reported value (demo: 58 of 259
    intervals missed their value by ~1e-15 relative before rows were anchored to their own value)."""
    from bench.experiments.common import ResultRow
    from bench.metrics.bootstrap import bootstrap

    rng = np.random.default_rng(3)
    values = rng.normal(5.0, 1.0, 40)
    estimate = bootstrap(
        lambda draw: {"mean": float(values[draw["x"]].mean())}, {"x": values.size}, num_boot=200, seed=0
    )["mean"]
    value = np.nextafter(estimate.interval.high, np.inf)  # just past the bootstrap's own interval
    row = ResultRow("e", "s", "fd", float(value), n=40).with_bootstrap(estimate)
    assert row.ci_low <= row.value <= row.ci_high
    assert row.ci_low == estimate.interval.low and row.ci_method == estimate.interval.label
    below = ResultRow("e", "s", "fd", float(np.nextafter(estimate.interval.low, -np.inf)), n=40)
    assert below.with_bootstrap(estimate).ci_low == below.value
