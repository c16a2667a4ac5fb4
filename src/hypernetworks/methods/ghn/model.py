"""GHN-2: a gated graph network over an architecture's graph that decodes all of its parameters.

Knyazev, Drozdzal, Taylor, Romero-Soriano, "Parameter Prediction for Unseen Deep Architectures",
NeurIPS 2021 (https://arxiv.org/abs/2110.13100; reference code facebookresearch/ppuda). Node
embeddings (op type + parameter shape + relative depth) -> gated graph network with a forward pass (topological order)
and a backward pass (reverse order) over data-flow edges and virtual edges weighted by 1/distance
-> layer norm -> a shape-aware decoder that decodes a fixed (block_out, block_in, kernel, kernel)
block per tensor and tiles/slices it to the tensor's shape -> operation-dependent normalisation
(weight matrices/kernels scaled by 1/sqrt(fan_in), norm scales centred on 1).
``GHNConfig(encoder="transformer")`` swaps the gated graph network for GHN-3's transformer layers
(``graphormer``); ``rounds=0`` and ``arch_code=True`` give the SMASH-style baseline (``smash``).
"""

from __future__ import annotations

import math
from typing import cast, overload

import torch
import torch.nn.functional as F
from torch import nn

from ...encoders import mlp
from .._pretrained import Pretrained
from .config import GHNConfig
from .graph import OP_TYPES, Graph, build_graph  # noqa: F401  (build_graph: used in the docstring example)
from .graphormer import GraphTransformer, distance_buckets

__all__ = ["GHN"]


def _levels(n: int, edges: list[tuple[int, int]]) -> list[int]:
    """Longest-path depth of each node of a DAG whose edges go from lower to higher ids."""
    lv = [0] * n
    for s, d in sorted(edges, key=lambda e: e[1]):
        lv[d] = max(lv[d], lv[s] + 1)
    return lv


class _Schedule:
    """One propagation pass over a DAG, level by level, in level-sorted node order.

    Attributes:
        order: node ids sorted by level (N,); ``inverse`` maps them back.
        bounds: (start, end) of each level's nodes in sorted order.
        adjacency: (N, 2N) incoming-message weights in sorted order; column 2j is node j's data-flow
            message (weight 1), column 2j+1 its virtual one (weight 1/distance). Sources always sit in an
            earlier level, so level rows only read columns before ``2 * start``.
    """

    def __init__(self, lv: torch.Tensor, edges: torch.Tensor, vedges: torch.Tensor, vw: torch.Tensor):
        n = len(lv)
        self.order = torch.argsort(lv, stable=True)
        self.inverse = torch.empty_like(self.order)
        self.inverse[self.order] = torch.arange(n)
        ends = torch.cumsum(torch.bincount(lv), 0).tolist()
        self.bounds = list(zip([0] + ends[:-1], ends, strict=True))
        src = torch.cat([2 * self.inverse[edges[0]], 2 * self.inverse[vedges[0]] + 1])
        dst = self.inverse[torch.cat([edges[1], vedges[1]])]
        self.adjacency = torch.zeros(n, 2 * n).index_put_((dst, src), torch.cat([torch.ones(edges.shape[1]), vw]),
                                                           accumulate=True)


def _shape_features(shape: tuple[int, ...]) -> list[float]:
    """(out, in, kh, kw) of a parameter, log-scaled; missing dims are 0."""
    dims = list(shape[:2]) + [1] * (2 - len(shape[:2])) if shape else [0, 0]
    spatial = list(shape[2:4]) + [1] * (2 - len(shape[2:4])) if shape else [0, 0]
    return [math.log2(1 + d) / 10 for d in dims + spatial]


def _architecture_code(g: Graph, ops: list[int], depth: int) -> list[float]:
    """A fixed-length code of a whole architecture: op-type fractions, log sizes and relative depth."""
    hist = [0.0] * len(OP_TYPES)
    for o in ops:
        hist[o] += 1 / len(ops)
    n_params = sum(math.prod(e.shape) for e in g.spec.entries) if g.spec is not None else 0
    return hist + [math.log2(1 + len(g)) / 10, math.log2(1 + n_params) / 25, depth / len(g)]


CODE_DIM = len(OP_TYPES) + 3


