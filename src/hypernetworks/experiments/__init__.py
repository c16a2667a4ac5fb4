"""Reproductions, registered by name: ``hypernetworks reproduce NAME [--quick]``.

Each module exposes ``run(quick, out_dir, log) -> dict`` with at least ``config``, ``table``
and ``plot``; the CLI adds versions, seeds and wall time and writes ``results/NAME.json``.
"""

from __future__ import annotations

import importlib

REPRODUCTIONS = {
    "continual": "hypernetworks.experiments.continual",
    "dofa": "hypernetworks.experiments.dofa",
    "hypermixer": "hypernetworks.experiments.hypermixer",
    "inr": "hypernetworks.experiments.inr",
    "mip": "hypernetworks.experiments.mip",
}


def get(name: str):
    if name not in REPRODUCTIONS:
        raise KeyError(f"reproduce: unknown reproduction {name!r}; known: {sorted(REPRODUCTIONS)}.")
    return importlib.import_module(REPRODUCTIONS[name])
