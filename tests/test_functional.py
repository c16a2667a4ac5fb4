import copy
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from probes import LargestTensor
from torch import nn

import hypernetworks as hn

ATOL = 1e-5


def perturbed(module, batch, names=None, scale=0.1):
    """Distinct weight sets (B, *shape) around the module's own, requiring grad."""
    own = dict(module.named_parameters())
    names = list(own) if names is None else names
    return {n: (own[n].detach() + scale * torch.randn(batch, *own[n].shape)).requires_grad_()
            for n in names}


def loop(module, params, args, bdim=0):
    """Reference: one torch.func.functional_call per example."""
    outs = []
    for i in range(params[next(iter(params))].shape[0]):
        p = {k: v[i] for k, v in params.items()}
        xi = tuple(a.narrow(bdim, i, 1) for a in args)
        out = torch.func.functional_call(module, p, xi)
        outs.append(out[0] if isinstance(out, tuple) else out)
    return torch.cat(outs, dim=bdim)


def first(out):
    return out[0] if isinstance(out, tuple) else out


def assert_matches_loop(module, args, batch=3, bdim=0, names=None):
    params = perturbed(module, batch, names)
    strict = names is None
    got = first(hn.functional_call(module, params, args, per_example=True, strict=strict))
    want = loop(module, params, args, bdim)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=1e-4)
    g_got = torch.autograd.grad(got.square().sum(), list(params.values()))
    g_want = torch.autograd.grad(want.square().sum(), list(params.values()))
    for name, a, b in zip(params, g_got, g_want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=f"gradient of {name}")


# --- shared weights ------------------------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(1, 9), min_size=2, max_size=4), batch=st.integers(1, 5))
def test_shared_call_with_own_params_equals_module(sizes, batch):
    layers = []
    for a, b in zip(sizes, sizes[1:], strict=False):
        layers += [nn.Linear(a, b), nn.Tanh()]
    net = nn.Sequential(*layers)
    x = torch.randn(batch, sizes[0])
    params = dict(net.named_parameters())
    torch.testing.assert_close(hn.functional_call(net, params, (x,)), net(x))


@settings(max_examples=10, deadline=None)
@given(c=st.integers(1, 4), k=st.sampled_from([1, 3]), hw=st.integers(5, 9), batch=st.integers(1, 4))
def test_shared_call_cnn_and_per_example_equals_loop(c, k, hw, batch):
    net = nn.Sequential(nn.Conv2d(c, 2 * c, k), nn.ReLU(), nn.Conv2d(2 * c, 4, k, groups=2),
                        nn.Flatten(), nn.LazyLinear(3))
    x = torch.randn(batch, c, hw, hw)
    net(x)  # materialise the lazy layer
    torch.testing.assert_close(hn.functional_call(net, dict(net.named_parameters()), (x,)), net(x))
    assert_matches_loop(net, (x,), batch=batch)


@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(1, 9), min_size=2, max_size=4), batch=st.integers(1, 6))
def test_per_example_mlp_equals_loop(sizes, batch):
    layers = []
    for a, b in zip(sizes, sizes[1:], strict=False):
        layers += [nn.Linear(a, b), nn.ReLU()]
    net = nn.Sequential(*layers)
    assert_matches_loop(net, (torch.randn(batch, 2, sizes[0]),), batch=batch)


# --- per-example, layer by layer -------------------------------------------------------------

