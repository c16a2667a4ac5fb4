"""Every ```python block of the README and of docs/ runs, each in a fresh namespace and an empty folder."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _blocks() -> dict[str, str]:
    """``{"page.md:N": code}`` of the N-th python block of each page."""
    found = {}
    for page in PAGES:
        for n, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), re.S), 1):
            found[f"{page.relative_to(ROOT)}:{n}"] = code
    return found


BLOCKS = _blocks()


def test_the_pages_have_examples():
    assert {"README.md:1", "README.md:2", "docs/api/methods.md:1"} <= set(BLOCKS)


@pytest.mark.parametrize("where", sorted(BLOCKS))
def test_example_runs(where, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that save write here
    exec(compile(BLOCKS[where], where, "exec"), {"__name__": "__docs__"})
