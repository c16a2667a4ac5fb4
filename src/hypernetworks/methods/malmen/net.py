"""The MEND-style hypernetwork that turns a cached (key, value gradient) pair into a pseudo key and
a pseudo value gradient (Mitchell et al., "Fast Model Editing at Scale", ICLR 2022, as used by MALMEN).
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn


class ShiftNet(nn.Module):
    """Low-rank residual MLP over ``[u, δ]`` shared by the edited ``Linear`` layers of one shape.

    The input ``x = [u, δ]`` is standardised with statistics collected by :meth:`observe`; each
    block adds ``s_l ⊙ up(relu(down(h))) + o_l`` with a per-layer scale ``s_l`` and offset ``o_l``
    (the layer id); the change of ``h`` is mapped back to the raw scale and added to ``x``.
    ``up`` starts at zero, so a fresh net (or one with ``blocks=0``) is exactly the identity.

    Args:
        in_features: key size I (the layer's input features).
        out_features: value size O (the layer's output features).
        num_layers: L, how many edited layers share this net.
        rank: width of each block's bottleneck.
        blocks: number of residual blocks.
    """

    count: torch.Tensor  # buffers: number of observed edits, Σ[u, δ] and Σ[u, δ]² (I + O,), in float64
    total: torch.Tensor
    total_sq: torch.Tensor

    def __init__(self, in_features: int, out_features: int, num_layers: int, rank: int, blocks: int) -> None:
        super().__init__()
        dim = in_features + out_features
        self.in_features, self.out_features, self.num_layers = in_features, out_features, num_layers
        self.down = nn.ModuleList(nn.Linear(dim, rank) for _ in range(blocks))
        self.up = nn.ModuleList(nn.Linear(rank, dim) for _ in range(blocks))
        for layer in self.up:
            nn.init.zeros_(cast(nn.Linear, layer).weight)
            nn.init.zeros_(cast(nn.Linear, layer).bias)
        self.scale = nn.Parameter(torch.ones(blocks, num_layers, dim))
        self.offset = nn.Parameter(torch.zeros(blocks, num_layers, dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("total", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("total_sq", torch.zeros(dim, dtype=torch.float64))

    @torch.no_grad()
    def observe(self, keys: torch.Tensor, value_grads: torch.Tensor) -> None:
        """Add edits to the running statistics. keys (N, I), value_grads (N, O)."""
        x = torch.cat([keys, value_grads], -1).double()  # (N, I + O)
        self.count += len(x)
        self.total += x.sum(0)
        self.total_sq += x.square().sum(0)

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of ``[u, δ]``, each (I + O,)."""
        if self.count < 2:
            raise ValueError("ShiftNet: no statistics yet; call observe(keys, value_grads) on some edits first.")
        mean = self.total / self.count
        var = (self.total_sq / self.count - mean.square()).clamp_min(0)
        return mean.float(), var.sqrt().float().clamp_min(1e-6)

    def mean_key_sq_norm(self) -> torch.Tensor:
        """E‖u‖² over the observed keys, a scalar."""
        if self.count < 1:
            raise ValueError("ShiftNet: no statistics yet; call observe(keys, value_grads) on some edits first.")
        return (self.total_sq[: self.in_features].sum() / self.count).float()

    def forward(self, keys: torch.Tensor, value_grads: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Pseudo keys ũ (N, I) and pseudo value gradients δ̃ (N, O) of one layer's edits.

        Args:
            keys: u (N, I), the layer's inputs on the edit examples.
            value_grads: δ (N, O), the loss gradients with respect to the layer's outputs.
            layer: the layer's index among those sharing this net, in [0, L).
        """
        if not 0 <= layer < self.num_layers:
            raise ValueError(f"ShiftNet: layer must be in [0, {self.num_layers}), got {layer}.")
        if not self.down:
            return keys, value_grads
        x = torch.cat([keys, value_grads], -1)  # (N, I + O)
        mean, std = self.moments()
        z = (x - mean) / std
        h = z
        for b, (down, up) in enumerate(zip(self.down, self.up, strict=True)):
            h = h + self.scale[b, layer] * up(torch.relu(down(h))) + self.offset[b, layer]
        out = x + (h - z) * std  # (N, I + O)
        pseudo_keys, pseudo_grads = out.split([self.in_features, self.out_features], -1)
        return pseudo_keys, pseudo_grads
