"""Validate the spectral analysis on real data and regenerate docs/spectral.md's numbers and plots.

Protocol (docs/spectral.md, "Validation"):

* real: every CelebA-HQ (1024², JPEG q≈75) and UTKFace (200², JPEG) photograph in the shared test data,
  decoded to RGB and downscaled once to 64×64 with PIL's antialiasing Lanczos filter, rounded to uint8;
* dcgan-faces: as many 64×64 images from the built-in DCGAN face generator (transposed convolutions),
  seed 0, rounded to uint8 by the source; no resizing, no compression;
* up-sampling: the same 64² real photographs after ×2 box down-sampling and ×2 up-sampling by
  `bench.perturbations.make_perturbation("upsample", mode=...)` for nearest, bilinear and zero-insertion.

Writes docs/img/spectral_*.png and replaces the block between the validation markers in docs/spectral.md.

    python scripts/validate_spectral.py [--data ../shared/data] [--limit N]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
REAL_FOLDERS = ("celebahq1024_interfacegan_fork", "utkface200_crop_part1")
SIZE = 64
BEGIN, END = "<!-- validation:begin -->", "<!-- validation:end -->"


def load_real_faces(data: Path, limit: int | None) -> tuple[torch.Tensor, dict[str, int]]:
    """Every real photograph of REAL_FOLDERS, RGB, Lanczos-downscaled to 64×64 uint8; counts per folder."""
    from bench.sources import open_source

    images, counts = [], {}
    for folder in REAL_FOLDERS:
        source = open_source(data / "faces" / folder)
        count = 0
        for _, array in source.iter_images():
            if limit is not None and count >= limit:
                break
            small = Image.fromarray(array).resize((SIZE, SIZE), Image.Resampling.LANCZOS)
            images.append(torch.from_numpy(np.asarray(small).copy()).permute(2, 0, 1))
            count += 1
        counts[folder] = count
        skipped = len(source.decode_log.skipped)
        if skipped:
            print(f"{folder}: {skipped} files could not be decoded and were skipped", file=sys.stderr)
    return torch.stack(images), counts


def dcgan_faces(count: int) -> torch.Tensor:
    from bench.sources import open_source

    source = open_source(f"dcgan-faces:count={count},seed=0")
    return torch.cat([batch for _, batch in source.iter_batches(128)])


def results_table(section, title: str) -> list[str]:
    table = section.results
    lines = [
        f"#### {title}",
        "",
        "| generated set | BCE | BCE excess | L2 log-profile | FD profile | "
        "logistic regression | linear SVM | kNN on decay features | classifier band | max-separation band |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, block in table.groupby("variant", sort=False):

        def value(metric: str, space: str = "spectrum-durall", rows=block) -> float:
            return float(rows[(rows["metric"] == metric) & (rows["space"] == space)]["value"].iloc[0])

        def accuracy(metric: str, space: str = "spectrum-durall") -> str:
            return f"{100 * value(metric, space):.1f} ± {100 * value(metric + '_std', space):.1f} %"

        band = f"{value('band_low_nyquist'):.2f}–{value('band_high_nyquist'):.2f}"
        effect = f"{value('effect_band_low_nyquist'):.2f}–{value('effect_band_high_nyquist'):.2f}"
        lines.append(
            f"| {variant} | {value('bce'):.4f} | {value('bce_excess'):.4f} | {value('l2_log_profile'):.1f} | "
            f"{value('fd_profile'):.1f} | {accuracy('acc_logreg')} | {accuracy('acc_svm')} | "
            f"{accuracy('acc_knn_decay', 'spectrum-dzanic')} | {band} | {effect} |"
        )
    return [*lines, ""]


def figure_lines(section, keys: list[tuple[str, str]]) -> list[str]:
    lines = []
    for key, caption in keys:
        path = section.figures.get(key)
        if path is not None:
            lines.append(f"![{caption}](img/{path.name})")
            lines.append("")
    return lines


def main() -> int:
    from bench.perturbations import make_perturbation
    from bench.spectral.section import spectral_section

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--limit", type=int, default=None, help="at most N photographs per real folder")
    parser.add_argument("--docs", type=Path, default=REPO / "docs")
    args = parser.parse_args()

    started = time.time()
    real, counts = load_real_faces(args.data, args.limit)
    n_real = real.shape[0]
    generated = dcgan_faces(n_real)
    image_dir = args.docs / "img"
    dcgan = spectral_section(
        real, {"dcgan-faces": generated}, image_dir, real_name="real photos", figure_prefix="spectral_dcgan_"
    )
    upsampled = {
        mode: make_perturbation("upsample", mode=mode)(real)
        for mode in ("nearest", "bilinear", "zero_insertion")
    }
    upsample = spectral_section(
        real, upsampled, image_dir, real_name="real photos", figure_prefix="spectral_upsample_"
    )
    # the same comparisons per real folder (CelebA-HQ vs UTKFace), figures discarded
    per_folder = []
    start = 0
    with tempfile.TemporaryDirectory() as scratch:
        for folder, count in counts.items():
            subset = slice(start, start + count)
            start += count
            sets = {"dcgan-faces": generated[subset]}
            sets.update({mode: images[subset] for mode, images in upsampled.items()})
            section = spectral_section(
                real[subset], sets, scratch, real_name=folder, figure_prefix="scratch_"
            )
            per_folder += results_table(section, f"Per real folder: `{folder}` ({count} photographs)")
    elapsed = time.time() - started

    tag = f"{SIZE}x{SIZE}"
    block = [
        BEGIN,
        f"Regenerated by `python scripts/validate_spectral.py` in {elapsed:.0f} s on "
        f"{torch.get_num_threads()} CPU threads (torch {torch.__version__}).",
        "",
        f"Real photographs: {n_real} ("
        + ", ".join(f"{count} from `{folder}`" for folder, count in counts.items())
        + f"), each downscaled once to {SIZE}×{SIZE} with PIL Lanczos (antialiased). "
        f"dcgan-faces: {generated.shape[0]} images, seed 0, native {SIZE}×{SIZE}. "
        f"Size policy: {dcgan.size_policy}.",
        "",
        *results_table(dcgan, "Real photographs vs dcgan-faces"),
        *results_table(upsample, "Real photographs vs the same photographs after ×2 down/up-sampling"),
        *per_folder,
        "BCE excess = BCE − binary entropy of the real normalized profile (0 for identical mean profiles). "
        "Accuracies: mean ± std over 10 stratified 80/20 splits; chance is 50 %. Bands: fractions of the "
        "Nyquist radius (above 1 = diagonal corners); classifier band = largest logistic-regression weight, "
        "max-separation band = largest per-bin |Cohen's d|.",
        "",
        *figure_lines(
            dcgan,
            [
                (f"profiles_{tag}", "mean Durall profiles, real vs dcgan-faces"),
                (f"power_ratio_{tag}", "power ratio dcgan-faces / real"),
                (f"spectrum_real-photos_{tag}", "mean 2-D spectrum, real photographs"),
                (f"spectrum_dcgan-faces_{tag}", "mean 2-D spectrum, dcgan-faces"),
                (f"detection_{tag}", "detection accuracies, dcgan-faces"),
            ],
        ),
        *figure_lines(
            upsample,
            [
                (f"profiles_{tag}", "mean Durall profiles after up-sampling"),
                (f"power_ratio_{tag}", "power ratios up-sampled / real"),
                (f"spectrum_zero_insertion_{tag}", "mean 2-D spectrum after zero insertion"),
                (f"detection_{tag}", "detection accuracies, up-sampling"),
            ],
        ),
        END,
    ]
    print("\n".join(block))
    doc = args.docs / "spectral.md"
    if doc.is_file():
        text = doc.read_text(encoding="utf-8")
        pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
        if pattern.search(text):
            doc.write_text(pattern.sub(lambda _: "\n".join(block), text), encoding="utf-8")
            print(f"updated {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
