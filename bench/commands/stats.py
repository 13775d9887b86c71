"""`fdbench stats compute|merge|show`: statistics of an image source, exact merges, file summaries."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.errors import UserError

# How many skipped files `stats compute` lists one by one (all of them are in the file's provenance).
SHOWN_SKIPS = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `stats` sub-command with its `merge` and `show` actions."""
    parser = subparsers.add_parser("stats", help="compute, merge or inspect Gaussian statistics files")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    compute = actions.add_parser(
        "compute",
        help="feature statistics of an image source in one space, saved as .npz",
        description=(
            "Extract the features of every readable image of SRC in one feature space and save their "
            "mean and covariance. SRC is a folder, .zip, .tar[.gz], .npz/.npy image array, @list.txt or "
            "a generator spec. The fdbench format records the space and its spec hash, the source's "
            "manifest hash, n and every skipped file; --format pytorch-fid writes a plain mu/sigma file."
        ),
    )
    compute.add_argument("source", help="image source (folder, archive, array file, @list.txt, generator)")
    compute.add_argument("out", type=Path, help="output .npz")
    compute.add_argument("--space", required=True, help="feature space (see `fdbench spaces`)")
    compute.add_argument("--format", choices=["fdbench", "pytorch-fid"], default="fdbench")
    compute.add_argument("--batch-size", type=int, default=32)
    compute.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1 (default: CUDA if present)")
    compute.add_argument("--strict", action="store_true", help="any skipped file is an error")
    compute.add_argument("--no-progress", action="store_true", help="no progress bar")
    compute.set_defaults(handler=run_compute)
    merge = actions.add_parser("merge", help="merge shard statistics exactly (Chan's pairwise update)")
    merge.add_argument("out", type=Path, help="output .npz")
    merge.add_argument("inputs", type=Path, nargs="+", help="fdbench statistics files to merge")
    merge.set_defaults(handler=run_merge)
    show = actions.add_parser("show", help="print a statistics file's summary as JSON")
    show.add_argument("file", type=Path)
    show.set_defaults(handler=run_show)


def run_merge(args: argparse.Namespace) -> int:
    """Merge the inputs and write the result, with the inputs recorded in its provenance."""
    from bench.stats import GaussianStats, merge_all

    parts = [GaussianStats.load(path) for path in args.inputs]
    merged = merge_all(parts)
    merged.provenance = {
        "merged_from": [
            {"file": str(path), "n": part.n, **part.provenance}
            for path, part in zip(args.inputs, parts, strict=True)
        ]
    }
    written = merged.save(args.out)
    print(f"merged {len(parts)} files, n = {merged.n}, d = {merged.dim} -> {written}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Print n, d, the covariance trace and spectrum summary, and the provenance."""
    import numpy as np

    from bench.stats import GaussianStats

    stats = GaussianStats.load(args.file)
    eigenvalues = np.linalg.eigvalsh(stats.cov)
    summary = {
        "file": str(args.file),
        "n": stats.n,
        "d": stats.dim,
        "mean_norm": float(np.linalg.norm(stats.mean)),
        "cov_trace": float(np.trace(stats.cov)),
        "cov_eigenvalue_min": float(eigenvalues[0]),
        "cov_eigenvalue_max": float(eigenvalues[-1]),
        "cov_rank": int((eigenvalues > eigenvalues[-1] * stats.dim * np.finfo(float).eps).sum()),
        "provenance": stats.provenance,
    }
    print(json.dumps(summary, indent=2))
    return 0


def run_compute(args: argparse.Namespace) -> int:
    """Compute the source's statistics in one space (`bench.api.stats`) and save them."""
    from bench.api import stats
    from bench.sources import display_path

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    result = stats(
        args.source,
        args.space,
        batch_size=args.batch_size,
        device=args.device,
        strict=args.strict,
        progress=not args.no_progress,
        label="source",
    )
    written = result.save(args.out, format=args.format)
    skips = list(result.input.decode_skips)
    cache = f"cache {result.input.cache_hits} hit(s) / {result.input.cache_misses} computed"
    print(
        f"wrote {display_path(written)} ({args.format}): n = {result.n} of {result.input.images} files, "
        f"{args.space} (d = {result.stats.dim}, spec {result.spec_hash}), "
        f"source {result.input.manifest_hash}, {len(skips)} skipped, {cache}"
    )
    _print_skips(skips, result.input.feature_skips.get(args.space, {}))
    return 0


def _print_skips(skips: list[tuple[str, str]], feature_skips: dict[str, int]) -> None:
    from collections import Counter

    for reason, count in sorted(Counter(reason for _, reason in skips).items()):
        print(f"  skipped {count}: {reason}")
    for name, reason in skips[:SHOWN_SKIPS]:
        print(f"    {name}: {reason}")
    if len(skips) > SHOWN_SKIPS:
        print(f"    ... and {len(skips) - SHOWN_SKIPS} more (all listed in the file's provenance)")
    for reason, count in sorted(feature_skips.items()):
        print(f"  no feature for {count}: {reason}")
