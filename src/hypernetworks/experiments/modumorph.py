"""Reproduction ``modumorph``: zero-shot control of unseen planar N-link chains.

Xiong, Beck, Whiteson, "Universal Morphology Control via Contextual Modulation", ICML 2023.
Claim: generating each limb's input embedding and decoder from its morphology context with a
hypernetwork (ModuMorph) generalises better to unseen morphologies than one shared controller
that gets the context concatenated to its inputs.

Scaled down: 40 random chains (N = 2-5 links, lengths 0.2-0.6 m, masses 0.2-1.5 kg) built as
MuJoCo XML; expert = LQR around upright per chain; behaviour cloning on 30 chains, 10 held out.
Both controllers share the transformer over limb tokens and have about the same parameter count.
Metrics: relative action error Σ(u - u*)² / Σu*² on held-out states, and closed-loop success on
the held-out chains (and, for reference, on 10 of the training chains)
(3 s from a random tilt, the chain stays within 1 rad and ends within 0.05 rad of upright; a
rollout whose simulation diverges counts as a failure and is also reported as "diverged").
"""

from __future__ import annotations

import statistics
import time

import torch

from ..methods.rl import Chain, ConcatContext, ModuMorph, lqr_gain, random_chain, rollout
from . import _claims
from ._common import configured, pyplot, run_jobs, save

FULL = {"train_steps": 2000, "seeds": 3, "states": 1000, "rollouts": 3, "horizon": 300, "workers": 2}
QUICK = {"train_steps": 20, "seeds": 1, "states": 50, "rollouts": 1, "horizon": 30, "workers": 1}
CHAINS, TRAIN, MAX_LINKS = 40, 30, 5
Q_STD, QD_STD, TILT = 0.15, 0.5, 0.1  # state sampling for cloning (rad, rad/s) and initial tilt of rollouts
BASELINE_HIDDEN = 48  # matches ModuMorph's parameter count (12,273 vs 12,113)


def _chains() -> list[Chain]:
    gen = torch.Generator().manual_seed(0)
    return [random_chain(gen) for _ in range(CHAINS)]


def _pad(chain: Chain, x: torch.Tensor):
    """States (S, 2N) -> obs (S, L, 2) scaled, context (S, L, 4), pad (S, L)."""
    s, n = len(x), chain.n
    obs = torch.zeros(s, MAX_LINKS, 2)
    obs[:, :n, 0], obs[:, :n, 1] = x[:, :n] / Q_STD, x[:, n:] / QD_STD
    ctx = torch.zeros(s, MAX_LINKS, 4)
    ctx[:, :n] = chain.context(MAX_LINKS)
    pad = torch.ones(s, MAX_LINKS, dtype=torch.bool)
    pad[:, :n] = False
    return obs, ctx, pad


