"""The computational graph of any ``nn.Module``, as GHN-2 sees it (Knyazev et al., NeurIPS 2021).

The forward pass is traced with a ``TorchFunctionMode`` on ``meta`` copies of the parameters
(no arithmetic happens, so ViT-B builds in ~0.1 s, and it works the same under ``torch.no_grad``).
Forwards that need values (detection models select boxes by score) are traced again on a real device
with zero parameters. Attributes a forward sets on its modules (anchor caches) are put back afterwards.
Modules that own parameters and have no parameter-owning children (Conv, Linear, norms, ...)
and composite layers (``nn.MultiheadAttention``, RNNs) become one node each; torch functions
called outside them become nodes when they compute (add, mul, cat, matmul, activations, pools)
and are contracted away when they only move data (view, permute, dropout, indexing, ...).
Parameters used directly by a computing function (ViT's class token, Swin's relative position
table) become ``param`` nodes. A module called several times (RAFT's update block, a detection head on
every feature level) gives a node per call; its parameters belong to the first call on data reached from
an input. A function on traced tensors that is in neither list raises ``GraphError`` naming the function
and the module that called it.
"""

from __future__ import annotations

import random
import weakref
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from ...spec import ParamSpec, module_kind

__all__ = ["OP_TYPES", "Graph", "GraphError", "build_graph"]

OP_TYPES = (
    "input", "output", "param", "conv", "conv_dw", "conv_transpose", "linear", "batch_norm", "layer_norm",
    "group_norm", "norm", "attention", "rnn", "embedding", "module", "relu", "gelu", "silu", "sigmoid", "tanh",
    "softmax", "max_pool", "avg_pool", "add", "mul", "cat", "matmul",
)

# torch function name -> op type; names absent from here and from _MOVES raise GraphError.
_COMPUTES = {
    **dict.fromkeys(("add", "add_", "__add__", "__radd__", "__iadd__", "sub", "sub_", "__sub__", "__rsub__",
                     "__isub__", "rsub"), "add"),
    **dict.fromkeys(("mul", "mul_", "__mul__", "__rmul__", "__imul__", "div", "div_", "__truediv__",
                     "__rtruediv__", "__itruediv__"), "mul"),
    **dict.fromkeys(("cat", "concat", "concatenate", "stack"), "cat"),
    **dict.fromkeys(("matmul", "__matmul__", "bmm", "einsum", "baddbmm", "scaled_dot_product_attention"),
                    "matmul"),
    **dict.fromkeys(("softmax", "log_softmax", "_softmax"), "softmax"),
    **dict.fromkeys(("relu", "relu_", "relu6", "hardtanh", "hardtanh_", "leaky_relu", "elu", "selu", "prelu",
                     "celu"), "relu"),
    **dict.fromkeys(("gelu",), "gelu"),
    **dict.fromkeys(("silu", "silu_", "hardswish", "hardswish_", "mish"), "silu"),
    **dict.fromkeys(("sigmoid", "sigmoid_", "hardsigmoid", "hardsigmoid_"), "sigmoid"),
    **dict.fromkeys(("tanh", "tanh_"), "tanh"),
    **dict.fromkeys(("max_pool1d", "max_pool2d", "max_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
                     "max_pool2d_with_indices", "amax", "max"), "max_pool"),
    **dict.fromkeys(("avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
                     "adaptive_avg_pool3d", "mean", "sum"), "avg_pool"),
    **dict.fromkeys(("linear",), "linear"),
    **dict.fromkeys(("conv1d", "conv2d", "conv3d"), "conv"),
    **dict.fromkeys(("layer_norm",), "layer_norm"),
    **dict.fromkeys(("batch_norm",), "batch_norm"),
    **dict.fromkeys(("group_norm",), "group_norm"),
    **dict.fromkeys(("embedding",), "embedding"),
    **dict.fromkeys(("instance_norm", "normalize"), "norm"),
    **dict.fromkeys(("roi_align", "ps_roi_align"), "avg_pool"),  # detection heads pool boxes of features
    **dict.fromkeys(("roi_pool", "ps_roi_pool"), "max_pool"),
}
_MOVES = frozenset((
    "view", "reshape", "flatten", "permute", "transpose", "swapaxes", "contiguous", "unsqueeze", "squeeze",
    "expand", "expand_as", "__getitem__", "chunk", "split", "unbind", "dropout", "dropout_", "dropout2d",
    "roll", "pad", "clone", "to", "float", "detach", "masked_fill", "masked_fill_", "narrow", "select",
    "repeat", "tile", "unflatten", "movedim", "channel_shuffle", "native_channel_shuffle", "pixel_shuffle",
    "__setitem__", "type_as", "neg", "__neg__", "abs", "pow", "__pow__", "sqrt", "rsqrt", "exp", "log",
    "clamp", "clamp_min", "interpolate", "upsample", "stochastic_depth", "t", "mT", "contiguous_",
    "new_zeros", "new_ones", "zeros_like", "ones_like", "__eq__", "ne", "eq", "size", "dim", "_assert",
    "numel", "__len__", "__iter__", "requires_grad_", "__format__", "__bool__", "split_with_sizes",
    "tensor_split", "new_full", "new_empty", "new_tensor", "full_like", "empty_like", "copy_", "where",
    "index_select", "gather",
    # box selection and decoding in detection models: comparisons, sorting, rounding, non-maximum suppression
    "ge", "gt", "le", "lt", "__ge__", "__gt__", "__le__", "__lt__", "__and__", "__or__", "__invert__",
    "logical_and", "logical_or", "logical_not", "topk", "sort", "argsort", "argmax", "argmin", "unique",
    "nonzero", "nms", "batched_nms", "floor", "ceil", "round", "log2", "remainder", "__mod__", "floor_divide",
    "__floordiv__", "grid_sample", "unfold", "all", "any", "zero_", "fill_",
))
_ATOMIC = (nn.MultiheadAttention, nn.RNNBase)
_NORM_TYPES = {nn.modules.batchnorm._BatchNorm: "batch_norm", nn.LayerNorm: "layer_norm", nn.GroupNorm: "group_norm"}


