"""`fdbench fd A B`: distances between two statistics files (.npz) or feature arrays (.npy), as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.cli import UserError

EXTRA_METRICS = ("kid", "pr", "dc")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `fd` sub-command."""
    parser = subparsers.add_parser(
        "fd",
        help="Fréchet distance between two stats files (.npz) or feature arrays (.npy)",
        description=(
            "Print the Fréchet distance between A and B as JSON: value, mean and trace terms, sizes, "
            "method and diagnostics. A and B are fdbench/pytorch-fid/clean-fid statistics (.npz) or "
            "(n, d) feature arrays (.npy). With feature arrays, --metrics adds KID, precision/recall "
            "and density/coverage."
        ),
    )
    parser.add_argument("a", type=Path, help="first set: statistics .npz or features .npy")
    parser.add_argument("b", type=Path, help="second set: statistics .npz or features .npy")
    parser.add_argument("--method", default="auto", choices=["auto", "cholesky", "eigh", "low-rank"])
    parser.add_argument(
        "--metrics",
        default="",
        help=f"comma-separated extras for feature arrays: {', '.join(EXTRA_METRICS)}",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for KID subsets (default 0)")
    parser.set_defaults(handler=run)


def load_set(path: Path) -> Any:
    """GaussianStats for a .npz file, a float64 feature array for a .npy file."""
    from bench.stats import GaussianStats, as_float64_features

    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.suffix == ".npz":
        return GaussianStats.load(path)
    if path.suffix == ".npy":
        return as_float64_features(np.load(path, allow_pickle=False), name=str(path))
    raise UserError(f"{path}: expected a statistics file (.npz) or a feature array (.npy)")


def run(args: argparse.Namespace) -> int:
    """Compute and print the requested distances."""
    from bench import metrics

    first, second = load_set(args.a), load_set(args.b)
    output: dict[str, Any] = {"fd": metrics.frechet_distance(first, second, method=args.method).to_dict()}
    extras = [name for name in args.metrics.split(",") if name]
    unknown = sorted(set(extras) - set(EXTRA_METRICS))
    if unknown:
        raise UserError(f"unknown metric(s) {unknown}; choose from {', '.join(EXTRA_METRICS)}")
    if extras and not (isinstance(first, np.ndarray) and isinstance(second, np.ndarray)):
        raise UserError("KID, precision/recall and density/coverage need feature arrays (.npy) for both sets")
    if "kid" in extras:
        output["kid"] = metrics.kernel_inception_distance(first, second, seed=args.seed).to_dict()
    if "pr" in extras:
        output["precision_recall"] = vars(metrics.precision_recall(first, second))
    if "dc" in extras:
        output["density_coverage"] = vars(metrics.density_coverage(first, second))
    print(json.dumps(output, indent=2))
    return 0
