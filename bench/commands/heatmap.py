"""`fdbench heatmap IMAGES --reference REF --space S`: per-image FD sensitivity heatmaps (METHODS §10).

Writes one overlay PNG per image and space under OUT/SPACE/ and a self-contained OUT/heatmaps.html. With
`--masks` (the BiSeNet parser or a folder of label maps) and `--agreement RESULTS.csv` (a region-blur
results table) it also ranks the face regions by heatmap mass per pixel against that table's nFD and
reports Spearman ρ with a bootstrap interval over images (OUT/results.csv and a section of the page).
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_OUT = Path("reports") / "heatmaps"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `heatmap` sub-command."""
    parser = subparsers.add_parser(
        "heatmap",
        help="per-image heatmaps of where FD looks, in differentiable feature spaces",
        description=(
            "For each generated image: back-propagate FD(generated set, reference) to the space's spatial "
            "layer through the exact update of the set's statistics, weight channels by their mean squared "
            "gradient and overlay the map on the image. Optionally compare the maps' mass per face region "
            "with a region-blur table's nFD (Spearman ρ with a bootstrap interval over images)."
        ),
    )
    parser.add_argument(
        "images", help="generated images: folder, archive, .npz, or e.g. dcgan-faces:count=64"
    )
    parser.add_argument("--reference", required=True, help="reference images (same kinds of source)")
    parser.add_argument(
        "--space", action="append", required=True, help="differentiable feature space (repeat for several)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="heatmaps for the first LIMIT images only")
    parser.add_argument("--batch-size", type=int, default=16, help="images per batch (default: %(default)s)")
    parser.add_argument("--masks", default=None, help="'parser' (BiSeNet) or a folder of label-map PNGs")
    parser.add_argument(
        "--parser-input-size",
        type=int,
        default=512,
        help="side the face parser works at (default: %(default)s)",
    )
    parser.add_argument(
        "--mask-convention",
        default="celebamask-hq",
        help="label numbering of a mask folder (default: %(default)s)",
    )
    parser.add_argument(
        "--min-region-fraction",
        type=float,
        default=None,
        help="a region is present when it covers at least this fraction of the image (default 0.001)",
    )
    parser.add_argument("--agreement", type=Path, default=None, help="region-blur results table (CSV/JSON)")
    parser.add_argument("--regions", nargs="+", default=None, help="regions for the agreement")
    parser.add_argument(
        "--bootstrap", type=int, default=200, help="replicates for ρ's interval (default 200)"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--device", default=None, help="torch device (default: CUDA when present)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler: one call to `bench.sensitivity.run.run_heatmaps`, then print the tables."""
    from bench.engine import EngineConfig, FolderMasks, ParserMasks
    from bench.errors import UserError
    from bench.masks import DEFAULT_MIN_REGION_FRACTION, REGIONS
    from bench.reports.results import load_results
    from bench.reports.tables import to_markdown
    from bench.sensitivity import report
    from bench.sensitivity.run import DEFAULT_REGIONS, run_heatmaps

    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, got {args.limit}")
    if args.agreement is not None and args.masks is None:
        raise UserError("--agreement needs --masks (parser or a folder of label maps) to find the regions")
    regions = args.regions or list(DEFAULT_REGIONS)
    unknown = [region for region in regions if region not in REGIONS or region == "All"]
    if unknown:
        raise UserError(f"unknown region(s) {unknown}; choose from {[r for r in REGIONS if r != 'All']}")
    min_fraction = (
        DEFAULT_MIN_REGION_FRACTION if args.min_region_fraction is None else args.min_region_fraction
    )
    if not 0.0 <= min_fraction < 1.0:
        raise UserError(f"--min-region-fraction must lie in [0, 1), got {min_fraction}")
    masks = None
    if args.masks == "parser":
        masks = ParserMasks(device=args.device, input_size=args.parser_input_size)
    elif args.masks is not None:
        masks = FolderMasks(args.masks, args.mask_convention)
    output = run_heatmaps(
        args.images,
        args.reference,
        args.space,
        args.out,
        masks=masks,
        region_blur=load_results(args.agreement) if args.agreement is not None else None,
        regions=regions,
        min_region_fraction=min_fraction,
        limit=args.limit,
        batch_size=args.batch_size,
        num_boot=args.bootstrap,
        seed=args.seed,
        config=EngineConfig(batch_size=args.batch_size, device=args.device, progress=not args.quiet),
    )
    print(to_markdown(report.summary_table(output.spaces)))
    if output.rows:
        print("\n" + report.agreement_markdown(output.rows))
    for note in output.notes:
        print(f"note: {note}")
    count = sum(len(written) for written in output.overlays.values())
    print(f"\nwrote {count} overlays and {output.page}")
    return 0
