"""MALMEN at scale (Tan, Zhang, Fu, ICLR 2024, https://arxiv.org/abs/2311.04661): least squares vs
summation vs fine-tuning as the number of simultaneous edits N grows to 1024.

Claim: aggregating a meta-trained hypernetwork's per-edit value shifts with the normal equation
S* = (UᵀU + λI)⁻¹UᵀD keeps edit success and generalisation high at N in the thousands, where summing
the shifts (MEND) and fine-tuning on the edits fail, at comparable locality.
Setup (no language model offline): a Fashion-MNIST CNN whose head is trunk(288) → 4096 → ReLU → 256 →
ReLU → 10. The edited layer is the FFN-like ``Linear(4096, 256)``: its keys (the ReLU features) have
4096 dimensions, more than the 1024 edits, unlike the earlier 288/1024-dim layers. The layers before it
are frozen, so the keys of every image are computed once. An edit asks an image to predict a random
label other than the model's current one. ES (edit success): edited images predict their new label;
GS (generalisation): shifted-and-noised copies of them do too; LS (locality): held-out unrelated images
keep their prediction. Editors: MALMEN (least squares, meta-trained ShiftNet), the same hypernetwork
with summation (MEND-style), least squares with the identity hypernetwork (a gradient step per edit,
η and λ from a grid), and Adam fine-tuning of the edited layer on the edits. Every choice is made on a
validation split of training images (never the test images): meta-training length and meta learning
rate by validation ES at the largest N (meta-training on N = ``n_train`` edits per step, as the paper
scales), and, per N and editor, the step size η and λ (multipliers of the learned ones) or the
fine-tuning learning rate and steps by the validation score, the harmonic mean of ES, GS and LS
(MEMIT's score, Meng et al., ICLR 2023), which is zero for an editor that edits nothing.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import statistics
import time
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..data import load_fashion_mnist
from ..functional import functional_call
from ..methods.malmen import MALMEN
from ..methods.malmen.net import ShiftNet
from . import _claims
from ._common import configured, pyplot, run_jobs, save

FULL = {"seeds": (0, 1, 2), "ns": (1, 16, 128, 1024), "n_train": 128, "meta_lrs": (1e-3, 3e-3),
        "max_meta_steps": 800, "check_every": 50, "check_episodes": 4, "patience": 3, "cnn_steps": 600, "width": 4096,
        "pools": {"meta": 4000, "val": 5000, "val_loc": 500, "test": 8000, "test_loc": 1000},
        "val_episodes": {1: 8, 16: 6, 128: 3, 1024: 2}, "test_episodes": {1: 20, 16: 20, 128: 8, 1024: 4},
        "ft_lrs": (1e-4, 3e-4, 1e-3), "ft_steps": (10, 20, 40, 80), "workers": 2}
QUICK = {"seeds": (0, 1), "ns": (1, 16), "n_train": 8, "meta_lrs": (1e-3,), "max_meta_steps": 4, "check_every": 2,
         "check_episodes": 1, "patience": 1, "cnn_steps": 10, "width": 256,
         "pools": {"meta": 100, "val": 40, "val_loc": 20, "test": 40, "test_loc": 20},
         "val_episodes": {1: 2, 16: 1}, "test_episodes": {1: 2, 16: 2}, "ft_lrs": (1e-2,), "ft_steps": (2, 4),
         "workers": 2}
EDITORS = ("least squares", "sum", "least squares, identity", "fine-tuning")
COLORS = {"least squares": "C0", "sum": "C1", "least squares, identity": "C2", "fine-tuning": "C3"}
VALUE, CLASSES, LAYER = 256, 10, "0"  # the edited layer is post[0]: Linear(width, VALUE)
LS_ETA_SCALES = (1 / 4, 1 / 2, 1.0, 2.0, 4.0)  # multipliers of the meta-trained least-squares editor's η
LS_REG_SCALES = (0.1, 1.0, 10.0)  # and of its λ
SUM_ETA_SCALES = (1 / 64, 1 / 16, 1 / 4, 1.0, 4.0, 16.0, 64.0)  # of the summing editor's η (a sum grows with N)
IDENTITY_ETAS = (3.0, 10.0, 30.0, 100.0, 300.0)  # η of the identity editor, in units of 1 / E‖u‖²
IDENTITY_REGS = (1e-3, 1e-2, 1e-1)  # its λ, in units of E‖u‖²
PIXEL_NOISE, MAX_SHIFT = 0.1, 2
progress = logging.getLogger("hypernetworks.experiments")
LOC_COEF, SCALAR_LR, ETA0, REG0, RANK, BLOCKS, MAX_GRAD_NORM, META_LOC = 1.0, 0.1, 10.0, 1.0, 32, 2, 1.0, 256


def _jitter(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image shifted by up to MAX_SHIFT pixels each way, plus Gaussian noise; (N, 1, 28, 28)."""
    shifts = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (len(images), 2), generator=gen).tolist()
    out = torch.stack([img.roll(tuple(s), dims=(1, 2)) for img, s in zip(images, shifts, strict=True)])
    return (out + PIXEL_NOISE * torch.randn(out.shape, generator=gen)).clamp(0, 1)


