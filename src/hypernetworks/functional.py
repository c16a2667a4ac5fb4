"""The binding: run a target network with generated tensors.

``functional_call`` places generated tensors into a target for one call and leaves the module as it
was. Shared weights go through ``torch.func.functional_call``. Per-example weights (a leading batch
dim B) run the target once on the whole batch; each module that owns generated tensors is called
through a batched kernel (``bmm``, grouped convolution, factored LoRA, per-example affine on top
of batch statistics), through ``torch.func.vmap`` when no kernel exists, or, for recurrent layers,
through a loop over the examples.
"""

from __future__ import annotations

import copy
import warnings
import weakref
from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch
from torch import nn

from . import _kernels
from ._kernels import LowRankWeight, PerExampleError
from .spec import LoRA, ParamSpec

__all__ = ["LoRA", "MODES", "PerExampleError", "functional_call", "materialize"]

MODES = ("absolute", "residual", "lora")

# Modules whose forward reads their children's tensors directly: generated tensors anywhere
# below them are handled by the composite as a whole.
_COMPOSITES = (nn.MultiheadAttention, nn.RNNBase)
_warned: set[str] = set()


def _fail(msg: str) -> None:
    raise ValueError(f"functional_call: {msg}")


def _check_value(name, value, param, mode, batch_dims) -> torch.Tensor:
    """Check one generated value against the target parameter; return a tensor with its shape."""
    lead = "(B, " if batch_dims else "("
    if mode == "lora":
        if not isinstance(value, LoRA):
            _fail(f"mode='lora' needs LoRA(A, B) factors for '{name}', got {type(value).__name__}; "
                  "generate biases and norms with mode='residual'.")
        if param.dim() < 2:
            _fail(f"'{name}' has shape {tuple(param.shape)}; LoRA factors need a weight of >= 2 dims.")
        a, b = value
        out_f, in_f = param.shape[0], param[0].numel()
        ok = (a.dim() == b.dim() == 2 + batch_dims and a.shape[-1] == in_f and b.shape[-2] == out_f
              and a.shape[-2] == b.shape[-1] and a.shape[:batch_dims] == b.shape[:batch_dims])
        if not ok:
            _fail(f"LoRA factors for '{name}' should be A {lead}r, {in_f}) and B {lead}{out_f}, r), "
                  f"got A {tuple(a.shape)} and B {tuple(b.shape)}.")
        tensors = (a, b)
    else:
        if not isinstance(value, torch.Tensor):
            _fail(f"'{name}' should be a tensor in mode='{mode}', got {type(value).__name__}.")
        if tuple(value.shape[batch_dims:]) != tuple(param.shape) or value.dim() != param.dim() + batch_dims:
            want = f"{lead}{', '.join(map(str, param.shape))})"
            _fail(f"'{name}' should have shape {want}, got {tuple(value.shape)}.")
        tensors = (value,)
    for t in tensors:
        if t.dtype != param.dtype or t.device != param.device:
            _fail(f"'{name}' should be {param.dtype} on {param.device}, got {t.dtype} on {t.device}.")
    return tensors[0]


def _own_parameters(target: nn.Module, names) -> dict[str, nn.Parameter]:
    """The target's parameters under ``names``, found by walking each name's path."""
    own, extra = {}, []
    for name in names:
        *path, leaf = name.split(".")
        module = target
        for part in path:
            module = module._modules.get(part) if module is not None else None
        param = None if module is None else module._parameters.get(leaf)
        if param is None:
            extra.append(name)
        else:
            own[name] = param
    if extra:
        _fail(f"unexpected tensor(s) {extra}: not parameters of {type(target).__name__}.")
    return own


# Call plans: what a call with a given set of names needs from the target (how many parameters it
# has; for per-example calls, which module handles which tensors). Building one walks the module tree, which
# costs as much as a small layer's forward, so plans are cached per target and name set. A parameter
# or submodule registered anywhere through nn.Module's API (``setattr``, ``register_parameter``,
# ``add_module``) bumps ``_registrations`` and so invalidates every plan. Removals fire no hook, but
# the names are resolved again on every call, so a removed tensor or module is still an error.
_registrations = 0
_plans: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _registered(*_) -> None:
    global _registrations
    _registrations += 1


torch.nn.modules.module.register_module_parameter_registration_hook(_registered)
torch.nn.modules.module.register_module_module_registration_hook(_registered)


