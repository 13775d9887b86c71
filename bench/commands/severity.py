"""`fdbench severity IMAGES --labels L --hierarchy H`: how often, and how badly, a classifier errs."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from bench.errors import UserError

METRIC_TITLES = {
    "top1_error": "top-1 error",
    "mistake_severity": "average mistake severity",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `severity` sub-command."""
    parser = subparsers.add_parser(
        "severity",
        help="top-1 error, mistake severity and hierarchical distance@k of a classifier on labelled images",
        description=(
            "Classify labelled images with a logits space and print top-1 error, the average mistake "
            "severity (LCA height of predicted and true class, over mistakes) and hierarchical "
            "distance@k (mean LCA height of the top-k classes), each with a bootstrap interval over "
            "images. Labels are WordNet ids (or class indices in sorted-WordNet-id order)."
        ),
    )
    parser.add_argument("images", help="a folder or .zip of images")
    parser.add_argument(
        "--labels",
        default="folders",
        help="'folders' (each image's first folder is its class, the default) or a CSV of file,label",
    )
    parser.add_argument("--hierarchy", required=True, type=Path, help="edge list 'parent child' or .json")
    parser.add_argument(
        "--space",
        default="efficientnet-lite0-imagenet-logits",
        help="a logits space, or a feature space with a '-logits' sibling (e.g. efficientnet-lite0-imagenet)",
    )
    parser.add_argument("--k", default="1,5,20", help="comma-separated k of hierarchical distance@k")
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clusters", choices=["image", "folder"], default="image", help="unit resampled")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", action="store_true", help="print the results table as JSON records")
    parser.add_argument("--out", type=Path, default=None, help="also write results.csv/json into this folder")
    parser.set_defaults(handler=run)


def parse_ks(text: str) -> list[int]:
    """'1,5,20' → [1, 5, 20]; anything else is a UserError."""
    try:
        ks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--k must be comma-separated whole numbers, got {text!r}") from None
    if not ks or any(k < 1 for k in ks):
        raise UserError(f"--k needs whole numbers ≥ 1, got {text!r}")
    return ks


def run(args: argparse.Namespace) -> int:
    """Measure and print."""
    from bench.experiments.severity_sweep import SeveritySweepConfig, measure_severity
    from bench.reports.results import results_to_records, save_results

    config = SeveritySweepConfig(
        source=args.images,
        labels=args.labels,
        hierarchy=str(args.hierarchy),
        space=args.space,
        ks=parse_ks(args.k),
        bootstrap=args.bootstrap,
        clusters=args.clusters,
        seed=args.seed,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.json,
    )
    output = measure_severity(config)
    if args.out is not None:
        save_results(output.results, args.out)
    if args.json:
        document = {
            "images": output.manifest["images"],
            "hierarchy": output.manifest["hierarchy"],
            "notes": output.notes,
            "results": results_to_records(output.results),
        }
        print(json.dumps(document, indent=1, allow_nan=False))
        return 0
    rows = output.results
    space = rows["space"].iloc[0]
    print(f"{space} on {output.manifest['images']} labelled images; {output.manifest['hierarchy']}")
    print(f"{'metric':<26} {'value':>8}  {'95% interval':<20} {'n':>6}")
    for row in rows.itertuples():
        title = METRIC_TITLES.get(row.metric, row.metric.replace("hdist@", "hierarchical distance@"))
        interval = f"[{row.ci_low:.3f}, {row.ci_high:.3f}]" if row.ci_method else "–"
        value = "–" if math.isnan(row.value) else f"{row.value:.3f}"
        print(f"{title:<26} {value:>8}  {interval:<20} {row.n:>6}")
    method = next((text for text in rows["ci_method"] if text), "")
    if method:
        unit = "folders" if config.clusters == "folder" else "images"
        print(
            f"intervals: {method} bootstrap over {unit} ({config.bootstrap} replicates, seed {config.seed})"
        )
    for note in output.notes:
        print(f"note: {note}")
    for text in dict.fromkeys(d for d in rows["diagnostics"] if d):
        print(f"diagnostics: {text}")
    return 0
