"""Reproduction ``modumorph``: zero-shot control of unseen planar N-link chains.

Xiong, Beck, Whiteson, "Universal Morphology Control via Contextual Modulation", ICML 2023.
Claim: generating each limb's control parameters from its morphology with hypernetworks, and letting
the morphology set the attention between limbs, generalises better to unseen morphologies than one
shared controller that gets the context concatenated to its inputs.

Scaled down: 190 random chains (N = 2-5 links, lengths 0.2-0.6 m, masses 0.2-1.5 kg) built as MuJoCo
XML; expert = LQR around upright per chain. Controllers are trained by DAgger against the experts
(``ModuMorph.fit``) on 150 chains and tested on 40 held-out chains x 10 start states. The baseline
(``ConcatContext``) has about the same parameter count and the same DAgger budget; Adam's learning rate
is swept alike for every controller on a tuning seed, training on 120 of the 150 chains and scoring on
the other 30 (validation). An ablation with ModuMorph's hypernetworks but ordinary (state-dependent)
attention separates the two mechanisms.
Metrics: closed-loop success (3 s from a random tilt, every joint stays within 1 rad and ends within
0.05 rad of upright; a diverged simulation is a failure, also reported as "diverged") and relative
action error Σ(u - u*)² / Σu*² on random states near upright.
"""

from __future__ import annotations

import functools
import statistics
import time

import torch

from ..methods.rl.dagger import ChainSet, DAggerConfig, upright
from ..methods.rl.modumorph import ConcatContext, ModuMorph
from ..methods.rl.morph import lqr_gain, random_chain
from . import _claims
from ._common import configured, pyplot, run_jobs, save, sweep_lines

DAGGER = {"rounds": 6, "initial_states": 200, "rollouts": 2, "horizon": 300, "steps": 250}
FULL = {"seeds": 5, "tuning_seed": 100, "lrs": (3e-4, 1e-3, 3e-3), "dagger": DAGGER, "starts": 10, "states": 250,
        "kinds": ("modumorph", "concat", "state-attention"), "workers": 1}
QUICK = {"seeds": 2, "tuning_seed": 100, "lrs": (1e-3,), "starts": 1, "states": 20, "kinds": ("modumorph", "concat"),
         "dagger": {"rounds": 1, "initial_states": 20, "rollouts": 1, "horizon": 30, "steps": 5}, "workers": 1}
CHAINS, TRAIN, FIT, MAX_LINKS = 190, 150, 120, 5  # chains 0-119 fit, 120-149 validation, 150-189 held out
CONCAT_HIDDEN = 67  # ConcatContext's MLP width that matches ModuMorph's parameter count (13,736 vs 13,713)
TILT = DAggerConfig().tilt  # std of the initial joint angles (rad), as in DAgger's rollouts
NAMES = {"modumorph": "ModuMorph", "concat": "concatenated context", "state-attention": "ModuMorph, state attention"}


@functools.cache
def _chains():
    """The 190 chains (seed 0) and their LQR gains, computed once per process."""
    gen = torch.Generator().manual_seed(0)
    chains = [random_chain(gen) for _ in range(CHAINS)]
    return chains, [lqr_gain(c) for c in chains]


def _model(kind: str, seed: int):
    torch.manual_seed(seed)
    if kind == "concat":
        return ConcatContext(hidden=CONCAT_HIDDEN)
    return ModuMorph(seed=seed, fixed_attention=kind == "modumorph")


def _rel_error(model, data: ChainSet, states: int, seed: int) -> float:
    """Σ(u - u*)² / Σu*² over ``states`` random states per chain."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.arange(len(data.chains)).repeat_interleave(states)
    x = data.random_states(ids, gen)
    target = data.expert(ids, x)
    with torch.no_grad():
        pred = model(*data.inputs(ids, x)) * model.action_scale
    return ((pred - target).square().sum() / target.square().sum()).item()


def _closed_loop(model, data: ChainSet, starts: int, horizon: int, seed: int) -> dict:
    """Success and divergence rates over ``starts`` tilted starts per chain (model None: the LQR experts)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.arange(len(data.chains)).repeat(starts)
    states = data.rollout(ids, model, data.starts(ids, TILT, gen), horizon)  # (T + 1, S, L, 2)
    success = upright(states)[-1] & (states[-1, :, :, 0].abs().amax(-1) < 0.05)
    diverged = torch.isinf(states[-1]).flatten(1).any(1)  # a diverged rollout stays inf
    return {"success": success.float().mean().item(), "diverged": diverged.float().mean().item(), "rollouts": len(ids)}


