"""Reproduction ``continual``: task-conditioned hypernetworks vs weight-regularisation baselines.

Claim (von Oswald et al., ICLR 2020): the hypernetwork's output regulariser keeps almost all of the
earlier tasks' accuracy (forgetting near 0) and beats EWC / online EWC / SI on final average
accuracy, most clearly on the permuted benchmark; with β = 0 it forgets like fine-tuning.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from .. import methods
from . import _claims
from ._common import pyplot, run_jobs, save
from .continual_tasks import batches, global_batches, permuted_fashion_mnist, split_fashion_mnist

FULL = {"seeds": 3, "steps": {"split": 300, "permuted": 500}, "tasks": {"split": 5, "permuted": 10},
        "grid": {"ewc": [1e2, 1e4, 1e6], "online_ewc": [1e2, 1e4, 1e6], "si": [0.1, 1.0, 10.0]}, "workers": 2}
QUICK = {"seeds": 1, "steps": {"split": 5, "permuted": 5}, "tasks": {"split": 2, "permuted": 2},
         "grid": {"ewc": [1e4], "online_ewc": [1e4], "si": [1.0]}, "workers": 1}
BETA = {"split": 0.01, "permuted": 0.05}
HIDDEN, BATCH, LR = 100, 128, 1e-3
BENCHMARKS = {"split": split_fashion_mnist, "permuted": permuted_fashion_mnist}


def mlp(out_features: int, head: bool = True) -> nn.Module:
    layers = [nn.Linear(784, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(HIDDEN, out_features)) if head else nn.Sequential(*layers)


def hnet_learner(bench, variant: str, seed: int):
    beta = 0.0 if variant == "hnet-beta0" else BETA[bench.name]
    head = {"head": "chunked", "chunk_size": 1000, "hidden": (32, 32)} if variant == "hnet-chunked" else \
        {"head": "full", "hidden": (25, 25)}
    return methods.continual.HyperCL(mlp(bench.classes_per_task), num_tasks=len(bench.tasks), beta=beta,
                                     lr=LR, seed=seed, **head)


def baseline_learner(bench, scenario: str, method: str, strength: float):
    if scenario == "CL1":
        model = methods.continual.MultiHead(mlp(0, head=False), HIDDEN, bench.classes_per_task, len(bench.tasks))
        return methods.continual.RegularizedCL(model, method, strength, multi_head=True, lr=LR)
    out = bench.classes_per_task if scenario == "CL2" else bench.num_classes
    return methods.continual.RegularizedCL(mlp(out), method, strength, lr=LR)


def accuracy(learner, bench, scenario: str, j: int, is_hnet: bool) -> float:
    """Test accuracy on task j in ``scenario``."""
    task = bench.tasks[j]
    if scenario == "CL1":
        pred = learner.predict(task.xt, j).argmax(1)
        return (pred == task.yt).float().mean().item()
    if scenario == "CL2":
        pred = learner.predict(task.xt, None).argmax(1)
        return (pred == task.yt).float().mean().item()
    if is_hnet:  # CL3: infer the task, then the class within it
        inferred = learner.infer_task(task.xt)
        pred = inferred * bench.classes_per_task + learner.predict(task.xt, inferred).argmax(1)
    else:
        pred = learner.predict(task.xt, None).argmax(1)
    return (pred == task.yt + task.offset).float().mean().item()


_benchmarks: dict = {}


def _run(job) -> list[dict]:
    """Train one learner through the sequence; accuracy matrices for the scenarios it serves."""
    bench_name, label, scenario, method, strength, seed, num_tasks, steps = job
    torch.set_num_threads(1)
    if (bench_name, num_tasks) not in _benchmarks:
        _benchmarks[(bench_name, num_tasks)] = BENCHMARKS[bench_name](num_tasks)
    bench = _benchmarks[(bench_name, num_tasks)]
    torch.manual_seed(seed)
    is_hnet = label.startswith("hnet")
    learner = hnet_learner(bench, label, seed) if is_hnet else baseline_learner(bench, scenario, method, strength)
    scenarios = bench.scenarios if is_hnet else (scenario,)
    matrices = {s: [] for s in scenarios}
    start = time.time()
    for t, task in enumerate(bench.tasks):
        data = global_batches(task, BATCH, seed * 100 + t) if scenario == "CL3" and not is_hnet \
            else batches(task, BATCH, seed * 100 + t)
        learner.fit_task(data, t, steps=steps)
        for s in scenarios:
            matrices[s].append([accuracy(learner, bench, s, j, is_hnet) for j in range(t + 1)])
    wall = time.time() - start
    trainable = sum(p.numel() for p in learner.parameters() if p.requires_grad)
    target = sum(p.numel() for p in (learner.hnet.target if is_hnet else learner.model).parameters())
    return [{"benchmark": bench_name, "scenario": s, "method": label, "strength": strength, "seed": seed,
             "matrix": m, "trainable": trainable, "target_params": target, "wall_s": wall} for s, m in matrices.items()]


def _metrics(matrix: list[list[float]]) -> dict:
    final = matrix[-1]
    just_learned = [matrix[j][j] for j in range(len(matrix))]
    forgetting = [100 * (matrix[j][j] - final[j]) for j in range(len(matrix) - 1)]
    return {"final": statistics.fmean(final), "just_learned": statistics.fmean(just_learned),
            "forgetting_pp": statistics.fmean(forgetting) if forgetting else 0.0}


def _summary(rows: list[dict]) -> list[dict]:
    """Mean over seeds per setting; for swept baselines keep the strength with the best final accuracy."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["benchmark"], r["scenario"], r["method"], r["strength"]), []).append(r)
    settings = []
    for (bench, scenario, method, strength), rs in groups.items():
        ms = [_metrics(r["matrix"]) for r in rs]
        settings.append({"benchmark": bench, "scenario": scenario, "method": method, "strength": strength,
                         "seeds": len(rs), **{k: statistics.fmean(m[k] for m in ms) for k in ms[0]},
                         "final_std": statistics.pstdev(m["final"] for m in ms),
                         "trainable": rs[0]["trainable"], "compression": rs[0]["trainable"] / rs[0]["target_params"],
                         "wall_s": statistics.fmean(r["wall_s"] for r in rs)})
    best: dict = {}
    for s in settings:
        key = (s["benchmark"], s["scenario"], s["method"])
        if key not in best or s["final"] > best[key]["final"]:
            best[key] = s
    return list(best.values())


