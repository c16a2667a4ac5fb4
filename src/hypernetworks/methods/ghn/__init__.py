"""Graph hypernetworks (GHN-2, Knyazev et al., NeurIPS 2021; GHN-3, Knyazev et al., ICML 2023; GHN, Zhang
et al., ICLR 2019; SMASH, Brock et al., ICLR 2018).

``build_graph(model, x)`` turns any module into a graph of operations; ``GHN`` predicts all parameters of
the network behind a graph in one forward pass (``SMASH``: the same from an architecture encoding, without
message passing); ``predict(ghn, model)`` fills a module in place and reports
what it did not predict; ``load_pretrained()`` returns the GHN shipped with the package (trained on
small Fashion-MNIST networks by ``hypernetworks.methods.ghn.train``).
"""

from pathlib import Path

from .. import register_method
from .config import GHNConfig as GHNConfig
from .graph import OP_TYPES as OP_TYPES
from .graph import Graph as Graph
from .graph import GraphError as GraphError
from .graph import build_graph as build_graph
from .model import GHN as GHN
from .predict import PredictReport as PredictReport
from .predict import predict as predict
from .predict import predict_state_dict as predict_state_dict
from .predict import recompute_bn_stats as recompute_bn_stats
from .sampler import Net as Net
from .sampler import sample_genotype as sample_genotype
from .smash import SMASH as SMASH
from .train import ArchPool as ArchPool
from .train import TrainConfig as TrainConfig
from .train import fit as fit
from .train import load_checkpoint as load_checkpoint
from .train import save_checkpoint as save_checkpoint

CHECKPOINT = Path(__file__).parent / "checkpoints" / "ghn2_fmnist"  # GHN.save_pretrained's layout


def load_pretrained(path: str | Path = CHECKPOINT) -> GHN:
    """The GHN shipped with the package (its training command is in its ``config.json``), or the one at
    ``path``: a ``GHN.save_pretrained`` folder, or a training checkpoint (``.pt``) of ``fit``.

    Raises:
        FileNotFoundError: the checkpoint is missing (a source checkout without it: train one with
            ``python -m hypernetworks.methods.ghn.train --out PATH`` and pass ``path=``).
    """
    if not Path(path).exists():
        raise FileNotFoundError(f"load_pretrained: no GHN checkpoint at {path}; train one with "
                                "`python -m hypernetworks.methods.ghn.train --out PATH` and pass path=.")
    if Path(path).is_dir():
        return GHN.from_pretrained(path)  # in eval mode
    return load_checkpoint(path)[0].eval()


__all__ = ["CHECKPOINT", "GHN", "OP_TYPES", "SMASH", "ArchPool", "GHNConfig", "Graph", "GraphError", "Net",
           "PredictReport", "TrainConfig", "build_graph", "fit", "load_checkpoint", "load_pretrained", "predict",
           "predict_state_dict", "recompute_bn_stats", "sample_genotype", "save_checkpoint"]

register_method("ghn2", GHN, GHNConfig, takes_target=False)
