"""SIE: split invariant-equivariant representations with a hypernetwork predictor (Garrido et al., ICML 2023)."""

from .. import register_method
from .config import SIEConfig as SIEConfig
from .losses import covariance_loss as covariance_loss
from .losses import regularizer as regularizer
from .losses import variance_loss as variance_loss
from .model import SIE as SIE
from .model import HyperPredictor as HyperPredictor
from .model import MLPPredictor as MLPPredictor
from .model import Transform as Transform
from .model import backbone as backbone
from .model import predictor_sensitivity as predictor_sensitivity
from .model import projector as projector

register_method("sie", SIE, SIEConfig, takes_target=False)

__all__ = ["SIE", "HyperPredictor", "MLPPredictor", "SIEConfig", "Transform", "backbone", "covariance_loss",
           "predictor_sensitivity", "projector", "regularizer", "variance_loss"]
