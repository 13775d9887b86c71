"""How fast is FID on a folder? fdbench against pytorch-fid and torch-fidelity, in one run, on one device.

    python scripts/throughput.py --device cpu --n 128 --json out.json

The script writes its own synthetic PNG and JPEG folders of `--n` images of `--side`² (smooth random
fields plus pixel noise, seeded), and a weight file for the FID Inception (pytorch-fid's layout, randomly
initialised unless `--weights` names the real file: speed does not depend on the weight values). All three
tools then run the same Inception architecture on the same images at the same batch size:

- end to end: image folder → Gaussian statistics (μ, Σ), each tool with its own loader and its own default
  number of decoding workers (fdbench: the engine with an empty cache, so nothing is served from it;
  pytorch-fid: `compute_statistics_of_path` with its command line's worker count; torch-fidelity:
  `fid_input_id_to_statistics`);
- forward only: decoded uint8 images already on the device → features (each tool's resize to 299² and
  normalisation included);
- fdbench's decode pipeline alone (the decode ceiling) and, with `--ceilings`, its forward under reduced
  precision and `torch.compile` (speed ceilings; whether a space may use them is feature_spaces/precision);
- FD time: one FD at d = `--fd-dim` per tool, and fdbench's batched FD of `--fd-sets` sets against one
  reference.

Each measurement is repeated `--repeats` times with the tools in rotating order and reported as the
median; the ratios are fdbench's rate over each peer's (above 1: fdbench is faster). Before timing, the
script checks that the tools compute the same thing: features of one batch (fdbench against pytorch-fid
to float rounding; torch-fidelity resizes differently and is reported, not required to match) and the
end-to-end statistics (fdbench against pytorch-fid). The JSON holds every timing, ratio and check; it is
always valid JSON (a failed measurement is recorded as an error string and a null rate).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Set before torch loads; every tool runs in this process, so every tool gets them. Huge pages for torch's
# large CPU tensors, as the fdbench command sets them (bench/cli.py). Passive OpenMP waiting: on a CPU
# shared with other work, threads that spin at the end of every parallel region lose their time slices
# while their partner waits; fdbench's memory-bounded micro-batches run many small regions and fell to
# 0.5× pytorch-fid's speed so (2 threads, load ≈ 4), against 2× with passive waiting (docs/performance.md).
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

WEIGHT_FILE = "pt_inception-2015-12-05-6726825d.pth"  # pytorch-fid's file name, which fdbench looks up
SPACE = "inception-fid"
RANDOM_SPACE = "throughput-inception-fid"  # inception-fid with its checksum pin dropped (random weights)
FORMATS = {"png": ("PNG", {}), "jpeg": ("JPEG", {"quality": 90})}
PEERS = ("pytorch-fid", "torch-fidelity")
TOOLS = ("fdbench", *PEERS)


# ------------------------------------------------------------------------------------------ inputs
def make_folder(folder: Path, fmt: str, n: int, side: int, seed: int = 0) -> Path:
    """`n` synthetic side×side images in `fmt` ("png" or "jpeg"): a smooth random field plus noise."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    pil_format, options = FORMATS[fmt]
    suffix = "png" if fmt == "png" else "jpg"
    for index in range(n):
        coarse = torch.rand(1, 3, 8, 8, generator=generator) * 255
        smooth = torch.nn.functional.interpolate(
            coarse, size=(side, side), mode="bicubic", align_corners=False
        )
        noisy = smooth + torch.randn(1, 3, side, side, generator=generator) * 12
        pixels = noisy.clamp(0, 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
        Image.fromarray(pixels).save(folder / f"{index:06d}.{suffix}", format=pil_format, **options)
    return folder


def random_weight_file(folder: Path) -> Path:
    """A randomly initialised FID Inception state dict, with non-trivial BatchNorm statistics."""
    from feature_spaces.inception import FIDInceptionV3

    torch.manual_seed(0)
    model = FIDInceptionV3()
    generator = torch.Generator().manual_seed(0)
    for layer in model.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.running_mean.copy_(torch.randn(layer.running_mean.shape, generator=generator) * 0.1)
            layer.running_var.copy_(torch.rand(layer.running_var.shape, generator=generator) + 0.5)
    path = folder / WEIGHT_FILE
    torch.save(model.state_dict(), path)
    return path


def fdbench_space(weight_file: Path, real: bool) -> str:
    """The space fdbench runs, reading `weight_file` (found through FDBENCH_WEIGHTS).

    The real file is `inception-fid` itself (checksum verified, its recorded precision checks apply); a
    random one is `inception-fid` with the checksum pin dropped, under RANDOM_SPACE.
    """
    import feature_spaces

    os.environ["FDBENCH_WEIGHTS"] = str(weight_file.parent)
    if real:
        if weight_file.name != WEIGHT_FILE:
            raise SystemExit(f"--weights must be pytorch-fid's {WEIGHT_FILE}, got {weight_file.name}")
        return SPACE
    space = feature_spaces.get(SPACE)
    weights = tuple(dataclasses.replace(w, sha256=None) for w in space.spec.weights)
    spec = dataclasses.replace(space.spec, name=RANDOM_SPACE, weights=weights)
    feature_spaces.register(spec, space.loader, replace=True)
    return RANDOM_SPACE


def decoded_images(folder: Path, count: int) -> torch.Tensor:
    """The first `count` images of a folder as one uint8 N×3×H×W batch (all of one size)."""
    from bench.sources import FolderSource, stack_images

    source = FolderSource(folder, hash_memo=False)
    return stack_images([source.load(index) for index in range(min(count, len(source)))])


# ------------------------------------------------------------------------------------------ the tools
class Tools:
    """The three tools' models on one device, loaded once, and how each runs end to end and forward."""

    def __init__(
        self, device: torch.device, weight_file: Path, space: str, batch_size: int, args: argparse.Namespace
    ):
        import feature_spaces

        self.device = device
        self.space = space
        self.batch_size = batch_size
        self.args = args
        self.fdbench = feature_spaces.get(space).load(device)
        self.pytorch_fid_workers = (
            _pytorch_fid_default_workers() if args.peer_workers is None else args.peer_workers
        )
        self.available: dict[str, str | None] = {"fdbench": None}
        self.numerics = "float32"  # what fdbench's engine ran its network in (set by each end-to-end run)
        self.pytorch_fid = self._load_pytorch_fid(weight_file)
        self.torch_fidelity = self._load_torch_fidelity(weight_file)

    def _load_pytorch_fid(self, weight_file: Path) -> Any:
        try:
            from pytorch_fid import inception as pfi
        except ImportError as error:
            self.available["pytorch-fid"] = f"not installed ({error})"
            return None
        original = pfi.load_state_dict_from_url
        pfi.load_state_dict_from_url = lambda *a, **k: torch.load(weight_file, weights_only=True)
        try:
            model = pfi.InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True)
        finally:
            pfi.load_state_dict_from_url = original
        self.available["pytorch-fid"] = None
        return model.to(self.device).eval()

    def _load_torch_fidelity(self, weight_file: Path) -> Any:
        try:
            from torch_fidelity.utils import create_feature_extractor
        except ImportError as error:
            self.available["torch-fidelity"] = f"not installed ({error})"
            return None
        extractor = create_feature_extractor(
            "inception-v3-compat",
            ["2048"],
            cuda=self.device.type == "cuda",
            feature_extractor_weights_path=str(weight_file),
            verbose=False,
        )
        self.available["torch-fidelity"] = None
        return extractor

    # --------------------------------------------------------------------------------- forward only
    def forward(self, tool: str, images: torch.Tensor) -> torch.Tensor:
        """(N, 2048) features of a uint8 batch already on the device."""
        with torch.inference_mode():
            if tool == "fdbench":
                return self.fdbench(images)
            if tool == "pytorch-fid":
                return self.pytorch_fid(images.float() / 255.0)[0].flatten(1)
            return self.torch_fidelity(images)[0]

    # --------------------------------------------------------------------------------- end to end
    def statistics(self, tool: str, folder: Path) -> tuple[np.ndarray, np.ndarray, int]:
        """Mean, covariance and n of a folder's features, from the folder itself."""
        if tool == "fdbench":
            return self._fdbench_statistics(folder)
        if tool == "pytorch-fid":
            from pytorch_fid.fid_score import compute_statistics_of_path

            mu, sigma = compute_statistics_of_path(
                str(folder), self.pytorch_fid, self.batch_size, 2048, self.device, self.pytorch_fid_workers
            )
            return mu, sigma, len(list(folder.iterdir()))
        from torch_fidelity.metric_fid import fid_input_id_to_statistics

        stats = fid_input_id_to_statistics(
            1,
            self.torch_fidelity,
            "2048",
            input1=str(folder),
            cuda=self.device.type == "cuda",
            batch_size=self.batch_size,
            cache=False,
            verbose=False,
        )
        return stats["mu"], stats["sigma"], len(list(folder.iterdir()))

    def _fdbench_statistics(self, folder: Path) -> tuple[np.ndarray, np.ndarray, int]:
        from bench.engine import CLEAN, EngineConfig, run_engine
        from bench.sources import open_source

        with tempfile.TemporaryDirectory(prefix="fdbench-cache-") as cache, _environ("FDBENCH_CACHE", cache):
            config = EngineConfig(
                batch_size=self.batch_size,
                device=str(self.device),
                workers=self.args.workers,
                precision=self.args.precision,
                compile=self.args.compile,
                jpeg_decoder=self.args.jpeg_decoder,
                progress=False,
            )
            result = run_engine(open_source(str(folder)), [CLEAN], [self.space], None, config)
        self.numerics = result.spaces.get(self.space, {}).get("numerics", "float32")
        cell = result.cell(CLEAN, self.space)
        if cell is None or cell.stats is None:
            raise RuntimeError(f"fdbench gave no statistics: {result.space_errors}")
        return cell.stats.mean, cell.stats.cov, cell.n


