import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import hypernetworks as hn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = nn.Linear(4, 4)
        self.k_proj = nn.Linear(4, 4, bias=False)
        self.norm = nn.LayerNorm(4)


def model():
    return nn.ModuleDict({"enc": nn.ModuleList([Block(), Block()]), "fc": nn.Linear(4, 2)})


def test_list_matches_exact_names_and_dotted_suffixes():
    spec = hn.ParamSpec.from_module(model(), include=["q_proj", "fc"])
    assert spec.names == ["enc.0.q_proj.weight", "enc.0.q_proj.bias", "enc.1.q_proj.weight",
                          "enc.1.q_proj.bias", "fc.weight", "fc.bias"]


def test_string_is_a_full_regex_match():
    spec = hn.ParamSpec.from_module(model(), include=r"enc\.1\..*_proj")
    assert spec.names == ["enc.1.q_proj.weight", "enc.1.q_proj.bias", "enc.1.k_proj.weight"]
    with pytest.raises(hn.NoMatchingParamsError):
        hn.ParamSpec.from_module(model(), include=r"proj")  # partial match is not enough


def test_globs_and_exclusion_wins():
    spec = hn.ParamSpec.from_module(model(), include=["enc.0.*"], exclude=["norm", "enc.0.q_proj.bias"])
    assert spec.names == ["enc.0.q_proj.weight", "enc.0.k_proj.weight"]


def test_module_types_and_combination_with_names():
    spec = hn.ParamSpec.from_module(model(), module_types=nn.LayerNorm)
    assert [e.kind for e in spec] == ["norm"] * 4
    spec = hn.ParamSpec.from_module(model(), include=["enc.1.*"], module_types=[nn.Linear])
    assert spec.names == ["enc.1.q_proj.weight", "enc.1.q_proj.bias", "enc.1.k_proj.weight"]


def test_no_match_lists_what_exists():
    with pytest.raises(hn.NoMatchingParamsError, match=r"selected no parameter.*fc\.weight.*Linear"):
        hn.ParamSpec.from_module(model(), include=["nothing_here"])
    with pytest.raises(TypeError, match="module_types"):
        hn.ParamSpec.from_module(model(), module_types=["Linear"])


def test_inspect_lists_matched_and_unmatched():
    out = hn.ParamSpec.inspect(model(), include=["fc"])
    assert out["matched"] == ["fc.weight", "fc.bias"]
    assert "enc.0.norm.weight" in out["unmatched"] and "fc.bias" not in out["unmatched"]


def test_offsets_numel_and_roles():
    spec = hn.ParamSpec.from_module(model())
    offset = 0
    for e in spec:
        assert e.offset == offset
        offset += e.numel
    assert spec.numel == offset == sum(p.numel() for p in model().parameters())
    assert spec["fc.bias"].role == "bias" and spec["fc.weight"].role == "weight"


def test_tied_weights_are_generated_once():
    emb = nn.Embedding(10, 4)
    head = nn.Linear(4, 10, bias=False)
    head.weight = emb.weight
    spec = hn.ParamSpec.from_module(nn.ModuleDict({"emb": emb, "head": head}))
    assert spec.names == ["emb.weight"]


@pytest.mark.parametrize(
    "module, name, fan_in, fan_out, kind",
    [
        (nn.Linear(7, 3), "weight", 7, 3, "linear"),
        (nn.Linear(7, 3), "bias", 7, 3, "linear"),
        (nn.Conv2d(8, 16, 3), "weight", 8 * 9, 16 * 9, "conv"),
        (nn.Conv2d(8, 16, 3, groups=4), "weight", 2 * 9, 4 * 9, "conv"),
        (nn.Conv1d(6, 6, 5, groups=6), "weight", 5, 5, "conv"),
        (nn.ConvTranspose2d(8, 4, 4, stride=2), "weight", 8 * 16 // 4, 4 * 16 // 4, "conv_transpose"),
        (nn.BatchNorm2d(5), "weight", 1, 1, "norm"),
        (nn.GroupNorm(2, 6), "bias", 1, 1, "norm"),
        (nn.Embedding(100, 12), "weight", 1, 12, "embedding"),
        (nn.MultiheadAttention(16, 4), "in_proj_weight", 16, 16, "attention"),
        (nn.MultiheadAttention(16, 4, kdim=6, vdim=5), "k_proj_weight", 6, 16, "attention"),
        (nn.GRU(3, 7), "weight_ih_l0", 3, 7, "rnn"),
        (nn.GRU(3, 7), "weight_hh_l0", 7, 7, "rnn"),
    ],
)
def test_fans(module, name, fan_in, fan_out, kind):
    e = hn.ParamSpec.from_module(module, include=[name])[name]
    assert (e.fan_in, e.fan_out, e.kind) == (fan_in, fan_out, kind)
    assert e.module_type == type(module).__name__


@settings(max_examples=25, deadline=None)
@given(lead=st.lists(st.integers(1, 3), max_size=3), sizes=st.lists(st.integers(1, 6), min_size=1, max_size=4))
def test_flatten_unflatten_round_trip(lead, sizes):
    net = nn.Sequential(*[nn.Linear(s, s) for s in sizes])
    spec = hn.ParamSpec.from_module(net)
    flat = torch.randn(*lead, spec.numel)
    params = spec.unflatten(flat)
    for e in spec:
        assert params[e.name].shape == (*lead, *e.shape)
    assert torch.equal(spec.flatten(params), flat)


def test_flatten_and_unflatten_errors():
    spec = hn.ParamSpec.from_module(nn.Linear(2, 3))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 9\), got \(4, 8\)"):
        spec.unflatten(torch.zeros(4, 8))
    with pytest.raises(KeyError, match=r"missing \['bias'\]"):
        spec.flatten({"weight": torch.zeros(3, 2)})
    with pytest.raises(ValueError, match="'weight' should end in shape"):
        spec.flatten({"weight": torch.zeros(2, 3), "bias": torch.zeros(3)})
    with pytest.raises(ValueError, match="batch dims"):
        spec.flatten({"weight": torch.zeros(2, 3, 2), "bias": torch.zeros(5, 3)})


def test_roles_come_from_the_module_not_a_substring_of_the_name():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight, self.gain_bias = nn.Parameter(torch.ones(2, 2)), nn.Parameter(torch.zeros(2))

    net = nn.ModuleDict({"attn": nn.MultiheadAttention(4, 2, add_bias_kv=True), "rnn": nn.GRU(3, 4), "c": Custom()})
    roles = {e.name: e.role for e in hn.ParamSpec.from_module(net)}
    assert roles["attn.in_proj_weight"] == "weight" and roles["attn.in_proj_bias"] == "bias"
    assert roles["attn.bias_k"] == "bias" and roles["attn.out_proj.weight"] == "weight"
    assert roles["rnn.weight_ih_l0"] == "weight" and roles["rnn.bias_hh_l0"] == "bias"
    assert roles["c.weight"] == "weight" and roles["c.gain_bias"] == "other"
