import pytest
import torch
from torch import nn

import hypernetworks as hn
from hypernetworks.init import target_moments

HEADS = {  # name: (head, other HyperNetwork arguments)
    "full": (lambda: hn.heads.Full(hidden=(64,)), {}),
    "chunked": (lambda: hn.heads.Chunked(chunk_size=1000, hidden=(64,)), {}),
    "per_tensor": (lambda: hn.heads.PerTensor(hidden=(32,)), {}),
    "per_tensor_shared": (lambda: hn.heads.PerTensor(hidden=(64,), shared=True), {}),
    "low_rank": (lambda: hn.heads.Full(hidden=(64,)), {"rank": 8}),
    "low_rank_chunked": (lambda: hn.heads.Chunked(chunk_size=500, hidden=(64,)), {"rank": 8}),
}


class Target(nn.Module):
    """Linear, Conv2d, depthwise Conv2d and Embedding layers, big enough to measure variance."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(40, 48)
        self.conv = nn.Conv2d(8, 48, 3)
        self.depthwise = nn.Conv2d(48, 48, 3, groups=48)
        self.fc = nn.Linear(96, 64)

    def forward(self, x):
        return x


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("scheme", ["hyperfan_in", "hyperfan_out", "default_match"])
def test_generated_variance_matches_scheme(head, scheme):
    torch.manual_seed(0)
    target = Target()
    make, options = HEADS[head]
    hnet = hn.HyperNetwork(target, encoder=hn.encoders.Embedding(20, 16), head=make(), init=scheme, **options)
    params = hnet.generate(torch.arange(20))  # 20 conditions
    aims = target_moments(hnet.spec, scheme, "absolute", target)
    checked = 0
    for name, value in params.items():
        mean, var = aims[name]
        got = value.var().item()
        if var == 0:
            assert got == 0, name
            continue
        assert abs(got / var - 1) < 0.2, f"{name}: variance {got:.3g}, aim {var:.3g}"
        checked += 1
    assert checked >= 5


def test_hyperfan_in_formulas():
    target = nn.Sequential(nn.Linear(50, 20), nn.Conv1d(4, 8, 3, groups=2, bias=False))
    aims = target_moments(hn.ParamSpec.from_module(target), "hyperfan_in", "absolute", target)
    assert aims["0.weight"] == (0.0, 1 / (2 * 50))  # bias generated too: half the budget each
    assert aims["0.bias"] == (0.0, 0.5)
    assert aims["1.weight"] == (0.0, 1 / (2 * 3))  # no bias: fan_in = C/g · k
    aims = target_moments(hn.ParamSpec.from_module(target), "hyperfan_out", "absolute", target)
    assert aims["0.weight"] == (0.0, 1 / 20) and aims["0.bias"] == (0.0, 0.0)  # 1 - 50/20 < 0
    aims = target_moments(hn.ParamSpec.from_module(target), "default_match", "absolute", target)
    assert aims["0.weight"] == (0.0, 1 / 150)  # PyTorch: U(±1/√fan_in)


def test_default_match_norm_scales_start_at_one():
    torch.manual_seed(0)
    target = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6))
    hnet = hn.HyperNetwork(target, encoder=hn.encoders.Scalars(2), head=hn.heads.Full(), init="default_match")
    p = hnet.generate(torch.rand(7, 2))
    assert torch.equal(p["1.weight"], torch.ones(7, 6)) and torch.equal(p["1.bias"], torch.zeros(7, 6))


def test_wide_target_naive_init_explodes_and_hyperfan_in_does_not():
    """64-1000-1000-10 target (Chang et al.): PyTorch's own init of the head gives weights far
    above the intended variance and a huge starting loss; hyperfan-in keeps both in range."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data[:256], dtype=torch.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    y = torch.tensor(digits.target[:256])
    out = {}
    for init in ("pytorch", "hyperfan_in"):
        torch.manual_seed(0)
        target = nn.Sequential(nn.Linear(64, 1000), nn.ReLU(), nn.Linear(1000, 1000), nn.ReLU(), nn.Linear(1000, 10))
        hnet = hn.HyperNetwork(target, encoder=hn.encoders.Embedding(5, 32),
                               head=hn.heads.Chunked(4096, hidden=(64,)), init=init)
        w = hnet.generate(torch.tensor(0))
        ratio = w["2.weight"].var().item() * 1000  # 1.0 = Var(W) · fan_in of a variance-preserving layer
        loss = nn.functional.cross_entropy(hnet(x, cond=torch.tensor(0)), y).item()
        out[init] = (ratio, loss)
    assert out["pytorch"][0] > 30 and out["pytorch"][1] > 50
    assert 0.4 < out["hyperfan_in"][0] < 0.6 and out["hyperfan_in"][1] < 5


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("mode", ["residual", "lora"])
def test_zero_delta_starts_exactly_at_the_target(head, mode):
    torch.manual_seed(0)
    target = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 3))
    spec = hn.ParamSpec.from_module(target, include=["weight"] if mode == "lora" else None)
    make, options = HEADS[head]
    hnet = hn.HyperNetwork(target, spec, encoder=hn.encoders.Scalars(1), head=make(), mode=mode,
                           init="zero_delta", **options)
    x = torch.randn(5, 6)
    for value in hnet.generate(torch.rand(5, 1)).values():
        assert not torch.any(value.B if mode == "lora" else value)  # Δθ (or B) exactly zero
    torch.testing.assert_close(hnet(x, cond=torch.rand(5, 1)), target(x))
    loss = (hnet(x, cond=torch.rand(5, 1)) - 1).square().sum()  # and it can leave the start
    grads = torch.autograd.grad(loss, [p for n, p in hnet.named_parameters()
                                       if p.requires_grad and not n.startswith("target.")], allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_zero_delta_needs_a_delta_mode():
    with pytest.raises(ValueError, match="'zero_delta' needs mode='residual' or 'lora'"):
        hn.HyperNetwork(nn.Linear(2, 2), encoder=hn.encoders.Scalars(1), head=hn.heads.Full(), init="zero_delta")
    with pytest.raises(ValueError, match="scheme must be one of"):
        hn.HyperNetwork(nn.Linear(2, 2), encoder=hn.encoders.Scalars(1), head=hn.heads.Full(), init="xavier")


def test_lora_mode_generates_factors_and_rejects_biases():
    target = nn.Linear(8, 4)
    hnet = hn.HyperNetwork(target, hn.ParamSpec.from_module(target, include=["weight"]),
                           encoder=hn.encoders.Embedding(3, 4), head=hn.heads.Full(), rank=2, mode="lora",
                           init="zero_delta")
    factors = hnet.generate(torch.tensor([0, 2]))["weight"]
    assert isinstance(factors, hn.LoRA) and factors.A.shape == (2, 2, 8) and factors.B.shape == (2, 4, 2)
    assert not target.weight.requires_grad  # W0 frozen
    with pytest.raises(ValueError, match=r"1-D: exclude them"):
        hn.HyperNetwork(nn.Linear(8, 4), encoder=hn.encoders.Embedding(3, 4), head=hn.heads.Full(), mode="lora")


def test_low_rank_product_shapes_for_conv_kernels():
    target = nn.Conv2d(4, 6, 3, groups=2)
    hnet = hn.HyperNetwork(target, encoder=hn.encoders.Embedding(3, 4), head=hn.heads.Full(), rank=2)
    p = hnet.generate(torch.tensor([0, 1]))
    assert p["weight"].shape == (2, 6, 2, 3, 3) and p["bias"].shape == (2, 6)
    assert torch.linalg.matrix_rank(p["weight"][0].reshape(6, -1)) <= 2


def test_chunked_head_compresses():
    target = nn.Sequential(nn.Linear(64, 100), nn.ReLU(), nn.Linear(100, 10))
    hnet = hn.HyperNetwork(target, encoder=hn.encoders.Embedding(5, 8),
                           head=hn.heads.Chunked(chunk_size=100, hidden=(10,)))
    assert hnet.num_trainable < hnet.num_generated / 3
    assert hnet.head.num_chunks == -(-hnet.num_generated // 100)


def test_head_is_built_once():
    head = hn.heads.Full()
    hn.HyperNetwork(nn.Linear(2, 2), encoder=hn.encoders.Scalars(1), head=head)
    with pytest.raises(RuntimeError, match="already built"):
        hn.HyperNetwork(nn.Linear(2, 2), encoder=hn.encoders.Scalars(1), head=head)


def test_full_head_without_bias():
    target = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6))
    hnet = hn.HyperNetwork(target, encoder=hn.encoders.Scalars(1), head=hn.heads.Full(bias=False), mode="residual",
                           init="default_match")
    assert hnet.head.out.bias is None
    with pytest.raises(ValueError, match="'1.weight' should start at mean 1.0"):
        hn.HyperNetwork(nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6)), encoder=hn.encoders.Scalars(1),
                        head=hn.heads.Full(bias=False), init="default_match")


