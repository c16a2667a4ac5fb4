"""The binding: run a target network with generated tensors.

``functional_call`` runs a target with generated tensors in place of its own and leaves the module
as it was: the call runs on a shadow of the target (``_shadow``), so nothing is written on the
user's modules, nothing global is touched, and concurrent calls from several threads are safe.
Shared weights run the target's own code. Per-example weights (a leading batch dim B) run the
target once on the whole batch, each module with generated tensors through an exact batched
kernel, ``torch.func.vmap`` or a loop (``_per_example``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from . import _per_example
from ._kernels import LowRankWeight, PerExampleError
from ._plan import Plan, cached, plan_of
from ._shadow import shadow_tree
from .spec import LoRA, ParamSpec

__all__ = ["LoRA", "MODES", "PerExampleError", "accepts_dtype", "functional_call", "functional_call_sets",
           "materialize"]

MODES = ("absolute", "residual", "lora")


def _fail(msg: str) -> None:
    raise ValueError(f"functional_call: {msg}")


def accepts_dtype(value: torch.Tensor, param: torch.Tensor) -> bool:
    """The casting rule: a generated tensor has its parameter's dtype, or, under ``torch.autocast``
    for the parameter's device, the autocast dtype (autocast casts the ops; no tensor is copied)."""
    if value.dtype == param.dtype:
        return True
    kind = param.device.type
    return (param.is_floating_point() and torch.is_autocast_enabled(kind)
            and value.dtype == torch.get_autocast_dtype(kind))


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
        if value.shape[batch_dims:] != param.shape or value.dim() != param.dim() + batch_dims:
            want = f"{lead}{', '.join(map(str, param.shape))})"
            _fail(f"'{name}' should have shape {want}, got {tuple(value.shape)}.")
        tensors = (value,)
    for t in tensors:
        if t.device != param.device or (t.dtype != param.dtype and not accepts_dtype(t, param)):
            _fail(f"'{name}' should be {param.dtype} on {param.device}, got {t.dtype} on {t.device} "
                  "(other dtypes only under torch.autocast, in its dtype).")
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


def _validate(target, own, plan: Plan, params, spec, per_example, modes, strict) -> int | None:
    """Check keys, ties, shapes, dtypes and devices against the target's parameters (``modes``:
    ``{name: mode}``); return the per-example batch size B (or None)."""
    for name in params:
        twins = [n for n in plan.aliases.get(name, ()) if n != name and n in params]
        if twins:
            _fail(f"'{name}' and {twins} are one tied tensor of the target; pass it under one name.")
    if strict:
        if spec is not None:
            missing = [n for n in spec.names if n not in params]
        elif len(params) != plan.num_params:  # every tensor is expected once, under any of its names
            given = {a for n in params for a in plan.aliases.get(n, (n,))}
            missing = [n for n, _ in target.named_parameters() if n not in given]
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


def _cast(params: Mapping, own: Mapping[str, torch.Tensor]) -> dict:
    """``params`` in their parameters' dtypes (kept where ``accepts_dtype`` already holds)."""
    def one(t, param):
        return t if not isinstance(t, torch.Tensor) or accepts_dtype(t, param) else t.to(param.dtype)

    return {name: LoRA(*(one(t, own[name]) for t in value)) if isinstance(value, LoRA) else one(value, own[name])
            for name, value in params.items()}


