"""Per-example calls: run a target once on a batch whose examples each have their own tensors.

Every generated tensor is handled by one *unit*: the module that owns it, or the outermost
ancestor that must handle it as a whole (``MultiheadAttention`` and recurrent layers read their
children's tensors; a parametrized module computes its weight from them; a module without an
exact kernel runs its whole subtree per example). A unit runs

- its batched kernel (``_kernels``) when one computes exactly what its ``forward`` does and no
  hooks are registered on it;
- otherwise ``torch.func.vmap`` over the examples of a plain call of the unit (hooks included);
- or a loop over the examples: for recurrent layers (no vmap support), and for units holding
  attention or transformer layers, whose fused inference paths break autograd under vmap.

All of it happens on a shadow of the target (``_shadow``): the user's modules are never written to.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import NamedTuple, cast

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from . import _kernels
from ._kernels import LowRankWeight, PerExampleError, batched, dense
from ._plan import Plan
from ._shadow import FUSED_PATHS, has_hooks, module_at, shadow_tree

_warned: set[str] = set()


class Unit(NamedTuple):
    path: str  # of the module in the target ('' for the target itself)
    leaves: dict[str, str]  # {name relative to the unit: generated name}
    run: Callable  # run(path, module, weights, batch, *args, **kwargs)


def _reads_children(module: nn.Module) -> bool:
    """Modules whose forward reads tensors of their children directly."""
    return isinstance(module, nn.MultiheadAttention | nn.RNNBase) or torch.nn.utils.parametrize.is_parametrized(module)


# Layers with fused inference paths that torch takes under vmap, where they have no derivative.
_FUSED_UNDER_VMAP = (nn.MultiheadAttention, *FUSED_PATHS)


def _runner(path: str, module: nn.Module) -> Callable:
    if isinstance(module, _kernels.UNSUPPORTED):
        raise PerExampleError(f"functional_call: {type(module).__name__} '{path}' cannot use per-example "
                              "weights; convert it to BatchNorm, or use per_example=False.")
    kernel = None if has_hooks(module) else _kernels.find_kernel(module)
    if kernel is not None:
        return kernel
    if isinstance(module, nn.RNNBase):
        return _loop_recurrent
    return _loop if any(isinstance(m, _FUSED_UNDER_VMAP) for m in module.modules()) else _vmap


def find_units(target: nn.Module, names) -> list[Unit]:
    """Group generated names by the unit that handles them (walks only their ancestors)."""
    owners = {name.rpartition(".")[0] for name in names}
    groups: dict[str, tuple[nn.Module, dict[str, str]]] = {}
    for name in names:
        parts = name.split(".")[:-1]
        module = target
        for depth in range(len(parts) + 1):  # top-down: the outermost unit wins
            if depth:
                module = cast(nn.Module, module._modules[parts[depth - 1]])
            path = ".".join(parts[:depth])
            owns = path in owners
            if _reads_children(module) or (owns and (has_hooks(module) or _kernels.find_kernel(module) is None)):
                break
        leaf = name[len(path) + 1:] if path else name
        groups.setdefault(path, (module, {}))[1][leaf] = name
    return [Unit(path, leaves, _runner(path, module)) for path, (module, leaves) in groups.items()]


class _Held(torch.Tensor):
    """Stands in a shadow's parameter dict for a per-example tensor that only its unit may read:
    any computation with it raises (a parent or hook reading a child's tensor directly would
    otherwise see the wrong tensor). Shape, dtype and device read as for one example."""

    _READABLE = {torch.Tensor.shape.__get__, torch.Tensor.dtype.__get__,  # pyright: ignore[reportAttributeAccessIssue]
                 torch.Tensor.device.__get__, torch.Tensor.ndim.__get__,  # pyright: ignore[reportAttributeAccessIssue]
                 torch.Tensor.requires_grad.__get__,  # pyright: ignore[reportAttributeAccessIssue]
                 torch.Tensor.dim, torch.Tensor.size, torch.Tensor.is_floating_point}
    generated_name: str

    @staticmethod
    def __new__(cls, name: str, shape, dtype, device):
        held = torch.Tensor._make_wrapper_subclass(cls, shape, dtype=dtype, device=device)
        held.generated_name = name
        return held

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in cls._READABLE:
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **(kwargs or {}))
        cls._refuse(func, args, kwargs)

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        cls._refuse(func, args, kwargs)

    @staticmethod
    def _refuse(func, args, kwargs):
        held = next(a for a in tree_flatten((args, kwargs))[0] if isinstance(a, _Held))
        raise PerExampleError(
            f"functional_call: '{held.generated_name}' holds one tensor per example, but code outside its module's "
            f"forward used it ({getattr(func, '__name__', func)}): a parent or hook reads it directly. "
            "Generate the tensors of the module that reads it, or use per_example=False.")


def _held(plan: Plan, placed: dict) -> dict:
    """``_Held`` stand-ins for the placed per-example values (the values themselves when compiling);
    kept in the plan, since they depend only on the name, shape, dtype and device."""
    if torch.compiler.is_compiling():
        return placed
    out = {}
    for name, value in placed.items():
        if isinstance(value, LowRankWeight):
            one, shape = value.base, value.base.shape
        else:
            one, shape = value, value.shape[1:]
        key = (name, shape, one.dtype, one.device)
        held = plan.held.get(key)
        if held is None:  # a race builds two equal stand-ins; either is kept
            held = plan.held[key] = _Held(name, shape, one.dtype, one.device)
        out[name] = held
    return out


def _global_hooks() -> bool:
    m = nn.modules.module
    return bool(m._global_forward_hooks or m._global_forward_pre_hooks or m._global_backward_hooks
                or m._global_backward_pre_hooks)


def call(target: nn.Module, plan: Plan, units: list[Unit], placed: dict, batch: int, args: tuple, kwargs: dict):
    """Run ``target(*args, **kwargs)`` with ``placed`` (``{name: (B, *shape) | LowRankWeight}``)."""
    if _global_hooks():
        raise PerExampleError("functional_call: global module hooks are registered (torch.nn.modules.module."
                              "register_module_forward_hook and friends), which a per-example call cannot "
                              "run per example; remove them, or use per_example=False.")
    called: set[str] = set()
    forwards = {}
    for unit in units:
        module = module_at(target, unit.path)
        weights = {leaf: placed[name] for leaf, name in unit.leaves.items()}
        forwards[unit.path] = _bound(unit, module, weights, batch, called)
    out = shadow_tree(target, _held(plan, placed), forwards, fused_paths=False)(*args, **kwargs)
    unused = [unit.path or type(target).__name__ for unit in units if unit.path not in called]
    if unused:
        raise PerExampleError(
            f"functional_call: module(s) {unused} own generated tensors but were never called "
            "during the forward (a parent may read their tensors directly); generate the "
            "parent's tensors instead, or use per_example=False."
        )
    return out


def _bound(unit: Unit, module, weights, batch, called) -> Callable:
    def forward(*args, **kwargs):
        called.add(unit.path)
        return unit.run(unit.path, module, weights, batch, *args, **kwargs)

    return forward


def batch_dim(module: nn.Module) -> int:
    """Where a module expects the batch: dim 1 for ``batch_first=False`` attention/recurrent layers."""
    for m in module.modules():
        if hasattr(m, "batch_first"):
            return 0 if m.batch_first else 1
    return 0


def _split(path, module, batch, args, kwargs):
    """The generic paths' rule for inputs: every tensor, positional or keyword (nested in tuples,
    lists and dicts too), whose batch dim has size B is split per example; other tensors are shared
    by all examples. Returns (batch dim, leaves, their structure, which leaves are split)."""
    bdim = batch_dim(module)
    if args and isinstance(args[0], torch.Tensor):
        batched(path, args[0], batch, bdim)
    leaves, structure = tree_flatten((args, kwargs))
    split = [isinstance(t, torch.Tensor) and t.dim() > bdim and t.shape[bdim] == batch for t in leaves]
    return bdim, leaves, structure, split


def _vmap(path, module, weights, batch, *args, **kwargs):
    """Generic path: ``vmap`` over the examples of a plain call of the unit (inputs: ``_split``)."""
    bdim, leaves, structure, split = _split(path, module, batch, args, kwargs)
    weights = {k: dense(v) for k, v in weights.items()}

    def one(p, *xs):  # split inputs arrive without their batch dim
        xs = [x.unsqueeze(bdim) if s else x for x, s in zip(xs, split, strict=True)]
        a, kw = tree_unflatten(xs, structure)
        out = shadow_tree(module, p)(*a, **kw)
        return tree_map(lambda t: t.squeeze(bdim), out)

    in_dims = (0, *(bdim if s else None for s in split))
    try:
        return torch.func.vmap(one, in_dims=in_dims, out_dims=bdim, randomness="different")(weights, *leaves)
    except (RuntimeError, ValueError) as e:
        if isinstance(e, PerExampleError):
            raise
        raise PerExampleError(f"functional_call: per-example {type(module).__name__} '{path}' has no batched "
                              f"kernel and torch.func.vmap failed on it: {e}") from e


def _warn_loop(module: nn.Module, why: str) -> None:
    if type(module).__name__ not in _warned:
        _warned.add(type(module).__name__)
        warnings.warn(f"functional_call: per-example {type(module).__name__} runs a Python loop over the batch "
                      f"({why}); expect it to be slow.", stacklevel=5)


def _loop(path, module, weights, batch, *args, **kwargs):
    """One plain call of the unit per example (inputs: ``_split``); outputs joined in the batch dim."""
    _warn_loop(module, "it holds attention layers, whose fused paths do not run under vmap")
    bdim, leaves, structure, split = _split(path, module, batch, args, kwargs)
    weights = {k: dense(v) for k, v in weights.items()}
    outs = []
    for i in range(batch):
        a, kw = tree_unflatten([x.narrow(bdim, i, 1) if s else x for x, s in zip(leaves, split, strict=True)],
                               structure)
        outs.append(shadow_tree(module, {k: v[i] for k, v in weights.items()})(*a, **kw))
    return tree_map(lambda *ts: torch.cat(ts, bdim) if isinstance(ts[0], torch.Tensor) else ts[0], *outs)


def _loop_recurrent(path, module, weights, batch, *args, **kwargs):
    """Recurrent layers (no vmap support): one call per example; the state has its batch in dim 1."""
    _warn_loop(module, "no batched kernel exists")
    if kwargs:
        raise PerExampleError(f"functional_call: per-example {type(module).__name__} '{path}' takes "
                              "positional (input, hx) only.")
    x, hx = args[0], (args[1] if len(args) > 1 else None)
    if not isinstance(x, torch.Tensor):
        raise PerExampleError(f"functional_call: per-example '{path}' needs a padded tensor input, "
                              f"got {type(x).__name__}.")
    xdim = 0 if module.batch_first else 1
    x = batched(path, x, batch, xdim)
    weights = {k: dense(v) for k, v in weights.items()}
    xs, hs = x.unbind(xdim), _unbind_state(hx)
    outs = []
    for i in range(batch):
        h = None if hs is None else _map_state(hs[i], lambda t: t.unsqueeze(1))
        one = shadow_tree(module, {k: v[i] for k, v in weights.items()})
        outs.append(one(xs[i].unsqueeze(xdim), h))
    ys = torch.cat([o[0] for o in outs], dim=xdim)
    states = [o[1] for o in outs]
    if isinstance(states[0], tuple):  # LSTM: (h, c), batch in dim 1
        return ys, tuple(torch.cat([s[j] for s in states], dim=1) for j in range(len(states[0])))
    return ys, torch.cat(states, dim=1)


def _unbind_state(hx):
    if hx is None:
        return None
    if isinstance(hx, tuple):
        return list(zip(*(h.unbind(1) for h in hx), strict=True))
    return list(hx.unbind(1))


def _map_state(h, fn):
    return tuple(fn(t) for t in h) if isinstance(h, tuple) else fn(h)
