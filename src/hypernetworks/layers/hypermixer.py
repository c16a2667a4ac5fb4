"""HyperMixer: token mixing whose weights are generated from the tokens themselves.

Mai, Pannatier, Fehr, Chen, Marelli, Fleuret, Henderson, "HyperMixer: An MLP-based Low Cost
Alternative to Transformers", ACL 2023. For tokens X (N, d) with positions P:

    W1 = h1(X + P),  W2 = h2(X + P)      (N, d'), one row per token, from small MLPs
    Y  = W2 · σ(W1ᵀ · X)                 (N, d)

so the mixing matrix is a hypernetwork output that depends on the input and on its length; the
cost is linear in N, and a trained layer runs on sequences of any length. With ``heads`` > 1 the
features split into groups, each mixed by its own generated weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..encoders import mlp

__all__ = ["AttentionMixing", "HyperMixerBlock", "HyperMixing", "MLPMixing", "SequenceClassifier",
           "sinusoidal_positions"]


def sinusoidal_positions(length: int, dim: int, device=None) -> torch.Tensor:
    """(length, dim) fixed sinusoidal position codes (Vaswani et al., 2017); any length."""
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)  # (N, 1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    out = torch.zeros(length, dim, device=device)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return out


def _check_mask(mask: torch.Tensor | None, x: torch.Tensor, who: str) -> None:
    if mask is not None and (mask.shape != x.shape[:2] or mask.dtype != torch.bool):
        raise ValueError(f"{who}: mask must be a bool tensor of shape {tuple(x.shape[:2])} (True = keep), "
                         f"got {mask.dtype} {tuple(mask.shape)}.")


class HyperMixing(nn.Module):
    """Token mixing with per-token generated weights: ``x (B, N, dim) -> (B, N, dim)``.

    Args:
        dim: token features d (divisible by ``heads``).
        hidden: d', the rows of W1ᵀ·X (the width of the mixing bottleneck) per head.
        heads: feature groups, each mixed by its own W1, W2.
        tied: W2 = W1 (one hypernetwork).
        generator_hidden: hidden width of the MLPs h1, h2.
        activation: σ, applied to W1ᵀ·X.

    Example:
        >>> mixing = HyperMixing(dim=16, hidden=8, heads=2)
        >>> x, mask = torch.randn(3, 10, 16), torch.ones(3, 10, dtype=torch.bool)
        >>> mixing(x, mask).shape  # any number of tokens: the mixing weights are generated per token
        torch.Size([3, 10, 16])
    """

    def __init__(self, dim: int, hidden: int, heads: int = 1, tied: bool = False, generator_hidden: int | None = None,
                 activation: type[nn.Module] = nn.GELU):
        super().__init__()
        if dim % heads:
            raise ValueError(f"HyperMixing: dim {dim} must be divisible by heads {heads}.")
        self.dim, self.hidden, self.heads, self.tied = dim, hidden, heads, tied
        width = generator_hidden or dim
        self.h1 = mlp([dim, width, heads * hidden], nn.GELU, last_activation=False)
        self.h2 = None if tied else mlp([dim, width, heads * hidden], nn.GELU, last_activation=False)
        self.activation = activation()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``mask`` (B, N) bool, True for real tokens: padded tokens neither give nor get mixing."""
        _check_mask(mask, x, "HyperMixing")
        b, n, d = x.shape
        xp = x + sinusoidal_positions(n, d, x.device)  # (B, N, d)
        w1 = self.h1(xp).view(b, n, self.heads, self.hidden)  # (B, N, H, d')
        w2 = w1 if self.h2 is None else self.h2(xp).view(b, n, self.heads, self.hidden)  # None: tied
        if mask is not None:
            keep = mask[:, :, None, None].to(x.dtype)
            w1, w2 = w1 * keep, w2 * keep
        xh = x.view(b, n, self.heads, d // self.heads)  # (B, N, H, d/H)
        mixed = self.activation(torch.einsum("bnhk,bnhe->bhke", w1, xh))  # W1ᵀ·X: (B, H, d', d/H)
        y = torch.einsum("bnhk,bhke->bnhe", w2, mixed)  # W2 · σ(·): (B, N, H, d/H)
        return y.reshape(b, n, d)


class MLPMixing(nn.Module):
    """MLP-Mixer's token mixing (Tolstikhin et al., 2021): a fixed MLP across ``length`` tokens."""

    def __init__(self, dim: int, hidden: int, length: int):
        super().__init__()
        self.length = length
        self.net = mlp([length, hidden, length], nn.GELU, last_activation=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        _check_mask(mask, x, "MLPMixing")
        if x.shape[1] != self.length:
            raise ValueError(f"MLPMixing: built for {self.length} tokens, got {x.shape[1]}; an MLP-Mixer cannot "
                             "change its sequence length.")
        if mask is not None:
            x = x * mask.unsqueeze(-1).to(x.dtype)
        return self.net(x.transpose(1, 2)).transpose(1, 2)  # mix along tokens: (B, d, N) -> (B, N, d)


class AttentionMixing(nn.Module):
    """Self-attention token mixing (with sinusoidal positions) for comparison."""

    def __init__(self, dim: int, heads: int = 1):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        _check_mask(mask, x, "AttentionMixing")
        xp = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device)
        return self.attn(xp, xp, x, key_padding_mask=None if mask is None else ~mask, need_weights=False)[0]


class HyperMixerBlock(nn.Module):
    """Pre-norm block: ``x + mixing(LN(x))``, then ``x + MLP(LN(x))``; ``(B, N, dim) -> (B, N, dim)``."""

    def __init__(self, dim: int, mixing: nn.Module, mlp_hidden: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mixing = mixing
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_hidden), nn.GELU(), nn.Linear(mlp_hidden, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.dropout(self.mixing(self.norm1(x), mask))
        return x + self.dropout(self.mlp(self.norm2(x)))


MIXERS = ("hyper", "mlp", "attention")


class SequenceClassifier(nn.Module):
    """Tokens -> classes with a stack of blocks and masked mean pooling.

    Args:
        in_features: size of each input token (patch pixels), or ``vocab`` for integer tokens.
        num_classes: outputs.
        mixer: ``"hyper"`` (HyperMixer), ``"mlp"`` (MLP-Mixer) or ``"attention"`` (Transformer).
        dim, depth, hidden, mlp_hidden, heads: sizes; ``hidden`` is d' (HyperMixer) or the token MLP
            width (MLP-Mixer).
        length: tokens per sequence (needed by the MLP-Mixer only).
        vocab: if given, inputs are int token ids (B, N) embedded in ``dim``; else features (B, N, in_features).
    """

    def __init__(self, in_features: int, num_classes: int, mixer: str = "hyper", dim: int = 64, depth: int = 2,
                 hidden: int = 64, mlp_hidden: int = 128, heads: int = 1, length: int | None = None,
                 vocab: int | None = None, tied: bool = False, dropout: float = 0.0):
        super().__init__()
        if mixer not in MIXERS:
            raise ValueError(f"SequenceClassifier: mixer must be one of {MIXERS}, got {mixer!r}.")
        if mixer == "mlp" and length is None:
            raise ValueError("SequenceClassifier: mixer='mlp' needs length (its token MLP has a fixed size).")
        self.embed = nn.Embedding(vocab, dim, padding_idx=0) if vocab else nn.Linear(in_features, dim)

        def mixing():
            if mixer == "hyper":
                return HyperMixing(dim, hidden, heads, tied)
            if mixer == "mlp":
                assert length is not None  # checked above
                return MLPMixing(dim, hidden, length)
            return AttentionMixing(dim, heads)

        self.blocks = nn.ModuleList(HyperMixerBlock(dim, mixing(), mlp_hidden, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, N, in_features) or ids (B, N); mask (B, N) bool -> logits (B, num_classes)."""
        x = self.embed(tokens)  # (B, N, dim)
        for block in self.blocks:
            x = block(x, mask)
        x = self.norm(x)
        if mask is None:
            return self.head(x.mean(1))
        keep = mask.unsqueeze(-1).to(x.dtype)
        return self.head((x * keep).sum(1) / keep.sum(1).clamp_min(1))