class _Batch:
    """Several graphs as one disjoint graph: node features, architecture codes, and what the graph
    encoder needs: the level schedules of both passes (``"gated"``) or degrees and distance buckets
    (``"transformer"``); nothing for ``None``."""

    def __init__(self, graphs: list[Graph], max_dist: int, encoder: str | None = "gated"):
        propagate = encoder == "gated"
        ops, feats, codes, edges, vedges, vdist, lv_f, lv_b, self.offsets = [], [], [], [], [], [], [], [], []
        n = 0
        for g in graphs:
            self.offsets.append(n)
            if "nodes" not in g.cache:
                o, lf = [OP_TYPES.index(o) for o in g.ops], _levels(len(g), g.edges)
                lb = _levels(len(g), [(len(g) - 1 - d, len(g) - 1 - s) for s, d in g.edges])[::-1]
                depth = max(max(lf), 1)
                f = [_shape_features(s) + [a / depth, b / depth] for s, a, b in zip(g.shapes, lf, lb, strict=True)]
                g.cache["nodes"] = (o, f, lf, lb, _architecture_code(g, o, depth))
            if propagate and max_dist not in g.cache:
                g.cache[max_dist] = g.virtual_edges(max_dist)
            o, f, lf, lb, code = g.cache["nodes"]
            ops += o
            feats += f
            codes.append(code)
            edges += [(s + n, d + n) for s, d in g.edges]
            if propagate:
                ve, vd = g.cache[max_dist]
                vedges.append(ve + n)
                vdist.append(vd)
            lv_f += lf
            lv_b += lb
            n += len(g)
        self.ops = torch.tensor(ops)
        self.feats = torch.tensor(feats)  # (N, 6): log (out, in, kh, kw), relative depth from input / output
        self.codes = torch.tensor(codes)  # (G, CODE_DIM)
        self.graph_of = torch.repeat_interleave(torch.tensor([len(g) for g in graphs]))  # (N,)
        e = torch.tensor(edges, dtype=torch.long).reshape(-1, 2).T  # (2, E)
        if propagate:
            ve, vw = torch.cat(vedges, 1), 1.0 / torch.cat(vdist)
            self.forward_pass = _Schedule(torch.tensor(lv_f), e, ve, vw)
            self.backward_pass = _Schedule(torch.tensor(lv_b), e.flip(0), ve.flip(0), vw)
        if encoder == "transformer":
            self.in_degree, self.out_degree = torch.bincount(e[1], minlength=n), torch.bincount(e[0], minlength=n)
            self.buckets = torch.full((n, n), -1, dtype=torch.long)  # (N, N); -1 between graphs
            for g, start in zip(graphs, self.offsets, strict=True):
                self.buckets[start:start + len(g), start:start + len(g)] = distance_buckets(g.distances(), max_dist)

    def to(self, device: torch.device) -> _Batch:
        """Move every tensor (built on the CPU) to ``device``, in place; returns self."""
        for owner in (self, getattr(self, "forward_pass", None), getattr(self, "backward_pass", None)):
            if owner is not None:
                for name, value in vars(owner).items():
                    if isinstance(value, torch.Tensor):
                        setattr(owner, name, value.to(device))
        return self


