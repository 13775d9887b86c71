"""The extraction engine: exact statistics, subsets, caching, resume after SIGKILL, torchrun sharding."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import feature_spaces
from bench.cache import ContentCache
from bench.engine import CLEAN, Cohort, EngineConfig, FolderMasks, Member, Variant, run_engine
from bench.engine.reservoir import Reservoir
from bench.perturbations import make_perturbation
from bench.sources import TensorSource, open_source
from tests import engine_worker

REPO = Path(__file__).resolve().parents[1]


def _config(tmp_path: Path, **overrides) -> EngineConfig:
    settings = {
        "batch_size": 5,
        "chunk_size": 8,
        "cache": ContentCache("engine", root=tmp_path),
        "progress": False,
    }
    settings.update(overrides)
    return EngineConfig(**settings)


def test_statistics_equal_direct_extraction_and_are_chunking_independent(tmp_path: Path) -> None:
    source = open_source("dcgan-faces:count=30,seed=1")
    images = torch.cat([batch for _, batch in source.iter_batches(30)])
    extractor = feature_spaces.get("pixels-randproj").load("cpu")
    direct = extractor(images).double().numpy()
    first = run_engine(source, [Variant("clean")], ["pixels-randproj"], None, _config(tmp_path / "a"))
    second = run_engine(
        source,
        [Variant("clean")],
        ["pixels-randproj"],
        None,
        _config(tmp_path / "b", chunk_size=64, batch_size=7),
    )
    for result in (first, second):
        cell = result.cell("clean", "pixels-randproj")
        assert cell.n == 30 and cell.reservoir_is_complete
        np.testing.assert_allclose(cell.stats.mean, direct.mean(0), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(cell.stats.cov, np.cov(direct, rowvar=False), rtol=1e-5, atol=1e-9)
    a, b = first.cell("clean", "pixels-randproj"), second.cell("clean", "pixels-randproj")
    np.testing.assert_allclose(a.stats.m2, b.stats.m2, rtol=1e-6)


def _hair_masks(tmp_path: Path, count: int, hair: dict[int, int]) -> tuple[TensorSource, FolderMasks]:
    """`count` random 32² images; image i's label map (CelebAMask-HQ ids, half resolution) holds
    `hair[i]` hair pixels of its 16² map; the last image has no label map at all."""
    from PIL import Image

    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8))
    mask_dir = tmp_path / "masks"
    mask_dir.mkdir()
    for index in range(count - 1):
        labels = np.zeros((16, 16), dtype=np.uint8)
        labels.reshape(-1)[: hair.get(index, 0)] = 13
        Image.fromarray(labels).save(mask_dir / f"img{index}.png")
    return TensorSource(images, ids=[f"img{i}.png" for i in range(count)]), FolderMasks(
        mask_dir, "celebamask-hq"
    )


def test_region_variants_apply_only_where_the_region_is_present(tmp_path: Path) -> None:
    """Hair covering 16 of 256 label pixels is present; a single pixel (0.4 %) is not at a 1 % threshold;
    an image without a label map is left out and reported."""
    source, masks = _hair_masks(tmp_path, 6, {0: 16, 2: 16, 3: 1, 4: 16})
    blur_hair = Variant("blur:Hair", make_perturbation("region_blur", region="Hair"), "Hair")
    conditional = Cohort.of("hair", CLEAN, blur_hair, within=blur_hair)
    config = _config(tmp_path, min_region_fraction=0.01)
    result = run_engine(source, [CLEAN, blur_hair], ["pixels-randproj"], masks, config, [conditional])
    assert result.cell(CLEAN, "pixels-randproj").n == 6
    cells = result.cohort(conditional, "pixels-randproj")
    assert cells.cell(CLEAN).ids == ["img0.png", "img2.png", "img4.png"]
    assert cells.cell(blur_hair).ids == cells.cell(CLEAN).ids and cells.lost == 0
    assert result.unlabelled == ["img5.png"]


def test_population_member_falls_back_to_the_clean_feature_where_the_region_is_absent(tmp_path: Path) -> None:
    """B_r leaves images without r unchanged: their clean features stand in, exactly."""
    source, masks = _hair_masks(tmp_path, 5, {1: 40, 3: 40})
    blur_hair = Variant("blur:Hair", make_perturbation("region_blur", region="Hair"), "Hair")
    population = Cohort("pop", (Member(CLEAN), Member(blur_hair, fallback=CLEAN)))
    result = run_engine(
        source, [CLEAN, blur_hair], ["pixels-randproj"], masks, _config(tmp_path), [population]
    )
    cells = result.cohort(population, "pixels-randproj")
    extractor = feature_spaces.get("pixels-randproj").load("cpu")
    images = torch.stack([torch.from_numpy(source.load(i).transpose(2, 0, 1).copy()) for i in range(4)])
    clean = extractor(images).double().numpy()
    hair = torch.zeros(4, 32, 32, dtype=torch.bool)
    for index in (1, 3):
        hair[index].view(-1)[: 40 * 4] = True  # nearest-neighbour upscaling of the 16² map: not contiguous
    assert cells.n == 4 and cells.cell(CLEAN).ids == [f"img{i}.png" for i in range(4)]
    blurred = cells.features(blur_hair).astype(np.float64)
    np.testing.assert_array_equal(blurred[[0, 2]], cells.features(CLEAN)[[0, 2]])
    np.testing.assert_allclose(cells.features(CLEAN), clean, rtol=1e-5, atol=1e-6)
    assert np.abs(blurred[[1, 3]] - clean[[1, 3]]).max() > 1e-3


def test_a_cohort_keeps_only_ids_every_member_has_and_counts_the_lost(tmp_path: Path) -> None:
    """A space that gives no feature for some blurred copies: those ids leave both sets (lost), the
    statistics equal a direct computation on the kept ids, and the variant's own cell keeps the rest."""
    import dataclasses

    from bench.perturbations.base import Perturbation, quantize
    from feature_spaces.extractor import Extractor

    class Brighten(Perturbation):
        name = "test_brighten"
        defaults = {"delta": 25.0}  # noqa: RUF012

        def apply(self, images, masks, offset):
            return quantize(images.float() + self.params["delta"])

    class MeansUnlessBright(Extractor):
        def extract(self, images: torch.Tensor, prepared=None) -> torch.Tensor:
            values = images.float().mean(dim=(2, 3))
            return torch.where(values.mean(dim=1, keepdim=True) > 140, torch.nan, values)

    spec = dataclasses.replace(feature_spaces.get("pixels-randproj").spec, name="test-bright", dim=3)
    feature_spaces.register(spec, lambda spec, device, paths: MeansUnlessBright(spec, device), replace=True)
    try:
        rng = np.random.default_rng(1)
        levels = np.linspace(90, 150, 12)[:, None, None, None]  # per-image brightness
        images = torch.from_numpy((levels + rng.integers(-8, 9, (12, 3, 8, 8))).astype(np.uint8))
        brighten = Variant("brighter", Brighten(delta=25.0))
        paired = Cohort.of("paired", CLEAN, brighten)
        result = run_engine(
            TensorSource(images), [CLEAN, brighten], ["test-bright"], None, _config(tmp_path), [paired]
        )
    finally:
        feature_spaces.unregister("test-bright")
    means = images.double().mean(dim=(2, 3)).numpy()
    bright_means = (images.double() + 25).clamp(0, 255).mean(dim=(2, 3)).numpy()
    clean_ok, bright_ok = means.mean(1) <= 140, bright_means.mean(1) <= 140
    kept = clean_ok & bright_ok
    cells = result.cohort(paired, "test-bright")
    assert 2 <= kept.sum() < clean_ok.sum()
    assert cells.n == kept.sum() and cells.lost == (clean_ok & ~bright_ok).sum()
    np.testing.assert_allclose(cells.cell(CLEAN).stats.mean, means[kept].mean(0), rtol=1e-6)
    np.testing.assert_allclose(
        cells.cell(brighten).stats.cov, np.cov(bright_means[kept], rowvar=False), rtol=1e-5
    )
    assert result.cell(CLEAN, "test-bright").n == clean_ok.sum()