def _pytorch_fid_default_workers() -> int:
    """What `python -m pytorch_fid` uses when --num-workers is not given: min(8, usable CPUs)."""
    return min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@contextlib.contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


# ------------------------------------------------------------------------------------------ timing
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work: Callable[[], Any]) -> tuple[float, Any]:
    """Wall seconds of `work()` (device work finished), and its result."""
    synchronize(device)
    start = time.perf_counter()
    result = work()
    synchronize(device)
    return time.perf_counter() - start, result


def rotations(names: list[str], repeats: int) -> Iterator[list[str]]:
    """`repeats` orders of `names`, each rotated by one, so drifting load hits every tool alike."""
    for repeat in range(repeats):
        shift = repeat % len(names)
        yield names[shift:] + names[:shift]


@dataclasses.dataclass
class Measurement:
    """Repeated timings of one tool on one task, as images per second."""

    images: int
    seconds: list[float] = dataclasses.field(default_factory=list)
    error: str | None = None
    workers: int | None = None  # decoding processes, where the measurement decodes

    @property
    def rate(self) -> float | None:
        if self.error is not None or not self.seconds:
            return None
        return self.images / statistics.median(self.seconds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "seconds": [round(s, 4) for s in self.seconds],
            "images_per_s": _round(self.rate),
            "error": self.error,
            "workers": self.workers,
        }