def _tile(x: torch.Tensor, shape: tuple[int, ...], centre_from: int,
          into: list[torch.Tensor] | None = None) -> torch.Tensor | None:
    """Slice (centred for dims >= ``centre_from``) or tile ``x`` (P, ...) to (P, *shape).

    With ``into`` (P tensors of ``shape``) the result is written there instead, and the outermost tiling
    is a broadcast copy: the full-size tensor is never built twice.
    """
    for d, size in enumerate(shape, 1):
        if size <= x.shape[d]:
            x = x.narrow(d, (x.shape[d] - size) // 2 if d > centre_from else 0, size)
    tiled = [d for d in reversed(range(len(shape))) if x.shape[d + 1] < shape[d]]  # innermost first
    last = tiled.pop() if into is not None and tiled else None
    for d in tiled:  # each copy moves long contiguous runs
        reps = -(-shape[d] // x.shape[d + 1])
        x = x.repeat([reps if i == d + 1 else 1 for i in range(x.dim())]).narrow(d + 1, 0, shape[d])
    if into is None:
        return x
    for src, dest in zip(x, into, strict=True):
        if last is None:
            dest.copy_(src)
            continue
        have, full = src.shape[last], shape[last] // src.shape[last]
        dest.narrow(last, 0, full * have).unflatten(last, (full, have)).copy_(src.unsqueeze(last))
        if shape[last] % have:
            dest.narrow(last, full * have, shape[last] % have).copy_(src.narrow(last, 0, shape[last] % have))
    return None


@overload
def _to_shape(block: torch.Tensor, vector: torch.Tensor, shape: tuple[int, ...], into: None = None) -> torch.Tensor: ...
@overload
def _to_shape(block: torch.Tensor, vector: torch.Tensor, shape: tuple[int, ...], into: list[torch.Tensor]) -> None: ...
def _to_shape(block: torch.Tensor, vector: torch.Tensor, shape: tuple[int, ...],
              into: list[torch.Tensor] | None = None) -> torch.Tensor | None:
    """Tensors (P, *shape) from P decoded blocks (P, Bo, Bi, K, K) and vectors (P, Bo), or written
    ``into`` P contiguous tensors of ``shape``."""
    if len(shape) == 0:
        return vector[:, 0] if into is None else _tile(vector[:, :1], (1,), 1, [t.view(1) for t in into])
    if len(shape) == 1:
        return _tile(vector, shape, 1, into)
    if len(shape) > 4 or (len(shape) == 3 and shape[0] == 1):  # tokens, tables: a 2D matrix
        flat = (math.prod(shape[:-1]), shape[-1])
        if into is None:
            return _to_shape(block, vector, flat).reshape(-1, *shape)
        _to_shape(block, vector, flat, [t.view(flat) for t in into])
        return None
    k = block.shape[-1] // 2
    core = block[..., k, k] if len(shape) == 2 else block[..., k] if len(shape) == 3 else block
    return _tile(core, shape, 2, into)


def _linear_pair(m: nn.Module) -> tuple[nn.Linear, nn.Linear]:
    """The two Linear layers of a message MLP (Linear, activation, Linear)."""
    first, _, second = cast(nn.Sequential, m)
    return cast(nn.Linear, first), cast(nn.Linear, second)


class GHN(Pretrained[GHNConfig]):
    """Graph hypernetwork: ``GHN(config)(graphs)`` -> one ``{parameter name: tensor}`` per graph.

    Args:
        config: sizes (``GHNConfig``); keyword ``options`` replace its fields.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 26 * 26, 10))
        >>> graph = build_graph(net, torch.zeros(1, 1, 28, 28))
        >>> params = GHN(GHNConfig(hidden=32))([graph])[0]
        >>> params["0.weight"].shape
        torch.Size([8, 1, 3, 3])
    """

    CONFIG, TAKES_TARGET = GHNConfig, False

    def __init__(self, config: GHNConfig | None = None, **options):
        super().__init__()
        self.config = c = GHNConfig.build(config, **options)
        self.op_embed = nn.Embedding(len(OP_TYPES), c.hidden)
        self.shape_embed = nn.Linear(6, c.hidden)
        if c.arch_code:
            self.arch_embed = nn.Linear(CODE_DIM, c.hidden)
        if c.rounds and c.encoder == "transformer":
            self.transformer = GraphTransformer(c.hidden, c.rounds, c.heads, c.max_dist)
        elif c.rounds:
            # message MLPs for data and virtual edges, forward and backward
            self.fwd_msg = nn.ModuleList([mlp([c.hidden] * 3, last_activation=False) for _ in range(2)])
            self.bwd_msg = nn.ModuleList([mlp([c.hidden] * 3, last_activation=False) for _ in range(2)])
            self.fwd_gru = nn.GRUCell(c.hidden, c.hidden)
            self.bwd_gru = nn.GRUCell(c.hidden, c.hidden)
        self.norm = nn.LayerNorm(c.hidden)
        self.slot_embed = nn.Embedding(c.max_params_per_node, c.hidden)
        self.dec = nn.Sequential(nn.Linear(c.hidden, c.decoder_hidden), nn.ReLU())
        self.dec_block = nn.Linear(c.decoder_hidden, c.block_out * c.block_in * c.kernel * c.kernel)
        self.dec_vector = nn.Linear(c.decoder_hidden, c.block_out)
        nn.init.normal_(self.dec_vector.weight, std=0.01)
        nn.init.zeros_(self.dec_vector.bias)

    def _pass(self, h: torch.Tensor, schedule: _Schedule, msgs: nn.ModuleList, gru: nn.GRUCell) -> torch.Tensor:
        """One GRU update of every node, level by level, from its data-flow and virtual predecessors.

        Both message MLPs run as one (block-diagonal second layer), and each node is updated once,
        from its initial state, so the GRU's hidden projection of all nodes is computed up front.
        """
        n, width = h.shape
        (w1d, w2d), (w1v, w2v) = (_linear_pair(m) for m in msgs)
        w1, b1 = torch.cat([w1d.weight, w1v.weight]), torch.cat([w1d.bias, w1v.bias])  # (2H, H)
        w2, b2 = torch.block_diag(w2d.weight, w2v.weight), torch.cat([w2d.bias, w2v.bias])  # (2H, 2H)
        h = h[schedule.order]  # (N, H), level-sorted
        hidden = F.linear(h, gru.weight_hh, gru.bias_hh)  # (N, 3H)
        table = h.new_zeros(n, 2 * width)  # [data | virtual] message of each updated node
        messages = table.view(2 * n, width)
        new_states = []
        for start, end in schedule.bounds:
            m = schedule.adjacency[start:end, :2 * start] @ messages[:2 * start]  # (n_l, H)
            gates, gh = F.linear(m, gru.weight_ih, gru.bias_ih), hidden[start:end]  # (n_l, 3H) each
            r, z = torch.sigmoid(gates[:, :2 * width] + gh[:, :2 * width]).chunk(2, 1)
            cand = torch.tanh(torch.addcmul(gates[:, 2 * width:], r, gh[:, 2 * width:]))
            new = torch.lerp(cand, h[start:end], z)  # GRU: (1 - z) * cand + z * h
            new_states.append(new)
            table[start:end] = F.linear(F.relu(F.linear(new, w1, b1)), w2, b2)
        return torch.cat(new_states)[schedule.inverse]

    def embed(self, graphs: list[Graph]) -> tuple[torch.Tensor, _Batch]:
        """Node embeddings (N, H) after the graph encoder, for the union of ``graphs``."""
        c = self.config
        batch = _Batch(graphs, c.max_dist, c.encoder if c.rounds else None).to(self.op_embed.weight.device)
        h = self.op_embed(batch.ops) + self.shape_embed(batch.feats)  # (N, H)
        if c.arch_code:
            h = h + self.arch_embed(batch.codes)[batch.graph_of]
        if c.rounds and c.encoder == "transformer":
            return self.norm(self.transformer(h, batch.in_degree, batch.out_degree, batch.buckets)), batch
        for _ in range(c.rounds):
            h = self._pass(h, batch.forward_pass, self.fwd_msg, self.fwd_gru)
            h = self._pass(h, batch.backward_pass, self.bwd_msg, self.bwd_gru)
        return self.norm(h), batch

    def forward(self, graphs: list[Graph], into: list[dict[str, torch.Tensor]] | None = None
                ) -> list[dict[str, torch.Tensor]]:
        """Predict the parameters of each graph's network.

        Args:
            graphs: the networks' graphs.
            into: optionally, per graph, ``{name: contiguous tensor}`` to write predictions into (e.g. the
                network's own parameters, under ``torch.no_grad()``); saves building them twice.

        Returns:
            For each graph, ``{state_dict name: tensor of the parameter's shape}`` for every parameter its
            nodes own (up to ``max_params_per_node`` per node); the ``into`` tensors where given.
        """
        c = self.config
        h, batch = self.embed(graphs)
        rows, slots, where = [], [], []
        for gi, g in enumerate(graphs):
            for i, names in enumerate(g.params):
                for j, name in enumerate(names[:c.max_params_per_node]):
                    rows.append(batch.offsets[gi] + i)
                    slots.append(j)
                    where.append((gi, name))
        out: list[dict[str, torch.Tensor]] = [{} for _ in graphs]
        if not rows:
            return out
        z = self.dec(h[torch.tensor(rows, device=h.device)] + self.slot_embed(torch.tensor(slots, device=h.device)))
        blocks = self.dec_block(z).view(len(rows), c.block_out, c.block_in, c.kernel, c.kernel)
        vectors = self.dec_vector(z)  # (P, Bo)
        groups: dict[tuple, list[int]] = {}  # tensors decoded alike: same shape and normalisation
        for p, (gi, name) in enumerate(where):
            e = graphs[gi].spec[name]
            groups.setdefault((e.shape, e.kind == "norm", e.role, e.fan_in), []).append(p)
        for members in groups.values():
            gi, name = where[members[0]]
            entry, idx = graphs[gi].spec[name], torch.tensor(members, device=h.device)
            block, vector = _normalise(blocks[idx], vectors[idx], entry)  # elementwise: commutes with tiling
            dest = [None if into is None else into[gi].get(name) for gi, name in (where[p] for p in members)]
            ready = [t for t in dest if t is not None and t.is_contiguous() and t.shape == entry.shape]
            if len(ready) == len(dest):
                _to_shape(block, vector, entry.shape, ready)
                tensors = ready
            else:
                tensors = _to_shape(block, vector, entry.shape).unbind(0)
            for p, tensor in zip(members, tensors, strict=True):
                gi, name = where[p]
                out[gi][name] = tensor
        return out


def _normalise(block: torch.Tensor, vector: torch.Tensor, entry) -> tuple[torch.Tensor, torch.Tensor]:
    """GHN-2's operation-dependent normalisation, applied to the decoded block (Bo, Bi, K, K) / vector (Bo,)."""
    if entry.kind == "norm" and entry.role == "weight":
        return block, 1.0 + vector
    if entry.role == "weight" and len(entry.shape) >= 2:
        return block / math.sqrt(max(entry.fan_in, 1)), vector
    return block, vector
