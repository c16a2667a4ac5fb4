"""Configurations of the INR hypernetworks: D'OH and HyperPlanes-style adaptation."""

from __future__ import annotations

from dataclasses import dataclass

from .._config import DictConfig


@dataclass
class DOHConfig(DictConfig):
    """D'OH (Gordon et al., ACCV 2024): the INR's weight matrices are fixed random projections of one code z."""

    latent_dim: int = 64  # size of the trained code z
    seed: int = 0  # regenerates the projections P (never stored) and draws z's initial value

    def __post_init__(self):
        if self.latent_dim < 1:
            raise ValueError(f"DOHConfig: latent_dim must be >= 1, got {self.latent_dim}.")


@dataclass
class HyperPlanesConfig(DictConfig):
    """A set of observed samples -> the INR's weights in one forward pass (HyperPlanes-style)."""

    in_features: int = 3  # size of one observation: coordinate ++ value
    set_size: int = 20  # K, observations per signal
    dim: int = 64  # E, width of the set encoding
    hidden: tuple[int, ...] = (128,)  # hidden widths of the head
    full: bool = False  # False: Δθ added to the trained shared θ (starting at exactly θ); True: all weights
    fourier: int = 0  # F: the encoder reads the 2-D coordinate as 2F Fourier features (0: raw)
    sigma: float = 3.0  # scale of the Fourier frequencies (coordinates in [-1, 1])
    seed: int = 0  # seed of the initialisation's calibration draw and of the Fourier frequencies

    def __post_init__(self):
        self.hidden = tuple(self.hidden)
        if min(self.in_features, self.set_size, self.dim, *self.hidden) < 1 or self.fourier < 0:
            raise ValueError(f"HyperPlanesConfig: sizes must be >= 1, got in_features={self.in_features}, "
                             f"set_size={self.set_size}, dim={self.dim}, hidden={self.hidden}, fourier={self.fourier}.")
