import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# Helpers beside this file that test files import: their assertions are rewritten as in a test file.
pytest.register_assert_rewrite("commands", "fakes", "fake_records", "toy_methods", "image_methods", "text_methods")

from fakes import write_fake_fashion, write_fake_ptb  # noqa: E402


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# Devices the device-dependent tests run on: the CPU, and the GPU where torch sees one (on the
# CPU-only CI the cuda cases are reported as skipped; benchmark/tools/gpu_check.sh runs them).
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not _has_cuda(), reason="no CUDA device"))]


@pytest.fixture(scope="session")
def fake_fashion_root(tmp_path_factory) -> Path:
    """A data root with a tiny Fashion-MNIST look-alike (300 train / 150 test) in the original IDX
    format, and a tiny PTB look-alike (300 / 40 / 80 sentences) in Mikolov's format (the smoke grid
    runs both: a data root given is the only place data are read from)."""
    root = tmp_path_factory.mktemp("fashion")
    write_fake_fashion(root, gz=True, n_train=300, n_test=150)
    write_fake_ptb(root / "ptb", n=(300, 40, 80))
    return root


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A temporary plugin folder on $BENCHMARK_PLUGINS; the method registry is restored afterwards.

    Call the fixture's value with ``{file name: source}`` to write plugin files.
    """
    from benchmark import discovery

    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.setenv(discovery.PLUGIN_PATH_ENV, str(folder))
    monkeypatch.setattr(discovery.METHODS, "_items", dict(discovery.METHODS._items))
    monkeypatch.setattr(discovery, "_imported", set(discovery._imported))

    def write(files: dict[str, str]) -> Path:
        for name, source in files.items():
            (folder / name).write_text(source)
        return folder

    return write


@pytest.fixture
def no_system_data(tmp_path, monkeypatch):
    """No Fashion-MNIST anywhere: empty system and cache roots, no $BENCHMARK_DATA, cold cache."""
    from benchmark.data import catalog, roots

    monkeypatch.setattr(catalog, "_CACHE", {})
    monkeypatch.setattr(roots, "SYSTEM_DATA_ROOTS", [tmp_path / "system"])
    monkeypatch.setattr(roots, "CACHE_ROOT", tmp_path / "cache")
    monkeypatch.delenv(roots.DATA_ENV, raising=False)


def smoke_runs(seeds: int = 1) -> int:
    """Runs of the smoke grid: every method on Fashion-MNIST and on pinwheel (those that take
    fixed-size examples: all but the language model) and every method on PTB."""
    from benchmark.config import ModelConfig
    from benchmark.discovery import METHODS
    from benchmark.ml.method import model_problem

    vector = [n for n in METHODS.names() if model_problem(n, {}, ModelConfig()) is None]
    return seeds * (2 * len(vector) + len(METHODS.names()))


def pytest_configure(config) -> None:
    """Under pytest-xdist each test process gets its share of the cores for torch's intra-op
    threads (a run started with --threads sets its own), not every core each."""
    import os

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
