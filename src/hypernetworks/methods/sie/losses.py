"""VICReg's terms (Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022), used by SIE on each part of the representation."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def variance_loss(z: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Hinge on the standard deviation of each dimension of ``z (B, E)``: ``mean_e relu(1 - std_e)``."""
    std = torch.sqrt(z.var(dim=0) + eps)  # (E,)
    return F.relu(1 - std).mean()


def covariance_loss(z: torch.Tensor) -> torch.Tensor:
    """Sum of squared off-diagonal covariances of ``z (B, E)``, divided by E."""
    b, e = z.shape
    z = z - z.mean(dim=0)
    cov = z.T @ z / (b - 1)  # (E, E)
    off = cov - torch.diag(torch.diag(cov))
    return off.pow(2).sum() / e


def regularizer(z: torch.Tensor, std_coeff: float, cov_coeff: float) -> torch.Tensor:
    """``std_coeff · variance + cov_coeff · covariance`` for one batch of embeddings ``(B, E)``."""
    if z.dim() != 2 or z.shape[0] < 2:
        raise ValueError(f"SIE: embeddings should have shape (B, E) with B >= 2, got {tuple(z.shape)}.")
    return std_coeff * variance_loss(z) + cov_coeff * covariance_loss(z)
