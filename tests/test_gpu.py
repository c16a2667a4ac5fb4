"""The per-example kernels on a CUDA device match a loop of plain calls (skipped without a GPU)."""

import pytest
import torch
from torch import nn

import hypernetworks as hn

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
CUDA = torch.device("cuda")


def loop(module, params, x):
    return torch.cat([torch.func.functional_call(module, {k: v[i] for k, v in params.items()}, (x[i:i + 1],))
                      for i in range(len(x))])


TARGETS = {
    "mlp": lambda: (nn.Sequential(nn.Linear(6, 8), nn.GELU(), nn.Linear(8, 3)), (6,)),
    "cnn": lambda: (nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, groups=2), nn.GroupNorm(2, 4), nn.ReLU(),
                                  nn.ConvTranspose2d(4, 3, 2, stride=2)), (2, 5, 5)),
    "attention": lambda: (nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True), (4, 8)),
}


@pytest.mark.parametrize("name", list(TARGETS))
def test_per_example_kernels_match_a_loop_on_cuda(name):
    torch.manual_seed(0)
    target, shape = TARGETS[name]()
    target = target.to(CUDA).eval()
    x = torch.randn(5, *shape, device=CUDA)
    params = {k: (v.detach() + 0.1 * torch.randn(5, *v.shape, device=CUDA)).requires_grad_()
              for k, v in target.named_parameters()}
    got = hn.functional_call(target, params, x, per_example=True)
    want = loop(target, params, x)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-3)
    for a, b in zip(torch.autograd.grad(got.square().sum(), list(params.values())),
                    torch.autograd.grad(want.square().sum(), list(params.values())), strict=True):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)


def test_lora_and_batchnorm_on_cuda():
    torch.manual_seed(0)
    target = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 3)).to(CUDA)
    spec = hn.ParamSpec.from_module(target, include=["0.weight", "2.weight"])
    hnet = hn.HyperNetwork(target, spec, encoder=hn.encoders.Embedding(4, 8), head=hn.heads.Full(), rank=2,
                           mode="lora", init="zero_delta").to(CUDA)
    x, task = torch.randn(5, 6, device=CUDA), torch.randint(0, 4, (5,), device=CUDA)
    y = hnet(x, cond=task)  # zero-delta: the frozen target's own output
    torch.testing.assert_close(y, target(x), atol=1e-5, rtol=1e-4)
    y.square().sum().backward()
    assert target[1].running_mean.device.type == "cuda" and target[1].num_batches_tracked == 2


@pytest.mark.parametrize("encoder", ["gated", "transformer"])
def test_ghn_on_cuda_matches_cpu(encoder):
    import torchvision

    from hypernetworks.methods.ghn import GHN, GHNConfig, build_graph, predict

    torch.manual_seed(0)
    ghn = GHN(GHNConfig(hidden=32, encoder=encoder)).eval()
    model = torchvision.models.resnet18()
    graph = build_graph(model, torch.zeros(1, 3, 64, 64))
    with torch.no_grad():
        want = ghn([graph])[0]
        got = ghn.to(CUDA)([graph])[0]
    for name, value in want.items():
        torch.testing.assert_close(got[name].cpu(), value, atol=1e-4, rtol=1e-3)
    report = predict(ghn, model.to(CUDA), torch.zeros(1, 3, 64, 64, device=CUDA))
    assert not report.not_predicted and model.fc.weight.is_cuda


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("per_example", [False, True])
def test_autocast_on_cuda_is_close_to_fp32(dtype, per_example):
    torch.manual_seed(0)
    target, shape = TARGETS["cnn"]()
    target = target.to(CUDA).eval()
    x = torch.randn(5, *shape, device=CUDA)
    params = {k: v.detach() + 0.1 * torch.randn(*((5,) if per_example else ()), *v.shape, device=CUDA)
              for k, v in target.named_parameters()}
    want = hn.functional_call(target, params, x, per_example=per_example)
    with torch.autocast("cuda", dtype=dtype):
        low = {k: v.to(dtype) for k, v in params.items()}
        got = hn.functional_call(target, low, x, per_example=per_example)
    torch.testing.assert_close(got.float(), want, atol=0.05, rtol=0.05)


def test_validation_on_cuda_is_opt_in_and_raises_a_plain_error():
    enc = hn.encoders.Embedding(3, 2, validate=True).to(CUDA)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 3\)"):
        enc(torch.tensor([5], device=CUDA))
    assert torch.ones(1, device=CUDA).item() == 1  # the CUDA context is still usable
