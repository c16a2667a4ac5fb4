"""Reproductions, registered by name: ``hypernetworks reproduce NAME [--quick]``.

Each module exposes ``run(quick, out_dir, log) -> dict`` with at least ``config``, ``table``,
``plot`` and ``claims`` (records from ``_claims``, verdicts computed); the CLI adds versions, seeds
and wall time and writes ``results/NAME.json``; ``hypernetworks results render`` draws the docs'
verdict blocks from the committed ``docs/results/NAME.json``.
"""

from __future__ import annotations

import importlib

REPRODUCTIONS = {
    "adapters": "hypernetworks.experiments.adapters",
    "continual": "hypernetworks.experiments.continual",
    "dofa": "hypernetworks.experiments.dofa",
    "ghn": "hypernetworks.experiments.ghn",
    "hyperclip": "hypernetworks.experiments.hyperclip",
    "hypermixer": "hypernetworks.experiments.hypermixer",
    "hyperppo": "hypernetworks.experiments.hyperppo",
    "hypersteer": "hypernetworks.experiments.hypersteer",
    "inr": "hypernetworks.experiments.inr",
    "malmen": "hypernetworks.experiments.malmen",
    "mip": "hypernetworks.experiments.mip",
    "modumorph": "hypernetworks.experiments.modumorph",
    "rl-critic": "hypernetworks.experiments.rl_critic",
    "sie": "hypernetworks.experiments.sie",
}


def get(name: str):
    if name not in REPRODUCTIONS:
        raise KeyError(f"reproduce: unknown reproduction {name!r}; known: {sorted(REPRODUCTIONS)}.")
    return importlib.import_module(REPRODUCTIONS[name])
