"""Run one configuration file as `fdbench run` does, with the overrides an honest variation needs.

    python -m bench.reports.rerun CONFIG OUT [--batch-size N] [--tf32 on|off]

The calibration of a baseline (bench.reports.calibration) starts one such process per variation, because
the kernel choice (ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS, ONEDNN_MAX_CPU_ISA) and thread counts
are read when torch is imported and cannot change inside a running process. The run folder gets the
usual results and report files plus `platform.json` (bench.reports.platform) saying what the run ran on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import tomllib

PLATFORM_JSON = "platform.json"


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.reports.rerun", description=__doc__)
    parser.add_argument("config", type=Path, help="TOML file with `experiment = ...` and a [config] table")
    parser.add_argument("out", type=Path, help="run folder to write")
    parser.add_argument("--batch-size", type=int, default=None, help="override the config's batch_size")
    parser.add_argument("--tf32", choices=("on", "off"), default=None, help="TF32 matmul/cuDNN on a GPU")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Apply the overrides, run the experiment, write its report folder and platform.json."""
    args = parse_arguments(argv)
    import torch

    from bench.experiments.runner import experiment_config, run_and_report, spectral_request
    from bench.reports.platform import platform_record

    if args.tf32 is not None:
        torch.backends.cuda.matmul.allow_tf32 = args.tf32 == "on"
        torch.backends.cudnn.allow_tf32 = args.tf32 == "on"
    document = tomllib.loads(args.config.read_text())
    settings = {**document.get("config", {}), "progress": False}
    if args.batch_size is not None:
        settings["batch_size"] = args.batch_size
    kind = document["experiment"]
    config = experiment_config(kind, settings, where=str(args.config))
    run_and_report(kind, config, args.out, spectral_request(config, document.get("spectral")))
    record = platform_record(getattr(config, "device", None))
    record["tf32"] = args.tf32
    (args.out / PLATFORM_JSON).write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
