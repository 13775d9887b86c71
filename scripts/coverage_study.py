"""Coverage of fdbench's 95 % bootstrap intervals on Gaussian features with known population moments.

METHODS §2 asks that coverage be shown, not assumed. Each cell of the grid n ∈ {100, 500, 2000},
d ∈ {8, 64, 256} simulates many data sets from populations whose FD, KID and nFD are exact closed forms,
builds fdbench's intervals on each (the shared bootstrap, B replicates) and counts how often they hold
the truth. Cases:

- ``zero``, ``small``, ``large``: two independent sets X ~ N(0, diag λ) and Y ~ N(δ, diag λ_Y), n rows
  each, with population FD 0, 5 % and 50 % of tr Σ_X (half from the mean shift, half from a scaling of
  the covariance). FD and KID (unbiased, full set) with unpaired bootstrap intervals.
- ``region``: the paired conditional nFD under a planted region effect. B_r acts on the first quarter of
  the coordinates (the "region"), B_All on all of them, each as x → a·x + s + e with e ~ N(0, τ²λ) drawn
  per image; numerator FD(X, B_r X) and denominator FD(X, B_All X) share ids in every replicate.

Closed forms (diagonal covariances): FD = ‖μ1 − μ2‖² + Σ_i (√λ1_i − √λ2_i)²; KID = E k(x, x') + E k(y, y')
− 2 E k(x, y) from the Gaussian moments of u = xᵀy (see `population_kid`); nFD = FD(X, B_r X) /
FD(X, B_All X). The estimators are rotation-equivariant, so diagonal populations lose no generality for
FD.

Intervals: basic (what fdbench reports, widened to its estimate when needed) and raw percentile (for
comparison), both from the same replicates. Each cell writes one JSON under the output folder and is
skipped when that file exists, so an interrupted study resumes.

    python scripts/coverage_study.py --out reports/coverage [--cells all|NAME,...] [--datasets 500]
        [--boot 200] [--summary]

Cell names look like ``n500-d64-small``. Run with one BLAS thread (OMP_NUM_THREADS=1).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.metrics.bootstrap import Draw, Interval, bootstrap, interval_from_replicates  # noqa: E402
from bench.metrics.frechet import frechet_distance_resampled  # noqa: E402
from bench.metrics.kid import full_set_kid_bootstrap  # noqa: E402
from bench.metrics.resampling import bootstrap_fd  # noqa: E402

N_VALUES = (100, 500, 2000)
D_VALUES = (8, 64, 256)
CASES = ("zero", "small", "large", "region")
FD_FRACTION = {"zero": 0.0, "small": 0.05, "large": 0.5}  # population FD as a fraction of tr Σ_X
REGION_SCALE, REGION_SHIFT, REGION_NOISE = 0.6, 0.3, 0.1  # x → a·x + s + e, e ~ N(0, τ² λ)
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Cell:
    """One grid cell: sample size, dimension and population case."""

    n: int
    d: int
    case: str

    @property
    def name(self) -> str:
        return f"n{self.n}-d{self.d}-{self.case}"

    @classmethod
    def parse(cls, name: str) -> Cell:
        n, d, case = name.split("-")
        cell = cls(int(n.removeprefix("n")), int(d.removeprefix("d")), case)
        if case not in CASES:
            raise SystemExit(f"unknown case {case!r} in cell {name!r}; cases: {', '.join(CASES)}")
        return cell


def all_cells() -> list[Cell]:
    return [Cell(n, d, case) for d in D_VALUES for n in N_VALUES for case in CASES]


# ------------------------------------------------------------------------------------------ populations
@dataclass(frozen=True)
class Population:
    """Two diagonal Gaussians: means and per-coordinate variances."""

    mean_x: np.ndarray
    var_x: np.ndarray
    mean_y: np.ndarray
    var_y: np.ndarray


def reference_variances(d: int) -> np.ndarray:
    """A decaying spectrum from 2 down to 0.2, like an embedding's."""
    return np.linspace(2.0, 0.2, d)


def population(d: int, case: str) -> Population:
    """X ~ N(0, diag λ); Y shifted and scaled so that FD(X, Y) = FD_FRACTION[case] · tr Σ_X exactly."""
    var_x = reference_variances(d)
    target = FD_FRACTION[case] * var_x.sum()
    shift = np.full(d, math.sqrt(target / 2.0 / d))  # mean term: half of the FD
    scale = 1.0 - math.sqrt(target / 2.0 / var_x.sum())  # trace term (1 − s)² tr Σ: the other half
    return Population(np.zeros(d), var_x, shift, var_x * scale**2)