def measure(
    tools: list[str], repeats: int, images: int, device: torch.device, run: Callable[[str], Any]
) -> dict[str, Measurement]:
    """Time `run(tool)` for every available tool, `repeats` rounds in rotating order."""
    results = {tool: Measurement(images) for tool in tools}
    for order in rotations(tools, repeats):
        for tool in order:
            if results[tool].error is not None:
                continue
            try:
                seconds, _ = timed(device, lambda tool=tool: run(tool))
            except Exception as error:  # a crashing peer is a result to report, not the end of the run
                results[tool].error = f"{type(error).__name__}: {error}"[:300]
                continue
            results[tool].seconds.append(seconds)
    return results


# ------------------------------------------------------------------------------------------ checks
def relative_deviation(result: np.ndarray, reference: np.ndarray) -> float:
    """max |result − reference| / max |reference|."""
    scale = max(float(np.abs(reference).max()), 1e-30)
    return float(np.abs(np.asarray(result, np.float64) - reference).max() / scale)


def feature_agreement(tools: Tools, available: list[str], images: torch.Tensor) -> dict[str, float]:
    """Each peer's features of one batch against fdbench's (max relative deviation)."""
    ours = tools.forward("fdbench", images).double().cpu().numpy()
    return {
        tool: relative_deviation(tools.forward(tool, images).double().cpu().numpy(), ours)
        for tool in available
        if tool != "fdbench"
    }


