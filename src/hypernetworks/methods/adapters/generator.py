"""A layer-wise generator head: one shared MLP per target module, told *which* module it serves.

Text-to-LoRA (Charakorn et al., "Text-to-LoRA: Instant Transformer Adaption", ICML 2025,
https://arxiv.org/abs/2506.06105, code https://github.com/SakanaAI/text-to-lora) and HyperFormer
(Karimi Mahabadi et al., "Parameter-efficient Multi-task Fine-tuning for Transformers via Shared
Hypernetworks", ACL 2021, https://arxiv.org/abs/2106.04489, code
https://github.com/rabeehk/hyperformer) both feed one generator the concatenation
``[task or text embedding; layer-index embedding; module-type embedding]`` and read each module's
tensors from an output layer of that module's type. ``Layerwise`` is that generator as a core
``Head``: it serves LoRA factors (``name@A``, ``name@B``) as well as 1-D tensors (LayerNorm γ, β).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from ...heads import Head, init_rows, second_moment
from ...spec import ParamSpec

__all__ = ["Layerwise", "module_layout"]

_INDEX = re.compile(r"^\d+$")


def module_layout(names: Sequence[str]) -> tuple[list[int], list[str]]:
    """Layer index and type of each module name.

    The layer index is the first all-digit component of the dotted name (0 when there is none);
    the type is what follows it (``"encoder.layer.3.attention.self.query"`` -> 3,
    ``"attention.self.query"``), or the whole name when nothing follows.
    """
    layers, types = [], []
    for name in names:
        parts = name.split(".")
        at = next((i for i, p in enumerate(parts) if _INDEX.match(p)), None)
        layers.append(0 if at is None else int(parts[at]))
        rest = [] if at is None else parts[at + 1:]
        types.append(".".join(rest) if rest else name)
    return layers, types


class Layerwise(Head):
    """``[z; layer emb; type emb] -> shared MLP -> per-type output layer -> one module's tensors``.

    Modules whose tensors have the same shapes and the same type name (``module_layout``) share an
    output layer; the layer and type embeddings tell their outputs apart. Shapes:
    ``z (..., E) -> {name: (..., *shape)}`` for every entry of the spec it is built for.

    Args:
        hidden: widths of the shared MLP.
        layer_dim: width of the learned layer-index embedding.
        type_dim: width of the learned module-type embedding.
        activation: activation class of the shared MLP.
    """

    def __init__(self, hidden: tuple[int, ...] = (128,), layer_dim: int = 16, type_dim: int = 16,
                 activation: type[nn.Module] = nn.ReLU):
        super().__init__(hidden, activation)
        self.layer_dim, self.type_dim = layer_dim, type_dim

    def build(self, spec: ParamSpec, in_features: int) -> None:
        super().build(spec, in_features)
        self.trunk = self._trunk(in_features + self.layer_dim + self.type_dim)
        modules = list(dict.fromkeys(e.module_name for e in spec))
        entries = {m: [e for e in spec if e.module_name == m] for m in modules}
        layers, type_names = module_layout(modules)
        keys = [(t, tuple(e.shape for e in entries[m])) for m, t in zip(modules, type_names, strict=True)]
        kinds = list(dict.fromkeys(keys))
        self.modules_by_type = [[m for m, k in zip(modules, keys, strict=True) if k == kind] for kind in kinds]
        self.entries = entries
        self.register_buffer("layer_ids", torch.tensor(layers))
        self.register_buffer("type_ids", torch.tensor([kinds.index(k) for k in keys]))
        self.index = {m: i for i, m in enumerate(modules)}
        self.layer_emb = nn.Embedding(max(layers) + 1, self.layer_dim)
        self.type_emb = nn.Embedding(len(kinds), self.type_dim)
        width = self._width(in_features + self.layer_dim + self.type_dim)
        self.outs = nn.ModuleList(nn.Linear(width, sum(e.numel for e in entries[group[0]]))
                                  for group in self.modules_by_type)
        # each module's entries with offsets inside its output layer, for init_rows
        self.local_specs = {m: spec.subset(e.name for e in entries[m]) for m in modules}

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """The shared MLP on every module's input: (..., E) -> (..., M, d_k)."""
        self._built()
        pos = torch.cat([self.layer_emb(self.layer_ids), self.type_emb(self.type_ids)], dim=-1)  # (M, Dl+Dt)
        return self.grouped_features(z, pos)  # (..., M, d_k)

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.features(z)
        lead = z.shape[:-1]
        out = {}
        for group, layer in zip(self.modules_by_type, self.outs, strict=True):
            rows = torch.tensor([self.index[m] for m in group], device=h.device)
            y = layer(h.index_select(-2, rows))  # (..., M_t, S_t)
            sizes = [e.numel for e in self.entries[group[0]]]
            for j, m in enumerate(group):
                for e, part in zip(self.entries[m], y[..., j, :].split(sizes, dim=-1), strict=True):
                    out[e.name] = part.reshape(*lead, *e.shape)
        return out

    def init_output(self, moments, z: torch.Tensor) -> None:
        """Each output row N(0, v / (d_k · E[h²])) with bias = mean, so a tensor with target
        moments (mean, v) starts with them on the calibration conditions; v = 0 gives exact zeros."""
        m2 = second_moment(self.features(z))
        for group, layer in zip(self.modules_by_type, self.outs, strict=True):
            init_rows(cast(nn.Linear, layer), self.local_specs[group[0]], moments, m2)

