"""Reproduction ``sie``: invariant and equivariant parts of one representation, on rotated Fashion-MNIST.

Claim (Garrido et al., SIE, ICML 2023): splitting the representation and predicting the equivariant
part's change with a hypernetwork-generated linear predictor gives much better equivariance
(rotation prediction) at a classification accuracy similar to an invariant method (VICReg), and the
predictor does not collapse to ignoring the transformation, unlike an MLP on concat(g, z).
Differences from the paper (no 3DIEBench offline): two views are the same Fashion-MNIST image at two
uniform random planar rotations (plus ±2 px shifts); g = (cos, sin) of the relative angle; a small
CNN backbone; probes: logistic regression for the class (from the invariant part) and an MLP on the
representations of both views for the relative rotation (R² on (cos, sin); from the equivariant part).
"""

from __future__ import annotations

import functools
import math
import statistics
import time
import warnings

import torch
import torch.nn.functional as F

from ..data import load_fashion_mnist
from ..methods.sie import SIE, predictor_sensitivity
from . import _claims
from ._common import pyplot, run_jobs, save

FULL = {"seeds": 2, "steps": 1000, "batch": 128, "lr": 1e-3, "width": 8, "probe_train": 5000, "probe_test": 2000,
        "probe_steps": 800, "workers": 2}
QUICK = {"seeds": 1, "steps": 5, "batch": 32, "lr": 1e-3, "width": 4, "probe_train": 300, "probe_test": 100,
         "probe_steps": 20, "workers": 1}
MODELS = ("vicreg", "mlp", "sie")
NAMES = {"vicreg": "VICReg (no split)", "mlp": "split + MLP predictor on [g, z]", "sie": "SIE (hypernetwork predictor)"}
REPR, EMBED, SHIFT = 64, 64, 2 / 14  # representation size, per-part embedding size, max shift (±2 px)


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


def _standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    return (train - mean) / std, (test - mean) / std