# ------------------------------------------------------------------------------------------ FD timing
def fd_timings(dim: int, sets: int, device: torch.device, repeats: int) -> dict[str, Any]:
    """One FD per tool at dimension `dim`, and fdbench's batched FD of `sets` sets against one reference."""
    from bench.metrics.frechet import frechet_distance
    from bench.metrics.frechet_batched import frechet_distance_many
    from bench.stats import GaussianStats

    generator = np.random.default_rng(0)
    spectrum = np.exp(-np.arange(dim) / (dim / 18.0))  # condition number ≈ 6.6e7, like a CNN embedding

    def covariance(scale: np.ndarray) -> np.ndarray:
        basis, _ = np.linalg.qr(generator.standard_normal((dim, dim)))
        return (basis * (spectrum * scale)) @ basis.T

    mu1, mu2 = generator.standard_normal(dim), generator.standard_normal(dim)
    cov1, cov2 = covariance(np.ones(dim)), covariance(np.ones(dim))
    first = GaussianStats.from_mean_cov(mu1, cov1, n=10_000)
    second = GaussianStats.from_mean_cov(mu2, cov2, n=10_000)

    def fdbench_fd() -> float:
        return frechet_distance(first, second).value

    def pytorch_fid_fd() -> float:
        from pytorch_fid.fid_score import calculate_frechet_distance

        return float(calculate_frechet_distance(mu1, cov1, mu2, cov2))

    def torch_fidelity_fd() -> float:
        from torch_fidelity.metric_fid import fid_statistics_to_metric

        metric = fid_statistics_to_metric({"mu": mu1, "sigma": cov1}, {"mu": mu2, "sigma": cov2}, False)
        return float(metric["frechet_inception_distance"])

    single: dict[str, Any] = {}
    reference_value = None
    for tool, run in (
        ("fdbench", fdbench_fd),
        ("pytorch-fid", pytorch_fid_fd),
        ("torch-fidelity", torch_fidelity_fd),
    ):
        seconds: list[float] = []
        try:
            for _ in range(repeats):
                elapsed, value = timed(torch.device("cpu"), run)
                seconds.append(elapsed)
        except Exception as error:  # pytorch-fid's sqrtm call fails on scipy ≥ 1.18
            single[tool] = {"seconds": None, "error": f"{type(error).__name__}: {error}"[:300]}
            continue
        if tool == "fdbench":
            reference_value = value
        single[tool] = {
            "seconds": round(statistics.median(seconds), 4),
            "value": value,
            "relative_difference": None
            if reference_value is None
            else abs(value - reference_value) / reference_value,
            "error": None,
        }
    ours = single["fdbench"]["seconds"]
    for tool in PEERS:
        peer = single.get(tool, {}).get("seconds")
        single[tool]["ratio"] = _round(peer / ours) if peer and ours else None

    others = [
        GaussianStats.from_mean_cov(mu2 + 0.01 * k, covariance(1.0 + 0.2 * generator.random(dim)), n=10_000)
        for k in range(sets)
    ]
    many_seconds = []
    for _ in range(repeats):
        elapsed, values = timed(device, lambda: frechet_distance_many(first, others, device=device))
        many_seconds.append(elapsed)
    check = frechet_distance(first, others[-1]).value
    return {
        "dim": dim,
        "single": single,
        "batched": {
            "sets": sets,
            "device": str(device),
            "seconds": round(statistics.median(many_seconds), 4),
            "seconds_per_fd": round(statistics.median(many_seconds) / max(1, sets), 5),
            "last_value_relative_difference": abs(values[-1].value - check) / check,
        },
    }