LAYERS = [
    ("linear", lambda: nn.Linear(5, 4), lambda: (torch.randn(3, 5),)),
    ("conv1d", lambda: nn.Conv1d(4, 6, 3, padding=1), lambda: (torch.randn(3, 4, 9),)),
    ("conv2d_groups", lambda: nn.Conv2d(4, 6, 3, groups=2), lambda: (torch.randn(3, 4, 7, 7),)),
    ("conv2d_depthwise_reflect", lambda: nn.Conv2d(4, 4, 3, groups=4, padding=1, padding_mode="reflect"),
     lambda: (torch.randn(3, 4, 6, 6),)),
    ("conv_transpose2d", lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2),
     lambda: (torch.randn(3, 4, 5, 5),)),
    ("layer_norm", lambda: nn.LayerNorm([4, 5]), lambda: (torch.randn(3, 2, 4, 5),)),
    ("group_norm", lambda: nn.GroupNorm(2, 6), lambda: (torch.randn(3, 6, 4),)),
    ("embedding", lambda: nn.Embedding(11, 4, padding_idx=0), lambda: (torch.randint(0, 11, (3, 6)),)),
    ("batch_norm_eval", lambda: nn.BatchNorm2d(3).eval(), lambda: (torch.randn(3, 3, 4, 4),)),
]


@pytest.mark.parametrize("name, make, inputs", LAYERS, ids=[n for n, *_ in LAYERS])
def test_per_example_layer_equals_loop(name, make, inputs):
    torch.manual_seed(0)
    module = make()
    if name == "batch_norm_eval":  # non-trivial running statistics
        module.running_mean.normal_()
        module.running_var.uniform_(0.5, 2)
    assert_matches_loop(module, inputs())


@pytest.mark.parametrize("batch_first", [True, False])
def test_per_example_multihead_attention(batch_first):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=batch_first)
    x = torch.randn(3, 5, 8) if batch_first else torch.randn(5, 3, 8)
    assert_matches_loop(mha, (x, x, x), bdim=0 if batch_first else 1)
    params = perturbed(mha, 3)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[:, -2:] = True
    out, weights = hn.functional_call(mha, params, (x, x, x), {"key_padding_mask": mask},
                                      per_example=True)
    assert torch.all(weights[..., -2:] == 0)
    for i in range(3):
        p = {k: v[i] for k, v in params.items()}
        xi = x.narrow(0 if batch_first else 1, i, 1)
        ref = torch.func.functional_call(mha, p, (xi, xi, xi), {"key_padding_mask": mask[i:i + 1]})[0]
        torch.testing.assert_close(out.narrow(0 if batch_first else 1, i, 1), ref, atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("train", [True, False])
def test_per_example_transformer_encoder_layer(train):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True).train(train)
    x = torch.randn(3, 5, 8)
    assert_matches_loop(layer, (x,))
    with torch.no_grad():  # eval + no_grad would take torch's fused fast path: must not
        params = perturbed(layer, 3)
        got = hn.functional_call(layer, params, (x,), per_example=True)
        torch.testing.assert_close(got, loop(layer, params, (x,)), atol=ATOL, rtol=1e-4)


def test_per_example_gru_loop_fallback_warns_once():
    torch.manual_seed(0)
    gru = nn.GRU(3, 5, num_layers=2, batch_first=True)
    x = torch.randn(4, 6, 3)
    params = perturbed(gru, 4)
    hn._per_example._warned.discard("GRU")
    with pytest.warns(UserWarning, match="per-example GRU runs a Python loop"):
        out, h = hn.functional_call(gru, params, (x,), per_example=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hn.functional_call(gru, params, (x,), per_example=True)
    assert h.shape == (2, 4, 5)
    for i in range(4):
        ref_out, ref_h = torch.func.functional_call(gru, {k: v[i] for k, v in params.items()}, (x[i:i + 1],))
        torch.testing.assert_close(out[i:i + 1], ref_out)
        torch.testing.assert_close(h[:, i:i + 1], ref_h)
    assert_matches_loop(gru, (x,), batch=4)


def test_generic_module_uses_vmap():
    class Scale(nn.Module):  # no kernel exists: the vmap path handles it
        def __init__(self):
            super().__init__()
            self.gain = nn.Parameter(torch.ones(4))

        def forward(self, x):
            return x * self.gain.exp()

    assert_matches_loop(nn.Sequential(nn.Linear(3, 4), Scale()), (torch.randn(3, 3),))


# --- BatchNorm in training: batch statistics, per-example affine, running stats --------------


def test_batch_norm_train_uses_batch_statistics_and_updates_running_stats():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3)
    twin = copy.deepcopy(bn)
    x = torch.randn(4, 3, 5, 5)
    params = perturbed(bn, 4)
    got = hn.functional_call(bn, params, (x,), per_example=True)
    normed = F.batch_norm(x, None, None, training=True, eps=bn.eps)
    want = normed * params["weight"][:, :, None, None] + params["bias"][:, :, None, None]
    torch.testing.assert_close(got, want, atol=ATOL, rtol=1e-4)
    twin(x)  # the plain module's running stats after the same batch
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(bn, name), getattr(twin, name))
    assert "running_mean" in bn.state_dict()
    bn.to(torch.float64)
    assert bn.running_mean.dtype == torch.float64


