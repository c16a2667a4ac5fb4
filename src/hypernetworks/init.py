"""Hypernetwork-aware initialisation: the mean and variance each generated tensor should start with.

Schemes (per generated tensor, for a target layer with fans from the spec):

* ``hyperfan_in`` (Chang, Flokas, Lipson, "Principled Weight Initialization for Hypernetworks",
  ICLR 2020): the target layer preserves the variance of its inputs. Var(W) = 1/fan_in, halved
  when the layer's bias is generated too; a generated bias gets the other half, Var(b) = 1/2.
* ``hyperfan_out`` (same paper): the layer preserves the variance of its gradients.
  Var(W) = 1/fan_out; a generated bias gets Var(b) = max(0, 1 - fan_in/fan_out).
* ``default_match``: the variance of the target layer's own PyTorch init (norm scales start at 1).
* ``zero_delta``: residual / LoRA modes start exactly at θ0 / W0.
* ``pytorch``: leave the head's layers at PyTorch's own init (the naive baseline).

Heads turn these moments into the init of their output layer, calibrated on the actual features
that reach it (Chang et al.'s Var(e) term, measured rather than assumed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from .spec import ParamEntry, ParamSpec

__all__ = ["SCHEMES", "default_moments", "factor_moments", "target_moments"]

SCHEMES = ("hyperfan_in", "hyperfan_out", "default_match", "zero_delta", "pytorch")


def default_moments(entry: ParamEntry, params: Mapping[str, torch.Tensor]) -> tuple[float, float]:
    """(mean, variance) of the PyTorch default init of one target tensor.

    ``params`` are the target's named parameters (a bias's bound comes from its layer's weight).
    """
    if entry.kind == "norm":
        return (1.0 if entry.role == "weight" else 0.0), 0.0
    if entry.kind == "embedding":
        return 0.0, 1.0
    if entry.kind == "attention":
        if entry.role == "bias":
            return 0.0, 0.0
        fan_out, fan_in = entry.shape[0], entry.shape[1]  # xavier_uniform_ on the stacked projection
        return 0.0, 2.0 / (fan_in + fan_out)
    if entry.kind == "rnn":  # U(±1/√hidden) for every tensor
        return 0.0, 1.0 / (3 * entry.fan_out)
    weight = params.get(f"{entry.module_name}.weight" if entry.module_name else "weight")
    if entry.kind in ("linear", "conv", "conv_transpose") and weight is not None:
        torch_fan_in = weight.shape[1] * math.prod(weight.shape[2:])  # kaiming_uniform_(a=√5)
        return 0.0, 1.0 / (3 * torch_fan_in)  # U(±1/√fan_in), for the bias too
    t = params[entry.name].detach().float()  # unknown layer: its own init, as measured
    return t.mean().item(), (t.var().item() if t.numel() > 1 else 0.0)


def target_moments(spec: ParamSpec, scheme: str, mode: str, target: nn.Module) -> dict[str, tuple[float, float]] | None:
    """{name: (mean, variance)} that each generated value (θ, or Δθ in residual mode) aims for;
    ``None`` for ``pytorch`` (nothing to aim for).

    Raises:
        ValueError: unknown scheme, or ``zero_delta`` in absolute mode.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"init: scheme must be one of {SCHEMES}, got {scheme!r}.")
    if scheme == "pytorch":
        return None
    if scheme == "zero_delta":
        if mode == "absolute":
            raise ValueError("init: 'zero_delta' needs mode='residual' or 'lora'; in absolute mode the "
                             "target would start with all-zero weights.")
        return {e.name: (0.0, 0.0) for e in spec}
    own = dict(target.named_parameters())
    generated_biases = {e.module_name for e in spec if e.role == "bias"}
    out = {}
    for e in spec:
        mean, var = default_moments(e, own)
        if scheme == "hyperfan_in" and e.kind not in ("norm", "other"):
            if e.role == "bias":
                var = 0.5
            else:
                var = 1.0 / (e.fan_in * (2 if e.module_name in generated_biases else 1))
        elif scheme == "hyperfan_out" and e.kind not in ("norm", "other"):
            var = max(0.0, 1.0 - e.fan_in / e.fan_out) if e.role == "bias" else 1.0 / e.fan_out
        if mode != "absolute":
            mean = 0.0  # Δθ (or B·A) is centred: θ0 carries the mean
        out[e.name] = (mean, var)
    return out


def factor_moments(spec: ParamSpec, moments: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """Moments for a ``factorized`` spec so that ``B·A`` has each weight's variance v: Var(A) = 1/I,
    Var(B) = v·I/r (B = 0 when v = 0, as LoRA's zero init); tensors that are not factors keep theirs."""
    out = {}
    for e in spec:
        if e.factor is None:
            out[e.name] = moments[e.name]
        elif e.factor.part == "A":
            out[e.name] = (0.0, 1.0 / e.shape[1])  # A (r, I)
        else:
            inner = math.prod(e.factor.shape[1:])
            out[e.name] = (0.0, moments[e.factor.weight][1] * inner / e.shape[1])  # B (O, r)
    return out
