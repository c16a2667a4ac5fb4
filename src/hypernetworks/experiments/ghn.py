"""Reproduction ``ghn``: parameter prediction for unseen architectures (GHN-2, Knyazev et al., NeurIPS 2021).

A GHN-2 is meta-trained on a pool of small sampled BatchNorm networks (Fashion-MNIST, 7x7), then predicts all
parameters of held-out networks in one forward pass. Per architecture: test accuracy with predicted
parameters (BatchNorm statistics recomputed on 4 training batches) vs random init vs k Adam steps from
random init; the same GHN fed no graph (no edges) and a shuffled graph; fine-tuning from predicted vs
random init; the rank correlation (Spearman rho) of predicted-parameter accuracy with accuracy after
100 Adam steps (architecture ranking as in Zhang et al., ICLR 2019). Groups: seen (training pool),
unseen in-distribution, wider, deeper, and torchvision resnet18 / mobilenet_v3_small / a tiny ViT
adapted to 1x7x7 inputs (Fashion-MNIST average-pooled 4x to keep the run in a shared 2-core budget).
"""

from __future__ import annotations

import copy
import functools
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..methods.ghn import (
    GHN,
    ArchPool,
    GHNConfig,
    Net,
    TrainConfig,
    build_graph,
    recompute_bn_stats,
    save_checkpoint,
    train_ghn,
)
from ..methods.ghn.train import train_images
from ._common import pyplot, run_jobs, save

FULL = {"seeds": 2, "steps": 400, "archs": 300, "meta_batch": 8, "test_images": 1000, "unseen": 10, "seen": 5,
        "ood_each": 2, "adam_steps": (1, 2, 5, 10, 20, 50, 100), "finetune_steps": 50, "workers": 2,
        "torchvision": ("resnet18", "mobilenet_v3_small", "vit")}
QUICK = {"seeds": 1, "steps": 4, "archs": 6, "meta_batch": 2, "test_images": 200, "unseen": 2, "seen": 1,
         "ood_each": 0, "adam_steps": (1, 5), "finetune_steps": 5, "workers": 1,
         "torchvision": ("vit",)}
SIDE, LR, BATCH, NOISE, NORMS = 7, 1e-3, 32, 0.1, ("bn",)
SPACES = {"unseen": {}, "wide": {"widths": (32,)}, "deep": {"stages": (4,), "cells": (2, 3), "widths": (8,)},
          "no_norm": {"norms": ("none",)}}


def _torchvision(name: str) -> nn.Module:
    """torchvision families adapted to 1-channel SIDE x SIDE inputs and 10 classes."""
    import torchvision

    if name == "resnet18":
        net = torchvision.models.resnet18(num_classes=10)
        net.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    elif name == "mobilenet_v3_small":
        net = torchvision.models.mobilenet_v3_small(num_classes=10)
        net.features[0][0] = nn.Conv2d(1, 16, 3, 2, 1, bias=False)
    else:
        net = torchvision.models.VisionTransformer(SIDE, 1, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                                                   num_classes=10)
        net.conv_proj = nn.Conv2d(1, 32, 1)
    return net


def _architectures(cfg: dict) -> list[tuple[str, nn.Module]]:
    """(group, fresh network) of every evaluated architecture, the same in every process."""
    torch.manual_seed(1234)
    archs = [("seen", Net(g)) for g in ArchPool.sample(cfg["archs"], 0, SIDE, norms=NORMS).genotypes[:cfg["seen"]]]
    for i, (group, space) in enumerate(SPACES.items()):
        n = cfg["unseen"] if group == "unseen" else cfg["ood_each"]
        if n:
            pool = ArchPool.sample(n, 1000 + i, SIDE, max_params=10**6, **{"norms": NORMS, **space})
            archs += [(group, Net(g)) for g in pool.genotypes]
    archs += [("tv_" + name, _torchvision(name)) for name in cfg["torchvision"]]
    return archs


@functools.cache
def _data(test_images: int):
    """Fashion-MNIST train (60000) and the first ``test_images`` test images, SIDE x SIDE (loaded once)."""
    x, y = train_images(SIDE, "test")
    return train_images(SIDE), (x[:test_images], y[:test_images])


def _accuracy(net: nn.Module, data, train) -> float:
    recompute_bn_stats(net, [train[0][i * 128:(i + 1) * 128] for i in range(4)])
    net.eval()
    x, y = data
    with torch.no_grad():
        hits = sum((net(x[i:i + 500]).argmax(1) == y[i:i + 500]).sum().item() for i in range(0, len(x), 500))
    return 100.0 * hits / len(x)


