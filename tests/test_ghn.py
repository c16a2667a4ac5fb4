"""Graph hypernetworks: graphs of any architecture, GHN-2 prediction, training, DDP, reproduction."""

import json
import os
import random
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

from hypernetworks.methods.ghn import (
    GHN,
    SMASH,
    ArchPool,
    GHNConfig,
    GraphError,
    Net,
    TrainConfig,
    build_graph,
    fit,
    load_checkpoint,
    predict,
    predict_state_dict,
    recompute_bn_stats,
    sample_genotype,
    save_checkpoint,
)
from hypernetworks.methods.ghn.model import _to_shape
from hypernetworks.methods.ghn.train import train_images

torch.set_num_threads(1)
SMALL = GHNConfig(hidden=16, block_out=8, block_in=8, decoder_hidden=16)

# One model per torchvision classification family; (name, input side).
FAMILIES = [("resnet18", 64), ("resnext50_32x4d", 64), ("vgg11", 64), ("densenet121", 64),
            ("mobilenet_v2", 64), ("mobilenet_v3_small", 64), ("efficientnet_b0", 64), ("efficientnet_v2_s", 64),
            ("regnet_x_400mf", 64), ("convnext_tiny", 64), ("vit_b_16", 224), ("swin_t", 224), ("maxvit_t", 224),
            ("squeezenet1_0", 64), ("shufflenet_v2_x0_5", 64), ("mnasnet0_5", 64), ("googlenet", 64),
            ("inception_v3", 299), ("alexnet", 64)]


def _torchvision(name: str) -> nn.Module:
    import torchvision

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name.startswith("regnet"):  # its constructor computes widths with tensors: not on meta
            return torchvision.models.get_model(name).eval()
        with torch.device("meta"):  # only shapes matter to the graph: no memory, no init time
            return torchvision.models.get_model(name).eval()


def _check_graph(g, model):
    names = {n for n, _ in model.named_parameters()}
    owned = [p for ps in g.params for p in ps]
    assert len(owned) == len(set(owned)), "a parameter is owned by two nodes"
    assert set(owned) | set(g.unreached) == names
    assert all(s < d for s, d in g.edges)
    assert g.ops[0] == "input" and g.ops[-1] == "output"
    reach = {0} | {i for i, op in enumerate(g.ops) if op == "param"}
    for s, d in g.edges:
        if s in reach:
            reach.add(d)
    assert len(g) - 1 in reach, "the output is not reached from the input"
    assert all(i in reach for i, ps in enumerate(g.params) if ps), "a node owning parameters is not fed by the input"


@pytest.fixture(scope="module")
def ghn3():
    torch.manual_seed(0)
    return GHN(GHNConfig(hidden=16, block_out=8, block_in=8, decoder_hidden=16, encoder="transformer", heads=2))


@pytest.mark.parametrize("name,side", FAMILIES)
def test_graph_of_every_torchvision_family_under_no_grad(name, side, ghn3):
    model = _torchvision(name)
    with torch.no_grad():
        g = build_graph(model, torch.zeros(1, 3, side, side))
        params = ghn3([g])[0]  # the GHN-3-style encoder handles every family too
    _check_graph(g, model)
    assert params and all(v.shape == model.get_parameter(n).shape and v.isfinite().all() for n, v in params.items())
    if name == "vit_b_16":  # attention layers and the free tensors (class token, position embedding) are nodes
        assert g.ops.count("attention") == 12
        free = {p for p, op in zip(g.params, g.ops, strict=True) if op == "param"}
        assert {("class_token",), ("encoder.pos_embedding",)} <= free
    if name in ("swin_t", "maxvit_t"):  # attention written with matmul/softmax, relative position tables as params
        assert "softmax" in g.ops and "matmul" in g.ops and "param" in g.ops
    if name == "googlenet":  # auxiliary heads do not run in eval mode: reported, never dropped silently
        assert any(n.startswith("aux") for n in g.unreached)


def test_graph_same_with_and_without_grad():
    model = Net(sample_genotype(random.Random(3)))
    with torch.no_grad():
        a = build_graph(model, torch.zeros(1, 1, 14, 14))
    b = build_graph(model, torch.zeros(1, 1, 14, 14))
    assert (a.ops, a.edges, a.params) == (b.ops, b.edges, b.params)


