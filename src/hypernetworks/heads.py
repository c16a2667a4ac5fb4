"""Output heads: ``z (..., E) -> {name: tensor (..., *shape)}`` for every tensor of a spec.

The output strategies of the review of hypernetworks (Chauhan et al., 2023):

* ``Full``: one linear map to the flat vector of all P values ("generate once");
* ``Chunked``: learned chunk embeddings and one shared generator, output trimmed to P
  (von Oswald et al., "Continual learning with hypernetworks", ICLR 2020);
* ``PerTensor``: component-wise, a small head per tensor, or one shared head fed a learned
  per-tensor embedding (Ha, Dai, Le, "HyperNetworks", ICLR 2017, static hypernetworks).

Low-rank output is not a head: ``HyperNetwork(rank=r)`` builds any head on the spec's factors
(``ParamSpec.factorized``) and assembles them.

A head is declared without knowing the target (``Chunked(chunk_size=4096)``); the
``HyperNetwork`` calls ``build(spec, in_features)`` and later ``init_output(moments, z)``, which
sets the output layer so each generated tensor starts with the requested mean and variance,
calibrated on features of example conditions ``z``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Literal, cast

import torch
from torch import nn

from ._config import Recorded
from .encoders import mlp
from .spec import ParamSpec

__all__ = ["Chunked", "Full", "Head", "PerTensor", "init_rows", "second_moment"]

HIDDEN_INITS = ("fan_in", "fan_out")
HiddenInit = Literal["fan_in", "fan_out"]


class Head(nn.Module, Recorded):
    """Base class: hidden MLP trunks (in_features -> hidden...) and an output strategy.

    Every head answers the same three calls: ``build(spec, in_features)`` creates its parameters
    for a spec, ``forward(z)`` maps ``z (..., E)`` to ``{name: (..., *shape)}`` for every entry, and
    ``init_output(moments, z)`` sets the output layer so each tensor starts at its ``(mean, var)``,
    calibrated on the features of example conditions ``z (n, E)``.

    Args:
        hidden: widths of the hidden layers (empty: the output layer reads z directly).
        activation: activation class between layers.
        hidden_init: Kaiming-normal init of the hidden layers by ``fan_in`` or ``fan_out``
            (biases zero).
    """

    trunk: nn.Sequential  # built by the subclasses that use grouped_features

    def __init__(self, hidden: tuple[int, ...] = (64,), activation: type[nn.Module] = nn.ReLU,
                 hidden_init: HiddenInit = "fan_in"):
        super().__init__()
        if hidden_init not in HIDDEN_INITS:
            raise ValueError(f"{type(self).__name__}: hidden_init must be one of {HIDDEN_INITS}, got {hidden_init!r}.")
        self.hidden, self.activation = tuple(hidden), activation
        self.hidden_init: HiddenInit = hidden_init
        self.spec: ParamSpec | None = None

    def build(self, spec: ParamSpec, in_features: int) -> None:
        """Create the parameters for ``spec``; called once by the HyperNetwork (subclasses extend it)."""
        if self.spec is not None:
            raise RuntimeError(f"{type(self).__name__}: already built; use a new head per hypernetwork.")
        self.spec = spec

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def init_output(self, moments: dict[str, tuple[float, float]], z: torch.Tensor) -> None:
        raise NotImplementedError

    def _trunk(self, in_features: int) -> nn.Sequential:
        trunk = mlp([in_features, *self.hidden], self.activation)
        for layer in trunk:
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_normal_(layer.weight, mode=self.hidden_init, nonlinearity="relu")
                nn.init.zeros_(layer.bias)
        return trunk

    def grouped_features(self, z: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """The trunk on ``[z, e_g]`` for every group g (chunk, tensor, module): (..., E), (G, D) -> (..., G, d_k)."""
        lead = z.shape[:-1]
        zg = z.unsqueeze(-2).expand(*lead, emb.shape[0], z.shape[-1])  # (..., G, E)
        return self.trunk(torch.cat([zg, emb.expand(*lead, -1, -1)], dim=-1))

    def _width(self, in_features: int) -> int:
        """d_k: the features that reach the output layer."""
        return self.hidden[-1] if self.hidden else in_features

    def _built(self) -> ParamSpec:
        """The spec the head was built for (raises if it was not built yet)."""
        if self.spec is None:
            raise RuntimeError(f"{type(self).__name__}: not built; pass it to a HyperNetwork first.")
        return self.spec


def second_moment(h: torch.Tensor) -> float:
    """E[h²] of a head's features; raises if they are all zero (nothing to calibrate on)."""
    m2 = h.detach().pow(2).mean().item()
    if m2 <= 0:
        raise ValueError("init: the head's features are all zero on the calibration conditions "
                         "(dead activations?); pass other calibration conditions.")
    return m2


