"""Compact TD3 and SAC whose critic (and actor) is the concatenating MLP or the hypernetwork.

TD3: Fujimoto, van Hoof, Meger, "Addressing Function Approximation Error in Actor-Critic
Methods", ICML 2018. SAC: Haarnoja et al., "Soft Actor-Critic Algorithms and Applications", 2018.
Keynan et al. (ICML 2021) swap the critic for Q(s, a) = f_{θ(s)}(a) in both and keep the rest.
Actions are in [-1, 1]; the environment loop rescales them.
"""

from __future__ import annotations

import copy
import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .config import ActorConfig, CriticConfig, NetConfig, SACConfig, TD3Config, sized
from .nets import build_actor, build_critic


class ReplayBuffer:
    """A ring buffer of transitions ``(s, a, r, s', done)`` as float32 tensors."""

    def __init__(self, state_dim: int, action_dim: int, capacity: int):
        self.capacity, self.size, self.pos = capacity, 0, 0
        self.s = torch.zeros(capacity, state_dim)
        self.a = torch.zeros(capacity, action_dim)
        self.r = torch.zeros(capacity, 1)
        self.s2 = torch.zeros(capacity, state_dim)
        self.done = torch.zeros(capacity, 1)

    def add(self, s: torch.Tensor, a: torch.Tensor, r: float, s2: torch.Tensor, done: bool) -> None:
        i = self.pos
        self.s[i], self.a[i], self.s2[i] = torch.as_tensor(s), torch.as_tensor(a), torch.as_tensor(s2)
        self.r[i, 0], self.done[i, 0] = float(r), float(done)
        self.pos, self.size = (i + 1) % self.capacity, min(self.size + 1, self.capacity)

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """n transitions drawn uniformly: (B, S), (B, A), (B, 1), (B, S), (B, 1)."""
        if self.size == 0:
            raise ValueError("ReplayBuffer.sample: the buffer is empty; add transitions first.")
        idx = torch.randint(0, self.size, (n,), generator=generator)
        return self.s[idx], self.a[idx], self.r[idx], self.s2[idx], self.done[idx]


