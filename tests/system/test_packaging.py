"""`pip install` gives a working tool: the wheel built from this checkout (offline: no build
isolation, no index, no dependencies) installed into a fresh virtual environment that borrows
this interpreter's site-packages, then `vae-bench list`, part of the smoke grid and `vae-bench
report` from an empty folder: results and reports land there, the built-in grids, methods and
report template come from the package, and an installed run's code key and labels equal a
checkout's. Also an editable install, ./methods/ of the working directory, and a missing
template as a packaging error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from fakes import write_fake_fashion

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "benchmark", "methods")
USER_METHOD = '''
from dataclasses import dataclass

from benchmark.plugin import Method, TrainingProgress, register_method, setting


@dataclass
class MyConfig:
    beta: float = setting(0.5, "[0, inf)", doc="weight of the KL term")


@register_method
class MyVAE(Method):
    """A user's method in ./methods/."""

    name = "my-vae"
    Config = MyConfig

    def loss(self, x, progress: TrainingProgress):
        out = self.model(x)
        rec, kl = out.rec.mean(), out.kl.mean()
        return {"loss": rec + self.config.beta * kl, "rec": rec, "kl": kl}
'''


def venv_with_parent_packages(folder: Path) -> Path:
    """A virtual environment (no pip of its own) that sees this interpreter's packages through a
    .pth file, so installing the project needs no download. Returns its bin/ folder."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    parents = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib) / "_parent_site_packages.pth").write_text("\n".join(sorted(parents)) + "\n")
    return folder / "bin"


def pip_install(bin_dir: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "--no-index",
                    "--no-deps", "--no-build-isolation", "--disable-pip-version-check", "-q", *args], check=True)


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BENCHMARK_PLUGINS", "BENCHMARK_DATA")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def tool(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(bin_dir / "vae-bench"), *args], cwd=cwd, env=clean_env(), capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """The files a build reads, copied out of the checkout (no build/ or egg-info left in it)."""
    folder = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, folder / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(ROOT / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def wheel(source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "--disable-pip-version-check", "-q", "-w", str(out), str(source)], check=True)
    (path,) = out.glob("*.whl")
    return path


def test_the_wheel_holds_the_package_data_and_the_methods(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"benchmark/grids/{p.name}" for p in (ROOT / "benchmark" / "grids").glob("*.toml")} <= names
    assert {f"benchmark/methods/{p.name}" for p in (ROOT / "methods").glob("*.py")} <= names
    assert "benchmark/report/templates/page.html.j2" in names and "benchmark/plugin.py" in names
    # every module of the checkout (a new subpackage must be listed in pyproject.toml's packages)
    assert {p.relative_to(ROOT).as_posix() for p in (ROOT / "benchmark").rglob("*.py")
            if "__pycache__" not in p.parts} <= names
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("dist-info/METADATA"))).decode()
    assert "Requires-Dist: torch>=" in metadata and "Provides-Extra: tracking" in metadata
    assert all(f"Provides-Extra: {extra}" in metadata for extra in ("ray", "dev", "tracking", "text"))
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "vae-bench = benchmark.cli:main" in entry_points


def test_installed_wheel_runs_list_smoke_and_report_from_any_folder(wheel, tmp_path):
    from benchmark.config import RunConfig
    from benchmark.planning.code_key import run_code

    bin_dir = venv_with_parent_packages(tmp_path / "venv")
    pip_install(bin_dir, str(wheel))
    work = tmp_path / "work"
    data = work / "data"
    write_fake_fashion(data, gz=True, n_train=300, n_test=150)

    listed = tool(bin_dir, work, "list")
    assert listed.returncode == 0, listed.stderr
    assert "  smoke " in listed.stdout and "  lr-vae " in listed.stdout and "  fashion-mnist " in listed.stdout

    # the smoke grid's vae on pinwheel and on the tiny Fashion-MNIST look-alike (a few seconds each)
    ran = tool(bin_dir, work, "run", "--grid", "smoke", "--methods", "vae", "--datasets", "pinwheel,fashion-mnist",
               "--data-root", str(data), "--device", "cpu", "--threads", "1")
    assert ran.returncode == 0, ran.stderr
    records = [json.loads(p.read_text()) for p in sorted((work / "results" / "smoke" / "runs").glob("*.json"))]
    assert len(records) == 2 and {r["status"] for r in records} == {"ok"}
    assert any(r["artifacts"] for r in records)
    plan = json.loads((work / "results" / "smoke" / "plan.json").read_text())
    assert plan["source"] == "benchmark/grids/smoke.toml"
    for record in records:
        # the same code key and definition labels as a checkout's run of the same config
        assert record["code"] == run_code(RunConfig.from_dict(record["config"]))
        assert any(label.startswith("methods/vae.py:") for label in record["code"]["units"])
        assert record["environment"]["git"] == {"commit": None, "dirty": None}

    reported = tool(bin_dir, work, "report")
    assert reported.returncode == 0, reported.stderr
    assert (work / "reports" / "README.md").is_file() and (work / "reports" / "index.html").is_file()
    installed = Path(subprocess.run([str(bin_dir / "python"), "-c", "import benchmark; print(benchmark.__file__)"],
                                    cwd=work, env=clean_env(), capture_output=True, text=True, check=True).stdout.strip())
    assert installed.is_relative_to(tmp_path / "venv")
    # nothing written beside the package (benchmark/results/ is the package's results-format module)
    assert not (installed.parent / "results" / "smoke").exists() and not (installed.parent.parent / "results").exists()

    # python -m benchmark works as well, and ./methods/ adds the user's methods (a copy of a
    # built-in file there is the built-in, not a second registration)
    (work / "methods").mkdir()
    (work / "methods" / "my_vae.py").write_text(USER_METHOD)
    shutil.copy(ROOT / "methods" / "vae.py", work / "methods" / "vae.py")
    listed = subprocess.run([str(bin_dir / "python"), "-m", "benchmark", "list", "methods"], cwd=work, env=clean_env(),
                            capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines() if line.startswith("  ") and not line.startswith("   ")]
    assert names.count("my-vae") == 1 and names.count("vae") == 1

    # a template missing from the package is a packaging error naming the file
    template = installed.parent / "report" / "templates" / "page.html.j2"
    template.unlink()
    broken = tool(bin_dir, work, "report", "--out", str(work / "other"))
    lines = [line for line in broken.stderr.splitlines() if line.strip()]
    assert broken.returncode == 2 and len(lines) == 1, broken.stderr
    assert f"the report template {template} is missing" in lines[0]


def test_editable_install_uses_the_checkout(source, tmp_path):
    bin_dir = venv_with_parent_packages(tmp_path / "venv")
    pip_install(bin_dir, "-e", str(source))
    work = tmp_path / "work"
    work.mkdir()
    found = subprocess.run([str(bin_dir / "python"), "-c", "import benchmark.discovery as d, benchmark.report.html as h; "
                            "print(d.BUILTIN_PLUGIN_DIR); print(h.TEMPLATES)"],
                           cwd=work, env=clean_env(), capture_output=True, text=True, check=True).stdout.split()
    assert found == [str(source / "methods"), str(source / "benchmark" / "report" / "templates")]
    listed = tool(bin_dir, work, "list", "grids")
    assert listed.returncode == 0 and "  smoke " in listed.stdout, listed.stderr


def test_user_methods_add_to_the_built_in_ones_once(plugin_dir, tmp_path, monkeypatch, capsys):
    """./methods/ and --plugins folders add methods; copies of built-in files there (a checkout's
    methods/ seen from an installed tool) are the built-ins, not second registrations."""
    from benchmark.cli import main
    from benchmark.discovery import BUILTIN_PLUGIN_DIR, plugin_files

    plugin_dir({"vae.py": (ROOT / "methods" / "vae.py").read_text(), "my_vae.py": USER_METHOD})
    work = tmp_path / "work"
    (work / "methods").mkdir(parents=True)
    shutil.copy(ROOT / "methods" / "lr_vae.py", work / "methods")
    (work / "methods" / "other.py").write_text(USER_METHOD.replace('"my-vae"', '"other-vae"'))
    monkeypatch.chdir(work)
    files = plugin_files()
    assert [p.name for p in files if p.parent != BUILTIN_PLUGIN_DIR] == ["other.py", "my_vae.py"]
    assert main(["list", "methods"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()
             if line.startswith("  ") and not line.startswith("   ")]
    assert all(names.count(n) == 1 for n in ("vae", "lr-vae", "my-vae", "other-vae"))


def test_the_lock_holds_every_pin_of_the_requirement_files_at_its_version():
    """requirements-lock.txt is regenerated after a requirements file changes (python -m benchmark.tools.lock)."""
    root = Path(__file__).resolve().parents[2]

    def pins(name: str) -> dict[str, str]:
        lines = (root / name).read_text().splitlines()
        found = [line.split("#")[0].strip() for line in lines]
        return {p.split("==")[0].lower().replace("_", "-"): p.split("==")[1] for p in found if "==" in p}

    lock = pins("requirements-lock.txt")
    for name in ("requirements.txt", "requirements-dev.txt"):
        assert {k: lock.get(k) for k in pins(name)} == pins(name), f"{name}: rerun python -m benchmark.tools.lock"
