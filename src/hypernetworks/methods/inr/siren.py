"""Implicit neural representations: SIREN and Fourier-feature MLPs, coordinate grids, PSNR, SSIM.

SIREN: Sitzmann, Martel, Bergman, Lindell, Wetzstein, "Implicit Neural Representations with Periodic
Activation Functions", NeurIPS 2020: sin(ω0·(Wx + b)), first layer W ~ U(±1/in), later layers
W ~ U(±√(6/in)/ω0). Fourier features: Tancik et al., NeurIPS 2020: [cos(2πBv), sin(2πBv)], B ~ N(0, σ²).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Sine(nn.Module):
    """``sin(omega0 · x)``."""

    def __init__(self, omega0: float = 30.0):
        super().__init__()
        self.omega0 = omega0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.omega0 * x)


def siren(in_features: int, hidden: int, depth: int, out_features: int, omega0: float = 30.0) -> nn.Sequential:
    """A SIREN ``(..., in) -> (..., out)`` with ``depth`` sine layers of width ``hidden`` and Sitzmann's init."""
    layers: list[nn.Module] = []
    sizes = [in_features] + [hidden] * depth
    for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
        linear = nn.Linear(a, b)
        bound = 1.0 / a if i == 0 else math.sqrt(6.0 / a) / omega0
        nn.init.uniform_(linear.weight, -bound, bound)
        nn.init.uniform_(linear.bias, -1.0 / math.sqrt(a), 1.0 / math.sqrt(a))
        layers += [linear, Sine(omega0)]
    last = nn.Linear(hidden, out_features)
    nn.init.uniform_(last.weight, -math.sqrt(6.0 / hidden) / omega0, math.sqrt(6.0 / hidden) / omega0)
    return nn.Sequential(*layers, last)


class FourierFeatures(nn.Module):
    """``v (..., in) -> [cos(2πBv), sin(2πBv)] (..., 2·features)`` with a fixed B ~ N(0, sigma²)."""

    B: torch.Tensor  # buffer (in, features)

    def __init__(self, in_features: int, features: int, sigma: float = 10.0, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("B", sigma * torch.randn(in_features, features, generator=gen))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        proj = 2 * math.pi * v @ self.B  # (..., features)
        return torch.cat([proj.cos(), proj.sin()], dim=-1)


def fourier_mlp(in_features: int, features: int, hidden: int, depth: int, out_features: int,
                sigma: float = 10.0, seed: int = 0) -> nn.Sequential:
    """Fourier features followed by a ReLU MLP."""
    layers: list[nn.Module] = [FourierFeatures(in_features, features, sigma, seed)]
    sizes = [2 * features] + [hidden] * depth
    for a, b in zip(sizes, sizes[1:], strict=False):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(hidden, out_features))


def fit_inr(model: nn.Module, coords: torch.Tensor, values: torch.Tensor, *, steps: int, lr: float,
            batch: int | None = None, seed: int = 0) -> float:
    """Fit ``model``'s trainable parameters to one signal: Adam at ``lr`` with cosine decay to 0 over
    ``steps`` steps, each on ``batch`` random samples (all of them when None).

    Args:
        model: ``(N, in) -> (N, out)``.
        coords: (N, in) sample coordinates.
        values: (N, out) target values.
        steps: optimiser steps.
        lr: Adam's initial learning rate.
        batch: samples per step, drawn with replacement from ``seed``'s generator; None: all.
        seed: seed of the sample draws.

    Returns:
        The last step's mean squared error.
    """
    if steps < 1 or lr <= 0:
        raise ValueError(f"fit_inr: steps must be >= 1 and lr > 0, got steps={steps}, lr={lr}.")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    loss = torch.zeros(())
    for _ in range(steps):
        idx = None if batch is None else torch.randint(0, len(coords), (batch,), generator=gen)
        x, y = (coords, values) if idx is None else (coords[idx], values[idx])
        loss = (model(x) - y).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
    return loss.item()


def coordinate_grid(height: int, width: int) -> torch.Tensor:
    """(height·width, 2) pixel-centre coordinates in [-1, 1], row-major, (y, x) order."""
    ys = (torch.arange(height) + 0.5) / height * 2 - 1
    xs = (torch.arange(width) + 0.5) / width * 2 - 1
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0,
         dim: int | tuple[int, ...] | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of the mean squared error over ``dim`` (default: all)."""
    err = (pred - target).square()
    mse = err.mean() if dim is None else err.mean(dim)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(1e-12))


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, window: int = 7) -> torch.Tensor:
    """Mean structural similarity (Wang et al., 2004) of images ``(B, C, H, W) -> (B,)``, uniform window."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    pool = lambda t: F.avg_pool2d(t, window, 1)  # noqa: E731
    mu_x, mu_y = pool(pred), pool(target)
    var_x = pool(pred * pred) - mu_x**2
    var_y = pool(target * target) - mu_y**2
    cov = pool(pred * target) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1)
