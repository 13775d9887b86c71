"""Distances between feature sets: pure functions, no I/O, no hidden randomness (seeds are arguments)."""

from bench.metrics.frechet import FrechetResult, frechet_distance, frechet_distance_resampled
from bench.metrics.frechet_batched import frechet_distance_many
from bench.metrics.kid import KIDResult, kernel_inception_distance
from bench.metrics.neighbours import DensityCoverage, PrecisionRecall, density_coverage, precision_recall
from bench.metrics.resampling import BootstrapFD, FDInfinity, bootstrap_fd, fd_infinity
from bench.metrics.validation import InvalidStatisticsError

__all__ = [
    "BootstrapFD",
    "DensityCoverage",
    "FDInfinity",
    "FrechetResult",
    "InvalidStatisticsError",
    "KIDResult",
    "PrecisionRecall",
    "bootstrap_fd",
    "density_coverage",
    "fd_infinity",
    "frechet_distance",
    "frechet_distance_many",
    "frechet_distance_resampled",
    "kernel_inception_distance",
    "precision_recall",
]
