"""What a result was measured on: machine, threads, library versions, the command line."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from importlib import metadata

from compressor.credentials import mask

LIBRARIES = (
    "torch",
    "torch-pruning",
    "optuna",
    "onnx",
    "onnxruntime",
    "nncf",
    "numpy",
    "scikit-learn",
    "transformers",
)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags(
    wanted: tuple[str, ...] = ("avx2", "avx512f", "avx512_vnni", "amx_int8"),
) -> list[str]:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    return [flag for flag in wanted if flag in present]
    except OSError:
        pass
    return []


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str | None]:
    """Installed version of each distribution (None where it is not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment_info(device: str, threads: int) -> dict:
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "device": device,
        "libraries": library_versions(),
        # The process that ran it (compress ..., or a script), its passwords masked.
        "command": shlex.join(mask(sys.argv)),
    }
    if device == "cuda":
        import torch

        info["gpu"] = torch.cuda.get_device_name()
    return info
