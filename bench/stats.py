"""Gaussian statistics of feature sets: streaming, exactly mergeable, in float64.

A set of features is summarised by (n, mean, M2), where M2 is the sum of outer products of deviations from
the mean. Batches and shards are combined with Chan et al.'s pairwise update, so the result does not depend
on batch size, shard order or the number of workers (METHODS §1). The one-pass Σxxᵀ − nμμᵀ form is never
used: it cancels catastrophically when |μ| is large compared with the spread.

Files: fdbench's own `.npz` (n, mean, cov, dim, provenance), pytorch-fid's `{mu, sigma}` `.npz` (read and
write) and clean-fid's statistics files (read; they use the same `{mu, sigma}` keys).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

try:  # torch is optional for this module: statistics also work on numpy arrays alone.
    import torch
except ImportError:  # pragma: no cover - torch is a declared dependency
    torch = None  # type: ignore[assignment]

FDBENCH_FORMAT = "fdbench-gaussian-stats-v1"


class FeatureError(ValueError):
    """Features that cannot be summarised: wrong shape, non-finite rows, too few rows."""


class StatsFileError(ValueError):
    """A statistics file that is missing keys, holds pickled objects or is otherwise unreadable."""


def as_float64_features(features: Any, *, name: str = "features") -> np.ndarray:
    """Return `features` as a C-contiguous float64 numpy (n, d) array, validated.

    Accepts numpy arrays, torch tensors on any device and nested sequences. Raises FeatureError naming the
    problem: wrong number of dimensions, or how many rows hold NaN or infinite values.
    """
    if torch is not None and isinstance(features, torch.Tensor):
        array = features.detach().to(device="cpu", dtype=torch.float64).numpy()
    else:
        array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2:
        raise FeatureError(f"{name} must be a 2-D (n, d) array, got shape {tuple(array.shape)}")
    bad_rows = int((~np.isfinite(array)).any(axis=1).sum())
    if bad_rows:
        raise FeatureError(
            f"{name} has {bad_rows} of {array.shape[0]} rows containing NaN or infinite values; "
            "drop or fix them before computing statistics"
        )
    return np.ascontiguousarray(array)


def _batch_moments(batch: Any) -> tuple[int, np.ndarray, np.ndarray]:
    """(n, mean, M2) of one batch, computed in float64 on the batch's own device for torch tensors."""
    if torch is not None and isinstance(batch, torch.Tensor):
        if batch.ndim != 2:
            raise FeatureError(f"features must be a 2-D (n, d) array, got shape {tuple(batch.shape)}")
        values = batch.detach().to(torch.float64)
        bad_rows = int((~torch.isfinite(values)).any(dim=1).sum())
        if bad_rows:
            raise FeatureError(
                f"features have {bad_rows} of {values.shape[0]} rows containing NaN or infinite values; "
                "drop or fix them before computing statistics"
            )
        mean = values.mean(dim=0)
        centred = values - mean
        m2 = centred.T @ centred
        return values.shape[0], mean.cpu().numpy(), m2.cpu().numpy()
    values = as_float64_features(batch)
    mean = values.mean(axis=0)
    centred = values - mean
    return values.shape[0], mean, centred.T @ centred


