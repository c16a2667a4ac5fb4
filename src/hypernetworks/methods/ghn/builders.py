"""Every torchvision builder of the detection, segmentation, video and optical-flow families through
``build_graph`` and ``predict``, in train and eval mode: the table of ``docs/ghn-builders.md``.

``python -m hypernetworks.methods.ghn.builders [--update docs/ghn-builders.md]`` prints the table and
rewrites the one in that file (``--only NAME ...`` for some rows). Each builder is built with
``weights=None`` (and ``weights_backbone=None``: nothing is downloaded), 3 classes and the small sizes of
``KWARGS`` / ``example_input``. A row checks, per mode: every parameter is predicted by the shipped GHN
and finite, and every node owning parameters is reached from the input; the model then runs (train mode:
a batch of 2 where it has BatchNorm, detection models with targets, returning losses); and whether what
it returns is finite. A second table gives the graph of every classification builder (``check_graph``).
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from .graph import Graph, GraphError, build_graph
from .model import GHN
from .predict import predict

__all__ = ["FAMILIES", "KWARGS", "GraphRow", "Row", "builders", "check", "check_graph", "classifiers", "example_input",
           "make_model", "render", "update"]

FAMILIES = ("detection", "segmentation", "video", "optical_flow")
# Constructor keywords beyond weights=None and 3 classes: small detection inputs and few detections.
_RCNN = {"min_size": 64, "max_size": 64, "box_detections_per_img": 8, "rpn_post_nms_top_n_test": 64}
KWARGS = {"fasterrcnn": _RCNN, "maskrcnn": _RCNN, "keypointrcnn": {**_RCNN, "num_keypoints": 5},
          "retinanet": {"min_size": 64, "max_size": 64, "detections_per_img": 8},
          "fcos": {"min_size": 64, "max_size": 64, "detections_per_img": 8},
          "ssd": {"detections_per_img": 8}}
_SIDE = {"mvit": (16, 224), "s3d": (16, 224)}  # video models with a fixed input size: (frames, side)
_FLOW_UPDATES = 2  # RAFT's recurrent refinement steps traced and run (12 by default)


def builders() -> list[tuple[str, str]]:
    """``(builder name, family)`` for every torchvision builder of ``FAMILIES``, as torchvision lists them."""
    import torchvision

    return [(name, family) for family in FAMILIES
            for name in torchvision.models.list_models(module=getattr(torchvision.models, family))]


def make_model(name: str, family: str, *, init: bool = True) -> nn.Module:
    """The builder's model on the CPU, untrained (nothing downloaded), with 3 classes and ``KWARGS``.

    Args:
        name, family: a pair of ``builders()``.
        init: initialise the parameters as the builder does; ``False`` skips it where the model has no
            state besides parameters and BatchNorm statistics (built on ``meta``, then given memory and
            fresh statistics): faster, for a model whose parameters are all predicted next.
    """
    import torchvision

    kwargs: dict[str, Any] = {"weights": None}
    if family in ("detection", "segmentation"):
        kwargs["weights_backbone"] = None
    if family != "optical_flow":
        kwargs["num_classes"] = 3
    kwargs.update(next((v for k, v in KWARGS.items() if name.startswith(k)), {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not init and family != "detection":  # detection models keep anchors outside buffers
            with torch.device("meta"):
                model = torchvision.models.get_model(name, **kwargs)
            norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
            if sum(1 for _ in model.buffers()) == sum(sum(1 for _ in m.buffers()) for m in norms):
                model.to_empty(device="cpu")
                for m in norms:
                    m.reset_running_stats()
                return model
        return torchvision.models.get_model(name, **kwargs)


def example_input(name: str, family: str, batch: int = 1, *, targets: bool = False) -> tuple:
    """Positional inputs of a small, seeded batch.

    Returns:
        detection: ``([image (3, 64, 64)] * batch,)``, plus the targets (boxes (1, 4), labels (1,), and
        masks (1, 64, 64) / keypoints (1, 5, 3) where the model has those heads) when ``targets``;
        segmentation: ``(x (batch, 3, 64, 64),)``; video: ``(x (batch, 3, T, S, S),)`` with T, S = 8, 64
        (16, 224 for mvit and s3d); optical flow: ``(x1, x2, updates)``, x (batch, 3, 128, 128).
    """
    g = torch.Generator().manual_seed(0)
    if family == "detection":
        images = [torch.rand(3, 64, 64, generator=g) for _ in range(batch)]
        if not targets:
            return (images,)
        t = {"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([1])}
        if name.startswith("maskrcnn"):
            t["masks"] = torch.zeros(1, 64, 64, dtype=torch.uint8)
            t["masks"][0, 8:40, 8:40] = 1
        if name.startswith("keypointrcnn"):
            t["keypoints"] = torch.tensor([[[10.0 + 5 * k, 12.0 + 4 * k, 1.0] for k in range(5)]])
        return images, [dict(t) for _ in range(batch)]
    if family == "segmentation":
        return (torch.rand(batch, 3, 64, 64, generator=g),)
    if family == "video":
        frames, side = next((v for k, v in _SIDE.items() if name.startswith(k)), (8, 64))
        return (torch.rand(batch, 3, frames, side, side, generator=g),)
    x1, x2 = (torch.rand(batch, 3, 128, 128, generator=g) for _ in range(2))
    return x1, x2, _FLOW_UPDATES


@dataclass
class Row:
    """One builder's line of the table.

    Attributes:
        name, family: the torchvision builder and its family.
        params: number of parameter tensors (``-`` when the model could not be built).
        nodes: nodes of its graph (0 when refused).
        eval, train: what happened in that mode: ``all predicted; runs, output finite`` or the refusal.
        seconds: wall time of the row (graph, predictions and runs in both modes); not in the table.
    """

    name: str
    family: str
    params: int
    nodes: int
    eval: str
    train: str
    seconds: float = 0.0

    def cells(self) -> list[str]:
        return [f"`{self.name}`", self.family, str(self.params), str(self.nodes), self.eval, self.train]


def _finite(out) -> bool:
    tensors = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor) and t.is_floating_point()]
    return all(t.isfinite().all() for t in tensors)


def _unfed(g: Graph) -> list[str]:
    """Names of the nodes owning parameters that no path from an input or a free parameter reaches."""
    reach = {i for i, op in enumerate(g.ops) if op in ("input", "param")}
    for s, d in sorted(g.edges):
        if s in reach:
            reach.add(d)
    return [g.names[i] for i, ps in enumerate(g.params) if ps and i not in reach]


def _mode(ghn: GHN, model: nn.Module, name: str, family: str, train: bool) -> tuple[str, int]:
    """Predict ``model``'s parameters in one mode and run it; returns (outcome, graph nodes)."""
    model.train(train)
    try:
        report = predict(ghn, model, example_input(name, family))
    except GraphError as e:
        return f"refused: {e}", 0
    graph = report.graph
    assert graph is not None  # predict always records the graph it traced
    nodes, unfed = len(graph), _unfed(graph)
    if report.not_predicted:
        first = next(iter(report.not_predicted.items()))
        return f"{len(report.not_predicted)} not predicted, e.g. `{first[0]}`: {first[1]}", nodes
    if unfed:
        return f"{len(unfed)} nodes with parameters not fed by the input, e.g. `{unfed[0]}`", nodes
    if not all(p.isfinite().all() for p in model.parameters()):
        return "non-finite predicted parameters", nodes
    if model.training != train:
        return "predict changed the mode", nodes
    batch = 2 if train and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()) else 1
    with torch.no_grad():  # BatchNorm in train mode needs more than one value per channel: a batch of 2
        out = model(*example_input(name, family, batch, targets=train and family == "detection"))
    return f"all predicted; runs, output {'finite' if _finite(out) else 'NOT finite'}", nodes