MSG_META_MODEL = ("build_graph: {} needs tensor values to be traced ('{}' in module '{}' cannot run on meta "
                  "tensors) but was built on the meta device, which keeps some of its state (buffers, anchors) "
                  "without values; build it on a real device (not under `torch.device('meta')`).")


class _NeedsValues(Exception):
    """A function could not run on meta tensors; args: its name and the module that called it."""


class GraphError(ValueError):
    """An operation the graph builder cannot place."""


@dataclass
class Graph:
    """A directed acyclic graph of a network's operations, nodes in execution (topological) order.

    Attributes:
        ops: op type of each node (an entry of ``OP_TYPES``), length N.
        names: the module (or ``module:function``) that produced each node, length N.
        params: the parameter names each node owns (state_dict names), length N.
        shapes: the shape of each node's first parameter, ``()`` for none, length N.
        edges: data-flow edges ``(src, dst)`` with ``src < dst``.
        spec: the parameters of the traced module (``ParamSpec``).
        unreached: parameters the traced forward never used, with the reason.
        cache: derived tensors (virtual edges, levels), filled on first use.
    """

    ops: list[str]
    names: list[str]
    params: list[tuple[str, ...]]
    shapes: list[tuple[int, ...]]
    edges: list[tuple[int, int]]
    spec: ParamSpec | None = None
    unreached: dict[str, str] = field(default_factory=dict)
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ops)

    def distances(self) -> torch.Tensor:
        """Directed shortest-path lengths (N, N): ``[u, v]`` from node u to node v, inf when unreachable."""
        if "distances" not in self.cache:
            n = len(self)
            preds: list[list[int]] = [[] for _ in range(n)]
            for s, d in self.edges:
                preds[d].append(s)
            dist = torch.full((n, n), float("inf"))  # dist[v, u]: u -> v; edges go to higher ids
            dist.fill_diagonal_(0)
            for v in range(n):
                if preds[v]:
                    dist[v] = torch.minimum(dist[v], dist[preds[v]].amin(0) + 1)
            self.cache["distances"] = dist.T
        return self.cache["distances"]

    def virtual_edges(self, max_dist: int) -> tuple[torch.Tensor, torch.Tensor]:
        """GHN-2's virtual edges: pairs joined by a directed shortest path of length 2..``max_dist``.

        Returns:
            edges (2, V) int64 ``(src, dst)`` and their distances (V,) float.
        """
        if len(self) < 3 or max_dist < 2 or not self.edges:
            return torch.zeros(2, 0, dtype=torch.long), torch.zeros(0)
        dist = self.distances()
        keep = (dist >= 2) & (dist <= max_dist)
        return keep.nonzero().T, dist[keep]

    def without_edges(self) -> Graph:
        """The no-graph control: the same nodes with no edges."""
        return Graph(self.ops, self.names, self.params, self.shapes, [], self.spec, self.unreached)

    def shuffled(self, seed: int) -> Graph:
        """The shuffled-graph control: each edge's source replaced by a random earlier node (still a DAG)."""
        rng = random.Random(seed)
        edges = sorted({(rng.randrange(dst), dst) for _, dst in self.edges})
        return Graph(self.ops, self.names, self.params, self.shapes, edges, self.spec, self.unreached)


