"""`fdbench compare REF NAME=SOURCE ...`: generated sets against one reference, with significance.

One call of `bench.api.compare`: FD of every generated set against the reference in every space with its
basic bootstrap interval, the ranking per space, for every pair of generators the paired-bootstrap
interval of the FD difference and the fraction of replicates keeping the order ("not distinguishable at
this n" when the interval holds 0), and Kendall τ between spaces with an interval. `--out DIR` also writes
the HTML report (tables, rank and difference heatmaps).
"""

from __future__ import annotations

import argparse
import json
import os
import re
from typing import Any

from bench.errors import UserError

_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `compare` sub-command."""
    parser = subparsers.add_parser(
        "compare",
        help="rank generated sets against a reference, with the significance of every pair's difference",
        description=(
            "Compare generated sets with one reference in each feature space: FD with its interval, the "
            "ranking, the paired-bootstrap interval of FD(G_a, R) − FD(G_b, R) for every pair (pairs whose "
            "interval holds 0 are 'not distinguishable at this n') and Kendall τ between spaces. Sets are "
            "anything `fdbench fd` takes as images: folders, zips, .npz batches, generator specs."
        ),
    )
    parser.add_argument("reference", help="the reference (real) set")
    parser.add_argument(
        "generated", nargs="+", metavar="NAME=SOURCE", help="generated sets, each NAME=SOURCE (or a path)"
    )
    parser.add_argument(
        "--space", action="append", dest="spaces", metavar="NAME", help="feature space (repeat for several)"
    )
    parser.add_argument("--all-offline", action="store_true", help="every space that works offline")
    parser.add_argument("--metrics", default="", help="comma-separated extras: kid, pr, dc, cmmd")
    parser.add_argument("--bootstrap", type=int, default=200, metavar="B", help="replicates (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and KID (default 0)")
    parser.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (default 100)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: best available)")
    parser.add_argument("--strict", action="store_true", help="a file that cannot be read is an error")
    parser.add_argument("--out", default=None, help="also write the report folder (HTML, CSV, JSON) here")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def named_sources(arguments: list[str]) -> dict[str, str]:
    """NAME=SOURCE pairs (a bare existing path is named after itself; names must be unique)."""
    named: dict[str, str] = {}
    for argument in arguments:
        name, separator, source = argument.partition("=")
        if os.path.exists(argument) or not separator or not _PLAIN_NAME.match(name):
            name, source = os.path.basename(os.path.normpath(argument)) or argument, argument
        if name in named:
            raise UserError(
                f"generated set name {name!r} is given twice; write NAME=SOURCE with distinct names"
            )
        named[name] = source
    return named


def run(args: argparse.Namespace) -> int:
    """Compare and print the tables (and write the report when asked)."""
    from bench import api
    from bench.commands.fd import metric_names
    from bench.experiments.region_blur import OFFLINE_SPACES

    spaces = list(args.spaces or [])
    if args.all_offline:
        spaces += [space for space in OFFLINE_SPACES if space not in spaces]
    if not spaces:
        raise UserError("name a feature space (--space NAME, see `fdbench spaces`) or use --all-offline")
    result = api.compare(
        named_sources(args.generated),
        args.reference,
        spaces,
        metrics=["fd", *metric_names(args.metrics)],
        bootstrap=args.bootstrap,
        seed=args.seed,
        kid_subsets=args.kid_subsets,
        batch_size=args.batch_size,
        device=args.device,
        strict=args.strict,
        progress=not (args.no_progress or args.json),
    )
    page = result.write_report(args.out) if args.out else None
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, allow_nan=False))
        return 0
    print(render(result), end="")
    if page is not None:
        print(f"HTML report: {page.resolve()}")
    return 0


def render(result: Any) -> str:
    """Distances, significance and rank agreement as aligned tables, then the notes."""
    from bench.reports.tables import kendall_table, metric_pivot, ranking_table, significance_table, to_text

    frame = result.to_frame()
    parts = [to_text(metric_pivot(frame, "fd"))]
    if frame[frame["metric"] == "fd"]["variant"].nunique() > 1:
        parts.append(to_text(ranking_table(frame)))
    significance = significance_table(frame)
    if significance is not None:
        parts.append(to_text(significance))
    if frame[frame["metric"] == "fd"]["space"].nunique() > 1 and result.outcome.agreements:
        parts.append(to_text(kendall_table(frame)))
    for extracted in (result.reference, *result.generated.values()):
        where = (
            "served from cache" if extracted.served_from_cache else f"extracted in {extracted.seconds:.1f} s"
        )
        parts.append(
            f"{extracted.label}: {extracted.description} ({extracted.images} images listed) — {where}"
        )
    parts += [f"note: {note}" for note in result.notes]
    return "\n".join(part.rstrip("\n") for part in parts) + "\n"
