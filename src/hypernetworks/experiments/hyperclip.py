"""Reproduction ``hyperclip``: text-specialised small image encoders for zero-shot classification.

Claim (Akinwande et al., HyperCLIP, 2024): a hypernetwork that generates a small image encoder's
normalisation parameters from the task's class texts raises zero-shot accuracy over the same small
encoder trained without it (SigLIP), at little extra training cost.
Differences from the paper (no web-scale image-text data offline): Fashion-MNIST with one prompt per
class ("a photo of a sandal."), embedded once by a frozen all-MiniLM-L6-v2; a task is a random 3-5
class subset; 25% of all such subsets are held out and zero-shot accuracy is measured on them (test
images), as well as on the 10-way task (a set size never seen in training). Baselines: the same
encoder without the hypernetwork, and a wider one with about as many trainable parameters as
HyperCLIP (encoder + hypernetwork), all trained with the same steps, batch and optimiser (Adam).
Tuning: each model's learning rate is chosen alike on seed 0 by its zero-shot accuracy on validation
subsets (never trained on) of validation images held out of the training set; test images and the
held-out subsets are used only for the reported numbers.
"""

from __future__ import annotations

import functools
import itertools
import random
import statistics
import time

import torch

from ..data import load_fashion_mnist
from ..methods.hyperclip import HyperCLIP, minilm_embeddings, prompts
from . import _claims
from ._common import configured, pyplot, run_jobs, save, sweep_lines

