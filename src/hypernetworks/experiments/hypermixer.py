"""Reproduction ``hypermixer``: HyperMixer vs MLP-Mixer vs self-attention at equal parameter count.

Claim (Mai et al., "HyperMixer: An MLP-based Low Cost Alternative to Transformers", ACL 2023):
HyperMixer, whose token-mixing weights a hypernetwork generates from the tokens, beats MLP-Mixer and
is on par with attention, at lower cost, and (unlike MLP-Mixer) handles sequences of any length.

Tasks (``hypermixer_tasks``): topic of a ``fortunes`` quote over 32 categories (14.7k quotes), and
``far-match``, a synthetic task whose answer depends on two marked tokens at least 32 positions
apart. Tuning: each model's Adam learning rate is swept alike over ``lrs`` on a tuning seed that is
never an evaluation seed, and chosen by accuracy on a validation split carved from the training
data; every evaluation seed then trains at the chosen rate and is scored on the test split.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from ..layers import SequenceClassifier
from . import _claims
from ._common import configured, pyplot, run_jobs, save, sweep_lines
from .hypermixer_tasks import TASKS

FULL = {"seeds": 5, "tuning_seed": 100, "lrs": (3e-4, 1e-3, 3e-3), "steps": {"fortunes": 1200, "far-match": 1000},
        "batch": 64, "workers": 1}
QUICK = {"seeds": 2, "tuning_seed": 100, "lrs": (3e-4, 1e-3, 3e-3), "steps": {"fortunes": 4, "far-match": 4},
         "batch": 32, "workers": 1}
DIM, DEPTH, MLP_HIDDEN = 64, 2, 128
# Token-mixing widths chosen so the three models have (almost) the same number of parameters.
MIXERS = {"hypermixer": {"mixer": "hyper", "hidden": 64}, "mlp-mixer": {"mixer": "mlp", "hidden": None},
          "transformer": {"mixer": "attention", "hidden": 64}}
NAMES = {m: m for m in MIXERS}


def build(task: dict, model: str) -> SequenceClassifier:
    """The classifier of ``model`` for ``task``; the MLP-Mixer's token MLP width h is set so that its
    2·L·h weights match the HyperMixer's two generator MLPs (2·(d·d + d·d'))."""
    kw = dict(MIXERS[model])
    if kw["hidden"] is None:
        kw["hidden"] = round(2 * (DIM * DIM + DIM * 64) / (2 * task["length"]))
    return SequenceClassifier(0, task["classes"], dim=DIM, depth=DEPTH, mlp_hidden=MLP_HIDDEN,
                              length=task["length"], vocab=task["vocab"], **kw)


@torch.no_grad()
def accuracy(model, data) -> float:
    """Fraction of ``data = (ids (N, L), mask (N, L), labels (N,))`` classified right."""
    x, mask, y = data
    model.eval()
    correct = sum(int((model(x[i:i + 500], mask[i:i + 500]).argmax(1) == y[i:i + 500]).sum())
                  for i in range(0, len(x), 500))
    model.train()
    return correct / len(x)


_tasks: dict = {}


def _task(name: str, quick: bool) -> dict:
    if (name, quick) not in _tasks:  # built once per worker process
        _tasks[(name, quick)] = TASKS[name](quick)
    return _tasks[(name, quick)]


def _train(task: dict, model_name: str, seed: int, lr: float, steps: int, batch: int):
    torch.manual_seed(seed)
    model = build(task, model_name)
    opt = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    x, mask, y = task["train"]
    gen = torch.Generator().manual_seed(seed)
    start = time.time()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        loss = F.cross_entropy(model(x[idx], mask[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model, time.time() - start


def _run(job) -> dict:
    """One training run; ``phase`` "tune" scores the validation split only, "eval" the test split too."""
    phase, task_name, model_name, seed, lr, steps, batch, quick = job
    torch.set_num_threads(1)
    task = _task(task_name, quick)
    model, train_s = _train(task, model_name, seed, lr, steps, batch)
    row = {"phase": phase, "task": task_name, "model": model_name, "kind": model_name, "seed": seed, "lr": lr,
           "val_accuracy": accuracy(model, task["val"]), "train_s": train_s,
           "params": sum(p.numel() for p in model.parameters())}
    if phase == "eval":
        row["accuracy"] = accuracy(model, task["test"])
        row["longer_accuracy"] = None
        if task["longer"] is not None and model_name != "mlp-mixer":  # its token MLP has a fixed length
            row["longer_accuracy"] = accuracy(model, task["longer"])
    return row


def _summary(rows):
    out = []
    for key in dict.fromkeys((r["task"], r["model"]) for r in rows):
        rs = [r for r in rows if (r["task"], r["model"]) == key]
        longer = [r["longer_accuracy"] for r in rs if r["longer_accuracy"] is not None]
        out.append({"task": key[0], "model": key[1], "seeds": len(rs), "lr": rs[0]["lr"],
                    "accuracy": statistics.fmean(r["accuracy"] for r in rs),
                    "accuracy_std": statistics.pstdev(r["accuracy"] for r in rs),
                    "longer_accuracy": statistics.fmean(longer) if longer else None,
                    "train_s": statistics.fmean(r["train_s"] for r in rs), "params": rs[0]["params"]})
    return out


def _claims_of(rows) -> list[dict]:
    """Per task, paired by seed: HyperMixer vs MLP-Mixer (higher), vs attention (at most 1 point lower);
    on fortunes, HyperMixer's accuracy on inputs up to 4x longer than in training vs on training lengths."""
    def acc(task, model, key="accuracy"):
        return [r[key] for r in sorted((r for r in rows if (r["task"], r["model"]) == (task, model)),
                                       key=lambda r: r["seed"])]

    claims = []
    for task in dict.fromkeys(r["task"] for r in rows):
        claims.append(_claims.paired(f"{task}: HyperMixer is more accurate than MLP-Mixer", "test accuracy",
                                     acc(task, "hypermixer"), acc(task, "mlp-mixer"), ours_name="hypermixer",
                                     baseline_name="mlp-mixer"))
        claims.append(_claims.paired(f"{task}: HyperMixer is on par with attention (at most 1 point below)",
                                     "test accuracy", acc(task, "hypermixer"), acc(task, "transformer"),
                                     ours_name="hypermixer", baseline_name="transformer", against=-0.01))
        if task == "fortunes":
            claims.append(_claims.paired(
                "fortunes: HyperMixer keeps its accuracy (within 1 point) on inputs up to 4x longer than in training",
                "test accuracy", acc(task, "hypermixer", "longer_accuracy"), acc(task, "hypermixer"),
                ours_name="up to 128 words", baseline_name="32 words", against=-0.01))
    claims.append(_claims.untestable("HyperMixer costs less than attention",
                                     "measured by benchmarks/hypermixer_scaling.py, not by this reproduction"))
    return claims


