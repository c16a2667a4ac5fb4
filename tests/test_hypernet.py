import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import hypernetworks as hn


def make(mode="absolute", head=None, encoder=None, init="hyperfan_in"):
    torch.manual_seed(0)
    target = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
    return hn.HyperNetwork(target, encoder=encoder or hn.encoders.Embedding(4, 8),
                           head=head or hn.heads.Full(hidden=(16,)), mode=mode, init=init)


def test_batched_condition_gives_per_example_weights():
    hnet = make()
    x = torch.randn(4, 5)
    ids = torch.tensor([0, 3, 1, 3])
    batched = hnet(x, cond=ids)
    for i in range(4):
        torch.testing.assert_close(batched[i:i + 1], hnet(x[i:i + 1], cond=ids[i]))
    params = hnet.generate(ids)
    assert params["0.weight"].shape == (4, 16, 5)


def test_condition_of_the_wrong_shape():
    hnet = make(encoder=hn.encoders.Scalars(2))
    with pytest.raises(ValueError, match=r"Scalars: a condition should have shape \(2,\) .* got \(4, 3\)"):
        hnet(torch.randn(4, 5), cond=torch.rand(4, 3))
    with pytest.raises(TypeError, match="ids must be int64"):
        make()(torch.randn(1, 5), cond=torch.tensor(1.0))


def test_state_dict_round_trip():
    hnet, fresh = make(), make()
    with torch.no_grad():
        for p in hnet.parameters():
            p.add_(0.1)
    fresh.load_state_dict(hnet.state_dict())
    x, ids = torch.randn(3, 5), torch.tensor([1, 2, 0])
    assert torch.equal(fresh(x, cond=ids), hnet(x, cond=ids))


def test_materialize_one_condition():
    hnet = make(mode="residual", init="default_match")
    plain = hnet.materialize(torch.tensor(2))
    x = torch.randn(3, 5)
    torch.testing.assert_close(plain(x), hnet(x, cond=torch.tensor(2)))
    assert isinstance(plain, nn.Sequential)
    with pytest.raises(ValueError, match="needs one condition"):
        hnet.materialize(torch.tensor([1, 2]))


def test_summary_lists_tensors_and_costs():
    text = make(head=hn.heads.Chunked(50)).summary(batch_size=10)
    assert "0.weight" in text and "(16, 5)" in text
    assert "generated per condition (P): 147" in text
    assert f"{10 * 147 * 4 / 2**20:,.3f} MiB" in text


def test_decode_matches_generate_and_freeze_target():
    target = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    spec = hn.ParamSpec.from_module(target, include=["2.*"])
    hnet = hn.HyperNetwork(target, spec, encoder=hn.encoders.Embedding(3, 8), head=hn.heads.Full(),
                           mode="residual", freeze_target=True)
    cond = torch.tensor([0, 2])
    z = hnet.encoder(cond)
    assert all(torch.equal(a, b) for a, b in zip(hnet.decode(z).values(), hnet.generate(cond).values(), strict=True))
    assert not any(p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in hnet.head.parameters()) and hnet.num_trainable > 0
    loose = hn.HyperNetwork(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), spec,
                            encoder=hn.encoders.Embedding(3, 8), head=hn.heads.Full(), mode="residual")
    assert all(p.requires_grad for p in loose.target.parameters())


def test_check_finite():
    hnet = make()
    hnet.check_finite = True
    with torch.no_grad():
        hnet.encoder.table.weight[1] = float("nan")
    with pytest.raises(ValueError, match="generated .0.weight. is not finite"):
        hnet.generate(torch.tensor(1))


@pytest.mark.parametrize("batched", [False, True])
def test_compile_fullgraph(batched):
    torch._dynamo.reset()
    hnet = make(encoder=hn.encoders.Scalars(1, "mip"), mode="residual", init="default_match")
    x = torch.randn(4, 5)
    gamma = torch.rand(4, 1) if batched else torch.rand(1)
    compiled = torch.compile(hnet, fullgraph=True, dynamic=False)
    torch.testing.assert_close(compiled(x, cond=gamma), hnet(x, cond=gamma))


# --- encoders ------------------------------------------------------------------------------------


def test_mip_encoding_has_constant_norm():
    enc = hn.encoders.Scalars(3, "mip")
    z = enc(torch.rand(100, 3))
    torch.testing.assert_close(z.norm(dim=-1), torch.full((100,), math.sqrt(3)))
    assert enc.dim == 6
    z = hn.encoders.Scalars(2, "z|1-z")(torch.tensor([0.25, 1.0]))
    assert torch.equal(z, torch.tensor([0.25, 1.0, 0.75, 0.0]))


