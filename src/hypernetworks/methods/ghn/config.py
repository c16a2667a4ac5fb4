"""Configuration of a graph hypernetwork."""

from __future__ import annotations

from dataclasses import dataclass

from .._config import DictConfig


@dataclass
class GHNConfig(DictConfig):
    """Sizes of a GHN-2 (Knyazev et al., NeurIPS 2021) or GHN-3 (Knyazev et al., ICML 2023).

    Attributes:
        hidden: width H of node embeddings and of the graph encoder.
        encoder: ``"gated"`` (GHN-2's gated graph network) or ``"transformer"`` (GHN-3's transformer
            layers with degree and distance encodings, see ``graphormer``).
        rounds: forward+backward passes of the gated graph network, or transformer layers (0: none, each
            node is decoded from its own features only).
        heads: attention heads of the transformer encoder.
        max_dist: longest shortest path that gets a virtual edge (GHN-2's s_max; 1 disables them); the
            transformer clips distances to it.
        block_out: output channels of the decoded block (tiled/sliced to each target's out dim).
        block_in: input channels of the decoded block (tiled/sliced to each target's in dim).
        kernel: spatial size of the decoded block (tiled/sliced to each target's kernel).
        decoder_hidden: width of the decoder's hidden layer.
        max_params_per_node: most parameter tensors one node owns (multi-head attention owns 4, LSTM layers 4
            per layer); each gets its own slot embedding.
        arch_code: add an embedding of a fixed-length code of the whole architecture (op-type histogram,
            size, depth) to every node, as SMASH conditions on an architecture encoding.
    """

    hidden: int = 64
    encoder: str = "gated"
    rounds: int = 1
    heads: int = 4
    max_dist: int = 50
    block_out: int = 32
    block_in: int = 32
    kernel: int = 3
    decoder_hidden: int = 64
    max_params_per_node: int = 16
    arch_code: bool = False

    def __post_init__(self):
        for name in ("hidden", "heads", "max_dist", "block_out", "block_in", "kernel", "decoder_hidden",
                     "max_params_per_node"):
            if getattr(self, name) < 1:
                raise ValueError(f"GHNConfig: {name} must be >= 1, got {getattr(self, name)}.")
        if self.encoder not in ("gated", "transformer"):
            raise ValueError(f"GHNConfig: encoder must be 'gated' or 'transformer', got {self.encoder!r}.")
        if self.encoder == "transformer" and self.hidden % self.heads:
            raise ValueError(f"GHNConfig: hidden {self.hidden} must divide by heads {self.heads}.")
        if self.rounds < 0:
            raise ValueError(f"GHNConfig: rounds must be >= 0, got {self.rounds}.")
