"""Configurations of generated adapters and steering vectors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

from .._config import DictConfig


@overload
def _rule(value: str | Sequence[str]) -> str | list[str]: ...
@overload
def _rule(value: None) -> None: ...
def _rule(value: str | Sequence[str] | None) -> str | list[str] | None:
    """A PEFT ``target_modules`` rule: a regex string stays as it is; a sequence becomes a list."""
    return value if value is None or isinstance(value, str) else list(value)


@dataclass
class AdapterConfig(DictConfig):
    """A hypernetwork that emits LoRA factors (and optionally LayerNorm shifts) for a frozen model."""

    target_modules: str | Sequence[str] = ("query", "value")  # modules given LoRA, by PEFT's target_modules rules
    exclude_modules: str | Sequence[str] | None = None  # modules never adapted, by the same rules (exclusion wins)
    rank: int = 8  # r: rank of each generated LoRA update B·A
    num_tasks: int | None = None  # task-id conditioning (HyperFormer): number of tasks; None for text
    cond_features: int | None = None  # text conditioning (Text-to-LoRA): width of the sentence embedding
    cond_dim: int = 64  # E: width of the encoded condition fed to the generator
    layer_dim: int = 16  # width of the learned layer-index embedding
    type_dim: int = 16  # width of the learned module-type embedding
    hidden: tuple[int, ...] = (128,)  # hidden widths of the generator's shared MLP
    norm_modules: str | Sequence[str] | None = None  # LayerNorms given generated (γ, β) shifts (HyperFormer)
    seed: int = 0  # seed of the initialisation's calibration draw

    def __post_init__(self):
        self.target_modules = _rule(self.target_modules)
        self.exclude_modules = _rule(self.exclude_modules)
        self.norm_modules = _rule(self.norm_modules)
        self.hidden = tuple(self.hidden)
        if (self.num_tasks is None) == (self.cond_features is None):
            raise ValueError(f"AdapterConfig: set exactly one of num_tasks (task ids) and cond_features (text "
                             f"embeddings), got num_tasks={self.num_tasks}, cond_features={self.cond_features}.")
        sizes = {"rank": self.rank, "cond_dim": self.cond_dim, "layer_dim": self.layer_dim,
                 "type_dim": self.type_dim, "num_tasks": self.num_tasks or 1,
                 "cond_features": self.cond_features or 1}
        bad: dict[str, object] = {k: v for k, v in sizes.items() if v < 1}
        if any(h < 1 for h in self.hidden):
            bad["hidden"] = self.hidden
        if bad:
            raise ValueError(f"AdapterConfig: sizes must be >= 1, got {bad}.")


@dataclass
class SteerConfig(DictConfig):
    """HyperSteer: a prompt embedding -> a steering vector added to one layer's residual stream."""

    module: str = ""  # the block whose output is steered (a submodule name, e.g. "blocks.1")
    cond_features: int = 384  # width of the steering prompt's sentence embedding
    width: int = 128  # d: width of the residual stream that is steered
    hidden: tuple[int, ...] = (256, 256)  # hidden widths of the generator MLP
    seed: int = 0  # seed of the initialisation's calibration draw

    def __post_init__(self):
        self.hidden = tuple(self.hidden)
        if self.cond_features < 1 or self.width < 1 or any(h < 1 for h in self.hidden):
            raise ValueError(f"SteerConfig: sizes must be >= 1, got cond_features={self.cond_features}, "
                             f"width={self.width}, hidden={self.hidden}.")