@dataclass
class GaussianStats:
    """Sample count, mean and sum of squared deviations (M2) of a feature set, in float64.

    `cov` is the unbiased sample covariance M2 / (n − 1), as `numpy.cov(X, rowvar=False)`. Statistics read
    from files that do not record n (pytorch-fid, clean-fid) have `n = None`: they can be compared but not
    merged.
    """

    n: int | None
    mean: np.ndarray
    m2: np.ndarray
    provenance: dict[str, Any] = field(default_factory=dict)

    # ----------------------------------------------------------------------------------------- building
    @classmethod
    def empty(cls, dim: int) -> GaussianStats:
        """Statistics of zero samples in `dim` dimensions: the neutral element of `merge`."""
        return cls(n=0, mean=np.zeros(dim), m2=np.zeros((dim, dim)))

    @classmethod
    def from_features(cls, features: Any, provenance: dict[str, Any] | None = None) -> GaussianStats:
        """Statistics of an (n, d) numpy array or torch tensor (any device, any float dtype)."""
        n, mean, m2 = _batch_moments(features)
        return cls(n=n, mean=mean, m2=m2, provenance=dict(provenance or {}))

    @classmethod
    def from_mean_cov(
        cls, mean: Any, cov: Any, n: int | None = None, provenance: dict[str, Any] | None = None
    ) -> GaussianStats:
        """Statistics from a mean and an unbiased covariance (n unknown unless given)."""
        mean_arr = np.asarray(mean, dtype=np.float64).reshape(-1)
        cov_arr = np.asarray(cov, dtype=np.float64)
        if cov_arr.shape != (mean_arr.size, mean_arr.size):
            raise StatsFileError(
                f"covariance shape {cov_arr.shape} does not match mean length {mean_arr.size}"
            )
        scale = (n - 1) if n is not None and n >= 2 else 1
        return cls(n=n, mean=mean_arr, m2=cov_arr * scale, provenance=dict(provenance or {}))

    def update(self, batch: Any) -> GaussianStats:
        """Fold one more batch of features into these statistics (in place) and return self."""
        merged = self.merge(GaussianStats.from_features(batch))
        self.n, self.mean, self.m2 = merged.n, merged.mean, merged.m2
        return self

    def merge(self, other: GaussianStats) -> GaussianStats:
        """Statistics of the union of both sets (Chan et al. pairwise update); neither input changes."""
        if self.n is None or other.n is None:
            raise FeatureError(
                "statistics read without a sample count (pytorch-fid/clean-fid) cannot be merged"
            )
        if self.dim != other.dim:
            raise FeatureError(f"cannot merge statistics of dimension {self.dim} and {other.dim}")
        if other.n == 0:
            return GaussianStats(self.n, self.mean.copy(), self.m2.copy(), dict(self.provenance))
        if self.n == 0:
            return GaussianStats(other.n, other.mean.copy(), other.m2.copy(), dict(self.provenance))
        total = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / total)
        m2 = self.m2 + other.m2 + np.outer(delta, delta) * (self.n * other.n / total)
        return GaussianStats(total, mean, m2, dict(self.provenance))

    # ------------------------------------------------------------------------------------------ reading
    @property
    def dim(self) -> int:
        """Feature dimension d."""
        return int(self.mean.shape[0])

    @property
    def singular_by_count(self) -> bool:
        """True when n ≤ d: the covariance has rank ≤ n − 1 < d, however its factorisation rounds (False when
        n is unknown)."""
        return self.n is not None and self.n <= self.dim

    @property
    def cov(self) -> np.ndarray:
        """Unbiased sample covariance (divides by n − 1)."""
        if self.n is None:
            return self.m2
        if self.n < 2:
            raise FeatureError(f"a covariance needs at least 2 samples, these statistics have n = {self.n}")
        return self.m2 / (self.n - 1)

    # ------------------------------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write fdbench's `.npz` (n, mean, cov, dim, provenance JSON) atomically."""
        arrays = {
            "format": np.array(FDBENCH_FORMAT),
            "n": np.array(-1 if self.n is None else self.n, dtype=np.int64),
            "mean": self.mean,
            "cov": self.cov,
            "dim": np.array(self.dim, dtype=np.int64),
            "provenance": np.array(json.dumps(self.provenance, sort_keys=True, default=str)),
        }
        return _atomic_savez(Path(path), arrays)

    def save_pytorch_fid(self, path: str | Path) -> Path:
        """Write pytorch-fid's `{mu, sigma}` `.npz` (readable by `pytorch_fid` and clean-fid)."""
        return _atomic_savez(Path(path), {"mu": self.mean, "sigma": self.cov})

    @classmethod
    def load(cls, path: str | Path) -> GaussianStats:
        """Read fdbench, pytorch-fid or clean-fid statistics; the format is recognised from the keys."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"statistics file not found: {path}")
        with open(path, "rb") as handle:
            if handle.read(4) != b"PK\x03\x04":
                raise StatsFileError(f"{path} is not a readable .npz statistics file (not a zip archive)")
        try:
            with np.load(path, allow_pickle=False) as data:
                contents = {key: data[key] for key in data.files}
        except ValueError as error:
            if "pickle" in str(error).lower():
                raise StatsFileError(
                    f"{path} holds pickled Python objects, which fdbench never loads (unsafe); "
                    "re-save it with plain numeric arrays"
                ) from error
            raise StatsFileError(f"{path} is not a readable .npz statistics file: {error}") from error
        except (OSError, EOFError) as error:
            raise StatsFileError(f"{path} is not a readable .npz statistics file: {error}") from error
        return validated(_stats_from_arrays(contents, path), path)


def validated(stats: GaussianStats, path: Path) -> GaussianStats:
    """`stats` read from `path` after METHODS §2's input checks (finite, square, symmetric, PSD), its
    covariance symmetrised; a failure is a StatsFileError naming the file and the check."""
    from bench.metrics.validation import InvalidStatisticsError, checked_mean_cov, cholesky_or_psd

    try:
        mean, cov = checked_mean_cov(stats.mean, stats.cov, str(path))
        cholesky_or_psd(cov, str(path))
    except InvalidStatisticsError as error:
        raise StatsFileError(str(error)) from error
    scale = (stats.n - 1) if stats.n is not None and stats.n >= 2 else 1
    return GaussianStats(n=stats.n, mean=mean, m2=cov * scale, provenance=stats.provenance)


def _stats_from_arrays(contents: dict[str, np.ndarray], path: Path) -> GaussianStats:
    keys = set(contents)
    if {"mean", "cov", "n"} <= keys:
        n = int(contents["n"])
        provenance = json.loads(str(contents["provenance"])) if "provenance" in keys else {}
        stats = GaussianStats.from_mean_cov(
            contents["mean"], contents["cov"], n=None if n < 0 else n, provenance=provenance
        )
        if "dim" in keys and int(contents["dim"]) != stats.dim:
            raise StatsFileError(f"{path}: 'dim' is {int(contents['dim'])} but the mean has {stats.dim}")
        return stats
    if {"mu", "sigma"} <= keys:
        return GaussianStats.from_mean_cov(
            contents["mu"], contents["sigma"], n=None, provenance={"source_file": str(path)}
        )
    ours = sorted({"n", "mean", "cov"} - keys)
    theirs = sorted({"mu", "sigma"} - keys)
    raise StatsFileError(
        f"{path} is not a statistics file: it has keys {sorted(keys)}; fdbench files need "
        f"n, mean, cov (missing {ours}) and pytorch-fid/clean-fid files need mu, sigma (missing {theirs})"
    )


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write an `.npz` atomically (the `.npz` suffix is added when missing)."""
    from bench.cache import atomic_save_npz

    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    return atomic_save_npz(path, **arrays)


def merge_all(parts: list[GaussianStats]) -> GaussianStats:
    """Merge a list of statistics pairwise in a balanced tree (exact; order-independent to rounding)."""
    if not parts:
        raise FeatureError("nothing to merge: the list of statistics is empty")
    level = list(parts)
    while len(level) > 1:
        level = [
            level[i].merge(level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)
        ]
    return level[0]
