"""MIP: Ortiz, Guttag, Dalca, "Magnitude Invariant Parametrizations Improve Hypernetwork
Learning", ICLR 2024 (reference code: the ``hyperlight`` library).

θ(γ) = θ0 + h([cos(πγ/2), sin(πγ/2)]): the encoding has constant norm, so the scale of the
hypernetwork's input (and of its output at init) no longer depends on γ; θ0 starts at the
target's own init and trains (it replaces the output layer's bias); the hypernetwork's hidden
layers use Kaiming fan-out init.
"""

from __future__ import annotations

from torch import nn

from ...encoders import Scalars
from ...heads import Full
from ...hypernet import HyperNetwork
from ...spec import ParamSpec
from .config import MIPConfig


def hypernetwork(target: nn.Module, spec: ParamSpec | None = None, config: MIPConfig | None = None,
                 **overrides) -> HyperNetwork:
    """A γ-conditioned hypernetwork that generates ``spec`` (default: all) of ``target``.

    Args:
        target: the network whose tensors depend on γ.
        spec: which tensors (default: every parameter).
        config: a ``MIPConfig``; keyword ``overrides`` replace its fields.

    Returns:
        ``HyperNetwork``; call it as ``hnet(x, cond=gamma)`` with ``gamma`` (d,) or (B, d) in [0, 1].
        ``residual=True`` starts exactly at θ0 (``zero_delta``); ``residual=False`` starts with
        the variance of the target's own init (``default_match``).
    """
    config = MIPConfig.from_dict({**(config or MIPConfig()).to_dict(), **overrides})
    return HyperNetwork(
        target, spec,
        encoder=Scalars(config.num_scalars, encoding=config.encoding),
        head=Full(hidden=config.hidden, hidden_init="fan_out", bias=not config.residual),
        mode="residual" if config.residual else "absolute",
        init="zero_delta" if config.residual else "default_match",
        seed=config.seed,
    )
