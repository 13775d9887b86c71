"""Figures of the spectral section: mean profiles with ±std bands, the gen/real ratio, mean 2-D spectra."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from bench.spectral.collect import SpectralSet
from bench.spectral.profiles import normalized_frequency

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def plot_mean_profiles(sets: Sequence[SpectralSet], mode: str = "durall", title: str | None = None) -> Figure:
    """Mean profile of each set with a ±1 std band, against frequency as a fraction of Nyquist."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for colour, spectral_set in zip(COLOURS, sets, strict=False):
        x = normalized_frequency(spectral_set.height, spectral_set.width, mode)
        mean, std = spectral_set.mean(mode), spectral_set.std(mode)
        if mode == "power":
            mean, std = 10 * np.log10(mean), None
        label = f"{spectral_set.name} ({spectral_set.size_label}, n={spectral_set.n})"
        ax.plot(x, mean, color=colour, lw=1.4, label=label)
        if std is not None:
            ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2, lw=0)
    ax.set_xlabel("spatial frequency (fraction of Nyquist; >1 = diagonal corners)")
    ax.set_ylabel("azimuthal mean of 20·ln|F|" if mode == "durall" else "mean power (dB)")
    ax.set_title(
        title or ("Durall 1-D spectrum, mean ± std" if mode == "durall" else "radial power spectrum")
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_power_ratio(real: SpectralSet, generated: Sequence[SpectralSet], title: str | None = None) -> Figure:
    """Ratio of mean radial power spectra generated / real (log y; 1 = identical)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    x = normalized_frequency(real.height, real.width, "power")
    for colour, gen in zip(COLOURS[1:], generated, strict=False):
        ratio = gen.mean("power") / real.mean("power")
        ax.plot(x, ratio, color=colour, lw=1.4, label=f"{gen.name} / {real.name}")
    ax.axhline(1.0, color="black", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xlabel("spatial frequency (fraction of Nyquist)")
    ax.set_ylabel("mean power ratio gen / real")
    ax.set_title(title or "spectral power ratio")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_mean_spectrum(
    spectral_set: SpectralSet, vmin: float | None = None, vmax: float | None = None
) -> Figure:
    """The set's mean 2-D spectrum S = 20·ln|F| (fftshifted, DC at the centre)."""
    spectrum = spectral_set.mean_spectrum()
    if spectrum is None:
        raise ValueError(f"set {spectral_set.name!r} was collected without its mean 2-D spectrum")
    fig, ax = plt.subplots(figsize=(4.2, 4.0), dpi=110)
    image = ax.imshow(spectrum, cmap="inferno", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(
        f"{spectral_set.name}: mean 20·ln|F| ({spectral_set.size_label}, n={spectral_set.n})", fontsize=9
    )
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def plot_detection(
    rows: Sequence[tuple[str, float, float]], title: str = "real-vs-generated accuracy"
) -> Figure:
    """Horizontal bars of (label, mean accuracy, std); chance at 0.5 marked."""
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(rows) + 1.2), dpi=110)
    labels = [row[0] for row in rows]
    means = np.array([row[1] for row in rows])
    stds = np.array([row[2] for row in rows])
    ax.barh(np.arange(len(rows)), means, xerr=stds, color="#1f77b4", alpha=0.8)
    ax.axvline(0.5, color="black", lw=0.8, ls="--")
    ax.set_yticks(np.arange(len(rows)), labels, fontsize=8)
    ax.set_xlim(0.0, 1.02)
    ax.set_xlabel("test accuracy (mean ± std over 10 splits)")
    ax.set_title(title)
    fig.tight_layout()
    return fig
