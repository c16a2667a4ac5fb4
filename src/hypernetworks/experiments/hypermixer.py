"""Reproduction ``hypermixer``: HyperMixer vs MLP-Mixer vs self-attention at equal parameter count.

Claim (Mai et al., ACL 2023): HyperMixer beats MLP-Mixer and is on par with attention, at lower
cost, and (unlike MLP-Mixer) handles sequences of any length.
Tasks: Fashion-MNIST as 49 tokens of 4x4 patches; topic classification of Debian ``fortunes``
quotes (5 categories, word tokens, trained on the first 32 words, also tested on up to 128).
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from ..data import load_fashion_mnist, load_fortunes
from ..data.fortunes import build_vocab, encode
from ..layers import SequenceClassifier
from . import _claims
from ._common import configured, pyplot, run_jobs, save

FULL = {"seeds": 3, "steps": 1500, "workers": 2}
QUICK = {"seeds": 1, "steps": 5, "workers": 1}
CATEGORIES = ["people", "definitions", "computers", "songs-poems", "politics"]
DIM, DEPTH, MLP_HIDDEN = 64, 2, 128
# Token-mixing widths chosen so the three models have (almost) the same number of parameters.
MIXERS = {"hypermixer": {"mixer": "hyper", "hidden": 64}, "mlp-mixer": {"mixer": "mlp", "hidden": None},
          "transformer": {"mixer": "attention", "hidden": 64}}


def patches(x: torch.Tensor, size: int = 4) -> torch.Tensor:
    """(N, 1, 28, 28) -> (N, 49, 16): non-overlapping size x size patches, row by row."""
    p = x.unfold(2, size, size).unfold(3, size, size)  # (N, 1, 7, 7, 4, 4)
    return p.reshape(x.shape[0], -1, size * size)


def fashion(quick: bool):
    x, y = load_fashion_mnist("train")
    xt, yt = load_fashion_mnist("test")
    n, nt = (1000, 200) if quick else (20000, 5000)
    return {"train": (patches(x[:n]), None, y[:n]), "test": (patches(xt[:nt]), None, yt[:nt]), "longer": None,
            "in_features": 16, "vocab": None, "classes": 10, "length": 49}


def fortunes(quick: bool):
    texts, labels = load_fortunes(CATEGORIES)
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(texts))
    train_idx, test_idx = order[:cut].tolist(), order[cut:].tolist()
    if quick:
        train_idx, test_idx = train_idx[:300], test_idx[:100]
    vocab = build_vocab([texts[i] for i in train_idx], 5000)
    tr, te = [texts[i] for i in train_idx], [texts[i] for i in test_idx]
    ids, mask = encode(tr, vocab, 32)
    ids_t, mask_t = encode(te, vocab, 32)
    ids_l, mask_l = encode(te, vocab, 128)
    return {"train": (ids, mask, labels[train_idx]), "test": (ids_t, mask_t, labels[test_idx]),
            "longer": (ids_l, mask_l, labels[test_idx]), "in_features": 0, "vocab": 5000,
            "classes": len(CATEGORIES), "length": 32}


TASKS = {"fashion-mnist": fashion, "fortunes": fortunes}


def build(task: dict, model: str) -> SequenceClassifier:
    kw = dict(MIXERS[model])
    if kw["hidden"] is None:  # MLP-Mixer: token MLP width that matches the others' mixing parameters
        kw["hidden"] = round(2 * (DIM * DIM + DIM * 64) / (2 * task["length"]))
    return SequenceClassifier(task["in_features"], task["classes"], dim=DIM, depth=DEPTH, mlp_hidden=MLP_HIDDEN,
                              length=task["length"], vocab=task["vocab"], **kw)


@torch.no_grad()
def accuracy(model, data) -> float:
    x, mask, y = data
    model.eval()
    correct = sum((model(x[i:i + 500], None if mask is None else mask[i:i + 500]).argmax(1) == y[i:i + 500]).sum()
                  for i in range(0, len(x), 500))
    model.train()
    return float(correct) / len(x)


_tasks: dict = {}


def _run(job) -> dict:
    task_name, model_name, seed, steps, quick = job
    torch.set_num_threads(1)
    if (task_name, quick) not in _tasks:
        _tasks[(task_name, quick)] = TASKS[task_name](quick)
    task = _tasks[(task_name, quick)]
    torch.manual_seed(seed)
    model = build(task, model_name)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    x, mask, y = task["train"]
    gen = torch.Generator().manual_seed(seed)
    start = time.time()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=gen)
        loss = F.cross_entropy(model(x[idx], None if mask is None else mask[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    train_s = time.time() - start
    longer = None
    if task["longer"] is not None:
        try:
            longer = accuracy(model, task["longer"])
        except ValueError:  # the MLP-Mixer's token MLP has a fixed length
            longer = None
    return {"task": task_name, "model": model_name, "seed": seed, "accuracy": accuracy(model, task["test"]),
            "longer_accuracy": longer, "train_s": train_s, "params": sum(p.numel() for p in model.parameters())}


def _summary(rows):
    out = []
    for key in dict.fromkeys((r["task"], r["model"]) for r in rows):
        rs = [r for r in rows if (r["task"], r["model"]) == key]
        longer = [r["longer_accuracy"] for r in rs if r["longer_accuracy"] is not None]
        out.append({"task": key[0], "model": key[1], "seeds": len(rs),
                    "accuracy": statistics.fmean(r["accuracy"] for r in rs),
                    "accuracy_std": statistics.pstdev(r["accuracy"] for r in rs),
                    "longer_accuracy": statistics.fmean(longer) if longer else None,
                    "train_s": statistics.fmean(r["train_s"] for r in rs), "params": rs[0]["params"]})
    return out


def _claims_of(rows) -> list[dict]:
    """Per task, paired by seed: HyperMixer vs MLP-Mixer (higher), vs attention (at most 1 point lower);
    on text, HyperMixer's accuracy on inputs up to 4x longer than in training vs on training lengths."""
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


