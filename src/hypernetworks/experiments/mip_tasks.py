"""The two amortised tasks of the MIP reproduction, and one training run of a γ-conditioned model.

A: label smoothing on Fashion-MNIST (an MLP classifier fully generated from γ; loss = cross-entropy
   with smoothing 0.2·γ). B: denoising 16x16 patches of the scikit-image photos (x̃ = x + γ·σmax·ε;
   a small conv denoiser fully generated from γ; loss = MSE).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import methods
from ..data import load_fashion_mnist, photo_patches

VARIANTS = {  # name: (encoding, residual)
    "plain": ("none", False),
    "encoding": ("mip", False),
    "residual": ("none", True),
    "mip": ("mip", True),
}
OPTIMIZERS = {"adam-1e-4": ("adam", 1e-4), "adam-1e-3": ("adam", 1e-3), "adam-1e-2": ("adam", 1e-2),
              "sgdm-1e-2": ("sgdm", 1e-2), "sgdm-1e-1": ("sgdm", 1e-1)}
INIT_GAMMAS = (0.0, 0.25, 0.5, 0.75, 1.0)


class LabelSmoothing:
    """Task A. Metric: test accuracy at γ = 0 (higher is better)."""

    name, metric, threshold = "label_smoothing", "accuracy", 0.80
    eval_gammas = (0.0, 0.5, 1.0)

    def __init__(self, n_train: int = 60000, n_test: int = 2000):
        x, y = load_fashion_mnist("train")
        self.x, self.y = x[:n_train].flatten(1), y[:n_train]
        xt, yt = load_fashion_mnist("test")
        self.xt, self.yt = xt[:n_test].flatten(1), yt[:n_test]

    @staticmethod
    def target() -> nn.Module:
        return nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))

    def batch(self, gen: torch.Generator, size: int):
        idx = torch.randint(0, len(self.x), (size,), generator=gen)
        return self.x[idx], self.y[idx]

    @staticmethod
    def loss(model, batch, gamma: torch.Tensor) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(model(x, cond=gamma), y, label_smoothing=0.2 * gamma.item())

    def evaluate(self, model, gamma: float) -> tuple[float, float]:
        """(accuracy, loss) on the test images at ``gamma``."""
        g = torch.tensor([gamma])
        with torch.no_grad():
            logits = model(self.xt, cond=g)
        loss = F.cross_entropy(logits, self.yt, label_smoothing=0.2 * gamma).item()
        return (logits.argmax(1) == self.yt).float().mean().item(), loss


class Denoising:
    """Task B. Metric: test PSNR (dB) at γ = 0.5 (higher is better)."""

    name, metric, threshold = "denoising", "psnr", 26.0
    eval_gammas = (0.0, 0.5, 1.0)
    sigma_max = 0.2

    def __init__(self, n_train: int = 20000, n_test: int = 1000):
        self.x = photo_patches(n_train, seed=0)
        self.xt = photo_patches(n_test, seed=1)
        self.noise_t = torch.randn(self.xt.shape, generator=torch.Generator().manual_seed(2))

    @staticmethod
    def target() -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(16, 1, 3, padding=1))

    def batch(self, gen, size):
        idx = torch.randint(0, len(self.x), (size,), generator=gen)
        return self.x[idx], torch.randn(size, *self.x.shape[1:], generator=gen)

    def loss(self, model, batch, gamma):
        clean, noise = batch
        noisy = clean + gamma * self.sigma_max * noise
        return F.mse_loss(model(noisy, cond=gamma), clean)

    def evaluate(self, model, gamma):
        """(PSNR in dB, MSE) on the test patches at ``gamma``."""
        noisy = self.xt + gamma * self.sigma_max * self.noise_t
        with torch.no_grad():
            mse = F.mse_loss(model(noisy, cond=torch.tensor([gamma])), self.xt).item()
        return 10 * math.log10(1.0 / max(mse, 1e-12)), mse


TASKS = {"label_smoothing": LabelSmoothing, "denoising": Denoising}


def make_optimizer(name: str, params):
    kind, lr = OPTIMIZERS[name]
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, fused=True)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, fused=True)


@dataclass
class RunResult:
    init_norms: list[float]  # ‖θ(γ)‖ at init for INIT_GAMMAS
    steps_to_target: int | None  # first evaluated step whose metric reached the task threshold
    curve_steps: list[int]
    curve_loss: list[float]  # training loss, smoothed over each evaluation interval
    curve_metric: list[float]  # test metric at γ = 0.5 (denoising) or 0 (classification)
    final: dict[str, float]  # test metric and loss at each eval γ
    grad_cv: float  # coefficient of variation of the gradient norm over training
    diverged: bool


def theta_norm(model, gamma: float) -> float:
    with torch.no_grad():
        params = model.generate(torch.tensor([gamma]))
        own = dict(model.target.named_parameters())
        if model.mode == "residual":
            params = {n: own[n] + v for n, v in params.items()}
        return math.sqrt(sum(v.double().square().sum().item() for v in params.values()))


def train_run(task, variant: str, optimizer: str, seed: int, steps: int, batch_size: int = 64,
              eval_every: int = 50, progress=None) -> tuple[RunResult, nn.Module]:
    """Train one γ-conditioned model; γ ~ U(0, 1) is drawn per batch (one weight set per batch)."""
    torch.manual_seed(seed)
    encoding, residual = VARIANTS[variant]
    model = methods.create("mip", task.target(), encoding=encoding, residual=residual, seed=seed)
    init_norms = [theta_norm(model, g) for g in INIT_GAMMAS]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(optimizer, params)
    gen = torch.Generator().manual_seed(seed)
    metric_gamma = 0.5 if task.metric == "psnr" else 0.0
    curve_steps, curve_loss, curve_metric, grad_norms, window = [], [], [], [], []
    reached, diverged = None, False
    for step in range(1, steps + 1):
        gamma = torch.rand(1, generator=gen)
        loss = task.loss(model, task.batch(gen, batch_size), gamma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norms.append(torch.sqrt(sum(p.grad.square().sum() for p in params if p.grad is not None)).item())
        opt.step()
        window.append(loss.item())
        if not math.isfinite(window[-1]):
            diverged = True
            break
        if step % eval_every == 0 or step == steps:
            metric, _ = task.evaluate(model, metric_gamma)
            curve_steps.append(step)
            curve_loss.append(sum(window) / len(window))
            curve_metric.append(metric)
            window = []
            if reached is None and metric >= task.threshold:
                reached = step
        if progress is not None:
            progress.update(1)
    final = {}
    for g in task.eval_gammas:
        metric, loss = task.evaluate(model, g) if not diverged else (float("nan"), float("nan"))
        final[f"{task.metric}@{g}"], final[f"loss@{g}"] = metric, loss
    tail = torch.tensor(grad_norms[len(grad_norms) // 10:]) if grad_norms else torch.tensor([float("nan")])
    grad_cv = (tail.std() / tail.mean()).item() if len(tail) > 1 else float("nan")
    return RunResult(init_norms, reached, curve_steps, curve_loss, curve_metric, final, grad_cv, diverged), model
