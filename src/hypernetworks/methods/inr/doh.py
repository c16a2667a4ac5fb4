"""D'OH: decoder-only random hypernetworks for implicit neural representations.

Gordon et al., "D'OH: Decoder-Only random Hypernetworks for Implicit Neural Representations",
ACCV 2024. The weights of an INR are a fixed random projection of a small
latent code, θ = s ⊙ (P z): P is regenerated from a seed and never stored, s is a fixed per-tensor
scale (here: the standard deviation of each tensor of the freshly initialised INR, measured, so
that z ~ N(0, I) gives weights on the scale of the INR's own initialisation, e.g. SIREN's; the
paper's own per-layer scale/offset scheme is not reproduced yet). Only z is trained and stored;
quantising z to b bits gives the bit count of the whole representation.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ...functional import functional_call
from ...spec import ParamSpec


def quantize(t: torch.Tensor, bits: int) -> tuple[torch.Tensor, int]:
    """Uniform ``bits``-bit quantisation between the tensor's min and max (stored as two float32).

    Returns the dequantised tensor and the number of bits it takes to store.
    """
    if not 1 <= bits <= 16:
        raise ValueError(f"quantize: bits must lie in [1, 16], got {bits}.")
    lo, hi = t.min(), t.max()
    levels = 2**bits - 1
    step = (hi - lo).clamp_min(1e-12) / levels
    return torch.round((t - lo) / step) * step + lo, t.numel() * bits + 64


def quantized_bits(module: nn.Module, bits: int) -> tuple[dict[str, torch.Tensor], int]:
    """Every parameter of ``module`` quantised per tensor: (``{name: tensor}``, total bits)."""
    out, total = {}, 0
    for name, p in module.named_parameters():
        out[name], n = quantize(p.detach(), bits)
        total += n
    return out, total


class DOH(nn.Module):
    """An INR whose every weight is ``s ⊙ (P z)``; ``forward(coords (N, in)) -> (N, out)``.

    Args:
        target: the INR (e.g. ``siren(2, 32, 3, 1)``); its own parameters are not used.
        latent_dim: size of the trained code z.
        seed: regenerates P (entries N(0, 1/latent_dim)); P is a non-persistent buffer.
    """

    def __init__(self, target: nn.Module, latent_dim: int, seed: int = 0):
        super().__init__()
        self.target, self.latent_dim, self.seed = target, latent_dim, seed
        self.spec = ParamSpec.from_module(target)
        for p in target.parameters():
            p.requires_grad_(False)
        own = dict(target.named_parameters())
        scale = torch.cat([torch.full((e.numel,), own[e.name].detach().std().item() if e.numel > 1 else 1.0)
                           for e in self.spec])
        gen = torch.Generator().manual_seed(seed)
        proj = torch.randn(self.spec.numel, latent_dim, generator=gen) / math.sqrt(latent_dim)
        self.register_buffer("projection", proj * scale.unsqueeze(1), persistent=False)  # (P, latent)
        self.z = nn.Parameter(torch.randn(latent_dim, generator=gen))

    def generate(self, z: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """{name: tensor} of the INR for code ``z`` (default: the trained one)."""
        return self.spec.unflatten(self.projection @ (self.z if z is None else z))  # (P,) -> dict

    def forward(self, coords: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        return functional_call(self.target, self.generate(z), (coords,), spec=self.spec)

    def quantized(self, bits: int) -> tuple[torch.Tensor, int]:
        """z quantised to ``bits`` bits and the bits stored (P is regenerated from the seed)."""
        return quantize(self.z.detach(), bits)