def init_rows(layer: nn.Linear, spec: ParamSpec, moments, m2: float) -> None:
    """Rows of ``layer`` that produce each tensor of ``spec`` (at its offset): N(0, v / (d_k · E[h²])),
    bias = mean, so the tensor starts with moments (mean, v) on features with E[h²] = ``m2``."""
    with torch.no_grad():
        for e in spec:
            mean, var = moments[e.name]
            rows = slice(e.offset, e.offset + e.numel)
            layer.weight[rows].normal_(0.0, math.sqrt(var / (layer.in_features * m2)))
            if layer.bias is not None:
                layer.bias[rows] = mean
            elif mean != 0:
                raise ValueError(f"init: '{e.name}' should start at mean {mean}, which a head without an "
                                 "output bias cannot give; use bias=True or mode='residual'.")


class Full(Head):
    """One linear map from the trunk's features to all P values: ``(..., E) -> (..., P)``.

    ``bias=False`` drops the output layer's bias (P values): in ``residual`` mode θ0 already plays
    its part, as in MIP's reference code, where θ0 *is* that bias.
    """

    def __init__(self, hidden: tuple[int, ...] = (64,), activation: type[nn.Module] = nn.ReLU,
                 hidden_init: HiddenInit = "fan_in", bias: bool = True):
        super().__init__(hidden, activation, hidden_init)
        self.bias = bias

    def build(self, spec, in_features):
        super().build(spec, in_features)
        self.trunk = self._trunk(in_features)
        self.out = nn.Linear(self._width(in_features), spec.numel, bias=self.bias)

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._built().unflatten(self.out(self.trunk(z)))  # (..., P) -> {name: (..., *shape)}

    def init_output(self, moments, z: torch.Tensor) -> None:
        init_rows(self.out, self._built(), moments, second_moment(self.trunk(z)))


class _GainHead(Head):
    """Heads whose output layer is shared by several tensors: a fixed per-value ``gain`` and
    ``offset`` (buffers) give each tensor its own initial scale (the chunked variant of init).
    A tensor meant to start at exactly zero while others do not (LoRA's B) gets a learned
    per-tensor ``gate`` that starts at 0 (ReZero-style), so it is zero at step 0 yet trains. The
    ``gate`` parameter always exists (so the state_dict does not depend on the init scheme); it
    trains and applies only when some tensor needs it (else it is a frozen 1)."""

    gain: torch.Tensor  # (N,) buffers, N = the output values
    offset: torch.Tensor
    tensor_index: torch.Tensor

    def _set_gain(self, spec, moments, total: int) -> None:
        gain, offset = torch.ones(total), torch.zeros(total)
        index = torch.zeros(total, dtype=torch.long)
        all_zero = all(v == 0 for _, v in moments.values())
        gate = torch.ones(len(spec))
        for i, e in enumerate(spec):
            mean, var = moments[e.name]
            part = slice(e.offset, e.offset + e.numel)
            gain[part] = math.sqrt(var) if var > 0 else 1.0
            offset[part], index[part] = mean, i
            gate[i] = 1.0 if var > 0 or all_zero else 0.0
        self.register_buffer("gain", gain)
        self.register_buffer("offset", offset)
        self.register_buffer("tensor_index", index)
        # It trains only when some tensor needs it: a trained gate makes backward keep the raw outputs.
        self.gate = nn.Parameter(gate, requires_grad=bool((gate == 0).any()))

    def _scale(self, flat: torch.Tensor) -> torch.Tensor:
        """(..., N) raw outputs -> (..., N) with each tensor's gain, gate and offset."""
        scale = self.gain * self.gate[self.tensor_index] if self.gate.requires_grad else self.gain
        return flat * scale + self.offset

    def _init_shared(self, layer: nn.Linear, moments, h: torch.Tensor) -> None:
        """Unit-variance output for every group of ``layer.out_features`` values (a chunk, or a
        tensor's slot), each group calibrated on its own features ``h (n, G, d_k)``; all zero
        when every tensor should start at exactly zero."""
        with torch.no_grad():
            layer.bias.zero_()
            if all(v == 0 for _, v in moments.values()):
                layer.weight.zero_()
                return
            m2 = h.detach().pow(2).mean(dim=(0, 2))  # (G,) second moment per group
            mean_m2 = second_moment(h)
            layer.weight.normal_(0.0, math.sqrt(1.0 / (layer.in_features * mean_m2)))
            per_value = (mean_m2 / m2).sqrt().repeat_interleave(layer.out_features)
            self.gain.mul_(per_value[: self.gain.numel()])


