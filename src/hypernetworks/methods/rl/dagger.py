"""DAgger against LQR experts for morphology-conditioned controllers (``ModuMorph``, ``ConcatContext``).

Ross, Gordon, Bagnell, "A Reduction of Imitation Learning and Structured Prediction to No-Regret Online
Learning", AISTATS 2011: roll out the current controller (mixed with the expert with probability β^r in
round r), label every visited state with the expert's action, add it to the data set, refit. The experts
are the per-chain LQR gains of ``morph.lqr_gain``, so labels cost one matrix product. This replaces the
paper's PPO (Xiong, Beck, Whiteson, ICML 2023) by a supervised, on-policy signal.

A controller reads per-limb tokens: observation ``(q_i / Q_SCALE, q̇_i / QD_SCALE)``, context
``Chain.context`` and a padding mask, and returns torques divided by its ``action_scale`` buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from .._config import DictConfig
from .._fit import Bar, progress_bar
from .morph import Chain, lqr_gain, rollout_batch

Q_SCALE, QD_SCALE = 0.15, 0.5  # std of the joint angles (rad) and velocities (rad/s) of round 0's states
FALL = 1.0  # a chain with a joint beyond this angle (rad) has fallen: its later states are not kept


@dataclass
class DAggerConfig(DictConfig):
    """The DAgger budget: rounds, rollouts per round and Adam steps per round."""

    rounds: int = 8  # DAgger rounds after round 0 (expert labels on random states only)
    initial_states: int = 200  # round 0: random states per chain, q ~ N(0, Q_SCALE²), q̇ ~ N(0, QD_SCALE²)
    rollouts: int = 2  # controller rollouts per chain and round
    horizon: int = 300  # steps per rollout
    every: int = 5  # keep every k-th visited state
    tilt: float = 0.1  # std of the initial joint angles of a rollout (rad); velocities start at 0
    beta: float = 0.5  # round r acts with the expert with probability beta**r per step
    steps: int = 300  # Adam steps per round (round 0 included)
    batch_size: int = 256  # states per step
    lr: float = 1e-3  # Adam learning rate, decayed linearly to 0 over all steps
    max_links: int = 5  # L: limbs every token set is padded to
    seed: int = 0  # seed of the states, rollouts and batches

    def __post_init__(self):
        sizes = (self.initial_states, self.rollouts, self.horizon, self.every, self.steps, self.batch_size,
                 self.max_links)
        if self.rounds < 0 or min(sizes) < 1 or self.lr <= 0 or not 0 <= self.beta <= 1:
            raise ValueError(f"DAggerConfig: need rounds >= 0, positive sizes and lr, 0 <= beta <= 1; got {self}.")


class ChainSet:
    """C chains padded to L limbs: ``context (C, L, 4)``, ``pad (C, L)`` bool and LQR gains ``(C, L, 2L)``."""

    def __init__(self, chains: Sequence[Chain], max_links: int, gains: Sequence[torch.Tensor] | None = None):
        if max(c.n for c in chains) > max_links:
            raise ValueError(f"ChainSet: a chain has more than max_links={max_links} links.")
        gains = [lqr_gain(c) for c in chains] if gains is None else gains
        self.chains, n = list(chains), len(chains)
        self.context = torch.zeros(n, max_links, 4)
        self.pad = torch.ones(n, max_links, dtype=torch.bool)
        self.gains = torch.zeros(n, max_links, 2 * max_links)
        for i, (c, k) in enumerate(zip(chains, gains, strict=True)):
            self.context[i, : c.n], self.pad[i, : c.n] = c.context(max_links), False
            self.gains[i, : c.n, : c.n], self.gains[i, : c.n, max_links: max_links + c.n] = k[:, : c.n], k[:, c.n:]

    def expert(self, ids: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """LQR torques ``(S, L)`` of chains ``ids (S,)`` in states ``x (S, L, 2)``."""
        flat = x.transpose(1, 2).flatten(1)  # (S, 2L): [q, q̇]
        return -(self.gains[ids] @ flat.unsqueeze(-1)).squeeze(-1)

    def inputs(self, ids: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Controller inputs of states ``x (S, L, 2)``: obs ``(S, L, 2)``, context ``(S, L, 4)``, pad ``(S, L)``."""
        obs = (x / torch.tensor([Q_SCALE, QD_SCALE])).masked_fill(self.pad[ids].unsqueeze(-1), 0.0)
        return obs, self.context[ids], self.pad[ids]

    def random_states(self, ids: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """States ``(S, L, 2)`` around upright: q ~ N(0, Q_SCALE²), q̇ ~ N(0, QD_SCALE²), zero on padding."""
        x = torch.randn(len(ids), self.pad.shape[1], 2, generator=gen) * torch.tensor([Q_SCALE, QD_SCALE])
        return x.masked_fill(self.pad[ids].unsqueeze(-1), 0.0)

    def starts(self, ids: torch.Tensor, tilt: float, gen: torch.Generator) -> torch.Tensor:
        """Initial states ``(S, L, 2)``: joint angles ~ N(0, tilt²), velocities 0."""
        x = torch.zeros(len(ids), self.pad.shape[1], 2)
        x[..., 0] = tilt * torch.randn(len(ids), self.pad.shape[1], generator=gen)
        return x.masked_fill(self.pad[ids].unsqueeze(-1), 0.0)

    def rollout(self, ids: torch.Tensor, model: nn.Module | None, x0: torch.Tensor, steps: int,
                beta: float = 0.0, gen: torch.Generator | None = None) -> torch.Tensor:
        """States ``(T + 1, S, L, 2)`` of chains ``ids`` from ``x0`` under ``model`` (None: the expert); with
        ``beta > 0`` each step takes the expert's action with probability ``beta``."""
        def policy(x: torch.Tensor) -> torch.Tensor:
            u = self.expert(ids, x)
            if model is None or beta >= 1:
                return u
            with torch.no_grad():
                learner = model(*self.inputs(ids, x)) * model.action_scale
            if beta <= 0:
                return learner
            return torch.where(torch.rand(len(ids), 1, generator=gen) < beta, u, learner)

        return rollout_batch([self.chains[int(i)] for i in ids], policy, x0, steps)


def upright(states: torch.Tensor) -> torch.Tensor:
    """``(T + 1, S)`` True while the rollout has kept every joint within ``FALL`` rad (and not diverged)."""
    ok = states[..., 0].abs().amax(-1) < FALL  # inf (diverged) compares False
    return ok.int().cummin(0).values.bool()


def _visit(model: nn.Module, chains: ChainSet, cfg: DAggerConfig, beta: float, gen: torch.Generator):
    """One round's rollouts: the kept states ``(S, L, 2)`` and their chain ids ``(S,)``."""
    ids = torch.arange(len(chains.chains)).repeat(cfg.rollouts)
    states = chains.rollout(ids, model, chains.starts(ids, cfg.tilt, gen), cfg.horizon, beta, gen)
    states = states[1:: cfg.every]
    keep = upright(states)  # (T', S)
    return states[keep], ids.expand(len(states), -1)[keep]


def fit_dagger(model: nn.Module, chains: Sequence[Chain], config: DAggerConfig | None = None, *,
               gains: Sequence[torch.Tensor] | None = None, progress: bool | Bar | None = None,
               **options) -> list[float]:
    """Train ``model`` (obs, context, pad -> torques / ``model.action_scale``) by DAgger on ``chains``.

    Sets ``model.action_scale`` to the std of the expert's torques on round 0's states; the loss is the
    mean squared error of the scaled torques over real limbs. ``gains``: the chains' LQR gains (computed
    when None). Returns the loss per Adam step.
    """
    cfg = DAggerConfig.build(config, **options)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = ChainSet(chains, cfg.max_links, gains)
    ids = torch.arange(len(chains)).repeat_interleave(cfg.initial_states)
    xs, id_parts = [data.random_states(ids, gen)], [ids]
    scale = cast(torch.Tensor, model.action_scale)
    scale.fill_(data.expert(ids, xs[0])[~data.pad[ids]].std())
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    total, losses = (cfg.rounds + 1) * cfg.steps, []
    with progress_bar(progress, total, "DAgger") as bar:
        for r in range(cfg.rounds + 1):
            if r > 0:
                x, i = _visit(model, data, cfg, cfg.beta ** r, gen)
                xs.append(x)
                id_parts.append(i)
            x_all, i_all = torch.cat(xs), torch.cat(id_parts)
            target = data.expert(i_all, x_all) / scale
            for _ in range(cfg.steps):
                idx = torch.randint(0, len(x_all), (cfg.batch_size,), generator=gen)
                obs, ctx, pad = data.inputs(i_all[idx], x_all[idx])
                loss = (model(obs, ctx, pad) - target[idx]).square().sum() / (~pad).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.param_groups[0]["lr"] = cfg.lr * (1 - len(losses) / total)
                opt.step()
                losses.append(loss.item())
                bar.update(1)
    return losses
