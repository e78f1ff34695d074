"""The package a CI publishes, checked cheaply: the sdist and a wheel built by the project's own build
backend (setuptools, pyproject.toml + setup.py + MANIFEST.in) from a copy of the sources, with the pure
codec (EASLOAD_NO_EXTENSIONS=1: no compiler, a few seconds).  deploy/build_wheel.sh does the full build
(the compiled codec, auditwheel's manylinux tag, a fresh virtual environment and a 3-second run)."""

import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "MANIFEST.in", "_wbxml", "loadgen", "scenarios")


def _copy_sources(dest):
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "*.c", "*.egg-info")
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)


def _hook(name, cwd, out):
    """One PEP 517 hook of setuptools run in ``cwd`` (a process of its own, as a build frontend does); the
    file it made in ``out``."""
    code = "import sys; from setuptools import build_meta as b; print('BUILT', b.%s(sys.argv[1]))" % name
    env = dict(os.environ, EASLOAD_NO_EXTENSIONS="1")
    done = subprocess.run([sys.executable, "-c", code, str(out)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / next(line for line in done.stdout.splitlines() if line.startswith("BUILT ")).split()[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(sdist, wheel) as ``python -m build`` makes them: the sdist from a copy of the sources, then the
    wheel from the unpacked sdist (so whatever MANIFEST.in leaves out is missing from the wheel too)."""
    pytest.importorskip("setuptools", minversion="77")  # PEP 639 license expressions (the test extra has it)
    src = tmp_path_factory.mktemp("src")
    _copy_sources(src)
    out = tmp_path_factory.mktemp("out")
    sdist = _hook("build_sdist", src, out)
    unpacked = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(sdist) as tar:
        tar.extractall(unpacked, filter="data")
    (root,) = unpacked.iterdir()
    return sdist, _hook("build_wheel", root, out)


def test_build_requirements_are_capped_and_the_license_is_an_spdx_expression():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    requires = meta["build-system"]["requires"]
    assert requires and all("<" in r for r in requires), requires
    setuptools_req = next(r for r in requires if r.startswith("setuptools"))
    assert ">=77" in setuptools_req  # the first setuptools with PEP 639
    project = meta["project"]
    assert project["license"] == "MIT"
    assert not any(c.startswith("License ::") for c in project.get("classifiers", ()))  # PEP 639 forbids both
    for name in project["license-files"]:
        assert (REPO / name).is_file(), name


def test_the_wheel_carries_the_metadata_the_scenarios_and_the_command(built):
    _sdist, wheel = built
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = z.read(info + "/METADATA").decode()
        entry_points = z.read(info + "/entry_points.txt").decode()
    assert "License-Expression: MIT" in metadata.splitlines()
    assert "License-File: LICENSE" in metadata.splitlines()
    assert info + "/licenses/LICENSE" in names
    assert "easload = loadgen.cli.app:main" in entry_points
    shipped = {p.name for p in (REPO / "scenarios").glob("*.toml")}
    assert shipped and {n.rsplit("/", 1)[1] for n in names if n.startswith("loadgen/scenarios/")} == shipped
    assert "loadgen/results/assets/report.js" in names and "_wbxml/_codec.pyx" in names
    assert "loadgen/cli/shipped.py" in names


def test_the_sdist_holds_what_the_wheel_is_built_from(built):
    # python -m build makes the wheel from the sdist: without scenarios/ in it, the wheel would ship none
    sdist, _wheel = built
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in ("LICENSE", "MANIFEST.in", "setup.py", "_wbxml/_codec.pyx", "scenarios/smoke.toml",
                   "scenarios/policy-change.toml", "loadgen/results/assets/LICENSE.uPlot"):
        assert needed in names, needed
    assert not any(n.endswith(".so") for n in names)
