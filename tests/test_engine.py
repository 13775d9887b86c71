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
from bench.engine import EngineConfig, FolderMasks, Variant, run_engine
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


def test_region_subsets_follow_the_masks(tmp_path: Path) -> None:
    """Masks from files: only images whose label map holds the region enter its subset."""
    from PIL import Image

    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8))
    ids = [f"img{i}.png" for i in range(6)]
    mask_dir = tmp_path / "masks"
    mask_dir.mkdir()
    for index in range(5):  # img5 has no mask at all
        labels = np.zeros((16, 16), dtype=np.uint8)  # CelebAMask-HQ ids, half resolution
        if index % 2 == 0:
            labels[4:8, 4:8] = 13  # hair
        Image.fromarray(labels).save(mask_dir / f"img{index}.png")
    source = TensorSource(images, ids=ids)
    variants = [
        Variant("clean", None, None, ("all", "Hair")),
        Variant("blur:Hair", make_perturbation("region_blur", region="Hair"), "Hair", ("Hair",)),
    ]
    masks = FolderMasks(mask_dir, "celebamask-hq")
    result = run_engine(source, variants, ["pixels-randproj"], masks, _config(tmp_path))
    assert result.cell("clean", "pixels-randproj").n == 6
    hair = result.cell("clean", "pixels-randproj", "Hair")
    assert hair.ids == ["img0.png", "img2.png", "img4.png"]
    assert result.cell("blur:Hair", "pixels-randproj", "Hair").ids == hair.ids
    assert masks.missing == ["img5.png"]


def test_second_run_reads_everything_from_cache(tmp_path: Path) -> None:
    source = open_source("dcgan-faces:count=20,seed=2")
    variants = engine_worker.variants()
    first = run_engine(source, variants, ["pixels-randproj"], None, _config(tmp_path))
    second = run_engine(source, variants, ["pixels-randproj"], None, _config(tmp_path))
    assert first.cache_misses == 6 and first.cache_hits == 0  # 3 chunks × 2 variants
    assert second.cache_misses == 0 and second.cache_hits == 6
    for key, cell in first.cells.items():
        np.testing.assert_array_equal(cell.stats.m2, second.cells[key].stats.m2)


def test_a_space_that_cannot_load_is_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    source = open_source("dcgan-faces:count=4,seed=0")
    result = run_engine(
        source, [Variant("clean")], ["pixels-randproj", "no-such-space"], None, _config(tmp_path)
    )
    assert "no-such-space" in result.space_errors
    assert "unknown feature space" in result.space_errors["no-such-space"]
    assert result.cell("clean", "pixels-randproj").n == 4


def test_region_variants_without_masks_are_refused(tmp_path: Path) -> None:
    variant = Variant("blur:Hair", make_perturbation("region_blur", region="Hair"), "Hair", ("Hair",))
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
    resumed = run_engine(source, engine_worker.variants(), engine_worker.SPACES, None, config)
    assert resumed.cache_hits == len(finished)
    assert resumed.cache_misses == 48 - len(finished)
    fresh = run_engine(
        source,
        engine_worker.variants(),
        engine_worker.SPACES,
        None,
        EngineConfig(batch_size=8, chunk_size=8, cache=False, progress=False),
    )
    for key, cell in fresh.cells.items():
        np.testing.assert_array_equal(cell.stats.m2, resumed.cells[key].stats.m2)
        np.testing.assert_array_equal(cell.stats.mean, resumed.cells[key].stats.mean)


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
