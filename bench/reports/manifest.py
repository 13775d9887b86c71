"""The run manifest: everything needed to say what produced a results table, written as manifest.json."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bench import __version__
from bench.hashing import canonical_json, sha256_file

MANIFEST_JSON = "manifest.json"

DEFAULT_PACKAGES: tuple[str, ...] = (
    "fdbench",
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "pillow",
    "matplotlib",
    "seaborn",
    "onnxruntime",
    "open-clip-torch",
    "timm",
)


def build_manifest(
    *,
    config: Mapping[str, Any] | None = None,
    seeds: Mapping[str, int] | Iterable[int] | int | None = None,
    weights: Mapping[str, str | Path] | None = None,
    data_manifest_hash: str | Mapping[str, str] | None = None,
    device: Mapping[str, Any] | str | None = None,
    timings: Mapping[str, float] | None = None,
    notes: Iterable[str] = (),
    packages: Iterable[str] = DEFAULT_PACKAGES,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A JSON-ready manifest of one run.

    `weights` maps a name to a sha256 string or to a Path (hashed here). `device` is a torch device
    string or a ready mapping; by default the CPU model and, when CUDA is present, the GPU name are
    recorded. `notes` are human-readable problems (skipped regions, spaces that failed to load) that the
    report lists in its problems section.
    """
    manifest: dict[str, Any] = {
        "fdbench_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": list(sys.argv),
        "config": _jsonable(dict(config or {})),
        "seeds": _jsonable(_seeds(seeds)),
        "packages": package_versions(packages),
        "weights": weight_hashes(weights or {}),
        "data_manifest_hash": _jsonable(data_manifest_hash),
        "device": _jsonable(device if isinstance(device, Mapping) else device_info(device)),
        "timings": {str(k): float(v) for k, v in (timings or {}).items()},
        "notes": [str(note) for note in notes],
    }
    for key, value in (extra or {}).items():
        manifest[str(key)] = _jsonable(value)
    return manifest


def package_versions(names: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, str | None]:
    """Installed version of each named distribution, None when it is not installed."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def weight_hashes(weights: Mapping[str, str | Path]) -> dict[str, str]:
    """sha256 of each weight: Path values are hashed from the file, strings are taken as given hashes."""
    hashes = {}
    for name, entry in weights.items():
        if isinstance(entry, Path):
            if not entry.is_file():
                raise FileNotFoundError(f"weight file for {name!r} not found at {entry}")
            hashes[str(name)] = sha256_file(entry)
        else:
            hashes[str(name)] = str(entry)
    return hashes


def device_info(device: str | None = None) -> dict[str, Any]:
    """CPU model, core count, platform and Python; GPU name and CUDA version when torch sees a GPU."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "requested": device,
    }
    try:
        import torch
    except ImportError:
        return info
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        info["gpu"] = torch.cuda.get_device_name(index)
        info["gpu_count"] = torch.cuda.device_count()
        info["cuda"] = torch.version.cuda
    else:
        info["gpu"] = None
    return info


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo where available, else what `platform` says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def write_manifest(manifest: Mapping[str, Any], path: str | Path) -> Path:
    """Write the manifest as indented JSON (a folder gets manifest.json inside it); returns the path."""
    target = Path(path)
    if target.is_dir():
        target = target / MANIFEST_JSON
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json.loads(canonical_json(manifest)), indent=2, sort_keys=True) + "\n"
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(target)
    return target


def load_manifest(path: str | Path) -> dict[str, Any]:
    """Read a manifest.json (or the one inside a run folder); FileNotFoundError names the path."""
    target = Path(path)
    if target.is_dir():
        target = target / MANIFEST_JSON
    if not target.is_file():
        raise FileNotFoundError(f"run manifest {target} does not exist")
    try:
        manifest = json.loads(target.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"run manifest {target} is not valid JSON: {error}") from error
    if not isinstance(manifest, dict):
        raise ValueError(f"run manifest {target} must hold a JSON object")
    return manifest


def manifest_notes(manifest: Mapping[str, Any]) -> list[str]:
    """The problem notes a manifest carries (its `notes` and `problems` lists)."""
    notes: list[str] = []
    for key in ("notes", "problems"):
        value = manifest.get(key) or []
        if isinstance(value, str):
            value = [value]
        notes.extend(str(item) for item in value)
    return notes


def _seeds(seeds: Mapping[str, int] | Iterable[int] | int | None) -> Any:
    if seeds is None:
        return {}
    if isinstance(seeds, int):
        return {"seed": seeds}
    if isinstance(seeds, Mapping):
        return {str(k): v for k, v in seeds.items()}
    return list(seeds)


def _jsonable(value: Any) -> Any:
    return json.loads(canonical_json(value))
