"""Reproduction ``rl-critic``: hyper critic vs concatenating MLP critic in TD3 (and SAC).

Keynan, Sarafian, Kraus, "Recomposing the Reinforcement Learning Building Blocks with
Hypernetworks", ICML 2021. Claim: a critic Q(s, a) = f_{θ(s)}(a), whose weights come from the
state, gives better action gradients ∂Q/∂a and a higher return curve than Q(MLP([s, a])).

Pendulum-v1 and InvertedPendulum-v5 (MuJoCo); the same env steps, seeds and actor for both
critics. Per run: area under the evaluation-return curve (mean return over the evaluations),
final return over 10 evaluation episodes, and the gradient probe (cosine between the critic's
∂Q/∂a at a = π(s) and a central finite difference of Monte-Carlo returns of the deterministic
policy, on states visited by the noisy policy) at mid-training and at the end.
"""

from __future__ import annotations

import math
import statistics
import time

import torch

from ..methods.rl import SAC, TD3, NetConfig, SACConfig, TD3Config, collect_states, evaluate, gradient_probe, train
from . import _claims
from ._common import pyplot, run_jobs, save

FULL = {"envs": {"Pendulum-v1": 6000, "InvertedPendulum-v5": 15000}, "algos": ("td3", "sac"), "seeds": 3,
        "start_steps": 1000, "eval_every": 500, "eval_episodes": 5, "final_episodes": 10, "probe_states": 32,
        "probe_horizon": 200, "batch_size": 128, "lr": 1e-3, "workers": 2}
QUICK = {"envs": {"Pendulum-v1": 150, "InvertedPendulum-v5": 150}, "algos": ("td3", "sac"), "seeds": 1,
         "start_steps": 100, "eval_every": 50, "eval_episodes": 1, "final_episodes": 1, "probe_states": 2,
         "probe_horizon": 10, "batch_size": 32, "lr": 1e-3, "workers": 1}
HIDDEN = (64, 64)  # actor and MLP critic
HYPER = {"primary_hidden": (64,), "embed_dim": 16, "dynamic_hidden": (16, 16)}  # hyper critic
GAMMA = 0.99


def _agent(algo: str, kind: str, state_dim: int, action_dim: int, cfg: dict, seed: int):
    critic = NetConfig(kind=kind, hidden=HIDDEN, seed=seed, **HYPER)
    actor = NetConfig(kind="mlp", hidden=HIDDEN)
    lr, batch = cfg["lr"], cfg["batch_size"]
    if algo == "td3":
        return TD3(state_dim, action_dim, critic, actor, TD3Config(actor_lr=lr, critic_lr=lr, batch_size=batch,
                                                                   gamma=GAMMA), seed=seed)
    return SAC(state_dim, action_dim, critic, actor, SACConfig(actor_lr=lr, critic_lr=lr, alpha_lr=lr,
                                                               batch_size=batch, gamma=GAMMA), seed=seed)