def class_accuracy(train: torch.Tensor, y: torch.Tensor, test: torch.Tensor, yt: torch.Tensor) -> float:
    """Test accuracy of a logistic-regression probe on ``(N, d)`` features."""
    from sklearn.linear_model import LogisticRegression

    train, test = _standardise(train, test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs may stop at max_iter; the probe is still a fair comparison
        probe = LogisticRegression(max_iter=300).fit(train.numpy(), y.numpy())
    return float(probe.score(test.numpy(), yt.numpy()))


def rotation_r2(train, g, test, gt, steps: int, seed: int) -> float:
    """R² (mean over cos, sin) of an MLP probe predicting g ``(N, 2)`` from ``(N, 2d)`` pair features."""
    torch.manual_seed(seed)
    train, test = _standardise(train, test)
    probe = torch.nn.Sequential(torch.nn.Linear(train.shape[1], 256), torch.nn.ReLU(), torch.nn.Linear(256, 2))
    opt = torch.optim.Adam(probe.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(train), (256,), generator=gen)
        loss = F.mse_loss(probe(train[idx]), g[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        err = (probe(test) - gt).pow(2).sum(0)
    return (1 - err / (gt - gt.mean(0)).pow(2).sum(0)).mean().item()


def _evaluate(model: SIE, x, y, xt, yt, cfg, seed: int) -> dict:
    gen = torch.Generator().manual_seed(2000 + seed)
    tr = torch.randperm(len(x), generator=gen)[: cfg["probe_train"]]
    te = torch.randperm(len(xt), generator=gen)[: cfg["probe_test"]]
    a1, b1, g = views(x[tr], gen)
    a2, b2, gt = views(xt[te], gen)
    train, test = _features(model, a1, b1), _features(model, a2, b2)
    out = {"acc": {}, "r2": {}}
    for part in train:
        out["acc"][part] = class_accuracy(train[part][0], y[tr], test[part][0], yt[te])
        out["r2"][part] = rotation_r2(torch.cat(train[part], 1), g, torch.cat(test[part], 1), gt,
                                      cfg["probe_steps"], seed)
    if model.predictor is not None:
        with torch.no_grad():
            e1, e2 = model.equi_projector(test["equi"][0]), model.equi_projector(test["equi"][1])
            pred = model.predict(e1, gt)
            out["predictor_r2"] = (1 - (pred - e2).pow(2).sum() / (e2 - e2.mean(0)).pow(2).sum()).item()
        _, _, g2 = views(xt[te], gen)
        out["sensitivity"] = predictor_sensitivity(model, e1, gt, g2)
    return out


@functools.cache
def _data() -> tuple[torch.Tensor, ...]:
    """Fashion-MNIST train and test images and labels, loaded once per process."""
    return (*load_fashion_mnist("train"), *load_fashion_mnist("test"))


def _run(job) -> dict:
    kind, seed, cfg = job
    torch.set_num_threads(1)
    x, y, xt, yt = _data()
    torch.manual_seed(seed)
    model = SIE(**_config(kind, cfg["width"], seed))
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    gen = torch.Generator().manual_seed(seed)
    start = time.time()
    for _ in range(cfg["steps"]):
        x1, x2, g = views(x[torch.randint(0, len(x), (cfg["batch"],), generator=gen)], gen)
        loss, terms = model.loss(x1, x2, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    train_s = time.time() - start
    model.eval()
    return {"kind": kind, "seed": seed, "train_s": train_s, "ms_per_step": 1000 * train_s / cfg["steps"],
            "final": terms, "params": sum(p.numel() for p in model.parameters()),
            **_evaluate(model, x, y, xt, yt, cfg, seed)}


def _mean_std(rows, get) -> tuple[float, float] | None:
    vals = [get(r) for r in rows]
    if any(v is None for v in vals):
        return None
    return statistics.fmean(vals), statistics.pstdev(vals)


def _table(rows) -> tuple[str, list[dict]]:
    inv_part = {"vicreg": "all", "mlp": "inv", "sie": "inv"}
    equi_part = {"vicreg": "all", "mlp": "equi", "sie": "equi"}
    summary = []
    for kind in MODELS:
        rs = [r for r in rows if r["kind"] == kind]
        summary.append({
            "model": kind, "seeds": len(rs), "params": rs[0]["params"],
            "class_acc": _mean_std(rs, lambda r, k=kind: r["acc"][inv_part[k]]),
            "class_acc_all": _mean_std(rs, lambda r: r["acc"]["all"]),
            "rotation_r2": _mean_std(rs, lambda r, k=kind: r["r2"][equi_part[k]]),
            "rotation_r2_inv": _mean_std(rs, lambda r: r["r2"]["inv"]),
            "predictor_r2": _mean_std(rs, lambda r: r.get("predictor_r2")),
            "sensitivity": _mean_std(rs, lambda r: r.get("sensitivity")),
            "ms_per_step": statistics.fmean(r["ms_per_step"] for r in rs)})

    def cell(v, scale=100.0, digits=1):
        return f"{'—':>13}" if v is None else f"{scale * v[0]:>6.{digits}f} ± {scale * v[1]:<4.{digits}f}"

    cols = [("class acc %", "class_acc", 100.0, 1), ("acc % (all)", "class_acc_all", 100.0, 1),
            ("rot R² %", "rotation_r2", 100.0, 1), ("rot R² % inv", "rotation_r2_inv", 100.0, 1),
            ("pred R² %", "predictor_r2", 100.0, 1), ("g-sensitivity", "sensitivity", 1.0, 2)]
    lines = [f"rotated Fashion-MNIST, representation of {REPR} dims (SIE/MLP: 32 invariant + 32 equivariant); "
             f"mean ± std over {summary[0]['seeds']} seed(s).\nclass acc: logistic probe on the invariant part "
             "(VICReg: all); "
             "rot R²: MLP probe for the relative rotation from both views' equivariant parts (VICReg: all); "
             "pred R²: predictor's fit of view 2's embedding; g-sensitivity: E|p(z,g1)-p(z,g2)|²/Var p (0 = ignores g)",
             f"{'model':<32} " + " ".join(f"{c[0]:>13}" for c in cols) + f" {'ms/step':>8}"]
    for s in summary:
        lines.append(f"{NAMES[s['model']]:<32} " + " ".join(cell(s[k], sc, d) for _, k, sc, d in cols)
                     + f" {s['ms_per_step']:>8.1f}")
    return "\n".join(lines), summary


def _claims_of(rows) -> list[dict]:
    """Paired by seed: SIE's rotation R² vs VICReg and the MLP predictor, its class accuracy vs VICReg
    (at most 2 points below), and its predictor's g-sensitivity vs the MLP predictor's."""
    def get(kind, fn):
        return [fn(r) for r in sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["seed"])]

    rot = {"vicreg": get("vicreg", lambda r: r["r2"]["all"]), "mlp": get("mlp", lambda r: r["r2"]["equi"])}
    sie_rot = get("sie", lambda r: r["r2"]["equi"])
    claims = [_claims.paired(f"SIE's equivariant part predicts the rotation better than {NAMES[k]}",
                             "rotation probe R²", sie_rot, rot[k], ours_name="sie", baseline_name=k)
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
    cfg = QUICK if quick else FULL
    jobs = [(kind, seed, cfg) for seed in range(cfg["seeds"]) for kind in MODELS]
    log(f"sie: {len(jobs)} runs of {cfg['steps']} steps, {cfg['workers']} worker process(es), 1 thread each")
    rows = run_jobs(_run, jobs, cfg["workers"])
    table, summary = _table(rows)
    plot = out_dir / "sie.png"
    _plot(summary, plot)
    return {"config": cfg, "summary": summary, "claims": _claims_of(rows), "runs": rows, "table": table,
            "plot": str(plot)}