def resnet_case():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=5)
    spec = hn.ParamSpec.from_module(net, include=["layer4.*", "fc.*"])
    return net, spec, torch.randn(3, 3, 32, 32)


def test_resnet18_layer4_and_fc_per_example_eval_equals_loop():
    net, spec, x = resnet_case()
    net.eval()
    params = perturbed(net, 3, spec.names, scale=0.02)
    got = hn.functional_call(net, params, (x,), spec=spec, per_example=True)
    torch.testing.assert_close(got, loop(net, params, (x,)), atol=1e-4, rtol=1e-4)


def test_resnet18_per_example_train_with_identical_sets_equals_shared():
    net, spec, x = resnet_case()
    twin = copy.deepcopy(net)
    own = dict(net.named_parameters())
    shared = {n: own[n].detach() + 0.01 for n in spec.names}
    stacked = {n: v.expand(3, *v.shape) for n, v in shared.items()}
    got = hn.functional_call(net, stacked, (x,), spec=spec, per_example=True)
    want = hn.functional_call(twin, shared, (x,), spec=spec)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(net.layer4[1].bn2.running_var, twin.layer4[1].bn2.running_var)


# --- modes -----------------------------------------------------------------------------------


def test_residual_adds_to_own_parameters_and_trains_them():
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    x = torch.randn(3, 4)
    delta = perturbed(net, 3, scale=1.0)
    delta = {k: v - dict(net.named_parameters())[k].detach() for k, v in delta.items()}
    own = dict(net.named_parameters())
    absolute = {k: own[k] + v for k, v in delta.items()}
    got = hn.functional_call(net, delta, (x,), per_example=True, mode="residual")
    torch.testing.assert_close(got, hn.functional_call(net, absolute, (x,), per_example=True))
    got.sum().backward()
    assert net[0].weight.grad is not None and net[0].weight.grad.abs().sum() > 0


def lora_factors(module_params, batch, rank, names):
    return {n: hn.LoRA(torch.randn(batch, rank, module_params[n][0].numel()).requires_grad_(),
                       torch.randn(batch, module_params[n].shape[0], rank).requires_grad_())
            for n in names}


@pytest.mark.parametrize("per_example", [True, False])
def test_lora_equals_dense_equivalent_and_leaves_base_frozen(per_example):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    own = dict(net.named_parameters())
    names = ["0.weight", "2.weight"]
    x = torch.randn(4, 5, 6)
    factors = lora_factors(own, 4, 2, names)
    if not per_example:
        factors = {n: hn.LoRA(f.A[0].detach().requires_grad_(), f.B[0].detach().requires_grad_())
                   for n, f in factors.items()}
    got = hn.functional_call(net, factors, (x,), per_example=per_example, mode="lora", strict=False)
    dense = {n: own[n].detach() + f.B @ f.A for n, f in factors.items()}
    want = hn.functional_call(net, dense, (x,), per_example=per_example, strict=False)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    got.sum().backward()
    assert net[0].weight.grad is None  # W0 stays frozen
    assert factors["0.weight"].A.grad is not None