def fashion_task(seed: int, cfg: dict) -> dict:
    """Train the CNN; return its editable part ``post`` and the keys (N, width) of every pool.

    Training images [0, 50000) train the CNN, [50000, ...) hold the meta-training pool, then the
    validation edits and validation locality images; the test images hold the test edits and locality set.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, y = load_fashion_mnist("train")
    xt, yt = load_fashion_mnist("test")
    trunk = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                          nn.ReLU(), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(3), nn.Flatten())  # (B, 288)
    pre = nn.Sequential(nn.Linear(288, cfg["width"]), nn.ReLU())  # keys of the edited layer, (B, width)
    post = nn.Sequential(nn.Linear(cfg["width"], VALUE), nn.ReLU(), nn.Linear(VALUE, CLASSES))
    model = nn.Sequential(trunk, pre, post)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(cfg["cnn_steps"]):
        idx = torch.randint(0, 50000, (128,), generator=gen)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval().requires_grad_(False)
    p = cfg["pools"]
    bounds = torch.tensor([50000, p["meta"], p["val"], p["val_loc"]]).cumsum(0).tolist()
    meta, val, val_loc = (x[a:b] for a, b in zip(bounds, bounds[1:], strict=False))
    test, test_loc = xt[:p["test"]], xt[len(xt) - p["test_loc"]:]
    images = {"meta": meta, "meta_para": _jitter(meta, gen), "val": val, "val_para": _jitter(val, gen),
              "val_loc": val_loc, "test": test, "test_para": _jitter(test, gen), "test_loc": test_loc}
    with torch.no_grad():
        keys = {k: torch.cat([pre(trunk(c)) for c in v.split(1000)]) for k, v in images.items()}
        accuracy = (post(keys["test_loc"]).argmax(-1) == yt[len(xt) - p["test_loc"]:]).float().mean().item()
        sv = torch.linalg.svdvals(keys["test"][:1024])
    return {"post": post, "accuracy": accuracy, "keys": keys, "key_rank_1pct": int((sv > 0.01 * sv[0]).sum()),
            "key_stable_rank": float(sv.square().sum() / sv[0].square())}


def _new_labels(post: nn.Module, keys: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A uniformly random label other than the model's current prediction, per input."""
    with torch.no_grad():
        pred = post(keys).argmax(-1)
    return (pred + torch.randint(1, CLASSES, (len(keys),), generator=gen)) % CLASSES


