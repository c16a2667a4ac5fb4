"""ParamSpec: *what* a hypernetwork generates.

A spec is an ordered list of the target tensors to generate, with their shapes, their offsets in
one flat vector of length P, and the fan-in / fan-out that initialisation schemes need. It is
plain data: it is built from a module once and knows nothing of how tensors are produced or used.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, NamedTuple

import torch
from torch import nn

__all__ = ["FactorOf", "LoRA", "NoMatchingParamsError", "ParamEntry", "ParamSpec", "match_names", "module_kind"]

_GLOB_CHARS = re.compile(r"[*?\[]")
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.LocalResponseNorm)
_CONV_T = nn.modules.conv._ConvTransposeNd


class LoRA(NamedTuple):
    """Low-rank factors of a weight update ``W = W0 + B·A``.

    Shapes: A (..., r, I), B (..., O, r), with ``I`` the product of the weight's trailing dims
    (``in_features``, or ``C/g·k`` for a conv kernel) and ``...`` the per-example batch, if any.
    """

    A: torch.Tensor
    B: torch.Tensor


class FactorOf(NamedTuple):
    """Which weight a generated factor belongs to: ``part`` "A" (r, I) or "B" (O, r) of the weight
    ``weight`` of shape ``shape``, with ``W = B·A`` reshaped to ``shape``."""

    weight: str
    part: str
    shape: tuple[int, ...]


class NoMatchingParamsError(ValueError):
    """Raised when a selection of target tensors matches nothing."""


@dataclass(frozen=True)
class ParamEntry:
    """One generated tensor of the target.

    Attributes:
        name: qualified parameter name in the target's ``state_dict`` (e.g. ``"fc.weight"``).
        shape: the tensor's shape.
        offset: start of the tensor in the flat vector of length P.
        fan_in: inputs each output unit of the owning layer sums over (per group for grouped conv).
        fan_out: outputs each input unit of the owning layer feeds.
        role: ``"weight"``, ``"bias"`` or ``"other"``.
        kind: the owning layer's family: ``linear``, ``conv``, ``conv_transpose``, ``norm``,
            ``embedding``, ``attention``, ``rnn`` or ``other``.
        module_type: class name of the owning module (e.g. ``"Conv2d"``).
        factor: for an entry of a ``factorized`` spec, the weight and part it is a factor of.
    """

    name: str
    shape: tuple[int, ...]
    offset: int
    fan_in: int
    fan_out: int
    role: str
    kind: str
    module_type: str
    factor: FactorOf | None = None

    @cached_property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def module_name(self) -> str:
        return (self.factor.weight if self.factor else self.name).rpartition(".")[0]


def _matches(key: str | Sequence[str], name: str) -> bool:
    """PEFT's ``target_modules`` rules, plus globs.

    A string is a full regex match; a list matches exact names, dotted suffixes, or glob patterns
    (items holding ``*``, ``?`` or ``[``).
    """
    if isinstance(key, str):
        return re.fullmatch(key, name) is not None
    for item in key:
        if _GLOB_CHARS.search(item):
            if fnmatch.fnmatchcase(name, item):
                return True
        elif name == item or name.endswith("." + item):
            return True
    return False


def match_names(key: str | Sequence[str], names: Iterable[str]) -> list[str]:
    """The names that ``key`` selects, by the rules of ``ParamSpec.from_module``'s ``include``."""
    return [n for n in names if _matches(key, n)]


def _selected(name: str, module_name: str, key: str | Sequence[str]) -> bool:
    return _matches(key, name) or (module_name != "" and _matches(key, module_name))


def module_kind(module: nn.Module) -> str:
    """The layer family of a module (the one classification the library uses): ``linear``, ``conv``,
    ``conv_transpose``, ``norm``, ``embedding``, ``attention``, ``rnn`` or ``other``."""
    if isinstance(module, _CONV_T):
        return "conv_transpose"
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, _NORMS):
        return "norm"
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return "embedding"
    if isinstance(module, nn.MultiheadAttention):
        return "attention"
    if isinstance(module, nn.RNNBase):
        return "rnn"
    return "other"


