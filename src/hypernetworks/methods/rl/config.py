"""Configurations of the RL networks and agents (hyper critic / actor, TD3, SAC, HyperPPO, ModuMorph)."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product
from typing import TypeVar

from .._config import DictConfig

KINDS = ("mlp", "hyper")


@dataclass
class NetConfig(DictConfig):
    """Sizes of the critic / actor networks; ``kind`` picks the concatenating MLP or the hypernetwork."""

    kind: str = "hyper"  # "mlp": f([s, a]); "hyper": a primary network maps s to the weights of f_s(a)
    hidden: tuple[int, ...] = (256, 256)  # hidden widths of the MLP variant
    primary_hidden: tuple[int, ...] = (256,)  # hyper: hidden widths of the primary network s -> z
    embed_dim: int = 64  # hyper: size E of the primary network's embedding z
    head_hidden: tuple[int, ...] = ()  # hyper: hidden widths of the head z -> dynamic weights (none: linear in z)
    dynamic_hidden: tuple[int, ...] = (32, 32)  # hyper: hidden widths of the dynamic network
    scales: bool = True  # hyper: also generate a per-unit gain g (starting at 1) for each dynamic layer
    seed: int = 0  # seed of the hypernetwork's initialisation calibration draw

    def __post_init__(self):
        self.hidden, self.primary_hidden = tuple(self.hidden), tuple(self.primary_hidden)
        self.head_hidden, self.dynamic_hidden = tuple(self.head_hidden), tuple(self.dynamic_hidden)
        if self.kind not in KINDS:
            raise ValueError(f"NetConfig: kind must be one of {KINDS}, got {self.kind!r}.")
        widths = (*self.hidden, *self.primary_hidden, *self.head_hidden, *self.dynamic_hidden, self.embed_dim)
        if any(w < 1 for w in widths):
            raise ValueError(f"NetConfig: all widths must be >= 1, got {widths}.")


@dataclass
class CriticConfig(NetConfig):
    """A critic Q(s, a): ``NetConfig``'s sizes and the sizes of its two inputs."""

    state_dim: int = 3  # S
    action_dim: int = 1  # A

    def __post_init__(self):
        super().__post_init__()
        if min(self.state_dim, self.action_dim) < 1:
            raise ValueError(f"CriticConfig: state_dim and action_dim must be >= 1, got {self.state_dim}, "
                             f"{self.action_dim}.")


@dataclass
class ActorConfig(NetConfig):
    """An actor ``state (B, S) [, context (B, C)] -> (B, O)``: ``NetConfig``'s sizes and its input/output sizes."""

    state_dim: int = 3  # S
    out_dim: int = 1  # O raw outputs (TD3: A; SAC: 2A, mean and log σ)
    context_dim: int | None = None  # hyper only: C of a task context; None: the state conditions the weights

    def __post_init__(self):
        super().__post_init__()
        if min(self.state_dim, self.out_dim, 1 if self.context_dim is None else self.context_dim) < 1:
            raise ValueError(f"ActorConfig: state_dim, out_dim and context_dim must be >= 1, got {self.state_dim}, "
                             f"{self.out_dim}, {self.context_dim}.")
        if self.context_dim is not None and self.kind == "mlp":
            raise ValueError("ActorConfig: context_dim needs kind='hyper'; concatenate the context to the state "
                             "for an MLP.")


T = TypeVar("T", bound=NetConfig)


def sized(cls: type[T], net: NetConfig, **dims: int) -> T:
    """``net``'s sizes as a ``cls`` (``CriticConfig`` / ``ActorConfig``) with the input/output sizes ``dims``.

    Raises:
        ValueError: ``net`` already names one of ``dims`` with another value.
    """
    given = net.to_dict()
    for key, value in dims.items():
        if given.get(key, value) != value:
            raise ValueError(f"{cls.__name__}: {key}={given[key]} in the config, but the agent needs {value}.")
    return cls(**{**given, **dims})


@dataclass
class TD3Config(DictConfig):
    """TD3 (Fujimoto et al., ICML 2018); actions live in [-1, 1] (the loop rescales them)."""

    gamma: float = 0.99  # discount
    tau: float = 0.005  # Polyak rate of the target networks
    actor_lr: float = 3e-4  # Adam learning rate of the actor
    critic_lr: float = 3e-4  # Adam learning rate of the twin critics
    batch_size: int = 256  # transitions per update
    policy_noise: float = 0.2  # std of the target-policy smoothing noise
    noise_clip: float = 0.5  # clip of the smoothing noise
    policy_delay: int = 2  # critic updates per actor / target update
    expl_noise: float = 0.1  # std of the Gaussian exploration noise

    def __post_init__(self):
        if not (0 <= self.gamma < 1 and 0 < self.tau <= 1 and self.batch_size >= 1 and self.policy_delay >= 1):
            raise ValueError(f"TD3Config: need 0 <= gamma < 1, 0 < tau <= 1, batch_size >= 1, policy_delay >= 1; "
                             f"got {self.gamma}, {self.tau}, {self.batch_size}, {self.policy_delay}.")