def test_scalars_out_of_range_and_bad_encoding():
    with pytest.raises(ValueError, match=r"γ must lie in \[0, 1\]"):
        hn.encoders.Scalars(1)(torch.tensor([1.5]))
    with pytest.raises(ValueError, match="encoding must be one of"):
        hn.encoders.Scalars(1, "fourier")


def test_embedding_out_of_range():
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 4\)"):
        hn.encoders.Embedding(4, 2)(torch.tensor([4]))


def test_data_conditioned_and_noise_encoders():
    torch.manual_seed(0)
    target = nn.Linear(6, 2)
    enc = hn.encoders.MLP(6, 8)
    hnet = hn.HyperNetwork(target, encoder=enc, head=hn.heads.Full(), mode="residual", init="default_match")
    x = torch.randn(5, 6)
    out = hnet(x, cond=x)  # each example generates its own weights
    assert out.shape == (5, 2)
    noise = hn.encoders.Noise(4)
    ens = hn.HyperNetwork(nn.Linear(6, 2), encoder=noise, head=hn.heads.Full())
    members = torch.stack([ens(x, cond=z) for z in noise.sample(3, torch.Generator().manual_seed(0))])
    assert members.std(0).mean() > 0  # different members disagree
    proj = hn.encoders.Projection(384, 16)
    assert proj(torch.randn(2, 384)).shape == (2, 16)


# --- DDP -------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    hnet = make(head=hn.heads.Chunked(40, hidden=(8,)))
    model = nn.parallel.DistributedDataParallel(hnet)
    torch.manual_seed(100 + rank)  # each rank sees different data
    x, ids = torch.randn(6, 5), torch.randint(0, 4, (6,))
    model(x, cond=ids).square().mean().backward()
    grads = {n: p.grad.clone() for n, p in hnet.named_parameters() if p.grad is not None}
    local = make(head=hn.heads.Chunked(40, hidden=(8,)))
    local(x, cond=ids).square().mean().backward()
    local_grads = {n: p.grad.clone() for n, p in local.named_parameters() if p.grad is not None}
    torch.save((grads, local_grads), os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


def test_ddp_two_processes_synchronise_gradients(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    results = {r: torch.load(tmp_path / f"rank{r}.pt") for r in range(2)}
    (g0, l0), (g1, l1) = results[0], results[1]
    assert g0.keys() == g1.keys() and len(g0) > 3
    for name in g0:
        torch.testing.assert_close(g0[name], g1[name])  # synchronised
        torch.testing.assert_close(g0[name], (l0[name] + l1[name]) / 2)  # = the mean of local grads
    assert not torch.allclose(l0["head.out.weight"], l1["head.out.weight"])  # the data did differ


def test_import_is_lean():
    import subprocess
    import sys

    code = ("import sys, hypernetworks as hn; hn.methods; "
            "heavy = [m for m in ('torchvision', 'sklearn', 'skimage', 'matplotlib', 'transformers') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_input_of_the_target_passes_through():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    hnet = hn.HyperNetwork(mha, hn.ParamSpec.from_module(mha, include=["out_proj.*"]),
                           encoder=hn.encoders.Embedding(3, 4), head=hn.heads.Full(hidden=(8,)))
    q, kv = torch.randn(2, 5, 8), torch.randn(2, 6, 8)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[:, -1] = True
    cond = torch.tensor([0, 2])
    out, weights = hnet(q, kv, kv, key_padding_mask=mask, cond=cond)
    assert out.shape == (2, 5, 8) and torch.all(weights[..., -1] == 0)
    params = hnet.generate(cond)
    for i in range(2):
        ref = torch.func.functional_call(mha, {k: v[i] for k, v in params.items()},
                                         (q[i:i + 1], kv[i:i + 1], kv[i:i + 1]), {"key_padding_mask": mask[i:i + 1]})
        torch.testing.assert_close(out[i:i + 1], ref[0])
    with pytest.raises(TypeError, match=r"pass the condition by name, e.g. hnet\(x, cond=c\)"):
        hnet(q, kv, kv)


def test_forward_sets_runs_each_condition_on_the_same_inputs():
    hnet = make()
    x, ids = torch.randn(6, 5), torch.tensor([3, 0, 2])
    out = hnet.forward_sets(x, conds=ids)
    assert out.shape == (3, 6, 3)
    for k in range(3):
        torch.testing.assert_close(out[k], hnet(x, cond=ids[k]))
    with pytest.raises(ValueError, match="conds needs a leading K"):
        hnet.forward_sets(x, conds=torch.tensor(1))
