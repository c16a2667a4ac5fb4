"""Reproduction ``hyperppo``: one HyperPPO run for 4 Acrobot architectures vs each trained alone with PPO.

Hegde et al., "HyperPPO: A scalable method for finding small policies for robotic control",
ICRA 2024. Claim: an architecture-conditioned hypernetwork trained with PPO yields policies for
many architectures at once "while maintaining sample efficiency".

Acrobot-v1 (a random policy scores -500, "solved" is -100). Architectures: MLPs 6 -> hidden -> 3
with hidden (2,), (8,), (16, 16), (64, 64) (23 to 4,803 parameters). With n env steps per
architecture, K architectures and e environments per architecture:

- ``hyperppo``: one PPO run of ``ArchPolicy`` on K·e environments (environment i runs architecture
  i mod K), K·n steps in all;
- ``alone-share``: each architecture trained alone by PPO on e environments for n steps (the same
  total, K·n, split over K runs; the same rollouts per update and updates per architecture);
- ``alone-full``: each architecture alone for K·n steps (K times HyperPPO's total).

PPO settings are the same everywhere; the learning rate is swept for each of the three settings
alike on a tuning seed that no evaluation uses, and chosen by the mean greedy return over the
architectures. Evaluation: greedy actions, ``eval_episodes`` episodes per architecture.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from .. import encoders
from ..methods.rl import ArchPolicy, ArchValue, Plain, PPOConfig, evaluate_archs, fit_ppo, num_params
from . import _claims
from ._common import configured, pyplot, run_jobs, save, sweep_lines

ENV, IN_DIM, OUT_DIM, SOLVED = "Acrobot-v1", 6, 3, -100.0
FULL = {"archs": ((2,), (8,), (16, 16), (64, 64)), "steps_per_arch": 51_200, "envs_per_arch": 4, "num_steps": 128,
        "lrs": (3e-4, 1e-3, 3e-3), "tune_seed": 100, "seeds": 5, "eval_episodes": 10, "margin": 25.0, "workers": 1}
QUICK = {"archs": ((2,), (4, 4)), "steps_per_arch": 128, "envs_per_arch": 2, "num_steps": 32, "lrs": (1e-3,),
         "tune_seed": 100, "seeds": 1, "eval_episodes": 1, "margin": 25.0, "workers": 1}
SETTINGS = {"hyperppo": "HyperPPO (all at once)", "alone-share": "alone, n steps", "alone-full": "alone, K·n steps"}


def one_run(job) -> dict:
    """Train one PPO run and return the greedy return of each architecture it trains.

    ``job = (setting, arch index or None for HyperPPO, env steps, lr, seed, cfg)``.
    """
    setting, k, steps, lr, seed, cfg = job
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    archs, e = [tuple(a) for a in cfg["archs"]], cfg["envs_per_arch"]
    if setting == "hyperppo":
        policy = ArchPolicy(in_dim=IN_DIM, out_dim=OUT_DIM, archs=archs, seed=seed)
        value, ids, evaluated = ArchValue(policy), torch.arange(len(archs) * e) % len(archs), torch.arange(len(archs))
    else:
        policy = Plain(encoders.mlp([IN_DIM, *archs[k], OUT_DIM], nn.Tanh, last_activation=False))
        value = Plain(encoders.mlp([IN_DIM, 64, 64, 1], nn.Tanh, last_activation=False))
        ids, evaluated = torch.zeros(e, dtype=torch.long), torch.zeros(1, dtype=torch.long)
    ppo = PPOConfig(num_envs=len(ids), num_steps=cfg["num_steps"], lr=lr)
    start = time.perf_counter()
    curve = fit_ppo(policy, value, ENV, steps, arch_of_env=ids, config=ppo, seed=seed)
    returns = evaluate_archs(policy, ENV, evaluated, cfg["eval_episodes"], seed=10_000 + seed).tolist()
    finished = [v for v in curve["mean_return"] if v == v][-5:]  # the last training returns, NaNs aside
    return {"setting": setting, "arch": k, "steps": steps, "lr": lr, "seed": seed, "returns": returns,
            "train_return": statistics.fmean(finished) if finished else None, "wall_s": time.perf_counter() - start,
            "trainable": sum(p.numel() for m in (policy, value) for p in m.parameters() if p.requires_grad)}


def _jobs(setting: str, lr: float, seed: int, cfg: dict) -> list[tuple]:
    """The runs of one setting at one learning rate and seed (HyperPPO: one run; alone: one per architecture)."""
    n, count = cfg["steps_per_arch"], len(cfg["archs"])
    if setting == "hyperppo":
        return [(setting, None, count * n, lr, seed, cfg)]
    steps = n if setting == "alone-share" else count * n
    return [(setting, k, steps, lr, seed, cfg) for k in range(count)]


def _returns(rows: list[dict], setting: str, lr: float, seed: int) -> list[float]:
    """Greedy return of each architecture (K,) under ``setting`` at ``lr`` and ``seed``."""
    mine = [r for r in rows if (r["setting"], r["lr"], r["seed"]) == (setting, lr, seed)]
    if setting == "hyperppo":
        return mine[0]["returns"]
    return [r["returns"][0] for r in sorted(mine, key=lambda r: r["arch"])]


def _table(per_seed: dict, cfg: dict, chosen: dict, sweep: list[dict], walls: dict) -> str:
    archs, n = cfg["archs"], cfg["steps_per_arch"]
    k = len(archs)
    lines = [f"{ENV}, n = {n:,} env steps per architecture (HyperPPO: {k * n:,} in all, alone with the full budget: "
             f"{k * n:,} each); greedy return over {cfg['eval_episodes']} episodes per architecture, mean ± sd over "
             f"{len(per_seed['hyperppo'])} seeds (random policy -500, solved >= {SOLVED:.0f})",
             f"{'architecture':<13} {'params':>6} " + " ".join(f"{SETTINGS[s]:>24}" for s in SETTINGS)]

    def cell(values):
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.fmean(values):>15.1f} ± {sd:>6.1f}"

    for j, arch in enumerate(archs):
        lines.append(f"{'-'.join(map(str, arch)):<13} {num_params(arch, IN_DIM, OUT_DIM):>6} "
                     + " ".join(cell([r[j] for r in per_seed[s]]) for s in SETTINGS))
    lines.append(f"{'mean':<13} {'':>6} " + " ".join(cell([statistics.fmean(r) for r in per_seed[s]])
                                                   for s in SETTINGS))
    lines.append("learning rate chosen on tuning seed " + str(cfg["tune_seed"]) + ": "
                 + ", ".join(f"{SETTINGS[s]} {chosen[s]:.0e}" for s in SETTINGS))
    lines.append("wall time per seed: " + ", ".join(f"{SETTINGS[s]} {walls[s]:.0f} s" for s in SETTINGS))
    lines += sweep_lines(f"learning-rate sweep, tuning seed {cfg['tune_seed']}: mean greedy return over the "
                         "architectures (* chosen)", SETTINGS, SETTINGS, sweep, "score", lambda v: f"{v:7.1f}", 24)
    return "\n".join(lines)


def _claims_of(per_seed: dict, cfg: dict) -> list[dict]:
    """Paired over seeds: HyperPPO vs the architectures alone at the same total steps (higher), and vs
    alone with the full budget each (non-inferiority within ``margin``); mean over architectures, then each."""
    archs, margin, k = cfg["archs"], cfg["margin"], len(cfg["archs"])
    total = f"{k * cfg['steps_per_arch']:,}"

    def values(setting, j=None):
        return [statistics.fmean(r) if j is None else r[j] for r in per_seed[setting]]

    claims = []
    for j in (None, *range(k)):
        which = (f"mean over the {k} architectures" if j is None
                 else f"architecture {'-'.join(map(str, archs[j]))}")
        metric = f"greedy return on {ENV}" + (" (mean over architectures)" if j is None else "")
        claims.append(_claims.paired(
            f"same total env steps ({total}): HyperPPO's policy beats the architecture trained alone with its "
            f"1/{k} share ({which})", metric, values("hyperppo", j), values("alone-share", j),
            ours_name="hyperppo", baseline_name="alone, 1/K share"))
        claims.append(_claims.paired(
            f"HyperPPO ({total} steps in all) is within {margin:.0f} return points of the architecture trained "
            f"alone with {total} steps ({which})", metric, values("hyperppo", j), values("alone-full", j),
            ours_name="hyperppo", baseline_name="alone, full budget", against=-margin))
    return claims


def _plot(per_seed: dict, cfg: dict, path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    params = [num_params(a, IN_DIM, OUT_DIM) for a in cfg["archs"]]
    for (setting, label), marker in zip(SETTINGS.items(), "os^", strict=True):
        cols = list(zip(*per_seed[setting], strict=True))  # per architecture: returns over seeds
        means = [statistics.fmean(c) for c in cols]
        sds = [statistics.stdev(c) if len(c) > 1 else 0.0 for c in cols]
        ax.errorbar(params, means, yerr=sds, marker=marker, capsize=3, label=label)
    ax.axhline(SOLVED, color="grey", lw=0.8)
    ax.set(xscale="log", xlabel="parameters of the policy", ylabel="greedy return (mean ± sd over seeds)",
           title=f"{ENV}: n = {cfg['steps_per_arch']:,} steps per architecture")
    ax.legend(fontsize=7)
    save(fig, path)


def run(quick: bool, out_dir, log=print) -> dict:
    cfg = configured(QUICK if quick else FULL)
    tune = [job for s in SETTINGS for lr in cfg["lrs"] for job in _jobs(s, lr, cfg["tune_seed"], cfg)]
    log(f"hyperppo: {len(tune)} tuning runs (seed {cfg['tune_seed']}), then the evaluation seeds; "
        f"{cfg['workers']} worker process(es), 1 thread each")
    sweep_rows = run_jobs(one_run, tune, cfg["workers"])
    sweep = [{"kind": s, "lr": lr, "score": statistics.fmean(_returns(sweep_rows, s, lr, cfg["tune_seed"]))}
             for s in SETTINGS for lr in cfg["lrs"]]
    chosen = {s: max((r for r in sweep if r["kind"] == s), key=lambda r: r["score"])["lr"] for s in SETTINGS}
    seeds = range(cfg["seeds"])
    rows = run_jobs(one_run, [job for seed in seeds for s in SETTINGS for job in _jobs(s, chosen[s], seed, cfg)],
                    cfg["workers"])
    per_seed = {s: [_returns(rows, s, chosen[s], seed) for seed in seeds] for s in SETTINGS}
    walls = {s: sum(r["wall_s"] for r in rows if r["setting"] == s) / len(seeds) for s in SETTINGS}
    plot = out_dir / "hyperppo.png"
    _plot(per_seed, cfg, plot)
    ppo = {k: v for k, v in PPOConfig(num_steps=cfg["num_steps"]).to_dict().items() if k not in ("num_envs", "lr")}
    config = {k: v for k, v in cfg.items() if k != "workers"} | {"env": ENV, "chosen_lr": chosen, "ppo": ppo}
    return {"config": config, "claims": _claims_of(per_seed, cfg), "sweep": sweep, "sweep_runs": sweep_rows,
            "runs": rows, "per_seed": per_seed, "table": _table(per_seed, cfg, chosen, sweep, walls), "plot": str(plot)}
