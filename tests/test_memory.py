"""Memory estimates of a training step (HyperNetwork.memory_estimate), against the CPU allocator."""

import pytest
import torch
from torch import nn

import hypernetworks as hn
from benchmarks.memory import allocator_peak, cnn_case, lora_case, mlp_case, step


@pytest.mark.parametrize("build, batch", [(mlp_case, 256), (cnn_case, 16), (lora_case, 8)])
def test_estimate_is_within_10_percent_of_the_allocator_peak(build, batch):
    torch.manual_seed(0)
    hnet, inputs, cond = build(batch)
    step(hnet, inputs, cond)
    hnet.zero_grad(set_to_none=True)
    predicted = hnet.memory_estimate(*inputs, cond=cond)["step"]
    measured = allocator_peak(lambda: step(hnet, inputs, cond))
    assert abs(predicted / measured - 1) < 0.10, (predicted, measured)


def test_estimate_scales_with_batch_size_without_allocating_it():
    hnet, inputs, cond = mlp_case(4)
    small = hnet.memory_estimate(*inputs, cond=cond, batch_size=1000)["step"]
    large = hnet.memory_estimate(*inputs, cond=cond, batch_size=100_000)["step"]  # ~18 GiB if it ran
    assert 90 < large / small < 110


def test_estimate_leaves_the_module_untouched():
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    hnet = hn.HyperNetwork(net, encoder=hn.encoders.Embedding(3, 4), head=hn.heads.Full(hidden=(8,)))
    before = {k: v.clone() for k, v in hnet.state_dict().items()}
    est = hnet.memory_estimate(torch.randn(5, 4), cond=torch.tensor([0, 1, 2, 0, 1]))
    assert est["total"] == est["parameters"] + est["optimizer"] + est["step"] > 0
    assert all(p.grad is None for p in hnet.parameters())
    assert all(torch.equal(before[k], v) for k, v in hnet.state_dict().items())


def test_optimiser_state_and_bad_names():
    hnet, inputs, cond = mlp_case(4)
    trainable = sum(p.numel() * p.element_size() for p in hnet.parameters() if p.requires_grad)
    assert hnet.memory_estimate(*inputs, cond=cond, optimizer="adam")["optimizer"] == 2 * trainable
    assert hnet.memory_estimate(*inputs, cond=cond, optimizer="sgd")["optimizer"] == 0
    with pytest.raises(ValueError, match="optimizer must be one of"):
        hnet.memory_estimate(*inputs, cond=cond, optimizer="lion")


def test_summary_states_the_training_step_memory():
    hnet, inputs, cond = mlp_case(4)
    text = hnet.summary(512, inputs=inputs, cond=cond)
    assert "training step at B=512 (Adam), estimated:" in text
    with pytest.raises(ValueError, match="both inputs= and cond="):
        hnet.summary(512, inputs=inputs)
