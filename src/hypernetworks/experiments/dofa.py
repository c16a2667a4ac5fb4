"""Reproduction ``dofa``: one wavelength-conditioned network for band combinations it never saw.

Claim (Xiong et al., DOFA, 2024): a patch embedding generated from the bands' wavelengths lets one
network serve any combination of bands, close to a model dedicated to that combination.
Differences from the paper (no multispectral data offline): the bands are the R, G, B channels
(central wavelengths 0.665, 0.56, 0.49 µm) of 8 scikit-image colour photos; the task is to name
the photo a 32x32 patch comes from (train: the left 75% of each photo; test: the right 25%).
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import DOFAViT
from . import _claims
from ._common import pyplot, run_jobs, save

PHOTOS = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "rocket", "retina",
          "colorwheel")
BANDS = {"R": 0.665, "G": 0.56, "B": 0.49}  # µm
RGB = "RGB"
TRAIN_SUBSETS = ("RG", "GB")
EVAL_SUBSETS = ("RG", "GB", "RB", "R", "GBR")
UNSEEN = ("RB", "R", "GBR")
FULL = {"seeds": 3, "steps": 1000, "workers": 2, "patches": 600}
QUICK = {"seeds": 1, "steps": 3, "workers": 1, "patches": 20}
SIZE, PATCH, DIM = 32, 4, 64


def patches(per_photo: int, test: bool, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, 32, 32) RGB patches in [-0.5, 0.5] and the photo index of each."""
    from skimage import data

    gen = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for label, name in enumerate(PHOTOS):
        img = torch.tensor(getattr(data, name)()[..., :3], dtype=torch.float32).permute(2, 0, 1) / 255 - 0.5
        cut = int(0.75 * img.shape[2])
        lo, hi = (cut, img.shape[2] - SIZE) if test else (0, cut - SIZE)
        rows = torch.randint(0, img.shape[1] - SIZE + 1, (per_photo,), generator=gen)
        cols = torch.randint(lo, hi + 1, (per_photo,), generator=gen)
        xs += [img[:, r:r + SIZE, c:c + SIZE] for r, c in zip(rows.tolist(), cols.tolist(), strict=True)]
        ys += [label] * per_photo
    return torch.stack(xs), torch.tensor(ys)