def one_run(job) -> dict:
    env_id, algo, kind, seed, cfg = job
    torch.set_num_threads(1)
    import gymnasium as gym

    space = gym.make(env_id)
    state_dim, action_dim = space.observation_space.shape[0], space.action_space.shape[0]
    agent = _agent(algo, kind, state_dim, action_dim, cfg, seed)
    steps = cfg["envs"][env_id]
    probe_at = {steps // 2 // cfg["eval_every"] * cfg["eval_every"], steps}

    def probe(t, agent, env):
        if t not in probe_at:
            return None
        snaps = collect_states(agent, env, cfg["probe_states"], seed=20_000 + seed)
        return {"step": t, **gradient_probe(agent, env, snaps, gamma=GAMMA, horizon=cfg["probe_horizon"])}

    start = time.perf_counter()
    out = train(agent, env_id, steps, seed=seed, start_steps=cfg["start_steps"], eval_every=cfg["eval_every"],
                eval_episodes=cfg["eval_episodes"], batch_size=cfg["batch_size"], on_eval=probe)
    final = evaluate(agent, out["env"], cfg["final_episodes"], seed=50_000 + seed)
    xs, ys = out["steps"], out["returns"]
    auc = sum((b - a) * (u + v) / 2 for a, b, u, v in zip(xs, xs[1:], ys, ys[1:], strict=False)) / xs[-1]
    probes = [p for p in out["probes"] if p is not None]
    return {"env": env_id, "algo": algo, "critic": kind, "seed": seed, "steps": xs, "returns": ys, "auc": auc,
            "final": final, "probes": probes, "wall_s": time.perf_counter() - start,
            "critic_params": sum(p.numel() for p in agent.q1.parameters() if p.requires_grad)}


def _ms(values) -> str:
    values = [v for v in values if v == v]  # drop NaN
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {sd:.2f}"


def _table(rows) -> str:
    lines = [f"{'env':<20} {'algo':<4} {'critic':<6} {'params':>7} {'AUC (mean return)':>20} "
             f"{'final (10 ep.)':>20} {'cos mid':>14} {'cos end':>14} {'sign end':>9} {'s/run':>6}"]
    for key in dict.fromkeys((r["env"], r["algo"], r["critic"]) for r in rows):
        rs = [r for r in rows if (r["env"], r["algo"], r["critic"]) == key]
        mid = [r["probes"][0]["cosine"] for r in rs if len(r["probes"]) > 1]
        end = [r["probes"][-1]["cosine"] for r in rs if r["probes"]]
        sign = [r["probes"][-1]["sign_agreement"] for r in rs if r["probes"]]
        lines.append(f"{key[0]:<20} {key[1]:<4} {key[2]:<6} {rs[0]['critic_params']:>7} "
                     f"{_ms([r['auc'] for r in rs]):>20} {_ms([r['final'] for r in rs]):>20} {_ms(mid):>14} "
                     f"{_ms(end):>14} {statistics.fmean(sign) if sign else float('nan'):>9.2f} "
                     f"{statistics.fmean(r['wall_s'] for r in rs):>6.0f}")
    return "\n".join(lines)


def _claims_of(rows) -> list[dict]:
    """Per env x algorithm, paired by seed: the hyper critic vs the MLP critic on the return curve's
    area, and on the end-of-training gradient-probe cosine (seeds where both probes are finite)."""
    claims = []
    for env_id, algo in dict.fromkeys((r["env"], r["algo"]) for r in rows):
        by = {k: {r["seed"]: r for r in rows if (r["env"], r["algo"], r["critic"]) == (env_id, algo, k)}
              for k in ("hyper", "mlp")}
        seeds = sorted(by["hyper"])
        claims.append(_claims.paired(f"{env_id}, {algo}: the hyper critic gives a higher return curve",
                                     "area under the evaluation-return curve", [by["hyper"][s]["auc"] for s in seeds],
                                     [by["mlp"][s]["auc"] for s in seeds], ours_name="hyper", baseline_name="mlp"))
        cos = {k: {s: r["probes"][-1]["cosine"] if r["probes"] else float("nan") for s, r in by[k].items()}
               for k in by}
        both = [s for s in seeds if math.isfinite(cos["hyper"][s]) and math.isfinite(cos["mlp"][s])]
        statement = f"{env_id}, {algo}: the hyper critic's ∂Q/∂a points closer to the true return gradient"
        if not both:
            claims.append(_claims.untestable(statement, "no seed has a finite gradient probe for both critics"))
            continue
        claims.append(_claims.paired(statement, "cosine with a finite-difference return gradient, end of training",
                                     [cos["hyper"][s] for s in both], [cos["mlp"][s] for s in both],
                                     ours_name="hyper", baseline_name="mlp"))
    return claims


def _plot(rows, path) -> None:
    plt = pyplot()
    envs = list(dict.fromkeys(r["env"] for r in rows))
    fig, axes = plt.subplots(1, len(envs), figsize=(4.2 * len(envs), 3.2), squeeze=False)
    for ax, env_id in zip(axes[0], envs, strict=True):
        for key in dict.fromkeys((r["algo"], r["critic"]) for r in rows if r["env"] == env_id):
            rs = [r for r in rows if (r["env"], r["algo"], r["critic"]) == (env_id, *key)]
            ys = torch.tensor([r["returns"] for r in rs])  # (seeds, evaluations)
            mean, sd = ys.mean(0), (ys.std(0) if len(rs) > 1 else torch.zeros(ys.shape[1]))
            line, = ax.plot(rs[0]["steps"], mean, label=f"{key[0]} + {key[1]} critic")
            ax.fill_between(rs[0]["steps"], mean - sd, mean + sd, color=line.get_color(), alpha=0.2)
        ax.set(title=env_id, xlabel="environment steps", ylabel="evaluation return")
        ax.legend(fontsize=7)
    save(fig, path)


def run(quick: bool, out_dir, log=print) -> dict:
    cfg = QUICK if quick else FULL
    jobs = [(env_id, algo, kind, seed, cfg) for env_id in cfg["envs"] for algo in cfg["algos"]
            for kind in ("mlp", "hyper") for seed in range(cfg["seeds"])]
    jobs.sort(key=lambda j: -cfg["envs"][j[0]] * (2 if j[2] == "hyper" else 1))  # longest first
    log(f"rl-critic: {len(jobs)} runs, {cfg['workers']} worker process(es), 1 thread each")
    rows = run_jobs(one_run, jobs, cfg["workers"])
    rows.sort(key=lambda r: (r["env"], r["algo"], r["critic"] != "mlp", r["seed"]))
    plot = out_dir / "rl-critic.png"
    _plot(rows, plot)
    config = {k: v for k, v in cfg.items() if k != "workers"} | {"hidden": HIDDEN, "hyper": HYPER, "gamma": GAMMA}
    return {"config": config, "claims": _claims_of(rows), "runs": rows, "table": _table(rows), "plot": str(plot)}