def _table(summary, sweep, tuning_seed: int) -> str:
    lines = []
    for task in dict.fromkeys(s["task"] for s in summary):
        longer = "test acc, up to 128 words" if task == "fortunes" else "longer input"
        lines.append(f"\n{task} (mean over {summary[0]['seeds']} evaluation seed(s), each at its chosen rate)")
        lines.append(f"{'model':<12} {'params':>9} {'lr':>6} {'test acc':>9} {'± std':>6} {'train s':>8} {longer:>26}")
        for s in (s for s in summary if s["task"] == task):
            if task != "fortunes":
                runs_longer = "-"
            elif s["longer_accuracy"] is None:
                runs_longer = "cannot run"
            else:
                runs_longer = f"{100 * s['longer_accuracy']:.2f}"
            lines.append(f"{s['model']:<12} {s['params']:>9,} {s['lr']:>6.0e} {100 * s['accuracy']:>9.2f} "
                         f"{100 * s['accuracy_std']:>6.2f} {s['train_s']:>8.1f} {runs_longer:>26}")
        lines += sweep_lines(f"{task}: Adam learning rate swept alike for every model, tuning seed {tuning_seed}: "
                             "validation accuracy (%) (the chosen one marked *)", NAMES, MIXERS,
                             [r for r in sweep if r["task"] == task], "val_accuracy", lambda v: f"{100 * v:>6.2f}", 12)
    return "\n".join(lines)


def _plot(rows, summary, path) -> None:
    """Test accuracy per model and task: mean bar, one dot per evaluation seed."""
    plt = pyplot()
    tasks = list(dict.fromkeys(s["task"] for s in summary))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        models = [s for s in summary if s["task"] == task]
        ax.bar([s["model"] for s in models], [100 * s["accuracy"] for s in models], color="lightsteelblue")
        for i, s in enumerate(models):
            seeds = [100 * r["accuracy"] for r in rows if (r["task"], r["model"]) == (task, s["model"])]
            ax.plot([i] * len(seeds), seeds, "k.", ms=4)
        low = min(100 * r["accuracy"] for r in rows if r["task"] == task)
        ax.set(title=task, ylabel="test accuracy (%)", ylim=(max(0.0, low - 10), None))
    save(fig, path)


def run(quick: bool, out_dir, log=print) -> dict:
    cfg = configured(QUICK if quick else FULL)
    base = (cfg["batch"], quick)
    tune = [("tune", task, model, cfg["tuning_seed"], lr, cfg["steps"][task], *base)
            for task in TASKS for model in MIXERS for lr in cfg["lrs"]]
    log(f"hypermixer: learning-rate sweep, {len(tune)} runs (seed {cfg['tuning_seed']}), 1 thread each")
    sweep = run_jobs(_run, tune, cfg["workers"])
    best = {(t, m): max((r for r in sweep if (r["task"], r["model"]) == (t, m)), key=lambda r: r["val_accuracy"])["lr"]
            for t in TASKS for m in MIXERS}
    evals = [("eval", task, model, seed, best[(task, model)], cfg["steps"][task], *base)
             for task in TASKS for model in MIXERS for seed in range(cfg["seeds"])]
    log(f"hypermixer: {len(evals)} evaluation runs (seeds 0-{cfg['seeds'] - 1}) at the chosen rates")
    rows = run_jobs(_run, evals, cfg["workers"])
    summary = _summary(rows)
    plot = out_dir / "hypermixer.png"
    _plot(rows, summary, plot)
    return {"config": cfg, "tasks": {"fortunes": {"categories": _task("fortunes", quick)["categories"]}},
            "swept": "Adam learning rate over config.lrs, for every model alike, by validation accuracy "
                     "on the tuning seed", "summary": summary, "claims": _claims_of(rows), "sweep": sweep,
            "runs": rows, "table": _table(summary, sweep, cfg["tuning_seed"]), "plot": str(plot)}
