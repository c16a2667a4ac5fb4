"""Every docstring example under ``hypernetworks.methods`` and ``hypernetworks.layers`` runs (doctest), and every
registered method has one."""

import doctest
import importlib
import pkgutil

import pytest
import torch
from torch import nn

from hypernetworks import layers, methods


def _examples() -> dict[str, doctest.DocTest]:
    names = [p.__name__ for p in (methods, layers)]
    names += [m.name for p in (methods, layers) for m in pkgutil.walk_packages(p.__path__, f"{p.__name__}.")]
    finder = doctest.DocTestFinder(exclude_empty=True)
    return {t.name: t for n in names for t in finder.find(importlib.import_module(n)) if t.examples}


EXAMPLES = _examples()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_docstring_example_runs(name):
    test = EXAMPLES[name]
    test.globs = {**test.globs, "torch": torch, "nn": nn}  # examples may use torch and nn without importing them
    lines = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        result = runner.run(test, out=lines.append)
    assert result.failed == 0, "".join(lines)


@pytest.mark.parametrize("name", methods.list_methods())
def test_every_registered_method_has_an_example(name):
    builder = methods.get_method(name).builder
    assert ">>>" in (builder.__doc__ or ""), f"{name}: {builder.__qualname__} has no docstring example"
