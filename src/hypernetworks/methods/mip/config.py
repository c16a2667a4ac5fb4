"""Configuration of a MIP hypernetwork."""

from __future__ import annotations

from dataclasses import dataclass

from ...encoders import ENCODINGS
from .._config import DictConfig


@dataclass
class MIPConfig(DictConfig):
    """Magnitude-invariant parametrization; switch ``encoding``/``residual`` off for ablations."""

    num_scalars: int = 1  # d: the condition is γ ∈ [0, 1]^d
    hidden: tuple[int, ...] = (64, 64)  # hidden widths of the hypernetwork
    encoding: str = "mip"  # "mip" = [cos(πγ/2), sin(πγ/2)]; "none" feeds γ as it is
    residual: bool = True  # θ = θ0 + h(E(γ)) with θ0 trainable; False: θ = h(E(γ))
    seed: int = 0  # seed of the initialisation's calibration draw

    def __post_init__(self):
        self.hidden = tuple(self.hidden)
        if self.encoding not in ENCODINGS:
            raise ValueError(f"MIPConfig: encoding must be one of {ENCODINGS}, got {self.encoding!r}.")
        if self.num_scalars < 1 or any(h < 1 for h in self.hidden):
            raise ValueError(f"MIPConfig: num_scalars and hidden widths must be >= 1, got "
                             f"{self.num_scalars}, {self.hidden}.")
