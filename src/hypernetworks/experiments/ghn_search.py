"""Architecture search with generated weights (GHN, Zhang et al., ICLR 2019; SMASH, Brock et al., ICLR 2018):
how well a hypernetwork's weights rank candidate architectures against brief training, and what it costs.

Used by the ``ghn`` reproduction (``experiments/ghn.py``), which trains the hypernetworks and the truth.
"""

from __future__ import annotations

import statistics

from . import _claims


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman rank correlation of two equally long lists (NaN below 3 items; ties ranked by position)."""
    def ranks(v):
        order = sorted(range(len(v)), key=v.__getitem__)
        r = [0.0] * len(v)
        for rank, i in enumerate(order):
            r[i] = rank
        return r

    if len(a) < 3:
        return float("nan")
    return statistics.correlation(ranks(a), ranks(b))


def sd(values: list[float]) -> float:
    """Sample standard deviation, 0 for a single value."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def search_stats(results: list[dict], truth: list[dict], cfg: dict) -> dict[str, dict]:
    """Ranking quality and cost of each search: rho and top-k hits vs ground truth, the pick's true accuracy."""
    runs = sorted({r["run"] for r in truth})
    acc = {j: statistics.mean(r["test"] for r in truth if r["arch"] == j) for j in range(cfg["search"])}
    true_order = sorted(acc, key=lambda j: acc[j], reverse=True)
    top = set(true_order[:cfg["top_k"]])
    out = {}
    for kind in cfg["kinds"]:
        per_seed = [r for r in results if r["kind"] == kind and r["search"]]
        rhos, hits, picked, ranks, costs = [], [], [], [], []
        for res in per_seed:
            val = {s["arch"]: s["val"] for s in res["search"]}
            order = sorted(val, key=lambda j: val[j], reverse=True)
            rhos.append(spearman([val[j] for j in acc], [acc[j] for j in acc]))
            hits.append(len(top & set(order[:cfg["top_k"]])))
            picked.append(acc[order[0]])
            ranks.append(true_order.index(order[0]) + 1)
            costs.append(res["train_seconds"] + sum(s["seconds"] for s in res["search"]))
        out[kind] = {"rho": statistics.mean(rhos), "rho_sd": sd(rhos), "top_k_hits": statistics.mean(hits),
                     "picked_accuracy": statistics.mean(picked), "picked_rank": statistics.mean(ranks),
                     "cost_seconds": statistics.mean(costs)}
    per_run = [[r["test"] for r in sorted(truth, key=lambda r: r["arch"]) if r["run"] == run] for run in runs]
    out["brief_training"] = {
        "best_accuracy": acc[true_order[0]], "mean_accuracy": statistics.mean(acc.values()),
        "run_to_run_rho": spearman(per_run[0], per_run[1]) if len(per_run) > 1 else float("nan"),
        "cost_seconds": sum(r["seconds"] for r in truth) / len(runs)}
    return out


def search_claim(hyper: list[dict], truth: list[dict], cfg: dict) -> dict:
    """Paired by seed: GHN-2's vs SMASH-style generated weights, Spearman rho of their ranking with the truth."""
    acc = {j: statistics.mean(r["test"] for r in truth if r["arch"] == j) for j in range(cfg["search"])}
    rho = {}
    for kind in ("ghn", "smash"):
        runs = sorted((r for r in hyper if r["kind"] == kind and r["search"]), key=lambda r: r["seed"])
        vals = [{x["arch"]: x["val"] for x in res["search"]} for res in runs]
        rho[kind] = [spearman([v[j] for j in acc], [acc[j] for j in acc]) for v in vals]
    return _claims.paired("search: GHN-2's generated weights rank architectures better than SMASH-style ones",
                          "Spearman rho with brief training", rho["ghn"], rho["smash"], ours_name="GHN-2",
                          baseline_name="SMASH-style")


def search_table(s: dict[str, dict], cfg: dict, labels: dict[str, str]) -> str:
    """The search table: each kind's ranking quality and cost, a random pick and brief training (``labels``:
    kind -> display name)."""
    k, n = cfg["top_k"], cfg["search"]
    head = f"{'search by':<26}{'rho':>12} {f'top-{k} hits':>10} {'pick: acc':>10} {'pick: rank':>11} {'cost s':>8}"
    lines = [head, "-" * len(head)]
    for kind in cfg["kinds"]:
        r, label = s[kind], labels[kind]
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
