"""HyperSteer: a hypernetwork that maps a steering prompt to a residual-stream steering vector.

Sun et al., "HyperSteer: Activation Steering at Scale with Hypernetworks", 2025
(https://arxiv.org/abs/2506.03292). The frozen model gets a ``Steer`` point after one block: a
vector ``v`` (d,) added to the residual stream at every position. ``HyperSteer`` generates ``v``
from the sentence embedding of a prompt (``residual`` mode, zero-delta init, so the model starts
unsteered); ``mean_difference`` is the classic difference-of-means baseline (Turner et al., 2023,
activation addition; Rimsky et al., 2024, contrastive activation addition). The paper's
generator can also cross-attend to the base model's states; this one reads the prompt embedding only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from ... import encoders, heads
from ...hypernet import HyperNetwork
from ...spec import ParamSpec
from .._fit import Bar, adam_steps
from .._pretrained import Pretrained
from .config import SteerConfig

__all__ = ["HyperSteer", "Steer", "Steered", "add_steering", "mean_difference"]


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


class HyperSteer(Pretrained[SteerConfig]):
    """A hypernetwork: prompt embedding (F,) -> steering vector (d,) after ``config.module`` of a frozen model.

    Args:
        model: the model; all its parameters are frozen. ``config.module`` gets a steering point
            (``add_steering``, in place) unless it has one already, so ``from_pretrained`` works on a fresh model.
        config: which block is steered, and the sizes of the generator; keyword ``options`` replace its fields.
        calibration: typical prompt embeddings (n, F) for the init (default: random unit vectors).

    Example:
        >>> lm = nn.Sequential(nn.Embedding(20, 16), nn.Linear(16, 16), nn.Linear(16, 20))  # a toy language model
        >>> steerer = HyperSteer(lm, module="1", cond_features=8, width=16)
        >>> tokens, prompt_emb = torch.randint(0, 20, (3, 5)), torch.randn(3, 8)
        >>> steerer(tokens, cond=prompt_emb).shape  # one steering vector per sequence
        torch.Size([3, 5, 20])
        >>> steerer.generate(prompt_emb)["1.steer.shift"].shape
        torch.Size([3, 16])
        >>> def next_token(logits, tokens):  # the steering loss: text of the prompted style, token by token
        ...     return nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:])
        >>> losses = steerer.fit([(tokens, prompt_emb, tokens)], next_token, steps=2)  # (inputs, prompts, targets)
    """

    CONFIG = SteerConfig
    NOT_SAVED = ("hnet.target.",)  # the frozen model: from_pretrained takes it from its target

    def __init__(self, model: nn.Module, config: SteerConfig | None = None, *,
                 calibration: torch.Tensor | None = None, **options: Any):
        super().__init__()
        self.config = config = SteerConfig.build(config, **options)
        if not config.module:
            raise ValueError("HyperSteer: config.module must name the block whose output is steered, e.g. "
                             "'blocks.1'.")
        try:
            steered = isinstance(model.get_submodule(config.module), Steered)
        except AttributeError:
            steered = False  # add_steering names the missing module
        self.steer_name = f"{config.module}.steer.shift" if steered else add_steering(model, config.module,
                                                                                        config.width)
        spec = ParamSpec.from_module(model, include=self.steer_name)
        if spec.names != [self.steer_name] or spec[self.steer_name].shape != (config.width,):
            got = [(e.name, e.shape) for e in spec]
            raise ValueError(f"HyperSteer: '{self.steer_name}' should be one steering vector of shape "
                             f"({config.width},), got {got}; create it with add_steering.")
        model.requires_grad_(False)
        encoder = encoders.Projection(config.cond_features, config.hidden[0])
        self.hnet = HyperNetwork(model, spec, encoder=encoder, head=heads.Full(hidden=config.hidden[1:]),
                                 mode="residual", init="zero_delta", calibration=calibration, seed=config.seed)

    def forward(self, *inputs: Any, cond: torch.Tensor, **kw_inputs: Any) -> Any:
        """The frozen model on ``inputs`` steered by the vector(s) of prompt embeddings ``cond`` ((F,) or (B, F))."""
        return self.hnet(*inputs, cond=cond, **kw_inputs)

    def generate(self, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{steering point: vector (d,) or (B, d)}`` for prompt embeddings ``cond`` (F,) or (B, F)."""
        return self.hnet.generate(cond)

    def fit(self, batches: Iterable[tuple[Any, torch.Tensor, Any]], loss_fn: Callable[[Any, Any], torch.Tensor], *,
            epochs: int | None = None, steps: int | None = None, lr: float = 1e-3,
            progress: bool | Bar | None = None) -> list[float]:
        """Train the generator on ``(inputs, prompt embeddings (B, F), targets)`` batches, minimising
        ``loss_fn(model output, targets)`` with Adam at rate ``lr`` (HyperSteer's steering loss: e.g. the
        next-token loss of text written in the prompted style); returns the loss per step. Exactly one of
        ``epochs`` / ``steps``. ``inputs`` is one tensor or a tuple of the model's positional inputs."""
        def step_loss(batch: tuple[Any, torch.Tensor, Any]) -> torch.Tensor:
            inputs, cond, targets = batch
            return loss_fn(self(*(inputs if isinstance(inputs, tuple) else (inputs,)), cond=cond), targets)

        params = [p for p in self.parameters() if p.requires_grad]
        return adam_steps(params, step_loss, batches, epochs=epochs, steps=steps, lr=lr, progress=progress,
                          desc="HyperSteer")


def mean_difference(acts: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Difference-of-means steering vector: mean of ``acts`` (N, ..., d) minus mean of ``reference`` (M, ..., d)."""
    if acts.shape[-1] != reference.shape[-1]:
        raise ValueError(f"mean_difference: widths differ: {acts.shape[-1]} vs {reference.shape[-1]}.")
    return acts.reshape(-1, acts.shape[-1]).mean(0) - reference.reshape(-1, reference.shape[-1]).mean(0)  # (d,)
