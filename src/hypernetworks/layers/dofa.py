"""DOFA's dynamic patch embedding: a patch-embedding kernel generated from the bands' wavelengths.

Xiong et al., "Neural Plasticity-Inspired Multimodal Foundation Model for Earth Observation"
(DOFA), 2024; reference code in microsoft/torchgeo (``torchgeo/models/dofa.py``). A small
transformer reads [learned weight tokens; one embedding per input band's central wavelength;
a bias token] and emits one (embed_dim, k, k) kernel slice per band and the bias, so one network
embeds images with any number, order and choice of bands.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DOFAViT", "DynamicPatchEmbed", "wavelength_encoding"]

MIN_UM, MAX_UM = 0.3, 15.0  # optical to thermal infrared; outside this range is most likely nm, not µm


def wavelength_encoding(wavelengths_um: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal code of each wavelength (in nm, as DOFA) ``(C,) µm -> (C, dim)``."""
    nm = wavelengths_um * 1000.0
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=nm.device) * (-math.log(10000.0) / dim))
    angles = nm.unsqueeze(1) * freq  # (C, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def _check_wavelengths(wavelengths: torch.Tensor, channels: int) -> None:
    if wavelengths.dim() != 1 or wavelengths.shape[0] != channels:
        raise ValueError(f"DynamicPatchEmbed: need one wavelength per input channel, shape ({channels},), "
                         f"got {tuple(wavelengths.shape)}.")
    if not torch.isfinite(wavelengths).all() or wavelengths.min() < MIN_UM or wavelengths.max() > MAX_UM:
        raise ValueError(f"DynamicPatchEmbed: wavelengths are central wavelengths in µm within [{MIN_UM}, {MAX_UM}], "
                         f"got {wavelengths.tolist()}; values in nm must be divided by 1000.")


class DynamicPatchEmbed(nn.Module):
    """``x (B, C, H, W)`` with ``wavelengths (C,)`` in µm -> patch tokens ``(B, N, embed_dim)``.

    Args:
        embed_dim: token size E.
        patch_size: k; the image is cut into (H/k)·(W/k) patches.
        wave_dim: size of the wavelength embedding and of the generator's tokens.
        num_weight_tokens: learned tokens the generator attends to alongside the bands.
        generator_layers, generator_heads: size of the weight-generating transformer.
        weight_scale: factor on the generated kernel and bias (DOFA uses 0.01 so embeddings start small).

    Example:
        >>> embed = DynamicPatchEmbed(embed_dim=32, patch_size=4)
        >>> bands = torch.tensor([0.49, 0.56, 0.665, 0.842])  # four bands (µm): the patch kernel is generated
        >>> embed(torch.randn(2, 4, 16, 16), bands).shape  # (B, (H/k)·(W/k), E)
        torch.Size([2, 16, 32])
        >>> [t.shape for t in embed.generate(bands[:3])]  # any set of bands: kernel (E, C, k, k), bias (E,)
        [torch.Size([32, 3, 4, 4]), torch.Size([32])]
    """

    def __init__(self, embed_dim: int, patch_size: int, wave_dim: int = 64, num_weight_tokens: int = 16,
                 generator_layers: int = 1, generator_heads: int = 4, weight_scale: float = 0.01):
        super().__init__()
        self.embed_dim, self.patch_size = embed_dim, patch_size
        self.wave_dim, self.weight_scale = wave_dim, weight_scale
        self.wave_mlp = nn.Sequential(nn.Linear(wave_dim, wave_dim), nn.GELU(), nn.Linear(wave_dim, wave_dim))
        self.weight_tokens = nn.Parameter(0.02 * torch.randn(num_weight_tokens, wave_dim))
        self.bias_token = nn.Parameter(0.02 * torch.randn(1, wave_dim))
        layer = nn.TransformerEncoderLayer(wave_dim, generator_heads, 2 * wave_dim, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.generator = nn.TransformerEncoder(layer, generator_layers, enable_nested_tensor=False)
        self.to_kernel = nn.Linear(wave_dim, embed_dim * patch_size * patch_size)
        self.to_bias = nn.Linear(wave_dim, embed_dim)

    def generate(self, wavelengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernel (E, C, k, k) and bias (E,) for bands with these wavelengths (µm)."""
        c, k = wavelengths.shape[0], self.patch_size
        waves = self.wave_mlp(wavelength_encoding(wavelengths, self.wave_dim))  # (C, D)
        tokens = torch.cat([self.weight_tokens, waves, self.bias_token]).unsqueeze(0)  # (1, T + C + 1, D)
        out = self.generator(tokens)[0]  # (T + C + 1, D)
        n = self.weight_tokens.shape[0]
        band_out, bias_out = out[n:n + c] + waves, out[-1]  # (C, D), (D,)
        kernel = self.to_kernel(band_out).view(c, self.embed_dim, k, k).transpose(0, 1)  # (E, C, k, k)
        return kernel * self.weight_scale, self.to_bias(bias_out) * self.weight_scale

    def forward(self, x: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        _check_wavelengths(wavelengths, x.shape[1])
        kernel, bias = self.generate(wavelengths.to(x.dtype))
        y = F.conv2d(x, kernel, bias, stride=self.patch_size)  # (B, E, H/k, W/k)
        return y.flatten(2).transpose(1, 2)  # (B, N, E)


class DOFAViT(nn.Module):
    """A small ViT on top of ``DynamicPatchEmbed``: ``(x (B, C, H, W), wavelengths (C,)) -> (B, num_classes)``.

    Args:
        img_size: H = W of the inputs (for the learned position embeddings).
        patch_size, embed_dim, depth, heads: ViT sizes.
        num_classes: outputs of the classification head (on the mean token).
    """

    def __init__(self, img_size: int, patch_size: int, num_classes: int, embed_dim: int = 64, depth: int = 2,
                 heads: int = 4, **embed_kwargs):
        super().__init__()
        self.patch_embed = DynamicPatchEmbed(embed_dim, patch_size, **embed_kwargs)
        self.pos = nn.Parameter(0.02 * torch.randn(1, (img_size // patch_size) ** 2, embed_dim))
        layer = nn.TransformerEncoderLayer(embed_dim, heads, 2 * embed_dim, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x, wavelengths) + self.pos  # (B, N, E)
        return self.head(self.norm(self.encoder(tokens)).mean(1))
