"""Configuration of a MALMEN editor."""

from __future__ import annotations

from dataclasses import dataclass

from .._config import DictConfig

AGGREGATIONS = ("least_squares", "sum")


@dataclass
class MALMENConfig(DictConfig):
    """Tan et al. (ICLR 2024): per-edit value shifts from a MEND-style hypernetwork, aggregated per layer."""

    layers: tuple[str, ...] = ()  # names of the edited nn.Linear submodules of the model
    aggregation: str = "least_squares"  # "least_squares": S = (UᵀU + λI)⁻¹UᵀD; "sum": S = Σ_i ũ_i d̃_iᵀ (MEND)
    rank: int = 32  # width of the low-rank bottleneck in each hypernetwork block
    blocks: int = 2  # residual low-rank blocks; 0 makes the hypernetwork the identity (a plain gradient step)
    lr: float = 1.0  # initial step size η (learned per layer, in units of 1 / E‖u‖²)
    reg: float = 1.0  # initial ridge strength λ of the normal equation (learned per layer)
    chunk_size: int = 256  # edits per chunk in every pass, so memory does not grow with the number of edits
    seed: int = 0  # seed of the hypernetwork's initialisation

    def __post_init__(self):
        self.layers = tuple(self.layers)
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"MALMENConfig: aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}.")
        if self.rank < 1 or self.blocks < 0 or self.chunk_size < 1:
            raise ValueError(f"MALMENConfig: need rank >= 1, blocks >= 0, chunk_size >= 1; got "
                             f"{self.rank}, {self.blocks}, {self.chunk_size}.")
        if self.lr <= 0 or self.reg <= 0:
            raise ValueError(f"MALMENConfig: lr and reg must be > 0, got {self.lr}, {self.reg}.")
