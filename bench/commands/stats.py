"""`fdbench stats merge|show`: combine shard statistics exactly, or describe a statistics file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `stats` sub-command with its `merge` and `show` actions."""
    parser = subparsers.add_parser("stats", help="merge or inspect Gaussian statistics files")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
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