class Chunked(_GainHead):
    """A shared generator over learned chunk embeddings (von Oswald et al., ICLR 2020).

    ``[z, c_k] -> trunk -> chunk of chunk_size values`` for k = 1..⌈P/chunk_size⌉; the chunks
    are concatenated and trimmed to P. Trainable parameters can be far fewer than P.

    Args:
        chunk_size: values produced per chunk.
        chunk_dim: size of each learned chunk embedding (N(0, 1) init).
    """

    def __init__(self, chunk_size: int, chunk_dim: int = 8, hidden=(64,), activation=nn.ReLU,
                 hidden_init: HiddenInit = "fan_in"):
        super().__init__(hidden, activation, hidden_init)
        if chunk_size < 1 or chunk_dim < 1:
            raise ValueError(f"Chunked: chunk_size and chunk_dim must be >= 1, got {chunk_size}, {chunk_dim}.")
        self.chunk_size, self.chunk_dim = chunk_size, chunk_dim

    def build(self, spec, in_features):
        super().build(spec, in_features)
        self.trunk = self._trunk(in_features + self.chunk_dim)
        self.num_chunks = math.ceil(spec.numel / self.chunk_size)
        self.chunk_emb = nn.Parameter(torch.randn(self.num_chunks, self.chunk_dim))
        self.out = nn.Linear(self._width(in_features + self.chunk_dim), self.chunk_size)
        self._set_gain(spec, {e.name: (0.0, 1.0) for e in spec}, spec.numel)

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """(..., E) -> (..., C, d_k) for the C chunks."""
        return self.grouped_features(z, self.chunk_emb)

    def forward(self, z):
        spec = self._built()
        out = self.out(self.features(z))  # (..., C, chunk_size)
        flat = out.flatten(-2)[..., : spec.numel]  # (..., P)
        return spec.unflatten(self._scale(flat))

    def init_output(self, moments, z):
        spec = self._built()
        self._set_gain(spec, moments, spec.numel)
        self._init_shared(self.out, moments, self.features(z))


class PerTensor(_GainHead):
    """Component-wise generation (Ha et al., ICLR 2017).

    ``shared=False``: a trunk per tensor with its own output layer. ``shared=True``: one trunk
    and output layer for all tensors, fed ``[z, e_t]`` with a learned embedding e_t per tensor;
    it emits max numel values, trimmed to each tensor.
    """

    def __init__(self, hidden=(64,), shared: bool = False, tensor_dim: int = 16, activation=nn.ReLU,
                 hidden_init: HiddenInit = "fan_in"):
        super().__init__(hidden, activation, hidden_init)
        self.shared, self.tensor_dim = shared, tensor_dim

    def build(self, spec, in_features):
        super().build(spec, in_features)
        if not self.shared:
            self.heads = nn.ModuleList(
                nn.Sequential(self._trunk(in_features), nn.Linear(self._width(in_features), e.numel)) for e in spec)
            return
        self.trunk = self._trunk(in_features + self.tensor_dim)
        self.tensor_emb = nn.Parameter(torch.randn(len(spec), self.tensor_dim))
        self.max_numel = max(e.numel for e in spec)
        self.out = nn.Linear(self._width(in_features + self.tensor_dim), self.max_numel)
        self._set_gain(spec, {e.name: (0.0, 1.0) for e in spec}, len(spec) * self.max_numel)

    def forward(self, z):
        spec, lead = self._built(), z.shape[:-1]
        if not self.shared:
            return {e.name: head(z).reshape(*lead, *e.shape) for e, head in zip(spec, self.heads, strict=True)}
        out = self.out(self.grouped_features(z, self.tensor_emb)).flatten(-2)  # (..., T·max_numel)
        out = self._scale(out)
        out = out.unflatten(-1, (len(spec), self.max_numel))  # (..., T, max_numel)
        return {e.name: out[..., i, : e.numel].reshape(*lead, *e.shape) for i, e in enumerate(spec)}

    def init_output(self, moments, z):
        spec = self._built()
        if not self.shared:
            for e, head in zip(spec, self.heads, strict=True):
                head = cast(nn.Sequential, head)  # trunk layers, then the output Linear
                one = ParamSpec([replace(e, offset=0)])
                init_rows(cast(nn.Linear, head[-1]), one, moments, second_moment(head[:-1](z)))
            return
        gain_spec = ParamSpec([replace(e, shape=(self.max_numel,), offset=i * self.max_numel)
                               for i, e in enumerate(spec)])
        self._set_gain(gain_spec, moments, len(spec) * self.max_numel)
        self._init_shared(self.out, moments, self.grouped_features(z, self.tensor_emb))