def select(x: torch.Tensor, subset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The channels of ``subset`` (in its order) and their wavelengths (µm)."""
    return x[:, [RGB.index(b) for b in subset]], torch.tensor([BANDS[b] for b in subset])


def zero_filled(x: torch.Tensor, subset: str) -> torch.Tensor:
    """All three channels in R, G, B slots, the ones not in ``subset`` set to zero."""
    out = torch.zeros_like(x)
    for b in subset:
        out[:, RGB.index(b)] = x[:, RGB.index(b)]
    return out


class FixedChannelViT(nn.Module):
    """The same ViT with an ordinary 3-channel patch embedding (missing bands must be zero-filled)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.vit = DOFAViT(SIZE, PATCH, num_classes, DIM)
        self.vit.patch_embed = None
        self.embed = nn.Conv2d(3, DIM, PATCH, stride=PATCH)

    def forward(self, x, subset: str):
        tokens = self.embed(zero_filled(x, subset)).flatten(2).transpose(1, 2) + self.vit.pos
        return self.vit.head(self.vit.norm(self.vit.encoder(tokens)).mean(1))


def _run(job) -> dict:
    kind, train_subsets, seed, steps, n = job
    torch.set_num_threads(1)
    x, y = patches(n, test=False, seed=seed)
    xt, yt = patches(max(n // 3, 10), test=True, seed=100 + seed)
    torch.manual_seed(seed)
    model = FixedChannelViT(len(PHOTOS)) if kind == "fixed" else DOFAViT(SIZE, PATCH, len(PHOTOS), DIM)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    gen = torch.Generator().manual_seed(seed)

    def logits(inputs, subset):
        if kind == "fixed":
            return model(inputs, subset)
        xs, waves = select(inputs, subset)
        return model(xs, waves)

    start = time.time()
    for step in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=gen)
        subset = train_subsets[step % len(train_subsets)]
        loss = F.cross_entropy(logits(x[idx], subset), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    train_s = time.time() - start
    with torch.no_grad():
        acc = {s: (logits(xt, s).argmax(1) == yt).float().mean().item() for s in EVAL_SUBSETS}
    return {"kind": kind, "trained_on": "+".join(train_subsets), "seed": seed, "accuracy": acc, "train_s": train_s,
            "params": sum(p.numel() for p in model.parameters())}


def _table(rows) -> tuple[str, list[dict]]:
    summary = []
    for key in dict.fromkeys((r["kind"], r["trained_on"]) for r in rows):
        rs = [r for r in rows if (r["kind"], r["trained_on"]) == key]
        acc = {s: statistics.fmean(r["accuracy"][s] for r in rs) for s in EVAL_SUBSETS}
        std = {s: statistics.pstdev(r["accuracy"][s] for r in rs) for s in EVAL_SUBSETS}
        summary.append({"model": key[0], "trained_on": key[1], "seeds": len(rs), "accuracy": acc, "std": std,
                        "params": rs[0]["params"], "train_s": statistics.fmean(r["train_s"] for r in rs)})
    names = {"dofa": "DOFA ViT", "fixed": "fixed 3-channel ViT, zero-filled"}
    lines = [f"test accuracy (%) naming the source photo of a 32x32 patch, by bands given at test time "
             f"(mean ± std over {summary[0]['seeds']} seed(s)); unseen in training: {', '.join(UNSEEN)}",
             f"{'model':<34} {'trained on':<10} " + " ".join(f"{s:>12}" for s in EVAL_SUBSETS)]
    for s in summary:
        cells = []
        for sub in EVAL_SUBSETS:
            seen = sub in s["trained_on"].split("+")
            if s["trained_on"] in EVAL_SUBSETS and not seen:
                cells.append(f"{'':>12}")  # a dedicated model: only its own subset matters
            else:
                cells.append(f"{100 * s['accuracy'][sub]:>6.1f} ± {100 * s['std'][sub]:<3.1f}")
        lines.append(f"{names[s['model']]:<34} {s['trained_on']:<10} " + " ".join(cells))
    return "\n".join(lines), summary


def _claims_of(rows) -> list[dict]:
    """Per band combination unseen in training, paired by seed: the DOFA ViT trained on RG+GB vs the
    zero-filled fixed ViT (higher) and vs a DOFA ViT dedicated to those bands (at most 5 points lower)."""
    def acc(kind, trained_on, sub):
        rs = sorted((r for r in rows if (r["kind"], r["trained_on"]) == (kind, trained_on)), key=lambda r: r["seed"])
        return [r["accuracy"][sub] for r in rs]

    multi, claims = "+".join(TRAIN_SUBSETS), []
    for sub in UNSEEN:
        ours = acc("dofa", multi, sub)
        claims.append(_claims.paired(f"unseen bands {sub}: DOFA beats a fixed ViT with the missing bands zero-filled",
                                     "test accuracy", ours, acc("fixed", multi, sub), ours_name="dofa, RG+GB",
                                     baseline_name="fixed, RG+GB"))
        claims.append(_claims.paired(f"unseen bands {sub}: DOFA is close to (at most 5 points below) a model "
                                     "dedicated to those bands", "test accuracy", ours, acc("dofa", sub, sub),
                                     ours_name="dofa, RG+GB", baseline_name=f"dofa, {sub}", against=-0.05))
    return claims


def _plot(summary, path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    multi = {s["model"]: s for s in summary if s["trained_on"] == "+".join(TRAIN_SUBSETS)}
    dedicated = {s["trained_on"]: s for s in summary if s["trained_on"] in EVAL_SUBSETS}
    xs = range(len(EVAL_SUBSETS))
    ax.plot(xs, [100 * multi["dofa"]["accuracy"][s] for s in EVAL_SUBSETS], "o-", label="DOFA, trained on RG+GB")
    ax.plot(xs, [100 * multi["fixed"]["accuracy"][s] for s in EVAL_SUBSETS], "s-", label="fixed ViT, zero-filled")
    ax.plot([i for i, s in enumerate(EVAL_SUBSETS) if s in dedicated],
            [100 * dedicated[s]["accuracy"][s] for s in EVAL_SUBSETS if s in dedicated], "^", label="dedicated DOFA")
    ax.set_xticks(list(xs), EVAL_SUBSETS)
    ax.set(xlabel="bands at test time", ylabel="test accuracy (%)")
    ax.legend(fontsize=8)
    save(fig, path)


def run(quick: bool, out_dir, log=print) -> dict:
    cfg = QUICK if quick else FULL
    jobs = []
    for seed in range(cfg["seeds"]):
        jobs.append(("dofa", TRAIN_SUBSETS, seed, cfg["steps"], cfg["patches"]))
        jobs.append(("fixed", TRAIN_SUBSETS, seed, cfg["steps"], cfg["patches"]))
        jobs += [("dofa", (s,), seed, cfg["steps"], cfg["patches"]) for s in UNSEEN]
    log(f"dofa: {len(jobs)} runs of {cfg['steps']} steps, {cfg['workers']} worker process(es), 1 thread each")
    rows = run_jobs(_run, jobs, cfg["workers"])
    table, summary = _table(rows)
    plot = out_dir / "dofa.png"
    _plot(summary, plot)
    return {"config": cfg, "summary": summary, "claims": _claims_of(rows), "runs": rows, "table": table,
            "plot": str(plot)}
