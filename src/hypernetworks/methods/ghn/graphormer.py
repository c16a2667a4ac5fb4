"""GHN-3's graph encoder: transformer layers over all nodes, with encodings of the graph's structure.

Knyazev, Hwang, Lacoste-Julien, "Can We Scale Transformers to Predict Parameters of Diverse ImageNet
Models?", ICML 2023: GHN-3 replaces GHN-2's gated graph network by Graphormer-style layers (Ying et al.,
"Do Transformers Really Perform Bad for Graph Representation?", NeurIPS 2021). Here: in- and out-degree
embeddings are added to the node embeddings, and every attention head adds a learned bias for the signed,
clipped shortest-path distance between the two nodes (shared by all layers); nodes attend only within
their own graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GraphTransformer", "distance_buckets"]

MAX_DEGREE = 15


def distance_buckets(dist: torch.Tensor, max_dist: int) -> torch.Tensor:
    """Bucket (N, N) int64 of each node pair from directed distances ``dist[u, v]`` (inf: unreachable).

    0: the node itself; d in 1..max_dist: v is d steps downstream of u (clipped); max_dist + d: upstream;
    2 * max_dist + 1: neither.
    """
    down = dist.clamp(max=max_dist)
    up = dist.T.clamp(max=max_dist)
    out = torch.full(dist.shape, 2 * max_dist + 1, dtype=torch.long)
    out = torch.where(dist.T.isfinite(), (max_dist + up).long(), out)
    return torch.where(dist.isfinite(), down.long(), out)  # the diagonal is 0 downstream


class _Block(nn.Module):
    """Pre-norm transformer layer over the nodes: attention with an additive bias, then an MLP."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.qkv, self.out = nn.Linear(hidden, 3 * hidden), nn.Linear(hidden, hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden))

    def forward(self, h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        n, width = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(n, 3, self.heads, width // self.heads).permute(1, 2, 0, 3)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (heads, N, dh)
        h = h + self.out(a.transpose(0, 1).reshape(n, width))
        return h + self.mlp(self.norm2(h))


class GraphTransformer(nn.Module):
    """``(h (N, H), in_degree (N,), out_degree (N,), buckets (N, N)) -> (N, H)``; bucket -1: other graph.

    Args:
        hidden: node embedding width H (divisible by ``heads``).
        layers: transformer layers.
        heads: attention heads.
        max_dist: distances are clipped to this many steps (see ``distance_buckets``).
    """

    def __init__(self, hidden: int, layers: int, heads: int, max_dist: int):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"GraphTransformer: hidden {hidden} must divide by heads {heads}.")
        self.in_degree = nn.Embedding(MAX_DEGREE + 1, hidden)
        self.out_degree = nn.Embedding(MAX_DEGREE + 1, hidden)
        self.distance_bias = nn.Embedding(2 * max_dist + 2, heads)
        nn.init.zeros_(self.distance_bias.weight)
        self.blocks = nn.ModuleList([_Block(hidden, heads) for _ in range(layers)])

    def forward(self, h: torch.Tensor, in_degree: torch.Tensor, out_degree: torch.Tensor,
                buckets: torch.Tensor) -> torch.Tensor:
        h = h + self.in_degree(in_degree.clamp(max=MAX_DEGREE)) + self.out_degree(out_degree.clamp(max=MAX_DEGREE))
        bias = self.distance_bias(buckets.clamp(min=0)).permute(2, 0, 1)  # (heads, N, N)
        bias = bias.masked_fill(buckets < 0, float("-inf"))
        for block in self.blocks:
            h = block(h, bias)
        return h