def test_second_run_reads_everything_from_cache(tmp_path: Path) -> None:
    source = open_source("dcgan-faces:count=20,seed=2")
    variants = engine_worker.variants()
    first = run_engine(source, variants, ["pixels-randproj"], None, _config(tmp_path))
    second = run_engine(source, variants, ["pixels-randproj"], None, _config(tmp_path))
    assert first.cache_misses == 6 and first.cache_hits == 0  # 3 chunks × 2 variants
    assert second.cache_misses == 0 and second.cache_hits == 6
    for name, values in engine_worker.member_statistics(first).items():
        np.testing.assert_array_equal(values, engine_worker.member_statistics(second)[name])


def test_a_space_that_cannot_load_is_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    source = open_source("dcgan-faces:count=4,seed=0")
    result = run_engine(
        source, [Variant("clean")], ["pixels-randproj", "no-such-space"], None, _config(tmp_path)
    )
    assert "no-such-space" in result.space_errors
    assert "unknown feature space" in result.space_errors["no-such-space"]
    assert result.cell("clean", "pixels-randproj").n == 4


def test_region_variants_without_masks_are_refused(tmp_path: Path) -> None:
    variant = Variant("blur:Hair", make_perturbation("region_blur", region="Hair"), "Hair")
    with pytest.raises(ValueError, match="select regions but no mask provider"):
        run_engine(
            open_source("dcgan-faces:count=2,seed=0"), [variant], ["pixels-randproj"], None, _config(tmp_path)
        )


