"""Reduced precision and `torch.compile` for a space's network, each enabled only where it is safe.

Reduced precision (``bf16``/``fp16``: the network under `torch.autocast`, preprocessing and features in
float32) is allowed for a space only where a *recorded check* shows that it leaves the FD between two
fixed sets of real images within ``TOLERANCE`` (1e-3) relative of the float32 FD. Checks are stored in
``precision_checks.json`` beside this module, one per (space, spec hash, precision, device type): a new
weight file or preprocessing (a new spec hash) needs a new check. Asking for a precision without a passing
check keeps float32 and says why. A reduced-precision extractor carries its precision in its spec's
``extra``, so its features never share cache entries with float32 ones.

Record a check (the images: a folder of real photographs, its first n files against the next n)::

    python -m feature_spaces.precision efficientnet-lite0-imagenet --precision bf16 --device cpu \\
        --images ../shared/data/faces/utkface200_crop_part1 --n 100 --record

`torch.compile` changes only rounding; the extractor keeps the compiled network only if it ran and agreed
with the eager one on its first batch (`TorchExtractor.compile_status`), so it needs no recorded check.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import itertools
import json
import platform
import sys
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from feature_spaces.extractor import Extractor, TorchExtractor

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
TOLERANCE = 1e-3  # largest relative FD change a reduced precision may cause on the check's images
CHECKS_FILE = Path(__file__).with_name("precision_checks.json")

_CONFIGURED: weakref.WeakKeyDictionary[Extractor, dict[tuple[str, bool], Extractor]] = (
    weakref.WeakKeyDictionary()
)


@dataclasses.dataclass(frozen=True)
class PrecisionCheck:
    """FD between two fixed image sets in float32 and in a reduced precision, for one space and device."""

    space: str
    spec_hash: str  # the float32 spec's hash: the check holds for exactly these weights and preprocessing
    precision: str
    device: str  # device type the check ran on ("cpu", "cuda")
    device_name: str
    images: str  # which images: folder name, manifest hash and the two halves
    n: int  # images in each set
    fd_fp32: float
    fd_reduced: float
    relative_change: float
    max_feature_deviation: float  # max |reduced − fp32| / max |fp32| over every feature row
    tolerance: float
    torch: str
    date: str

    @property
    def passed(self) -> bool:
        return self.relative_change <= self.tolerance

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.space, self.spec_hash, self.precision, self.device)


def recorded_checks(path: Path | None = None) -> list[PrecisionCheck]:
    """Every check recorded in `path` (default `CHECKS_FILE`; none when the file does not exist)."""
    path = CHECKS_FILE if path is None else path
    if not path.exists():
        return []
    entries = json.loads(path.read_text())
    return [PrecisionCheck(**entry) for entry in entries]


def find_check(
    space: str, spec_hash: str, precision: str, device_type: str, path: Path | None = None
) -> PrecisionCheck | None:
    """The recorded check of this space (at this spec hash), precision and device type, if any."""
    for check in recorded_checks(path):
        if check.key == (space, spec_hash, precision, device_type):
            return check
    return None


def record_check(check: PrecisionCheck, path: Path | None = None) -> None:
    """Add `check` to `path` (default `CHECKS_FILE`), replacing an earlier check with the same key."""
    path = CHECKS_FILE if path is None else path
    kept = [entry for entry in recorded_checks(path) if entry.key != check.key]
    entries = sorted([*kept, check], key=lambda entry: entry.key)
    path.write_text(json.dumps([dataclasses.asdict(entry) for entry in entries], indent=2) + "\n")


def configure(
    extractor: Extractor, precision: str = "fp32", compile: bool = False, checks_file: Path | None = None
) -> tuple[Extractor, str]:
    """The extractor to run with these settings, and a line saying which numerics it will use.

    float32 without compile is `extractor` itself. Otherwise a copy sharing the network (made once per
    extractor and settings), so the plain extractor stays as it was. A reduced precision without a
    passing recorded check, or a space that is not a torch network, keeps float32; the line says why.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if not isinstance(extractor, TorchExtractor):
        plain = "float32"
        if precision != "fp32" or compile:
            plain += " (not a torch network: precision and compile settings do not apply)"
        return extractor, plain
    dtype, note = _allowed_precision(extractor, precision, checks_file)
    if compile:
        note += "; torch.compile requested (kept only if the first batch agrees with eager)"
    chosen = "fp32" if dtype is None else precision
    if chosen == "fp32" and not compile:
        return extractor, note
    variants = _CONFIGURED.setdefault(extractor, {})
    if (chosen, compile) not in variants:
        variants[(chosen, compile)] = with_settings(extractor, dtype, compile)
    return variants[(chosen, compile)], note