class _Plan(NamedTuple):
    num_params: int  # of the whole target; an upper bound once a parameter is removed
    units: dict | None  # see ``_units``; built on the first per-example call
    has_fastpath: bool


def _plan(target: nn.Module, names: tuple[str, ...], per_example: bool) -> _Plan:
    if torch.compiler.is_compiling():  # traced once: no cache needed (and dynamo cannot trace it)
        return _Plan(sum(1 for _ in target.parameters()), *(_units(target, names) if per_example else (None, False)))
    cached = _plans.get(target)
    if cached is None or cached[0] != _registrations:
        cached = _plans[target] = (_registrations, {})
    plan = cached[1].get(names)
    if plan is None or (per_example and plan.units is None):
        units = _units(target, names) if per_example else (None, False)
        plan = cached[1][names] = _Plan(sum(1 for _ in target.parameters()), *units)
    return plan


def _validate(target, own, plan, params, spec, per_example, modes, strict) -> int | None:
    """Check keys, shapes, dtypes and devices against the target's parameters (``modes``: ``{name:
    mode}``); return the per-example batch size B (or None)."""
    if strict:
        if spec is not None:
            missing = [n for n in spec.names if n not in params]
        elif len(params) != plan.num_params:  # every parameter is expected, and names are unique
            missing = [n for n, _ in target.named_parameters() if n not in params]
        else:
            missing = []
        if missing:
            hint = "" if spec is not None else " (pass spec= to generate a subset)"
            _fail(f"missing tensor(s) {missing}{hint}; or use strict=False to keep the target's own.")
    batch = None
    for name, value in params.items():
        t = _check_value(name, value, own[name], modes[name], 1 if per_example else 0)
        if per_example:
            if batch is None:
                batch = t.shape[0]
            elif t.shape[0] != batch:
                _fail(f"'{name}' has {t.shape[0]} weight sets, others have {batch}.")
    return batch


def _modes(mode: str | Mapping[str, str], params: Mapping) -> dict[str, str]:
    """``{name: mode}`` for every generated name, from one mode or a per-name mapping."""
    if isinstance(mode, str):
        if mode not in MODES:
            _fail(f"mode must be one of {MODES}, got {mode!r}.")
        return dict.fromkeys(params, mode)
    missing, unknown = [n for n in params if n not in mode], [n for n in mode if n not in params]
    if missing or unknown:
        _fail(f"a per-tensor mode needs exactly the generated names; missing {missing}, not generated {unknown}.")
    bad = {n: m for n, m in mode.items() if m not in MODES}
    if bad:
        _fail(f"modes must be one of {MODES}, got {bad}.")
    return dict(mode)


def _resolve(own: Mapping[str, torch.Tensor], params: Mapping, modes: Mapping[str, str], *,
             factored: bool = False) -> dict:
    """Turn generated values into the tensors the target uses: θ, θ0 + Δθ, or W0 + B·A.

    ``own`` are the target's named parameters; ``modes`` is ``{name: mode}`` (from ``_modes``). With
    ``factored=True`` LoRA weights stay as ``LowRankWeight`` (for the per-example kernels).
    """
    out = {}
    for name, value in params.items():
        if modes[name] == "absolute":
            out[name] = value
        elif modes[name] == "residual":
            out[name] = own[name] + value
        else:
            w = LowRankWeight(own[name].detach(), value.A, value.B)
            out[name] = w if factored else w.dense()
    return out