# ------------------------------------------------------------------------------------------ decode ceiling
def decode_rate(
    folder: Path,
    batch_size: int,
    workers: int | None,
    device: torch.device,
    repeats: int,
    jpeg_decoder: str = "pil",
) -> Measurement:
    """fdbench's decoding alone (as the engine runs it: chunks of 256, its worker pool, JPEGs decoded by
    `jpeg_decoder`): images/s."""
    from bench.engine.chunks import iter_chunk
    from bench.engine.loading import DecodePool, auto_workers
    from bench.sources import open_source

    source = open_source(str(folder))
    count = auto_workers(source, device, batch_size) if workers is None else workers
    chunk = 256

    on_device = jpeg_decoder == "device"
    jpeg_device = device if on_device else None

    def run() -> None:
        pool = DecodePool(source, count, batch_size, device.type == "cuda", on_device) if count > 0 else None
        try:
            skips: list[tuple[str, str]] = []
            for start in range(0, len(source), chunk):
                for _ in iter_chunk(
                    source, start, min(len(source), start + chunk), batch_size, skips, pool, jpeg_device
                ):
                    pass
        finally:
            if pool is not None:
                pool.close()

    result = Measurement(len(source), workers=count)
    for _ in range(repeats):
        elapsed, _ = timed(device, run)
        result.seconds.append(elapsed)
    return result


# ------------------------------------------------------------------------------------------ the run
def forward_rates(
    tools: Tools, available: list[str], pool: torch.Tensor, count: int, repeats: int
) -> dict[str, Measurement]:
    """Forward-only images/s: `count` images in batches, cycled from the decoded `pool` on the device."""
    batches = [pool[i : i + tools.batch_size] for i in range(0, pool.shape[0], tools.batch_size)]
    needed = max(1, math.ceil(count / tools.batch_size))
    plan = [batches[i % len(batches)] for i in range(needed)]
    for tool in available:
        tools.forward(tool, plan[0])  # warm-up: lazy initialisation, kernel choice, micro-batch probe

    def run(tool: str) -> None:
        for batch in plan:
            tools.forward(tool, batch)

    return measure(available, repeats, sum(batch.shape[0] for batch in plan), tools.device, run)