def _per_seed(rows: list[dict], bench: str, scenario: str, method: str, strength, key: str) -> list[float]:
    rs = sorted((r for r in rows if (r["benchmark"], r["scenario"], r["method"], r["strength"])
                 == (bench, scenario, method, strength)), key=lambda r: r["seed"])
    return [_metrics(r["matrix"])[key] for r in rs]


def _claims_of(rows: list[dict], summary: list[dict]) -> list[dict]:
    """Per benchmark x scenario: each hypernetwork vs the best regularisation baseline on final accuracy,
    paired by seed; with the task id (CL1): the hypernetwork's forgetting, and β = 0's."""
    claims = []
    for bench, scenario in dict.fromkeys((s["benchmark"], s["scenario"]) for s in summary):
        here = [s for s in summary if (s["benchmark"], s["scenario"]) == (bench, scenario)]
        best = max((s for s in here if s["method"] in ("ewc", "online_ewc", "si")), key=lambda s: s["final"])
        base = _per_seed(rows, bench, scenario, best["method"], best["strength"], "final")
        name = f"{best['method']} {best['strength']:g}"
        for hnet in ("hnet", "hnet-chunked"):
            claims.append(_claims.paired(
                f"{bench} {scenario}: {hnet} has a higher final accuracy than the best regularisation baseline "
                "(its strength picked by final test accuracy)", "final mean test accuracy",
                _per_seed(rows, bench, scenario, hnet, None, "final"), base, ours_name=hnet, baseline_name=name))
        if scenario == "CL1":
            hnet = _per_seed(rows, bench, scenario, "hnet", None, "forgetting_pp")
            claims.append(_claims.target(f"{bench} CL1: hnet forgets less than 1 point", "forgetting (points)", hnet,
                                         ours_name="hnet", direction="lower", against=1.0))
            claims.append(_claims.paired(
                f"{bench} CL1: without its regulariser (β = 0) the hypernetwork forgets more", "forgetting (points)",
                _per_seed(rows, bench, scenario, "hnet-beta0", None, "forgetting_pp"), hnet,
                ours_name="hnet-beta0", baseline_name="hnet"))
    return claims


