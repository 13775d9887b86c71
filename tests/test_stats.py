"""Streaming Gaussian statistics: exactness, order independence, and the file formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.stats import FeatureError, GaussianStats, StatsFileError, merge_all


def _relative_close(actual: np.ndarray, expected: np.ndarray, rtol: float) -> bool:
    scale = max(float(np.abs(expected).max()), 1e-300)
    return float(np.abs(actual - expected).max()) <= rtol * scale


def test_from_features_matches_numpy_cov_and_mean() -> None:
    x = np.random.default_rng(0).standard_normal((200, 7)) * 5 + 3
    stats = GaussianStats.from_features(x)
    assert stats.n == 200
    np.testing.assert_allclose(stats.mean, x.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=1e-12)


def test_large_offset_does_not_cancel() -> None:
    """|μ| ≫ spread: the pairwise update keeps the covariance; the one-pass form would lose it."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1000, 3)) * 1e-3 + 1e6
    streamed = GaussianStats.empty(3)
    for batch in np.array_split(x, 17):
        streamed.update(batch)
    centred = x - x.mean(axis=0)
    expected = centred.T @ centred / (len(x) - 1)
    # The data themselves carry ~1e-10 absolute rounding at magnitude 1e6, i.e. ~1e-7 of the spread.
    assert _relative_close(streamed.cov, expected, 1e-6)
    one_pass = (x.T @ x - len(x) * np.outer(x.mean(0), x.mean(0))) / (len(x) - 1)
    assert not _relative_close(one_pass, expected, 1e-1)  # what the pairwise update protects against


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(min_value=2, max_value=120),
    d=st.integers(min_value=1, max_value=9),
    cuts=st.lists(st.integers(min_value=1, max_value=119), max_size=6),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
)
def test_streaming_is_independent_of_batching_and_shard_order(
    n: int, d: int, cuts: list[int], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) * rng.uniform(0.1, 10.0, d) + rng.uniform(-50, 50, d)
    whole = GaussianStats.from_features(x)
    bounds = sorted({c for c in cuts if c < n})
    shards = [GaussianStats.from_features(part) for part in np.split(x, bounds) if len(part)]
    forward = merge_all(shards)
    backward = merge_all(shards[::-1])
    sequential = GaussianStats.empty(d)
    for part in np.split(x, bounds):
        if len(part):
            sequential.update(part)
    for candidate in (forward, backward, sequential):
        assert candidate.n == n
        assert _relative_close(candidate.mean, whole.mean, 1e-12)
        assert _relative_close(candidate.m2, whole.m2, 1e-12)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**31 - 1), sizes=st.tuples(*[st.integers(1, 40)] * 3))
def test_merge_is_associative(seed: int, sizes: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(seed)
    a, b, c = (GaussianStats.from_features(rng.standard_normal((size, 4)) + 7) for size in sizes)
    left, right = a.merge(b).merge(c), a.merge(b.merge(c))
    assert left.n == right.n
    assert _relative_close(left.mean, right.mean, 1e-12)
    assert _relative_close(left.m2, right.m2, 1e-12)


def test_torch_input_gives_the_same_statistics_as_numpy() -> None:
    x = np.random.default_rng(2).standard_normal((64, 5))
    from_numpy = GaussianStats.from_features(x)
    from_torch = GaussianStats.from_features(torch.from_numpy(x).to(torch.float32))
    assert _relative_close(from_torch.cov, from_numpy.cov, 1e-6)  # float32 input, float64 accumulation
    exact = GaussianStats.from_features(torch.from_numpy(x))
    assert _relative_close(exact.m2, from_numpy.m2, 1e-14)


def test_roundtrip_fdbench_file(tmp_path: Path) -> None:
    x = np.random.default_rng(3).standard_normal((50, 6))
    stats = GaussianStats.from_features(x, provenance={"space": "pixels-randproj", "images": 50})
    path = stats.save(tmp_path / "s.npz")
    loaded = GaussianStats.load(path)
    assert loaded.n == 50 and loaded.provenance == {"space": "pixels-randproj", "images": 50}
    np.testing.assert_array_equal(loaded.mean, stats.mean)
    assert _relative_close(loaded.m2, stats.m2, 1e-15)
    with np.load(path, allow_pickle=False) as data:
        assert {"n", "mean", "cov", "dim", "provenance"} <= set(data.files)
        assert json.loads(str(data["provenance"]))["space"] == "pixels-randproj"


def test_pytorch_fid_and_clean_fid_files(tmp_path: Path) -> None:
    x = np.random.default_rng(4).standard_normal((40, 3))
    stats = GaussianStats.from_features(x)
    path = stats.save_pytorch_fid(tmp_path / "pfid.npz")
    with np.load(path) as data:  # how pytorch-fid reads a precomputed statistics file
        assert set(data.files) == {"mu", "sigma"}
        np.testing.assert_allclose(data["sigma"], np.cov(x, rowvar=False), rtol=1e-12)
    # clean-fid writes its reference statistics with np.savez_compressed(mu=..., sigma=...).
    clean = tmp_path / "ffhq_clean_custom_na.npz"
    np.savez_compressed(clean, mu=x.mean(axis=0), sigma=np.cov(x, rowvar=False))
    loaded = GaussianStats.load(clean)
    assert loaded.n is None
    np.testing.assert_allclose(loaded.cov, np.cov(x, rowvar=False), rtol=1e-12)
    with pytest.raises(FeatureError, match="cannot be merged"):
        loaded.merge(stats)


def test_file_with_missing_keys_names_them(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, mu=np.zeros(3))
    with pytest.raises(StatsFileError, match=r"missing \['sigma'\]"):
        GaussianStats.load(path)


def test_file_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickled.npz"
    np.savez(path, mu=np.array([{"evil": 1}], dtype=object), sigma=np.eye(1))
    with pytest.raises(StatsFileError, match="pickled Python objects"):
        GaussianStats.load(path)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="statistics file not found"):
        GaussianStats.load(tmp_path / "absent.npz")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip archive at all")
    with pytest.raises(StatsFileError, match=r"not a readable \.npz"):
        GaussianStats.load(corrupt)