def test_graph_structure_of_residual_block():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2)

        def forward(self, x):
            return torch.relu(self.bn(self.conv(x)).view(1, 2, 4, 4) + x)

    g = build_graph(Block(), torch.zeros(1, 2, 4, 4))
    assert g.ops == ["input", "conv", "batch_norm", "add", "relu", "output"]
    assert sorted(g.edges) == [(0, 1), (0, 3), (1, 2), (2, 3), (3, 4), (4, 5)]  # view is contracted away
    assert g.shapes[1] == (2, 2, 3, 3)
    pairs, dist = g.virtual_edges(50)
    got = {(int(s), int(d)): float(x) for (s, d), x in zip(pairs.T, dist, strict=True)}
    assert got[(0, 5)] == 3 and got[(1, 3)] == 2 and (0, 3) not in got  # (0, 3) is a real edge
    pairs2, _ = g.virtual_edges(2)
    assert pairs2.shape[1] == sum(1 for x in got.values() if x <= 2)


def test_unplaceable_op_names_op_and_module():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return torch.cumsum(self.fc(x), 1)

    model = nn.Sequential(nn.Identity(), Odd())
    with pytest.raises(GraphError, match=r"cannot place op 'cumsum' called in module '1'"):
        build_graph(model, torch.zeros(1, 4))


class Mixed(nn.Module):
    """GroupNorm, Conv1d, ConvTranspose2d, an LSTM, an embedding and a tied weight."""

    def __init__(self):
        super().__init__()
        self.emb, self.lstm = nn.Embedding(20, 8), nn.LSTM(8, 16, num_layers=2, batch_first=True)
        self.c1, self.gn = nn.Conv1d(16, 8, 3), nn.GroupNorm(2, 8)
        self.up, self.fc = nn.ConvTranspose2d(1, 2, 2, stride=2), nn.Linear(2, 8)
        self.out = nn.Linear(8, 20, bias=False)
        self.out.weight = self.emb.weight
        self.unused = nn.Linear(3, 3)

    def forward(self, t):
        h, _ = self.lstm(self.emb(t))
        z = self.up(self.gn(self.c1(h.transpose(1, 2))).unsqueeze(1))
        return self.out(self.fc(z.mean((2, 3))))


def test_predict_fills_in_place_and_reports_every_parameter():
    torch.manual_seed(0)
    model, x = Mixed(), torch.zeros(2, 5, dtype=torch.long)
    before = {n: (id(p), p.detach().clone()) for n, p in model.named_parameters(remove_duplicate=False)}
    report = predict(GHN(SMALL), model, x)
    after = dict(model.named_parameters(remove_duplicate=False))
    assert set(after) == set(before) and all(id(after[n]) == before[n][0] for n in after)  # nothing deleted
    assert set(report.predicted) | set(report.not_predicted) == set(after)
    assert not set(report.predicted) & set(report.not_predicted)
    for kind in ("gn.weight", "c1.weight", "up.weight", "lstm.weight_hh_l1", "emb.weight"):
        assert kind in report.predicted
        assert not torch.equal(after[kind], before[kind][1])
    assert "unused.weight" in report.not_predicted and torch.equal(after["unused.weight"], before["unused.weight"][1])
    assert "tied" in report.not_predicted["out.weight"]
    assert torch.isfinite(model(x)).all()


def test_predict_state_dict_leaves_model_alone_and_matches_predict():
    torch.manual_seed(0)
    model, ghn = Net(sample_genotype(random.Random(1))), GHN(SMALL)
    x = torch.zeros(1, 1, 14, 14)
    before = {n: p.clone() for n, p in model.state_dict().items()}
    params, report = predict_state_dict(ghn, model, x)
    assert all(torch.equal(before[n], v) for n, v in model.state_dict().items())
    predict(ghn, model, x)
    assert all(torch.equal(model.get_parameter(n), v) for n, v in params.items())
    assert not report.not_predicted


def test_prediction_depends_on_the_graph_and_is_differentiable():
    torch.manual_seed(0)
    model, ghn = Net(sample_genotype(random.Random(2))), GHN(SMALL)
    g = build_graph(model, torch.zeros(1, 1, 14, 14))
    full, empty, shuffled = ghn([g, g.without_edges(), g.shuffled(0)])
    name = g.params[-2][0]  # the classifier's weight
    assert not torch.allclose(full[name], empty[name]) and not torch.allclose(full[name], shuffled[name])
    assert not g.without_edges().edges and all(s < d for s, d in g.shuffled(0).edges)
    sum(v.sum() for v in full.values()).backward()
    assert ghn.op_embed.weight.grad.abs().sum() > 0 and ghn.fwd_gru.weight_hh.grad.abs().sum() > 0


