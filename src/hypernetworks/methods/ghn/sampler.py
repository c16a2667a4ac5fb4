"""A small DeepNets-1M-like space of image classifiers (Knyazev et al., NeurIPS 2021, Sec. 3).

A network is a stem conv, ``len(stages)`` stages of cells (a reduction conv of stride 2 that doubles
the width between stages), global average pooling and a linear classifier. A cell is a small DAG:
each node applies one op to the cell input or to an earlier node, and the cell output is the sum of
all nodes. Ops: 3x3 / 5x5 conv, separable 3x3, dilated 3x3, max / avg pool, identity and spatial
self-attention; normalisation is BatchNorm, GroupNorm or none (the network-wide choice).
"""

from __future__ import annotations

import functools
import operator
import random
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["CELL_OPS", "Net", "sample_genotype"]

CELL_OPS = ("conv3", "conv5", "sep3", "dil3", "max3", "avg3", "skip", "attn")
NORMS = ("bn", "gn", "none")


def _norm(kind: str, c: int) -> nn.Module:
    return {"bn": lambda: nn.BatchNorm2d(c), "gn": lambda: nn.GroupNorm(min(4, c), c), "none": nn.Identity}[kind]()


class _Attention(nn.Module):
    """Single-head self-attention over the H*W positions of a feature map."""

    def __init__(self, c: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(c, 1, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        out = self.attn(t, t, t, need_weights=False)[0]
        return out.transpose(1, 2).reshape(b, c, h, w)


def _op(name: str, c: int, norm: str) -> nn.Module:
    if name in ("conv3", "conv5", "dil3"):
        k, d = (5, 1) if name == "conv5" else (3, 2 if name == "dil3" else 1)
        return nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, k, padding=d * (k // 2), dilation=d, bias=norm == "none"),
                             _norm(norm, c))
    if name == "sep3":
        return nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False),
                             nn.Conv2d(c, c, 1, bias=norm == "none"), _norm(norm, c))
    if name == "max3":
        return nn.MaxPool2d(3, 1, 1)
    if name == "avg3":
        return nn.AvgPool2d(3, 1, 1)
    if name == "attn":
        return _Attention(c)
    return nn.Identity()


class _Cell(nn.Module):
    def __init__(self, nodes: list[tuple[str, int]], c: int, norm: str):
        super().__init__()
        self.inputs = [i for _, i in nodes]
        self.ops = nn.ModuleList([_op(name, c, norm) for name, _ in nodes])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x]
        for op, i in zip(self.ops, self.inputs, strict=True):
            states.append(op(states[i]))
        return functools.reduce(operator.add, states[1:])


class Net(nn.Module):
    """A network of the space, built from a genotype (see ``sample_genotype``).

    Args:
        genotype: ``{"width", "stages", "cell", "norm", "in_channels", "classes"}``.

    Shapes: input (B, in_channels, S, S) -> logits (B, classes).
    """

    def __init__(self, genotype: dict):
        super().__init__()
        self.genotype = genotype
        c, norm = genotype["width"], genotype["norm"]
        layers: list[nn.Module] = [nn.Conv2d(genotype["in_channels"], c, 3, padding=1, bias=norm == "none"),
                                   _norm(norm, c)]
        for s, cells in enumerate(genotype["stages"]):
            if s:
                layers += [nn.ReLU(), nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=norm == "none"),
                           _norm(norm, 2 * c)]
                c *= 2
            layers += [_Cell(genotype["cell"], c, norm) for _ in range(cells)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                        nn.Linear(c, genotype["classes"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def sample_genotype(rng: random.Random, *, widths: Sequence[int] = (8, 12, 16), stages: Sequence[int] = (2, 3),
                    cells: Sequence[int] = (1, 2), nodes: tuple[int, int] = (1, 4), norms: Sequence[str] = NORMS,
                    in_channels: int = 1, classes: int = 10) -> dict[str, Any]:
    """A random genotype of the space; ranges give the choices (``nodes`` is an inclusive range)."""
    n = rng.randint(*nodes)
    cell = [(rng.choice(CELL_OPS), rng.randrange(i + 1)) for i in range(n)]
    if all(op in ("skip", "max3", "avg3") for op, _ in cell):  # a cell needs a parametrised op
        k = rng.randrange(n)
        cell[k] = (rng.choice(CELL_OPS[:4]), cell[k][1])
    return {"width": rng.choice(widths), "stages": [rng.choice(cells) for _ in range(rng.choice(stages))],
            "cell": cell, "norm": rng.choice(norms), "in_channels": in_channels, "classes": classes}
