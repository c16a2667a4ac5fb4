"""The built wheel works without the source tree: the README tour and the shipped GHN load from it."""

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[1]

CHECK = """
import sys, pathlib
import hypernetworks
assert pathlib.Path(hypernetworks.__file__).is_relative_to(sys.argv[1]), hypernetworks.__file__
exec(compile(pathlib.Path("tour.py").read_text(), "README.md", "exec"), {})
from hypernetworks.methods.ghn import load_pretrained
ghn = load_pretrained()
print("ok", type(ghn).__name__)
"""


def test_wheel_installs_and_runs_without_the_source_tree(tmp_path):
    dist, site, package = tmp_path / "dist", tmp_path / "site", tmp_path / "package"
    for part in ("pyproject.toml", "README.md"):  # built from a copy: the build writes next to its sources
        package.mkdir(exist_ok=True)
        shutil.copy(ROOT / part, package / part)
    shutil.copytree(ROOT / "src", package / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(dist), str(package)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("hypernetworks-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "hypernetworks/methods/ghn/checkpoints/ghn2_fmnist/model.safetensors" in names  # package data
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                              str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    tour = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    (tmp_path / "tour.py").write_text(tour)
    # the wheel's copy first on the path; run away from the source tree
    run = subprocess.run([sys.executable, "-c", CHECK, str(site)], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(site), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert run.stdout.strip().endswith("ok GHN"), run.stderr[-2000:]
