"""Morphology-conditioned controllers: ModuMorph (Xiong, Beck, Whiteson, "Universal Morphology
Control via Contextual Modulation", ICML 2023) vs a shared controller with concatenated context.

Both read one token per limb: its observation o_i and its morphology context c_i (length, mass,
position along the chain, number of links), mix the tokens with a transformer encoder and decode
one torque per limb. ModuMorph: a context encoder (per-limb MLP, then self-attention over the limbs'
contexts) gives each limb a morphology embedding e_i; hypernetworks map e_i to the weights of limb i's
input embedding and of its decoder (per-limb weights through the per-example binding); e_i also
gives the limb's positional embedding, and the attention weights between limbs are computed from the
e's alone (the paper's morphology-dependent "fixed" attention), so how limbs interact is set by the
morphology and the state only flows through the values. Baseline (MetaMorph-style): fixed embedding
of [o_i, c_i], a standard transformer layer and decoder of [h_i, c_i]. Both are trained by DAgger
against LQR experts (``dagger.fit_dagger``) instead of the paper's PPO.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from ... import encoders, heads
from ...hypernet import HyperNetwork
from .._fit import Bar
from .._pretrained import Pretrained
from .config import ModuMorphConfig
from .dagger import DAggerConfig, fit_dagger
from .morph import Chain


def _check(api: str, obs: torch.Tensor, ctx: torch.Tensor, pad: torch.Tensor, obs_dim: int, ctx_dim: int) -> None:
    ok = (obs.dim() == 3 and obs.shape[-1] == obs_dim and ctx.shape == (*obs.shape[:2], ctx_dim)
          and pad.shape == obs.shape[:2] and pad.dtype == torch.bool)
    if not ok:
        raise ValueError(f"{api}: expected obs (B, L, {obs_dim}), context (B, L, {ctx_dim}) and a bool padding "
                         f"mask (B, L), got {tuple(obs.shape)}, {tuple(ctx.shape)}, {tuple(pad.shape)} {pad.dtype}.")


class _Body(nn.Module):
    """The shared part: a transformer encoder over limb tokens (B, L, D), padded limbs masked."""

    def __init__(self, d_model: int, layers: int, heads_: int):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model, heads_, 2 * d_model, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, tokens: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        return self.encoder(tokens, src_key_padding_mask=pad)


class _FixedAttentionLayer(nn.Module):
    """A post-norm transformer encoder layer whose attention weights come from the morphology embeddings
    ``e (B, L, E)`` only (ModuMorph's morphology-dependent attention); values come from the tokens
    ``h (B, L, D)``; padded limbs are never attended to."""

    def __init__(self, d_model: int, heads_: int, embed_dim: int):
        super().__init__()
        self.heads = heads_
        self.qk = nn.Linear(embed_dim, 2 * d_model)
        self.value, self.out = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.ff = encoders.mlp([d_model, 2 * d_model, d_model], last_activation=False)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)

    def weights(self, e: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """Attention weights ``(B, H, L, L)`` (row i: how much limb i reads from each limb j)."""
        b, length, _ = e.shape
        q, k = self.qk(e).view(b, length, 2, self.heads, -1).unbind(2)  # (B, L, H, D/H) each
        scores = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(q.shape[-1])
        return scores.masked_fill(pad[:, None, None, :], float("-inf")).softmax(-1)

    def forward(self, h: torch.Tensor, e: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        b, length, d = h.shape
        v = self.value(h).view(b, length, self.heads, -1)
        mixed = torch.einsum("bhij,bjhd->bihd", self.weights(e, pad), v).reshape(b, length, d)
        h = self.norm1(h + self.out(mixed))
        return self.norm2(h + self.ff(h))


def _limb_hypernet(target: nn.Module, embed_dim: int, seed: int) -> HyperNetwork:
    """A hypernetwork generating ``target``'s tensors per limb, linear in the limb's morphology embedding."""
    return HyperNetwork(target, encoder=encoders.MLP(embed_dim, embed_dim, hidden=()), head=heads.Full(hidden=()),
                        init="hyperfan_in", seed=seed)


class ModuMorph(Pretrained[ModuMorphConfig]):
    """Per-limb weights generated from each limb's morphology embedding, and attention over limbs
    conditioned on the morphology (Xiong et al., ICML 2023).

    Args:
        config: a ``ModuMorphConfig``; keyword ``options`` replace its fields.

    Forward: ``obs (B, L, obs_dim), context (B, L, ctx_dim), pad (B, L) bool -> torques / action_scale
    (B, L)`` (zero on padded limbs).

    Example:
        >>> model = ModuMorph(obs_dim=2, ctx_dim=4)
        >>> pad = torch.tensor([[False, False, True]])  # a 2-link chain padded to 3 limbs
        >>> model(torch.randn(1, 3, 2), torch.randn(1, 3, 4), pad)[0, 2].item()
        0.0
        >>> model.generate(torch.randn(1, 3, 4), pad)["attention"][0].shape  # (B, heads, L, L) per layer
        torch.Size([1, 2, 3, 3])
    """

    CONFIG, TAKES_TARGET = ModuMorphConfig, False

    def __init__(self, config: ModuMorphConfig | None = None, **options):
        super().__init__()
        self.config = c = ModuMorphConfig.build(config, **options)
        self.obs_dim, self.ctx_dim, self.d_model = c.obs_dim, c.ctx_dim, c.d_model
        self.limb = encoders.mlp([c.ctx_dim, *c.hidden, c.embed_dim], last_activation=False)
        self.morph = _Body(c.embed_dim, c.morph_layers, c.heads) if c.morph_layers else None
        self.embed = _limb_hypernet(nn.Linear(c.obs_dim, c.d_model), c.embed_dim, c.seed)
        self.position = nn.Linear(c.embed_dim, c.d_model)  # context-modulated positional embedding
        fixed = range(c.layers) if c.fixed_attention else range(0)
        self.fixed = nn.ModuleList(_FixedAttentionLayer(c.d_model, c.heads, c.embed_dim) for _ in fixed)
        self.body = None if c.fixed_attention else _Body(c.d_model, c.layers, c.heads)  # the ablation
        self.decode = _limb_hypernet(nn.Linear(c.d_model, 1), c.embed_dim, c.seed + 1)
        self.register_buffer("action_scale", torch.ones(()))  # torques = output * action_scale (set by fit)

    def morphology(self, context: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """Morphology embeddings ``(B, L, E)`` of the limbs' contexts ``(B, L, ctx_dim)``."""
        e = self.limb(context)
        return e if self.morph is None else self.morph(e, pad)

    def generate(self, context: torch.Tensor, pad: torch.Tensor) -> dict:
        """What the morphology sets: per-limb tensors ``{"embed": {name: (B, L, ...)}, "decode": ...}`` and
        ``"attention"``, a list with one ``(B, heads, L, L)`` per layer (empty without fixed attention)."""
        _check("ModuMorph.generate", context.new_zeros(*pad.shape, self.obs_dim), context, pad, self.obs_dim,
               self.ctx_dim)
        e = self.morphology(context, pad)
        flat = e.flatten(0, 1)
        per_limb = {k: {n: t.view(*pad.shape, *t.shape[1:]) for n, t in hnet.generate(flat).items()}
                    for k, hnet in (("embed", self.embed), ("decode", self.decode))}
        return per_limb | {"attention": [cast(_FixedAttentionLayer, layer).weights(e, pad) for layer in self.fixed]}

    def forward(self, obs: torch.Tensor, context: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        _check("ModuMorph", obs, context, pad, self.obs_dim, self.ctx_dim)
        b, length = pad.shape
        e = self.morphology(context, pad)  # (B, L, E)
        flat = e.flatten(0, 1)  # (B·L, E): one weight set per limb
        h = self.embed(obs.flatten(0, 1), cond=flat).view(b, length, self.d_model) + self.position(e)  # (B, L, D)
        for layer in self.fixed:
            h = layer(h, e, pad)
        if self.body is not None:
            h = self.body(h, pad)
        out = self.decode(h.flatten(0, 1), cond=flat).view(b, length)  # (B, L)
        return out.masked_fill(pad, 0.0)

    def fit(self, chains: Sequence[Chain], config: DAggerConfig | None = None, *,
            gains: Sequence[torch.Tensor] | None = None, progress: bool | Bar | None = None,
            **options) -> list[float]:
        """Train by DAgger against each chain's LQR expert (``dagger.fit_dagger``); returns the loss per step.

        ``config`` / ``options``: a ``DAggerConfig`` and fields replacing its values; ``gains``: the chains'
        LQR gains (computed when None); ``progress``: ``True`` for a progress bar, or a bar to update.

        Example:
            >>> from hypernetworks.methods.rl import random_chain
            >>> chains = [random_chain(torch.Generator().manual_seed(i)) for i in range(2)]
            >>> model = ModuMorph()
            >>> losses = model.fit(chains, rounds=1, initial_states=8, horizon=10, steps=3, batch_size=4)
            >>> len(losses)  # (rounds + 1) * steps
            6
        """
        return fit_dagger(self, chains, config, gains=gains, progress=progress, **options)


class ConcatContext(nn.Module):
    """The baseline: MLP embedding of [o_i, c_i], the same transformer, MLP decoder of [h_i, c_i].

    Args: as ``ModuMorphConfig``; ``hidden`` is the hidden width of the embedding and decoder MLPs (pick it
    so the parameter count matches the ModuMorph controller).
    """

    def __init__(self, obs_dim: int = 2, ctx_dim: int = 4, d_model: int = 32, layers: int = 1, heads_: int = 2,
                 hidden: int = 32):
        super().__init__()
        self.obs_dim, self.ctx_dim = obs_dim, ctx_dim
        self.embed = encoders.mlp([obs_dim + ctx_dim, hidden, d_model], last_activation=False)
        self.body = _Body(d_model, layers, heads_)
        self.decode = encoders.mlp([d_model + ctx_dim, hidden, 1], last_activation=False)
        self.register_buffer("action_scale", torch.ones(()))  # torques = output * action_scale (set by fit)

    def forward(self, obs: torch.Tensor, context: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        _check("ConcatContext", obs, context, pad, self.obs_dim, self.ctx_dim)
        h = self.body(self.embed(torch.cat([obs, context], -1)), pad)  # (B, L, D)
        return self.decode(torch.cat([h, context], -1))[..., 0].masked_fill(pad, 0.0)  # (B, L)

    def fit(self, chains: Sequence[Chain], config: DAggerConfig | None = None, *,
            gains: Sequence[torch.Tensor] | None = None, progress: bool | Bar | None = None,
            **options) -> list[float]:
        """Train by DAgger, exactly as ``ModuMorph.fit``; returns the loss per step."""
        return fit_dagger(self, chains, config, gains=gains, progress=progress, **options)
