"""Continual learning with task-conditioned hypernetworks (von Oswald et al., ICLR 2020), and the
EWC / online EWC / SI / fine-tuning baselines on the same harness."""

from .. import register_method
from .baselines import MultiHead as MultiHead
from .baselines import RegularizedCL as RegularizedCL
from .config import HyperCLConfig as HyperCLConfig
from .hypercl import HyperCL as HyperCL

register_method("continual", HyperCL, HyperCLConfig)

__all__ = ["HyperCL", "HyperCLConfig", "MultiHead", "RegularizedCL"]
