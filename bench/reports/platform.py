"""The machine a number was computed on, as a baseline records it: CPU model and instruction sets, the
kernels torch dispatched to, the torch build, threads and device.

Floating-point results of one configuration differ in their last bits between machines because the
kernel libraries (ATen, MKL, oneDNN) pick code paths by instruction set and split work by thread count;
a baseline says where its numbers came from so that a drift report can be read against it.
"""

from __future__ import annotations

import os
import platform as _platform
from pathlib import Path
from typing import Any

from bench.reports.manifest import cpu_model

# Environment variables that choose kernel code paths or thread counts (recorded when set).
KERNEL_ENVIRONMENT = (
    "ATEN_CPU_CAPABILITY",
    "MKL_ENABLE_INSTRUCTIONS",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
)
# The SIMD extensions kernel libraries dispatch on, in /proc/cpuinfo's spelling.
SIMD_FLAGS = (
    "sse4_2",
    "avx",
    "fma",
    "avx2",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "asimd",
    "sve",
)


def instruction_sets() -> list[str]:
    """The SIMD extensions this CPU reports (Linux /proc/cpuinfo; empty where unavailable)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return []
    for line in cpuinfo.read_text(errors="replace").splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() in ("flags", "features"):
            present = set(value.split())
            return [flag for flag in SIMD_FLAGS if flag in present]
    return []


def platform_record(device: str | None = None) -> dict[str, Any]:
    """CPU, instruction sets, ATen's kernel choice, torch build, threads, device and kernel settings."""
    import numpy
    import torch

    record: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "instruction_sets": instruction_sets(),
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "torch_build": {
            "mkl": torch.backends.mkl.is_available(),
            "onednn": torch.backends.mkldnn.is_available(),
            "cuda": torch.version.cuda,
        },
        "threads": torch.get_num_threads(),
        "numpy": numpy.__version__,
        "python": _platform.python_version(),
        "os": _platform.platform(),
        "device": device_name(device),
        "environment": {name: os.environ[name] for name in KERNEL_ENVIRONMENT if name in os.environ},
    }
    return record


def device_name(device: str | None = None) -> str:
    """'cpu', or the GPU's name when the run used (or, unasked, would use) CUDA."""
    import torch

    from bench.device import resolve_device

    resolved = resolve_device(device)
    if resolved.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(resolved)})"
    return resolved.type