def _data(chains, gains, states: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for chain, k in zip(chains, gains, strict=True):
        n = chain.n
        x = torch.cat([Q_STD * torch.randn(states, n, generator=gen),
                       QD_STD * torch.randn(states, n, generator=gen)], 1)  # (S, 2N)
        u = torch.zeros(states, MAX_LINKS)
        u[:, :n] = -x @ k.T  # (S, N)
        parts.append((*_pad(chain, x), u))
    return [torch.cat(p) for p in zip(*parts, strict=True)]


def _controller(model, chain: Chain, scale: float):
    def act(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(*_pad(chain, x.unsqueeze(0)))[0, : chain.n] * scale
    return act


def _success(states: torch.Tensor, n: int) -> bool:
    q = states[:, :n].abs()
    return bool(q.max() < 1.0 and q[-1].max() < 0.05)


def one_run(job) -> dict:
    kind, seed, cfg = job
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    chains = _chains()
    gains = [lqr_gain(c) for c in chains]
    obs, ctx, pad, u = _data(chains[:TRAIN], gains[:TRAIN], cfg["states"], seed)
    scale = u[~pad].std().item()
    model = ModuMorph(seed=seed) if kind == "modumorph" else ConcatContext(hidden=BASELINE_HIDDEN)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for step in range(cfg["train_steps"]):
        idx = torch.randint(0, len(u), (256,), generator=gen)
        pred = model(obs[idx], ctx[idx], pad[idx])
        loss = (pred - u[idx] / scale).square().sum() / (~pad[idx]).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.param_groups[0]["lr"] = 1e-3 * (1 - step / cfg["train_steps"])
        opt.step()
    train_s = time.perf_counter() - start
    out = {"kind": kind, "seed": seed, "train_s": train_s, "params": sum(p.numel() for p in model.parameters()
                                                                          if p.requires_grad)}
    for split, sl in (("train", slice(0, TRAIN)), ("heldout", slice(TRAIN, CHAINS))):
        o, c, p, target = _data(chains[sl], gains[sl], cfg["states"], 1000 + seed)
        with torch.no_grad():
            pred = model(o, c, p) * scale
        out[f"{split}_rel_error"] = ((pred - target).square().sum() / target.square().sum()).item()
    for split, sl in (("train", slice(0, CHAINS - TRAIN)), ("heldout", slice(TRAIN, CHAINS))):
        out |= _closed_loop(model, chains[sl], gains[sl], scale, cfg, split, seed)
    return out


def _closed_loop(model, chains, gains, scale: float, cfg: dict, split: str, seed: int) -> dict:
    """Success rates of the model and of the LQR experts, and the model's divergence rate."""
    gen = torch.Generator().manual_seed(2000 + seed)
    wins, expert_wins, diverged, runs = 0, 0, 0, 0
    for chain, k in zip(chains, gains, strict=True):
        for _ in range(cfg["rollouts"]):
            x0 = torch.cat([TILT * torch.randn(chain.n, generator=gen), torch.zeros(chain.n)])
            states = rollout(chain, _controller(model, chain, scale), x0, cfg["horizon"])
            wins += _success(states, chain.n)
            diverged += bool(torch.isinf(states).any())
            expert_wins += _success(rollout(chain, lambda x, k=k: -k @ x, x0, cfg["horizon"]), chain.n)
            runs += 1
    return {f"{split}_success": wins / runs, f"{split}_expert_success": expert_wins / runs,
            f"{split}_diverged": diverged / runs, f"{split}_rollouts": runs}


def _ms(vals) -> str:
    return f"{statistics.fmean(vals):.3f} ± {statistics.stdev(vals) if len(vals) > 1 else 0.0:.3f}"


def _table(rows) -> str:
    lines = [f"{CHAINS - TRAIN} held-out chains (cloned from LQR on {TRAIN}); relative action error Σ(u-u*)²/Σu*²",
             f"{'controller':<15} {'params':>7} {'train error':>16} {'held-out error':>16} {'train success':>15} "
             f"{'held-out success':>17} {'diverged':>9} {'LQR success':>12} {'train s':>8}"]
    for kind in ("concat", "modumorph"):
        rs = [r for r in rows if r["kind"] == kind]
        lines.append(f"{kind:<15} {rs[0]['params']:>7} {_ms([r['train_rel_error'] for r in rs]):>16} "
                     f"{_ms([r['heldout_rel_error'] for r in rs]):>16} {_ms([r['train_success'] for r in rs]):>15} "
                     f"{_ms([r['heldout_success'] for r in rs]):>17} "
                     f"{statistics.fmean(r['heldout_diverged'] for r in rs):>9.2f} "
                     f"{statistics.fmean(r['heldout_expert_success'] for r in rs):>12.2f} "
                     f"{statistics.fmean(r['train_s'] for r in rs):>8.0f}")
    return "\n".join(lines)


def _claims_of(rows) -> list[dict]:
    """Paired by seed on the held-out chains: ModuMorph vs the concatenating controller on relative
    action error (lower) and closed-loop success (higher)."""
    def get(kind, key):
        return [r[key] for r in sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["seed"])]

    return [_claims.paired("held-out chains: ModuMorph imitates the expert more closely than the concatenating "
                           "controller", "relative action error", get("modumorph", "heldout_rel_error"),
                           get("concat", "heldout_rel_error"), ours_name="modumorph", baseline_name="concat",
                           direction="lower"),
            _claims.paired("held-out chains: ModuMorph balances more of them in closed loop",
                           "closed-loop success rate", get("modumorph", "heldout_success"),
                           get("concat", "heldout_success"), ours_name="modumorph", baseline_name="concat")]


def _plot(rows, path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 3))
    kinds = ("concat", "modumorph")
    for ax, key, title in ((axes[0], "heldout_rel_error", "held-out relative action error"),
                           (axes[1], "heldout_success", "held-out closed-loop success")):
        for i, kind in enumerate(kinds):
            vals = [r[key] for r in rows if r["kind"] == kind]
            ax.bar(i, statistics.fmean(vals), color=f"C{i}", alpha=0.6)
            ax.scatter([i] * len(vals), vals, color="k", s=10)
        ax.set(xticks=range(len(kinds)), xticklabels=kinds, title=title)
    save(fig, path)


def run(quick: bool, out_dir, log=print) -> dict:
    cfg = configured(QUICK if quick else FULL)
    jobs = [(kind, seed, cfg) for seed in range(cfg["seeds"]) for kind in ("modumorph", "concat")]
    log(f"modumorph: {len(jobs)} runs, {cfg['workers']} worker process(es), 1 thread each")
    rows = run_jobs(one_run, jobs, cfg["workers"])
    plot = out_dir / "modumorph.png"
    _plot(rows, plot)
    chains = [{"lengths": c.lengths, "masses": c.masses} for c in _chains()]
    config = {k: v for k, v in cfg.items() if k != "workers"} | {"chains": chains, "train_chains": TRAIN}
    return {"config": config, "claims": _claims_of(rows), "runs": rows, "table": _table(rows), "plot": str(plot)}
