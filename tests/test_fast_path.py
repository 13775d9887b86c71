"""The fast path changes speed, never results: decoding workers give the serial batches, skips and
features bit for bit; an out-of-memory batch is halved and recorded; reduced precision runs only where a
recorded check allows it and never shares cache entries with float32; torch.compile falls back cleanly."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import feature_spaces as fs
import feature_spaces.precision as precision
from bench.cache import ContentCache
from bench.decode import SKIP_EMPTY, SKIP_NOT_IMAGE, SKIP_TRUNCATED, DecodeError
from bench.engine import CLEAN, EngineConfig, run_engine
from bench.engine.chunks import iter_chunk
from bench.engine.loading import DecodePool, auto_workers
from bench.parallel import usable_cpus
from bench.sources import FolderSource, TensorSource
from feature_spaces.extractor import TorchExtractor
from feature_spaces.spec import FeatureSpaceSpec, Preprocessing
from tests.oracles import fd_sqrtm_oracle


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path / "cache"))


# ----------------------------------------------------------------------------------------- decoding
def _synthetic_folder(root: Path) -> Path:
    """PNGs of two sizes (the size changes mid-stream), a grey and a palette image, and three bad files."""
    rng = np.random.default_rng(0)
    root.mkdir()
    for index in range(40):
        side = 24 if index < 26 else 32
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(root / f"{index:03d}.png")
    Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).save(root / "010.png")  # grey
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).quantize(16).save(root / "011.png")
    (root / "004.png").write_bytes(b"")
    (root / "017.png").write_bytes(b"not an image at all")
    whole = (root / "030.png").read_bytes()
    (root / "030.png").write_bytes(whole[: len(whole) // 2])
    return root


EXPECTED_SKIPS = [("004.png", SKIP_EMPTY), ("017.png", SKIP_NOT_IMAGE), ("030.png", SKIP_TRUNCATED)]


def _batches(source, start, stop, batch_size, pool=None):
    skips: list[tuple[str, str]] = []
    batches = [
        (b.offset, b.ids, b.images.clone()) for b in iter_chunk(source, start, stop, batch_size, skips, pool)
    ]
    return batches, skips


def _assert_same_batches(found, expected) -> None:
    assert [(offset, ids) for offset, ids, _ in found] == [(offset, ids) for offset, ids, _ in expected]
    for (_, _, images), (_, _, reference) in zip(found, expected, strict=True):
        assert images.dtype == torch.uint8 and images.is_contiguous()
        assert torch.equal(images, reference)


@pytest.mark.parametrize("batch_size", [1, 7, 32])
def test_workers_give_the_serial_batches_skips_and_decode_counts(tmp_path: Path, batch_size: int) -> None:
    folder = _synthetic_folder(tmp_path / "images")
    serial_source, pooled_source = FolderSource(folder), FolderSource(folder)
    pool = DecodePool(pooled_source, workers=2, group=batch_size)
    try:
        # 0–16 then 16–32 continues the read-ahead; 36–40 skips a range and must restart.
        for start, stop in [(0, 16), (16, 32), (36, 40)]:
            expected, expected_skips = _batches(serial_source, start, stop, batch_size)
            found, skips = _batches(pooled_source, start, stop, batch_size, pool)
            _assert_same_batches(found, expected)
            assert skips == expected_skips
        assert pool.restarts == 2
    finally:
        pool.close()
    assert pooled_source.decode_log.conversions == serial_source.decode_log.conversions != {}
    assert pooled_source.decode_log.decoded == serial_source.decode_log.decoded > 0
    every, skips = _batches(serial_source, 0, 40, batch_size)
    assert skips == EXPECTED_SKIPS
    assert all(len(ids) <= batch_size for _, ids, _ in every)
    assert [i for _, ids, _ in every for i in ids] == [
        f"{i:03d}.png" for i in range(40) if i not in (4, 17, 30)
    ]


def test_a_strict_source_raises_the_same_error_with_workers(tmp_path: Path) -> None:
    folder = _synthetic_folder(tmp_path / "images")
    messages = []
    for workers in (0, 2):
        source = FolderSource(folder, strict=True)
        pool = DecodePool(source, workers, group=5) if workers else None
        try:
            with pytest.raises(DecodeError) as raised:
                _batches(source, 0, 20, 5, pool)
            messages.append((str(raised.value), raised.value.reason))
            if pool is not None:  # an abandoned range leaves the pool usable
                found, _ = _batches(FolderSource(folder), 20, 26, 5, pool)
                assert [ids for _, ids, _ in found] == [[f"{i:03d}.png" for i in range(20, 25)], ["025.png"]]
        finally:
            if pool is not None:
                pool.close()
    assert messages[0] == messages[1] == ("004.png: empty file (0 bytes)", SKIP_EMPTY)


def test_decoding_workers_are_chosen_per_device_and_source(tmp_path: Path) -> None:
    folder = FolderSource(_synthetic_folder(tmp_path / "images"))
    groups = -(-len(folder) // 8)
    assert auto_workers(folder, torch.device("cuda"), 8) == min(usable_cpus() - 1, groups)
    assert auto_workers(folder, torch.device("cpu"), 8) == max(0, usable_cpus() - torch.get_num_threads())
    in_memory = TensorSource(torch.zeros(4, 3, 8, 8, dtype=torch.uint8))
    assert auto_workers(in_memory, torch.device("cuda"), 8) == 0  # nothing to decode


@pytest.mark.slow
def test_engine_features_are_equal_with_and_without_workers(shared_data: Path, tmp_path: Path) -> None:
    if not fs.available()["efficientnet-lite0-imagenet"].ok:
        pytest.skip("efficientnet-lite0-imagenet weights are not installed")
    folder = tmp_path / "faces"
    folder.mkdir()
    faces = sorted((shared_data / "faces" / "utkface200_crop_part1").glob("*.jpg"))[:20]
    for index, path in enumerate(faces):
        shutil.copy(path, folder / f"{index:03d}.jpg")
    Image.open(faces[0]).resize((160, 120)).save(folder / "009.jpg")  # a size change mid-stream
    (folder / "005.jpg").write_bytes(faces[5].read_bytes()[:3000])  # truncated
    (folder / "013.jpg").write_bytes(b"")
    results = []
    for workers in (0, 2):
        config = EngineConfig(batch_size=4, chunk_size=8, workers=workers, cache=False, progress=False)
        results.append(
            run_engine(FolderSource(folder), [CLEAN], ["efficientnet-lite0-imagenet"], None, config)
        )
    serial, pooled = (result.cell(CLEAN, "efficientnet-lite0-imagenet") for result in results)
    assert serial.n == pooled.n == 18
    assert serial.ids == pooled.ids
    # The decoded batches are bitwise equal (tests above); the network itself is not bitwise reproducible
    # from one call to the next with 2 threads (two serial runs differed by up to 7e-7 here), so the
    # features are compared to a tolerance 14 times that.
    np.testing.assert_allclose(serial.features, pooled.features, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(serial.stats.mean, pooled.stats.mean, rtol=1e-5, atol=1e-5)
    assert results[0].decode_skips == results[1].decode_skips
    assert sorted(reason for _, reason in results[1].decode_skips) == sorted([SKIP_EMPTY, SKIP_TRUNCATED])


# ----------------------------------------------------------------------------------------- tiny network
class TinyNet(torch.nn.Module):
    """conv → ReLU → global mean → linear: enough layers for autocast and compile to act on."""

    def __init__(self, width: int = 8, dim: int = 6, fail_above: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, width, 3)
        self.head = torch.nn.Linear(width, dim)
        self.fail_above = fail_above
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(x.shape[0])
        if self.fail_above is not None and x.shape[0] > self.fail_above:
            raise torch.OutOfMemoryError(f"simulated: {x.shape[0]} images do not fit")
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def _spec(name: str = "test-tiny", dim: int = 6) -> FeatureSpaceSpec:
    return FeatureSpaceSpec(
        name=name,
        family="test",
        architecture="tiny conv net",
        training_data="none",
        objective="none",
        feature="linear head",
        dim=dim,
        preprocessing=Preprocessing(size=16, resize="bilinear-aa"),
    )


def _images(count: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, 20, 20), generator=generator, dtype=torch.uint8)


def test_out_of_memory_halves_the_batch_and_records_it() -> None:
    images = _images(8)
    reference = TorchExtractor(_spec(), torch.device("cpu"), TinyNet())(images)
    model = TinyNet(fail_above=3)
    extractor = TorchExtractor(_spec(), torch.device("cpu"), model)
    features = extractor(images)
    torch.testing.assert_close(features, reference, rtol=1e-6, atol=1e-7)
    assert extractor.oom_fallbacks == [(8, 4), (4, 2)]
    assert extractor.memory_limit == 2
    model.batch_sizes.clear()
    extractor(images)  # later batches go straight to the size that fitted
    assert model.batch_sizes == [2, 2, 2, 2] and len(extractor.oom_fallbacks) == 2


def test_out_of_memory_on_a_single_image_is_raised() -> None:
    extractor = TorchExtractor(_spec(), torch.device("cpu"), TinyNet(fail_above=0))
    with pytest.raises(torch.OutOfMemoryError):
        extractor(_images(2))
    assert extractor.memory_limit == 1


# ----------------------------------------------------------------------------------------- precision
def _check(spec: FeatureSpaceSpec, relative_change: float, device: str = "cpu") -> precision.PrecisionCheck:
    return precision.PrecisionCheck(
        space=spec.name,
        spec_hash=spec.spec_hash,
        precision="bf16",
        device=device,
        device_name="test",
        images="test images",
        n=16,
        fd_fp32=1.0,
        fd_reduced=1.0 + relative_change,
        relative_change=relative_change,
        max_feature_deviation=0.0,
        tolerance=precision.TOLERANCE,
        torch=torch.__version__,
        date="2026-01-01",
    )


def test_reduced_precision_runs_only_where_a_passing_check_is_recorded(tmp_path: Path) -> None:
    checks = tmp_path / "checks.json"
    plain = TorchExtractor(_spec(), torch.device("cpu"), TinyNet())
    unchanged, note = precision.configure(plain, "bf16", checks_file=checks)
    assert unchanged is plain and "no recorded bf16 check" in note
    precision.record_check(_check(plain.spec, 2e-3), checks)
    unchanged, note = precision.configure(plain, "bf16", checks_file=checks)
    assert unchanged is plain and "refused" in note and "2.0e-03" in note
    precision.record_check(_check(plain.spec, 1e-4, device="cuda"), checks)  # another device: no help here
    assert precision.configure(plain, "bf16", checks_file=checks)[0] is plain
    precision.record_check(_check(plain.spec, 1e-4), checks)  # replaces the failing cpu check
    assert len(precision.recorded_checks(checks)) == 2
    reduced, note = precision.configure(plain, "bf16", checks_file=checks)
    assert reduced is not plain and note.startswith("bf16 autocast")
    assert reduced.autocast == torch.bfloat16 and plain.autocast is None
    assert reduced.model is plain.model  # one network in memory
    assert reduced.spec.spec_hash != plain.spec.spec_hash  # never the float32 cache entries
    assert precision.configure(plain, "bf16", checks_file=checks)[0] is reduced  # made once
    images = _images(6)
    low, full = reduced(images), plain(images)
    assert low.dtype == torch.float32 and not torch.equal(low, full)
    torch.testing.assert_close(low, full, rtol=0.05, atol=0.05)
    with pytest.raises(ValueError, match="unknown precision"):
        precision.configure(plain, "int8")


def test_the_check_measures_the_fd_change_as_an_independent_computation_does(shared_data: Path) -> None:
    faces = sorted((shared_data / "faces" / "utkface200_crop_part1").glob("*.jpg"))[:40]
    arrays = [np.asarray(Image.open(path).convert("RGB").resize((20, 20))) for path in faces]
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    first, second = images[:20], images[20:]
    plain = TorchExtractor(_spec(), torch.device("cpu"), TinyNet())
    check = precision.check_precision(plain, "bf16", first, second, "20 + 20 UTKFace crops", batch_size=7)

    def oracle_features(batch: torch.Tensor, dtype: torch.dtype | None) -> np.ndarray:
        x = (
            torch.nn.functional.interpolate(batch.float(), size=(16, 16), mode="bilinear", antialias=True)
            / 255
        )
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            return plain.model(x).float().double().numpy()

    def oracle_fd(a: np.ndarray, b: np.ndarray) -> float:
        return fd_sqrtm_oracle(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))

    fd32 = oracle_fd(oracle_features(first, None), oracle_features(second, None))
    fd16 = oracle_fd(oracle_features(first, torch.bfloat16), oracle_features(second, torch.bfloat16))
    assert check.n == 20 and check.precision == "bf16" and check.spec_hash == plain.spec.spec_hash
    assert check.fd_fp32 == pytest.approx(fd32, rel=1e-4)
    assert check.fd_reduced == pytest.approx(fd16, rel=1e-2)
    assert check.relative_change == pytest.approx(abs(check.fd_reduced - check.fd_fp32) / check.fd_fp32)
    assert check.relative_change > 0 and check.max_feature_deviation > 0
    assert plain.autocast is None  # the check leaves the plain extractor alone


def test_every_recorded_check_is_consistent_with_its_numbers() -> None:
    checks = precision.recorded_checks()
    assert checks, "feature_spaces/precision_checks.json holds no check"
    for check in checks:
        assert check.precision in precision.PRECISIONS and check.precision != "fp32"
        assert check.relative_change == pytest.approx(abs(check.fd_reduced - check.fd_fp32) / check.fd_fp32)
        assert check.tolerance == precision.TOLERANCE
        if check.space in fs.names():
            assert check.spec_hash == fs.get(check.space).spec_hash, f"{check.space}: check of an old spec"


def test_the_engine_keeps_reduced_precision_features_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec("test-tiny-engine")
    fs.register(spec, lambda spec, device, paths: TinyNet(), replace=True)
    try:
        checks = tmp_path / "checks.json"
        monkeypatch.setattr(precision, "CHECKS_FILE", checks)
        source = TensorSource(_images(10))
        cache = ContentCache("engine", root=tmp_path / "engine")

        def run(asked: str):
            config = EngineConfig(batch_size=4, chunk_size=8, precision=asked, cache=cache, progress=False)
            return run_engine(source, [CLEAN], [spec.name], None, config)

        plain = run("fp32")
        refused = run("bf16")  # no check recorded: float32, served from the float32 entries
        assert refused.spaces[spec.name]["spec_hash"] == plain.spaces[spec.name]["spec_hash"]
        assert "no recorded bf16 check" in refused.spaces[spec.name]["numerics"]
        assert refused.cache_hits == 2 and refused.cache_misses == 0
        precision.record_check(_check(spec, 1e-4), checks)
        reduced = run("bf16")
        assert reduced.spaces[spec.name]["spec_hash"] != plain.spaces[spec.name]["spec_hash"]
        assert reduced.spaces[spec.name]["numerics"].startswith("bf16 autocast")
        assert reduced.cache_hits == 0 and reduced.cache_misses == 2
        a, b = plain.cell(CLEAN, spec.name), reduced.cell(CLEAN, spec.name)
        assert a.ids == b.ids and not np.array_equal(a.features, b.features)
        np.testing.assert_allclose(a.features, b.features, rtol=0.05, atol=0.05)
    finally:
        fs.unregister(spec.name)


# ----------------------------------------------------------------------------------------- compile
def test_a_failing_compiler_leaves_the_extractor_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(function, **options):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken)
    plain = TorchExtractor(_spec(), torch.device("cpu"), TinyNet())
    compiled, note = precision.configure(plain, "fp32", compile=True)
    assert compiled is not plain and "torch.compile requested" in note
    images = _images(5)
    assert torch.equal(compiled(images), plain(images))
    assert compiled.compile_status.startswith("eager (torch.compile failed: RuntimeError: no C++ compiler")
    assert torch.equal(compiled(images), plain(images))


def test_a_compiled_network_that_disagrees_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "compile", lambda function, **options: lambda x: function(x) + 1.0)
    plain = TorchExtractor(_spec(), torch.device("cpu"), TinyNet())
    compiled, _ = precision.configure(plain, "fp32", compile=True)
    images = _images(5)
    assert torch.equal(compiled(images), plain(images))
    assert compiled.compile_status.startswith("eager (compiled result deviates by")
    assert torch.equal(compiled(_images(3, seed=1)), plain(_images(3, seed=1)))


def test_a_compiled_network_that_fails_later_gives_way_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    def first_shape_only(function, **options):
        shapes: list[torch.Size] = []

        def compiled(x: torch.Tensor) -> torch.Tensor:
            shapes.append(x.shape)
            if x.shape != shapes[0]:
                raise RuntimeError("recompilation failed")
            return function(x)

        return compiled

    monkeypatch.setattr(torch, "compile", first_shape_only)
    plain = TorchExtractor(_spec(), torch.device("cpu"), TinyNet())
    compiled, _ = precision.configure(plain, "fp32", compile=True)
    compiled(_images(1))
    assert compiled.compile_status.startswith("compiled")
    other = _images(3, seed=2)
    assert torch.equal(compiled(other), plain(other))
    assert compiled.compile_status.startswith("eager (the compiled network failed later: RuntimeError")


@pytest.mark.slow
def test_torch_compile_keeps_the_numbers_to_rounding() -> None:
    plain = TorchExtractor(_spec(), torch.device("cpu"), TinyNet())
    compiled, _ = precision.configure(plain, "fp32", compile=True)
    images = _images(4)
    torch.testing.assert_close(compiled(images), plain(images), rtol=1e-5, atol=1e-6)
    if compiled.compile_status.startswith("eager (torch.compile failed: BackendCompilerFailed"):
        # The toolchain cannot build inductor's kernels here (seen under ATEN_CPU_CAPABILITY=default); the
        # fallback itself is covered by test_a_failing_compiler_leaves_the_extractor_eager.
        pytest.skip(f"torch.compile cannot compile on this machine: {compiled.compile_status[:200]}")
    assert compiled.compile_status.startswith("compiled"), compiled.compile_status
    torch.testing.assert_close(compiled(images), plain(images), rtol=1e-5, atol=1e-6)


def test_precision_checks_file_is_plain_json() -> None:
    entries = json.loads(precision.CHECKS_FILE.read_text())
    fields = {field.name for field in dataclasses.fields(precision.PrecisionCheck)}
    assert all(set(entry) == fields for entry in entries)
