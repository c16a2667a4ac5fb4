"""A SMASH-style hypernetwork: parameters from an architecture encoding, with no graph propagation.

Brock, Lim, Ritchie, Weston, "SMASH: One-Shot Model Architecture Search through HyperNetworks", ICLR 2018.
SMASH decodes each layer's weights from that layer's slice of a fixed-size encoding of the architecture.
Here each parameter tensor is decoded from its node's own encoding (op type, parameter shape, relative
depth) plus a fixed-length code of the whole architecture (``GHNConfig.arch_code``), by the same
shape-aware decoder as the GHN, but with no message passing over the graph (``rounds=0``). It is the
baseline that Zhang et al. ("Graph HyperNetworks for Neural Architecture Search", ICLR 2019) compare a
graph hypernetwork against when ranking architectures by the accuracy of their generated weights.
"""

from __future__ import annotations

import dataclasses

from .config import GHNConfig
from .model import GHN

__all__ = ["SMASH"]


class SMASH(GHN):
    """``SMASH(config)(graphs)`` -> one ``{parameter name: tensor}`` per graph, like ``GHN``.

    Args:
        config: sizes; ``rounds`` is set to 0 and ``arch_code`` to True.
    """

    def __init__(self, config: GHNConfig | None = None):
        super().__init__(dataclasses.replace(config or GHNConfig(), rounds=0, arch_code=True))