def functional_call(
    target: nn.Module,
    params: Mapping[str, torch.Tensor | LoRA],
    args: tuple | torch.Tensor,
    kwargs: dict | None = None,
    *,
    spec: ParamSpec | None = None,
    per_example: bool = False,
    mode: str | Mapping[str, str] = "absolute",
    strict: bool = True,
):
    """Call ``target(*args, **kwargs)`` with generated tensors in place of its own.

    Args:
        target: any module; it is left unchanged (buffers such as BatchNorm running stats update
            as in a normal call).
        params: ``{parameter name: value}``. ``absolute``: the tensor itself; ``residual``: Δθ
            added to the target's own θ0; ``lora``: ``LoRA(A, B)`` added to the frozen W0.
            Shapes: ``(*shape)`` shared, or ``(B, *shape)`` with ``per_example=True``.
        args: positional inputs (a lone tensor is accepted); with ``per_example=True`` the batch
            is dim 0 of every input of a module that owns generated tensors (dim 1 for
            ``batch_first=False`` attention / recurrent layers).
        kwargs: keyword inputs.
        spec: the tensors that must be present when ``strict``; without it, all parameters.
        per_example: one weight set per example of the batch.
        mode: ``"absolute"``, ``"residual"`` or ``"lora"``; or ``{name: mode}`` for every generated
            name, e.g. LoRA factors for the weights and residual shifts for the norms in one call.
        strict: a missing tensor is an error; ``False`` keeps the target's own for missing ones.
            Unknown names, wrong shapes, dtypes and devices are errors either way.

    Returns:
        Whatever ``target`` returns.

    Raises:
        ValueError: bad keys, shapes, dtypes, devices or mode (the message names the tensor).
        PerExampleError: a module cannot run with per-example weights as called.

    Example:
        >>> net = nn.Linear(3, 2)
        >>> w = {"weight": torch.randn(4, 2, 3), "bias": torch.zeros(4, 2)}
        >>> functional_call(net, w, torch.randn(4, 3), per_example=True).shape
        torch.Size([4, 2])

    Not thread-safe for one target instance: a per-example call routes the target's modules
    through their kernels for the duration of the call.
    """
    if isinstance(args, torch.Tensor):
        args = (args,)
    kwargs = {} if kwargs is None else kwargs
    own, modes = _own_parameters(target, params), _modes(mode, params)
    plan = _plan(target, tuple(params), per_example)
    batch = _validate(target, own, plan, params, spec, per_example, modes, strict)
    if not per_example:
        return torch.func.functional_call(target, _resolve(own, params, modes), args, kwargs, strict=False)
    return _per_example_call(target, plan, _resolve(own, params, modes, factored=True), batch, args, kwargs)


def _units(target: nn.Module, names) -> tuple[dict[str, tuple[nn.Module, dict[str, str], Callable]], bool]:
    """Group generated names by the module that must handle them: ``{module name: (module,
    {leaf: name}, per-example forward)}`` (the owner, or its outermost composite ancestor); and whether
    a transformer layer with a fused inference path holds any of them. Walks only the ancestors of
    the names."""
    groups: dict[str, tuple[nn.Module, dict[str, str]]] = {}
    has_fastpath = False
    for name in names:
        parts = name.split(".")[:-1]
        module, unit = target, ".".join(parts)
        for depth in range(len(parts) + 1):  # top-down: the outermost composite wins
            if depth:
                module = module._modules[parts[depth - 1]]
            has_fastpath = has_fastpath or isinstance(module, nn.TransformerEncoderLayer)
            if isinstance(module, _COMPOSITES):
                unit = ".".join(parts[:depth])
                break
        leaf = name[len(unit) + 1:] if unit else name
        groups.setdefault(unit, (module, {}))[1][leaf] = name
    units = {unit: (module, leaves, _per_example_forward(unit, module)) for unit, (module, leaves) in groups.items()}
    return units, has_fastpath


def _per_example_call(target, plan, resolved, batch, args, kwargs):
    called: set[str] = set()
    saved = {}
    overrides = {}
    for unit, (module, leaves, run) in plan.units.items():
        weights = {leaf: resolved[name] for leaf, name in leaves.items()}
        overrides[unit] = (module, _bound_forward(unit, run, module, weights, batch, called))
    # Transformer layers have an inference fast path that reads their tensors directly.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    try:
        if plan.has_fastpath:
            torch.backends.mha.set_fastpath_enabled(False)
        for unit, (module, forward) in overrides.items():
            saved[unit] = module.__dict__.get("forward")
            module.__dict__["forward"] = forward
        out = target(*args, **kwargs)
    finally:
        if plan.has_fastpath:
            torch.backends.mha.set_fastpath_enabled(fastpath)
        for unit, (module, _) in overrides.items():
            if saved.get(unit) is None:
                module.__dict__.pop("forward", None)
            else:
                module.__dict__["forward"] = saved[unit]
    unused = [u or type(target).__name__ for u in overrides if u not in called]
    if unused:
        raise PerExampleError(
            f"functional_call: module(s) {unused} own generated tensors but were never called "
            "during the forward (a parent may read their tensors directly); generate the "
            "parent's tensors instead, or use per_example=False."
        )
    return out


def _bound_forward(unit, run, module, weights, batch, called):
    def forward(*args, **kwargs):
        called.add(unit)
        return run(unit, module, weights, batch, *args, **kwargs)

    return forward