class Agent(Protocol):
    """What the environment loop and the gradient probe need from an agent (``TD3`` and ``SAC`` are two):
    actions in [-1, 1], a critic Q(s, a) and one update per replay batch."""

    action_dim: int

    def policy(self, state: torch.Tensor) -> torch.Tensor: ...  # (B, S) -> (B, A)

    def act(self, state: torch.Tensor, explore: bool) -> torch.Tensor: ...  # (S,) -> (A,)

    def critic(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor: ...  # (B, S), (B, A) -> (B, 1)

    def update(self, batch: tuple[torch.Tensor, ...]) -> dict[str, float]: ...


def _soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    with torch.no_grad():
        # torch's stubs leave the foreach ops out of torch's exports, though they are used as torch._foreach_*
        targets: list[torch.Tensor] = list(target.parameters())
        sources: list[torch.Tensor] = list(source.parameters())
        torch._foreach_lerp_(targets, sources, tau)  # pyright: ignore[reportPrivateImportUsage]


def _twin(state_dim: int, action_dim: int, critic: NetConfig):
    config = sized(CriticConfig, critic, state_dim=state_dim, action_dim=action_dim)
    q1, q2 = build_critic(config), build_critic(config)
    params = [p for q in (q1, q2) for p in q.parameters() if p.requires_grad]
    return q1, q2, params


class TD3:
    """TD3 with clipped double Q, target-policy smoothing and delayed actor updates.

    Args:
        state_dim: S.
        action_dim: A.
        critic: ``NetConfig`` of the twin critics (``kind="mlp"`` or ``"hyper"``).
        actor: ``NetConfig`` of the deterministic actor (default: an MLP 256-256).
        config: ``TD3Config``.
        seed: seeds the networks' init and the agent's noise.
    """

    def __init__(self, state_dim: int, action_dim: int, critic: NetConfig, actor: NetConfig | None = None,
                 config: TD3Config | None = None, *, seed: int = 0):
        torch.manual_seed(seed)
        self.cfg, self.action_dim = config or TD3Config(), action_dim
        self.gen = torch.Generator().manual_seed(seed)
        self.actor = build_actor(sized(ActorConfig, actor or NetConfig(kind="mlp"), state_dim=state_dim,
                                       out_dim=action_dim))
        self.q1, self.q2, critic_params = _twin(state_dim, action_dim, critic)
        self.actor_t, self.q1_t, self.q2_t = (copy.deepcopy(m) for m in (self.actor, self.q1, self.q2))
        self.actor_opt = torch.optim.Adam([p for p in self.actor.parameters() if p.requires_grad], self.cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(critic_params, self.cfg.critic_lr)
        self.updates = 0

    def policy(self, state: torch.Tensor) -> torch.Tensor:
        """Deterministic action ``(B, S) -> (B, A)`` in [-1, 1]."""
        return torch.tanh(self.actor(state))

    @torch.no_grad()
    def act(self, state: torch.Tensor, explore: bool) -> torch.Tensor:
        """Action for one state ``(S,) -> (A,)``, with Gaussian exploration noise when ``explore``."""
        a = self.policy(state.unsqueeze(0))[0]
        if explore:
            a = a + self.cfg.expl_noise * torch.randn(self.action_dim, generator=self.gen)
        return a.clamp(-1, 1)

    def critic(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The first critic, Q1(s, a): ``(B, S), (B, A) -> (B, 1)``."""
        return self.q1(state, action)

    def update(self, batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
        s, a, r, s2, done = batch
        c = self.cfg
        with torch.no_grad():
            noise = (c.policy_noise * torch.randn(a.shape, generator=self.gen)).clamp(-c.noise_clip, c.noise_clip)
            a2 = (torch.tanh(self.actor_t(s2)) + noise).clamp(-1, 1)
            y = r + c.gamma * (1 - done) * torch.min(self.q1_t(s2, a2), self.q2_t(s2, a2))
        critic_loss = F.mse_loss(self.q1(s, a), y) + F.mse_loss(self.q2(s, a), y)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        self.updates += 1
        out = {"critic_loss": critic_loss.item()}
        if self.updates % c.policy_delay == 0:
            actor_loss = -self.q1(s, self.policy(s)).mean()
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_opt.step()
            for target, source in ((self.actor_t, self.actor), (self.q1_t, self.q1), (self.q2_t, self.q2)):
                _soft_update(target, source, c.tau)
            out["actor_loss"] = actor_loss.item()
        return out


class SAC:
    """SAC with twin critics, a tanh-squashed Gaussian actor and a learned temperature α.

    Args: as ``TD3``, with ``config`` a ``SACConfig``; the actor emits (mean, log σ) (2A outputs).
    """

    LOG_STD = (-5.0, 2.0)

    def __init__(self, state_dim: int, action_dim: int, critic: NetConfig, actor: NetConfig | None = None,
                 config: SACConfig | None = None, *, seed: int = 0):
        torch.manual_seed(seed)
        self.cfg, self.action_dim = config or SACConfig(), action_dim
        self.gen = torch.Generator().manual_seed(seed)
        self.actor = build_actor(sized(ActorConfig, actor or NetConfig(kind="mlp"), state_dim=state_dim,
                                       out_dim=2 * action_dim))
        self.q1, self.q2, critic_params = _twin(state_dim, action_dim, critic)
        self.q1_t, self.q2_t = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.log_alpha = torch.tensor(math.log(self.cfg.init_alpha), requires_grad=True)
        self.target_entropy = -float(action_dim) if self.cfg.target_entropy is None else self.cfg.target_entropy
        self.actor_opt = torch.optim.Adam([p for p in self.actor.parameters() if p.requires_grad], self.cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(critic_params, self.cfg.critic_lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], self.cfg.alpha_lr)

    def _sample(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparametrised action (B, A) in (-1, 1) and its log-probability (B, 1)."""
        mean, log_std = self.actor(state).chunk(2, dim=-1)  # (B, A) each
        std = log_std.clamp(*self.LOG_STD).exp()
        u = mean + std * torch.randn(mean.shape, generator=self.gen)
        a = torch.tanh(u)
        logp = (-0.5 * ((u - mean) / std).square() - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1, keepdim=True)
        logp = logp - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1, keepdim=True)  # tanh correction
        return a, logp

    def policy(self, state: torch.Tensor) -> torch.Tensor:
        """Deterministic (mean) action ``(B, S) -> (B, A)`` in [-1, 1]."""
        return torch.tanh(self.actor(state).chunk(2, dim=-1)[0])

    @torch.no_grad()
    def act(self, state: torch.Tensor, explore: bool) -> torch.Tensor:
        """Action for one state ``(S,) -> (A,)``: sampled when ``explore``, else the mean."""
        return self._sample(state.unsqueeze(0))[0][0] if explore else self.policy(state.unsqueeze(0))[0]

    def critic(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The first critic, Q1(s, a): ``(B, S), (B, A) -> (B, 1)``."""
        return self.q1(state, action)

    def update(self, batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
        s, a, r, s2, done = batch
        c = self.cfg
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            a2, logp2 = self._sample(s2)
            q_next = torch.min(self.q1_t(s2, a2), self.q2_t(s2, a2)) - alpha * logp2
            y = r + c.gamma * (1 - done) * q_next
        critic_loss = F.mse_loss(self.q1(s, a), y) + F.mse_loss(self.q2(s, a), y)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        a_new, logp = self._sample(s)
        actor_loss = (alpha * logp - torch.min(self.q1(s, a_new), self.q2(s, a_new))).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()
        _soft_update(self.q1_t, self.q1, c.tau)
        _soft_update(self.q2_t, self.q2, c.tau)
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(), "alpha": alpha.item()}
