"""HyperSteer: a hypernetwork that maps a steering prompt to a residual-stream steering vector.

Sun et al., "HyperSteer: Activation Steering at Scale with Hypernetworks", 2025
(https://arxiv.org/abs/2506.03292). The frozen model gets a ``Steer`` point after one block: a
vector ``v`` (d,) added to the residual stream at every position. ``hypersteer`` generates ``v``
from the sentence embedding of a prompt (``residual`` mode, zero-delta init, so the model starts
unsteered); ``mean_difference`` is the classic difference-of-means baseline (Turner et al., 2023,
activation addition; Rimsky et al., 2024, contrastive activation addition). The paper's
generator can also cross-attend to the base model's states; this one reads the prompt embedding only.
"""

from __future__ import annotations

import torch
from torch import nn

from ... import encoders, heads
from ...hypernet import HyperNetwork
from ...spec import ParamSpec
from .config import SteerConfig

__all__ = ["Steer", "Steered", "add_steering", "hypersteer", "mean_difference"]


class Steer(nn.Module):
    """Adds a vector to the residual stream: ``h (..., d) -> h + shift``; ``shift`` starts at 0."""

    def __init__(self, width: int):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(width))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.shift


class Steered(nn.Module):
    """A block followed by a ``Steer`` point; a tuple output has its first element steered."""

    def __init__(self, block: nn.Module, width: int):
        super().__init__()
        self.block, self.steer = block, Steer(width)

    def forward(self, *args, **kwargs):
        out = self.block(*args, **kwargs)
        if isinstance(out, tuple):
            return (self.steer(out[0]), *out[1:])
        return self.steer(out)


def add_steering(model: nn.Module, module_name: str, width: int) -> str:
    """Wrap ``model.<module_name>`` in ``Steered`` (in place); return the steering tensor's name.

    Raises:
        ValueError: no such submodule.
    """
    parent_name, _, leaf = module_name.rpartition(".")
    try:
        parent = model.get_submodule(parent_name)
        block = parent.get_submodule(leaf)
    except AttributeError as err:
        raise ValueError(f"add_steering: {type(model).__name__} has no submodule '{module_name}'.") from err
    parent.register_module(leaf, Steered(block, width))
    return f"{module_name}.steer.shift"


def hypersteer(model: nn.Module, steer_name: str, config: SteerConfig, *,
               calibration: torch.Tensor | None = None) -> HyperNetwork:
    """A hypernetwork: prompt embedding (F,) -> steering vector (d,) at ``steer_name`` of a frozen model.

    Args:
        model: the model, with a steering point (``add_steering``); all its parameters are frozen.
        steer_name: the ``Steer`` tensor to generate (``add_steering``'s return value).
        config: sizes of the generator.
        calibration: typical prompt embeddings (n, F) for the init (default: random unit vectors).

    Example:
        >>> name = add_steering(lm, "blocks.1", width=96)
        >>> steerer = hypersteer(lm, name, SteerConfig(cond_features=384, width=96))
        >>> logits = steerer(tokens, cond=prompt_emb)  # prompt_emb (B, 384): one vector per sequence
    """
    spec = ParamSpec.from_module(model, include=steer_name)
    if spec.names != [steer_name] or spec[steer_name].shape != (config.width,):
        raise ValueError(f"hypersteer: '{steer_name}' should be one steering vector of shape ({config.width},), "
                         f"got {[(e.name, e.shape) for e in spec]}; create it with add_steering.")
    model.requires_grad_(False)
    encoder = encoders.Projection(config.cond_features, config.hidden[0])
    return HyperNetwork(model, spec, encoder=encoder, head=heads.Full(hidden=config.hidden[1:]), mode="residual",
                        init="zero_delta", calibration=calibration, seed=config.seed)


def mean_difference(acts: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Difference-of-means steering vector: mean of ``acts`` (N, ..., d) minus mean of ``reference`` (M, ..., d)."""
    if acts.shape[-1] != reference.shape[-1]:
        raise ValueError(f"mean_difference: widths differ: {acts.shape[-1]} vs {reference.shape[-1]}.")
    return acts.reshape(-1, acts.shape[-1]).mean(0) - reference.reshape(-1, reference.shape[-1]).mean(0)  # (d,)
