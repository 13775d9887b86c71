"""Calibrated baselines: rerun a configuration under variations that must not change its results, and
set each number's tolerance from the spread observed (METHODS §11, docs/regression.md).

The variations are the ones a correct install meets on other machines: ATen, MKL and oneDNN kernels at
the machine's best instruction set and at their most basic one, one thread and all threads, two batch
sizes, and on a GPU TF32 on and off. Each variation is a separate process (`python -m
bench.reports.rerun`) with its own empty cache, since kernel choice and thread count are fixed when
torch is imported and cache keys do not see them. The reference run (best kernels, all threads, the
configuration's batch size) gives the baseline's values. For every number the spread is the largest
|variation − reference|, and its tolerance is a fixed allowed difference

    bound = max(multiple × spread,  rtol_floor × |row value|,  atol_floor)      (counts: multiple × spread)

where |row value| is the magnitude of the row's `value` (also for its interval, bias, mean and std, whose
own magnitude can be near 0). A later check passes a number when |current − baseline| ≤ bound. The
floors cover numbers that came out bit-identical in every variation.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import tomllib

from bench.parallel import usable_cpus
from bench.reports.platform import KERNEL_ENVIRONMENT
from bench.reports.regression import (
    COUNT_CHECKS,
    Baseline,
    RowKey,
    Tolerance,
    baseline_rows,
    checked_columns,
)
from bench.reports.rerun import PLATFORM_JSON
from bench.reports.results import key_label, load_results, row_key

RUN_TIMEOUT_SECONDS = 3600


class CalibrationError(RuntimeError):
    """A variation that failed to run, or that changed which rows a configuration produces."""


@dataclass(frozen=True)
class Variation:
    """One honest way to rerun a configuration: kernel/thread environment, batch size, TF32 setting."""

    name: str
    environment: tuple[tuple[str, str], ...]
    batch_size: int | None = None
    tf32: str | None = None  # "on" / "off" on a GPU; None leaves torch's default

    def describe(self) -> dict[str, Any]:
        """What this variation sets (for the baseline's calibration record)."""
        described: dict[str, Any] = {"environment": dict(self.environment)}
        if self.batch_size is not None:
            described["batch_size"] = self.batch_size
        if self.tf32 is not None:
            described["tf32"] = self.tf32
        return described


def honest_variations(batch_size: int, on_gpu: bool = False) -> list[Variation]:
    """The reference run first, then every variation that must not change a result."""
    cores = str(usable_cpus())
    all_threads = (("OMP_NUM_THREADS", cores), ("MKL_NUM_THREADS", cores))
    aten_default = (("ATEN_CPU_CAPABILITY", "default"),)
    # The oldest code path each kernel library has: what a CPU without AVX would run.
    oldest = (*aten_default, ("MKL_ENABLE_INSTRUCTIONS", "SSE4_2"), ("ONEDNN_MAX_CPU_ISA", "SSE41"))
    variations = [
        Variation("reference", all_threads),
        Variation("kernels=aten-default", (*all_threads, *aten_default)),
        Variation("kernels=oldest", (*all_threads, *oldest)),
        Variation("threads=1", (("OMP_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1"))),
        Variation(
            f"batch={other_batch_size(batch_size)}", all_threads, batch_size=other_batch_size(batch_size)
        ),
    ]
    if on_gpu:
        variations += [Variation(f"tf32={mode}", all_threads, tf32=mode) for mode in ("on", "off")]
    return variations


def other_batch_size(batch_size: int) -> int:
    """A second batch size, three quarters of the first (so batches end at other images)."""
    return max(1, (3 * batch_size) // 4) if batch_size > 1 else 2


@dataclass(frozen=True)
class CalibrationRule:
    """How a number's tolerance follows from its observed spread: a multiple, with a floor."""

    multiple: float = 10.0
    rtol_floor: float = 1e-7
    atol_floor: float = 1e-12

    def __post_init__(self) -> None:
        if not (self.multiple >= 1 and self.rtol_floor >= 0 and self.atol_floor >= 0):
            raise ValueError(f"calibration rule needs multiple ≥ 1 and non-negative floors, got {self}")

    def tolerance(self, column: str, spread: float, worst: str, scale: float, runs: int) -> Tolerance:
        """The tolerance of one number of a row of magnitude `scale` whose largest difference over `runs`
        variations was `spread` (under variation `worst`)."""
        calibrated = self.multiple * spread
        if column in COUNT_CHECKS:
            origin = f"calibrated: equal in {runs} variations"
            if spread:
                origin = f"calibrated: {self.multiple:g} × spread {spread:g} ({worst})"
            return Tolerance(0.0, calibrated, origin, spread)
        floor = max(self.rtol_floor * scale, self.atol_floor)
        if calibrated >= floor:
            origin = f"calibrated: {self.multiple:g} × spread {spread:.2g} ({worst})"
        else:
            seen = f"spread {spread:.2g} ({worst})" if spread else f"identical in {runs} variations"
            origin = f"floor {self.rtol_floor:g} × |value| ({seen})"
            if floor == self.atol_floor:
                origin = f"floor atol {self.atol_floor:g} ({seen})"
        return Tolerance(0.0, max(calibrated, floor), origin, spread)

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclass
class VariationRun:
    """What one variation produced: its results table, the platform it ran on, its wall time."""

    variation: Variation
    results: pd.DataFrame
    platform: dict[str, Any]
    seconds: float


def configuration_batch_size(config_path: Path) -> int:
    """The batch size a configuration file runs with (its own, else the experiment's default)."""
    from bench.experiments.runner import experiment_config

    document = tomllib.loads(config_path.read_text())
    config = experiment_config(document["experiment"], document.get("config", {}), where=str(config_path))
    return int(config.batch_size)


def configuration_device(config_path: Path) -> str | None:
    """The device a configuration file asks for (None: CUDA when present, else the CPU)."""
    document = tomllib.loads(config_path.read_text())
    return document.get("config", {}).get("device")


def run_variation(config_path: Path, variation: Variation, work_dir: Path) -> VariationRun:
    """Run the configuration once in a fresh process under `variation`, with its own empty cache."""
    folder = work_dir / variation.name.replace("=", "-")
    if folder.exists() and any(folder.iterdir()):
        raise CalibrationError(f"{folder} already holds a run (and its cache); give an empty folder")
    environment = {k: v for k, v in os.environ.items() if k not in KERNEL_ENVIRONMENT}
    environment.update(dict(variation.environment))
    environment["FDBENCH_CACHE"] = str(folder / "cache")
    command = [sys.executable, "-m", "bench.reports.rerun", str(config_path), str(folder / "run")]
    if variation.batch_size is not None:
        command += ["--batch-size", str(variation.batch_size)]
    if variation.tf32 is not None:
        command += ["--tf32", variation.tf32]
    started = time.perf_counter()
    try:
        finished = subprocess.run(
            command, env=environment, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired:
        raise CalibrationError(
            f"variation {variation.name} did not finish within {RUN_TIMEOUT_SECONDS} s"
        ) from None
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        raise CalibrationError(
            f"variation {variation.name} failed (exit {finished.returncode}):\n{finished.stderr[-3000:]}"
        )
    platform = json.loads((folder / "run" / PLATFORM_JSON).read_text())
    return VariationRun(variation, load_results(folder / "run"), platform, seconds)


def spreads(
    reference: pd.DataFrame, reruns: Mapping[str, pd.DataFrame]
) -> dict[RowKey, dict[str, tuple[float, str]]]:
    """Per reference row and checked number: (largest |rerun − reference|, the variation that gave it).

    Raises CalibrationError when a variation lacks a row, adds one, or turns a number into NaN (or back):
    a configuration whose rows depend on the machine cannot be a baseline.
    """
    reference_rows = {row_key(row): row for row in reference.to_dict("records")}
    indexed = {
        name: {row_key(row): row for row in table.to_dict("records")} for name, table in reruns.items()
    }
    problems: list[str] = []
    for name, rows in indexed.items():
        lost, gained = set(reference_rows) - set(rows), set(rows) - set(reference_rows)
        problems += [f"{name} lacks row {key_label(key)}" for key in sorted(lost)[:5]]
        problems += [f"{name} adds row {key_label(key)}" for key in sorted(gained)[:5]]
    result: dict[RowKey, dict[str, tuple[float, str]]] = {}
    for key, row in reference_rows.items():
        per_column: dict[str, tuple[float, str]] = {}
        for column in checked_columns(row):
            expected, worst, spread = _number(row[column]), "", 0.0
            for name, rows in indexed.items():
                if key not in rows:
                    continue
                actual = _number(rows[key].get(column))
                if math.isnan(expected) != math.isnan(actual):
                    problems.append(
                        f"{name} gives {actual} for {key_label(key)} [{column}], reference {expected}"
                    )
                elif not math.isnan(expected) and abs(actual - expected) > spread:
                    spread, worst = abs(actual - expected), name
            per_column[column] = (spread, worst)
        result[key] = per_column
    if problems:
        raise CalibrationError(
            "the configuration's rows differ between honest variations, so it cannot be a baseline:\n  "
            + "\n  ".join(problems[:20])
        )
    return result


def calibrated_checks(
    reference: pd.DataFrame, reruns: Mapping[str, pd.DataFrame], rule: CalibrationRule
) -> dict[RowKey, dict[str, Tolerance]]:
    """Every reference number's tolerance from its spread over the reruns."""
    values = {row_key(row): _number(row["value"]) for row in reference.to_dict("records")}
    return {
        key: {
            column: rule.tolerance(column, spread, worst, _scale(values[key]), len(reruns))
            for column, (spread, worst) in per_column.items()
        }
        for key, per_column in spreads(reference, reruns).items()
    }


def spread_summary(reference: pd.DataFrame, reruns: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Largest difference from the reference relative to the row's |value|, per variation and metric
    family (metric, column); counts are left out."""
    reference_rows = {row_key(row): row for row in reference.to_dict("records")}
    lines = []
    for name, table in reruns.items():
        for row in table.to_dict("records"):
            key = row_key(row)
            if key not in reference_rows:
                continue
            scale = _scale(_number(reference_rows[key]["value"])) or 1.0
            for column in checked_columns(reference_rows[key]):
                expected, actual = _number(reference_rows[key][column]), _number(row.get(column))
                if column in COUNT_CHECKS or math.isnan(expected) or math.isnan(actual):
                    continue
                family = row["metric"] if column == "value" else f"{row['metric']} [{column}]"
                lines.append(
                    {
                        "family": f"{row['experiment']}: {family}",
                        "variation": name,
                        "rel": abs(actual - expected) / scale,
                    }
                )
    if not lines:
        return pd.DataFrame()
    frame = pd.DataFrame(lines)
    return frame.pivot_table(index="family", columns="variation", values="rel", aggfunc="max", sort=False)


def calibrate(
    config_path: str | Path,
    selection: Mapping[str, Sequence[str]] | None = None,
    rule: CalibrationRule | None = None,
    variations: Sequence[Variation] | None = None,
    work_dir: str | Path | None = None,
    report: Callable[[str], None] = print,
) -> tuple[Baseline, pd.DataFrame]:
    """Run the configuration under every variation and return (the calibrated baseline, the spread
    summary). Run folders go to `work_dir` (default: a temporary folder, removed afterwards)."""
    config_path = Path(config_path)
    if not config_path.is_file():
        raise FileNotFoundError(f"configuration file not found: {config_path}")
    rule = rule or CalibrationRule()
    if variations is None:
        on_gpu = _uses_gpu(configuration_device(config_path))
        variations = honest_variations(configuration_batch_size(config_path), on_gpu)
    if len(variations) < 2:
        raise ValueError("calibration needs the reference run and at least one variation")
    with tempfile.TemporaryDirectory(prefix="fdbench-calibrate-") as scratch:
        folder = Path(work_dir) if work_dir is not None else Path(scratch)
        runs = []
        for variation in variations:
            run = run_variation(config_path, variation, folder)
            report(f"  {variation.name}: {run.seconds:.1f} s ({_platform_line(run.platform)})")
            runs.append(run)
    reference = runs[0]
    selected = {run.variation.name: baseline_rows(run.results, selection) for run in runs}
    reruns = {name: table for name, table in selected.items() if name != reference.variation.name}
    baseline = Baseline(
        rows=selected[reference.variation.name],
        checks=calibrated_checks(selected[reference.variation.name], reruns, rule),
        selection={k: [str(v) for v in vs] for k, vs in (selection or {}).items() if vs},
        source=f"calibrated run of {_as_given(config_path)}",
        config=_as_given(config_path),
        platform=reference.platform,
        calibration={
            "rule": rule.to_dict(),
            "runs": [
                {
                    "name": run.variation.name,
                    **run.variation.describe(),
                    "seconds": round(run.seconds, 1),
                    "aten_capability": run.platform.get("aten_capability"),
                    "threads": run.platform.get("threads"),
                }
                for run in runs
            ],
        },
    )
    summary = spread_summary(selected[reference.variation.name], reruns)
    baseline.calibration["max_relative_spread"] = {
        family: {name: float(value) for name, value in row.items() if not math.isnan(value)}
        for family, row in summary.iterrows()
    }
    return baseline, summary


def _as_given(path: Path) -> str:
    """The path relative to the working directory when it lies inside it (configs name their inputs
    relative to the repository root), else as given."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _uses_gpu(device: str | None) -> bool:
    import torch

    if device is not None:
        return str(device).startswith("cuda")
    return torch.cuda.is_available()


def _platform_line(platform: Mapping[str, Any]) -> str:
    return f"kernels {platform.get('aten_capability')}, {platform.get('threads')} thread(s)"


def _number(value: Any) -> float:
    if value is None or value is pd.NA:
        return math.nan
    return float(value)


def _scale(value: float) -> float:
    """A row's magnitude for relative floors: |value|, 0 when it is NaN."""
    return 0.0 if math.isnan(value) else abs(value)
