"""PPO for discrete actions on a gymnasium vector environment, with a policy and value function
that also receive an architecture id per environment (HyperPPO; a plain policy ignores it).

Schulman et al., "Proximal Policy Optimization Algorithms", 2017; GAE (Schulman et al., 2016).
Environments with a numpy-vectorised implementation (CartPole) run as one vector environment; others
(Acrobot) as gymnasium's ``SyncVectorEnv`` of single copies. Either resets a finished sub-environment
on the *next* step (gymnasium's default ``NEXT_STEP`` autoreset): that step is a reset, carries no
transition, and is left out of the loss.
"""

from __future__ import annotations

import torch
from torch import nn

from .._fit import Bar, progress_bar
from .config import PPOConfig


def _make_vec(env_id: str, num_envs: int):
    """A gymnasium vector environment of ``num_envs`` copies: the env's own vectorised class when it has
    one, else a ``SyncVectorEnv`` (both reset a finished copy on the next step)."""
    import gymnasium as gym

    mode = "vector_entry_point" if gym.spec(env_id).vector_entry_point else "sync"
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode)


class Plain(nn.Module):
    """An ordinary network that ignores the architecture id: ``(obs (B, I), arch (B,)) -> net(obs)``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, obs: torch.Tensor, arch: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


def _gae(rewards, values, next_values, terms, dones, valid, cfg: PPOConfig):
    """Advantages and returns (T, N) from per-step tensors (T, N); next_values bootstrap truncations."""
    adv = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + cfg.gamma * next_values[t] * (1 - terms[t]) - values[t]
        running = (delta + cfg.gamma * cfg.gae_lambda * (1 - dones[t]) * running) * valid[t]
        adv[t] = running
    return adv, adv + values


def fit_ppo(policy: nn.Module, value: nn.Module, env_id: str, total_steps: int, *, arch_of_env: torch.Tensor,
            config: PPOConfig | None = None, seed: int = 0, progress: bool | Bar | None = None) -> dict:
    """Train ``policy (obs, arch) -> logits`` and ``value (obs, arch) -> (B, 1)`` with PPO.

    Args:
        policy: logits ``(B, A)`` from observations and architecture ids.
        value: state values ``(B, 1)``.
        env_id: a gymnasium id with a discrete action space (vectorised by ``gymnasium.make_vec``).
        total_steps: environment steps over all sub-environments.
        arch_of_env: ``(N,)`` architecture id of each sub-environment (N = ``config.num_envs``).
        config: ``PPOConfig``.
        seed: seeds the environments and the action sampling.
        progress: ``True`` for a progress bar over the environment steps, or a bar to update (``update(n)``).

    Returns:
        ``{"steps": [...], "mean_return": [...]}``: mean return of the episodes finished in each
        iteration (NaN when none finished).
    """
    cfg = config or PPOConfig()
    if arch_of_env.shape != (cfg.num_envs,):
        raise ValueError(f"fit_ppo: arch_of_env should have shape ({cfg.num_envs},), got {tuple(arch_of_env.shape)}.")
    envs = _make_vec(env_id, cfg.num_envs)
    gen = torch.Generator().manual_seed(seed)
    params = [p for m in (policy, value) for p in m.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, eps=1e-5)
    T, N = cfg.num_steps, cfg.num_envs
    iterations = max(1, total_steps // (T * N))
    obs = torch.as_tensor(envs.reset(seed=seed)[0], dtype=torch.float32)
    prev_done = torch.zeros(N)
    ep_ret, curve = torch.zeros(N), {"steps": [], "mean_return": []}
    with progress_bar(progress, iterations * T * N, "PPO") as bar:
        for it in range(iterations):
            opt.param_groups[0]["lr"] = cfg.lr * (1 - it / iterations)
            buf = {k: [] for k in ("obs", "act", "logp", "rew", "next_obs", "term", "done", "valid")}
            finished = []
            for _ in range(T):
                with torch.no_grad():
                    dist = torch.distributions.Categorical(logits=policy(obs, arch_of_env))
                    probs = dist.probs
                    act = torch.multinomial(probs, 1, generator=gen)[:, 0]
                nxt, rew, term, trunc, _ = envs.step(act.numpy())
                nxt = torch.as_tensor(nxt, dtype=torch.float32)
                done = torch.as_tensor(term | trunc, dtype=torch.float32)
                term = torch.as_tensor(term, dtype=torch.float32)
                valid = 1 - prev_done  # a step right after a done is the autoreset: no transition
                rew = torch.as_tensor(rew, dtype=torch.float32) * valid
                ep_ret = ep_ret + rew
                finished += ep_ret[done.bool()].tolist()
                ep_ret = ep_ret * (1 - done)
                for k, v in zip(buf, (obs, act, dist.log_prob(act), rew, nxt, term, done * valid, valid), strict=True):
                    buf[k].append(v)
                obs, prev_done = nxt, done
            b = {k: torch.stack(v) for k, v in buf.items()}  # each (T, N, ...)
            arch = arch_of_env.expand(T, N)
            with torch.no_grad():
                values = value(b["obs"].flatten(0, 1), arch.flatten()).view(T, N)
                next_values = value(b["next_obs"].flatten(0, 1), arch.flatten()).view(T, N)
            adv, ret = _gae(b["rew"], values, next_values, b["term"] * b["valid"], b["done"], b["valid"], cfg)
            flat = {k: v.flatten(0, 1) for k, v in b.items()} | {"adv": adv.flatten(), "ret": ret.flatten(),
                                                                 "arch": arch.flatten()}  # (T·N, ...)
            size = T * N // cfg.minibatches
            for _ in range(cfg.epochs):
                order = torch.randperm(T * N, generator=gen)
                for start in range(0, T * N, size):
                    idx = order[start:start + size]
                    mask = flat["valid"][idx]
                    a_mb = flat["adv"][idx]
                    a_mb = (a_mb - a_mb[mask.bool()].mean()) / (a_mb[mask.bool()].std() + 1e-8)
                    dist = torch.distributions.Categorical(logits=policy(flat["obs"][idx], flat["arch"][idx]))
                    ratio = (dist.log_prob(flat["act"][idx]) - flat["logp"][idx]).exp()
                    pg = -torch.min(ratio * a_mb, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * a_mb)
                    v_loss = (value(flat["obs"][idx], flat["arch"][idx])[:, 0] - flat["ret"][idx]).square()
                    per_step = pg + cfg.vf_coef * v_loss - cfg.ent_coef * dist.entropy()
                    loss = (per_step * mask).sum() / mask.sum().clamp_min(1)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                    opt.step()
            curve["steps"].append((it + 1) * T * N)
            curve["mean_return"].append(sum(finished) / len(finished) if finished else float("nan"))
            bar.update(T * N)
    envs.close()
    return curve


@torch.no_grad()
def evaluate_archs(policy: nn.Module, env_id: str, archs: torch.Tensor, episodes: int, seed: int) -> torch.Tensor:
    """Mean greedy-action return of each architecture id in ``archs (K,)`` over ``episodes``
    episodes, all K·episodes run at once in one vector environment: ``-> (K,)``."""
    k = len(archs)
    envs = _make_vec(env_id, k * episodes)
    ids = archs.repeat_interleave(episodes)  # (K·episodes,)
    obs = torch.as_tensor(envs.reset(seed=seed)[0], dtype=torch.float32)
    total, alive = torch.zeros(k * episodes), torch.ones(k * episodes)
    while alive.any():
        act = policy(obs, ids).argmax(-1)
        obs, rew, term, trunc, _ = envs.step(act.numpy())
        obs = torch.as_tensor(obs, dtype=torch.float32)
        total += torch.as_tensor(rew, dtype=torch.float32) * alive
        alive = alive * (1 - torch.as_tensor(term | trunc, dtype=torch.float32))
    envs.close()
    return total.view(k, episodes).mean(1)