def check(name: str, family: str, ghn: GHN) -> Row:
    """The table row of one builder: ``ghn`` predicts its parameters in eval, then in train mode."""
    start = time.perf_counter()
    torch.manual_seed(0)
    model = make_model(name, family, init=False)
    n = sum(1 for _ in model.parameters())
    outcome_eval, nodes = _mode(ghn, model, name, family, train=False)
    outcome_train, _ = _mode(ghn, model, name, family, train=True)
    return Row(name, family, n, nodes, outcome_eval, outcome_train, time.perf_counter() - start)


@dataclass
class GraphRow:
    """One classification builder's line: its graph only (prediction is tested per family in test_ghn).

    Attributes:
        name: the torchvision builder.
        params: number of parameter tensors.
        nodes: nodes of its graph (0 when refused).
        graph: what ``build_graph`` gave: every parameter on a node fed by the input, or what is not.
        seconds: wall time of the row; not in the table.
    """

    name: str
    params: int
    nodes: int
    graph: str
    seconds: float = 0.0

    def cells(self) -> list[str]:
        return [f"`{self.name}`", str(self.params), str(self.nodes), self.graph]


def classifiers() -> list[str]:
    """Every torchvision classification builder (``torchvision.models``' own list)."""
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def check_graph(name: str) -> GraphRow:
    """The graph row of a classification builder (10 classes), traced on a 1x3x224x224 input (299 for inception)."""
    import torchvision

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name.startswith("regnet"):  # its constructor computes widths with tensors: not on meta
            model = torchvision.models.get_model(name, weights=None, num_classes=10)
        else:
            with torch.device("meta"):
                model = torchvision.models.get_model(name, weights=None, num_classes=10)
    n = sum(1 for _ in model.parameters())
    try:
        g = build_graph(model.eval(), torch.zeros(1, 3, 299 if name.startswith("inception") else 224, 224))
    except GraphError as e:
        return GraphRow(name, n, 0, f"refused: {e}", time.perf_counter() - start)
    parts, unfed = [], _unfed(g)
    if g.unreached:
        parts.append(f"{len(g.unreached)} not used in eval mode, e.g. `{next(iter(g.unreached))}`")
    if unfed:
        parts.append(f"{len(unfed)} nodes fed only by constants, e.g. `{unfed[0]}`")
    return GraphRow(name, n, len(g), "; ".join(parts) or "every parameter on a node fed by the input",
                    time.perf_counter() - start)