def _per_example_forward(unit, module) -> Callable:
    """``run(unit, module, weights, batch, *args, **kwargs)``: the module's per-example forward."""
    if isinstance(module, _kernels.UNSUPPORTED):
        raise PerExampleError(
            f"functional_call: {type(module).__name__} '{unit}' cannot use per-example weights; "
            "convert it to BatchNorm, or use per_example=False."
        )
    kernel = _kernels.find_kernel(module)
    if kernel is not None:
        return kernel
    return _loop if isinstance(module, nn.RNNBase) else _vmap


def _batch_dim(module: nn.Module) -> int:
    for m in module.modules():
        if hasattr(m, "batch_first"):
            return 0 if m.batch_first else 1
    return 0


def _without_override(module, fn):
    """Run ``fn()`` with the module's own forward (the per-example override popped meanwhile)."""
    forward = module.__dict__.pop("forward")
    try:
        return fn()
    finally:
        module.__dict__["forward"] = forward


def _vmap(unit, module, weights, batch, *args, **kwargs):
    """Generic path: ``vmap`` over examples of ``functional_call`` on this module alone."""
    bdim = _batch_dim(module)
    dense = {k: _kernels.dense(v) for k, v in weights.items()}
    in_dims = tuple(bdim if isinstance(a, torch.Tensor) else None for a in args)
    for a in args:
        if isinstance(a, torch.Tensor):
            _kernels.check_batch(unit, a, batch, bdim)

    def one(p, *xs):  # xs: one example, batch dim removed
        xs = tuple(x.unsqueeze(bdim) if isinstance(x, torch.Tensor) else x for x in xs)
        out = torch.func.functional_call(module, p, xs, kwargs, strict=False)
        return torch.utils._pytree.tree_map(lambda t: t.squeeze(bdim), out)

    return _without_override(module, lambda: torch.func.vmap(
        one, in_dims=(0, *in_dims), out_dims=bdim, randomness="different")(dense, *args))


def _loop(unit, module, weights, batch, *args, **kwargs):
    """Recurrent layers (no vmap support): one call per example, split with ``unbind``."""
    if type(module).__name__ not in _warned:
        _warned.add(type(module).__name__)
        warnings.warn(f"functional_call: per-example {type(module).__name__} runs a Python loop "
                      "over the batch (no batched kernel exists); expect it to be slow.",
                      stacklevel=4)
    if kwargs:
        _fail(f"per-example {type(module).__name__} '{unit}' takes positional (input, hx) only.")
    x, hx = args[0], (args[1] if len(args) > 1 else None)
    if not isinstance(x, torch.Tensor):
        raise PerExampleError(f"functional_call: per-example '{unit}' needs a padded tensor input, "
                              f"got {type(x).__name__}.")
    xdim = 0 if module.batch_first else 1
    _kernels.check_batch(unit, x, batch, xdim)
    dense = {k: _kernels.dense(v) for k, v in weights.items()}
    per_w = [dict(zip(dense, vals, strict=True)) for vals in zip(*(v.unbind(0) for v in dense.values()),
                                                                strict=True)]
    xs = x.unbind(xdim)
    hs = _unbind_state(hx)
    outs = []
    for i in range(batch):
        h = None if hs is None else _map_state(hs[i], lambda t: t.unsqueeze(1))
        outs.append(_without_override(module, lambda i=i, h=h: torch.func.functional_call(
            module, per_w[i], (xs[i].unsqueeze(xdim), h), strict=False)))
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


def materialize(
    target: nn.Module,
    params: Mapping[str, torch.Tensor | LoRA],
    *,
    spec: ParamSpec | None = None,
    mode: str | Mapping[str, str] = "absolute",
    strict: bool = True,
) -> nn.Module:
    """An independent copy of ``target`` with the generated tensors baked in.

    The copy is an ordinary module of the target's own class: its ``state_dict()`` loads with
    ``load_state_dict(strict=True)`` into a freshly built target, without this library.

    Args:
        target: the module to copy (left unchanged).
        params: one weight set (no batch dim), as for ``functional_call``.
        spec, mode, strict: as for ``functional_call``.
    """
    own, modes = _own_parameters(target, params), _modes(mode, params)
    _validate(target, own, _plan(target, tuple(params), False), params, spec, False, modes, strict)
    resolved = _resolve(own, params, modes)
    plain = copy.deepcopy(target)
    with torch.no_grad():
        for name, value in resolved.items():
            plain.get_parameter(name).copy_(value)
    return plain
