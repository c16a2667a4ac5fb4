"""The built wheel and sdist work without the source tree: in a fresh virtual environment, the README
tour runs and the shipped GHN loads."""

import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
CHECKPOINT = "hypernetworks/methods/ghn/checkpoints/ghn2_fmnist/model.safetensors"

CHECK = """
import sys, pathlib
import hypernetworks
assert pathlib.Path(hypernetworks.__file__).is_relative_to(sys.argv[1]), hypernetworks.__file__
exec(compile(pathlib.Path("tour.py").read_text(), "README.md", "exec"), {})
from hypernetworks.methods.ghn import load_pretrained
ghn = load_pretrained()
print("ok", type(ghn).__name__)
"""


def _run(*cmd, **kw):
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """The wheel and sdist, built from a copy of the sources (the build writes next to them)."""
    tmp = tmp_path_factory.mktemp("build")
    package, out = tmp / "package", tmp / "dist"
    package.mkdir()
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, package / part)
    shutil.copytree(ROOT / "src", package / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    _run(sys.executable, "-m", "build", "--no-isolation", "--wheel", "--sdist", "-o", out, package)
    (wheel,), (sdist,) = out.glob("hypernetworks-*.whl"), out.glob("hypernetworks-*.tar.gz")
    return wheel, sdist


def _fresh_venv(path: Path) -> Path:
    """A new virtual environment whose only extra is a path to this one's dependencies (torch, ...):
    a path added by a .pth line is not a site directory, so this environment's editable install of
    hypernetworks (itself a .pth) is not seen there."""
    _run(sys.executable, "-m", "venv", "--without-pip", path)
    site = Path(_run(path / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
                .stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return site


def _tour_runs(python: Path, site: Path, cwd: Path) -> None:
    tour = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    (cwd / "tour.py").write_text(tour)
    run = subprocess.run([str(python), "-c", CHECK, str(site)], cwd=cwd, capture_output=True, text=True,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert run.stdout.strip().endswith("ok GHN"), run.stderr[-2000:]


def test_wheel_installs_in_a_fresh_venv_and_runs(dist, tmp_path):
    wheel, _ = dist
    assert {CHECKPOINT, "hypernetworks/py.typed"} <= set(zipfile.ZipFile(wheel).namelist())  # package data
    site = _fresh_venv(tmp_path / "venv")
    _run(sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", site, wheel)
    _tour_runs(tmp_path / "venv" / "bin" / "python", site, tmp_path)


def test_sdist_holds_the_sources_and_builds_a_working_install(dist, tmp_path):
    _, sdist = dist
    names = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
    assert {"pyproject.toml", "README.md", f"src/{CHECKPOINT}"} <= names
    site = _fresh_venv(tmp_path / "venv")
    _run(sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q", "--target", site, sdist)
    _tour_runs(tmp_path / "venv" / "bin" / "python", site, tmp_path)