def ceiling_rates(
    tools: Tools, pool: torch.Tensor, count: int, repeats: int, modes: list[str]
) -> dict[str, Any]:
    """fdbench's forward under each of `modes` ("fp16", "bf16", "compile"), as speed ceilings."""
    from feature_spaces.precision import PRECISIONS, with_settings

    out: dict[str, Any] = {}
    base = tools.fdbench
    for mode in modes:
        variant = with_settings(base, PRECISIONS.get(mode), compile=mode == "compile")
        tools.fdbench = variant
        try:
            rates = forward_rates(tools, ["fdbench"], pool, count, repeats)["fdbench"]
        finally:
            tools.fdbench = base
        out[mode] = {**rates.to_dict(), "compile_status": variant.compile_status}
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench.device import resolve_device

    device = resolve_device(args.device)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="fdbench-throughput-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args, device, work)
    finally:
        if not args.work_dir and not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, device: torch.device, work: Path) -> dict[str, Any]:
    weight_file = Path(args.weights) if args.weights else random_weight_file(work)
    space = fdbench_space(weight_file, real=bool(args.weights))
    folders = {fmt: make_folder(work / fmt, fmt, args.n, args.side) for fmt in args.formats}
    _say(f"folders of {args.n} images of {args.side}² written under {work}")
    tools = Tools(device, weight_file, space, args.batch_size, args)
    available = [tool for tool in TOOLS if tools.available.get(tool) is None]
    if args.forward_images is None:  # enough batches for a stable median, few enough for a CPU
        args.forward_images = min(args.n, 4096 if device.type == "cuda" else 4 * args.batch_size)
    pool = decoded_images(folders[args.formats[0]], min(args.n, args.forward_images)).to(device)
    agreement = feature_agreement(tools, available, pool[: args.batch_size])
    _say(f"features of one batch against fdbench's (max relative deviation): {agreement}")

    _say("forward only …")
    forward = forward_rates(tools, available, pool, args.forward_images, args.repeats)
    e2e: dict[str, dict[str, Measurement]] = {}
    e2e_checks: dict[str, dict[str, float]] = {}
    decode: dict[str, Measurement] = {}
    for fmt, folder in folders.items():
        _say(f"end to end, {fmt} …")
        stats: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}

        def one(tool: str, folder: Path = folder, stats: dict = stats) -> None:
            stats[tool] = tools.statistics(tool, folder)

        e2e[fmt] = measure(available, args.repeats, args.n, device, one)
        e2e_checks[fmt] = {
            f"{tool}_mean_relative_deviation": relative_deviation(stats[tool][0], stats["fdbench"][0])
            for tool in stats
            if tool != "fdbench" and "fdbench" in stats
        }
        e2e_checks[fmt]["fdbench_n"] = stats["fdbench"][2] if "fdbench" in stats else 0
        decode[fmt] = decode_rate(
            folder, args.batch_size, args.workers, device, args.repeats, args.jpeg_decoder
        )
    ceilings = (
        ceiling_rates(tools, pool, args.forward_images, args.repeats, args.ceilings) if args.ceilings else {}
    )
    _say("FD …")
    fd = fd_timings(
        args.fd_dim or (2048 if device.type == "cuda" else 512), args.fd_sets, device, args.fd_repeats
    )
    workers = decode[args.formats[0]].workers
    return report(
        args, device, tools, available, agreement, forward, e2e, e2e_checks, decode, ceilings, fd, workers
    )