def _adam(net: nn.Module, train, steps: int, seed: int, evals=(), test=None) -> dict[int, float]:
    """Train ``net`` with Adam for ``steps`` steps; test accuracy after each step count in ``evals``."""
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    gen, out = torch.Generator().manual_seed(seed), {}
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(train[0]), (BATCH,), generator=gen)
        net.train()
        loss = F.cross_entropy(net(train[0][idx]), train[1][idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        if step in evals:
            out[step] = _accuracy(net, test, train)
    return out


def _fill(net: nn.Module, params: dict[str, torch.Tensor], noise: float = 0.0) -> nn.Module:
    """A copy of ``net`` holding ``params``; ``noise`` adds Gaussian noise of that fraction of each tensor's std."""
    net = copy.deepcopy(net)
    with torch.no_grad():
        for name, value in params.items():
            p = net.get_parameter(name)
            p.copy_(value)
            if noise and p.numel() > 1:
                p.add_(torch.randn_like(p) * noise * p.std())
    return net


def _baseline_job(cfg: dict) -> list[dict]:
    torch.set_num_threads(1)
    train, test = _data(cfg["test_images"])
    rows = []
    for i, (group, net) in enumerate(_architectures(cfg)):
        torch.manual_seed(i)
        init = _accuracy(copy.deepcopy(net), test, train)
        curve = _adam(copy.deepcopy(net), train, max(cfg["adam_steps"]), i, set(cfg["adam_steps"]), test)
        rows.append({"arch": i, "group": group, "random_init": init, "adam": curve,
                     "finetune_random": curve[cfg["finetune_steps"]]})  # fine-tuning from random = Adam from init
    return rows


def _ghn_job(cfg: dict, seed: int, out_dir, log=None) -> list[dict]:
    torch.set_num_threads(1)
    train, test = _data(cfg["test_images"])
    torch.manual_seed(seed)
    ghn = GHN(GHNConfig())
    tcfg = TrainConfig(steps=cfg["steps"], meta_batch=cfg["meta_batch"], archs=cfg["archs"], side=SIDE, seed=seed,
                       norms=",".join(NORMS))
    pool = ArchPool.sample(cfg["archs"], 0, SIDE, norms=NORMS)  # one pool for all seeds: seeds vary init, data order
    train_ghn(ghn, pool, train, tcfg, log=log)
    if seed == 0:
        save_checkpoint(out_dir / "ghn_seed0.pt", ghn, train_config=tcfg)
    ghn.eval()
    rows = []
    for i, (group, net) in enumerate(_architectures(cfg)):
        g = build_graph(net, torch.zeros(1, 1, SIDE, SIDE))
        with torch.no_grad():
            full, empty, shuffled = ghn([g, g.without_edges(), g.shuffled(seed)])
        row = {"arch": i, "group": group, "seed": seed, "params": sum(p.numel() for p in net.parameters()),
               "predicted": _accuracy(_fill(net, full), test, train),
               "no_graph": _accuracy(_fill(net, empty), test, train),
               "shuffled": _accuracy(_fill(net, shuffled), test, train)}
        torch.manual_seed(100 + i)
        tuned = _adam(_fill(net, full, NOISE), train, cfg["finetune_steps"], i, {cfg["finetune_steps"]}, test)
        row["finetune_predicted"] = tuned[cfg["finetune_steps"]]
        rows.append(row)
    return rows


def _dispatch(job):
    return _baseline_job(job[1]) if job[0] == "baseline" else _ghn_job(job[1], job[2], job[3])


def _spearman(a: list[float], b: list[float]) -> float:
    def ranks(v):
        order = sorted(range(len(v)), key=v.__getitem__)
        r = [0.0] * len(v)
        for rank, i in enumerate(order):
            r[i] = rank
        return r

    if len(a) < 3:
        return float("nan")
    return statistics.correlation(ranks(a), ranks(b))


def _mean_of(rows: list[dict], key: str) -> float:
    return statistics.mean(r[key] for r in rows)


def _summarise(ghn_rows: list[dict], base: list[dict], cfg: dict) -> tuple[str, dict]:
    base_by = {r["arch"]: r for r in base}
    groups = list(dict.fromkeys(r["group"] for r in base))
    ks = cfg["adam_steps"]
    k10 = 10 if 10 in ks else ks[-1]
    head = (f"{'group':<22}{'n':>3} {'predicted':>11} {'no graph':>9} {'shuffled':>9} {'rand init':>9} "
            f"{f'Adam {k10}':>8} {'k match':>8} {'beats':>6} {'FT pred':>8} {'FT rand':>8}")
    lines, stats = [head, "-" * len(head)], {}
    for grp in groups:
        rows = [r for r in ghn_rows if r["group"] == grp]
        archs = sorted({r["arch"] for r in rows})
        per_seed = {}
        for r in rows:
            per_seed.setdefault(r["seed"], []).append(r["predicted"])
        seed_means = [statistics.mean(v) for v in per_seed.values()]
        mean = functools.partial(_mean_of, rows)
        pred_arch = {a: statistics.mean(r["predicted"] for r in rows if r["arch"] == a) for a in archs}
        matches = [min([k for k in ks if base_by[a]["adam"][k] >= pred_arch[a]], default=None) for a in archs]
        beats = sum(pred_arch[a] > base_by[a]["adam"][k10] for a in archs) / len(archs)
        k_med = sorted(m if m is not None else 10**9 for m in matches)[len(matches) // 2]
        sd = statistics.stdev(seed_means) if len(seed_means) > 1 else 0.0
        stats[grp] = {"predicted": statistics.mean(seed_means), "predicted_sd_over_seeds": sd,
                      "no_graph": mean("no_graph"), "shuffled": mean("shuffled"),
                      "random_init": statistics.mean(base_by[a]["random_init"] for a in archs),
                      "adam_k10": statistics.mean(base_by[a]["adam"][k10] for a in archs), "beats_adam_k10": beats,
                      "median_k_match": k_med, "finetune_predicted": mean("finetune_predicted"),
                      "finetune_random": statistics.mean(base_by[a]["finetune_random"] for a in archs)}
        if len(archs) >= 3:
            stats[grp]["spearman_vs_adam100"] = _spearman([pred_arch[a] for a in archs],
                                                          [base_by[a]["adam"][ks[-1]] for a in archs])
        s = stats[grp]
        kk = ">" + str(ks[-1]) if k_med == 10**9 else str(k_med)
        lines.append(f"{grp:<22}{len(archs):>3} {s['predicted']:>6.1f}±{sd:<4.1f} {s['no_graph']:>9.1f} "
                     f"{s['shuffled']:>9.1f} {s['random_init']:>9.1f} {s['adam_k10']:>8.1f} {kk:>8} "
                     f"{100 * beats:>5.0f}% {s['finetune_predicted']:>8.1f} {s['finetune_random']:>8.1f}")
    lines.append(f"(test accuracy %, Fashion-MNIST {SIDE}x{SIDE}, {cfg['test_images']} test images; predicted: mean "
                 f"± sd over {cfg['seeds']} GHN seed(s); 'k match': median fewest Adam steps from random init that "
                 f"reach the predicted accuracy; 'beats': share of archs where predicted > Adam {k10}; FT: "
                 f"{cfg['finetune_steps']} Adam steps from predicted (+{NOISE} relative noise) / random init)")
    rho = {g: round(s["spearman_vs_adam100"], 2) for g, s in stats.items() if "spearman_vs_adam100" in s}
    lines.append(f"Spearman rho (predicted-param accuracy vs accuracy after {ks[-1]} Adam steps): {rho}")
    return "\n".join(lines), stats


def _plot(stats: dict, base: list[dict], ghn_rows: list[dict], cfg: dict, path) -> None:
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
    groups = list(stats)
    keys = ("predicted", "no_graph", "shuffled", "random_init", "adam_k10", "finetune_predicted", "finetune_random")
    width = 0.8 / len(keys)
    for j, key in enumerate(keys):
        a.bar([i + j * width for i in range(len(groups))], [stats[g][key] for g in groups], width, label=key)
    a.set_xticks([i + 0.4 for i in range(len(groups))], groups, rotation=30, ha="right")
    a.set_ylabel("test accuracy (%)")
    a.legend(fontsize=7)
    a.set_title("GHN-2 predicted parameters vs controls")
    ks = cfg["adam_steps"]
    unseen = [r for r in base if r["group"] == "unseen"]
    b.plot(ks, [statistics.mean(r["adam"][k] for r in unseen) for k in ks], "o-", label="Adam from random init")
    pred = statistics.mean(r["predicted"] for r in ghn_rows if r["group"] == "unseen")
    b.axhline(pred, color="C1", label="GHN-2 predicted (no steps)")
    b.set_xscale("log")
    b.set_xlabel("Adam steps")
    b.set_title("unseen in-distribution architectures")
    b.legend()
    save(fig, path)


def run(quick: bool, out_dir, log=print) -> dict:
    out_dir = Path(out_dir)
    cfg = QUICK if quick else FULL
    jobs = [("ghn", cfg, s, out_dir) for s in range(cfg["seeds"])]
    jobs.insert(1, ("baseline", cfg))  # second, so both workers stay busy
    log(f"ghn: {cfg['seeds']} GHN seed(s) x {cfg['steps']} steps + baselines, {cfg['workers']} worker(s), 1 thread")
    results = run_jobs(_dispatch, jobs, cfg["workers"])
    base = results.pop(1)
    ghn_rows = [r for res in results for r in res]
    table, stats = _summarise(ghn_rows, base, cfg)
    plot = out_dir / "ghn.png"
    _plot(stats, base, ghn_rows, cfg, plot)
    return {"config": {k: v for k, v in cfg.items()}, "seeds": list(range(cfg["seeds"])), "stats": stats,
            "runs": ghn_rows, "baselines": base, "table": table, "plot": str(plot)}


