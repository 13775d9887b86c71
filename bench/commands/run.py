"""`fdbench run CONFIG.toml`: run any experiment from a TOML file and write its report folder.

The file names the experiment and its settings:

    experiment = "region_blur"
    out = "reports/my-run"          # optional; --out overrides it
    [config]
    source = "path/to/faces"
    spaces = ["efficientnet-lite0-imagenet", "dlib-face-id"]

Any experiment can add a spectral section (Durall profiles, distances, detection) to its report with a
`[spectral]` table: `real = SOURCE`, optional `crop = SIDE`, and `[spectral.generated]` name = SOURCE; a
generator comparison can say `spectral = true` instead.

Under `torchrun --nproc_per_node=N` each process takes a shard of the images and the statistics are merged
exactly; rank 0 writes the report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import tomllib

from bench.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `run` sub-command."""
    parser = subparsers.add_parser("run", help="run an experiment from a TOML config and write its report")
    parser.add_argument("config", type=Path, help="TOML file with `experiment = ...` and a [config] table")
    parser.add_argument(
        "--out", type=Path, help="report folder (default: the file's `out`, else reports/<name>)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Load the config, run the experiment (sharded under torchrun) and write the report on rank 0."""
    from bench.engine import init_from_torchrun
    from bench.experiments.runner import experiment_config, run_and_report, run_experiment, spectral_request

    if not args.config.is_file():
        raise FileNotFoundError(f"config file not found: {args.config}")
    try:
        document = tomllib.loads(args.config.read_text())
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{args.config} is not valid TOML: {error}") from error
    kind = document.get("experiment")
    if not kind:
        raise UserError(f'{args.config} must say which experiment to run, e.g. experiment = "region_blur"')
    config = experiment_config(kind, document.get("config", {}), where=str(args.config))
    spectral = spectral_request(config, document.get("spectral"))
    out = args.out or Path(document.get("out", Path("reports") / args.config.stem))
    shard = init_from_torchrun()
    if shard.rank != 0:
        run_experiment(kind, config)  # contributes its shard; rank 0 gathers and writes
        return 0
    _, page = run_and_report(kind, config, out, spectral)
    print(f"results: {out / 'results.csv'}\nHTML report: {page.resolve()}")
    return 0
