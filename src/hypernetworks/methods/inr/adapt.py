"""Adapting an INR to a new signal from a few observed samples.

* HyperPlanes-style (gradient-free): a set encoder reads the observations (coordinate, value) and a
  hypernetwork emits an update Δθ of a shared INR, θ' = θ + Δθ, in one forward pass
  ("HyperPlanes: Hypernetwork Approach to Rapid NeRF Adaptation"); ``full=True`` emits all weights.
* MAML-style baseline: the shared θ plus k SGD steps on the observations, batched over signals
  through per-example weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...encoders import Encoder, mlp
from ...functional import functional_call
from ...heads import Full
from ...hypernet import HyperNetwork
from .config import HyperPlanesConfig
from .siren import FourierFeatures


class SetEncoder(Encoder):
    """Observations ``(..., K, in_features)`` -> ``z (..., dim)``: a shared MLP per observation,
    mean-pooled, then an MLP (DeepSets; Zaheer et al., 2017). The set size K is fixed per encoder.

    With ``fourier`` = F > 0 the first ``coords`` entries of each observation (its coordinate) are
    read as Fourier features ``[cos 2πBc, sin 2πBc]`` (Tancik et al., 2020; B ~ N(0, sigma²), fixed,
    drawn from ``seed``), as an INR reads them, and the rest (the value) as it is.
    """

    def __init__(self, in_features: int, set_size: int, dim: int = 64, hidden: int = 128, fourier: int = 0,
                 coords: int = 2, sigma: float = 3.0, seed: int = 0):
        super().__init__()
        if fourier and not 0 < coords < in_features:
            raise ValueError(f"SetEncoder: coords must lie in [1, in_features) with Fourier features, got {coords}.")
        self.coords = coords
        self.features = FourierFeatures(coords, fourier, sigma, seed) if fourier else None
        width = 2 * fourier + in_features - coords if fourier else in_features
        self.phi = mlp([width, hidden, hidden], nn.ReLU)
        self.rho = mlp([hidden, hidden, dim], nn.ReLU, last_activation=False)
        self.dim, self.cond_shape = dim, (set_size, in_features)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        if self.features is not None:  # (..., K, coords + V) -> (..., K, 2F + V)
            c = self.coords
            observations = torch.cat([self.features(observations[..., :c]), observations[..., c:]], -1)
        return self.rho(self.phi(observations).mean(-2))  # (..., K, F) -> (..., dim)


def hyperplanes(inr: nn.Module, config: HyperPlanesConfig | None = None, **options: Any) -> HyperNetwork:
    """A hypernetwork from ``set_size`` observations (coordinate ++ value, ``in_features`` each) to the
    weights of ``inr``: Δθ added to the trained shared θ (starting at exactly θ), or all weights.

    Args:
        inr: the shared INR.
        config: a ``HyperPlanesConfig``; keyword ``options`` replace its fields.

    Example:
        >>> from hypernetworks.methods.inr import siren
        >>> inr = siren(2, 16, 2, 1)
        >>> hnet = hyperplanes(inr, in_features=3, set_size=20, dim=16)
        >>> coords = torch.rand(4, 20, 2)  # 4 signals, 20 observed coordinates each
        >>> obs = torch.cat([coords, torch.rand(4, 20, 1)], -1)  # (B, K, coordinate ++ value)
        >>> torch.allclose(hnet(coords, cond=obs), inr(coords), atol=1e-6)  # Δθ = 0 at the start
        True
    """
    c = HyperPlanesConfig.build(config, **options)
    encoder = SetEncoder(c.in_features, c.set_size, c.dim, fourier=c.fourier, sigma=c.sigma, seed=c.seed)
    return HyperNetwork(inr, encoder=encoder,
                        head=Full(hidden=c.hidden, bias=c.full), mode="absolute" if c.full else "residual",
                        init="default_match" if c.full else "zero_delta", seed=c.seed)


def adapt_sgd(inr: nn.Module, coords: torch.Tensor, values: torch.Tensor, steps: int, lr: float,
              create_graph: bool = False) -> dict[str, torch.Tensor]:
    """θ plus ``steps`` SGD steps on each signal's observations, all signals at once.

    Args:
        inr: the shared INR (its parameters are θ).
        coords: (B, K, in) observed coordinates of B signals.
        values: (B, K, out) observed values.
        steps: inner SGD steps.
        lr: inner SGD step size.
        create_graph: keep the graph through the steps (to meta-train θ, MAML).

    Returns:
        ``{name: (B, *shape)}`` adapted weights, for ``functional_call(inr, ..., per_example=True)``.
    """
    batch = coords.shape[0]
    params = {n: p.unsqueeze(0).expand(batch, *p.shape) for n, p in inr.named_parameters()}
    if not create_graph:
        params = {n: p.detach().clone().requires_grad_() for n, p in params.items()}
    for _ in range(steps):
        pred = functional_call(inr, params, (coords,), per_example=True)
        loss = (pred - values).square().mean(dim=(1, 2)).sum()  # per-signal MSE, summed: independent steps
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        params = {n: p - lr * g for (n, p), g in zip(params.items(), grads, strict=True)}
    return params
