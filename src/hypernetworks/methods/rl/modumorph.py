"""Morphology-conditioned controllers: ModuMorph (Xiong, Beck, Whiteson, "Universal Morphology
Control via Contextual Modulation", ICML 2023) vs a shared controller with concatenated context.

Both read one token per limb: its observation o_i and its morphology context c_i (length, mass,
position along the chain, number of links), mix the tokens with a shared transformer encoder and
decode one torque per limb. ModuMorph: a hypernetwork maps c_i to the weights of limb i's input
embedding and of its decoder (per-limb weights through the per-example binding). Baseline
(MetaMorph-style): fixed embedding of [o_i, c_i] and decoder of [h_i, c_i].
The paper's context-modulated positional embedding and PPO training are not reproduced here;
controllers are trained by behaviour cloning of LQR experts (``morph.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from ... import encoders, heads
from ...hypernet import HyperNetwork
from .._pretrained import Pretrained
from .config import ModuMorphConfig


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


class ModuMorph(Pretrained[ModuMorphConfig]):
    """Per-limb input embedding and decoder generated from the limb's context.

    Args:
        config: a ``ModuMorphConfig``; keyword ``options`` replace its fields.

    Forward: ``obs (B, L, obs_dim), context (B, L, ctx_dim), pad (B, L) bool -> torques (B, L)``
    (zero on padded limbs).

    Example:
        >>> model = ModuMorph(obs_dim=2, ctx_dim=4)
        >>> pad = torch.tensor([[False, False, True]])  # a 2-link chain padded to 3 limbs
        >>> model(torch.randn(1, 3, 2), torch.randn(1, 3, 4), pad)[0, 2].item()
        0.0
    """

    CONFIG, TAKES_TARGET = ModuMorphConfig, False

    def __init__(self, config: ModuMorphConfig | None = None, **options):
        super().__init__()
        self.config = c = ModuMorphConfig.build(config, **options)
        self.obs_dim, self.ctx_dim, self.d_model = c.obs_dim, c.ctx_dim, c.d_model
        self.embed = HyperNetwork(nn.Linear(c.obs_dim, c.d_model),
                                  encoder=encoders.MLP(c.ctx_dim, c.embed_dim, c.hidden),
                                  head=heads.Full(hidden=()), init="hyperfan_in", seed=c.seed)
        self.body = _Body(c.d_model, c.layers, c.heads)
        self.decode = HyperNetwork(nn.Linear(c.d_model, 1), encoder=encoders.MLP(c.ctx_dim, c.embed_dim, c.hidden),
                                   head=heads.Full(hidden=()), init="hyperfan_in", seed=c.seed + 1)

    def forward(self, obs: torch.Tensor, context: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        _check("ModuMorph", obs, context, pad, self.obs_dim, self.ctx_dim)
        b, length = pad.shape
        ctx = context.flatten(0, 1)  # (B·L, C): one weight set per limb
        tokens = self.embed(obs.flatten(0, 1), cond=ctx).view(b, length, self.d_model)  # (B, L, D)
        h = self.body(tokens, pad)  # (B, L, D)
        out = self.decode(h.flatten(0, 1), cond=ctx).view(b, length)  # (B, L)
        return out.masked_fill(pad, 0.0)


class ConcatContext(nn.Module):
    """The baseline: MLP embedding of [o_i, c_i], the same transformer, MLP decoder of [h_i, c_i].

    Args: as ``ModuMorph``; ``hidden`` is the hidden width of the embedding and decoder MLPs (pick it
    so the parameter count matches the ModuMorph controller).
    """

    def __init__(self, obs_dim: int = 2, ctx_dim: int = 4, d_model: int = 32, layers: int = 1, heads_: int = 2,
                 hidden: int = 32):
        super().__init__()
        self.obs_dim, self.ctx_dim = obs_dim, ctx_dim
        self.embed = encoders.mlp([obs_dim + ctx_dim, hidden, d_model], last_activation=False)
        self.body = _Body(d_model, layers, heads_)
        self.decode = encoders.mlp([d_model + ctx_dim, hidden, 1], last_activation=False)

    def forward(self, obs: torch.Tensor, context: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        _check("ConcatContext", obs, context, pad, self.obs_dim, self.ctx_dim)
        h = self.body(self.embed(torch.cat([obs, context], -1)), pad)  # (B, L, D)
        return self.decode(torch.cat([h, context], -1))[..., 0].masked_fill(pad, 0.0)  # (B, L)