def one_run(job) -> dict:
    """Train one controller by DAgger on ``train`` chains and score it on ``test`` chains."""
    kind, seed, lr, split, cfg = job
    torch.set_num_threads(1)
    chains, gains = _chains()
    train, test = (slice(0, FIT), slice(FIT, TRAIN)) if split == "validation" else (slice(0, TRAIN),
                                                                                     slice(TRAIN, CHAINS))
    model = _model(kind, seed)
    start = time.perf_counter()
    losses = model.fit(chains[train], DAggerConfig(**cfg["dagger"]), gains=gains[train], lr=lr, seed=seed)
    out = {"kind": kind, "seed": seed, "lr": lr, "split": split, "train_s": time.perf_counter() - start,
           "final_loss": statistics.fmean(losses[-50:]),
           "params": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    data = ChainSet(chains[test], MAX_LINKS, gains[test])
    horizon = cfg["dagger"]["horizon"]
    out |= {f"test_{k}": v for k, v in _closed_loop(model, data, cfg["starts"], horizon, 2000 + seed).items()}
    out["test_rel_error"] = _rel_error(model, data, cfg["states"], 1000 + seed)
    if split == "test":  # for reference: the same on 40 of the training chains
        seen = ChainSet(chains[:CHAINS - TRAIN], MAX_LINKS, gains[:CHAINS - TRAIN])
        out |= {f"train_{k}": v for k, v in _closed_loop(model, seen, cfg["starts"], horizon, 3000 + seed).items()}
    return out


def _expert(cfg: dict) -> dict:
    """The LQR experts' success on the held-out chains (same starts as seed 0's test rollouts)."""
    chains, gains = _chains()
    data = ChainSet(chains[TRAIN:], MAX_LINKS, gains[TRAIN:])
    return _closed_loop(None, data, cfg["starts"], cfg["dagger"]["horizon"], 2000)


def _select(row: dict) -> float:
    """Validation score of a tuning run: success rate, ties broken by lower relative action error."""
    return row["test_success"] - 1e-3 * row["test_rel_error"]


def _tune(cfg: dict) -> tuple[dict, list[dict]]:
    """The learning rate of each controller, chosen on the validation chains with the tuning seed."""
    jobs = [(kind, cfg["tuning_seed"], lr, "validation", cfg) for kind in cfg["kinds"] for lr in cfg["lrs"]]
    sweep = run_jobs(one_run, jobs, cfg["workers"])
    for r in sweep:
        r["score"] = _select(r)
    best = {kind: max((r for r in sweep if r["kind"] == kind), key=lambda r: r["score"])["lr"]
            for kind in cfg["kinds"]}
    return best, sweep


def _ms(vals) -> str:
    return f"{statistics.fmean(vals):.3f} ± {statistics.stdev(vals) if len(vals) > 1 else 0.0:.3f}"


def _table(rows, sweep, lrs, expert, cfg) -> str:
    kinds = cfg["kinds"]
    lines = [f"{CHAINS - TRAIN} held-out chains x {cfg['starts']} starts (DAgger on {TRAIN} chains); "
             f"LQR experts succeed in {expert['success']:.2f} of them",
             f"{'controller':<27} {'params':>7} {'lr':>6} {'held-out success':>17} {'diverged':>9} "
             f"{'held-out error':>15} {'train success':>14} {'train s':>8}"]
    for kind in kinds:
        rs = [r for r in rows if r["kind"] == kind]
        lines.append(f"{NAMES[kind]:<27} {rs[0]['params']:>7} {lrs[kind]:>6.0e} "
                     f"{_ms([r['test_success'] for r in rs]):>17} "
                     f"{statistics.fmean(r['test_diverged'] for r in rs):>9.2f} "
                     f"{_ms([r['test_rel_error'] for r in rs]):>15} {_ms([r['train_success'] for r in rs]):>14} "
                     f"{statistics.fmean(r['train_s'] for r in rs):>8.0f}")
    lines += sweep_lines(f"Adam learning rate swept alike for every controller, tuning seed {cfg['tuning_seed']}, "
                         f"DAgger on chains 0-{FIT - 1}: validation success on chains {FIT}-{TRAIN - 1} "
                         "(- 0.001 x action error, to break ties)", NAMES, kinds, sweep, "score",
                         lambda v: f"{v:6.3f}", 27)
    return "\n".join(lines)


def _claims_of(rows, kinds) -> list[dict]:
    """Paired by seed on the held-out chains."""
    def get(kind, key):
        return [r[key] for r in sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["seed"])]

    claims = [_claims.paired("held-out chains: ModuMorph balances more of them in closed loop than the "
                             "concatenated-context controller", "closed-loop success rate",
                             get("modumorph", "test_success"), get("concat", "test_success"),
                             ours_name="modumorph", baseline_name="concat"),
              _claims.paired("held-out chains: ModuMorph imitates the expert more closely than the "
                             "concatenated-context controller", "relative action error",
                             get("modumorph", "test_rel_error"), get("concat", "test_rel_error"),
                             ours_name="modumorph", baseline_name="concat", direction="lower")]
    if "state-attention" in kinds:
        claims.append(_claims.paired("held-out chains: the morphology-dependent attention helps (ModuMorph vs the "
                                     "same hypernetworks with state-dependent attention)", "closed-loop success rate",
                                     get("modumorph", "test_success"), get("state-attention", "test_success"),
                                     ours_name="modumorph", baseline_name="state-attention"))
    return claims