def test_covariance_needs_two_samples() -> None:
    with pytest.raises(FeatureError, match="at least 2 samples"):
        _ = GaussianStats.from_features(np.ones((1, 3))).cov


def test_merge_dimension_mismatch() -> None:
    with pytest.raises(FeatureError, match="dimension 2 and 3"):
        GaussianStats.from_features(np.ones((2, 2))).merge(GaussianStats.from_features(np.ones((2, 3))))


def _write_pytorch_fid(path: Path, mu: np.ndarray, sigma: np.ndarray) -> Path:
    np.savez(path, mu=mu, sigma=sigma)
    return path


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (
            lambda mu, sigma: (mu, np.where(np.eye(3, dtype=bool), np.nan, sigma)),
            "has 3 of 9 values that are NaN",
        ),
        (lambda mu, sigma: (np.array([0.0, np.inf, 0.0]), sigma), "the mean has 1 of 3 values"),
        (lambda mu, sigma: (mu, sigma + np.triu(np.ones((3, 3)), 1)), "the covariance is not symmetric"),
        (lambda mu, sigma: (mu, -sigma), "the covariance is not positive semi-definite"),
    ],
)
def test_invalid_statistics_files_name_the_file_and_the_check(tmp_path: Path, corrupt, message: str) -> None:
    """Before: FD 0.0 for asymmetric or negative-definite Σ, `NaN` in the JSON or a hang for NaN."""
    x = np.random.default_rng(5).standard_normal((40, 3))
    mu, sigma = corrupt(x.mean(axis=0), np.cov(x, rowvar=False))
    path = _write_pytorch_fid(tmp_path / "bad.npz", mu, sigma)
    with pytest.raises(StatsFileError, match=message) as caught:
        GaussianStats.load(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_a_loaded_covariance_is_symmetrised(tmp_path: Path) -> None:
    x = np.random.default_rng(6).standard_normal((40, 3))
    sigma = np.cov(x, rowvar=False)
    sigma[0, 1] += 1e-12 * np.abs(sigma).max()  # asymmetric within the 1e-8 tolerance: accepted
    loaded = GaussianStats.load(_write_pytorch_fid(tmp_path / "almost.npz", x.mean(axis=0), sigma))
    np.testing.assert_array_equal(loaded.cov, loaded.cov.T)
    np.testing.assert_allclose(loaded.cov, np.cov(x, rowvar=False), rtol=1e-10)


def test_cli_fd_on_a_nan_file_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from bench.cli import main

    x = np.random.default_rng(7).standard_normal((40, 3))
    good = _write_pytorch_fid(tmp_path / "good.npz", x.mean(axis=0), np.cov(x, rowvar=False))
    bad = _write_pytorch_fid(tmp_path / "nan.npz", x.mean(axis=0), np.full((3, 3), np.nan))
    assert main(["fd", str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "nan.npz: the covariance has 9 of 9 values that are NaN or infinite" in captured.err
    assert "Traceback" not in captured.err
