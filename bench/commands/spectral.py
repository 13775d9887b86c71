"""`fdbench spectral REAL GEN [--out DIR]`: Durall spectra, spectral distances and detection accuracies."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `spectral` sub-command."""
    parser = subparsers.add_parser(
        "spectral",
        help="compare the Fourier spectra of two image sets (Durall profiles, distances, detection)",
        description=(
            "Mean Durall 1-D spectra with ±std bands, the gen/real power ratio, mean 2-D spectra, "
            "BCE / L2 / FD spectral distances and real-vs-generated detection accuracies (logistic "
            "regression, linear SVM, kNN on decay features). Images are never resized: sizes are grouped, "
            "or centre-cropped with --crop."
        ),
    )
    parser.add_argument("real", help="real images: folder, .zip, .npz, or a generator spec")
    parser.add_argument(
        "generated", help="generated images: folder, .zip, .npz, or e.g. dcgan-faces:count=500,seed=0"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("reports/spectral"), help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--crop", type=int, default=None, metavar="SIZE", help="centre-crop every image to SIZE×SIZE"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (default: %(default)s)")
    parser.add_argument(
        "--device", default=None, help="torch device (default: CUDA when available, else CPU)"
    )
    parser.add_argument(
        "--seeds", type=int, default=10, help="number of train/test splits (default: %(default)s)"
    )
    parser.set_defaults(handler=run_spectral)


def run_spectral(args: argparse.Namespace) -> int:
    """Handler: one call to `bench.spectral.section.spectral_section`, then write results and summary."""
    from bench.device import resolve_device
    from bench.errors import UserError
    from bench.reports.results import save_results
    from bench.sources import open_source
    from bench.spectral.profiles import SpectralInputError
    from bench.spectral.section import spectral_section

    if args.crop is not None and args.crop < 4:
        raise UserError(f"--crop must be at least 4 pixels, got {args.crop}")
    if args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {args.seeds}")
    device = resolve_device(args.device)
    real = open_source(args.real)
    generated = open_source(args.generated)
    try:
        section = spectral_section(
            real,
            generated,
            args.out,
            real_name="real",
            generated_name="generated",
            size_policy="crop" if args.crop else "group",
            crop_size=args.crop,
            batch_size=args.batch_size,
            device=device,
            seeds=tuple(range(args.seeds)),
        )
    except SpectralInputError as error:
        raise UserError(str(error)) from error
    if section.results.empty or (section.results["metric"] == "skipped").all():
        reasons = "; ".join(section.results.get("note", []))
        raise UserError(f"no image size is shared by the two sets, nothing compared ({reasons})")
    save_results(section.results, args.out)
    sources = f"Real: `{args.real}`. Generated: `{args.generated}`. Device: {device}.\n\n"
    (args.out / "summary.md").write_text(sources + section.markdown, encoding="utf-8")
    print(section.markdown)
    print(f"wrote {len(section.figures)} figures, results.csv and summary.md to {args.out}")
    return 0