def test_lora_conv_kernel_per_example_equals_dense():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, groups=2)
    own = dict(conv.named_parameters())
    factors = lora_factors(own, 3, 2, ["weight"])
    x = torch.randn(3, 4, 6, 6)
    got = hn.functional_call(conv, factors, (x,), per_example=True, mode="lora", strict=False)
    f = factors["weight"]
    dense = {"weight": own["weight"].detach() + (f.B @ f.A).reshape(3, *own["weight"].shape)}
    torch.testing.assert_close(got, hn.functional_call(conv, dense, (x,), per_example=True, strict=False),
                               atol=1e-4, rtol=1e-4)


def test_lora_per_example_never_builds_a_batch_of_dense_weights():
    batch, rank, i, o = 16, 2, 64, 48
    net = nn.Linear(i, o)
    factors = lora_factors(dict(net.named_parameters()), batch, rank, ["weight"])
    x = torch.randn(batch, i)
    with LargestTensor() as probe:
        y = hn.functional_call(net, factors, (x,), per_example=True, mode="lora", strict=False)
        y.square().sum().backward()
    assert probe.largest <= batch * rank * (i + o)  # factors, never B x O x I
    with LargestTensor() as dense_probe:  # the dense path does build it: the probe can fail
        w = {"weight": net.weight.detach() + factors["weight"].B @ factors["weight"].A}
        hn.functional_call(net, w, (x,), per_example=True, strict=False).sum().backward()
    assert dense_probe.largest >= batch * o * i


# --- torch.compile -----------------------------------------------------------------------------


@pytest.mark.parametrize("per_example", [False, True])
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_compile_fullgraph(kind, per_example):
    torch.manual_seed(0)
    if kind == "mlp":
        net, x = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)), torch.randn(4, 5)
    else:
        net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
        x = torch.randn(4, 1, 6, 6)
    params = perturbed(net, 4) if per_example else {k: v.detach() + 0.1 for k, v in net.named_parameters()}
    torch._dynamo.reset()
    # dynamic=False: per-example convs use the batch size as the group count, which inductor's
    # dynamic-shape conv lowering rejects; a new batch size recompiles instead.
    compiled = torch.compile(lambda p, x: hn.functional_call(net, p, (x,), per_example=per_example),
                             fullgraph=True, dynamic=False)
    torch.testing.assert_close(compiled(params, x),
                               hn.functional_call(net, params, (x,), per_example=per_example))
    assert "forward" not in net[0].__dict__  # the module is left as it was


# --- materialize -------------------------------------------------------------------------------


def test_materialize_loads_into_a_fresh_target_without_the_library(tmp_path):
    torch.manual_seed(0)
    build = "nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 16, 4))"
    target = eval(build)
    target.eval()
    params = {n: v.detach() + 0.3 * torch.randn_like(v) for n, v in target.named_parameters()}
    plain = hn.materialize(target, params)
    x = torch.randn(2, 1, 6, 6)
    torch.testing.assert_close(plain(x), hn.functional_call(target, params, (x,)))
    assert not torch.equal(plain[0].weight, target[0].weight)  # the target is untouched
    torch.save({"state": plain.state_dict(), "x": x, "y": plain(x).detach()}, tmp_path / "m.pt")
    script = textwrap.dedent(f"""
        import sys, torch
        from torch import nn
        blob = torch.load(sys.argv[1])
        net = {build}
        net.load_state_dict(blob["state"], strict=True)
        net.eval()
        assert "hypernetworks" not in sys.modules
        assert torch.equal(net(blob["x"]), blob["y"]), "outputs differ"
        print("ok")
    """)
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "m.pt")],
                         capture_output=True, text=True)
    assert run.stdout.strip() == "ok", run.stderr


def test_materialize_lora_and_residual_merge():
    net = nn.Linear(4, 3)
    f = hn.LoRA(torch.randn(2, 4), torch.randn(3, 2))
    plain = hn.materialize(net, {"weight": f}, mode="lora", strict=False)
    torch.testing.assert_close(plain.weight, net.weight + f.B @ f.A)
    plain = hn.materialize(net, {"bias": torch.ones(3)}, mode="residual", strict=False)
    torch.testing.assert_close(plain.bias, net.bias + 1)