CLASSES = ("T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
SIZES = (3, 4, 5)
SPLIT_SEED = 12345  # the validation images are the same for every run
FULL = {"seeds": 5, "steps": 1000, "batch": 128, "lrs": (1e-3, 2e-3, 4e-3), "eval_subsets": 40, "per_class": 100,
        "workers": 1, "width": 8, "held_out": 0.25, "val_subsets": 0.15, "val_per_class": 1000}
QUICK = {"seeds": 2, "steps": 10, "batch": 32, "lrs": (1e-3, 2e-3), "eval_subsets": 3, "per_class": 10, "workers": 1,
         "width": 8, "held_out": 0.25, "val_subsets": 0.15, "val_per_class": 100}
MODELS = ("plain", "plain-matched", "hyperclip")
NAMES = {"plain": "SigLIP, same encoder", "plain-matched": "SigLIP, wider encoder (matched params)",
         "hyperclip": "HyperCLIP"}


def matched_width(width: int, groups: int = 4) -> int:
    """The plain encoder width (a multiple of ``groups``) with trainable count closest to HyperCLIP's at ``width``."""
    target = HyperCLIP(width=width, groups=groups).num_trainable
    widths = range(width, 8 * width + 1, groups)
    return min(widths, key=lambda w: abs(HyperCLIP(width=w, groups=groups, hypernetwork=False).num_trainable - target))


def split_subsets(seed: int, held_out: float, val: float) -> tuple[list[tuple[int, ...]], ...]:
    """All 3-5 class subsets of the 10 classes, shuffled and split into (train, validation, held-out):
    a fraction ``held_out`` of all, then a fraction ``val`` of the rest."""
    subsets = [s for k in SIZES for s in itertools.combinations(range(len(CLASSES)), k)]
    random.Random(seed).shuffle(subsets)
    cut = int(held_out * len(subsets))
    rest = subsets[cut:]
    cut_val = int(val * len(rest))
    return rest[cut_val:], rest[:cut_val], subsets[:cut]


def _by_class(labels: torch.Tensor) -> torch.Tensor:
    """(10, N/10) indices of each class's images (Fashion-MNIST is balanced)."""
    order = torch.argsort(labels, stable=True)
    return order.view(len(CLASSES), -1)


def _accuracy(model, x, index, subsets, text, per_class, gen) -> float:
    """Mean zero-shot accuracy over ``subsets``: each classifier specialised once, then run on test images."""
    accs = []
    for subset in subsets:
        cls = torch.tensor(subset)
        pick = index[cls][:, torch.randperm(index.shape[1], generator=gen)[:per_class]]  # (K, per_class)
        labels = torch.arange(len(subset)).repeat_interleave(pick.shape[1])
        classifier = model.materialize(text[cls])
        with torch.no_grad():
            accs.append((classifier(x[pick.flatten()]).argmax(1) == labels).float().mean().item())
    return statistics.fmean(accs)


@functools.cache
def _data(val_per_class: int) -> tuple[torch.Tensor, ...]:
    """Standardised train/test images and per-class indices ``(10, N/10)``: train, validation (``val_per_class``
    training images of each class held out, a fixed draw) and test; loaded once per process."""
    x, y = load_fashion_mnist("train")
    xt, yt = load_fashion_mnist("test")
    index = _by_class(y)
    index = index[:, torch.randperm(index.shape[1], generator=torch.Generator().manual_seed(SPLIT_SEED))]
    return ((x - 0.286) / 0.353, index[:, val_per_class:], index[:, :val_per_class], (xt - 0.286) / 0.353,
            _by_class(yt))


def _run(job) -> dict:
    kind, width, lr, seed, cfg, text = job
    torch.set_num_threads(1)
    x, index, val_index, xt, test_index = _data(cfg["val_per_class"])
    train_sets, val_sets, held_out = split_subsets(seed, cfg["held_out"], cfg["val_subsets"])
    torch.manual_seed(seed)
    model = HyperCLIP(width=width, hypernetwork=kind == "hyperclip", text_dim=text.shape[1], seed=seed)
    gen = torch.Generator().manual_seed(seed)
    order = random.Random(seed + 1)

    def batches():  # images of one training subset's classes, its class embeddings and the labels among them
        while True:
            subset = torch.tensor(order.choice(train_sets))
            labels = torch.randint(0, len(subset), (cfg["batch"],), generator=gen)
            idx = index[subset[labels], torch.randint(0, index.shape[1], (cfg["batch"],), generator=gen)]
            yield x[idx], text[subset], labels

    start = time.time()
    losses = model.fit(batches(), steps=cfg["steps"], lr=lr)
    train_s = time.time() - start
    model.eval()
    eval_gen = torch.Generator().manual_seed(1000 + seed)
    n = cfg["eval_subsets"]
    val = _accuracy(model, x, val_index, val_sets[:n], text, cfg["per_class"], eval_gen)
    acc = {"held-out": _accuracy(model, xt, test_index, held_out[:n], text, cfg["per_class"], eval_gen),
           "seen": _accuracy(model, xt, test_index, train_sets[:n], text, cfg["per_class"], eval_gen),
           "10-way": _accuracy(model, xt, test_index, [tuple(range(10))], text, 5 * cfg["per_class"], eval_gen)}
    encoder = model.materialize(text[:3]).encoder
    return {"kind": kind, "width": width, "lr": lr, "seed": seed, "val_accuracy": val, "accuracy": acc,
            "train_s": train_s, "ms_per_step": 1000 * train_s / cfg["steps"], "trainable": model.num_trainable,
            "deployed": sum(p.numel() for p in encoder.parameters()), "final_loss": losses[-1]}


def _table(rows, sweep) -> tuple[str, list[dict]]:
    summary = []
    for kind in MODELS:
        rs = [r for r in rows if r["kind"] == kind]
        if not rs:
            continue
        keys = rs[0]["accuracy"]
        summary.append({"model": kind, "width": rs[0]["width"], "lr": rs[0]["lr"], "seeds": len(rs),
                        "trainable": rs[0]["trainable"], "deployed": rs[0]["deployed"],
                        "accuracy": {k: statistics.fmean(r["accuracy"][k] for r in rs) for k in keys},
                        "std": {k: statistics.pstdev(r["accuracy"][k] for r in rs) for k in keys},
                        "ms_per_step": statistics.fmean(r["ms_per_step"] for r in rs)})
    base = next(s["ms_per_step"] for s in summary if s["model"] == "plain")
    cols = list(summary[0]["accuracy"])
    lines = [f"zero-shot test accuracy (%) on Fashion-MNIST class subsets (mean ± std over {summary[0]['seeds']} "
             "seed(s)); held-out = 3-5 class subsets never trained on, 10-way = all classes at once",
             f"{'model':<40} {'width':>5} {'lr':>6} {'trainable':>9} {'deployed':>8} "
             + " ".join(f"{c:>12}" for c in cols)
             + f" {'ms/step':>8} {'cost':>5}"]
    for s in summary:
        cells = " ".join(f"{100 * s['accuracy'][c]:>6.1f} ± {100 * s['std'][c]:<3.1f}" for c in cols)
        lines.append(f"{NAMES[s['model']]:<40} {s['width']:>5} {s['lr']:>6.0e} {s['trainable']:>9,} "
                     f"{s['deployed']:>8,} {cells} {s['ms_per_step']:>8.1f} {s['ms_per_step'] / base:>4.2f}x")
    lines += sweep_lines("learning rate (Adam) swept alike for every model, seed 0: zero-shot accuracy (%) on "
                         "validation subsets of held-out training images (the chosen one marked *)", NAMES, MODELS,
                         sweep, "val_accuracy", lambda v: f"{100 * v:>7.1f}", 40)
    return "\n".join(lines), summary


def _claims_of(rows) -> list[dict]:
    """Per evaluation (held-out subsets, seen subsets, 10-way), paired by seed: HyperCLIP vs the same
    encoder and vs the wider one with matched trainable parameters."""
    def acc(kind, key):
        return [r["accuracy"][key] for r in sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["seed"])]

    claims = []
    for key in rows[0]["accuracy"]:
        for base in ("plain", "plain-matched"):
            claims.append(_claims.paired(f"{key}: HyperCLIP has a higher zero-shot accuracy than {NAMES[base]}",
                                         "zero-shot test accuracy", acc("hyperclip", key), acc(base, key),
                                         ours_name="hyperclip", baseline_name=base))
    claims.append(_claims.untestable("HyperCLIP adds little training cost per step",
                                     "timed by benchmarks/hyperclip_cost.py; this run's step times follow the "
                                     "machine's load"))
    return claims


