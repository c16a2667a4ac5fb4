"""MIP: magnitude-invariant parametrizations (Ortiz et al., ICLR 2024)."""

from .. import register_method
from .config import MIPConfig as MIPConfig
from .generator import hypernetwork as hypernetwork

register_method("mip", hypernetwork, MIPConfig)

__all__ = ["MIPConfig", "hypernetwork"]
