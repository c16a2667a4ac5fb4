"""Environment loop for off-policy agents, evaluation, and the action-gradient probe.

gymnasium (and mujoco for MuJoCo tasks) are imported inside the functions that need them.
Agents act in [-1, 1]^A; ``Scaled`` maps that box onto the environment's action box.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch

from .._fit import Bar, progress_bar
from .agents import Agent


class Scaled:
    """A gymnasium environment whose actions are given in [-1, 1]^A and returned as float32 tensors."""

    def __init__(self, env_id: str) -> None:
        import gymnasium as gym
        from gymnasium.spaces import Box

        self.env = gym.make(env_id)
        space, observations = cast(Box, self.env.action_space), cast(Box, self.env.observation_space)  # continuous
        self.low = torch.as_tensor(space.low, dtype=torch.float64)
        self.high = torch.as_tensor(space.high, dtype=torch.float64)
        self.state_dim, self.action_dim = observations.shape[0], space.shape[0]

    def reset(self, seed: int | None = None) -> torch.Tensor:
        obs, _ = self.env.reset(seed=seed)
        return torch.as_tensor(obs, dtype=torch.float32)

    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, float, bool, bool]:
        a = self.low + (action.double() + 1) * 0.5 * (self.high - self.low)
        obs, r, term, trunc, _ = self.env.step(a.numpy())
        return torch.as_tensor(obs, dtype=torch.float32), float(r), bool(term), bool(trunc)

    def snapshot(self) -> tuple[Any, int]:
        """The simulator state (Pendulum's (θ, θ̇), or MuJoCo's qpos, qvel and time) and step count."""
        env: Any = self.env.unwrapped  # Pendulum or a MuJoCo env: its state is not on gymnasium's Env
        inner = env.state.copy() if hasattr(env, "state") else (env.data.qpos.copy(), env.data.qvel.copy(),
                                                                env.data.time)
        return inner, cast(Any, self.env)._elapsed_steps  # gym.make's outer TimeLimit wrapper

    def restore(self, snap: tuple[Any, int]) -> torch.Tensor:
        """Set the simulator to ``snap`` and return the observation there."""
        inner, steps = snap
        env: Any = self.env.unwrapped
        if isinstance(inner, tuple):
            env.set_state(inner[0], inner[1])
            env.data.time = inner[2]
        else:
            env.state = inner.copy()
        cast(Any, self.env)._elapsed_steps = steps
        return torch.as_tensor(env._get_obs(), dtype=torch.float32)


def evaluate(agent: Agent, env: Scaled, episodes: int, seed: int) -> float:
    """Mean undiscounted return of the deterministic policy over ``episodes`` episodes."""
    total = 0.0
    for k in range(episodes):
        s, done = env.reset(seed=seed + k), False
        while not done:
            s, r, term, trunc = env.step(agent.act(s, explore=False))
            total += r
            done = term or trunc
    return total / episodes


def fit(agent: Agent, env_id: str, steps: int, *, seed: int, start_steps: int, eval_every: int,
        eval_episodes: int, batch_size: int, buffer_size: int = 1_000_000, on_eval=None,
        progress: bool | Bar | None = None) -> dict:
    """Run ``agent`` (``act``, ``update``) for ``steps`` environment steps, one update per step
    after ``start_steps`` uniformly random ones; evaluate every ``eval_every`` steps.

    ``on_eval(t, agent, env)``, if given, runs after each evaluation (e.g. a probe); its results
    are collected under ``"probes"``. ``progress``: ``True`` for a progress bar over the steps, or a bar
    to update (``update(n)``).

    Returns:
        ``{"steps": [...], "returns": [...]}`` (evaluation curve, incl. step 0), ``"probes"`` and
        ``"env"``, the training environment.
    """
    from .agents import ReplayBuffer

    if steps < 1 or eval_every < 1 or start_steps < 0:
        raise ValueError(f"fit: need steps >= 1, eval_every >= 1, start_steps >= 0; got "
                         f"{steps}, {eval_every}, {start_steps}.")
    env, eval_env = Scaled(env_id), Scaled(env_id)
    buffer = ReplayBuffer(env.state_dim, env.action_dim, min(buffer_size, steps))
    gen = torch.Generator().manual_seed(seed)
    curve = {"steps": [0], "returns": [evaluate(agent, eval_env, eval_episodes, 10_000 + seed)]}
    probes = []
    s = env.reset(seed=seed)
    with progress_bar(progress, steps, env_id) as bar:
        for t in range(1, steps + 1):
            if t <= start_steps:
                a = torch.rand(env.action_dim, generator=gen) * 2 - 1
            else:
                a = agent.act(s, explore=True)
            s2, r, term, trunc = env.step(a)
            buffer.add(s, a, r, s2, term)  # truncation is not a terminal state
            s = env.reset() if term or trunc else s2
            if t > start_steps:
                agent.update(buffer.sample(batch_size, gen))
            if t % eval_every == 0:
                curve["steps"].append(t)
                curve["returns"].append(evaluate(agent, eval_env, eval_episodes, 10_000 + seed))
                if on_eval is not None:
                    probes.append(on_eval(t, agent, eval_env))
            bar.update(1)
    return {**curve, "probes": probes, "env": env}


def _rollout_return(agent: Agent, env: Scaled, snap, first_action: torch.Tensor, horizon: int, gamma: float) -> float:
    """Discounted return of ``first_action`` at ``snap`` followed by the deterministic policy."""
    env.restore(snap)
    total, a = 0.0, first_action
    for t in range(horizon):
        s, r, term, _ = env.step(a)
        total += gamma**t * r
        if term:
            break
        a = agent.act(s, explore=False)
    return total


def collect_states(agent: Agent, env: Scaled, n: int, seed: int, noise: float = 0.3, spacing: int = 7) -> list:
    """``n`` simulator snapshots visited by the policy with Gaussian action noise ``noise``, one every
    ``spacing`` steps (its own generator: the agent's random streams are left untouched)."""
    gen = torch.Generator().manual_seed(seed)
    snaps, s, t = [], env.reset(seed=seed), 0
    while len(snaps) < n:
        t += 1
        a = (agent.act(s, explore=False) + noise * torch.randn(env.action_dim, generator=gen)).clamp(-1, 1)
        s, _, term, trunc = env.step(a)
        if term or trunc:
            s = env.reset()
        elif t % spacing == 0:
            snaps.append(env.snapshot())
    return snaps


def gradient_probe(agent: Agent, env: Scaled, snaps: list, *, gamma: float, horizon: int, delta: float = 0.05) -> dict:
    """Compare the critic's ∂Q/∂a at a = π(s) with a central finite difference of Monte-Carlo
    returns (deterministic environment and policy, so one rollout per perturbation is exact up to
    the horizon's truncation).

    Returns:
        ``cosine``: cos between the stacked gradients of all states (N·A values);
        ``sign_agreement``: fraction of (state, action dim) pairs with matching signs, among
        those where the Monte-Carlo gradient is not zero; ``n``: states used.
    """
    critic_grads, mc_grads = [], []
    for snap in snaps:
        s = env.restore(snap).unsqueeze(0)  # (1, S)
        a = agent.policy(s).detach().requires_grad_(True)  # (1, A)
        (g,) = torch.autograd.grad(agent.critic(s, a).sum(), a)
        critic_grads.append(g[0])
        fd = torch.zeros(env.action_dim)
        for i in range(env.action_dim):
            hi, lo = a.detach()[0].clone(), a.detach()[0].clone()
            hi[i], lo[i] = min(1.0, hi[i].item() + delta), max(-1.0, lo[i].item() - delta)
            width = (hi[i] - lo[i]).item()
            fd[i] = (_rollout_return(agent, env, snap, hi, horizon, gamma)
                     - _rollout_return(agent, env, snap, lo, horizon, gamma)) / width
        mc_grads.append(fd)
    q, m = torch.stack(critic_grads).flatten(), torch.stack(mc_grads).flatten()  # (N·A,)
    denom = (q.norm() * m.norm()).item()
    nonzero = m != 0
    agree = ((q.sign() == m.sign()) & nonzero).sum().item() / max(1, nonzero.sum().item())
    return {"cosine": (q @ m).item() / denom if denom > 0 else math.nan, "sign_agreement": agree,
            "n": len(snaps)}
