"""Critics and actors: the concatenating MLP and the hypernetwork of Keynan, Sarafian, Kraus,
"Recomposing the Reinforcement Learning Building Blocks with Hypernetworks", ICML 2021
(arXiv:2106.06842; reference code: github.com/keynans/HypeRL).

The hyper critic splits the two inputs of Q(s, a): a *primary* network maps the state to the
weights of a small *dynamic* network, which is the only part that sees the action,
Q(s, a) = f_{θ(s)}(a). ∂Q/∂a then flows through the dynamic network alone, and for each state it is
the gradient of a function fitted to that state's actions. The same split gives a context-conditioned
actor: context (task, or the state itself) -> weights of a policy network over the state.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from ... import encoders, heads
from ...functional import functional_call
from ...hypernet import HyperNetwork
from .._pretrained import Pretrained
from .config import ActorConfig, CriticConfig, NetConfig


def _check(api: str, name: str, x: torch.Tensor, dim: int) -> None:
    if x.dim() != 2 or x.shape[-1] != dim:
        raise ValueError(f"{api}: expected {name} of shape (B, {dim}), got {tuple(x.shape)}.")


def _check_kind(api: str, config: NetConfig, kind: str) -> None:
    if config.kind != kind:
        builder = "build_critic" if "Critic" in api else "build_actor"
        raise ValueError(f"{api}: config.kind is {config.kind!r}; pass kind={kind!r} or use {builder}(config).")


class MLPCritic(Pretrained[CriticConfig]):
    """Q(s, a) = MLP([s, a]): the concatenating baseline. ``(B, S), (B, A) -> (B, 1)``."""

    CONFIG, TAKES_TARGET = CriticConfig, False

    def __init__(self, config: CriticConfig | None = None, **options: Any):
        super().__init__()
        config = CriticConfig.build(config, **(options if config is not None else {"kind": "mlp", **options}))
        _check_kind("MLPCritic", config, "mlp")
        self.config, self.state_dim, self.action_dim = config, config.state_dim, config.action_dim
        self.net = encoders.mlp([config.state_dim + config.action_dim, *config.hidden, 1], last_activation=False)

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        _check("MLPCritic", "state", state, self.state_dim)
        _check("MLPCritic", "action", action, self.action_dim)
        return self.net(torch.cat([state, action], dim=-1))


class _Generated(nn.Module):
    """Primary network ``cond (B, C) -> z`` and the weights (with optional per-unit gains) of a
    dynamic MLP ``x (B, I) -> (B, O)``, bound one weight set per example."""

    def __init__(self, api: str, names: tuple[str, str], cond_dim: int, in_dim: int, out_dim: int,
                 config: NetConfig):
        super().__init__()
        self.api, self.names, self.cond_dim, self.in_dim = api, names, cond_dim, in_dim
        dynamic = encoders.mlp([in_dim, *config.dynamic_hidden, out_dim], last_activation=False)
        self.hnet = HyperNetwork(dynamic, encoder=encoders.MLP(cond_dim, config.embed_dim, config.primary_hidden),
                                 head=heads.Full(hidden=config.head_hidden), init="hyperfan_in", seed=config.seed)
        self.layers = [name for name, m in dynamic.named_modules() if isinstance(m, nn.Linear)]
        self.units = [cast(nn.Linear, dynamic.get_submodule(n)).out_features for n in self.layers]
        self.gain = nn.Linear(config.embed_dim, sum(self.units)) if config.scales else None
        if self.gain is not None:  # g = 1 + gain(z) starts at exactly 1
            nn.init.zeros_(self.gain.weight)
            nn.init.zeros_(self.gain.bias)

    def forward(self, cond: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        _check(self.api, self.names[0], cond, self.cond_dim)
        _check(self.api, self.names[1], x, self.in_dim)
        if len(cond) != len(x):
            raise ValueError(f"{self.api}: {self.names[0]} and {self.names[1]} need the same batch, got "
                             f"{len(cond)} and {len(x)}.")
        z = self.hnet.encoder(cond)  # (B, E)
        params = self.hnet.decode(z)  # {name: (B, *shape)}
        if self.gain is not None:
            gains = (1 + self.gain(z)).split(self.units, dim=-1)  # per layer (B, O_l)
            for name, g in zip(self.layers, gains, strict=True):
                params[f"{name}.weight"] = params[f"{name}.weight"] * g.unsqueeze(-1)  # (B, O_l, I_l)
        # The generated weights are rescaled per unit before the call, which HyperNetwork.forward
        # cannot do, so the binding is called directly.
        return functional_call(self.hnet.target, params, (x,), spec=self.hnet.spec, per_example=True)


class HyperCritic(Pretrained[CriticConfig]):
    """Q(s, a) = f_{θ(s)}(a) (Keynan et al.'s SA-Hyper): state -> primary network -> weights and
    per-unit gains of a dynamic MLP over the action. ``(B, S), (B, A) -> (B, 1)``.

    Example:
        >>> from hypernetworks import methods
        >>> q = HyperCritic(state_dim=3, action_dim=1, dynamic_hidden=(16, 16))
        >>> q(torch.randn(5, 3), torch.rand(5, 1)).shape
        torch.Size([5, 1])
    """

    CONFIG, TAKES_TARGET = CriticConfig, False

    def __init__(self, config: CriticConfig | None = None, **options: Any):
        super().__init__()
        config = CriticConfig.build(config, **options)
        _check_kind("HyperCritic", config, "hyper")
        self.config, self.state_dim, self.action_dim = config, config.state_dim, config.action_dim
        self.body = _Generated("HyperCritic", ("state", "action"), config.state_dim, config.action_dim, 1, config)

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.body(state, action)


class MLPActor(Pretrained[ActorConfig]):
    """``state (B, S) -> (B, O)`` raw outputs (TD3 squashes them with tanh, SAC splits mean / log σ)."""

    CONFIG, TAKES_TARGET = ActorConfig, False

    def __init__(self, config: ActorConfig | None = None, **options: Any):
        super().__init__()
        config = ActorConfig.build(config, **(options if config is not None else {"kind": "mlp", **options}))
        _check_kind("MLPActor", config, "mlp")
        self.config, self.state_dim = config, config.state_dim
        self.net = encoders.mlp([config.state_dim, *config.hidden, config.out_dim], last_activation=False)

    def forward(self, state: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        _check("MLPActor", "state", state, self.state_dim)
        if context is not None:
            raise ValueError("MLPActor: takes no context; concatenate it to the state, or use HyperActor.")
        return self.net(state)


class HyperActor(Pretrained[ActorConfig]):
    """π(s; c) = f_{θ(c)}(s): a context (a task descriptor in meta-RL, ``config.context_dim``; the state
    itself when that is None) -> primary network -> weights of a dynamic policy MLP over the state.
    ``(B, S), (B, C) -> (B, O)`` raw outputs.

    Example:
        >>> pi = HyperActor(state_dim=4, out_dim=2, context_dim=3)  # one policy per task context
        >>> pi(torch.randn(5, 4), torch.randn(5, 3)).shape
        torch.Size([5, 2])
    """

    CONFIG, TAKES_TARGET = ActorConfig, False

    def __init__(self, config: ActorConfig | None = None, **options: Any):
        super().__init__()
        config = ActorConfig.build(config, **options)
        _check_kind("HyperActor", config, "hyper")
        self.config, self.state_dim, self.uses_state = config, config.state_dim, config.context_dim is None
        cond_dim = config.context_dim or config.state_dim
        names = ("state", "state") if self.uses_state else ("context", "state")
        self.body = _Generated("HyperActor", names, cond_dim, config.state_dim, config.out_dim, config)

    def forward(self, state: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if (context is None) != self.uses_state:
            raise ValueError("HyperActor: pass a context exactly when built with context_dim.")
        return self.body(state if context is None else context, state)


def build_critic(config: CriticConfig) -> MLPCritic | HyperCritic:
    """A critic Q(s, a) (Keynan et al., ICML 2021): ``HyperCritic``, or the ``MLPCritic`` baseline with ``kind="mlp"``.

    Example:
        >>> from hypernetworks import methods
        >>> q = methods.create("hyper_critic", state_dim=3, action_dim=1)  # kind="mlp": the baseline
        >>> type(q).__name__, q(torch.randn(5, 3), torch.rand(5, 1)).shape
        ('HyperCritic', torch.Size([5, 1]))
    """
    return HyperCritic(config) if config.kind == "hyper" else MLPCritic(config)


def build_actor(config: ActorConfig) -> MLPActor | HyperActor:
    """An actor (Keynan et al., ICML 2021): ``HyperActor`` (context or state -> policy weights), or ``MLPActor``
    with ``kind="mlp"``.

    Example:
        >>> from hypernetworks import methods
        >>> pi = methods.create("hyper_actor", state_dim=4, out_dim=2, context_dim=3)
        >>> pi(torch.randn(5, 4), torch.randn(5, 3)).shape
        torch.Size([5, 2])
    """
    return HyperActor(config) if config.kind == "hyper" else MLPActor(config)