def _leaves(model: nn.Module) -> dict[nn.Module, str]:
    """Modules traced as one node: composites, and owners of parameters without parameter-owning children."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, _ATOMIC):
            out[m] = name
        elif any(True for _ in m.parameters(recurse=False)) and not any(
                any(True for _ in c.parameters()) for c in m.children()):
            out[m] = name
    for m in list(out):  # children of composites belong to the composite
        if isinstance(m, _ATOMIC):
            for sub in m.modules():
                if sub is not m:
                    out.pop(sub, None)
    return out


def _module_op(m: nn.Module) -> str:
    """The node's op: the library's layer family (``module_kind``), with depthwise convolutions and
    the common norms told apart, as GHN-2's op vocabulary does."""
    kind = module_kind(m)
    if kind == "conv":
        conv = cast(_ConvNd, m)
        return "conv_dw" if conv.groups > 1 and conv.groups == conv.in_channels else "conv"
    if kind == "norm":
        return next((op for cls, op in _NORM_TYPES.items() if isinstance(m, cls)), "norm")
    return "module" if kind == "other" else kind


def _func_name(func) -> str:
    name = getattr(func, "__name__", repr(func))
    return getattr(getattr(func, "__self__", None), "__name__", name) if name == "__get__" else name


class _Tracer(TorchFunctionMode):
    """Records nodes and edges while the module runs."""

    def __init__(self, model: nn.Module, param_names: dict[int, str], meta: bool):
        super().__init__()
        self.meta = meta
        self.g = Graph([], [], [], [], [])
        self.param_names = param_names  # id(meta tensor) -> state_dict name
        self.producers: dict[int, tuple[weakref.ref, tuple[int, ...]]] = {}  # id(tensor) -> (tensor, nodes)
        self.param_nodes: dict[int, int] = {}
        self.owned: set[str] = set()
        self.fed: set[int] = set()  # nodes reached from an input or a free parameter
        self.deferred: list[tuple[int, tuple[str, ...]]] = []  # (node, parameters) of calls on constants
        self.stack: list[str] = []
        self.leaves = _leaves(model)
        self.inside = 0
        names = dict((m, n) for n, m in model.named_modules())
        self.handles = []
        for m, n in names.items():
            self.handles.append(m.register_forward_pre_hook(self._pre(m, n), with_kwargs=True))
            self.handles.append(m.register_forward_hook(self._post(m, n), with_kwargs=True, always_call=True))

    def add_node(self, op: str, name: str, params: tuple[str, ...], shape: tuple[int, ...], srcs) -> int:
        """A node; a parameter is owned by the node of its first use on data reached from an input (a module
        called again, like RAFT's update block or a detection head run on every feature level, adds nodes that
        own nothing; a call on constants, like RAFT's first step on a zero flow, owns them if no later call does).
        """
        params = tuple(p for p in params if p not in self.owned)
        idx = len(self.g.ops)
        if op in ("input", "param") or any(s in self.fed for s in srcs):
            self.fed.add(idx)
        elif params:
            self.deferred.append((idx, params))
            params = ()
        self.owned.update(params)
        self.g.ops.append(op)
        self.g.names.append(name)
        self.g.params.append(params)
        self.g.shapes.append(shape)
        self.g.edges.extend((s, idx) for s in sorted(set(srcs)))
        return idx

    def mark(self, out, nodes: tuple[int, ...]) -> None:
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):  # the weak reference tells a reused id from the traced tensor
                self.producers[id(t)] = (weakref.ref(t), nodes)

    def sources(self, inputs) -> tuple[list[int], list[torch.Tensor]]:
        """Producing nodes of the traced tensors in ``inputs``, and the parameters among them."""
        srcs, params = [], []
        for t in tree_flatten(inputs)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            if id(t) in self.param_names:
                params.append(t)
            elif id(t) in self.producers and self.producers[id(t)][0]() is t:
                srcs.extend(self.producers[id(t)][1])
        return srcs, params

    def param_node(self, t: torch.Tensor) -> int:
        if id(t) not in self.param_nodes:
            name = self.param_names[id(t)]
            self.param_nodes[id(t)] = self.add_node("param", name, (name,), tuple(t.shape), ())
        return self.param_nodes[id(t)]

    def _pre(self, m, name):
        def hook(module, args, kwargs):
            self.stack.append(name)
            if m in self.leaves:
                self.inside += 1
        return hook

    def _post(self, m, name):
        def hook(module, args, kwargs, out):
            self.stack.pop()
            if m not in self.leaves:
                return
            if self.inside > 1:
                self.inside -= 1
                return
            srcs, _ = self.sources((args, kwargs))
            owned = tuple(self.param_names[id(p)] for p in m.parameters() if id(p) in self.param_names)
            shape = tuple(next(m.parameters()).shape)
            self.mark(out, (self.add_node(_module_op(m), name, owned, shape, srcs),))
            self.inside -= 1  # the hook's own tensor calls were not traced
        return hook

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        try:
            out = func(*args, **kwargs)
        except (RuntimeError, NotImplementedError) as e:  # data-dependent shapes (nms, nonzero) on meta
            if self.meta:
                raise _NeedsValues(_func_name(func), (self.stack[-1] if self.stack else "") or "<top>") from e
            raise
        name = _func_name(func)
        # ``x[i] = y`` returns nothing: x (detection's pooled boxes are written into zeros) takes y's sources
        written = args[0] if name == "__setitem__" and isinstance(args[0], torch.Tensor) else None
        if self.inside or (written is None and not any(isinstance(t, torch.Tensor) for t in tree_flatten(out)[0])):
            return out
        srcs, params = self.sources((args, kwargs))
        if not srcs and not params:
            return out
        where = (self.stack[-1] if self.stack else "") or "<top>"
        op = _COMPUTES.get(name)
        if op is None and name not in _MOVES:
            raise GraphError(f"build_graph: cannot place op '{name}' called in module '{where}'; add it to "
                             "graph._COMPUTES (an op) or graph._MOVES (data movement).")
        if op is None or (op in ("add", "mul") and len(set(srcs)) + len(params) < 2):  # moves data
            nodes = tuple(sorted(set(srcs + [self.param_node(p) for p in params])))
            self.mark(out if written is None else written, nodes)
            return out
        owns = op in ("linear", "conv", "layer_norm", "batch_norm", "group_norm", "embedding")
        if not owns:
            srcs = srcs + [self.param_node(p) for p in params]
        owned = tuple(self.param_names[id(p)] for p in params) if owns else ()
        shape = tuple(params[0].shape) if owns and params else ()
        self.mark(out, (self.add_node(op, f"{where}:{name}", owned, shape, srcs),))
        return out


