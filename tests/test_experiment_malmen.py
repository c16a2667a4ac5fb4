"""The ``malmen`` reproduction: its editors' knobs, its validation protocol, and a quick run end to end."""

import json

import pytest
import torch
from torch import nn

from hypernetworks import cli
from hypernetworks.experiments import malmen
from hypernetworks.methods.malmen import MALMEN


def toy_task(n=48, width=32, seed=0):
    """A random ``post`` and disjoint key pools, shaped like ``fashion_task``'s output."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    post = nn.Sequential(nn.Linear(width, malmen.VALUE), nn.ReLU(), nn.Linear(malmen.VALUE, malmen.CLASSES))
    post.requires_grad_(False)
    keys = {k: torch.randn(n, width, generator=g).relu() for k in
            ("meta", "meta_para", "val", "val_para", "val_loc", "test", "test_para", "test_loc")}
    return {"post": post, "keys": keys}


def test_scaled_multiplies_eta_and_lambda_and_restores_them():
    task = toy_task()
    editor = malmen._observed(MALMEN(task["post"], layers=[malmen.LAYER], blocks=0, lr=2.0, reg=3.0), task, 0)
    before = editor.log_lr.clone(), editor.log_reg.clone()
    with malmen._Scaled(editor, 4.0, 0.1) as scaled:
        torch.testing.assert_close(scaled.log_lr.exp(), torch.tensor([8.0]))
        torch.testing.assert_close(scaled.log_reg.exp(), torch.tensor([0.3]))
    torch.testing.assert_close(editor.log_lr, before[0])
    torch.testing.assert_close(editor.log_reg, before[1])


def test_identity_least_squares_with_a_large_step_edits_every_independent_key():
    task = toy_task(width=64)
    editor = malmen._observed(MALMEN(task["post"], layers=[malmen.LAYER], blocks=0, lr=1.0, reg=1e-6), task, 0)
    (idx, y_new), = malmen._episodes(task, "test", 16, 1, seed=3)  # 16 keys in 64 dimensions
    assert (task["post"](task["keys"]["test"][idx]).argmax(-1) != y_new).all()  # a new label each
    shift = malmen._malmen_shifts(editor, task, "test", [(idx, y_new)], [(1e4, 1.0)])[1e4, 1.0][0]
    assert malmen._score(task, "test", shift, idx, y_new)["es"] == 1.0
    shift = malmen._malmen_shifts(editor, task, "test", [(idx, y_new)], [(1e-6, 1.0)])[1e-6, 1.0][0]
    assert malmen._score(task, "test", shift, idx, y_new)["es"] == 0.0  # no step, no edit


def test_fine_tuning_lowers_the_edit_loss_with_more_steps():
    task = toy_task()
    episodes = malmen._episodes(task, "test", 8, 1, seed=1)
    shifts = malmen._fine_tune_shifts(task, "test", episodes, (1e-2,), (1, 30))
    (idx, y_new), keys = episodes[0], task["keys"]["test"]

    def loss(s):
        return nn.functional.cross_entropy(malmen._edited(task["post"], s, keys[idx]), y_new).item()

    assert loss(shifts[1e-2, 30][0]) < loss(shifts[1e-2, 1][0]) < loss(torch.zeros_like(shifts[1e-2, 1][0]))


def test_episodes_are_disjoint_and_relabel():
    task = toy_task()
    eps = malmen._episodes(task, "val", 10, 10, seed=0)
    assert len(eps) == 4  # 48 keys hold 4 disjoint sets of 10
    idx = torch.cat([i for i, _ in eps])
    assert len(idx.unique()) == 40


def test_reproduce_quick(tmp_path, check_claims):
    cli.main(["reproduce", "malmen", "--quick", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "malmen-quick.json").read_text())
    assert (tmp_path / "malmen.png").exists()
    runs, cfg = record["runs"], record["config"]
    assert [r["seed"] for r in runs] == list(cfg["seeds"])
    claims = check_claims(record, statements=9)
    assert len(claims) == 9 and all(c["difference"]["n"] == len(cfg["seeds"]) for c in claims)
    for run in runs:
        assert {(r["n"], r["editor"]) for r in run["rows"]} == {(n, e) for n in cfg["ns"] for e in malmen.EDITORS}
        for row in run["rows"]:  # the reported knob is the best on validation, among all those tried
            scores = {tuple(k): s for k, s in row["val_tried"]}
            assert scores[tuple(row["knob"])] == pytest.approx(max(scores.values()))
            assert len(scores) == (len(cfg["ft_lrs"]) * len(cfg["ft_steps"]) if row["editor"] == "fine-tuning"
                                   else {"least squares": 15, "sum": 7, "least squares, identity": 15}[row["editor"]])
        for name in ("least squares", "sum"):  # the kept checkpoint is the one with the best validation ES
            training = run["training"][name]
            assert training["val_es"] == max(es for _, es in training["curve"])