def _plot(rows, kinds, path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, key, title in ((axes[0], "test_success", "held-out closed-loop success"),
                           (axes[1], "test_rel_error", "held-out relative action error")):
        for i, kind in enumerate(kinds):
            vals = [r[key] for r in rows if r["kind"] == kind]
            ax.bar(i, statistics.fmean(vals), color=f"C{i}", alpha=0.6)
            ax.scatter([i] * len(vals), vals, color="k", s=10)
        ax.set(xticks=range(len(kinds)), xticklabels=[NAMES[k].replace(" ", "\n", 1) for k in kinds], title=title)
    save(fig, path)


def run(quick: bool, out_dir, log=print) -> dict:
    cfg = configured(QUICK if quick else FULL)
    kinds = cfg["kinds"]
    log(f"modumorph: {len(kinds) * len(cfg['lrs'])} tuning runs, then {len(kinds) * cfg['seeds']} test runs, "
        f"{cfg['workers']} worker process(es), 1 thread each")
    lrs, sweep = _tune(cfg)
    jobs = [(kind, seed, lrs[kind], "test", cfg) for seed in range(cfg["seeds"]) for kind in kinds]
    rows = run_jobs(one_run, jobs, cfg["workers"])
    expert = _expert(cfg)
    plot = out_dir / "modumorph.png"
    _plot(rows, kinds, plot)
    chains = [{"lengths": c.lengths, "masses": c.masses} for c in _chains()[0]]
    config = {k: v for k, v in cfg.items() if k != "workers"} | {
        "chains": chains, "fit_chains": f"0-{FIT - 1}", "validation_chains": f"{FIT}-{TRAIN - 1}",
        "train_chains": f"0-{TRAIN - 1}", "heldout_chains": f"{TRAIN}-{CHAINS - 1}", "chosen_lr": lrs,
        "swept": "Adam learning rate, for every controller alike, on the tuning seed's validation success",
        "concat_hidden": CONCAT_HIDDEN}
    return {"config": config, "claims": _claims_of(rows, kinds), "runs": rows, "sweep": sweep, "expert": expert,
            "table": _table(rows, sweep, lrs, expert, cfg), "plot": str(plot)}
