"""GHN graphs of torchvision's builders: detection, segmentation, video and optical flow (predicted and run),
classification (graphs), and the other-data examples.

Each row of the tables in docs/ghn-builders.md is a test here: the row is recomputed and must equal the file.
"""

import re
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from hypernetworks.methods.ghn import GraphError, build_graph, load_pretrained, predict
from hypernetworks.methods.ghn.builders import (
    BEGIN,
    END,
    GRAPH_BEGIN,
    GRAPH_END,
    builders,
    check,
    check_graph,
    classifiers,
    example_input,
    make_model,
    render,
)
from hypernetworks.methods.ghn.builders import _mode as run_mode

torch.set_num_threads(1)
DOC = Path(__file__).parents[1] / "docs" / "ghn-builders.md"
BUILDERS = builders()
OUTCOMES = r"all predicted; runs, output (finite|NOT finite)|refused: build_graph: .+"


def _doc_rows(begin: str = BEGIN, end: str = END) -> list[list[str]]:
    """The cells of each row of the table between the markers, in file order."""
    table = DOC.read_text().split(begin, 1)[1].split(end, 1)[0]
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in table.splitlines()
            if line.startswith("| `")]


def _doc_row(name: str, begin: str = BEGIN, end: str = END) -> list[str] | None:
    return next((r for r in _doc_rows(begin, end) if r[0] == f"`{name}`"), None)


RERUN = f"rerun `python -m hypernetworks.methods.ghn.builders --update {DOC}`"


@pytest.fixture(scope="module")
def ghn():
    return load_pretrained()


def test_doc_table_lists_every_builder_once_in_torchvision_order():
    assert [r[0] for r in _doc_rows()] == [f"`{name}`" for name, _ in BUILDERS]
    assert {family for _, family in BUILDERS} == {"detection", "segmentation", "video", "optical_flow"}


@pytest.mark.parametrize("name,family", BUILDERS, ids=[n for n, _ in BUILDERS])
def test_builder_row_matches_the_docs(name, family, ghn):
    row = check(name, family, ghn)
    assert re.fullmatch(OUTCOMES, row.eval) and re.fullmatch(OUTCOMES, row.train), (row.eval, row.train)
    assert row.cells() == _doc_row(name), RERUN


@pytest.mark.parametrize("name", classifiers())
def test_classification_graph_row_matches_the_docs(name):
    row = check_graph(name)
    assert row.cells() == _doc_row(name, GRAPH_BEGIN, GRAPH_END), RERUN


def test_swin_v2_gets_every_parameter_predicted_and_runs(ghn):  # the family the table found refused
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.swin_v2_t(num_classes=10).eval()
    x = torch.rand(1, 3, 64, 64)
    report = predict(ghn, model, x)
    assert not report.not_predicted and all(p.isfinite().all() for p in model.parameters())
    with torch.no_grad():
        assert model(x).isfinite().all()


def test_classification_table_lists_every_builder():
    assert [r[0] for r in _doc_rows(GRAPH_BEGIN, GRAPH_END)] == [f"`{name}`" for name in classifiers()]


def _detector():
    torch.manual_seed(0)
    return make_model("fasterrcnn_mobilenet_v3_large_320_fpn", "detection").eval()


def test_detection_graph_covers_every_parameter_and_leaves_the_model_as_it_was():
    model = _detector()
    anchors = model.rpn.anchor_generator.cell_anchors
    x = example_input("fasterrcnn_mobilenet_v3_large_320_fpn", "detection")
    g = build_graph(model, x)
    owned = [p for ps in g.params for p in ps]
    assert sorted(owned) == sorted(n for n, _ in model.named_parameters()) and not g.unreached
    assert all(s < d for s, d in g.edges) and g.ops[-1] == "output"
    assert model.rpn.anchor_generator.cell_anchors is anchors and all(a.device.type == "cpu" for a in anchors)
    # the RPN head runs on each of the 3 feature levels: a node per call, the parameters on the first
    calls = [i for i, n in enumerate(g.names) if n == "rpn.head.conv.0.0"]
    assert len(calls) == 3 and g.params[calls[0]] == ("rpn.head.conv.0.0.weight", "rpn.head.conv.0.0.bias")
    assert all(g.params[i] == () and g.ops[i] == "conv" for i in calls[1:])
    pools = [i for i, n in enumerate(g.names) if n.endswith(":roi_align")]
    assert pools and all(g.ops[i] == "avg_pool" for i in pools)
    head = g.names.index("roi_heads.box_head.fc6")
    assert any(s in pools for s, d in g.edges if d == head), "the box head is fed by the pooled boxes"
    with torch.no_grad():
        out = model(*x)  # the model still runs on real tensors after the trace
    assert set(out[0]) == {"boxes", "labels", "scores"}