def _trace(model: nn.Module, args: tuple, spec: ParamSpec, device: torch.device) -> Graph:
    """Run ``model`` once under the tracer with stand-ins for its tensors on ``device``.

    On ``meta`` nothing is computed. On a real device the parameters are zeros (the graph of a detection
    model must not depend on them), the buffers are the model's own (zeros where those are on ``meta``) and
    the inputs keep their values.
    """
    meta = device.type == "meta"
    params = dict(model.named_parameters())
    tensors = {n: torch.zeros_like(params[n], device=device) for n in spec.names}
    for n, b in model.named_buffers():
        tensors[n] = (torch.empty_like(b, device=device) if meta else
                      torch.zeros_like(b, device=device) if b.is_meta else b.to(device))
    tracer = _Tracer(model, {id(tensors[n]): n for n in spec.names}, meta)

    def move(x):
        if not isinstance(x, torch.Tensor):
            return x
        return torch.zeros_like(x, device=device) if x.is_meta and not meta else x.to(device)

    inputs = tree_map(move, list(args))
    for i, x in enumerate(tree_flatten(inputs)[0]):
        if isinstance(x, torch.Tensor):
            tracer.mark(x, (tracer.add_node("input", f"input{i}", (), tuple(x.shape[1:]), ()),))
    saved = [(m, dict(m.__dict__)) for m in model.modules()]  # forwards that cache state (anchors) on modules
    model.eval()  # the inference graph; batch statistics of a (1, C, 1, 1) map would fail in train mode
    try:
        with tracer:
            out = torch.func.functional_call(model, tensors, tuple(inputs), strict=False, tie_weights=True)
    finally:
        for h in tracer.handles:
            h.remove()
        for m, attrs in saved:  # the mode, and attributes the forward set, as they were
            m.__dict__.clear()
            m.__dict__.update(attrs)
    srcs, _ = tracer.sources(out)
    tracer.add_node("output", "output", (), (), srcs)
    for idx, params in tracer.deferred:  # parameters no call on traced data claimed
        tracer.g.params[idx] = tuple(p for p in params if p not in tracer.owned)
        tracer.owned.update(params)
    return tracer.g


