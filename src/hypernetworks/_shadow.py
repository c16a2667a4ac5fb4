"""Call-scoped copies of a module tree: how the binding runs a target with other tensors.

A *shadow* of a module is a new object of the same class that shares every attribute with the
original (buffers, hooks, configuration) except its own dicts of parameters and children. The
binding builds shadows of the modules on the path to each replaced tensor, puts the generated
tensors in their parameter dicts, and calls the shadow root. The user's modules are never written
to, so concurrent calls on one target cannot see each other's tensors, and nothing needs undoing
after an exception. Buffers are shared objects: in-place updates (BatchNorm running statistics)
reach the target exactly as in a normal call.

Two kinds of modules keep tensors outside their parameter dict and are refreshed here: recurrent
layers (``_flat_weights``) and transformer layers' fused inference paths (switched off on the
shadow when its tensors are per-example).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, cast

from torch import nn

_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
               "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_backward_hooks",
               "_backward_pre_hooks")


# Modules with a fused inference path that reads their tensors outside their children's calls.
FUSED_PATHS = (nn.TransformerEncoderLayer, nn.TransformerEncoder)


def module_at(root: nn.Module, path: str) -> nn.Module:
    """The submodule at a dotted ``path`` ('' for ``root``), by the children dicts (no checks)."""
    module = root
    if path:
        for part in path.split("."):
            module = cast(nn.Module, module._modules[part])
    return module


def has_hooks(module: nn.Module) -> bool:
    """Whether forward or backward hooks are registered on ``module`` itself."""
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or module._backward_pre_hooks)


def _shadow(module: nn.Module) -> nn.Module:
    copy = object.__new__(type(module))
    state = module.__dict__.copy()
    state["_parameters"] = dict(module._parameters)
    state["_modules"] = dict(module._modules)
    object.__setattr__(copy, "__dict__", state)  # nn.Module.__setattr__ is slow and not needed here
    return copy


def shadow_tree(root: nn.Module, tensors: Mapping[str, Any], forwards: Mapping[str, Callable] | None = None,
                *, fused_paths: bool = True) -> nn.Module:
    """A copy of ``root`` that uses ``tensors`` instead of its own and leaves ``root`` untouched.

    Args:
        root: the module to shadow.
        tensors: ``{qualified parameter (or buffer) name: value}``; the value is what the module's
            code reads.
        forwards: ``{module path: forward}``; that module's shadow runs ``forward(*args, **kwargs)``
            instead of its own, with its own hooks dropped (the caller runs them where they belong).
        fused_paths: ``False`` switches off fused inference paths (``TransformerEncoderLayer``,
            ``TransformerEncoder``) that would read the shadow's tensors outside the module calls.

    Returns:
        The shadow of ``root``; only modules on the paths to ``tensors`` and ``forwards`` are copied.
    """
    shadows: dict[str, nn.Module] = {"": _shadow(root)}

    def at(path: str) -> nn.Module:
        found = shadows.get(path)
        if found is None:
            parent_path, _, leaf = path.rpartition(".")
            parent = at(parent_path)
            found = shadows[path] = _shadow(cast(nn.Module, parent._modules[leaf]))
            parent._modules[leaf] = found
        return found

    for name, value in tensors.items():
        path, _, leaf = name.rpartition(".")
        module = at(path)
        if leaf in module._buffers:  # a buffer replaced: the shadow gets its own dict of buffers
            object.__setattr__(module, "_buffers", {**module._buffers, leaf: value})
        else:
            module._parameters[leaf] = value
    for path, forward in (forwards or {}).items():
        state = at(path).__dict__
        state["forward"] = forward
        if state["_forward_hooks"] or state["_forward_pre_hooks"] or state["_backward_hooks"] or \
                state["_backward_pre_hooks"]:
            for hooks in _HOOK_DICTS:
                if state.get(hooks):
                    state[hooks] = OrderedDict()
    for module in shadows.values():
        state = module.__dict__
        if "_flat_weights" in state:  # recurrent layers' forward reads this list, not the parameter dict
            state["_flat_weights"] = [module._parameters.get(n) for n in state["_flat_weights_names"]]
        if not fused_paths and isinstance(module, FUSED_PATHS):
            state["activation_relu_or_gelu" if isinstance(module, nn.TransformerEncoderLayer)
                  else "use_nested_tensor"] = False  # one of each fused path's preconditions
    return shadows[""]
