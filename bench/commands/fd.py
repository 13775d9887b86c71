"""`fdbench fd A B --space S`: Fréchet distance (and friends) between two sets, in each feature space.

A and B are anything `bench.api.fd` takes: image folders, zips, .npz image batches, generator specs,
statistics files (fdbench's, pytorch-fid's, clean-fid's) or (n, d) feature arrays (.npy). One call of the
API; this module parses the arguments and prints an aligned table (or, with --json, JSON).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bench.errors import UserError

EXTRA_METRICS = {
    "kid": ("kid",),
    "pr": ("precision", "recall"),
    "dc": ("density", "coverage"),
    "cmmd": ("cmmd", "cmmd_unbiased"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `fd` sub-command."""
    parser = subparsers.add_parser(
        "fd",
        help="FD between two sets (image folders, zips, npz, generator specs, statistics or features)",
        description=(
            "FD between A and B in each feature space, with its mean and trace terms, the n of each set "
            "and diagnostics. A and B may be image folders, .zip archives, .npz image batches, generator "
            "specs (dcgan-faces:count=N,seed=S), statistics files (fdbench, pytorch-fid or clean-fid .npz) "
            "or (n, d) feature arrays (.npy). Image sets need --space (or --all-offline); features are "
            "cached, so a second call is served from the cache. Files that cannot be read are skipped and "
            "counted (--strict makes them errors)."
        ),
    )
    parser.add_argument("a", help="first set (the reference for precision/recall, density/coverage and KID)")
    parser.add_argument("b", help="second set")
    parser.add_argument(
        "--space", action="append", dest="spaces", metavar="NAME", help="feature space (repeat for several)"
    )
    parser.add_argument(
        "--all-offline", action="store_true", help="every space that works offline (the demo's spaces)"
    )
    parser.add_argument(
        "--metrics",
        default="",
        help=f"comma-separated extras: {', '.join(EXTRA_METRICS)} (cmmd is computed in clip-vit-l14-336)",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        metavar="B",
        help="basic bootstrap interval of FD from B replicates",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the bootstrap and KID subsets (default 0)"
    )
    parser.add_argument("--method", default="auto", choices=["auto", "cholesky", "eigh", "low-rank"])
    parser.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (default 100)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: best available)")
    parser.add_argument("--strict", action="store_true", help="a file that cannot be read is an error")
    parser.add_argument("--json", action="store_true", help="print JSON (for machines) instead of a table")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def metric_names(text: str) -> list[str]:
    """The API's metric names for the command's comma-separated `--metrics` value."""
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(EXTRA_METRICS))
    if unknown:
        raise UserError(f"unknown metric(s) {unknown}; choose from {', '.join(EXTRA_METRICS)}")
    return [metric for name in chosen for metric in EXTRA_METRICS[name]]


def run(args: argparse.Namespace) -> int:
    """Compute the distances and print them."""
    from bench import api
    from bench.experiments.region_blur import OFFLINE_SPACES

    spaces = list(args.spaces or [])
    if args.all_offline:
        spaces += [space for space in OFFLINE_SPACES if space not in spaces]
    result = api.fd(
        args.a,
        args.b,
        spaces or None,
        metrics=metric_names(args.metrics),
        bootstrap=args.bootstrap,
        seed=args.seed,
        method=args.method,
        kid_subsets=args.kid_subsets,
        batch_size=args.batch_size,
        device=args.device,
        strict=args.strict,
        progress=not (args.no_progress or args.json),
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, allow_nan=False))
    else:
        print(render(result), end="")
    return 0


def render(result: Any) -> str:
    """The distances as an aligned table, then each set's account and the notes."""
    import pandas as pd

    from bench.reports.tables import Table, format_number, to_text

    lines = []
    interval_label = ""
    for distance in result.distances:
        fd, interval = distance.fd, distance.fd_interval
        line = {"space": distance.space, "FD": format_number(fd.value, 6)}
        if interval is not None:
            interval_label = interval.interval.label
            low, high = interval.interval.low, interval.interval.high
            line["interval"] = f"[{format_number(low, 6)}, {format_number(high, 6)}]"
        line.update(
            {
                "mean term": format_number(fd.mean_term, 6),
                "trace term": format_number(fd.trace_term, 6),
                "n A": "–" if fd.n1 is None else str(fd.n1),
                "n B": "–" if fd.n2 is None else str(fd.n2),
                "d": str(fd.d),
            }
        )
        line.update(_extras(distance))
        lines.append(line)
    frame = pd.DataFrame(lines).fillna("–")
    if "interval" in frame.columns:
        frame = frame.rename(columns={"interval": interval_label or "interval"})
    text = [to_text(Table(title="", frame=frame))]
    for extracted in (result.a, result.b):
        text.append(_account(extracted) + "\n")
    for distance in result.distances:
        text += [f"{distance.space}: {warning}\n" for warning in distance.fd.diagnostics.get("warnings", [])]
    text += [f"note: {note}\n" for note in result.notes]
    return "".join(text)


def _extras(distance: Any) -> dict[str, str]:
    from bench.reports.tables import format_number

    extras: dict[str, str] = {}
    if distance.kid is not None:
        extras["KID"] = f"{format_number(distance.kid.mean)} ± {format_number(distance.kid.std, 2)}"
    if distance.precision_recall is not None:
        extras["precision"] = format_number(distance.precision_recall.precision, 3)
        extras["recall"] = format_number(distance.precision_recall.recall, 3)
    if distance.density_coverage is not None:
        extras["density"] = format_number(distance.density_coverage.density, 3)
        extras["coverage"] = format_number(distance.density_coverage.coverage, 3)
    if distance.cmmd is not None:
        extras["CMMD"] = format_number(distance.cmmd.value)
        extras["CMMD unbiased"] = format_number(distance.cmmd.unbiased)
    return extras


def _account(extracted: Any) -> str:
    """'A: folder (40 images listed) — served from cache' (skipped files follow among the notes)."""
    if extracted.kind != "images":
        return f"{extracted.label}: {extracted.description} ({extracted.kind})"
    where = "served from cache" if extracted.served_from_cache else f"extracted in {extracted.seconds:.1f} s"
    return f"{extracted.label}: {extracted.description} ({extracted.images} images listed) — {where}"
