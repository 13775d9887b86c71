"""Distances between two sets of spectral profiles (METHODS §4).

* ``bce``: binary cross-entropy of the min–max-normalized mean profiles, the real set's as target:
  −mean[t·ln p + (1 − t)·ln(1 − p)], logs clamped at −100 as in ``torch.nn.BCELoss`` (Durall's spectral
  loss uses exactly that loss, and a min–max-normalized profile contains an exact 0 and 1). It is not zero
  for identical sets (it equals the target's binary entropy), so ``bce_excess`` = bce − H(t) is reported
  too: zero for identical mean profiles.
* ``l2_log_profile``: Euclidean distance between the mean log-profiles. Durall profiles are already
  logarithmic (20·ln|F|); power profiles are logged as 10·ln P, the same unit.
* ``fd_profile``: the Fréchet distance (METHODS §1) with each image's profile as its feature vector.
"""

from __future__ import annotations

import numpy as np

from bench.metrics.frechet import frechet_distance
from bench.spectral.profiles import SpectralInputError

LOG_CLAMP = -100.0


def minmax_normalize(profiles: np.ndarray) -> np.ndarray:
    """Scale each profile (last axis) to [0, 1]: (p − min)/(max − min); a flat profile maps to zeros."""
    profiles = np.asarray(profiles, dtype=np.float64)
    low = profiles.min(axis=-1, keepdims=True)
    span = profiles.max(axis=-1, keepdims=True) - low
    return np.divide(profiles - low, span, out=np.zeros_like(profiles), where=span > 0)


def binary_cross_entropy(prediction: np.ndarray, target: np.ndarray) -> float:
    """Mean BCE of ``prediction`` against ``target`` (both in [0, 1]), logs clamped at −100."""
    p = np.asarray(prediction, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if p.shape != t.shape:
        raise SpectralInputError(f"profile lengths differ: {p.shape} vs {t.shape}")
    with np.errstate(divide="ignore"):
        log_p = np.maximum(np.log(p), LOG_CLAMP)
        log_q = np.maximum(np.log1p(-p), LOG_CLAMP)
    return float(-np.mean(t * log_p + (1.0 - t) * log_q))


def bce_distance(real_mean: np.ndarray, generated_mean: np.ndarray) -> float:
    """Durall's BCE between min–max-normalized mean profiles (real as target)."""
    return binary_cross_entropy(minmax_normalize(generated_mean), minmax_normalize(real_mean))


def bce_excess(real_mean: np.ndarray, generated_mean: np.ndarray) -> float:
    """BCE minus the target's own binary entropy: 0 when the normalized mean profiles coincide."""
    target = minmax_normalize(real_mean)
    return bce_distance(real_mean, generated_mean) - binary_cross_entropy(target, target)


def log_profiles(profiles: np.ndarray, mode: str) -> np.ndarray:
    """Profiles on the log scale: Durall profiles unchanged, power profiles as 10·ln P."""
    profiles = np.asarray(profiles, dtype=np.float64)
    if mode == "durall":
        return profiles
    if mode == "power":
        return 10.0 * np.log(np.clip(profiles, np.finfo(float).tiny, None))
    raise SpectralInputError(f"unknown profile mode {mode!r}")


def l2_log_profile(a_log_mean: np.ndarray, b_log_mean: np.ndarray) -> float:
    """Euclidean distance between two mean log-profiles."""
    a = np.asarray(a_log_mean, dtype=np.float64)
    b = np.asarray(b_log_mean, dtype=np.float64)
    if a.shape != b.shape:
        raise SpectralInputError(f"profile lengths differ: {a.shape} vs {b.shape}")
    return float(np.linalg.norm(a - b))


def fd_profile(a_profiles: np.ndarray, b_profiles: np.ndarray):
    """Fréchet distance with profiles as features; returns bench.metrics' FrechetResult."""
    return frechet_distance(np.asarray(a_profiles, np.float64), np.asarray(b_profiles, np.float64))


def profile_distances(
    real_profiles: np.ndarray, generated_profiles: np.ndarray, mode: str
) -> dict[str, float]:
    """All set distances between two (n, L) profile arrays of the same image size and mode."""
    real = np.asarray(real_profiles, dtype=np.float64)
    generated = np.asarray(generated_profiles, dtype=np.float64)
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise SpectralInputError(
            f"profiles must be (n, L) arrays of equal L, got {real.shape} and {generated.shape}; "
            "sets of different image sizes are compared only after a common crop"
        )
    real_log, gen_log = log_profiles(real, mode), log_profiles(generated, mode)
    fd = fd_profile(real_log, gen_log)
    return {
        "bce": bce_distance(real_log.mean(0), gen_log.mean(0)),
        "bce_excess": bce_excess(real_log.mean(0), gen_log.mean(0)),
        "l2_log_profile": l2_log_profile(real_log.mean(0), gen_log.mean(0)),
        "fd_profile": fd.value,
        "fd_profile_mean_term": fd.mean_term,
        "fd_profile_trace_term": fd.trace_term,
    }