def test_reservoir_selection_does_not_depend_on_order_or_chunking() -> None:
    rng = np.random.default_rng(0)
    ids = [f"{i:04d}" for i in range(100)]
    features = rng.standard_normal((100, 3))
    whole = Reservoir(10, seed=5)
    whole.offer(ids, features)
    pieces = Reservoir(10, seed=5)
    for start in (70, 0, 30, 90):
        part = Reservoir(10, seed=5)
        stop = {70: 90, 0: 30, 30: 70, 90: 100}[start]
        part.offer(ids[start:stop], features[start:stop])
        pieces.merge(part)
    assert whole.ordered()[0] == pieces.ordered()[0]
    np.testing.assert_array_equal(whole.ordered()[1], pieces.ordered()[1])


def _cell_files(cache: Path) -> set[str]:
    return {path.name for path in (cache / "engine").glob("*.npz")}


@pytest.mark.slow
def test_sigkill_then_restart_recomputes_nothing_finished(tmp_path: Path) -> None:
    cache, out = tmp_path / "cache", tmp_path / "out.npz"
    command = [sys.executable, str(REPO / "tests" / "engine_worker.py"), str(cache), str(out), "96", "8"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while len(_cell_files(cache)) < 4 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = _cell_files(cache)
    assert 4 <= len(finished) < 48, "the worker should be killed part-way (12 chunks × 2 variants × 2 spaces)"
    store = ContentCache("engine", root=cache)
    for name in finished:  # atomic writes: every file under its final name is whole and readable
        assert store.load(name.removesuffix(".npz")) is not None
    config = EngineConfig(
        batch_size=8, chunk_size=8, cache=ContentCache("engine", root=cache), progress=False
    )
    source = open_source("dcgan-faces:count=96,seed=3")
    resumed = run_engine(
        source, engine_worker.variants(), engine_worker.SPACES, None, config, engine_worker.cohorts()
    )
    assert resumed.cache_hits == len(finished)
    assert resumed.cache_misses == 48 - len(finished)
    fresh = run_engine(
        source,
        engine_worker.variants(),
        engine_worker.SPACES,
        None,
        EngineConfig(batch_size=8, chunk_size=8, cache=False, progress=False),
        engine_worker.cohorts(),
    )
    expected, actual = engine_worker.member_statistics(fresh), engine_worker.member_statistics(resumed)
    for name, values in expected.items():
        np.testing.assert_array_equal(values, actual[name])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_processes_give_the_single_process_statistics(tmp_path: Path) -> None:
    single, sharded = tmp_path / "single.npz", tmp_path / "sharded.npz"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    worker = str(REPO / "tests" / "engine_worker.py")
    subprocess.run(
        [sys.executable, worker, str(tmp_path / "c1"), str(single), "80", "16"], env=env, check=True
    )
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        worker,
        str(tmp_path / "c2"),
        str(sharded),
        "80",
        "16",
    ]
    completed = subprocess.run(torchrun, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    with np.load(single) as one, np.load(sharded) as two:
        assert set(one.files) == set(two.files)
        for name in one.files:
            expected, actual = one[name], two[name]
            scale = max(float(np.abs(expected).max()), 1e-300)
            assert float(np.abs(actual - expected).max()) <= 1e-12 * scale, name


def test_bad_files_are_counted_skips_with_reasons(tmp_path: Path) -> None:
    """A folder with a zero-byte file, a non-image and a truncated JPEG: the good images are measured and
    each bad one is reported with its reason."""
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / f"good{index}.png")
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_bytes(b"this is not an image")
    whole = folder / "good0.png"
    Image.open(whole).save(folder / "cut.jpg", quality=90)
    data = (folder / "cut.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    result = run_engine(
        open_source(str(folder)), [Variant("clean")], ["pixels-randproj"], None, _config(tmp_path)
    )
    skipped = dict(result.decode_skips)
    assert result.cell("clean", "pixels-randproj").n == 3
    assert set(skipped) == {"empty.png", "notes.jpg", "cut.jpg"}
    assert all(reason for reason in skipped.values())


def test_a_run_served_from_the_cache_loads_no_model(tmp_path: Path) -> None:
    """The second run reads every entry from the cache without building the space's extractor."""
    import dataclasses

    loads = []
    base = feature_spaces.get("pixels-randproj")
    spec = dataclasses.replace(base.spec, name="test-counted-loads")

    def loader(spec, device, paths):
        loads.append(spec.name)
        return base.loader(spec, device, paths)

    feature_spaces.register(spec, loader, replace=True)
    try:
        source = open_source("dcgan-faces:count=8,seed=4")
        first = run_engine(source, [CLEAN], ["test-counted-loads"], None, _config(tmp_path))
        feature_spaces.clear_loaded()  # as in a new process: nothing is loaded yet
        second = run_engine(source, [CLEAN], ["test-counted-loads"], None, _config(tmp_path))
    finally:
        feature_spaces.unregister("test-counted-loads")
    assert loads == ["test-counted-loads"] and second.cache_misses == 0
    np.testing.assert_array_equal(
        first.cell(CLEAN, "test-counted-loads").stats.m2, second.cell(CLEAN, "test-counted-loads").stats.m2
    )
