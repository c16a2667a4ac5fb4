"""HyperPPO's architecture-conditioned policy: Hegde, Huang, Sukhatme et al., "HyperPPO: A scalable
method for finding small policies for robotic control", ICRA 2024 (arXiv:2309.16663).

One hypernetwork maps an encoding of a small MLP architecture (hidden widths, depth) to that
network's weights, so a single PPO run trains policies for many architectures at once. Here every
architecture is a sub-network of a largest MLP: widths w_l mask the first w_l units of hidden
layer l, and a depth-1 network skips the second hidden layer, so the masked call computes exactly
the small network (``ArchPolicy.materialize`` returns it as a plain ``nn.Sequential`` of its true size).
The architecture encoder here is an MLP over [log2 w_1, log2 w_2, depth]; Hegde et al. use a graph
hypernetwork (GHN) over the computation graph.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ... import encoders, heads
from ...functional import functional_call
from ...hypernet import HyperNetwork
from .._pretrained import Pretrained
from .config import HyperPPOConfig


def num_params(arch: tuple[int, ...], in_dim: int, out_dim: int) -> int:
    """Parameters of the plain MLP ``in_dim -> arch... -> out_dim`` (weights and biases)."""
    sizes = [in_dim, *arch, out_dim]
    return sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))


class MaskedMLP(nn.Module):
    """The largest MLP (tanh hidden layers); ``masks (B, L, W)`` keep the first w_l units of each
    hidden layer and ``depth (B,)`` picks the last active one: ``x (B, I) -> (B, O)``."""

    def __init__(self, in_dim: int, width: int, depth: int, out_dim: int):
        super().__init__()
        self.hidden = nn.ModuleList(nn.Linear(in_dim if i == 0 else width, width) for i in range(depth))
        self.out = nn.Linear(width, out_dim)
        self.activation = nn.Tanh()

    def forward(self, x: torch.Tensor, masks: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        h, last = x, torch.zeros(len(x), self.out.in_features, dtype=x.dtype, device=x.device)
        for i, layer in enumerate(self.hidden):
            h = self.activation(layer(h)) * masks[:, i]  # (B, W)
            last = torch.where((depth == i + 1).unsqueeze(-1), h, last)
        return self.out(last)


class ArchPolicy(Pretrained[HyperPPOConfig]):
    """Weights of any architecture in ``config.archs`` from one hypernetwork: ``(obs (B, I), arch ids (B,))
    -> outputs (B, O)``, one generated weight set per architecture, shared by its examples.

    Args:
        config: a ``HyperPPOConfig`` (sizes, the architectures indexed by id); keyword ``options`` replace
            its fields.

    Example:
        >>> pi = ArchPolicy(in_dim=4, out_dim=2)  # the 20 architectures of arch_space()
        >>> pi(torch.randn(3, 4), torch.tensor([0, 5, 19])).shape
        torch.Size([3, 2])
        >>> pi.materialize(5)  # architecture 5, (2, 4), as a plain MLP of its true size
        Sequential(
          (0): Linear(in_features=4, out_features=2, bias=True)
          (1): Tanh()
          (2): Linear(in_features=2, out_features=4, bias=True)
          (3): Tanh()
          (4): Linear(in_features=4, out_features=2, bias=True)
        )
    """

    CONFIG, TAKES_TARGET = HyperPPOConfig, False
    codes: torch.Tensor  # buffers: (K, D + 1) architecture codes, (K, L, W) width masks, (K,) depths
    masks: torch.Tensor
    depths: torch.Tensor

    def __init__(self, config: HyperPPOConfig | None = None, **options: Any) -> None:
        super().__init__()
        self.config = config = HyperPPOConfig.build(config, **options)
        archs, in_dim, out_dim = config.archs, config.in_dim, config.out_dim
        if not archs or any(not a or min(a) < 1 for a in archs):
            raise ValueError(f"ArchPolicy: need a non-empty list of architectures with widths >= 1, got {archs}.")
        self.archs, self.in_dim = list(archs), in_dim
        self.width, self.depth = max(max(a) for a in archs), max(len(a) for a in archs)
        self.register_buffer("codes", torch.tensor([self._code(a) for a in self.archs]))  # (K, D + 1)
        masks = torch.zeros(len(archs), self.depth, self.width)
        for k, arch in enumerate(self.archs):
            for i, w in enumerate(arch):
                masks[k, i, :w] = 1
        self.register_buffer("masks", masks)  # (K, L, W)
        self.register_buffer("depths", torch.tensor([len(a) for a in self.archs]))  # (K,)
        target = MaskedMLP(in_dim, self.width, self.depth, out_dim)
        self.hnet = HyperNetwork(target, encoder=encoders.MLP(self.depth + 1, config.embed_dim, config.hidden),
                                 head=heads.Full(hidden=config.hidden), init="hyperfan_in",
                                 calibration=self.codes, seed=config.seed)

    def _code(self, arch: tuple[int, ...]) -> list[float]:
        """[log2 w_1 / log2 W, ..., 0 for absent layers, depth / L]."""
        scale = math.log2(self.width) or 1.0
        widths = [math.log2(w) / scale for w in arch] + [0.0] * (self.depth - len(arch))
        return widths + [len(arch) / self.depth]

    def forward(self, obs: torch.Tensor, arch: torch.Tensor) -> torch.Tensor:
        if obs.dim() != 2 or obs.shape[-1] != self.in_dim or arch.shape != obs.shape[:1]:
            raise ValueError(f"ArchPolicy: expected obs (B, {self.in_dim}) and arch ids (B,), got "
                             f"{tuple(obs.shape)} and {tuple(arch.shape)}.")
        # K weight sets generated once and gathered per example (cheaper than generating B sets from
        # repeated codes through HyperNetwork.forward), so the binding is called directly.
        per_arch = self.hnet.generate(self.codes)  # {name: (K, *shape)}
        params = {name: t[arch] for name, t in per_arch.items()}  # {name: (B, *shape)}
        return functional_call(self.hnet.target, params, (obs, self.masks[arch], self.depths[arch]),
                               spec=self.hnet.spec, per_example=True)

    @torch.no_grad()
    def materialize(self, k: int) -> nn.Sequential:
        """Architecture ``k`` as a plain MLP of its true size, with its generated weights."""
        arch, params = self.archs[k], {n: t[k] for n, t in self.hnet.generate(self.codes).items()}
        sizes, layers, prev = [self.in_dim, *arch], [], slice(None)
        for i, w in enumerate(arch):
            lin = nn.Linear(sizes[i], w)
            lin.weight.copy_(params[f"hidden.{i}.weight"][:w, prev])
            lin.bias.copy_(params[f"hidden.{i}.bias"][:w])
            layers += [lin, nn.Tanh()]
            prev = slice(0, w)
        out = nn.Linear(arch[-1], params["out.bias"].numel())
        out.weight.copy_(params["out.weight"][:, prev])
        out.bias.copy_(params["out.bias"])
        return nn.Sequential(*layers, out)


class ArchValue(nn.Module):
    """A value function shared by all architectures: ``MLP([obs, code(arch)]) -> (B, 1)``."""

    codes: torch.Tensor

    def __init__(self, policy: ArchPolicy, hidden: tuple[int, ...] = (64, 64)) -> None:
        super().__init__()
        self.codes = policy.codes  # (K, D + 1), the policy's buffer (not copied)
        self.net = encoders.mlp([policy.in_dim + self.codes.shape[1], *hidden, 1], nn.Tanh, last_activation=False)

    def forward(self, obs: torch.Tensor, arch: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, self.codes[arch]], dim=-1))