def population_fd(mean1: np.ndarray, var1: np.ndarray, mean2: np.ndarray, var2: np.ndarray) -> float:
    """Closed-form FD between diagonal Gaussians."""
    return float(((mean1 - mean2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum())


def expected_kernel(mean1: np.ndarray, var1: np.ndarray, mean2: np.ndarray, var2: np.ndarray) -> float:
    """E (xᵀy/d + 1)³ for independent x ~ N(μ1, diag v1), y ~ N(μ2, diag v2).

    With u = xᵀy, a = μ1ᵀμ2, b = μ1ᵀΣ2μ1, c = μ2ᵀΣ1μ2, t = tr Σ1Σ2 and e = μ1ᵀΣ2Σ1μ2 (Gaussian moments,
    conditioning on y): E u = a, E u² = t + b + c + a², E u³ = a³ + 3ab + 3(a(c + t) + 2e).
    """
    d = mean1.size
    a = float(mean1 @ mean2)
    b = float(mean1 @ (var2 * mean1))
    c = float(mean2 @ (var1 * mean2))
    t = float(var1 @ var2)
    e = float(mean1 @ (var2 * var1 * mean2))
    first, second = a, t + b + c + a * a
    third = a**3 + 3 * a * b + 3 * (a * (c + t) + 2 * e)
    return third / d**3 + 3 * second / d**2 + 3 * first / d + 1.0


def population_kid(pop: Population) -> float:
    """Population MMD² under KID's cubic kernel."""
    xx = expected_kernel(pop.mean_x, pop.var_x, pop.mean_x, pop.var_x)
    yy = expected_kernel(pop.mean_y, pop.var_y, pop.mean_y, pop.var_y)
    xy = expected_kernel(pop.mean_x, pop.var_x, pop.mean_y, pop.var_y)
    return xx + yy - 2.0 * xy


def region_coordinates(d: int) -> np.ndarray:
    """The planted region: the first quarter of the coordinates (at least one)."""
    return np.arange(max(1, d // 4))


def perturbed_variance(var: np.ndarray) -> np.ndarray:
    """Variance of a·x + s + e on a perturbed coordinate."""
    return var * (REGION_SCALE**2 + REGION_NOISE)


def population_nfd(d: int) -> float:
    """Closed-form nFD = FD(X, B_r X) / FD(X, B_All X) of the planted region effect."""
    var = reference_variances(d)
    zeros = np.zeros(d)

    def fd_of(coordinates: np.ndarray) -> float:
        mean, perturbed = zeros.copy(), var.copy()
        mean[coordinates] = REGION_SHIFT
        perturbed[coordinates] = perturbed_variance(var[coordinates])
        return population_fd(zeros, var, mean, perturbed)

    return fd_of(region_coordinates(d)) / fd_of(np.arange(d))


def perturb(x: np.ndarray, coordinates: np.ndarray, var: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """B acting on `coordinates`: a·x + s + e, e ~ N(0, τ²λ) per image; other coordinates unchanged."""
    out = x.copy()
    noise = rng.standard_normal((x.shape[0], coordinates.size)) * np.sqrt(REGION_NOISE * var[coordinates])
    out[:, coordinates] = REGION_SCALE * x[:, coordinates] + REGION_SHIFT + noise
    return out


# ------------------------------------------------------------------------------------------ one data set
def _interval_record(estimate: float, reported: Interval, replicates: np.ndarray) -> dict[str, Any]:
    percentile = interval_from_replicates(
        estimate, replicates, CONFIDENCE, "percentile", extend_to_estimate=False
    )
    return {
        "estimate": estimate,
        "basic": [reported.low, reported.high],
        "extended": reported.extended,
        "percentile": [percentile.low, percentile.high],
    }


def simulate_fd_kid(cell: Cell, dataset: int, boot: int) -> dict[str, Any]:
    """FD and KID of one pair of independent samples, with their bootstrap intervals."""
    pop = population(cell.d, cell.case)
    rng = np.random.default_rng([cell.n, cell.d, CASES.index(cell.case), dataset])
    x = pop.mean_x + rng.standard_normal((cell.n, cell.d)) * np.sqrt(pop.var_x)
    y = pop.mean_y + rng.standard_normal((cell.n, cell.d)) * np.sqrt(pop.var_y)
    fd = bootstrap_fd(x, y, num_boot=boot, seed=dataset, workers=1)
    kid = full_set_kid_bootstrap(x, y, num_boot=boot, seed=dataset)
    return {
        "fd": _interval_record(fd.value, fd.bootstrap.interval, fd.samples),
        "kid": _interval_record(kid.estimate, kid.interval, kid.replicates),
    }


def simulate_nfd(cell: Cell, dataset: int, boot: int) -> dict[str, Any]:
    """The paired conditional nFD of one clean sample and its two perturbed copies, with its interval."""
    var = reference_variances(cell.d)
    rng = np.random.default_rng([cell.n, cell.d, CASES.index(cell.case), dataset])
    x = rng.standard_normal((cell.n, cell.d)) * np.sqrt(var)
    region = perturb(x, region_coordinates(cell.d), var, rng)
    whole = perturb(x, np.arange(cell.d), var, rng)

    def statistic(draw: Draw) -> dict[str, float]:
        rows = draw["ids"]
        if np.unique(rows).size < 2:
            return {}
        numerator = frechet_distance_resampled(x, rows, region, rows).value
        denominator = frechet_distance_resampled(x, rows, whole, rows).value
        return {"nfd": numerator / denominator if denominator > 0 else math.nan}

    estimate = bootstrap(statistic, {"ids": cell.n}, num_boot=boot, seed=dataset, workers=1)["nfd"]
    return {"nfd": _interval_record(estimate.estimate, estimate.interval, estimate.replicates)}


def truths(cell: Cell) -> dict[str, float]:
    """The population value of every metric the cell estimates."""
    if cell.case == "region":
        return {"nfd": population_nfd(cell.d)}
    pop = population(cell.d, cell.case)
    return {
        "fd": population_fd(pop.mean_x, pop.var_x, pop.mean_y, pop.var_y),
        "kid": population_kid(pop),
    }


# ------------------------------------------------------------------------------------------ a whole cell
def summarise(records: list[dict[str, Any]], truth: float) -> dict[str, Any]:
    """Coverage (with its binomial standard error), mean estimate, mean width, fraction extended."""
    count = len(records)
    summary: dict[str, Any] = {
        "truth": truth,
        "mean_estimate": float(np.mean([r["estimate"] for r in records])),
        "extended_fraction": float(np.mean([r["extended"] for r in records])),
    }
    for method in ("basic", "percentile"):
        bounds = np.array([r[method] for r in records], dtype=float)
        covered = (bounds[:, 0] <= truth) & (truth <= bounds[:, 1])
        rate = float(covered.mean())
        summary[method] = {
            "coverage": rate,
            "coverage_se": math.sqrt(max(rate * (1 - rate), 1e-12) / count),
            "mean_width": float(np.mean(bounds[:, 1] - bounds[:, 0])),
        }
    return summary


def run_cell(cell: Cell, datasets: int, boot: int) -> dict[str, Any]:
    """Simulate `datasets` data sets of `cell` and summarise every metric's coverage."""
    simulate = simulate_nfd if cell.case == "region" else simulate_fd_kid
    start = time.perf_counter()
    records = [simulate(cell, dataset, boot) for dataset in range(datasets)]
    seconds = time.perf_counter() - start
    metrics = {
        name: summarise([record[name] for record in records], truth) for name, truth in truths(cell).items()
    }
    return {
        "cell": cell.name,
        "n": cell.n,
        "d": cell.d,
        "case": cell.case,
        "datasets": datasets,
        "boot": boot,
        "confidence": CONFIDENCE,
        "seconds": seconds,
        "machine": machine(),
        "metrics": metrics,
    }


def machine() -> str:
    """CPU model, Python and numpy versions."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}; Python {platform.python_version()}; numpy {np.__version__}"


def summary_table(out: Path) -> str:
    """A Markdown table of every finished cell under `out`."""
    lines = [
        "| n | d | case | metric | truth | mean estimate | basic coverage | percentile coverage "
        "| basic mean width | extended | data sets | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    results = [json.loads(path.read_text()) for path in out.glob("*.json")]
    order = {cell.name: index for index, cell in enumerate(all_cells())}
    for result in sorted(results, key=lambda r: order.get(r["cell"], len(order))):
        for name, metric in result["metrics"].items():
            basic, percentile = metric["basic"], metric["percentile"]
            lines.append(
                f"| {result['n']} | {result['d']} | {result['case']} | {name} | {metric['truth']:.4g} "
                f"| {metric['mean_estimate']:.4g} | {basic['coverage']:.3f} ± {basic['coverage_se']:.3f} "
                f"| {percentile['coverage']:.3f} ± {percentile['coverage_se']:.3f} "
                f"| {basic['mean_width']:.3g} | {metric['extended_fraction']:.2f} | {result['datasets']} "
                f"| {result['seconds']:.0f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "coverage", help="one JSON per cell")
    parser.add_argument("--cells", default="all", help="'all' or comma-separated names like n500-d64-small")
    parser.add_argument("--datasets", type=int, default=500, help="simulated data sets per cell")
    parser.add_argument("--boot", type=int, default=200, help="bootstrap replicates B")
    parser.add_argument("--summary", action="store_true", help="print the Markdown table of finished cells")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.summary:
        print(summary_table(args.out))
        return 0
    cells = all_cells() if args.cells == "all" else [Cell.parse(name) for name in args.cells.split(",")]
    for cell in cells:
        path = args.out / f"{cell.name}.json"
        if path.exists():
            print(f"{cell.name}: done already ({path})", flush=True)
            continue
        result = run_cell(cell, args.datasets, args.boot)
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(result, indent=1))
        partial.replace(path)
        coverage = ", ".join(
            f"{name} basic {m['basic']['coverage']:.3f} percentile {m['percentile']['coverage']:.3f}"
            for name, m in result["metrics"].items()
        )
        print(f"{cell.name}: {coverage} ({result['seconds']:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
