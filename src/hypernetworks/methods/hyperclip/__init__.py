"""HyperCLIP: text-conditioned adaptation of a small image encoder (Akinwande et al., 2024)."""

from .. import register_method
from .config import HyperCLIPConfig as HyperCLIPConfig
from .model import HyperCLIP as HyperCLIP
from .model import TextSet as TextSet
from .model import ZeroShotClassifier as ZeroShotClassifier
from .model import image_encoder as image_encoder
from .model import pad_set as pad_set
from .model import siglip_loss as siglip_loss
from .text import minilm_embeddings as minilm_embeddings
from .text import prompts as prompts

register_method("hyperclip", HyperCLIP, HyperCLIPConfig, takes_target=False)

__all__ = ["HyperCLIP", "HyperCLIPConfig", "TextSet", "ZeroShotClassifier", "image_encoder", "minilm_embeddings",
           "pad_set", "prompts", "siglip_loss"]
