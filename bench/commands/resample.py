"""`fdbench resample CANDIDATES --reference REF`: the class-histogram resampling probe (METHODS §10).

Matches the candidates' ImageNet Top-1 histogram to the reference's by learned weights, draws N images
by them and N at random, and reports FD before and after in every space with paired intervals: the share
of each space's FD that class-histogram matching explains.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from bench.reports.tables import Table

DEFAULT_OUT = Path("reports") / "class_resampling"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `resample` sub-command."""
    parser = subparsers.add_parser(
        "resample",
        help="how much of each space's FD is ImageNet class-histogram matching (resampling probe)",
        description=(
            "Learn one weight per candidate image so that the weighted ImageNet Top-1 histogram matches "
            "the reference's, draw N candidates by those weights and N uniformly (both without "
            "replacement, seeded), and compare FD(reference, ·) of the two draws in every space."
        ),
    )
    parser.add_argument(
        "candidates", help="generated candidates (≥ 5 × N): folder, archive, .npz or generator"
    )
    parser.add_argument("--reference", required=True, help="reference images")
    parser.add_argument("--size", type=int, default=None, help="N (default: min(reference, candidates / 5))")
    parser.add_argument("--spaces", nargs="+", default=None, help="spaces to compare FD in")
    parser.add_argument(
        "--classifier",
        default=None,
        help="ImageNet logits space (default efficientnet-lite0-imagenet-logits)",
    )
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws and bootstrap (default 0)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report folder (default: %(default)s)")
    parser.add_argument("--device", default=None, help="torch device (default: CUDA when present)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler: run the `class_resampling` experiment, write its report and print its table."""
    from bench.experiments.class_resampling import CLASSIFIER, DEFAULT_SPACES, ClassResamplingConfig
    from bench.experiments.runner import run_and_report
    from bench.reports.tables import to_markdown

    config = ClassResamplingConfig(
        reference=args.reference,
        candidates=args.candidates,
        size=args.size,
        classifier=args.classifier or CLASSIFIER,
        spaces=args.spaces or list(DEFAULT_SPACES),
        bootstrap=args.bootstrap,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet,
    )
    output, page = run_and_report("class_resampling", config, args.out)
    print(to_markdown(resampling_table(output.results)))
    for note in output.notes:
        print(f"note: {note}")
    print(f"HTML report: {page.resolve()}")
    return 0


def resampling_table(results: pd.DataFrame) -> Table:
    """Per space: FD of the random and the class-matched draw, their change and the share explained,
    each with its interval; the caption gives the Top-1 histogram distances."""
    import pandas as pd

    from bench.experiments.class_resampling import MATCHED, RANDOM
    from bench.reports.tables import Table, format_cell

    def cell(space: str, metric: str, variant: str) -> str:
        rows = results[
            (results["space"] == space) & (results["metric"] == metric) & (results["variant"] == variant)
        ]
        if rows.empty:
            return "–"
        row = rows.iloc[0]
        return format_cell(row["value"], row["ci_low"], row["ci_high"])

    spaces = list(dict.fromkeys(results.loc[results["metric"] == "fd", "space"]))
    frame = pd.DataFrame(
        [
            {
                "space": space,
                "FD random": cell(space, "fd", RANDOM),
                "FD class-matched": cell(space, "fd", MATCHED),
                "change": cell(space, "fd_change", MATCHED),
                "share explained": cell(space, "fd_explained", MATCHED),
            }
            for space in spaces
        ]
    )
    tv = results[results["metric"] == "top1_histogram_tv"].set_index("variant")["value"]
    caption = (
        "Top-1 histogram distance to the reference (total variation): "
        + ", ".join(f"{variant} {value:.3f}" for variant, value in tv.items())
        + ". Intervals: paired basic bootstrap (95 %)."
    )
    return Table("FD explained by class-histogram matching", frame, caption)
