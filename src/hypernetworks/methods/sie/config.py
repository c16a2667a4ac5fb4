"""Configuration of an SIE model (and of its VICReg and MLP-predictor ablations)."""

from __future__ import annotations

from dataclasses import dataclass

from .._config import DictConfig

PREDICTORS = ("hypernetwork", "mlp", "none")


@dataclass
class SIEConfig(DictConfig):
    """Split invariant/equivariant representation; ``predictor="none"`` with ``split=False`` is plain VICReg."""

    in_channels: int = 1  # channels of the input images
    width: int = 16  # channels of the backbone's first conv (then 2x and 4x)
    inv_dim: int = 32  # size of the invariant part of the representation
    equi_dim: int = 32  # size of the equivariant part (0 when split is False)
    embed_dim: int = 64  # output size of each part's projector (E; the predictor maps E -> E)
    split: bool = True  # split the representation; False: one invariant representation of size inv_dim
    predictor: str = "hypernetwork"  # "hypernetwork" (linear, weights from g), "mlp" on concat(g, z), or "none"
    hidden: tuple[int, ...] = ()  # hidden widths of the hypernetwork; () = W(g) linear in g with no bias (paper)
    mlp_hidden: tuple[int, ...] = (64, 64)  # hidden widths of the MLP predictor (predictor="mlp")
    transform_dim: int = 2  # size of the transformation parameters g (cos, sin of the relative rotation)
    inv_coeff: float = 25.0  # weight of the invariance loss on the invariant embeddings
    equi_coeff: float = 25.0  # weight of the prediction loss on the equivariant embeddings
    std_coeff: float = 25.0  # weight of VICReg's variance hinge (per part)
    cov_coeff: float = 1.0  # weight of VICReg's covariance penalty (per part)
    seed: int = 0  # seed of the hypernetwork's calibration draw

    def __post_init__(self):
        self.hidden, self.mlp_hidden = tuple(self.hidden), tuple(self.mlp_hidden)
        if self.predictor not in PREDICTORS:
            raise ValueError(f"SIEConfig: predictor must be one of {PREDICTORS}, got {self.predictor!r}.")
        if self.split == (self.predictor == "none"):
            raise ValueError(f"SIEConfig: a split representation needs a predictor and an unsplit one none; got "
                             f"split={self.split}, predictor={self.predictor!r}.")
        if not self.split:
            self.equi_dim = 0
        if min(self.width, self.inv_dim, self.embed_dim, self.transform_dim, *self.hidden, *self.mlp_hidden) < 1 or (
                self.split and self.equi_dim < 1):
            raise ValueError("SIEConfig: width, inv_dim, equi_dim (when split), embed_dim, transform_dim and hidden "
                             "widths must be >= 1.")
        if min(self.inv_coeff, self.equi_coeff, self.std_coeff, self.cov_coeff) < 0:
            raise ValueError("SIEConfig: loss coefficients must be >= 0.")