@dataclass
class SACConfig(DictConfig):
    """SAC with a learned temperature (Haarnoja et al., 2018); actions in [-1, 1]."""

    gamma: float = 0.99  # discount
    tau: float = 0.005  # Polyak rate of the target critics
    actor_lr: float = 3e-4  # Adam learning rate of the actor
    critic_lr: float = 3e-4  # Adam learning rate of the twin critics
    alpha_lr: float = 3e-4  # Adam learning rate of log α
    batch_size: int = 256  # transitions per update
    init_alpha: float = 0.2  # initial temperature α
    target_entropy: float | None = None  # None: -action_dim

    def __post_init__(self):
        if not (0 <= self.gamma < 1 and 0 < self.tau <= 1 and self.batch_size >= 1 and self.init_alpha > 0):
            raise ValueError(f"SACConfig: need 0 <= gamma < 1, 0 < tau <= 1, batch_size >= 1, init_alpha > 0; "
                             f"got {self.gamma}, {self.tau}, {self.batch_size}, {self.init_alpha}.")


@dataclass
class PPOConfig(DictConfig):
    """PPO with clipped surrogate and GAE (Schulman et al., 2017), CleanRL-style defaults for CartPole."""

    num_envs: int = 20  # vectorised environments (HyperPPO: environment i runs architecture i mod K)
    num_steps: int = 128  # rollout length per environment and iteration
    lr: float = 2.5e-4  # Adam learning rate (annealed linearly to 0)
    gamma: float = 0.99  # discount
    gae_lambda: float = 0.95  # GAE λ
    minibatches: int = 4  # minibatches per epoch
    epochs: int = 4  # passes over each rollout
    clip: float = 0.2  # ratio clip ε
    ent_coef: float = 0.01  # entropy bonus
    vf_coef: float = 0.5  # value-loss weight
    max_grad_norm: float = 0.5  # gradient clipping

    def __post_init__(self):
        if self.num_envs < 1 or self.num_steps < 1 or self.minibatches < 1 or self.epochs < 1:
            raise ValueError(f"PPOConfig: num_envs, num_steps, minibatches and epochs must be >= 1, got "
                             f"{self.num_envs}, {self.num_steps}, {self.minibatches}, {self.epochs}.")
        if (self.num_envs * self.num_steps) % self.minibatches:
            raise ValueError(f"PPOConfig: num_envs * num_steps ({self.num_envs * self.num_steps}) must be "
                             f"divisible by minibatches ({self.minibatches}).")


def arch_space(widths: tuple[int, ...] = (2, 4, 8, 16), max_depth: int = 2) -> list[tuple[int, ...]]:
    """Every MLP with 1..``max_depth`` hidden layers whose widths are drawn from ``widths``."""
    return [arch for depth in range(1, max_depth + 1) for arch in product(widths, repeat=depth)]


@dataclass
class HyperPPOConfig(DictConfig):
    """HyperPPO's architecture-conditioned policy (Hegde et al., ICRA 2024): one hypernetwork, many MLPs."""

    in_dim: int = 4  # observation size I
    out_dim: int = 2  # outputs O (logits of a discrete policy)
    archs: tuple[tuple[int, ...], ...] = field(default_factory=lambda: tuple(arch_space()))  # hidden widths, by id
    embed_dim: int = 32  # size E of the architecture embedding
    hidden: tuple[int, ...] = (64,)  # hidden widths of the encoder and of the head
    seed: int = 0  # seed of the initialisation's calibration draw

    def __post_init__(self):
        self.archs, self.hidden = tuple(tuple(a) for a in self.archs), tuple(self.hidden)
        if min(self.in_dim, self.out_dim, self.embed_dim, *self.hidden) < 1:
            raise ValueError(f"HyperPPOConfig: sizes must be >= 1, got in_dim={self.in_dim}, out_dim={self.out_dim}, "
                             f"embed_dim={self.embed_dim}, hidden={self.hidden}.")


@dataclass
class ModuMorphConfig(DictConfig):
    """ModuMorph (Xiong et al., ICML 2023): per-limb embedding and decoder generated from a morphology embedding
    of each limb, and attention over limbs whose weights come from the morphology alone."""

    obs_dim: int = 2  # per-limb observation size
    ctx_dim: int = 4  # per-limb context (descriptor) size
    d_model: int = 32  # token width D
    layers: int = 1  # transformer layers
    heads: int = 2  # attention heads
    embed_dim: int = 16  # size E of each limb's morphology embedding
    hidden: tuple[int, ...] = (32,)  # hidden widths of the per-limb context MLP
    morph_layers: int = 1  # self-attention layers over the limbs' context embeddings (0: each limb alone)
    fixed_attention: bool = True  # attention weights from the morphology embedding only (False: from the tokens)
    seed: int = 0  # seed of the hypernetworks' initialisation calibration draw

    def __post_init__(self):
        self.hidden = tuple(self.hidden)
        sizes = (self.obs_dim, self.ctx_dim, self.d_model, self.layers, self.heads, self.embed_dim, *self.hidden)
        if min(sizes) < 1 or self.morph_layers < 0 or self.d_model % self.heads or self.embed_dim % self.heads:
            raise ValueError(f"ModuMorphConfig: sizes must be >= 1 and d_model, embed_dim divisible by heads, "
                             f"got {self}.")
