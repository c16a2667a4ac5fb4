"""``make demo``: a γ-conditioned Fashion-MNIST classifier (amortised label smoothing), plain vs MIP."""

from __future__ import annotations

import torch

from ._common import pyplot, save
from .mip_tasks import LabelSmoothing, train_run

GAMMAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def run(steps: int, seed: int, optimizer: str, out_dir, progress_factory) -> dict:
    """Train plain and MIP hypernetworks; return test accuracy per γ and write ``demo.png``."""
    task = LabelSmoothing(n_test=10000)
    results = {}
    for variant in ("plain", "mip"):
        with progress_factory(total=steps, desc=f"training {variant:<5}") as bar:
            result, model = train_run(task, variant, optimizer, seed, steps, progress=bar)
        results[variant] = {"curve_steps": result.curve_steps, "curve_loss": result.curve_loss,
                            "accuracy": {g: task.evaluate(model, g)[0] for g in GAMMAS},
                            "init_norms": result.init_norms}
    plot = out_dir / "demo.png"
    _plot(results, plot)
    return {"results": results, "plot": str(plot), "threads": torch.get_num_threads()}


def table(results: dict) -> str:
    lines = ["test accuracy on the 10,000 Fashion-MNIST test images, per γ (label smoothing 0.2·γ)",
             f"{'γ':>6} " + " ".join(f"{v:>8}" for v in results)]
    for g in GAMMAS:
        lines.append(f"{g:>6.2f} " + " ".join(f"{results[v]['accuracy'][g]:>8.3f}" for v in results))
    return "\n".join(lines)


def _plot(results, path) -> None:
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    for variant, r in results.items():
        a.plot(r["curve_steps"], r["curve_loss"], label=variant)
        b.plot(list(r["accuracy"]), list(r["accuracy"].values()), marker="o", label=variant)
    a.set(xlabel="step", ylabel="training loss", yscale="log", title="training")
    b.set(xlabel="γ", ylabel="test accuracy", title="one model, every γ")
    a.legend()
    save(fig, path)