_ATTENTION_ROLES = {"in_proj_weight": "weight", "q_proj_weight": "weight", "k_proj_weight": "weight",
                    "v_proj_weight": "weight", "in_proj_bias": "bias", "bias_k": "bias", "bias_v": "bias"}


def _role(module: Any, kind: str, leaf: str) -> str:  # module: an nn.Module of that kind
    """What a tensor is to its module, from the module's own naming: torch's RNNs name their tensors
    ``weight_*`` / ``bias_*`` (``module._flat_weights_names``), attention has a fixed set, every
    other module's ``weight`` and ``bias`` are exactly those names."""
    if kind == "attention":
        return _ATTENTION_ROLES.get(leaf, "other")
    if kind == "rnn" and leaf in module._flat_weights_names:
        return leaf.split("_", 1)[0]
    return leaf if leaf in ("weight", "bias") else "other"


def _fans(module: Any, kind: str, leaf: str, shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of the layer that uses a tensor; biases get their layer's fans."""
    if kind in ("conv", "conv_transpose"):
        k = math.prod(module.kernel_size)
        g = module.groups
        fan_in, fan_out = module.in_channels // g * k, module.out_channels // g * k
        if kind == "conv_transpose":  # each output sees about k / stride taps of each input
            s = math.prod(module.stride)
            fan_in, fan_out = max(1, fan_in // s), max(1, fan_out // s)
        return fan_in, fan_out
    if kind == "linear":
        return module.in_features, module.out_features
    if kind == "norm":
        return 1, 1
    if kind == "embedding":  # a lookup: each output reads one row
        return 1, module.embedding_dim
    if kind == "attention":
        if leaf in ("in_proj_weight", "in_proj_bias", "q_proj_weight"):
            return module.embed_dim, module.embed_dim
        if leaf == "k_proj_weight":
            return module.kdim, module.embed_dim
        if leaf == "v_proj_weight":
            return module.vdim, module.embed_dim
    if kind == "rnn":
        hidden = module.hidden_size
        fan_in = shape[1] if len(shape) == 2 else hidden
        return fan_in, hidden
    if len(shape) >= 2:
        receptive = math.prod(shape[2:])
        return shape[1] * receptive, shape[0] * receptive
    return 1, 1


def _owned_parameters(module: nn.Module) -> list[tuple[str, str, nn.Module, nn.Parameter]]:
    """(qualified name, module name, owning module, parameter) for each distinct parameter."""
    seen: set[int] = set()
    out = []
    for module_name, sub in module.named_modules():
        for leaf, param in sub.named_parameters(recurse=False):
            if id(param) in seen:  # tied weights are generated once, under their first name
                continue
            seen.add(id(param))
            name = f"{module_name}.{leaf}" if module_name else leaf
            out.append((name, module_name, sub, param))
    return out


class ParamSpec:
    """An ordered selection of a target's parameters to generate.

    Example:
        >>> target = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> spec = ParamSpec.from_module(target, include=["2.*"])
        >>> spec.names, spec.numel
        (['2.weight', '2.bias'], 18)
    """

    def __init__(self, entries: Sequence[ParamEntry]):
        offset = 0
        for e in entries:
            if e.offset != offset:
                raise ValueError(
                    f"ParamSpec: entry '{e.name}' has offset {e.offset}, expected {offset}; "
                    "entries must tile the flat vector in order."
                )
            offset += e.numel
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            raise ValueError(f"ParamSpec: duplicate entry names in {names}.")
        self.entries = tuple(entries)
        self._by_name = {e.name: e for e in entries}
        self._numel = offset

    @classmethod
    def from_module(
        cls,
        module: nn.Module,
        include: str | Sequence[str] | None = None,
        exclude: str | Sequence[str] | None = None,
        module_types: type[nn.Module] | Sequence[type[nn.Module]] | None = None,
    ) -> ParamSpec:
        """Select parameters of ``module`` by name and/or the type of the module that owns them.

        Names follow PEFT's ``target_modules`` rules, applied to both the parameter name
        (``"layer4.0.conv1.weight"``) and its module's name (``"layer4.0.conv1"``): a string is a
        full regex match; a list matches exact names or dotted suffixes (``"fc"``,
        ``"q_proj"``), and items holding ``*``/``?``/``[`` are globs (``"layer4.*"``).

        Args:
            module: the target network.
            include: what to generate; ``None`` selects every parameter.
            exclude: what never to generate, by the same rules; exclusion wins.
            module_types: keep only parameters owned by modules of these types.

        Raises:
            NoMatchingParamsError: when the selection is empty; the message lists what exists.
        """
        if isinstance(module_types, type):
            module_types = (module_types,)
        if module_types is not None:
            bad = [t for t in module_types if not (isinstance(t, type) and issubclass(t, nn.Module))]
            if bad:
                raise TypeError(f"ParamSpec.from_module: module_types must be nn.Module classes, got {bad}.")
        entries, offset = [], 0
        for name, module_name, owner, param in _owned_parameters(module):
            if include is not None and not _selected(name, module_name, include):
                continue
            if exclude is not None and _selected(name, module_name, exclude):
                continue
            if module_types is not None and not isinstance(owner, tuple(module_types)):
                continue
            leaf = name.rpartition(".")[2]
            shape = tuple(param.shape)
            kind = module_kind(owner)
            fan_in, fan_out = _fans(owner, kind, leaf, shape)
            entries.append(
                ParamEntry(name, shape, offset, fan_in, fan_out, _role(owner, kind, leaf), kind,
                           type(owner).__name__)
            )
            offset += param.numel()
        if not entries:
            raise NoMatchingParamsError(cls._nothing_matched(module, include, exclude, module_types))
        return cls(entries)

    @staticmethod
    def _nothing_matched(module, include, exclude, module_types) -> str:
        owned = _owned_parameters(module)
        names = [name for name, *_ in owned]
        types = sorted({type(owner).__name__ for _, _, owner, _ in owned})
        shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
        return (
            f"ParamSpec.from_module: include={include!r}, exclude={exclude!r}, "
            f"module_types={module_types!r} selected no parameter. Parameters: [{shown}]; "
            f"module types owning them: {types}."
        )

    @staticmethod
    def inspect(module: nn.Module, include=None, exclude=None, module_types=None) -> dict[str, list[str]]:
        """``{"matched": [...], "unmatched": [...]}`` parameter names for a selection."""
        try:
            matched = ParamSpec.from_module(module, include, exclude, module_types).names
        except NoMatchingParamsError:
            matched = []
        chosen = set(matched)
        return {"matched": matched,
                "unmatched": [n for n, *_ in _owned_parameters(module) if n not in chosen]}

    # --- sizes and look-ups -------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    @property
    def numel(self) -> int:
        """P, the length of the flat vector."""
        return self._numel

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):
        return iter(self.entries)

    def __getitem__(self, name: str) -> ParamEntry:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __repr__(self) -> str:
        rows = "\n".join(f"  {e.name}: {tuple(e.shape)} [{e.kind}/{e.role}]" for e in self.entries)
        return f"ParamSpec(P={self.numel}, tensors={len(self)}\n{rows}\n)"

    def subset(self, names: Iterable[str]) -> ParamSpec:
        """The entries named ``names`` (in this spec's order), re-tiled from offset 0.

        Raises:
            KeyError: a name is not in the spec.
        """
        chosen = set(names)
        unknown = sorted(chosen - self._by_name.keys())
        if unknown:
            raise KeyError(f"ParamSpec.subset: {unknown} not in the spec.")
        entries, offset = [], 0
        for e in self.entries:
            if e.name in chosen:
                entries.append(replace(e, offset=offset))
                offset += e.numel
        return ParamSpec(entries)

    def factorized(self, rank: int) -> ParamSpec:
        """The spec of low-rank factors: each >=2-D tensor (O, *rest) becomes an A entry (r, I) and a
        B entry (O, r), I = prod(rest), so that ``B·A`` reshapes to it (each entry's ``factor`` says
        which); 1-D tensors stay as they are. ``assemble`` turns generated factors back into tensors."""
        if rank < 1:
            raise ValueError(f"ParamSpec.factorized: rank must be >= 1, got {rank}.")
        entries, offset = [], 0
        for e in self.entries:
            if len(e.shape) < 2:
                parts = [(e.name, e.shape, None)]
            else:
                parts = [(f"{e.name}@{part}", shape, FactorOf(e.name, part, e.shape))
                         for part, shape in (("A", (rank, math.prod(e.shape[1:]))), ("B", (e.shape[0], rank)))]
            for name, shape, factor in parts:
                entries.append(replace(e, name=name, shape=shape, offset=offset, factor=factor))
                offset += math.prod(shape)
        return ParamSpec(entries)

    def assemble(self, generated: Mapping[str, torch.Tensor], *, dense: bool) -> dict:
        """For a ``factorized`` spec: ``{weight: B·A (..., *shape)}`` (``dense``) or ``{weight: LoRA(A, B)}``
        from the generated ``{entry name: tensor}``; tensors that are not factors pass through."""
        out, pending = {}, {}
        for e in self.entries:
            value = generated[e.name]
            if e.factor is None:
                out[e.name] = value
            elif e.factor.part == "A":
                pending[e.factor.weight] = value
            elif dense:  # B follows its A
                w = torch.matmul(value, pending.pop(e.factor.weight))  # (..., O, r) @ (..., r, I) -> (..., O, I)
                out[e.factor.weight] = w.reshape(*w.shape[:-2], *e.factor.shape)
            else:
                out[e.factor.weight] = LoRA(pending.pop(e.factor.weight), value)
        return out

    # --- flat vector <-> dict -----------------------------------------------------------
    def flatten(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Concatenate tensors ``{name: (..., *shape)}`` into one ``(..., P)`` vector.

        Raises:
            KeyError: a spec tensor is missing or an extra one is given.
            ValueError: a tensor's trailing dims differ from its spec shape, or batch dims differ.
        """
        missing = [n for n in self.names if n not in params]
        extra = [n for n in params if n not in self._by_name]
        if missing or extra:
            raise KeyError(f"ParamSpec.flatten: missing {missing}, unexpected {extra}.")
        lead = None
        parts = []
        for e in self.entries:
            t = params[e.name]
            n = t.dim() - len(e.shape)
            if n < 0 or tuple(t.shape[n:]) != e.shape:
                raise ValueError(
                    f"ParamSpec.flatten: '{e.name}' should end in shape {e.shape}, got {tuple(t.shape)}."
                )
            if lead is None:
                lead = tuple(t.shape[:n])
            elif tuple(t.shape[:n]) != lead:
                raise ValueError(
                    f"ParamSpec.flatten: '{e.name}' has batch dims {tuple(t.shape[:n])}, "
                    f"others have {lead}."
                )
            parts.append(t.reshape(*lead, e.numel))
        return torch.cat(parts, dim=-1)  # (..., P)

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a ``(..., P)`` vector into views ``{name: (..., *shape)}``."""
        if flat.dim() == 0 or flat.shape[-1] != self.numel:
            raise ValueError(
                f"ParamSpec.unflatten: expected a tensor of shape (..., {self.numel}), "
                f"got {tuple(flat.shape)}."
            )
        lead = flat.shape[:-1]
        pieces = flat.split([e.numel for e in self.entries], dim=-1)
        return {e.name: p.reshape(*lead, *e.shape) for e, p in zip(self.entries, pieces, strict=True)}