def _plot(summary, path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    cols = list(summary[0]["accuracy"])
    width = 0.8 / len(summary)
    for i, s in enumerate(summary):
        xs = [j + (i - (len(summary) - 1) / 2) * width for j in range(len(cols))]
        ax.bar(xs, [100 * s["accuracy"][c] for c in cols], width, yerr=[100 * s["std"][c] for c in cols],
               label=f"{NAMES[s['model']]} ({s['trainable']:,} params)")
    ax.set_xticks(range(len(cols)), cols)
    low = min(100 * v for s in summary for v in s["accuracy"].values())
    ax.set(ylabel="zero-shot test accuracy (%)", ylim=(max(0, 10 * (low // 10) - 20), 100))
    ax.legend(fontsize=7, loc="lower left")
    save(fig, path)


def run(quick: bool, out_dir, log=print) -> dict:
    cfg = configured(QUICK if quick else FULL)
    text = minilm_embeddings(prompts(CLASSES))  # (10, 384), once per run
    wide = matched_width(cfg["width"])
    widths = {"plain": cfg["width"], "plain-matched": wide, "hyperclip": cfg["width"]}
    sweep_jobs = [(kind, widths[kind], lr, 0, cfg, text) for kind in MODELS for lr in cfg["lrs"]]
    log(f"hyperclip: learning-rate sweep, {len(sweep_jobs)} runs of {cfg['steps']} steps (seed 0), "
        f"{cfg['workers']} worker process(es), 1 thread each")
    sweep = run_jobs(_run, sweep_jobs, cfg["workers"])
    best = {kind: max((r for r in sweep if r["kind"] == kind), key=lambda r: r["val_accuracy"]) for kind in MODELS}
    jobs = [(kind, widths[kind], best[kind]["lr"], seed, cfg, text) for seed in range(1, cfg["seeds"])
            for kind in MODELS]
    log(f"hyperclip: chosen learning rates {({k: r['lr'] for k, r in best.items()})}; {len(jobs)} more runs "
        "(seeds 1+)")
    rows = [*best.values(), *run_jobs(_run, jobs, cfg["workers"])]
    table, summary = _table(rows, sweep)
    plot = out_dir / "hyperclip.png"
    _plot(summary, plot)
    return {"config": cfg | {"widths": widths, "prompts": prompts(CLASSES)},
            "chosen_lr": {k: r["lr"] for k, r in best.items()}, "summary": summary, "claims": _claims_of(rows),
            "sweep": sweep, "runs": rows, "table": table, "plot": str(plot)}
