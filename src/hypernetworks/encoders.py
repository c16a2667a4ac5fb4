"""Condition encoders: ``condition -> z (..., E)``.

Each encoder knows the shape of one condition (``cond_shape``), so a hypernetwork can tell a
single condition (one weight set for the batch) from a batch of them (one weight set per
example), and can draw ``example(n)`` conditions to calibrate its initialisation.
The review of Chauhan et al. (2023) names the inputs: task (``Embedding``), data (``MLP``,
``Projection``) and noise (``Noise``); ``Scalars`` covers continuous hyperparameters.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._checks import check_values
from ._config import Recorded

__all__ = ["Embedding", "Encoder", "MLP", "Noise", "Projection", "Scalars", "mlp"]


def mlp(sizes: list[int], activation: type[nn.Module] = nn.ReLU, last_activation: bool = True) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with ``activation`` between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
        layers.append(nn.Linear(a, b))
        if last_activation or i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class Encoder(nn.Module, Recorded):
    """Base class. Subclasses set ``dim`` (E) and ``cond_shape`` and implement ``forward``; their
    constructor arguments are recorded (``HyperNetwork.save_pretrained`` stores them)."""

    dim: int
    cond_shape: tuple[int, ...]

    def is_batched(self, cond: torch.Tensor) -> bool:
        """True for a batch of conditions ``(B, *cond_shape)``, False for one ``cond_shape``."""
        shape = tuple(cond.shape)
        if shape == self.cond_shape:
            return False
        if shape[1:] == self.cond_shape and len(shape) == len(self.cond_shape) + 1:
            return True
        raise ValueError(
            f"{type(self).__name__}: a condition should have shape {self.cond_shape} (one) or "
            f"(B, {', '.join(map(str, self.cond_shape))}) (a batch), got {shape}."
        )

    def example(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` typical conditions ``(n, *cond_shape)``, used to calibrate initialisation."""
        return torch.randn(n, *self.cond_shape, generator=generator)


class Embedding(Encoder):
    """A learned embedding per id (task, item): ``ids (...) -> z (..., dim)``, N(0, 1) init.

    ``validate``: check that ids lie in ``[0, num)`` (``None``: on the CPU only, where it is free;
    ``True``: on accelerators too, one device sync per call; see ``hypernetworks._checks``).
    """

    def __init__(self, num: int, dim: int, *, validate: bool | None = None):
        super().__init__()
        self.table = nn.Embedding(num, dim)
        self.dim, self.cond_shape, self.validate = dim, (), validate

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"Embedding: ids must be int64/int32, got {ids.dtype}.")
        check_values((ids >= 0) & (ids < self.table.num_embeddings),
                     f"Embedding: ids must lie in [0, {self.table.num_embeddings}).", self.validate)
        return self.table(ids)

    def example(self, n, generator=None):
        return torch.randint(0, self.table.num_embeddings, (n,), generator=generator)


ENCODINGS = ("none", "mip", "z|1-z")


class Scalars(Encoder):
    """Continuous inputs γ ∈ [0, 1]^dim, e.g. hyperparameters: ``(..., dim) -> (..., E)``.

    Encodings: ``none`` (E = dim), ``mip`` = [cos(πγ/2), sin(πγ/2)] per dimension (E = 2·dim,
    constant L2 norm; Ortiz et al., "Magnitude Invariant Parametrizations Improve Hypernetwork
    Learning", ICLR 2024), ``z|1-z`` = [γ, 1-γ] (E = 2·dim).
    A γ outside [0, 1] raises a ValueError (``validate``: ``None`` checks on the CPU only, where it is
    free; ``True`` on accelerators too, one device sync per call).
    """

    def __init__(self, dim: int = 1, encoding: str = "mip", *, validate: bool | None = None):
        super().__init__()
        if encoding not in ENCODINGS:
            raise ValueError(f"Scalars: encoding must be one of {ENCODINGS}, got {encoding!r}.")
        self.encoding, self.validate = encoding, validate
        self.dim = dim if encoding == "none" else 2 * dim
        self.cond_shape = (dim,)

    def forward(self, gamma: torch.Tensor) -> torch.Tensor:
        check_values((gamma >= 0) & (gamma <= 1), "Scalars: γ must lie in [0, 1].", self.validate)
        if self.encoding == "mip":
            return torch.cat([torch.cos(math.pi * gamma / 2), torch.sin(math.pi * gamma / 2)], dim=-1)
        if self.encoding == "z|1-z":
            return torch.cat([gamma, 1 - gamma], dim=-1)
        return gamma

    def example(self, n, generator=None):
        return torch.rand(n, *self.cond_shape, generator=generator)


class MLP(Encoder):
    """Data-conditioned: features ``(..., in_features) -> z (..., dim)`` through an MLP."""

    def __init__(self, in_features: int, dim: int, hidden: tuple[int, ...] = (64,)):
        super().__init__()
        self.net = mlp([in_features, *hidden, dim], last_activation=False)
        self.dim, self.cond_shape = dim, (in_features,)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class Projection(Encoder):
    """Precomputed embeddings (e.g. sentence embeddings) ``(..., in_features) -> (..., dim)``,
    L2-normalised then linearly projected."""

    def __init__(self, in_features: int, dim: int, normalize: bool = True):
        super().__init__()
        self.proj = nn.Linear(in_features, dim)
        self.normalize = normalize
        self.dim, self.cond_shape = dim, (in_features,)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            emb = nn.functional.normalize(emb, dim=-1)
        return self.proj(emb)

    def example(self, n, generator=None):
        return nn.functional.normalize(torch.randn(n, *self.cond_shape, generator=generator), dim=-1)


class Noise(Encoder):
    """Noise-conditioned (ensembles, uncertainty): the condition is a noise vector ``(..., dim)``.

    ``sample(n)`` draws N(0, I) conditions; each gives one member of an implicit ensemble.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim, self.cond_shape = dim, (dim,)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        return noise

    def sample(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """(n, dim) standard normal conditions."""
        return torch.randn(n, self.dim, generator=generator, device=device)