def _allowed_precision(
    extractor: TorchExtractor, precision: str, checks_file: Path | None
) -> tuple[torch.dtype | None, str]:
    """The autocast dtype the recorded checks allow for this extractor (None: float32), and why."""
    if precision == "fp32":
        return None, "float32"
    spec, device_type = extractor.spec, extractor.device.type
    check = find_check(spec.name, spec.spec_hash, precision, device_type, checks_file)
    if check is None:
        return None, (
            f"float32 ({precision} was asked for, but {spec.name} has no recorded {precision} check on "
            f"{device_type} at spec {spec.spec_hash}; see feature_spaces/precision.py)"
        )
    if not check.passed:
        return None, (
            f"float32 ({precision} refused: its recorded check changed the FD by "
            f"{check.relative_change:.1e} > {check.tolerance:.0e})"
        )
    return PRECISIONS[precision], (
        f"{precision} autocast (recorded check: FD changed by {check.relative_change:.1e} ≤ "
        f"{check.tolerance:.0e}, {check.n} + {check.n} real images on {check.device_name})"
    )


def with_settings(extractor: TorchExtractor, dtype: torch.dtype | None, compile: bool) -> TorchExtractor:
    """A copy of `extractor` sharing its network, with its own autocast, compile and memory state.

    No recorded check is consulted: this is for running a check, or for timing a speed ceiling; runs get
    their extractors from `configure`."""
    from bench.microbatch import MicroBatcher

    twin = copy.copy(extractor)
    if dtype is not None:
        extra = {**extractor.spec.extra, "autocast": str(dtype).removeprefix("torch.")}
        twin.spec = dataclasses.replace(extractor.spec, extra=extra)
    twin.autocast = dtype
    twin.compile_requested = compile
    twin.compile_status = None
    twin._compiled = None
    twin.memory_limit = None
    twin.oom_fallbacks = []
    twin.micro_batches = MicroBatcher(twin.model, twin.device)  # its activations differ in size
    return twin


# ----------------------------------------------------------------------------------------- the check
def check_precision(
    extractor: TorchExtractor,
    precision: str,
    first: torch.Tensor | Sequence[torch.Tensor],
    second: torch.Tensor | Sequence[torch.Tensor],
    images: str,
    batch_size: int = 32,
) -> PrecisionCheck:
    """FD between the sets `first` and `second` (uint8 batches) in float32 and in `precision`.

    `extractor` must be the plain float32 extractor; the reduced one is derived from it without looking
    at recorded checks. `images` says which images these are (it is stored with the check).
    """
    if PRECISIONS.get(precision) is None:
        raise ValueError(f"a check compares a reduced precision with float32; got {precision!r}")
    from bench.metrics.frechet import frechet_distance

    reduced = with_settings(extractor, PRECISIONS[precision], compile=False)
    plain_a, plain_b = (_features(extractor, part, batch_size) for part in (first, second))
    low_a, low_b = (_features(reduced, part, batch_size) for part in (first, second))
    fd_plain = frechet_distance(plain_a, plain_b).value
    fd_low = frechet_distance(low_a, low_b).value
    scale = max(np.abs(plain_a).max(), np.abs(plain_b).max(), 1e-30)
    deviation = max(np.abs(low_a - plain_a).max(), np.abs(low_b - plain_b).max()) / scale
    device = extractor.device
    return PrecisionCheck(
        space=extractor.spec.name,
        spec_hash=extractor.spec.spec_hash,
        precision=precision,
        device=device.type,
        device_name=_device_name(device),
        images=images,
        n=int(plain_a.shape[0]),
        fd_fp32=float(fd_plain),
        fd_reduced=float(fd_low),
        relative_change=float(abs(fd_low - fd_plain) / max(abs(fd_plain), 1e-30)),
        max_feature_deviation=float(deviation),
        tolerance=TOLERANCE,
        torch=torch.__version__,
        date=datetime.date.today().isoformat(),
    )


