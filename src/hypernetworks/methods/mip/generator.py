"""MIP: Ortiz, Guttag, Dalca, "Magnitude Invariant Parametrizations Improve Hypernetwork
Learning", ICLR 2024 (reference code: the ``hyperlight`` library).

θ(γ) = θ0 + h([cos(πγ/2), sin(πγ/2)]): the encoding has constant norm, so the scale of the
hypernetwork's input (and of its output at init) no longer depends on γ; θ0 starts at the
target's own init and trains (it replaces the output layer's bias); the hypernetwork's hidden
layers use Kaiming fan-out init.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ...encoders import Scalars
from ...heads import Full
from ...hypernet import HyperNetwork
from ...spec import ParamSpec
from .config import MIPConfig


def hypernetwork(target: nn.Module, config: MIPConfig | None = None, *, spec: ParamSpec | None = None,
                 **options: Any) -> HyperNetwork:
    """A γ-conditioned MIP hypernetwork that generates ``spec`` (default: all) of ``target``.

    Args:
        target: the network whose tensors depend on γ.
        config: a ``MIPConfig``; keyword ``options`` replace its fields.
        spec: which tensors (default: every parameter).

    Returns:
        ``HyperNetwork``; call it as ``hnet(x, cond=gamma)`` with ``gamma`` (d,) or (B, d) in [0, 1].
        ``residual=True`` starts exactly at θ0 (``zero_delta``); ``residual=False`` starts with
        the variance of the target's own init (``default_match``).

    Example:
        >>> target = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
        >>> hnet = hypernetwork(target, MIPConfig(hidden=(32,)))  # or methods.create("mip", target, hidden=(32,))
        >>> hnet(torch.randn(4, 6), cond=torch.rand(4, 1)).shape  # one γ per example
        torch.Size([4, 3])
        >>> type(hnet.materialize(torch.tensor([0.5])))  # the target with the weights of γ = 0.5
        <class 'torch.nn.modules.container.Sequential'>
    """
    config = MIPConfig.build(config, **options)
    return HyperNetwork(
        target, spec,
        encoder=Scalars(config.num_scalars, encoding=config.encoding),
        head=Full(hidden=config.hidden, hidden_init="fan_out", bias=not config.residual),
        mode="residual" if config.residual else "absolute",
        init="zero_delta" if config.residual else "default_match",
        seed=config.seed,
    )