def test_smash_decodes_from_the_architecture_code_without_propagation(tmp_path):
    smash = SMASH(SMALL)
    assert smash.config.rounds == 0 and smash.config.arch_code and not hasattr(smash, "fwd_gru")
    pool = ArchPool.sample(2, 3, 7, widths=(8,))
    graphs = [pool.get(i)[1] for i in range(2)]
    assert graphs[0].ops != graphs[1].ops
    first, second = smash(graphs)
    stem = "features.0.weight"  # the same node (first conv, same shape) in two architectures
    assert first[stem].shape == second[stem].shape and not torch.allclose(first[stem], second[stem])
    assert torch.equal(smash(graphs[:1])[0][stem], first[stem])  # batching does not mix architectures
    sum(v.sum() for v in first.values()).backward()
    assert smash.arch_embed.weight.grad.abs().sum() > 0
    save_checkpoint(tmp_path / "s.pt", smash)
    loaded = load_checkpoint(tmp_path / "s.pt")[0]
    assert torch.equal(loaded(graphs[:1])[0][stem], first[stem])


def test_ghn3_transformer_encoder_keeps_graphs_apart_and_trains():
    ghn = GHN(GHNConfig(hidden=16, block_out=8, block_in=8, decoder_hidden=16, encoder="transformer", rounds=2,
                        heads=2))
    assert not hasattr(ghn, "fwd_gru") and len(ghn.transformer.blocks) == 2
    pool = ArchPool.sample(3, 0, 7)
    graphs = [pool.get(i)[1] for i in range(3)]
    alone, together = ghn(graphs[:1])[0], ghn(graphs)[0]
    assert all(torch.allclose(alone[k], together[k], atol=1e-5) for k in alone)  # attention stays within a graph
    with torch.no_grad():
        ghn.transformer.distance_bias.weight.normal_()
    assert not torch.allclose(ghn(graphs[:1])[0]["features.0.weight"], alone["features.0.weight"])
    data = _data(side=7)
    losses = fit(ghn, pool, data, TrainConfig(steps=20, meta_batch=2, batch_size=32, archs=3, lr=3e-3))
    assert sum(losses[-5:]) < sum(losses[:5])
    with pytest.raises(ValueError, match="encoder"):
        GHNConfig(encoder="gcn")


def test_distance_buckets_of_a_chain():
    from hypernetworks.methods.ghn.graphormer import distance_buckets

    inf = float("inf")
    dist = torch.tensor([[0, 1, 2], [inf, 0, 1], [inf, inf, 0]])  # 0 -> 1 -> 2
    assert distance_buckets(dist, 1).tolist() == [[0, 1, 1], [2, 0, 1], [2, 2, 0]]
    assert distance_buckets(torch.tensor([[0, inf], [inf, 0]]), 4)[0, 1] == 9


def test_decoded_shapes_tile_and_slice():
    block, vector = torch.randn(2, 4, 3, 3, 3), torch.randn(2, 4)  # two decoded blocks
    w = _to_shape(block, vector, (10, 2, 5, 1))
    assert w.shape == (2, 10, 2, 5, 1)
    assert torch.equal(w[:, 4:8], w[:, :4]) and torch.equal(w[:, :4, :, :3, 0], block[:, :, :2, :, 1])  # tiled; kw=1
    assert torch.equal(w[:, :4, :, 3:, 0], block[:, :, :2, :2, 1])
    assert torch.equal(w[1], _to_shape(block[1:], vector[1:], (10, 2, 5, 1))[0])  # each block on its own
    assert torch.equal(_to_shape(block, vector, (6,)), torch.cat([vector, vector[:, :2]], 1))
    assert _to_shape(block, vector, (1, 7, 5)).shape == (2, 1, 7, 5)
    assert _to_shape(block, vector, ()).shape == (2,)
    for shape in [(10, 2, 5, 1), (9, 7), (6,), (), (1, 7, 5), (2, 3, 4, 5, 6)]:  # written in place: the same values
        into = [torch.full(shape, float("nan")) for _ in range(2)]
        assert _to_shape(block, vector, shape, into) is None
        assert torch.equal(torch.stack(into), _to_shape(block, vector, shape))


def test_recompute_bn_stats_uses_batches():
    model = nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3)).eval()
    xs = [torch.randn(8, 1, 4, 4) * 3 + 2 for _ in range(3)]
    assert recompute_bn_stats(model, xs) == 1 and not model.training
    expect = torch.cat([model[0](x) for x in xs]).mean((0, 2, 3))
    assert torch.allclose(model[1].running_mean, expect.detach(), atol=1e-5)
    assert recompute_bn_stats(nn.Linear(2, 2), xs) == 0


