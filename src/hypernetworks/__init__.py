"""hypernetworks: networks that generate the parameters of other networks (PyTorch)."""

from . import encoders as encoders
from . import heads as heads
from . import init as init
from ._memory import PeakTensorMemory as PeakTensorMemory
from .functional import PerExampleError as PerExampleError
from .functional import functional_call as functional_call
from .functional import functional_call_sets as functional_call_sets
from .functional import materialize as materialize
from .hypernet import HyperNetwork as HyperNetwork
from .spec import LoRA as LoRA
from .spec import NoMatchingParamsError as NoMatchingParamsError
from .spec import ParamEntry as ParamEntry
from .spec import ParamSpec as ParamSpec

__all__ = [
    "HyperNetwork",
    "LoRA",
    "NoMatchingParamsError",
    "ParamEntry",
    "ParamSpec",
    "PeakTensorMemory",
    "PerExampleError",
    "encoders",
    "functional_call",
    "functional_call_sets",
    "heads",
    "init",
    "materialize",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    """``hn.methods`` and ``hn.layers`` load on first use, so ``import hypernetworks`` stays lean."""
    if name in ("methods", "layers"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'hypernetworks' has no attribute {name!r}")
