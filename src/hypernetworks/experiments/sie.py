"""Reproduction ``sie``: invariant and equivariant parts of one representation, on rotated Fashion-MNIST.

Claim (Garrido et al., SIE, ICML 2023): splitting the representation and predicting the equivariant
part's change with a hypernetwork-generated linear predictor gives much better equivariance
(rotation prediction) at a classification accuracy similar to an invariant method (VICReg), and the
predictor does not collapse to ignoring the transformation, unlike an MLP on concat(g, z).
Differences from the paper (no 3DIEBench offline): two views are the same Fashion-MNIST image at two
uniform random planar rotations (plus ±2 px shifts); g = (cos, sin) of the relative angle; a small
CNN backbone; probes: logistic regression for the class (from the invariant part) and an MLP on the
representations of both views for the relative rotation (R² on (cos, sin); from the equivariant part).
Tuning: each model's Adam learning rate is chosen alike on seed 0 by its validation score (probe
class accuracy + rotation R² on images held out of the training set); test images are used only
for the reported numbers.
"""

from __future__ import annotations

import functools
import itertools
import math
import statistics
import time
import warnings

import torch
import torch.nn.functional as F

from ..data import load_fashion_mnist
from ..methods.sie import SIE, predictor_sensitivity
from . import _claims
from ._common import configured, pyplot, run_jobs, save, sweep_lines

FULL = {"seeds": 5, "steps": 1000, "batch": 128, "lrs": (1e-3, 2e-3, 4e-3, 8e-3), "width": 8, "val": 10000,
        "probe_train": 5000, "probe_test": 2000, "probe_steps": 800, "workers": 1}
QUICK = {"seeds": 2, "steps": 5, "batch": 32, "lrs": (1e-3, 2e-3), "width": 4, "val": 500, "probe_train": 300,
         "probe_test": 100, "probe_steps": 20, "workers": 1}
MODELS = ("vicreg", "mlp", "sie")
NAMES = {"vicreg": "VICReg (no split)", "mlp": "split + MLP predictor on [g, z]", "sie": "SIE (hypernetwork predictor)"}
INV_PART = {"vicreg": "all", "mlp": "inv", "sie": "inv"}  # the part each model classifies from
EQUI_PART = {"vicreg": "all", "mlp": "equi", "sie": "equi"}  # the part each model predicts the rotation from
REPR, EMBED, SHIFT = 64, 64, 2 / 14  # representation size, per-part embedding size, max shift (±2 px)
SPLIT_SEED = 12345  # the validation split is the same for every run


