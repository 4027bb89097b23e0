"""What produced a result besides its code (:mod:`benchmark.planning.code_key`): library versions, the
host (CPU model, instruction sets, threads) and the project's git commit."""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Folders of generated output: a run writing its results does not make the code it ran "dirty".
OUTPUT_FOLDERS = ("results", "reports")
PACKAGES = ["torch", "torchvision", "numpy", "pandas", "scipy", "joblib", "tqdm"]
# CPU instruction-set flags that change which kernels torch runs (hence the last bits of a number).
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "amx_tile", "amx_bf16", "asimd", "sve")


def is_checkout(root: Path = PROJECT_ROOT) -> bool:
    """Whether the package runs from a repository checkout (or an editable install of one),
    not from an installed copy in site-packages."""
    return (root / "pyproject.toml").is_file() and (root / "methods").is_dir() and (root / "benchmark").is_dir()


@functools.lru_cache(maxsize=1)
def git_commit() -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the project checkout (None and None
    for an installed package: its folder, site-packages, is no checkout even inside one); dirty:
    a tracked file outside :data:`OUTPUT_FOLDERS` differs from the commit."""
    def git(*args: str) -> str | None:
        if not is_checkout():
            return None
        try:
            out = subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    excluded = [f":(exclude){folder}" for folder in OUTPUT_FOLDERS]
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", *excluded) if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


@functools.lru_cache(maxsize=1)
def cpu() -> dict[str, Any]:
    """The CPU model and the instruction-set flags of :data:`ISA_FLAGS` it has (Linux
    ``/proc/cpuinfo``; elsewhere the platform's processor string and no flags)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model", "CPU part") and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "isa": [f for f in ISA_FLAGS if f in flags]}


@functools.lru_cache(maxsize=1)
def torch_build() -> dict[str, Any]:
    """torch's version, CUDA / cuDNN build and the CPU kernel level it dispatches to."""
    import torch

    capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", lambda: None)()
    return {"version": torch.__version__, "cuda": torch.version.cuda, "git": getattr(torch.version, "git_version", None),
            "cpu_capability": capability, "mkldnn": torch.backends.mkldnn.is_available()}


@functools.lru_cache(maxsize=1)
def _static_environment() -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "packages": versions,
            "git": git_commit(), "cpu": cpu(), "torch_build": torch_build()}


def environment() -> dict[str, Any]:
    """Versions, platform, CPU model and ISA flags, torch build, git commit and the torch CPU
    threads this process uses now: what is needed to tell why numbers differ between hosts
    (the same run id gives identical numbers on the same CPU model and thread count)."""
    import torch

    return {**_static_environment(), "torch_threads": torch.get_num_threads()}