def test_detection_graph_does_not_depend_on_parameter_values():
    a, b = _detector(), _detector()
    with torch.no_grad():
        for p in b.parameters():
            p.normal_()
    x = example_input("fasterrcnn_mobilenet_v3_large_320_fpn", "detection")
    ga, gb = build_graph(a, x), build_graph(b, x)
    assert (ga.ops, ga.edges, ga.params) == (gb.ops, gb.edges, gb.params)


def test_detection_model_built_on_meta_is_refused_with_the_fix():
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        model = make_model("fasterrcnn_mobilenet_v3_large_320_fpn", "detection")
    x = example_input("fasterrcnn_mobilenet_v3_large_320_fpn", "detection")
    with pytest.raises(GraphError, match=r"FasterRCNN needs tensor values .* in module 'rpn' .* built on the meta "
                                         r"device.* build it on a real device"):
        build_graph(model, x)


def test_module_called_twice_gives_two_nodes_owning_its_parameters_once():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(torch.relu(self.fc(x)))

    g = build_graph(Twice(), torch.zeros(1, 4))
    assert g.ops == ["input", "linear", "relu", "linear", "output"]
    assert g.params == [(), ("fc.weight", "fc.bias"), (), (), ()]
    assert g.edges == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_parameters_belong_to_the_first_call_on_data_from_the_input():
    class Refine(nn.Module):  # RAFT-like: the first step refines a constant, the second the input's result
        def __init__(self):
            super().__init__()
            self.step, self.const = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            h = self.step(torch.zeros(1, 4, device=x.device))
            return self.step(h + x) + self.const(torch.ones(1, 4, device=x.device))

    g = build_graph(Refine(), torch.zeros(1, 4))
    assert g.ops == ["input", "linear", "add", "linear", "linear", "add", "output"]
    assert g.params == [(), (), (), ("step.weight", "step.bias"), ("const.weight", "const.bias"), (), ()]


def test_model_with_an_unplaceable_op_gives_a_refused_row(ghn):
    class Cumulative(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return torch.cumsum(self.conv(x), 1)

    outcome, nodes = run_mode(ghn, Cumulative(), "cumulative", "segmentation", train=True)
    assert nodes == 0 and re.fullmatch(OUTCOMES, outcome)
    assert outcome.startswith("refused: build_graph: cannot place op 'cumsum' called in module '<top>'")


def test_render_and_update_replace_only_the_table(tmp_path):
    from hypernetworks.methods.ghn.builders import Row, update

    page = tmp_path / "page.md"
    page.write_text(f"intro\n{BEGIN}\nold\n{END}\noutro\n")
    update(page, render([Row("r3d_18", "video", 62, 69, "a", "b")]))
    text = page.read_text()
    assert text.startswith(f"intro\n{BEGIN}\n| builder |") and text.endswith(f"{END}\noutro\n") and "old" not in text
    assert "| `r3d_18` | video | 62 | 69 | a | b |" in text
    bare = tmp_path / "bare.md"
    bare.write_text("no markers\n")
    with pytest.raises(ValueError, match="bare.md has no '<!-- builders table: begin -->'"):
        update(bare, "table")


def test_other_data_examples_in_the_docs_run():
    text = DOC.read_text().split("## Other data", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 2
    scopes = [{}, {}]
    for i, (code, scope) in enumerate(zip(blocks, scopes, strict=True)):
        exec(compile(code, f"{DOC.name} example {i}", "exec"), scope)
        out, model = scope["logits"], scope["bert" if i == 0 else "net"]
        assert out.shape == ((8, 3) if i == 0 else (64, 10)) and out.isfinite().all()
        assert sorted(scope["report"].predicted) == sorted(n for n, _ in model.named_parameters())
    g = scopes[0]["report"].graph  # BERT's: the mask (input 1) reaches both attention nodes, as the docs say
    assert g.ops[:2] == ["input", "input"] and len(g) == 36
    assert sum(g.names[d].endswith("scaled_dot_product_attention") for s, d in g.edges if s == 1) == 2


def test_cli_predicts_a_detection_model_without_downloading(capsys):
    from hypernetworks.cli import main

    main(["ghn", "predict", "--model", "fasterrcnn_mobilenet_v3_large_fpn", "--classes", "5", "--size", "64"])
    assert "not predicted 0" in capsys.readouterr().out
