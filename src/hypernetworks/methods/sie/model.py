"""SIE: Garrido, Najman, LeCun, "Self-supervised learning of Split Invariant Equivariant
representations", ICML 2023 (arXiv:2302.10283; reference code: github.com/facebookresearch/SIE).

The representation is split into an invariant part, trained VICReg-style to agree across views,
and an equivariant part whose embedding of one view, mapped by a predictor conditioned on the
transformation g between the views, must give the embedding of the other view. The predictor is
linear with no bias and its weights come from a hypernetwork of g: ``ẑ₂ = W(g) z₁``, so it cannot
turn into a g-independent shortcut by adding a constant, and what g does to the latent space is an
explicit matrix. VICReg's variance and covariance regularisers act on the concatenated embedding [z_inv, z_equi]
of each view (so the two parts are decorrelated), and a variance hinge on the predictions.

Differences from the paper: a three-layer BatchNorm CNN backbone on 28x28 images instead of a
ResNet-18; planar rotations (g = cos, sin of the relative angle) instead of 3D rotations
(quaternions); small projectors (one hidden layer).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ...encoders import Encoder, mlp
from ...heads import Full
from ...hypernet import HyperNetwork
from .._fit import Bar, adam_steps
from .._pretrained import Pretrained
from .config import SIEConfig
from .losses import regularizer, variance_loss


def backbone(in_channels: int, width: int, out_dim: int) -> nn.Sequential:
    """Three 3x3 convs (strides 1, 2, 2) with BatchNorm and ReLU, average pooling and a linear map:
    ``(B, C, H, W) -> (B, out_dim)``."""
    chans = [in_channels, width, 2 * width, 4 * width]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(chans, chans[1:], strict=False)):
        layers += [nn.Conv2d(a, b, 3, stride=1 if i == 0 else 2, padding=1), nn.BatchNorm2d(b), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(chans[-1], out_dim))


def projector(in_dim: int, out_dim: int) -> nn.Sequential:
    """VICReg-style expander ``(B, in_dim) -> (B, out_dim)``: Linear, BatchNorm, ReLU, Linear."""
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.BatchNorm1d(out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim))


class Transform(Encoder):
    """Transformation parameters ``g (..., T)`` passed as they are (E = T); ``example`` draws
    (cos, sin) of uniform angles when T = 2 (a planar rotation), N(0, I) otherwise."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim, self.cond_shape = dim, (dim,)

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        return g

    def example(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.dim != 2:
            return torch.randn(n, self.dim, generator=generator)
        angle = 2 * math.pi * torch.rand(n, generator=generator)
        return torch.stack([angle.cos(), angle.sin()], dim=-1)  # (n, 2)


class HyperPredictor(nn.Module):
    """``ẑ = W(g) z``: a bias-free linear map ``(B, E) -> (B, E)`` whose ``(E, E)`` weight a
    hypernetwork generates from ``g (B, T)``, one matrix per example (hyperfan-in init).

    With ``hidden=()`` (the paper's default) the hypernetwork is itself linear with no bias,
    ``W(g) = Σ_t g_t A_t``. Then W(-g) = -W(g), and for g = (cos Δ, sin Δ), -g is the rotation by
    Δ + π: an invariant equivariant part (ẑ₂ = ẑ₁ for every g) would need ẑ = -ẑ = 0, which the
    variance term forbids, so the predictor cannot collapse to ignoring g.
    """

    def __init__(self, embed_dim: int, transform_dim: int, hidden: tuple[int, ...] = (), seed: int = 0):
        super().__init__()
        self.hnet = HyperNetwork(nn.Linear(embed_dim, embed_dim, bias=False), encoder=Transform(transform_dim),
                                 head=Full(hidden=hidden, bias=bool(hidden)), mode="absolute", init="hyperfan_in",
                                 seed=seed)

    def weights(self, g: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` -> the ``(B, E, E)`` predictor matrices."""
        return self.hnet.generate(g)["weight"]

    def forward(self, z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.hnet(z, cond=g)


class MLPPredictor(nn.Module):
    """The ablation: ``ẑ = MLP([g, z])``, ``(B, E), (B, T) -> (B, E)``; nothing forces it to use g."""

    def __init__(self, embed_dim: int, transform_dim: int, hidden: tuple[int, ...] = (64, 64)):
        super().__init__()
        self.net = mlp([transform_dim + embed_dim, *hidden, embed_dim], last_activation=False)

    def forward(self, z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([g, z], dim=-1))


class SIE(Pretrained[SIEConfig]):
    """Backbone, one projector per part, and a g-conditioned predictor on the equivariant part.

    Args:
        config: an ``SIEConfig``; keyword ``options`` replace its fields. ``split=False,
            predictor="none"`` is VICReg; ``predictor="mlp"`` is the MLP-predictor ablation.

    Example:
        >>> model = SIE(SIEConfig(width=4))
        >>> x1, x2, g = torch.rand(8, 1, 28, 28), torch.rand(8, 1, 28, 28), torch.randn(8, 2)
        >>> loss, terms = model.loss(x1, x2, g)
        >>> model.parts(x1)[1].shape  # the equivariant part of the representation
        torch.Size([8, 32])
        >>> losses = model.fit([(x1, x2, g)], steps=2)  # batches of (view 1, view 2, g); one loss per step
    """

    CONFIG, TAKES_TARGET = SIEConfig, False

    def __init__(self, config: SIEConfig | None = None, **options):
        super().__init__()
        config = SIEConfig.build(config, **options)
        self.config = config
        self.backbone = backbone(config.in_channels, config.width, config.inv_dim + config.equi_dim)
        self.inv_projector = projector(config.inv_dim, config.embed_dim)
        self.equi_projector = projector(config.equi_dim, config.embed_dim) if config.split else None
        self.predictor: nn.Module | None = None
        if config.predictor == "hypernetwork":
            self.predictor = HyperPredictor(config.embed_dim, config.transform_dim, config.hidden, config.seed)
        elif config.predictor == "mlp":
            self.predictor = MLPPredictor(config.embed_dim, config.transform_dim, config.mlp_hidden)

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C, H, W)`` -> invariant ``(B, inv_dim)`` and equivariant ``(B, equi_dim)`` representations
        (the latter empty without a split)."""
        y = self.backbone(x)  # (B, inv_dim + equi_dim)
        return y[:, : self.config.inv_dim], y[:, self.config.inv_dim:]

    def fit(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], *, epochs: int | None = None,
            steps: int | None = None, lr: float = 1e-3, progress: bool | Bar | None = None) -> list[float]:
        """Train on ``(x1, x2, g)`` batches (two views ``(B, C, H, W)`` and their transformation ``(B, T)``)
        with Adam at rate ``lr``; returns the loss per step. Exactly one of ``epochs`` / ``steps``."""
        return adam_steps(self.parameters(), lambda batch: self.loss(*batch)[0], batches, epochs=epochs,
                          steps=steps, lr=lr, progress=progress, desc="SIE")

    def transform_embedding(self, z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Equivariant embedding of view 1 ``(B, E)`` and g ``(B, T)`` -> predicted embedding of view 2 ``(B, E)``."""
        if self.predictor is None:
            raise ValueError("SIE.transform_embedding: this model has no predictor (split=False); use "
                             "predictor='hypernetwork'.")
        if g.dim() != 2 or g.shape != (z.shape[0], self.config.transform_dim):
            raise ValueError(f"SIE: g should have shape (B, {self.config.transform_dim}) with B = {z.shape[0]}, "
                             f"got {tuple(g.shape)}.")
        return self.predictor(z, g)

    def loss(self, x1: torch.Tensor, x2: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """SIE's loss for two views ``(B, C, H, W)`` related by g ``(B, T)`` (x2 = g · x1).

        Returns:
            the total loss and its terms ``{"inv", "equi", "reg"}`` as floats (``equi`` is 0 for VICReg).
        """
        c = self.config
        inv1, equi1 = self.parts(x1)
        inv2, equi2 = self.parts(x2)
        z1, z2 = self.inv_projector(inv1), self.inv_projector(inv2)
        inv = F.mse_loss(z1, z2)
        equi = torch.zeros(())
        if self.equi_projector is not None:  # built exactly when c.split
            e1, e2 = self.equi_projector(equi1), self.equi_projector(equi2)
            pred = self.transform_embedding(e1, g)
            equi = F.mse_loss(pred, e2)
            # Regularised as one vector per view: the covariance term then also decorrelates the
            # invariant from the equivariant part, so they cannot hold the same information.
            z1, z2 = torch.cat([z1, e1], dim=1), torch.cat([z2, e2], dim=1)  # (B, 2E)
        reg = (regularizer(z1, c.std_coeff, c.cov_coeff) + regularizer(z2, c.std_coeff, c.cov_coeff)) / 2
        if c.split:
            reg = reg + c.std_coeff * variance_loss(pred)  # predictions must not shrink to a point
        total = c.inv_coeff * inv + c.equi_coeff * equi + reg
        return total, {"inv": inv.item(), "equi": equi.item(), "reg": reg.item()}


def predictor_sensitivity(model: SIE, z: torch.Tensor, g1: torch.Tensor, g2: torch.Tensor) -> float:
    """How much the prediction depends on g: ``E‖p(z, g1) - p(z, g2)‖² / E‖p(z, g1) - mean‖²``.

    About 2 for a predictor whose outputs for two unrelated g are as different as two unrelated
    predictions; 0 for one that ignores g (collapse to invariance).

    Args:
        model: a trained ``SIE`` with a predictor.
        z: ``(B, E)`` equivariant embeddings.
        g1: ``(B, T)`` one transformation per embedding.
        g2: ``(B, T)`` another transformation per embedding.
    """
    with torch.no_grad():
        p1, p2 = model.transform_embedding(z, g1), model.transform_embedding(z, g2)
        return ((p1 - p2).pow(2).sum(1).mean() / (p1 - p1.mean(0)).pow(2).sum(1).mean()).item()