def report(
    args: argparse.Namespace,
    device: torch.device,
    tools: Tools,
    available: list[str],
    agreement: dict[str, float],
    forward: dict[str, Measurement],
    e2e: dict[str, dict[str, Measurement]],
    e2e_checks: dict[str, dict[str, float]],
    decode: dict[str, Measurement],
    ceilings: dict[str, Any],
    fd: dict[str, Any],
    workers: int,
) -> dict[str, Any]:
    """The JSON document: settings, machine, fdbench's rates, each peer's rates and ratios, checks."""
    ours_forward = forward["fdbench"].rate
    fdbench: dict[str, Any] = {
        "forward_images_per_s": _round(ours_forward),
        "forward": forward["fdbench"].to_dict(),
    }
    for fmt in e2e:
        rate = e2e[fmt]["fdbench"].rate
        limit = (
            min(r for r in (decode[fmt].rate, ours_forward) if r is not None) if decode[fmt].rate else None
        )
        fdbench[f"e2e_{fmt}_images_per_s"] = _round(rate)
        fdbench[f"decode_{fmt}_images_per_s"] = _round(decode[fmt].rate)
        fdbench[f"e2e_{fmt}_fraction_of_ceiling"] = _round(rate / limit) if rate and limit else None
        fdbench[f"e2e_{fmt}"] = e2e[fmt]["fdbench"].to_dict()
    fdbench["settings"] = {
        "workers": workers,
        "workers_asked": "auto" if args.workers is None else args.workers,
        "precision_asked": args.precision,
        "compile_asked": args.compile,
        "jpeg_decoder": args.jpeg_decoder,
        "numerics": tools.numerics,
    }
    peers: dict[str, Any] = {}
    for tool in PEERS:
        if tool not in available:
            peers[tool] = {"error": tools.available.get(tool)}
            continue
        entry: dict[str, Any] = {
            "forward_images_per_s": _round(forward[tool].rate),
            "forward_ratio": _ratio(ours_forward, forward[tool].rate),
            "feature_deviation_from_fdbench": agreement.get(tool),
            "workers": tools.pytorch_fid_workers
            if tool == "pytorch-fid"
            else "torch-fidelity's own (min(4, 2 × CPUs))",
        }
        for fmt in e2e:
            entry[f"e2e_{fmt}_images_per_s"] = _round(e2e[fmt][tool].rate)
            entry[f"e2e_{fmt}_ratio"] = _ratio(e2e[fmt]["fdbench"].rate, e2e[fmt][tool].rate)
            entry[f"e2e_{fmt}_round_ratios"] = round_ratios(e2e[fmt]["fdbench"], e2e[fmt][tool])
            entry[f"e2e_{fmt}"] = e2e[fmt][tool].to_dict()
        entry["forward_round_ratios"] = round_ratios(forward["fdbench"], forward[tool])
        entry["forward"] = forward[tool].to_dict()
        peers[tool] = entry
    return {
        "machine": machine(device),
        "settings": {
            "device": str(device),
            "n": args.n,
            "side": args.side,
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "forward_images": args.forward_images,
            "weights": "given file" if args.weights else "randomly initialised (pytorch-fid's layout)",
            "fdbench_space": tools.space,
            "environment": {
                name: os.environ.get(name) for name in ("OMP_WAIT_POLICY", "THP_MEM_ALLOC_ENABLE")
            },
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        },
        "fdbench": fdbench,
        "peers": peers,
        "checks": {"features": agreement, "end_to_end": e2e_checks},
        "ceilings": ceilings,
        "fd": fd,
    }


def machine(device: torch.device) -> dict[str, Any]:
    """The platform record baselines use (CPU model, instruction sets, torch build, threads, device), the
    usable CPUs, the load average at the end, and the peers' versions."""
    from bench.parallel import usable_cpus
    from bench.reports.platform import platform_record

    record = platform_record(str(device))
    versions: dict[str, str] = {}
    for package in ("pytorch_fid", "torch_fidelity", "PIL"):
        with contextlib.suppress(Exception):
            versions[package] = __import__(package).__version__
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {**record, "usable_cpus": usable_cpus(), "load_average": load, "peer_versions": versions}


