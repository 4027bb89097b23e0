"""What produced a result: the code that makes its numbers, library versions, the host (CPU
model, instruction sets, threads) and the project's git commit."""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import inspect
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..discovery import METHODS
from ..ml.method import Method

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # benchmark/
PROJECT_ROOT = PACKAGE_DIR.parent
PACKAGES = ["torch", "torchvision", "numpy", "pandas", "scipy", "joblib", "tqdm"]
# The version of the numbers the core (everything under benchmark/) makes. Bump it with any
# change to benchmark/ that changes what a run computes (training, data, metrics); a refactor
# that changes no number leaves it alone. tests/test_code_version.py holds a fingerprint of
# every built-in method's numbers at this version and fails when they change without a bump.
NUMERICS_VERSION = 2  # 2: ICNN init (fan-in) and MI-cap flags
# CPU instruction-set flags that change which kernels torch runs (hence the last bits of a number).
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "amx_tile", "amx_bf16", "asimd", "sve")


class _CodeOnly(ast.NodeTransformer):
    """Drops what cannot change a number: docstrings, the module paths of imports from this
    package (the imported names stay), so moving core code between modules is no change, and
    a method's declared hyperparameter ``ranges`` (they only reject configs, never change a
    valid run) and its ``packable`` / ``pack_scalars`` (how runs execute, not what they compute)."""

    def _strip_docstring(self, node: ast.AST) -> ast.AST:
        body = getattr(node, "body", None)
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
        return self.generic_visit(node)

    visit_Module = visit_FunctionDef = visit_AsyncFunctionDef = _strip_docstring

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        node.body = [item for item in node.body if not _assigns_ranges(item)] or [ast.Pass()]
        return self._strip_docstring(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        if node.level or (node.module or "").split(".")[0] == PACKAGE_DIR.name:
            node.module, node.level = "<benchmark>", 0
        return node


def _assigns_ranges(node: ast.AST) -> bool:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    return any(isinstance(t, ast.Name) and t.id in ("ranges", "packable", "pack_scalars") for t in targets)


@functools.lru_cache(maxsize=None)
def _source_digest(path: Path, mtime_ns: int) -> str:
    tree = _CodeOnly().visit(ast.parse(path.read_text(), filename=str(path)))
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()[:16]


def source_digest(path: str | Path) -> str:
    """16 hex digits of the SHA-256 of a Python file's code: its syntax tree without comments,
    formatting, docstrings or this package's module paths in imports."""
    path = Path(path).resolve()
    return _source_digest(path, path.stat().st_mtime_ns)


def code_version(files: list[Path]) -> dict[str, Any]:
    """What identifies the code behind a run's numbers: the digests of its method's plugin
    files (``files``) and :data:`NUMERICS_VERSION` of the core, combined into ``key``."""
    digests = {_display(path): source_digest(path) for path in sorted(set(files))}
    basis = f"{NUMERICS_VERSION}:" + ",".join(f"{name}={d}" for name, d in sorted(digests.items()))
    return {"key": hashlib.sha256(basis.encode()).hexdigest()[:16], "numerics_version": NUMERICS_VERSION,
            "method_files": digests}


def _display(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


def method_files(cls: type[Method]) -> list[Path]:
    """The plugin source files a method's numbers depend on beyond the core: the files of the
    :class:`Method` subclasses in its MRO and of its Config's bases, outside the ``benchmark`` package."""
    files = set()
    classes = [k for k in cls.__mro__ if issubclass(k, Method) and k is not Method]
    for klass in (*classes, *(k for k in cls.Config.__mro__ if k is not object)):
        try:
            path = Path(inspect.getsourcefile(klass) or "")
        except TypeError:  # built-in classes (object)
            continue
        if path.is_file() and not path.resolve().is_relative_to(PACKAGE_DIR):
            files.add(path.resolve())
    return sorted(files)


def method_code(name: str) -> dict[str, Any]:
    """The code version of method ``name`` (see :func:`code_version`):
    records made with another ``key`` are stale."""
    return code_version(method_files(METHODS[name]))


@functools.lru_cache(maxsize=1)
def git_commit() -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the project checkout."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
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
