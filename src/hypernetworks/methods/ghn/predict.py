"""Predicting all parameters of a network in one GHN forward pass, and BatchNorm statistics.

BatchNorm running statistics are buffers, not parameters, so the GHN does not predict them (as in
GHN-2). After ``predict``, the running statistics still hold the network's initial values (mean 0,
variance 1); ``recompute_bn_stats`` replaces them with averages over a few training batches, which
is what the reproduction does before evaluating in eval mode.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from .graph import Graph, build_graph
from .model import GHN

__all__ = ["PredictReport", "default_input", "predict", "predict_state_dict", "recompute_bn_stats"]


@dataclass
class PredictReport:
    """What ``predict`` did.

    Attributes:
        predicted: names of the parameters filled with predicted values.
        not_predicted: ``{name: reason}`` for every parameter left as it was.
        graph: the traced graph.
        graph_seconds: time to build the graph.
        predict_seconds: time of the GHN forward pass and the copy into the model.
    """

    predicted: list[str] = field(default_factory=list)
    not_predicted: dict[str, str] = field(default_factory=dict)
    graph: Graph | None = field(default=None, repr=False)
    graph_seconds: float = 0.0
    predict_seconds: float = 0.0

    def summary(self) -> str:
        return (f"predicted {len(self.predicted)} tensors, not predicted {len(self.not_predicted)}; graph "
                f"{self.graph_seconds:.3f} s, prediction {self.predict_seconds:.3f} s")


def default_input(model: nn.Module) -> torch.Tensor:
    """An example input (1, C, 224, 224), C the input channels of the first conv layer."""
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd) and not isinstance(m, nn.modules.conv._ConvTransposeNd):
            return torch.zeros(1, m.in_channels, *([224] * (m.weight.dim() - 2)))
    raise ValueError(f"predict: cannot guess an input for {type(model).__name__} (no conv layer); pass "
                     "example_input=.")


def predict_state_dict(ghn: GHN, model: nn.Module, example_input: torch.Tensor | tuple | None = None
                       ) -> tuple[dict[str, torch.Tensor], PredictReport]:
    """Predicted tensors for ``model``'s parameters, without touching the model.

    Args:
        ghn: a trained GHN.
        model: any module.
        example_input: an input (B, ...) to trace the graph; default ``default_input(model)``.

    Returns:
        ``{name: tensor}`` (detached) and the report.
    """
    return _predict(ghn, model, example_input, into=None)


def _predict(ghn: GHN, model: nn.Module, example_input, into: dict | None) -> tuple[dict, PredictReport]:
    """Trace ``model``, predict its parameters (written ``into`` those tensors where given), and report."""
    start = time.perf_counter()
    graph = build_graph(model, default_input(model) if example_input is None else example_input)
    mid = time.perf_counter()
    with torch.no_grad():
        params = ghn([graph], into=None if into is None else [into])[0]
    report = PredictReport(predicted=list(params), not_predicted=dict(graph.unreached), graph=graph,
                           graph_seconds=mid - start)
    spec = graph.spec
    assert spec is not None  # build_graph always records the traced module's ParamSpec
    for name in spec.names:
        if name not in params and name not in report.not_predicted:
            report.not_predicted[name] = f"its node owns more than max_params_per_node={ghn.config.max_params_per_node}"
    tied = {n for n, _ in model.named_parameters(remove_duplicate=False)} - set(spec.names)
    for name in tied:
        report.not_predicted[name] = "tied to another parameter (predicted under that name)"
    report.predict_seconds = time.perf_counter() - mid
    return params, report


def predict(ghn: GHN, model: nn.Module, example_input: torch.Tensor | tuple | None = None) -> PredictReport:
    """Fill every parameter of ``model`` the GHN can place, in place, in one forward pass.

    Parameters are copied into (never replaced or deleted); parameters not predicted keep their values and are
    listed with the reason in the returned report.

    Args:
        ghn: a trained GHN.
        model: any module (any torchvision classification model, LSTM, ...).
        example_input: an input (B, ...) to trace the graph; default ``default_input(model)``.

    Returns:
        The report (``predicted``, ``not_predicted``, timings).

    Example:
        >>> from hypernetworks.methods.ghn import load_pretrained
        >>> model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
        >>> report = predict(load_pretrained(), model, torch.randn(1, 1, 28, 28))  # any torchvision model works too
        >>> len(report.predicted), report.not_predicted  # all 6 tensors filled in place
        (6, {})
    """
    own = dict(model.named_parameters())
    params, report = _predict(ghn, model, example_input, into=own)  # written into the parameters where possible
    start = time.perf_counter()
    with torch.no_grad():
        for name, value in params.items():
            if value is not own[name]:  # a tensor the GHN could not write in place (e.g. non-contiguous)
                own[name].copy_(value)
    report.predict_seconds += time.perf_counter() - start
    return report


def recompute_bn_stats(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Replace BatchNorm running statistics by their average over ``batches`` (inputs (B, ...)).

    Returns:
        The number of BatchNorm layers reset (0 when the model has none; then nothing runs).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    saved = [(m, m.momentum) for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    for m, momentum in saved:
        m.momentum = momentum
    model.train(was_training)
    return len(norms)