# --- errors ------------------------------------------------------------------------------------

NET = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
X = torch.randn(5, 4)


def own(**changes):
    p = {k: v.detach().clone() for k, v in NET.named_parameters()}
    p.update(changes)
    return p


@pytest.mark.parametrize(
    "params, kwargs, match",
    [
        (own(**{"9.weight": torch.zeros(1)}), {}, r"unexpected tensor\(s\) \['9.weight'\]"),
        ({"0.weight": torch.zeros(3, 4)}, {}, r"missing tensor\(s\) \['0.bias', '2.weight', '2.bias'\]"),
        (own(**{"0.bias": torch.zeros(4)}), {}, r"'0.bias' should have shape \(3\), got \(4,\)"),
        (own(**{"0.bias": torch.zeros(3, dtype=torch.float64)}), {}, r"'0.bias' should be torch.float32"),
        (own(**{"0.bias": torch.zeros(3, device="meta")}), {}, r"'0.bias' should be .* on cpu, got .* on meta"),
        (own(), {"mode": "additive"}, r"mode must be one of"),
        (own(), {"mode": "lora"}, r"mode='lora' needs LoRA\(A, B\) factors for '0.weight'"),
        ({"0.weight": hn.LoRA(torch.zeros(2, 5), torch.zeros(3, 2))}, {"mode": "lora", "strict": False},
         r"should be A \(r, 4\) and B \(3, r\), got A \(2, 5\)"),
        ({"0.bias": hn.LoRA(torch.zeros(2, 1), torch.zeros(3, 2))}, {"mode": "lora", "strict": False},
         r"LoRA factors need a weight of >= 2 dims"),
        (own(), {"per_example": True}, r"'0.weight' should have shape \(B, 3, 4\), got \(3, 4\)"),
        ({"0.weight": torch.zeros(5, 3, 4), "0.bias": torch.zeros(2, 3)},
         {"per_example": True, "strict": False}, r"'0.bias' has 2 weight sets, others have 5"),
    ],
)
def test_errors_name_the_tensor(params, kwargs, match):
    with pytest.raises(ValueError, match=match):
        hn.functional_call(NET, params, (X,), **kwargs)


def test_missing_is_checked_against_a_spec():
    spec = hn.ParamSpec.from_module(NET, include=["2"])
    with pytest.raises(ValueError, match=r"missing tensor\(s\) \['2.bias'\]$|missing tensor\(s\) \['2.bias'\];"):
        hn.functional_call(NET, {"2.weight": torch.zeros(2, 3)}, (X,), spec=spec)
    out = hn.functional_call(NET, {"2.weight": torch.zeros(2, 3), "2.bias": torch.ones(2)}, (X,), spec=spec)
    assert torch.equal(out, torch.ones(5, 2))


def test_per_example_input_batch_mismatch():
    p = {k: v.detach().expand(4, *v.shape) for k, v in NET.named_parameters()}
    with pytest.raises(hn.PerExampleError, match=r"module '0' got an input of shape \(5, 4\), expected batch size 4"):
        hn.functional_call(NET, p, (X,), per_example=True)


def test_per_example_inner_module_batch_mismatch():
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(torch.cat([x, x]))

    net = Pair()
    p = {k: v.detach().expand(5, *v.shape) for k, v in net.named_parameters()}
    with pytest.raises(hn.PerExampleError, match=r"module 'fc' got an input of shape \(10, 4\)"):
        hn.functional_call(net, p, (X,), per_example=True)


