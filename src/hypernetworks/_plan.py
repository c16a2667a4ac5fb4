"""What a call needs to know about a target's structure, cached per target.

A plan records the target's parameter names (ties included: one tensor reachable under several
names) and, per set of generated names, which module handles which tensor in a per-example call.
Building one walks the whole module tree; checking that a cached plan still fits walks it too, but
only compares ids (about 1 µs per module), so a target changed in any way ``nn.Module`` allows
(parameters or modules added, replaced, deleted, re-tied, classes swapped, hooks added or removed)
gets a new plan.

The cache holds no reference to a target or its modules (keys are weak, values hold names and
ids), and is guarded by a lock, so concurrent calls from several threads are safe.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field

import torch
from torch import nn


def fingerprint(target: nn.Module) -> tuple:
    """The ids of every module, class and parameter of ``target``, their names and whether each module
    has hooks, in walk order."""
    out: list = []
    stack = [target]
    while stack:
        module = stack.pop()
        state = module.__dict__
        out += (id(module), module.__class__, bool(state["_forward_hooks"] or state["_forward_pre_hooks"]
                                                   or state["_backward_hooks"] or state["_backward_pre_hooks"]))
        for name, param in state["_parameters"].items():
            out += (name, id(param))
        children = state["_modules"]
        if children:
            out += children.keys()
            stack += [child for child in children.values() if child is not None]
    return tuple(out)


@dataclass
class Plan:
    """A target's parameter structure: ``aliases`` maps each tied name to every name of its tensor."""

    signature: tuple | None
    num_params: int  # distinct parameter tensors
    aliases: dict[str, tuple[str, ...]]
    per_names: dict = field(default_factory=dict)  # {generated names: units}, see _per_example
    held: dict = field(default_factory=dict)  # {(name, shape, dtype, device): stand-in}, see _per_example


def _build(target: nn.Module, signature: tuple | None) -> Plan:
    names_of: dict[int, list[str]] = {}
    for name, param in target.named_parameters(remove_duplicate=False):
        names_of.setdefault(id(param), []).append(name)
    aliases = {n: tuple(names) for names in names_of.values() if len(names) > 1 for n in names}
    return Plan(signature, len(names_of), aliases)


_plans: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def plan_of(target: nn.Module) -> Plan:
    """The target's plan, rebuilt when its structure changed since the cached one."""
    if torch.compiler.is_compiling():  # traced once: nothing to cache
        return _build(target, None)
    signature = fingerprint(target)
    with _lock:
        plan = _plans.get(target)
    if plan is None or plan.signature != signature:
        plan = _build(target, signature)
        with _lock:
            _plans[target] = plan
    return plan


def cached(plan: Plan, key, build):
    """``plan.per_names[key]``, computed by ``build()`` on first use (thread-safe: a read of a dict
    is atomic; two threads may both build a missing value, and either result is kept)."""
    if plan.signature is None:  # a plan built under torch.compile is not shared
        return build()
    value = plan.per_names.get(key)
    if value is None:
        value = build()
        with _lock:
            plan.per_names[key] = value
    return value