def _table(summary: list[dict]) -> str:
    lines = []
    for bench in dict.fromkeys(s["benchmark"] for s in summary):
        for scenario in dict.fromkeys(s["scenario"] for s in summary if s["benchmark"] == bench):
            lines.append(f"\n{bench} Fashion-MNIST, {scenario} (mean over {summary[0]['seeds']} seed(s); "
                         "baselines at their best swept strength)")
            lines.append(f"{'method':<14} {'strength':>8} {'final acc':>10} {'± std':>6} {'just learned':>12} "
                         f"{'forgetting pp':>13} {'trainable':>10} {'compr.':>7} {'wall s':>7}")
            for s in sorted((s for s in summary if (s["benchmark"], s["scenario"]) == (bench, scenario)),
                            key=lambda s: -s["final"]):
                strength = "-" if s["strength"] is None else f"{s['strength']:g}"
                lines.append(f"{s['method']:<14} {strength:>8} {100 * s['final']:>10.2f} {100 * s['final_std']:>6.2f} "
                             f"{100 * s['just_learned']:>12.2f} {s['forgetting_pp']:>13.2f} {s['trainable']:>10,} "
                             f"{s['compression']:>7.2f} {s['wall_s']:>7.1f}")
    return "\n".join(lines)


def _plot(rows: list[dict], path) -> None:
    plt = pyplot()
    summary = {(s["benchmark"], s["scenario"], s["method"]): s["strength"] for s in _summary(rows)}
    panels = list(dict.fromkeys((r["benchmark"], r["scenario"]) for r in rows))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
    for ax, (bench, scenario) in zip(axes[0], panels, strict=True):
        for method in dict.fromkeys(r["method"] for r in rows if (r["benchmark"], r["scenario"]) == (bench, scenario)):
            rs = [r for r in rows if (r["benchmark"], r["scenario"], r["method"]) == (bench, scenario, method)
                  and r["strength"] == summary[(bench, scenario, method)]]
            steps = range(len(rs[0]["matrix"]))
            curve = [statistics.fmean(statistics.fmean(r["matrix"][t]) for r in rs) for t in steps]
            ax.plot(range(1, len(curve) + 1), curve, marker=".", label=method)
        ax.set(title=f"{bench}, {scenario}", xlabel="tasks learned", ylabel="mean accuracy on tasks so far")
        ax.title.set_fontsize(9)
    axes[0][0].legend(fontsize=7)
    save(fig, path)


def run(quick: bool, out_dir, log=print) -> dict:
    cfg = QUICK if quick else FULL
    jobs = []
    for bench in BENCHMARKS:
        n, steps = cfg["tasks"][bench], cfg["steps"][bench]
        scenarios = ("CL1", "CL2", "CL3") if bench == "split" else ("CL1", "CL2")
        for seed in range(cfg["seeds"]):
            for label in ("hnet", "hnet-chunked", "hnet-beta0"):
                jobs.append((bench, label, None, None, None, seed, n, steps))
            for scenario in scenarios:
                jobs.append((bench, "finetune" if scenario != "CL1" else "multihead-ft", scenario, "finetune", None,
                             seed, n, steps))
                for method, grid in cfg["grid"].items():
                    for strength in grid:
                        jobs.append((bench, method, scenario, method, strength, seed, n, steps))
    jobs.sort(key=lambda j: not j[1].startswith("hnet"))  # the long runs first
    log(f"continual: {len(jobs)} training sequences, {cfg['workers']} worker process(es), 1 torch thread each")
    rows = [r for rs in run_jobs(_run, jobs, cfg["workers"]) for r in rs]
    summary = _summary(rows)
    plot = out_dir / "continual.png"
    _plot(rows, plot)
    return {"config": cfg, "beta": BETA, "summary": summary, "claims": _claims_of(rows, summary), "runs": rows,
            "table": _table(summary), "plot": str(plot)}
