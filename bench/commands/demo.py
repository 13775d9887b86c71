"""`fdbench demo`: the main job on its embedded default — region-blur sensitivity of every offline space.

500 seeded `dcgan-faces` images, BiSeNet masks, every offline-available feature space plus any online
space whose weights are present; prints the nFD table and the path of the HTML report.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DEFAULT_OUT = Path("reports") / "demo"
DEMO_BOOTSTRAP = 100


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `demo` sub-command."""
    parser = subparsers.add_parser(
        "demo",
        help="region-blur sensitivity on 500 generated faces in every available space (the main job)",
        description=(
            "Blur one face region at a time (BiSeNet masks) on seeded dcgan-faces images and report, per "
            "feature space, the normalised FD nFD(r) = FD(X, B_r X) / FD(X, B_All X)."
        ),
    )
    parser.add_argument("--count", type=int, default=500, help="number of generated faces (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="latent seed of the generator (default 0)")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"report folder (default {DEFAULT_OUT})"
    )
    parser.add_argument("--spaces", nargs="+", help="feature spaces (default: every one that can load)")
    parser.add_argument("--regions", nargs="+", help="regions to blur (default: the face regions)")
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=DEMO_BOOTSTRAP,
        help=f"bootstrap replicates (default {DEMO_BOOTSTRAP})",
    )
    parser.add_argument("--device", default=None, help="torch device (default: CUDA when present)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


DEMO_REGIONS = ["Background", "Skin", "Eyes", "Nose", "Mouth & Lips", "Hair"]


def demo_spaces() -> list[str]:
    """The offline spaces, then every other registered space whose weights are present here."""
    import feature_spaces
    from bench.experiments.region_blur import OFFLINE_SPACES

    extra = [
        name
        for name, status in feature_spaces.available().items()
        if status.ok and name not in OFFLINE_SPACES
    ]
    return [*OFFLINE_SPACES, *sorted(extra)]


def run(args: argparse.Namespace) -> int:
    """Run the demo configuration, write the report and print the nFD table."""
    from bench.experiments.region_blur import RegionBlurConfig
    from bench.experiments.runner import run_and_report
    from bench.reports.tables import nfd_table, to_markdown

    config = RegionBlurConfig(
        source=f"dcgan-faces:count={args.count},seed={args.seed}",
        spaces=args.spaces or demo_spaces(),
        regions=args.regions or list(DEMO_REGIONS),
        parser_input_size=256,  # the faces are 64²: parsing them at 256² loses nothing and is 4× faster
        bootstrap=args.bootstrap,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet,
    )
    started = time.perf_counter()
    output, page = run_and_report("region_blur", config, args.out)
    elapsed = time.perf_counter() - started
    print(f"\nRegion-blur sensitivity of {args.count} dcgan-faces images (95 % basic bootstrap intervals)")
    tables = [nfd_table(output.results, form) for form in ("nfd", "nfd_population")]
    for table in tables:
        if table is not None:
            print(to_markdown(table))
    if all(table is None for table in tables):
        print("(no nFD values: see the problems above)")
    cache = output.manifest.get("cache", {})
    print(
        f"\nfinished in {elapsed:.0f} s; feature cache: {cache.get('hits', 0)} chunk results read, "
        f"{cache.get('misses', 0)} computed"
    )
    print(f"HTML report: {page.resolve()}")
    return 0