def rotate(x: torch.Tensor, angle: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate ``(B, 1, H, W)`` images by ``angle (B,)`` radians and shift by ``shift (B, 2)`` (fractions of half the
    side), zero-filled, then standardised."""
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, H, W, 2)
    return (F.grid_sample(x, grid, align_corners=False) - 0.286) / 0.353


def views(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two rotated, shifted views of each image and g = (cos, sin) of their relative angle ``(B, 2)``."""
    n = len(x)
    a1, a2 = (2 * math.pi * torch.rand(n, generator=gen) for _ in range(2))
    s1, s2 = ((2 * torch.rand(n, 2, generator=gen) - 1) * SHIFT for _ in range(2))
    delta = a2 - a1
    return rotate(x, a1, s1), rotate(x, a2, s2), torch.stack([delta.cos(), delta.sin()], 1)


def _config(kind: str, width: int, seed: int) -> dict:
    if kind == "vicreg":
        return {"split": False, "predictor": "none", "inv_dim": REPR, "embed_dim": 2 * EMBED, "width": width,
                "seed": seed}
    return {"split": True, "predictor": "hypernetwork" if kind == "sie" else "mlp", "inv_dim": REPR // 2,
            "equi_dim": REPR // 2, "embed_dim": EMBED, "width": width, "seed": seed}


def _features(model: SIE, x1, x2) -> dict:
    """Representations of both views: ``{"inv": (y1, y2), "equi": ..., "all": ...}``."""
    with torch.no_grad():
        (i1, e1), (i2, e2) = model.parts(x1), model.parts(x2)
    out = {"inv": (i1, i2), "all": (torch.cat([i1, e1], 1), torch.cat([i2, e2], 1))}
    if e1.shape[1]:
        out["equi"] = (e1, e2)
    return out


def _standardise(train: torch.Tensor, *tests: torch.Tensor) -> list[torch.Tensor]:
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    return [(t - mean) / std for t in (train, *tests)]


def class_accuracy(train: torch.Tensor, y: torch.Tensor, tests: list[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
    """Accuracies of one logistic-regression probe fitted on ``(N, d)`` features, on each ``(features, labels)``."""
    from sklearn.linear_model import LogisticRegression

    train, *xs = _standardise(train, *(t for t, _ in tests))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs may stop at max_iter; the probe is still a fair comparison
        probe = LogisticRegression(max_iter=300).fit(train.numpy(), y.numpy())
    return [float(probe.score(x.numpy(), yt.numpy())) for x, (_, yt) in zip(xs, tests, strict=True)]


def rotation_r2(train, g, tests: list[tuple[torch.Tensor, torch.Tensor]], steps: int, seed: int) -> list[float]:
    """R² (mean over cos, sin) of one MLP probe predicting g ``(N, 2)`` from ``(N, 2d)`` pair features, on each
    ``(features, g)``."""
    torch.manual_seed(seed)
    train, *xs = _standardise(train, *(t for t, _ in tests))
    probe = torch.nn.Sequential(torch.nn.Linear(train.shape[1], 256), torch.nn.ReLU(), torch.nn.Linear(256, 2))
    opt = torch.optim.Adam(probe.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(train), (256,), generator=gen)
        loss = F.mse_loss(probe(train[idx]), g[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    out = []
    with torch.no_grad():
        for x, gt in zip(xs, (t for _, t in tests), strict=True):
            err = (probe(x) - gt).pow(2).sum(0)  # (2,)
            out.append((1 - err / (gt - gt.mean(0)).pow(2).sum(0)).mean().item())
    return out


def _evaluate(model: SIE, splits: dict, cfg, seed: int) -> dict:
    """Probes fitted on training images, scored on validation and test images: ``{"val": ..., "test": ...}``,
    each ``{"acc": {part: ...}, "r2": {part: ...}}``; the predictor's fit and g-sensitivity on test images."""
    gen = torch.Generator().manual_seed(2000 + seed)
    pick = {}
    for name, n in (("train", cfg["probe_train"]), ("val", cfg["probe_test"]), ("test", cfg["probe_test"])):
        x, y = splits[name]
        idx = torch.randperm(len(x), generator=gen)[:n]
        v1, v2, g = views(x[idx], gen)
        pick[name] = (_features(model, v1, v2), y[idx], g)
    train, y, g = pick["train"]
    out: dict = {name: {"acc": {}, "r2": {}} for name in ("val", "test")}
    for part in train:
        accs = class_accuracy(train[part][0], y, [(pick[s][0][part][0], pick[s][1]) for s in out])
        r2s = rotation_r2(torch.cat(train[part], 1), g, [(torch.cat(pick[s][0][part], 1), pick[s][2]) for s in out],
                          cfg["probe_steps"], seed)
        for s, acc, r2 in zip(out, accs, r2s, strict=True):
            out[s]["acc"][part], out[s]["r2"][part] = acc, r2
    if model.predictor is not None and model.equi_projector is not None:
        test, _, gt = pick["test"]
        with torch.no_grad():
            e1, e2 = model.equi_projector(test["equi"][0]), model.equi_projector(test["equi"][1])
            pred = model.transform_embedding(e1, gt)
            out["predictor_r2"] = (1 - (pred - e2).pow(2).sum() / (e2 - e2.mean(0)).pow(2).sum()).item()
        delta = 2 * math.pi * torch.rand(len(gt), generator=gen)
        g2 = torch.stack([delta.cos(), delta.sin()], 1)  # (N, 2) other relative angles
        out["sensitivity"] = predictor_sensitivity(model, e1, gt, g2)
    return out


@functools.cache
def _splits(val: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Fashion-MNIST ``{"train", "val", "test"}`` images and labels: ``val`` training images held out
    (a fixed draw), loaded once per process."""
    x, y = load_fashion_mnist("train")
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(SPLIT_SEED))
    return {"train": (x[perm[val:]], y[perm[val:]]), "val": (x[perm[:val]], y[perm[:val]]),
            "test": load_fashion_mnist("test")}


def _run(job) -> dict:
    kind, lr, seed, cfg = job
    torch.set_num_threads(1)
    splits = _splits(cfg["val"])
    x = splits["train"][0]
    torch.manual_seed(seed)
    model = SIE(**_config(kind, cfg["width"], seed))
    gen = torch.Generator().manual_seed(seed)
    batches = (views(x[torch.randint(0, len(x), (cfg["batch"],), generator=gen)], gen) for _ in itertools.count())
    start = time.time()
    losses = model.fit(batches, steps=cfg["steps"], lr=lr)
    train_s = time.time() - start
    model.eval()
    res = _evaluate(model, splits, cfg, seed)
    val = res.pop("val")
    return {"kind": kind, "lr": lr, "seed": seed, "train_s": train_s, "ms_per_step": 1000 * train_s / cfg["steps"],
            "final_loss": losses[-1], "params": sum(p.numel() for p in model.parameters()),
            "val_score": val["acc"][INV_PART[kind]] + val["r2"][EQUI_PART[kind]], "val": val,
            **res.pop("test"), **res}


def _mean_std(rows, get) -> tuple[float, float] | None:
    vals = [get(r) for r in rows]
    if any(v is None for v in vals):
        return None
    return statistics.fmean(vals), statistics.pstdev(vals)


def _table(rows, sweep) -> tuple[str, list[dict]]:
    summary = []
    for kind in MODELS:
        rs = [r for r in rows if r["kind"] == kind]
        summary.append({
            "model": kind, "seeds": len(rs), "params": rs[0]["params"], "lr": rs[0]["lr"],
            "class_acc": _mean_std(rs, lambda r, k=kind: r["acc"][INV_PART[k]]),
            "class_acc_all": _mean_std(rs, lambda r: r["acc"]["all"]),
            "rotation_r2": _mean_std(rs, lambda r, k=kind: r["r2"][EQUI_PART[k]]),
            "rotation_r2_inv": _mean_std(rs, lambda r: r["r2"]["inv"]),
            "predictor_r2": _mean_std(rs, lambda r: r.get("predictor_r2")),
            "sensitivity": _mean_std(rs, lambda r: r.get("sensitivity")),
            "ms_per_step": statistics.fmean(r["ms_per_step"] for r in rs)})

    def cell(v, scale=100.0, digits=1):
        return f"{'—':>13}" if v is None else f"{scale * v[0]:>6.{digits}f} ± {scale * v[1]:<4.{digits}f}"

    cols = [("class acc %", "class_acc", 100.0, 1), ("acc % (all)", "class_acc_all", 100.0, 1),
            ("rot R² %", "rotation_r2", 100.0, 1), ("rot R² % inv", "rotation_r2_inv", 100.0, 1),
            ("pred R² %", "predictor_r2", 100.0, 1), ("g-sensitivity", "sensitivity", 1.0, 2)]
    lines = [f"rotated Fashion-MNIST, representation of {REPR} dims (SIE/MLP: 32 invariant + 32 equivariant); test "
             f"images, mean ± std over {summary[0]['seeds']} seed(s).\nclass acc: logistic probe on the invariant "
             "part (VICReg: all); rot R²: MLP probe for the relative rotation from both views' equivariant parts "
             "(VICReg: all); pred R²: predictor's fit of view 2's embedding; g-sensitivity: "
             "E|p(z,g1)-p(z,g2)|²/Var p (0 = ignores g)",
             f"{'model':<32} {'lr':>7} " + " ".join(f"{c[0]:>13}" for c in cols) + f" {'ms/step':>8}"]
    for s in summary:
        lines.append(f"{NAMES[s['model']]:<32} {s['lr']:>7.0e} " + " ".join(cell(s[k], sc, d) for _, k, sc, d in cols)
                     + f" {s['ms_per_step']:>8.1f}")
    lines += sweep_lines("learning rate (Adam) swept alike for every model, seed 0; validation score = class acc + "
                         "rot R² on held-out training images (the chosen one marked *)", NAMES, MODELS, sweep,
                         "val_score", lambda v: f"{v:>8.3f}", 32)
    return "\n".join(lines), summary


def _claims_of(rows) -> list[dict]:
    """Paired by seed: SIE's rotation R² vs VICReg and the MLP predictor, its class accuracy vs VICReg
    (at most 2 points below), and its predictor's g-sensitivity vs the MLP predictor's."""
    def get(kind, fn):
        return [fn(r) for r in sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["seed"])]

    sie_rot = get("sie", lambda r: r["r2"]["equi"])
    claims = [_claims.paired(f"SIE's equivariant part predicts the rotation better than {NAMES[k]}",
                             "rotation probe R²", sie_rot, get(k, lambda r, k=k: r["r2"][EQUI_PART[k]]),
                             ours_name="sie", baseline_name=k)
              for k in ("vicreg", "mlp")]
    claims.append(_claims.paired("SIE's invariant part classifies about as well as VICReg (at most 2 points below)",
                                 "linear-probe class accuracy", get("sie", lambda r: r["acc"]["inv"]),
                                 get("vicreg", lambda r: r["acc"]["all"]), ours_name="sie", baseline_name="vicreg",
                                 against=-0.02))
    claims.append(_claims.paired("SIE's predictor depends on g more than the MLP predictor (no collapse)",
                                 "g-sensitivity", get("sie", lambda r: r["sensitivity"]),
                                 get("mlp", lambda r: r["sensitivity"]), ours_name="sie", baseline_name="mlp"))
    return claims


def _plot(summary, path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    labels = [s["model"] for s in summary]
    for ax, key, title in ((axes[0], "class_acc", "class accuracy, invariant part (%)"),
                           (axes[1], "rotation_r2", "rotation R², equivariant part (%)")):
        ax.bar(labels, [100 * s[key][0] for s in summary], yerr=[100 * s[key][1] for s in summary],
               color=["tab:gray", "tab:orange", "tab:blue"][: len(summary)])
        ax.set_title(title, fontsize=9)
    save(fig, path)


def run(quick: bool, out_dir, log=print) -> dict:
    cfg = configured(QUICK if quick else FULL)
    sweep_jobs = [(kind, lr, 0, cfg) for kind in MODELS for lr in cfg["lrs"]]
    log(f"sie: learning-rate sweep, {len(sweep_jobs)} runs of {cfg['steps']} steps (seed 0), "
        f"{cfg['workers']} worker process(es), 1 thread each")
    sweep = run_jobs(_run, sweep_jobs, cfg["workers"])
    best = {kind: max((r for r in sweep if r["kind"] == kind), key=lambda r: r["val_score"]) for kind in MODELS}
    jobs = [(kind, best[kind]["lr"], seed, cfg) for seed in range(1, cfg["seeds"]) for kind in MODELS]
    log(f"sie: chosen learning rates {({k: r['lr'] for k, r in best.items()})}; {len(jobs)} more runs (seeds 1+)")
    rows = [*best.values(), *run_jobs(_run, jobs, cfg["workers"])]
    table, summary = _table(rows, sweep)
    plot = out_dir / "sie.png"
    _plot(summary, plot)
    return {"config": cfg, "chosen_lr": {k: r["lr"] for k, r in best.items()}, "summary": summary,
            "claims": _claims_of(rows), "sweep": sweep, "runs": rows, "table": table, "plot": str(plot)}
