"""Region blur end to end: both nFD forms against a planted truth and against an independent computation,
paired ids in every FD, face spaces aligned once on the clean image, rare regions and bad configs."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import feature_spaces
from bench.experiments import region_blur
from bench.experiments.region_blur import RegionBlurConfig, run_region_blur
from bench.masks import read_label_map, region_mask, region_present
from bench.metrics import frechet_distance
from bench.perturbations import make_perturbation
from bench.perturbations.base import Perturbation
from bench.sources import TensorSource, open_source
from feature_spaces.extractor import Extractor
from tests.oracles import fd_sqrtm_oracle

HAIR_LABEL = 13  # CelebAMask-HQ numbering


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ------------------------------------------------------------------------------------- planted truth
# Images carry their index in two pixels and a "perturbation code" in a third. The planted space returns a
# fixed Gaussian feature vector per image, transformed by a known linear map when the code says the image
# was blurred (A_r for the region, A_all for the whole image). nFD then has a closed form in both forms.

COUNT, DIM, PREVALENCE = 400, 4, 0.4
MEAN = np.array([1.0, 0.0, 2.0, 0.5])
COV = np.array([[1.0, 0.3, 0.0, 0.0], [0.3, 1.0, 0.2, 0.0], [0.0, 0.2, 0.8, 0.1], [0.0, 0.0, 0.1, 0.5]])
MAPS = {1: np.diag([1.5, 1.0, 1.0, 1.0]), 2: np.diag([1.5, 1.4, 0.7, 1.2])}  # code → map (1 Hair, 2 All)


class PlantedMarker(Perturbation):
    """Writes its code into pixel (0, 0) of channel 2 (what a blur would do, the planted space reads)."""

    name = "test_planted_marker"
    defaults = {"code": 0, "region": "All", "sigma": 100.0, "seed": 0}  # noqa: RUF012

    def apply(self, images, masks, offset):
        marked = images.clone()
        marked[:, 2, 0, 0] = self.params["code"]
        return marked


def planted_factory(name: str, **params) -> Perturbation:
    """Stands in for `make_perturbation('region_blur', ...)`: Hair → code 1, All → code 2."""
    return PlantedMarker(code=1 if params["region"] == "Hair" else 2, **params)


class PlantedSpace(Extractor):
    def __init__(self, spec, device, table: np.ndarray) -> None:
        super().__init__(spec, device)
        self.table = table

    def extract(self, images: torch.Tensor, prepared=None) -> torch.Tensor:
        index = images[:, 0, 0, 0].long() * 256 + images[:, 1, 0, 0].long()
        rows = self.table[index.numpy()]
        for code, matrix in MAPS.items():
            chosen = (images[:, 2, 0, 0] == code).numpy()
            rows[chosen] = rows[chosen] @ matrix.T
        return torch.from_numpy(rows)


@contextlib.contextmanager
def planted_space(table: np.ndarray) -> Iterator[str]:
    spec = dataclasses.replace(feature_spaces.get("pixels-randproj").spec, name="test-planted", dim=DIM)
    feature_spaces.register(spec, lambda spec, device, paths: PlantedSpace(spec, device, table), replace=True)
    try:
        yield "test-planted"
    finally:
        feature_spaces.unregister("test-planted")


def population_fd(mean1, cov1, mean2, cov2) -> float:
    return fd_sqrtm_oracle(mean1, cov1, mean2, cov2)


def planted_truths() -> tuple[float, float]:
    """The conditional and population nFD of the planted model, in closed form."""
    hair, whole = MAPS[1], MAPS[2]
    all_blurred = population_fd(MEAN, COV, whole @ MEAN, whole @ COV @ whole.T)
    conditional = population_fd(MEAN, COV, hair @ MEAN, hair @ COV @ hair.T) / all_blurred
    # B_Hair X is a mixture: unchanged with probability 1 − π, mapped with probability π.
    second = COV + np.outer(MEAN, MEAN)
    mixture_mean = (1 - PREVALENCE) * MEAN + PREVALENCE * hair @ MEAN
    mixture_second = (1 - PREVALENCE) * second + PREVALENCE * hair @ second @ hair.T
    mixture_cov = mixture_second - np.outer(mixture_mean, mixture_mean)
    return conditional, population_fd(MEAN, COV, mixture_mean, mixture_cov) / all_blurred


@pytest.mark.slow
def test_planted_truth_lies_in_the_intervals_of_both_nfd_forms(tmp_path, cache_dir, monkeypatch) -> None:
    rng = np.random.default_rng(7)
    table = rng.multivariate_normal(MEAN, COV, COUNT)
    has_hair = rng.random(COUNT) < PREVALENCE
    images = np.zeros((COUNT, 3, 8, 8), dtype=np.uint8)
    images[:, 0, 0, 0], images[:, 1, 0, 0] = np.arange(COUNT) // 256, np.arange(COUNT) % 256
    masks = tmp_path / "masks"
    masks.mkdir()
    ids = [f"{i:04d}.png" for i in range(COUNT)]
    for image_id, hair in zip(ids, has_hair, strict=True):
        labels = np.zeros((8, 8), dtype=np.uint8)
        labels[4:] = HAIR_LABEL if hair else 0
        Image.fromarray(labels).save(masks / image_id)
    monkeypatch.setattr(region_blur, "make_perturbation", planted_factory)
    with planted_space(table) as space:
        config = RegionBlurConfig(
            source=TensorSource(torch.from_numpy(images), ids=ids),
            spaces=[space],
            regions=["Hair"],
            masks=str(masks),
            bootstrap=300,
            samples=0,
            progress=False,
        )
        results = run_region_blur(config).results
    conditional_truth, population_truth = planted_truths()
    conditional = results[(results.metric == "nfd") & (results.region == "Hair")].iloc[0]
    population = results[results.metric == "nfd_population"].iloc[0]
    assert conditional.n == has_hair.sum() and population.n == COUNT
    assert conditional.ci_low <= conditional_truth <= conditional.ci_high, (conditional, conditional_truth)
    assert population.ci_low <= population_truth <= population.ci_high, (population, population_truth)
    for row in (conditional, population):
        assert row.ci_low <= row.value <= row.ci_high and row.ci_method.startswith("basic")
    # The two forms differ as the model says: a region in 40 % of the images is diluted.
    assert population_truth < 0.7 * conditional_truth and population.value < conditional.value


# ------------------------------------------------------------------------ independent computation
@contextlib.contextmanager
def channel_statistics_space() -> Iterator[str]:
    """A 6-d space (per-channel mean and standard deviation of the pixels): few enough dimensions that
    scipy's sqrtm is a valid FD oracle on a dozen images."""

    class ChannelStatistics(Extractor):
        def extract(self, images: torch.Tensor, prepared=None) -> torch.Tensor:
            values = images.double()
            return torch.cat([values.mean(dim=(2, 3)), values.std(dim=(2, 3))], dim=1)

    spec = dataclasses.replace(feature_spaces.get("pixels-randproj").spec, name="test-channel-stats", dim=6)
    feature_spaces.register(spec, lambda spec, device, paths: ChannelStatistics(spec, device), replace=True)
    try:
        yield "test-channel-stats"
    finally:
        feature_spaces.unregister("test-channel-stats")