def _table(summary) -> str:
    lines = []
    for task in dict.fromkeys(s["task"] for s in summary):
        longer = "test acc, up to 128 words" if task == "fortunes" else "longer input"
        lines.append(f"\n{task} (mean over {summary[0]['seeds']} seed(s))")
        lines.append(f"{'model':<12} {'params':>9} {'test acc':>9} {'± std':>6} {'train s':>8} {longer:>26}")
        for s in (s for s in summary if s["task"] == task):
            if task != "fortunes":
                runs_longer = "-"
            elif s["longer_accuracy"] is None:
                runs_longer = "cannot run"
            else:
                runs_longer = f"{100 * s['longer_accuracy']:.2f}"
            lines.append(f"{s['model']:<12} {s['params']:>9,} {100 * s['accuracy']:>9.2f} "
                         f"{100 * s['accuracy_std']:>6.2f} {s['train_s']:>8.1f} {runs_longer:>26}")
    return "\n".join(lines)


def _plot(summary, path) -> None:
    plt = pyplot()
    tasks = list(dict.fromkeys(s["task"] for s in summary))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        rows = [s for s in summary if s["task"] == task]
        ax.bar([s["model"] for s in rows], [100 * s["accuracy"] for s in rows],
               yerr=[100 * s["accuracy_std"] for s in rows])
        ax.set(title=task, ylabel="test accuracy (%)", ylim=(min(100 * s["accuracy"] for s in rows) - 10, None))
    save(fig, path)


def run(quick: bool, out_dir, log=print) -> dict:
    cfg = configured(QUICK if quick else FULL)
    jobs = [(task, model, seed, cfg["steps"], quick)
            for task in TASKS for model in MIXERS for seed in range(cfg["seeds"])]
    log(f"hypermixer: {len(jobs)} runs of {cfg['steps']} steps, {cfg['workers']} worker process(es), 1 thread each")
    rows = run_jobs(_run, jobs, cfg["workers"])
    summary = _summary(rows)
    plot = out_dir / "hypermixer.png"
    _plot(summary, plot)
    return {"config": cfg, "summary": summary, "claims": _claims_of(rows), "runs": rows, "table": _table(summary),
            "plot": str(plot)}