def build_graph(model: nn.Module, example_input: torch.Tensor | tuple) -> Graph:
    """Trace ``model`` on ``example_input`` into a ``Graph``.

    The trace runs on ``meta`` tensors (only the input's shape matters). A model whose forward needs values
    (detection models: non-maximum suppression, box filtering) cannot run on ``meta``; it is then traced once
    more on the device of its parameters (CPU for a ``meta`` model) with zero parameters and the input's values.

    Args:
        model: any module; it is not modified (traced in eval mode, then its mode is restored; hooks are
            removed; parameters untouched).
        example_input: a tensor (B, ...) or a tuple of positional inputs (tensors, or lists and dicts of
            them: a detection model takes ``([image (3, H, W)],)``).

    Returns:
        The graph; ``graph.unreached`` lists parameters the forward never used (e.g. auxiliary heads
        in eval mode) with the reason.

    Raises:
        GraphError: a torch function the builder cannot place (the message names it and its module), or a
            model built on the meta device whose forward needs values.
    """
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    spec = ParamSpec.from_module(model)
    try:
        g = _trace(model, args, spec, torch.device("meta"))
    except _NeedsValues as meta_error:  # an op needs values: trace on a real device
        real = [p.device for p in model.parameters() if not p.is_meta]
        msg = MSG_META_MODEL.format(type(model).__name__, *meta_error.args)
        if not real and any(b.is_meta for b in model.buffers()):
            raise GraphError(msg) from meta_error
        try:
            g = _trace(model, args, spec, real[0] if real else torch.device("cpu"))
        except NotImplementedError as e:  # state the forward keeps outside buffers (anchors) is on meta
            if "meta" not in str(e):
                raise
            raise GraphError(msg) from e
    g.spec = spec
    used = {p for ps in g.params for p in ps}
    g.unreached = {n: "not used by the traced forward pass" for n in spec.names if n not in used}
    return g