def _features(extractor: Extractor, batches: torch.Tensor | Sequence[torch.Tensor], size: int) -> np.ndarray:
    parts = list(batches.split(size)) if isinstance(batches, torch.Tensor) else list(batches)
    return np.concatenate([extractor(part).cpu().numpy().astype(np.float64) for part in parts])


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    capability = torch.backends.cpu.get_cpu_capability()  # the kernels ATen dispatches to
    return f"{platform.machine()} CPU ({capability} kernels), {torch.get_num_threads()} threads"


def _halves(folder: Path, n: int, batch_size: int) -> tuple[list[torch.Tensor], list[torch.Tensor], str]:
    """The folder's first n decodable images against its next n, as batches, and their description."""
    from bench.sources import FolderSource, stack_images

    source = FolderSource(folder)
    images = [image for _, image in itertools.islice(source.iter_images(), 2 * n)]
    if len(images) < 2 * n:
        raise SystemExit(f"{folder} holds {len(images)} decodable images; the check needs 2 × {n}")
    description = (
        f"{folder.name}: first {n} images vs the next {n} (id order), manifest {source.manifest_hash()}"
    )

    def batches(part: list[np.ndarray]) -> list[torch.Tensor]:
        runs: list[list[np.ndarray]] = []
        for image in part:
            if runs and len(runs[-1]) < batch_size and runs[-1][0].shape == image.shape:
                runs[-1].append(image)
            else:
                runs.append([image])
        return [stack_images(run) for run in runs]

    return batches(images[:n]), batches(images[n:]), description


def main(argv: Sequence[str] | None = None) -> int:
    """Run (and with --record, store) a precision check of one space on a folder of real images."""
    import feature_spaces

    parser = argparse.ArgumentParser(prog="python -m feature_spaces.precision", description=main.__doc__)
    parser.add_argument("space")
    parser.add_argument("--precision", choices=[p for p in PRECISIONS if p != "fp32"], default="bf16")
    parser.add_argument("--device", default=None)
    parser.add_argument("--images", type=Path, required=True, help="folder of real images (2 × n used)")
    parser.add_argument("--n", type=int, default=100, help="images in each of the two sets")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--record", action="store_true", help=f"store the result in {CHECKS_FILE.name}")
    args = parser.parse_args(argv)
    extractor = feature_spaces.get(args.space).load(args.device)
    if not isinstance(extractor, TorchExtractor):
        raise SystemExit(f"{args.space} is not a torch network: reduced precision does not apply")
    first, second, description = _halves(args.images, args.n, args.batch_size)
    check = check_precision(extractor, args.precision, first, second, description, args.batch_size)
    verdict = "passes" if check.passed else "fails"
    print(json.dumps(dataclasses.asdict(check), indent=2))
    print(
        f"{check.space} {check.precision} on {check.device}: FD {check.fd_fp32:.6g} → {check.fd_reduced:.6g},"
        f" relative change {check.relative_change:.2e} ({verdict} ≤ {check.tolerance:.0e})",
        file=sys.stderr,
    )
    if args.record:
        record_check(check)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