def test_sampler_nets_run_and_are_small():
    pool = ArchPool.sample(6, 0, 14)
    for i in range(len(pool)):
        net, g = pool.get(i)
        assert sum(p.numel() for p in net.parameters()) <= 100_000
        assert net(torch.zeros(2, 1, 14, 14)).shape == (2, 10)
        assert set(g.ops) <= set(__import__("hypernetworks.methods.ghn", fromlist=["OP_TYPES"]).OP_TYPES)


def _data(n=64, side=14):
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, side, side, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def test_training_lowers_loss_and_resume_matches(tmp_path):
    pool, data = ArchPool.sample(4, 0, 14), _data()
    cfg = TrainConfig(steps=4, meta_batch=2, batch_size=16, archs=4)
    torch.manual_seed(0)
    straight = GHN(SMALL)
    losses = fit(straight, pool, data, cfg)
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    ck = tmp_path / "ghn.pt"
    torch.manual_seed(0)
    fit(GHN(SMALL), pool, data, cfg, checkpoint=ck, stop=2)
    assert load_checkpoint(ck)[1]["step"] == 2
    resumed = GHN(SMALL)  # a different init: everything must come from the checkpoint
    assert len(fit(resumed, pool, data, cfg, checkpoint=ck)) == 2
    loaded, state = load_checkpoint(ck)
    assert state["step"] == 4
    for a, b, c in zip(loaded.state_dict().values(), straight.state_dict().values(), resumed.state_dict().values(),
                       strict=True):
        assert torch.allclose(a, b, atol=1e-6) and torch.equal(a, c)


def test_learning_reduces_loss_on_a_fixed_batch():
    pool, data = ArchPool.sample(2, 1, 14), _data(32)
    torch.manual_seed(0)
    ghn = GHN(SMALL)
    losses = fit(ghn, pool, data, TrainConfig(steps=20, meta_batch=2, batch_size=32, archs=2, lr=3e-3))
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_ddp_two_process_gloo_matches_one_process(tmp_path):
    """2 ranks x 1 architecture with averaged gradients == 1 process x 2 architectures."""
    ck = tmp_path / "ddp.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29731",
           "-m", "hypernetworks.methods.ghn.train", "--steps", "2", "--meta-batch", "2", "--batch-size", "8",
           "--archs", "4", "--hidden", "16", "--out", str(ck)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    ddp, state = load_checkpoint(ck)
    assert state["step"] == 2 and '"world_size": 2' in ck.with_suffix(".json").read_text()
    cfg = TrainConfig(steps=2, meta_batch=2, batch_size=8, archs=4)
    torch.manual_seed(cfg.seed)
    single = GHN(GHNConfig(hidden=16))
    fit(single, ArchPool.sample(4, cfg.seed, cfg.side, norms=("bn",)), train_images(cfg.side), cfg)
    for a, b in zip(ddp.state_dict().values(), single.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-4)  # Adam turns float-order noise on ~0 gradients into ~1e-5 steps


def test_reproduce_quick(tmp_path):
    from hypernetworks.cli import main

    main(["reproduce", "ghn", "--quick", "--out", str(tmp_path)])
    assert (tmp_path / "ghn-quick.json").exists()


def test_shipped_checkpoint_predicts_resnet18_from_cli(capsys, tmp_path):
    from hypernetworks.cli import main
    from hypernetworks.methods.ghn import CHECKPOINT, load_pretrained

    ghn = load_pretrained()
    assert not ghn.training and (CHECKPOINT / "model.safetensors").stat().st_size < 8e6
    assert "equivalent_training_command" in json.loads((CHECKPOINT / "config.json").read_text())
    main(["ghn", "predict", "--model", "resnet18", "--out", str(tmp_path / "r18.pt")])
    out = capsys.readouterr().out
    assert "predicted 62 tensors, not predicted 0" in out
    state = torch.load(tmp_path / "r18.pt", weights_only=True)
    assert state["conv1.weight"].shape == (64, 3, 7, 7) and torch.isfinite(state["fc.weight"]).all()
    with pytest.raises(FileNotFoundError, match="load_pretrained: no GHN checkpoint"):
        load_pretrained(tmp_path / "missing.pt")


def test_save_pretrained_round_trip_is_bit_exact(tmp_path):
    from hypernetworks.methods.ghn import GHN, GHNConfig

    torch.manual_seed(0)
    ghn = GHN(GHNConfig(hidden=16, decoder_hidden=16))
    ghn.save_pretrained(tmp_path, note="test")
    back = GHN.from_pretrained(tmp_path)
    a, b = ghn.state_dict(), back.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "config.json").read_text())["note"] == "test"