@pytest.fixture()
def real_faces(shared_data: Path, tmp_path: Path) -> tuple[Path, Path]:
    """16 real UTKFace photos (200²) and their landmark label maps, copied to a temp folder."""
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
    for path in chosen[:16]:
        shutil.copy(path, images / path.name)
        name = path.name.replace(".jpg.chip.jpg", ".jpg.chip.png")
        shutil.copy(mask_source / name, masks / name)
    return images, masks


def oracle(a: np.ndarray, b: np.ndarray) -> float:
    """FD of two float64 feature sets through scipy's sqrtm."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return fd_sqrtm_oracle(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def test_both_nfd_forms_equal_an_independent_computation(real_faces, cache_dir) -> None:
    """Blur each photo ourselves, extract, FD with scipy's sqrtm: conditional nFD on the photos holding
    the region (numerator and denominator on them), population nFD on all photos."""
    images, masks = real_faces
    with channel_statistics_space() as space:
        config = RegionBlurConfig(
            source=str(images), spaces=[space], regions=["Nose", "Eyes"], masks=str(masks), bootstrap=50,
            progress=False, chunk_size=5, batch_size=4, samples=2,
        )  # fmt: skip
        output = run_region_blur(config)
        extractor = feature_spaces.get(space).load("cpu")
        source = open_source(str(images))
        clean, whole, per_region, holds = [], [], {"Nose": [], "Eyes": []}, {"Nose": [], "Eyes": []}
        for index, (image_id, image) in enumerate(source.iter_images()):
            batch = torch.from_numpy(image).permute(2, 0, 1)[None].contiguous()
            name = Path(image_id).name.replace(".jpg.chip.jpg", ".jpg.chip.png")
            labels = torch.from_numpy(read_label_map(masks / name, size=image.shape[:2]).labels)[None]
            clean.append(extractor(batch).numpy()[0])
            whole.append(
                extractor(make_perturbation("region_blur", region="All")(batch, offset=index)).numpy()[0]
            )
            for region in per_region:
                present = bool(region_present(labels, "celebamask-hq", region)[0])
                holds[region].append(present)
                mask = region_mask(labels, "celebamask-hq", region)
                blurred = (
                    make_perturbation("region_blur", region=region)(batch, mask, offset=index)
                    if present
                    else batch
                )
                per_region[region].append(extractor(blurred).numpy()[0])
    clean, whole = np.array(clean), np.array(whole)
    table = output.results
    for region in ("Nose", "Eyes"):
        inside = np.array(holds[region])
        blurred = np.array(per_region[region])
        expected_conditional = oracle(clean[inside], blurred[inside]) / oracle(clean[inside], whole[inside])
        expected_population = oracle(clean, blurred) / oracle(clean, whole)
        row = table[(table.metric == "nfd") & (table.region == region)].iloc[0]
        population = table[(table.metric == "nfd_population") & (table.region == region)].iloc[0]
        assert row.value == pytest.approx(expected_conditional, rel=1e-6) and row.n == inside.sum()
        assert population.value == pytest.approx(expected_population, rel=1e-6) and population.n == len(clean)
        for each in (row, population):
            assert each.ci_low <= each.value <= each.ci_high
    fd_all = table[(table.metric == "fd") & (table.region == "All")].iloc[0]
    assert fd_all.value == pytest.approx(oracle(clean, whole), rel=1e-6) and fd_all.n == len(clean)
    assert len(output.samples) == 2 and output.samples[0][1].caption == "mask"


def test_face_space_cells_rest_on_the_ids_detected_clean_and_reuse_their_alignment(
    real_faces, cache_dir
) -> None:
    """dlib-face-id: every FD pairs clean photo i with its own blurred copy, aligned by the landmarks found
    on the clean photo; n per cell counts the photos whose clean version has a face."""
    images, masks = real_faces
    config = RegionBlurConfig(
        source=str(images), spaces=["dlib-face-id"], regions=["Skin"], masks=str(masks), bootstrap=0,
        progress=False, samples=0,
    )  # fmt: skip
    table = run_region_blur(config).results
    extractor = feature_spaces.get("dlib-face-id").load("cpu")
    batch = torch.cat([b for _, b in open_source(str(images)).iter_batches(64)])
    landmarks = extractor.prepare(batch)
    found = np.array([shape is not None for shape in landmarks])
    blurred = make_perturbation("region_blur", region="All")(batch, offset=0)
    clean_features = extractor(batch[found], [s for s in landmarks if s is not None]).double().numpy()
    blurred_features = extractor(blurred[found], [s for s in landmarks if s is not None]).double().numpy()
    row = table[(table.metric == "fd") & (table.region == "All")].iloc[0]
    assert row.n == found.sum() >= 12 and row.lost == 0
    assert row.value == pytest.approx(frechet_distance(clean_features, blurred_features).value, rel=1e-6)
    # Detecting again on the blurred photos would have measured something else (and lost faces).
    redetected = extractor(blurred[found]).double().numpy()
    assert not np.allclose(
        redetected[np.isfinite(redetected).all(1)], blurred_features[np.isfinite(redetected).all(1)]
    )
    for metric in ("fd", "nfd", "fd_all_blurred"):
        skin = table[(table.metric == metric) & (table.region == "Skin")].iloc[0]
        assert skin.n <= row.n


def test_a_stray_pixel_is_not_a_region_and_a_rare_region_is_a_diagnostic_row(tmp_path, cache_dir) -> None:
    """Five label maps hold one hat pixel (1 of 4096: below the 0.1 % default), one holds a real hat: the
    region is present in one image, too few for an FD, which a 'skipped' row says."""
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (6, 3, 64, 64), dtype=np.uint8))
    ids = [f"img{i}.png" for i in range(6)]
    masks = tmp_path / "masks"
    masks.mkdir()
    for index, image_id in enumerate(ids):
        labels = np.zeros((64, 64), dtype=np.uint8)
        labels[:16] = 14 if index == 0 else 0  # CelebAMask-HQ 14: hat
        labels[40, 40] = 14
        Image.fromarray(labels).save(masks / image_id)
    config = RegionBlurConfig(
        source=TensorSource(images, ids=ids), spaces=["pixels-randproj"], regions=["Hat"], masks=str(masks),
        bootstrap=0, progress=False, samples=0,
    )  # fmt: skip
    table = run_region_blur(config).results
    skipped = table[table.metric == "skipped"].iloc[0]
    assert skipped.region == "Hat" and skipped.n == 1
    assert "present (≥ 0.10% of the pixels) in 1 image(s)" in skipped.diagnostics
    assert not ((table.metric == "nfd") & (table.region == "Hat")).any()


def test_sweep_levels_without_a_sweep_and_bad_intervals_are_refused() -> None:
    with pytest.raises(ValueError, match=r"sweep_levels .* given without sweep"):
        RegionBlurConfig(sweep_levels=[10.0])
    with pytest.raises(ValueError, match="interval must be one of"):
        RegionBlurConfig(interval="studentized")
    with pytest.raises(ValueError, match="fraction sweep levels must lie in"):
        RegionBlurConfig(sweep="fraction", sweep_levels=[1.5])


def test_sweep_rows_with_a_zero_denominator_are_nan_with_a_reason(cache_dir) -> None:
    """σ = 0 blurs nothing, so FD(X, B_All X) = 0: the ratio is reported as missing with a reason
    instead of raising ZeroDivisionError."""
    config = RegionBlurConfig(
        source="dcgan-faces:count=8,seed=0", spaces=["pixels-randproj"], regions=["Skin"], sigma=0.0,
        parser_input_size=64, bootstrap=0, progress=False, samples=0, sweep="sigma", sweep_levels=[0.0, 50.0],
    )  # fmt: skip
    table = run_region_blur(config).results
    sweep = table[(table.variant == "sigma_sweep") & (table.metric == "nfd")]
    assert sweep["value"].isna().all()
    assert sweep["diagnostics"].str.contains("FD 0: no ratio").all()


def test_a_cached_rerun_reports_the_same_notes_and_diagnostics(tmp_path, cache_dir) -> None:
    """Images without a label map and per-variant feature losses are reported from the cached entries
    too, not only when the features are first computed."""
    from tests.test_experiments import channel_mean_space

    rng = np.random.default_rng(3)
    images = torch.from_numpy(rng.integers(0, 256, (8, 3, 32, 32), dtype=np.uint8))
    ids = [f"img{i}.png" for i in range(8)]
    masks = tmp_path / "masks"
    masks.mkdir()
    for image_id in ids[:6]:  # the last two images have no label map
        labels = np.zeros((32, 32), dtype=np.uint8)
        labels[8:24, 8:24] = 1  # skin
        Image.fromarray(labels).save(masks / image_id)

    def dark_enough(batch: torch.Tensor) -> torch.Tensor:
        return batch.float().mean(dim=(1, 2, 3)) < 127.6

    config = RegionBlurConfig(
        source=TensorSource(images, ids=ids), spaces=["test-dark"], regions=["Skin"], masks=str(masks),
        bootstrap=0, progress=False, samples=0,
    )  # fmt: skip
    with channel_mean_space("test-dark", dark_enough):
        first = run_region_blur(config)
        second = run_region_blur(config)
    assert second.engine.cache_hits > 0 and second.engine.cache_misses == 0
    assert "2 images had no label map" in " ".join(second.notes)
    assert first.notes == second.notes
    assert first.results["diagnostics"].tolist() == second.results["diagnostics"].tolist()


@pytest.mark.slow
def test_heatmaps_on_request_add_their_region_agreement_to_the_run(cache_dir, tmp_path) -> None:
    """With a heatmap reference, the run's results and report gain the heatmap-vs-nFD agreement of the
    spaces that have heatmaps; the others are named in a note."""
    from bench.experiments.runner import write_run

    config = RegionBlurConfig(
        source="dcgan-faces:count=12,seed=0", spaces=["efficientnet-lite0-imagenet", "pixels-randproj"],
        regions=["Background", "Skin", "Hair"], parser_input_size=128, bootstrap=20, progress=False,
        samples=1, heatmap_reference="dcgan-faces:count=12,seed=1", heatmap_images=12,
    )  # fmt: skip
    output = run_region_blur(config)
    agreement = output.results[output.results.experiment == "heatmap_agreement"]
    assert set(agreement.space) == {"efficientnet-lite0-imagenet"}
    copied = agreement[agreement.metric == "region_blur_nfd"].set_index("region")["value"]
    blur = output.results[(output.results.experiment == "region_blur") & (output.results.metric == "nfd")]
    blur = blur[blur.space == "efficientnet-lite0-imagenet"].set_index("region")["value"]
    assert copied.to_dict() == {region: blur[region] for region in copied.index}
    assert any("no heatmaps in pixels-randproj" in note for note in output.notes)
    page = write_run("region_blur", config, output, tmp_path / "run", 1.0).read_text()
    assert (
        "Where FD looks: heatmaps against region blur" in page and "What the perturbations look like" in page
    )
