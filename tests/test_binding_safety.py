"""The binding has no process-global state, is safe across threads, frees its targets, works under
autocast, validates input without device-side asserts, and keeps its memory promises."""

from __future__ import annotations

import gc
import threading
import warnings
import weakref

import pytest
import torch
from probes import LargestTensor
from torch import nn

import hypernetworks as hn

B = 4


def per_example(module, scale=0.1):
    return {n: p.detach() + scale * torch.randn(B, *p.shape) for n, p in module.named_parameters()}


# --- no process-global state -------------------------------------------------------------------------


def test_import_registers_no_global_hooks():
    m = nn.modules.module
    for hooks in (m._global_parameter_registration_hooks, m._global_module_registration_hooks,
                  m._global_forward_hooks, m._global_forward_pre_hooks, m._global_backward_hooks):
        assert not [h for h in hooks.values() if getattr(h, "__module__", "").startswith("hypernetworks")]


def test_per_example_call_writes_nothing_on_the_modules_nor_the_fastpath_flag(monkeypatch):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True).eval()
    seen = []

    class Spy(nn.Module):  # a parent that looks at the user's (not the call's) modules mid-call
        def __init__(self):
            super().__init__()
            self.layer = layer

        def forward(self, x):
            seen.append({id(m): dict(m.__dict__) for m in layer.modules()})
            return self.layer(x)

    spy = Spy()
    before = {id(m): dict(m.__dict__) for m in layer.modules()}
    monkeypatch.setattr(torch.backends.mha, "set_fastpath_enabled",
                        lambda *_: pytest.fail("the global fast-path flag was flipped"))
    with torch.no_grad():
        hn.functional_call(spy, per_example(spy), torch.randn(B, 5, 8), per_example=True)
        hn.functional_call(spy, {n: p[0] for n, p in per_example(spy).items()}, torch.randn(B, 5, 8))
    after = {id(m): dict(m.__dict__) for m in layer.modules()}
    for snapshot in (*seen, after):
        assert snapshot.keys() == before.keys()
        for key, state in snapshot.items():
            assert state.keys() == before[key].keys()
            assert all(state[k] is before[key][k] for k in state), "a module attribute was replaced"


# --- threads ----------------------------------------------------------------------------------------


def test_concurrent_shared_and_per_example_calls_are_all_correct():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 32), nn.LayerNorm(32), nn.ReLU(), nn.Linear(32, 4))
    x = torch.randn(B, 16)
    shared = {n: p.detach() + 1.0 for n, p in net.named_parameters()}
    batched = per_example(net, scale=1.0)
    with torch.no_grad():
        want_shared = hn.functional_call(net, shared, x)
        want_batched = hn.functional_call(net, batched, x, per_example=True)
    wrong, calls = [], 150

    def worker(params, want, flag):
        with torch.no_grad():
            for _ in range(calls):
                if not torch.allclose(hn.functional_call(net, params, x, per_example=flag), want, atol=1e-5):
                    wrong.append(flag)

    threads = [threading.Thread(target=worker, args=args) for args in
               [(shared, want_shared, False), (batched, want_batched, True)] * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong, f"{len(wrong)} wrong results in {4 * calls} calls"
    torch.testing.assert_close(net(x), hn.functional_call(net, dict(net.named_parameters()), x))


# --- the plan cache never keeps a target alive ---------------------------------------------------------


@pytest.mark.parametrize("make, inputs", [
    (lambda: nn.Linear(3, 2), lambda: (torch.randn(B, 3),)),
    (lambda: nn.MultiheadAttention(4, 2, batch_first=True), lambda: (torch.randn(B, 2, 4),) * 3),
    (lambda: nn.GRU(3, 2, batch_first=True), lambda: (torch.randn(B, 2, 3),)),
], ids=["linear", "mha", "gru"])
def test_targets_are_freed_after_per_example_calls(make, inputs):
    target = make()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the GRU's one-time loop warning
        hn.functional_call(target, per_example(target), inputs(), per_example=True)
        hn.functional_call(target, dict(target.named_parameters()), inputs())
    ref = weakref.ref(target)
    del target
    gc.collect()
    assert ref() is None


def test_cache_follows_hooks_and_reties():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    x = torch.randn(B, 3)
    params = per_example(net)

    def loop():
        return torch.cat([torch.func.functional_call(net, {k: v[i] for k, v in params.items()}, (x[i:i + 1],))
                          for i in range(B)])

    torch.testing.assert_close(hn.functional_call(net, params, x, per_example=True), loop())
    handle = net[1].register_forward_hook(lambda m, a, out: out * 3)  # a hook added after a cached call
    torch.testing.assert_close(hn.functional_call(net, params, x, per_example=True), loop())
    handle.remove()
    net[1].weight = net[0].weight  # tied after a cached call: one tensor under two names now
    del params["1.weight"]
    torch.testing.assert_close(hn.functional_call(net, params, x, per_example=True), loop())


# --- autocast and dtypes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", [False, True])
def test_functional_call_under_cpu_autocast_is_close_to_fp32(flag):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.GroupNorm(2, 4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16, 3))
    x = torch.randn(B, 2, 6, 6)
    params = per_example(net) if flag else {n: p.detach() + 0.1 for n, p in net.named_parameters()}
    want = hn.functional_call(net, params, x, per_example=flag)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = {n: v.to(torch.bfloat16) if v.dim() > 1 + flag else v for n, v in params.items()}
        got = hn.functional_call(net, low, x, per_example=flag)
    torch.testing.assert_close(got.float(), want, atol=0.1, rtol=0.05)
    with pytest.raises(ValueError, match=r"'0.weight' should be torch.float32 on cpu, got torch.bfloat16"):
        hn.functional_call(net, low, x, per_example=flag)  # outside autocast: a named error