def _tie(plan: Plan, resolved: dict) -> dict:
    """``resolved`` placed under every name its tensor has in the target (tied weights)."""
    if not plan.aliases:
        return resolved
    return {alias: value for name, value in resolved.items() for alias in plan.aliases.get(name, (name,))}


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
    cast: bool = False,
) -> Any:
    """Call ``target(*args, **kwargs)`` with generated tensors in place of its own.

    Args:
        target: any module; it is left unchanged (buffers such as BatchNorm running stats update
            as in a normal call).
        params: ``{parameter name: value}``. ``absolute``: the tensor itself; ``residual``: Δθ
            added to the target's own θ0; ``lora``: ``LoRA(A, B)`` added to the frozen W0.
            Shapes: ``(*shape)`` shared, or ``(B, *shape)`` with ``per_example=True``. A tensor
            tied to others in the target (one ``nn.Parameter`` under several names, e.g. an LM's
            embedding and output layer) is given under any one of its names and used at all.
            The dtype is the parameter's, or under ``torch.autocast`` the autocast dtype.
        args: positional inputs (a lone tensor is accepted); with ``per_example=True`` the batch
            is dim 0 of every input of a module that owns generated tensors (dim 1 for
            ``batch_first=False`` attention / recurrent layers).
        kwargs: keyword inputs. With ``per_example=True`` a module without a batched kernel runs
            per example (``torch.func.vmap``): each tensor input, positional or keyword, whose
            batch dim has size B is split per example; other tensors are shared by all examples.
        spec: the tensors that must be present when ``strict``; without it, all parameters.
        per_example: one weight set per example of the batch.
        mode: ``"absolute"``, ``"residual"`` or ``"lora"``; or ``{name: mode}`` for every generated
            name, e.g. LoRA factors for the weights and residual shifts for the norms in one call.
        strict: a missing tensor is an error; ``False`` keeps the target's own for missing ones.
            Unknown names, wrong shapes, dtypes and devices are errors either way.
        cast: cast each generated tensor to the dtype of the parameter it replaces (differentiably)
            instead of refusing another dtype; under ``torch.autocast`` autocast's dtype is kept.

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

    Safe to call concurrently on one target from several threads (shared and per-example mixed):
    the call never writes on the target's modules.
    """
    if isinstance(args, torch.Tensor):
        args = (args,)
    kwargs = {} if kwargs is None else kwargs
    own, modes = _own_parameters(target, params), _modes(mode, params)
    if cast:
        params = _cast(params, own)
    plan = plan_of(target)
    batch = _validate(target, own, plan, params, spec, per_example, modes, strict)
    placed = _tie(plan, _resolve(own, params, modes, factored=per_example))
    if not per_example or batch is None:  # None: nothing generated
        return shadow_tree(target, placed)(*args, **kwargs)
    names = tuple(placed)
    units = cached(plan, names, lambda: _per_example.find_units(target, names))
    return _per_example.call(target, plan, units, placed, batch, args, kwargs)


def functional_call_sets(
    target: nn.Module,
    params: Mapping[str, torch.Tensor | LoRA],
    args: tuple | torch.Tensor,
    kwargs: dict | None = None,
    **options,
) -> Any:
    """Run K weight sets over the same inputs: ``params`` ``{name: (K, *shape)}`` (LoRA factors
    ``(K, r, I)``, ``(K, O, r)``), output ``(K, *output)``.

    Each set is a shared call (``functional_call`` with ``options``: spec, mode, strict, cast),
    vectorised with ``torch.func.vmap`` (random ops draw independently per set). Use it to score
    many generated networks on one batch, e.g. every learned task's network in continual learning.
    """
    if options.get("per_example"):
        raise ValueError("functional_call_sets: every set sees the whole input; per_example is not an option.")
    return torch.func.vmap(lambda p: functional_call(target, p, args, kwargs, **options),
                           randomness="different")(dict(params))


def materialize(
    target: nn.Module,
    params: Mapping[str, torch.Tensor | LoRA],
    *,
    spec: ParamSpec | None = None,
    mode: str | Mapping[str, str] = "absolute",
    strict: bool = True,
    cast: bool = False,
) -> nn.Module:
    """An independent copy of ``target`` with the generated tensors baked in.

    The copy is an ordinary module of the target's own class: its ``state_dict()`` loads with
    ``load_state_dict(strict=True)`` into a freshly built target, without this library.

    Args:
        target: the module to copy (left unchanged).
        params: one weight set (no batch dim), as for ``functional_call``.
        spec: as for ``functional_call``.
        mode: as for ``functional_call``.
        strict: as for ``functional_call``.
        cast: as for ``functional_call``.
    """
    own, modes = _own_parameters(target, params), _modes(mode, params)
    if cast:
        params = _cast(params, own)
    _validate(target, own, plan_of(target), params, spec, False, modes, strict)
    resolved = _resolve(own, params, modes)
    plain = copy.deepcopy(target)
    with torch.no_grad():
        for name, value in resolved.items():
            plain.get_parameter(name).copy_(value)
    return plain
