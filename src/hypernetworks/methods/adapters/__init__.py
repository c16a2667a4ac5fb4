"""Generated adapters and steering vectors (HyperFormer, Karimi Mahabadi et al., ACL 2021; Text-to-
LoRA, Charakorn et al., ICML 2025; HyperSteer, Sun et al., 2025).
"""

from .. import register_method
from .config import AdapterConfig as AdapterConfig
from .config import SteerConfig as SteerConfig
from .export import export_peft as export_peft
from .generator import Layerwise as Layerwise
from .generator import module_layout as module_layout
from .model import GeneratedAdapters as GeneratedAdapters
from .model import hyperformer as hyperformer
from .model import lora_spec as lora_spec
from .model import norm_spec as norm_spec
from .model import text_to_lora as text_to_lora
from .steer import HyperSteer as HyperSteer
from .steer import Steer as Steer
from .steer import Steered as Steered
from .steer import add_steering as add_steering
from .steer import mean_difference as mean_difference

__all__ = ["AdapterConfig", "GeneratedAdapters", "HyperSteer", "Layerwise", "Steer", "SteerConfig", "Steered",
           "add_steering", "export_peft", "hyperformer", "lora_spec", "mean_difference", "module_layout", "norm_spec",
           "text_to_lora"]

register_method("hyperformer", hyperformer, AdapterConfig)
register_method("text_to_lora", text_to_lora, AdapterConfig)
register_method("hypersteer", HyperSteer, SteerConfig)
