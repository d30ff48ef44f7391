"""A plain (non-editable) install works as an editable one does: the wheel carries every module,
the built-in plugins and ``registry.toml`` inside the package, and an installed bdbench finds its
registry through the package, from any working folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "registry.toml", "benchmark", "attacks", "defenses")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """bdbench's wheel, built from a copy of the checkout's sources (so the build leaves nothing
    in the checkout), without build isolation (no index needed)."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--wheel-dir", str(out), str(source)], check=True)
    [built] = out.glob("bdbench-*.whl")
    return built


def test_the_wheel_carries_every_module_and_the_registry(wheel):
    from benchmark.base.version import __version__

    assert wheel.name.startswith(f"bdbench-{__version__}-")  # the version every record names
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        registry = archive.read("benchmark/registry.toml")
    expected = {str(p.relative_to(REPO)) for folder in ("benchmark", "attacks", "defenses")
                for p in (REPO / folder).rglob("*.py")}
    assert expected - names == set()
    assert registry == (REPO / "registry.toml").read_bytes()  # the file itself, not a link
    assert not any(name.startswith(("tests/", "results/", "scripts/")) for name in names)


def test_an_installed_wheel_runs_from_any_folder(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site),
                    str(wheel)], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = ("import benchmark, sys; from benchmark.plugins.registry import registry_path; "
            "print(benchmark.__file__); print(registry_path()); "
            "from benchmark.cli import main; sys.exit(main(['list']))")
    done = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    package_file, registry, *listing = done.stdout.splitlines()
    assert package_file.startswith(str(site)) and registry.startswith(str(site))
    assert any(line.strip().startswith("mbtsad v") for line in listing)
    assert any(line.strip().startswith("cube v") for line in listing)  # its dependencies come with bdbench
    assert not any("UNAVAILABLE" in line for line in listing)
