"""MALMEN: least-squares model editing with a meta-trained hypernetwork (Tan et al., ICLR 2024)."""

from .. import register_method
from .config import MALMENConfig as MALMENConfig
from .editor import MALMEN as MALMEN
from .net import ShiftNet as ShiftNet

register_method("malmen", MALMEN, MALMENConfig)

__all__ = ["MALMEN", "MALMENConfig", "ShiftNet"]