def test_module_whose_tensors_are_read_by_its_parent_is_an_error():
    class ReadsChild(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return F.linear(x, self.fc.weight, self.fc.bias)

    net = ReadsChild()
    p = {k: v.detach().expand(5, *v.shape) for k, v in net.named_parameters()}
    with pytest.raises(hn.PerExampleError, match=r"'fc.weight' holds one tensor per example, but code outside"):
        hn.functional_call(net, p, (X,), per_example=True)
    assert "forward" not in net.fc.__dict__


def test_module_whose_generated_tensors_are_never_used_is_an_error():
    class SkipsChild(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.out = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.out(x)

    net = SkipsChild()
    p = {k: v.detach().expand(5, *v.shape) for k, v in net.named_parameters()}
    with pytest.raises(hn.PerExampleError, match=r"\['fc'\] own generated tensors but were never called"):
        hn.functional_call(net, p, (X,), per_example=True)


def test_unsupported_per_example_modules():
    emb = nn.Embedding(5, 3, max_norm=1.0)
    with pytest.raises(hn.PerExampleError, match="max_norm"):
        hn.functional_call(emb, {"weight": torch.zeros(2, 5, 3)}, (torch.zeros(2, 4, dtype=torch.long),),
                           per_example=True)
    sync = nn.SyncBatchNorm(3)
    p = {k: v.detach().expand(2, *v.shape) for k, v in sync.named_parameters()}
    with pytest.raises(hn.PerExampleError, match="SyncBatchNorm 'SyncBatchNorm'|SyncBatchNorm ''"):
        hn.functional_call(sync, p, (torch.zeros(2, 3, 4),), per_example=True)


def test_cached_call_plan_follows_changes_to_the_target():
    """Plans are cached per target; adding, replacing or deleting parameters and modules is seen."""
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(5, 3)
    full = {k: v.detach().expand(5, *v.shape).clone() for k, v in net.named_parameters()}
    for per_example in (True, False):
        p = full if per_example else {k: v[0] for k, v in full.items()}
        torch.testing.assert_close(hn.functional_call(net, p, x, per_example=per_example), net(x))
    net.register_parameter("scale", nn.Parameter(torch.ones(())))  # a new parameter is now missing
    with pytest.raises(ValueError, match=r"missing tensor\(s\) \['scale'\]"):
        hn.functional_call(net, full, x, per_example=True)
    del net.scale
    net[2] = nn.Linear(4, 6)  # a replaced module: the old shapes no longer fit
    with pytest.raises(ValueError, match=r"'2.weight' should have shape \(B, 6, 4\)"):
        hn.functional_call(net, full, x, per_example=True)
    net[2].bias = None  # a removed parameter no longer resolves
    new = {"0.weight": full["0.weight"], "0.bias": full["0.bias"], "2.weight": torch.zeros(5, 6, 4)}
    assert hn.functional_call(net, new, x, per_example=True).abs().max() == 0
    with pytest.raises(ValueError, match=r"unexpected tensor\(s\) \['2.bias'\]"):
        hn.functional_call(net, {**new, "2.bias": torch.zeros(5, 6)}, x, per_example=True)


@pytest.mark.parametrize("per_example", [False, True])
def test_per_tensor_modes_mix_lora_and_residual_in_one_call(per_example):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 6), nn.LayerNorm(6), nn.Linear(6, 2))
    x, lead = torch.randn(3, 5), ((3,) if per_example else ())
    a, b = torch.randn(*lead, 2, 5), torch.randn(*lead, 6, 2)
    shift = torch.randn(*lead, 6)
    params = {"0.weight": hn.LoRA(a, b), "1.bias": shift}
    modes = {"0.weight": "lora", "1.bias": "residual"}
    got = hn.functional_call(net, params, x, per_example=per_example, mode=modes, strict=False)
    dense = {"0.weight": net[0].weight + b @ a, "1.bias": net[1].bias + shift}
    if per_example:
        want = torch.cat([torch.func.functional_call(net, {k: v[i] for k, v in dense.items()}, (x[i:i + 1],))
                          for i in range(3)])
    else:
        want = torch.func.functional_call(net, dense, (x,))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match=r"missing \['1.bias'\]"):
        hn.functional_call(net, params, x, per_example=per_example, mode={"0.weight": "lora"}, strict=False)
    with pytest.raises(ValueError, match=r"modes must be one of .* got \{'1.bias': 'delta'\}"):
        hn.functional_call(net, params, x, per_example=per_example, mode={**modes, "1.bias": "delta"}, strict=False)
