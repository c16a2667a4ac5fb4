"""hypernetworks: networks that generate the parameters of other networks (PyTorch)."""

from .functional import LoRA as LoRA
from .functional import PerExampleError as PerExampleError
from .functional import functional_call as functional_call
from .functional import materialize as materialize
from .spec import NoMatchingParamsError as NoMatchingParamsError
from .spec import ParamEntry as ParamEntry
from .spec import ParamSpec as ParamSpec

__all__ = [
    "LoRA",
    "NoMatchingParamsError",
    "ParamEntry",
    "ParamSpec",
    "PerExampleError",
    "functional_call",
    "materialize",
]
__version__ = "0.1.0"