def table(result: dict[str, Any]) -> str:
    """The ratios for people: one line per peer and task."""
    lines = [
        f"device {result['settings']['device']}, {result['machine']['cpu']}, n = {result['settings']['n']}"
    ]
    ours = result["fdbench"]
    lines.append(f"{'task':<16}{'fdbench img/s':>14}" + "".join(f"{peer:>26}" for peer in PEERS))
    tasks = [("forward", "forward")] + [
        (f"e2e {fmt}", f"e2e_{fmt}") for fmt in FORMATS if f"e2e_{fmt}_images_per_s" in ours
    ]
    for label, key in tasks:
        cells = []
        for peer in PEERS:
            entry = result["peers"].get(peer, {})
            rate, ratio = entry.get(f"{key}_images_per_s"), entry.get(f"{key}_ratio")
            cells.append(f"{_fmt(rate)} img/s, {_fmt(ratio)}×" if rate is not None else "—")
        lines.append(
            f"{label:<16}{_fmt(ours.get(f'{key}_images_per_s')):>14}" + "".join(f"{c:>26}" for c in cells)
        )
    for fmt in FORMATS:
        if f"decode_{fmt}_images_per_s" in ours:
            lines.append(
                f"fdbench decode {fmt}: {_fmt(ours[f'decode_{fmt}_images_per_s'])} img/s; end to end = "
                f"{_fmt(ours[f'e2e_{fmt}_fraction_of_ceiling'])} of min(decode, forward)"
            )
    fd = result["fd"]
    single = ", ".join(
        f"{tool} {entry['seconds']} s" + (f" ({entry['ratio']}×)" if entry.get("ratio") else "")
        if entry.get("seconds") is not None
        else f"{tool} failed"
        for tool, entry in fd["single"].items()
    )
    batched = fd["batched"]
    lines.append(
        f"FD d = {fd['dim']}: {single}; "
        f"{batched['sets']} batched on {batched['device']}: {batched['seconds']} s"
    )
    return "\n".join(lines)


def round_ratios(ours: Measurement, peer: Measurement) -> list[float]:
    """fdbench's speed over the peer's in each round (measured minutes apart at most: less drift)."""
    return [
        _round((peer_seconds / peer.images) / (our_seconds / ours.images))
        for our_seconds, peer_seconds in zip(ours.seconds, peer.seconds, strict=False)
    ]


def _ratio(ours: float | None, peer: float | None) -> float | None:
    return _round(ours / peer) if ours and peer else None


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: CUDA when present)")
    parser.add_argument("--n", type=int, default=256, help="images in each synthetic folder")
    parser.add_argument("--side", type=int, default=256, help="image side in pixels")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per measurement (median)")
    parser.add_argument("--formats", default="png,jpeg", help="comma-separated: png, jpeg")
    parser.add_argument("--forward-images", type=int, default=None, help="images per forward-only round")
    parser.add_argument("--workers", type=int, default=None, help="fdbench decoding workers (default: auto)")
    parser.add_argument(
        "--peer-workers", type=int, default=None, help="pytorch-fid's workers (default: its CLI's)"
    )
    parser.add_argument(
        "--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="fdbench end to end"
    )
    parser.add_argument("--compile", action="store_true", help="fdbench end to end under torch.compile")
    parser.add_argument(
        "--jpeg-decoder",
        default="pil",
        choices=["pil", "device"],
        help="fdbench's JPEG decoding: PIL in workers, or batched decode_jpeg on --device",
    )
    parser.add_argument("--ceilings", default="", help="fdbench forward ceilings to add: fp16,bf16,compile")
    parser.add_argument(
        "--fd-dim", type=int, default=None, help="FD dimension (default 2048 on CUDA, 512 on CPU)"
    )
    parser.add_argument("--fd-sets", type=int, default=64, help="sets in the batched FD")
    parser.add_argument("--fd-repeats", type=int, default=3)
    parser.add_argument("--weights", default=None, help="pytorch-fid's real weight file (default: random)")
    parser.add_argument("--work-dir", default=None, help="where folders and weights go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    args.formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = [f for f in args.formats if f not in FORMATS]
    if unknown or not args.formats:
        parser.error(f"--formats takes png and/or jpeg, got {args.formats}")
    args.ceilings = [m.strip() for m in args.ceilings.split(",") if m.strip()]
    if any(m not in ("fp16", "bf16", "compile") for m in args.ceilings):
        parser.error(f"--ceilings takes fp16, bf16 and compile, got {args.ceilings}")
    if args.n < 2 or args.batch_size < 1:
        parser.error("--n must be at least 2 and --batch-size at least 1")
    if args.repeats < 1 or args.fd_repeats < 1:
        parser.error("--repeats and --fd-repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
        _say(f"written {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