def make_hnet(target):
    torch.manual_seed(0)
    return hn.HyperNetwork(target, encoder=hn.encoders.Embedding(3, 8), head=hn.heads.Full(hidden=(16,)))


@pytest.mark.parametrize("cond", [torch.tensor(1), torch.tensor([0, 2, 1, 1])])
def test_hypernetwork_under_autocast_and_with_a_bf16_target(cond):
    target = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
    hnet, x = make_hnet(target), torch.randn(B, 5)
    want = hnet(x, cond=cond)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = hnet(x, cond=cond)
    torch.testing.assert_close(got.float(), want, atol=0.05, rtol=0.05)
    target.to(torch.bfloat16)  # a half-precision target, the generator stays fp32
    got = hnet(x.to(torch.bfloat16), cond=cond)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, atol=0.1, rtol=0.05)
    got.float().sum().backward()
    assert next(hnet.head.parameters()).grad is not None


# --- validation without device-side asserts --------------------------------------------------------------


def test_value_checks_raise_plain_errors_and_use_no_device_assert(monkeypatch):
    monkeypatch.setattr(torch, "_assert_async", lambda *a: pytest.fail("a device-side assert was used"))
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 3\)"):
        hn.encoders.Embedding(3, 2)(torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"γ must lie in \[0, 1\]"):
        hn.encoders.Scalars(1)(torch.tensor([[0.5], [-0.1]]))
    hnet = make_hnet(nn.Linear(2, 2))
    hnet.check_finite = True
    with torch.no_grad():
        hnet.encoder.table.weight[0] = float("inf")
    with pytest.raises(ValueError, match="generated 'weight' is not finite"):
        hnet.generate(torch.tensor(0))
    assert hn.encoders.Embedding(3, 2, validate=False)(torch.tensor([1])).shape == (1, 2)


# --- memory: where per-example LoRA stays factored ----------------------------------------------------------


def lora(module, names, rank=2, batch=16):
    own = dict(module.named_parameters())
    return {n: hn.LoRA(torch.randn(batch, rank, own[n][0].numel(), requires_grad=True),
                       torch.randn(batch, own[n].shape[0], rank, requires_grad=True)) for n in names}


@pytest.mark.parametrize("make, names, inputs, factored", [
    (lambda: nn.Embedding(300, 40), ["weight"], lambda: (torch.randint(0, 300, (16, 5)),), True),
    (lambda: nn.MultiheadAttention(48, 2, batch_first=True), ["in_proj_weight", "out_proj.weight"],
     lambda: (torch.randn(16, 3, 48),) * 3, True),
    (lambda: nn.Conv2d(24, 32, 3), ["weight"], lambda: (torch.randn(16, 24, 5, 5),), False),
], ids=["embedding", "mha", "conv2d"])
def test_per_example_lora_builds_b_x_o_x_i_only_where_documented(make, names, inputs, factored):
    module = make()
    factors = lora(module, names)
    dense = max(16 * module.get_parameter(n).numel() for n in names)
    with LargestTensor() as probe:
        out = hn.functional_call(module, factors, inputs(), per_example=True, mode="lora", strict=False)
        (out[0] if isinstance(out, tuple) else out).square().sum().backward()
    assert (probe.largest < dense) == factored, (probe.largest, dense)