HEADER = ["builder", "family", "parameter tensors", "graph nodes", "eval mode", "train mode"]
GRAPH_HEADER = ["builder", "parameter tensors", "graph nodes", "graph"]


def render(rows: list[Row] | list[GraphRow]) -> str:
    """The markdown table of ``rows`` (all ``Row`` or all ``GraphRow``)."""
    header = GRAPH_HEADER if rows and isinstance(rows[0], GraphRow) else HEADER
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r.cells()) + " |" for r in rows])


BEGIN, END = "<!-- builders table: begin -->", "<!-- builders table: end -->"
GRAPH_BEGIN, GRAPH_END = "<!-- classification table: begin -->", "<!-- classification table: end -->"


def update(path: str | Path, table: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the text between the markers ``begin`` and ``end`` in the file at ``path`` by ``table``.

    Raises:
        ValueError: the file lacks the markers.
    """
    text = Path(path).read_text()
    if begin not in text or end not in text:
        raise ValueError(f"builders: {path} has no '{begin}' ... '{end}' markers; add them around the table.")
    head, rest = text.split(begin, 1)
    Path(path).write_text(head + begin + "\n" + table + "\n" + end + rest.split(end, 1)[1])


def main(argv: list[str] | None = None) -> None:
    from . import load_pretrained

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=None, help="builder names (default: all)")
    parser.add_argument("--update", default=None, help="markdown file whose tables to replace (docs/ghn-builders.md)")
    args = parser.parse_args(argv)
    if args.update and args.only is not None:
        parser.error("--update rewrites whole tables: run it without --only")
    torch.set_num_threads(1)
    ghn, rows, graph_rows = load_pretrained(), [], []
    for name, family in builders():
        if args.only is None or name in args.only:
            rows.append(check(name, family, ghn))
            print(f"{name}: {rows[-1].seconds:.1f} s", flush=True)
    for name in classifiers():
        if args.only is None or name in args.only:
            graph_rows.append(check_graph(name))
            print(f"{name}: {graph_rows[-1].seconds:.1f} s", flush=True)
    seconds = sum(r.seconds for r in rows + graph_rows)
    print(f"\ntorch {torch.__version__}, 1 thread, {seconds:.0f} s in all\n")
    for table_rows, begin, end in ((rows, BEGIN, END), (graph_rows, GRAPH_BEGIN, GRAPH_END)):
        if table_rows:
            print(render(table_rows) + "\n")
            if args.update:
                update(args.update, render(table_rows), begin, end)


if __name__ == "__main__":
    main()
