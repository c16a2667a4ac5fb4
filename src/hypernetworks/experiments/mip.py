"""Reproduction ``mip``: does MIP converge faster and more stably than a plain hypernetwork?

Claim (Ortiz, Guttag, Dalca, ICLR 2024): magnitude-invariant parametrizations (constant-norm
encoding of γ + residual θ = θ0 + h) stabilise training and speed up convergence, in every
optimiser setting. Grid: 2 tasks x {plain, encoding only, residual only, MIP} x
{Adam 1e-4, 1e-3, 1e-2; SGD-momentum 1e-2, 1e-1} x seeds.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict

import torch

from . import _claims
from ._common import configured, pyplot, run_jobs, save
from .mip_tasks import INIT_GAMMAS, OPTIMIZERS, TASKS, VARIANTS, train_run

FULL = {"seeds": 5, "steps": 500, "optimizers": list(OPTIMIZERS), "tasks": list(TASKS), "workers": 2}
QUICK = {"seeds": 1, "steps": 20, "optimizers": ["adam-1e-3"], "tasks": list(TASKS), "workers": 1}

_task_cache: dict = {}


def _one(args):
    task_name, variant, optimizer, seed, steps, quick = args
    torch.set_num_threads(1)
    key = (task_name, quick)
    if key not in _task_cache:
        sizes = {"n_train": 2000, "n_test": 200} if quick else {}
        _task_cache[key] = TASKS[task_name](**sizes)
    result, _ = train_run(_task_cache[key], variant, optimizer, seed, steps, eval_every=10 if quick else 50)
    return {"task": task_name, "variant": variant, "optimizer": optimizer, "seed": seed, **asdict(result)}


def _summary(rows: list[dict], steps: int) -> list[dict]:
    """One row per task x optimizer x variant: medians/means over seeds."""
    out = []
    keys = sorted({(r["task"], r["optimizer"], r["variant"]) for r in rows},
                  key=lambda k: (k[0], list(OPTIMIZERS).index(k[1]), list(VARIANTS).index(k[2])))
    for task, opt, variant in keys:
        group = [r for r in rows if (r["task"], r["optimizer"], r["variant"]) == (task, opt, variant)]
        metric = TASKS[task].metric
        reached = [r["steps_to_target"] for r in group if r["steps_to_target"] is not None]
        finite = [r for r in group if not r["diverged"]]

        def mean(key, rs=finite):
            vals = [r["final"][key] for r in rs if math.isfinite(r["final"][key])]
            return statistics.fmean(vals) if vals else float("nan")

        out.append({
            "task": task, "optimizer": opt, "variant": variant, "runs": len(group),
            "reached": len(reached), "median_steps_to_target": statistics.median(reached) if reached else None,
            f"{metric}@0": mean(f"{metric}@0.0"), f"{metric}@0.5": mean(f"{metric}@0.5"),
            "loss@0": mean("loss@0.0"), "loss@1": mean("loss@1.0"),
            "grad_cv": statistics.fmean(r["grad_cv"] for r in finite) if finite else float("nan"),
            "diverged": sum(r["diverged"] for r in group),
        })
    return out


def _table(summary: list[dict]) -> str:
    lines = []
    for task in dict.fromkeys(s["task"] for s in summary):
        metric = TASKS[task].metric
        thr = TASKS[task].threshold
        lines.append(f"\n{task}: steps to {metric} >= {thr} (median over seeds that reached it), "
                     f"final test {metric} and loss, gradient-norm CV")
        lines.append(f"{'optimizer':<10} {'variant':<9} {'reached':>8} {'steps':>6} {metric + '@0':>12} "
                     f"{metric + '@.5':>12} {'loss@0':>8} {'loss@1':>8} {'grad CV':>8} {'diverged':>8}")
        for s in (s for s in summary if s["task"] == task):
            steps = "-" if s["median_steps_to_target"] is None else f"{s['median_steps_to_target']:.0f}"
            lines.append(f"{s['optimizer']:<10} {s['variant']:<9} {s['reached']:>4}/{s['runs']:<3} {steps:>6} "
                         f"{s[metric + '@0']:>12.3f} {s[metric + '@0.5']:>12.3f} {s['loss@0']:>8.3f} "
                         f"{s['loss@1']:>8.3f} {s['grad_cv']:>8.2f} {s['diverged']:>8}")
    return "\n".join(lines)


def _init_norm_table(rows: list[dict]) -> str:
    lines = ["\n‖θ(γ)‖ at init (seed 0): " + " ".join(f"γ={g:<5}" for g in INIT_GAMMAS)]
    for r in rows:
        if r["seed"] == 0 and r["optimizer"] == rows[0]["optimizer"]:
            lines.append(f"{r['task']:<16} {r['variant']:<9} " + " ".join(f"{n:7.2f}" for n in r["init_norms"]))
    return "\n".join(lines)


def _claims_of(rows: list[dict]) -> list[dict]:
    """Per task x optimiser: MIP vs plain on the task's target metric, paired by seed over the seeds
    where neither diverged; and, where any run diverged, the divergence rate (1 or 0 per seed)."""
    claims = []
    for task, opt in dict.fromkeys((r["task"], r["optimizer"]) for r in rows):
        metric, gamma = TASKS[task].metric, 0.5 if TASKS[task].metric == "psnr" else 0.0
        by = {v: {r["seed"]: r for r in rows if (r["task"], r["optimizer"], r["variant"]) == (task, opt, v)}
              for v in ("mip", "plain")}
        seeds = sorted(by["mip"])
        both = [s for s in seeds if not by["mip"][s]["diverged"] and not by["plain"][s]["diverged"]]
        key = f"{metric}@{gamma}"
        if both:
            claims.append(_claims.paired(
                f"{task}, {opt}: MIP ends with a higher test {metric} at γ = {gamma} than plain (seeds where "
                "neither diverged)", f"test {metric}", [by["mip"][s]["final"][key] for s in both],
                [by["plain"][s]["final"][key] for s in both], ours_name="mip", baseline_name="plain"))
        if any(by[v][s]["diverged"] for v in by for s in seeds):
            claims.append(_claims.paired(
                f"{task}, {opt}: fewer MIP runs diverge than plain runs", "diverged (1 or 0 per seed)",
                [float(by["mip"][s]["diverged"]) for s in seeds], [float(by["plain"][s]["diverged"]) for s in seeds],
                ours_name="mip", baseline_name="plain", direction="lower"))
    return claims


def _plot(rows: list[dict], path) -> None:
    plt = pyplot()
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    opts = list(dict.fromkeys(r["optimizer"] for r in rows))
    fig, axes = plt.subplots(len(tasks), len(opts), figsize=(3.2 * len(opts), 2.8 * len(tasks)), squeeze=False)
    for i, task in enumerate(tasks):
        for j, opt in enumerate(opts):
            ax = axes[i][j]
            for variant in VARIANTS:
                curves = [r for r in rows if (r["task"], r["optimizer"], r["variant"]) == (task, opt, variant)
                          and not r["diverged"]]
                if curves:
                    n = min(len(c["curve_loss"]) for c in curves)
                    mean = [statistics.fmean(c["curve_loss"][k] for c in curves) for k in range(n)]
                    ax.plot(curves[0]["curve_steps"][:n], mean, label=variant)
            ax.set_yscale("log")
            ax.set_title(f"{task}\n{opt}", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    fig.supxlabel("step")
    fig.supylabel("training loss (mean over seeds)")
    save(fig, path)


def run(quick: bool, out_dir, log=print) -> dict:
    """Run the grid; write ``mip.json`` and ``mip.png`` into ``out_dir``; return the results."""
    cfg = configured(QUICK if quick else FULL)
    jobs = [(task, variant, opt, seed, cfg["steps"], quick) for task in cfg["tasks"] for opt in cfg["optimizers"]
            for variant in VARIANTS for seed in range(cfg["seeds"])]
    log(f"mip: {len(jobs)} runs of {cfg['steps']} steps, {cfg['workers']} worker process(es), 1 torch thread each")
    rows = run_jobs(_one, jobs, cfg["workers"])
    summary = _summary(rows, cfg["steps"])
    table = _table(summary) + "\n" + _init_norm_table(rows)
    plot = out_dir / "mip.png"
    _plot(rows, plot)
    return {"config": cfg, "summary": summary, "claims": _claims_of(rows), "runs": rows, "table": table,
            "plot": str(plot)}