def _episodes(task: dict, split: str, n: int, count: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` (or as many as the pool allows) disjoint sets of n edits: (indices (n,), new labels (n,))."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(task["keys"][split]), generator=gen)
    sets = [order[e * n:(e + 1) * n] for e in range(min(count, len(order) // n))]
    return [(idx, _new_labels(task["post"], task["keys"][split][idx], gen)) for idx in sets]


def _edited(post: nn.Module, shift: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Logits (B, CLASSES) of ``post`` with its edited weight W (O, I) replaced by W + Sᵀ; S (I, O)."""
    return functional_call(post, {f"{LAYER}.weight": shift.T}, (keys,), mode="residual", strict=False)


def _score(task: dict, split: str, shift: torch.Tensor, idx: torch.Tensor, y_new: torch.Tensor) -> dict:
    """ES, GS, LS of one episode's weight change S (I, O)."""
    post, keys = task["post"], task["keys"]
    with torch.no_grad():
        hit = (_edited(post, shift, keys[split][idx]).argmax(-1) == y_new).float().mean().item()
        para = (_edited(post, shift, keys[f"{split}_para"][idx]).argmax(-1) == y_new).float().mean().item()
        kept = (_edited(post, shift, keys[f"{split}_loc"]).argmax(-1) == post(keys[f"{split}_loc"]).argmax(-1))
    return {"es": hit, "gs": para, "ls": kept.float().mean().item()}


def _mean_scores(scores: list[dict]) -> dict:
    """Mean ES, GS, LS over episodes, and their harmonic mean (MEMIT's score: zero if any is zero)."""
    out = {k: statistics.fmean(s[k] for s in scores) for k in ("es", "gs", "ls")}
    return out | {"score": statistics.harmonic_mean(out.values())}


class _Scaled:
    """An editor with its η and λ multiplied by fixed factors while in use (restored afterwards)."""

    def __init__(self, editor: MALMEN, eta_scale: float, reg_scale: float):
        self.editor, self.log_eta, self.log_reg = editor, math.log(eta_scale), math.log(reg_scale)

    def __enter__(self):
        with torch.no_grad():
            self.editor.log_lr.add_(self.log_eta)
            self.editor.log_reg.add_(self.log_reg)
        return self.editor

    def __exit__(self, *exc):
        with torch.no_grad():
            self.editor.log_lr.sub_(self.log_eta)
            self.editor.log_reg.sub_(self.log_reg)


def _malmen_shifts(editor: MALMEN, task: dict, split: str, episodes: list, grid: list[tuple[float, float]]):
    """{(η multiplier, λ multiplier): [S (I, O) per episode]}; each episode's cache is computed once."""
    out = {knob: [] for knob in grid}
    for idx, y_new in episodes:
        cache = editor.cache(task["post"], task["keys"][split][idx], y_new)
        for knob in grid:
            with _Scaled(editor, *knob) as scaled:
                out[knob].append(scaled.shifts(cache)[LAYER])
    return out


def _fine_tune_shifts(task: dict, split: str, episodes: list, lrs, steps) -> dict:
    """{(lr, steps): [S (I, O) per episode]}: Adam on the edited layer's weight, cross-entropy on the edits."""
    post, keys = task["post"], task["keys"][split]
    weight = post.get_submodule(LAYER).weight
    out = {(lr, s): [] for lr in lrs for s in steps}
    for idx, y_new in episodes:
        for lr in lrs:
            delta = torch.zeros_like(weight, requires_grad=True)  # (O, I)
            opt = torch.optim.Adam([delta], lr=lr)
            for step in range(1, max(steps) + 1):
                loss = F.cross_entropy(_edited(post, delta.T, keys[idx]), y_new)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if step in steps:
                    out[lr, step].append(delta.detach().T.clone())
    return out


def _choose_and_test(task: dict, cfg: dict, n: int, seed: int, shifts_for) -> dict:
    """Pick the knob with the best validation score at N = n, then score it on the test episodes."""
    val = _episodes(task, "val", n, cfg["val_episodes"][n], seed * 7919 + n)
    test = _episodes(task, "test", n, cfg["test_episodes"][n], seed * 7919 + n + 1)
    val_scores = {k: _mean_scores([_score(task, "val", s, *e) for s, e in zip(ss, val, strict=True)])
                  for k, ss in shifts_for("val", val, None).items()}
    knob = max(val_scores, key=lambda k: val_scores[k]["score"])
    shifts = shifts_for("test", test, knob)[knob]
    tried = [[list(k), round(v["score"], 6)] for k, v in val_scores.items()]
    with torch.no_grad():
        before = [(task["post"](task["keys"]["test_para"][i]).argmax(-1) == y).float().mean().item() for i, y in test]
    return {**_mean_scores([_score(task, "test", s, *e) for s, e in zip(shifts, test, strict=True)]),
            "knob": list(knob), "val": val_scores[knob], "val_tried": tried, "episodes": len(test),
            "gs_before": statistics.fmean(before)}


def _validation_es(editor: MALMEN, task: dict, episodes: list) -> float:
    shifts = _malmen_shifts(editor, task, "val", episodes, [(1.0, 1.0)])[1.0, 1.0]
    return statistics.fmean(_score(task, "val", s, *e)["es"] for s, e in zip(shifts, episodes, strict=True))


def _meta_train(editor: MALMEN, task: dict, cfg: dict, lr: float, seed: int) -> dict:
    """Meta-train on N = n_train edits per step; stop when validation ES at the largest N has not improved
    for ``patience`` checks, and keep the best checkpoint (in ``editor``)."""
    gen = torch.Generator().manual_seed(seed)
    post, keys = task["post"], task["keys"]
    pool, para = keys["meta"], keys["meta_para"]
    val = _episodes(task, "val", max(cfg["ns"]), cfg["check_episodes"], seed + 17)
    n_edit, n_loc = min(cfg["n_train"], len(pool) // 2), min(META_LOC, len(pool) // 2)
    best = {"step": 0, "es": _validation_es(editor, task, val), "state": copy.deepcopy(editor.state_dict())}
    curve, stale, start = [(0, best["es"])], 0, time.perf_counter()

    def episodes():  # n_edit edits (with their paraphrases) and n_loc unrelated inputs, disjoint, per step
        while True:
            order = torch.randperm(len(pool), generator=gen)
            idx, loc = order[:n_edit], order[-n_loc:]
            yield pool[idx], _new_labels(post, pool[idx], gen), para[idx], pool[loc]

    def check(step: int, loss: float) -> bool:  # every check_every steps: keep the best; stop when stale
        nonlocal best, stale
        if step % cfg["check_every"]:
            return False
        es = _validation_es(editor, task, val)
        curve.append((step, es))
        if es > best["es"]:
            best, stale = {"step": step, "es": es, "state": copy.deepcopy(editor.state_dict())}, 0
        else:
            stale += 1
        return stale >= cfg["patience"]

    editor.fit(post, episodes(), steps=cfg["max_meta_steps"], lr=lr, scalar_lr=SCALAR_LR, loc_coef=LOC_COEF,
               max_grad_norm=MAX_GRAD_NORM, on_step=check)
    editor.load_state_dict(best["state"])
    return {"lr": lr, "best_step": best["step"], "val_es": best["es"], "curve": curve,
            "seconds": time.perf_counter() - start}


def _observed(editor: MALMEN, task: dict, seed: int) -> MALMEN:
    """``editor`` after observing edits of the whole meta-training pool (its normaliser and E‖u‖²)."""
    post, pool = task["post"], task["keys"]["meta"]
    editor.observe(editor.cache(post, pool, _new_labels(post, pool, torch.Generator().manual_seed(seed))))
    return editor


def _meta_editor(task: dict, cfg: dict, aggregation: str, seed: int) -> tuple[MALMEN, dict]:
    """The meta-trained editor of the meta learning rate with the best validation ES; its training record."""
    best: tuple[MALMEN, dict] | None = None
    tried = []
    for lr in cfg["meta_lrs"]:
        editor = _observed(MALMEN(task["post"], layers=[LAYER], aggregation=aggregation, rank=RANK, blocks=BLOCKS,
                                  lr=ETA0, reg=REG0, seed=seed), task, seed)
        record = _meta_train(editor, task, cfg, lr, seed)
        tried.append({k: record[k] for k in ("lr", "best_step", "val_es", "seconds")})
        if best is None or record["val_es"] > best[1]["val_es"]:
            best = (editor, record)
    if best is None:
        raise ValueError("malmen: cfg['meta_lrs'] is empty; give at least one meta learning rate.")
    return best[0], best[1] | {"tried": tried}


def _fine_tuned(task: dict, cfg: dict, split: str, episodes: list, knob):
    """Fine-tuning's shifts per episode and per (lr, steps) of its grid, or of ``knob`` once chosen."""
    lrs, steps = (cfg["ft_lrs"], cfg["ft_steps"]) if knob is None else ((knob[0],), (knob[1],))
    return _fine_tune_shifts(task, split, episodes, lrs, steps)


def _edited_by(editor: MALMEN, task: dict, grid: list[tuple[float, float]], split: str, episodes: list, knob):
    """An editor's shifts per episode and per (η, λ) scale of ``grid``, or of ``knob`` once chosen."""
    return _malmen_shifts(editor, task, split, episodes, grid if knob is None else [tuple(knob)])


def study(job) -> dict:
    """All four editors at every N for one seed (CNN, splits' episodes, meta-training)."""
    seed, cfg = job
    torch.set_num_threads(1)
    start = time.perf_counter()
    task = fashion_task(seed, cfg)
    prep_s = time.perf_counter() - start
    progress.info("malmen seed %d: CNN trained, keys computed (%.0f s)", seed, prep_s)
    editors, training = {}, {}
    for name, aggregation in (("least squares", "least_squares"), ("sum", "sum")):
        editors[name], training[name] = _meta_editor(task, cfg, aggregation, seed)
        progress.info("malmen seed %d: %s meta-trained, lr %g, best step %d, validation ES %.3f (%.0f s)", seed,
                      name, training[name]["lr"], training[name]["best_step"], training[name]["val_es"],
                      time.perf_counter() - start)
    identity = _observed(MALMEN(task["post"], layers=[LAYER], blocks=0, lr=1.0, reg=1.0), task, seed)
    with torch.no_grad():  # λ in units of E‖u‖²
        net = cast(ShiftNet, identity.nets[next(iter(identity.nets))])
        identity.log_reg.fill_(math.log(net.mean_key_sq_norm().item()))
    grids = {"least squares": [(e, r) for e in LS_ETA_SCALES for r in LS_REG_SCALES],
             "sum": [(e, 1.0) for e in SUM_ETA_SCALES],
             "least squares, identity": [(e, r) for e in IDENTITY_ETAS for r in IDENTITY_REGS]}
    rows = []
    for n in cfg["ns"]:
        for name in EDITORS:
            t0 = time.perf_counter()
            if name == "fine-tuning":
                shifts_for = functools.partial(_fine_tuned, task, cfg)
            else:
                editor = identity if name == "least squares, identity" else editors[name]
                shifts_for = functools.partial(_edited_by, editor, task, grids[name])
            with torch.no_grad() if name != "fine-tuning" else torch.enable_grad():
                result = _choose_and_test(task, cfg, n, seed, shifts_for)
            rows.append({"seed": seed, "n": n, "editor": name, **result, "seconds": time.perf_counter() - t0})
        progress.info("malmen seed %d: N = %d done (%.0f s)", seed, n, time.perf_counter() - start)
    return {"seed": seed, "rows": rows, "training": training, "accuracy": task["accuracy"], "prep_s": prep_s,
            "key_rank_1pct": task["key_rank_1pct"], "key_stable_rank": task["key_stable_rank"],
            "seconds": time.perf_counter() - start}


def _values(runs, n, editor, metric) -> list[float]:
    return [next(r[metric] for r in run["rows"] if (r["n"], r["editor"]) == (n, editor)) for run in runs]


def _claims_of(runs, ns) -> list[dict]:
    """At the largest N: least squares vs summation and vs fine-tuning on ES and GS (higher) and locality
    (at most 0.05 lower); vs the identity hypernetwork on ES; ES >= 0.5; locality within 0.1 of N = 1.
    At the second largest N: least squares vs summation on ES."""
    top, ls = ns[-1], "least squares"
    claims = []
    if len(ns) > 2:
        claims.append(_claims.paired(f"N = {ns[-2]}: least squares edits more successfully than summation",
                                     "edit success", _values(runs, ns[-2], ls, "es"),
                                     _values(runs, ns[-2], "sum", "es"), ours_name=ls, baseline_name="sum"))
    for metric, what in (("es", "edit success"), ("gs", "generalisation")):
        for base in ("sum", "fine-tuning"):
            claims.append(_claims.paired(f"N = {top}: least squares has higher {what} than {base}", what,
                                         _values(runs, top, ls, metric), _values(runs, top, base, metric),
                                         ours_name=ls, baseline_name=base))
    for base in ("sum", "fine-tuning"):
        claims.append(_claims.paired(f"N = {top}: least squares keeps locality within 0.05 of {base}", "locality",
                                     _values(runs, top, ls, "ls"), _values(runs, top, base, "ls"), ours_name=ls,
                                     baseline_name=base, against=-0.05))
    claims.append(_claims.paired(f"N = {top}: the meta-trained hypernetwork edits more successfully than the identity",
                                 "edit success", _values(runs, top, ls, "es"),
                                 _values(runs, top, "least squares, identity", "es"), ours_name=ls,
                                 baseline_name="least squares, identity"))
    claims.append(_claims.target(f"N = {top}: least squares edit success stays high (>= 0.5)", "edit success",
                                 _values(runs, top, ls, "es"), ours_name=ls, against=0.5))
    claims.append(_claims.paired(f"least squares: locality at N = {top} is at most 0.1 below N = {ns[0]}", "locality",
                                 _values(runs, top, ls, "ls"), _values(runs, ns[0], ls, "ls"),
                                 ours_name=f"N = {top}", baseline_name=f"N = {ns[0]}", against=-0.1))
    return claims


def _fmt(values) -> str:
    return f"{statistics.fmean(values):.3f}±{statistics.stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def _table(runs, ns) -> str:
    acc = ", ".join(f"{r['accuracy']:.3f}" for r in runs)
    rank = ", ".join(f"{r['key_rank_1pct']}/{r['key_stable_rank']:.1f}" for r in runs)
    lines = [f"seeds {[r['seed'] for r in runs]}; base test accuracy {acc}; keys of 1024 test images: singular "
             f"values above 1% of the largest / stable rank: {rank}",
             "mean±sd over seeds; ES edit success, GS generalisation (jittered copies), LS locality; GS pre: "
             "jittered copies predicting the new label before the edit; knobs: η×, λ× (editors) or lr, steps "
             "(fine-tuning), per seed",
             f"{'N':>5} {'editor':<24} {'ES':>11} {'GS':>11} {'LS':>11} {'GS pre':>7} {'eps':>4}  knobs"]
    for n in ns:
        for name in EDITORS:
            rows = [next(r for r in run["rows"] if (r["n"], r["editor"]) == (n, name)) for run in runs]
            knobs = " ".join("/".join(f"{k:g}" for k in r["knob"]) for r in rows)
            lines.append(f"{n:>5} {name:<24} {_fmt([r['es'] for r in rows]):>11} {_fmt([r['gs'] for r in rows]):>11} "
                         f"{_fmt([r['ls'] for r in rows]):>11} {statistics.fmean(r['gs_before'] for r in rows):>7.3f} "
                         f"{rows[0]['episodes']:>4}  {knobs}")
    lines.append("meta-training (per seed: chosen meta lr, best step by validation ES at the largest N, that ES; "
                 "time for all lrs)")
    for name in ("least squares", "sum"):
        lines.append(f"  {name:<14} " + "; ".join(
            f"{t['lr']:g} @ {t['best_step']} ES {t['val_es']:.3f} ({sum(x['seconds'] for x in t['tried']):.0f} s)"
            for t in (run["training"][name] for run in runs)))
    return "\n".join(lines)


def _plot(runs, ns, path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    for ax, metric, title in zip(axes, ("es", "gs", "ls"), ("edit success", "generalisation", "locality"),
                                 strict=False):
        for name in EDITORS:
            per_n = [_values(runs, n, name, metric) for n in ns]
            err = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in per_n]
            ax.errorbar(ns, [statistics.fmean(v) for v in per_n], yerr=err, marker="o", capsize=3,
                        color=COLORS[name], label=name)
        ax.set(xscale="log", ylim=(0, 1.02), xlabel="simultaneous edits N", title=f"test {title} (±sd over seeds)")
    for name, style in (("least squares", "-"), ("sum", "--")):
        for i, run in enumerate(runs):
            steps, es = zip(*run["training"][name]["curve"], strict=True)
            axes[3].plot(steps, es, style, color=COLORS[name], label=name if i == 0 else None)
    axes[3].set(xlabel="meta-training step", ylim=(0, 1.02), title=f"validation ES at N = {ns[-1]} (best lr)")
    axes[0].legend(fontsize=7)
    axes[3].legend(fontsize=7)
    save(fig, path)


def run(quick: bool, out_dir, log=print) -> dict:
    cfg = configured(QUICK if quick else FULL)
    shared = {k: v for k, v in cfg.items() if k not in ("seeds", "workers")}
    log(f"malmen: seeds {cfg['seeds']}, N {cfg['ns']}, {len(EDITORS)} editors, meta-training on "
        f"{cfg['n_train']} edits per step (at most {cfg['max_meta_steps']} steps, meta lrs {cfg['meta_lrs']}), "
        f"{cfg['workers']} worker process(es), 1 thread each")
    runs = run_jobs(study, [(seed, shared) for seed in cfg["seeds"]], cfg["workers"])
    plot = out_dir / "malmen.png"
    _plot(runs, cfg["ns"], plot)
    return {"config": cfg, "claims": _claims_of(runs, cfg["ns"]), "runs": runs, "table": _table(runs, cfg["ns"]),
            "plot": str(plot)}