@pytest.mark.parametrize("init", ["hyperfan_in", "zero_delta"])
def test_state_dict_keys_do_not_depend_on_the_init_scheme(init):
    def keys(scheme, mode):
        target = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
        hnet = hn.HyperNetwork(target, encoder=hn.encoders.Embedding(3, 4), head=hn.heads.Chunked(16), mode=mode,
                               init=scheme, rank=2)
        return list(hnet.state_dict())

    assert keys(init, "residual") == keys("default_match", "residual")


def test_factors_are_a_structure_and_assemble_in_one_place():
    spec = hn.ParamSpec.from_module(nn.Conv2d(4, 6, 3))
    factors = spec.factorized(2)
    a, b = factors["weight@A"], factors["weight@B"]
    assert (a.factor.weight, a.factor.part, b.factor.part) == ("weight", "A", "B")
    assert a.module_name == "" and a.shape == (2, 36) and b.shape == (6, 2) and factors["bias"].factor is None
    values = {"weight@A": torch.randn(5, 2, 36), "weight@B": torch.randn(5, 6, 2), "bias": torch.randn(5, 6)}
    dense = factors.assemble(values, dense=True)
    torch.testing.assert_close(dense["weight"], (values["weight@B"] @ values["weight@A"]).reshape(5, 6, 4, 3, 3))
    lora = factors.assemble(values, dense=False)["weight"]
    assert isinstance(lora, hn.LoRA) and lora.A is values["weight@A"]
