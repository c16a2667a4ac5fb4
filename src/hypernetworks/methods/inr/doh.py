"""D'OH: decoder-only random hypernetworks for implicit neural representations.

Gordon et al., "D'OH: Decoder-Only random Hypernetworks for Implicit Neural Representations",
ACCV 2024. Each weight matrix of an INR is a fixed random projection of one shared latent code,
W_l = s_l · (P_l z); the projections P_l are regenerated from a seed and never stored; the biases
are trained and stored directly, as in the paper. s_l is the standard deviation of the freshly
initialised INR's weight (measured), so that z ~ N(0, I) starts the weights at the INR's own
initialisation (e.g. SIREN's). Only z and the biases are trained and stored; quantising them to b
bits gives the bit count of the whole representation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ...functional import functional_call
from ...spec import ParamSpec
from .._pretrained import Pretrained
from .config import DOHConfig
from .siren import fit_inr

RANGE_BITS = 64  # a quantised tensor also stores its min and max, two float32
SEED_BITS = 32  # the seed that regenerates D'OH's projections


def quantize(t: torch.Tensor, bits: int) -> tuple[torch.Tensor, int]:
    """Uniform ``bits``-bit quantisation between the tensor's min and max (stored as two float32).

    Returns the dequantised tensor and the number of bits it takes to store.
    """
    if not 1 <= bits <= 16:
        raise ValueError(f"quantize: bits must lie in [1, 16], got {bits}.")
    lo, hi = t.min(), t.max()
    levels = 2**bits - 1
    step = (hi - lo).clamp_min(1e-12) / levels
    return torch.round((t - lo) / step) * step + lo, t.numel() * bits + RANGE_BITS


def quantized_bits(module: nn.Module, bits: int) -> tuple[dict[str, torch.Tensor], int]:
    """Every parameter of ``module`` quantised per tensor: (``{name: tensor}``, total bits)."""
    out, total = {}, 0
    for name, p in module.named_parameters():
        out[name], n = quantize(p.detach(), bits)
        total += n
    return out, total


class DOH(Pretrained[DOHConfig]):
    """An INR whose weights are ``s_l · (P_l z)``; ``forward(coords (N, in)) -> (N, out)``.

    Args:
        target: the INR (e.g. ``siren(2, 32, 3, 1)``); its weights are not used, its biases are the
            initial values of the stored biases.
        config: a ``DOHConfig`` (``latent_dim``; ``seed`` regenerates P, entries N(0, 1/latent_dim), a
            non-persistent buffer); keyword ``options`` replace its fields.

    Example:
        >>> from hypernetworks.methods.inr import siren, coordinate_grid
        >>> doh = DOH(siren(2, 16, 2, 1), latent_dim=32)
        >>> doh(coordinate_grid(8, 8)).shape  # (N, in) coordinates -> (N, out) values
        torch.Size([64, 1])
        >>> sorted(doh.generate())  # the INR's tensors, weights from P z
        ['0.bias', '0.weight', '2.bias', '2.weight', '4.bias', '4.weight']
        >>> image = coordinate_grid(8, 8)[:, :1] ** 2  # (N, 1) values of an 8 x 8 image
        >>> error = doh.fit(coordinate_grid(8, 8), image, steps=100, lr=1e-2)  # trains z and the biases
        >>> error < (image - image.mean()).square().mean().item()  # better than a constant image
        True
    """

    CONFIG = DOHConfig
    projection: torch.Tensor  # buffer (P, latent): the fixed random projection

    def __init__(self, target: nn.Module, config: DOHConfig | None = None, **options: Any) -> None:
        super().__init__()
        self.config = config = DOHConfig.build(config, **options)
        latent_dim, self.target = config.latent_dim, target
        own = dict(target.named_parameters())
        self.spec = ParamSpec.from_module(target, include=[n for n, p in own.items() if p.dim() >= 2])
        self.biases = nn.ParameterDict({n.replace(".", "_"): nn.Parameter(p.detach().clone())
                                        for n, p in own.items() if p.dim() < 2})
        self._bias_names = [n for n, p in own.items() if p.dim() < 2]
        for p in target.parameters():
            p.requires_grad_(False)
        scale = torch.cat([torch.full((e.numel,), own[e.name].detach().std().item()) for e in self.spec])
        gen = torch.Generator().manual_seed(config.seed)
        proj = torch.randn(self.spec.numel, latent_dim, generator=gen) / math.sqrt(latent_dim)
        self.register_buffer("projection", proj * scale.unsqueeze(1), persistent=False)  # (P, latent)
        self.z = nn.Parameter(torch.randn(latent_dim, generator=gen))

    def generate(self, z: torch.Tensor | None = None,
                 biases: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """{name: tensor} of the INR for code ``z`` and ``biases`` (default: the trained ones)."""
        weights = self.spec.unflatten(self.projection @ (self.z if z is None else z))  # (P,) -> dict
        table = self.biases if biases is None else biases
        return weights | {n: table[n.replace(".", "_")] for n in self._bias_names}

    def forward(self, coords: torch.Tensor, z: torch.Tensor | None = None,
                biases: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        return functional_call(self.target, self.generate(z, biases), (coords,))

    def fit(self, coords: torch.Tensor, values: torch.Tensor, *, steps: int = 2000, lr: float = 1e-2,
            batch: int | None = None, seed: int = 0) -> float:
        """Fit z and the biases to one signal (the paper's per-signal optimisation): Adam at ``lr``,
        cosine decay, ``steps`` steps on ``batch`` random samples each (all when None); see ``fit_inr``.

        Args:
            coords: (N, in) sample coordinates (e.g. ``coordinate_grid(h, w)``).
            values: (N, out) target values.

        Returns:
            The last step's mean squared error.
        """
        return fit_inr(self, coords, values, steps=steps, lr=lr, batch=batch, seed=seed)

    def quantized(self, bits: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        """z and the biases quantised to ``bits`` bits, and the bits stored (P comes from the seed)."""
        z, total = quantize(self.z.detach(), bits)
        biases = {}
        for key, b in self.biases.items():
            biases[key], n = quantize(b.detach(), bits)
            total += n
        return z, biases, total
