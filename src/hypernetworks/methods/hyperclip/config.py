"""Configuration of a HyperCLIP model."""

from __future__ import annotations

from dataclasses import dataclass

from .._config import DictConfig


@dataclass
class HyperCLIPConfig(DictConfig):
    """A small GroupNorm CNN image tower, a linear text tower on frozen sentence embeddings, SigLIP loss."""

    text_dim: int = 384  # D: size of the frozen text embeddings (384 for all-MiniLM-L6-v2)
    embed_dim: int = 64  # size of the joint image-text space
    width: int = 8  # channels of the image encoder's first conv (then 2x and 4x)
    groups: int = 4  # GroupNorm groups in every norm layer of the image encoder
    hypernetwork: bool = True  # generate the norm scales/shifts from the task's texts; False: plain SigLIP model
    max_classes: int = 10  # M: most class names one task may hold (the text set is padded to M rows)
    set_dim: int = 32  # size of the text-set encoding fed to the hypernetwork head
    hidden: tuple[int, ...] = (64,)  # hidden widths of the hypernetwork head
    logit_scale: float = 10.0  # initial SigLIP temperature t (trained as log t)
    logit_bias: float = -2.0  # initial SigLIP bias b (trained)
    seed: int = 0  # seed of the hypernetwork's calibration draw

    def __post_init__(self):
        self.hidden = tuple(self.hidden)
        if self.width < 1 or self.groups < 1 or self.width % self.groups:
            raise ValueError(f"HyperCLIPConfig: width must be a positive multiple of groups, got width={self.width}, "
                             f"groups={self.groups}.")
        if min(self.text_dim, self.embed_dim, self.max_classes, self.set_dim, *self.hidden) < 1:
            raise ValueError("HyperCLIPConfig: text_dim, embed_dim, max_classes, set_dim and hidden widths must be "
                             ">= 1.")
        if self.logit_scale <= 0:
            raise ValueError(f"HyperCLIPConfig: logit_scale must be > 0, got {self.logit_scale}.")
