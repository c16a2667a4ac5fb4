"""The binding's case table: every row (a target and its inputs) goes through the same checks.

Checks: per-example equals a loop of ``torch.func.functional_call`` over single examples (outputs,
gradients, second-order gradients); shared equals ``torch.func.functional_call``; ``materialize``
equals the shared call. Rows that must be refused are in ``REFUSED`` with the error they raise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from probes import LargestTensor
from torch import nn
from torch.utils._pytree import tree_map

import hypernetworks as hn

B = 3


@dataclass
class Case:
    name: str
    make: Callable[[], nn.Module]
    inputs: Callable[[], tuple[tuple, dict]]  # (args, kwargs), batch B in dim `bdim`
    bdim: int = 0
    include: tuple[str, ...] | None = None  # prefixes of the generated tensors (default: all, strict)
    second_order: bool = True
    scale: float = 0.1


# --- targets that are not plain torch.nn layers -------------------------------------------------------


class TwiceLinear(nn.Linear):
    """A subclass with its own forward: a kernel for nn.Linear would compute something else."""

    def forward(self, x):
        return 2 * super().forward(x) + 1


class StdConv2d(nn.Conv2d):
    """Weight standardisation (as timm's StdConv2d): the forward normalises the weight first."""

    def forward(self, x):
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, training=True,
                         momentum=0.0, eps=1e-6).reshape_as(self.weight)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class OwnConvForward(nn.Conv2d):
    """Overrides the helper the stock forward calls, not forward itself."""

    def _conv_forward(self, x, weight, bias):
        return super()._conv_forward(x, weight.tanh(), bias)


def hooked(kind: str) -> nn.Module:
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    if kind == "forward":
        net[0].register_forward_hook(lambda m, args, out: out * m.weight.sum())
    else:
        net[2].register_forward_pre_hook(lambda m, args: (args[0] + m.bias.mean(),))
    return net


class TiedLM(nn.Module):
    """A tiny language model whose output layer is its embedding (weight tying)."""

    def __init__(self, vocab=11, dim=6):
        super().__init__()
        self.emb, self.mix, self.head = nn.Embedding(vocab, dim), nn.Linear(dim, dim), nn.Linear(dim, vocab)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        return self.head(self.mix(self.emb(ids)).tanh())


class KeywordInputs(nn.Module):
    """Keyword tensors with the batch in dim 0, going into a module without a kernel."""

    def __init__(self):
        super().__init__()
        self.inner = Gated()

    def forward(self, x, *, gate, offset=None):
        return self.inner(x, gate=gate, offset=offset)


class Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 4) / 2)

    def forward(self, x, gate, offset=None):
        y = x @ self.weight.T * gate
        return y if offset is None else y + offset


def bert():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16)
    return transformers.BertModel(config, add_pooling_layer=False).eval()


def gpt2():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=40, n_embd=16, n_layer=2, n_head=2, n_positions=16)
    return transformers.GPT2LMHeadModel(config).eval()


class LastHidden(nn.Module):
    """Returns the tensor output of a transformers model (its output is a dataclass)."""

    def __init__(self, model, key):
        super().__init__()
        self.model, self.key = model, key

    def forward(self, *args, **kwargs):
        return getattr(self.model(*args, **kwargs), self.key)


def vit():
    torchvision = pytest.importorskip("torchvision")
    return torchvision.models.VisionTransformer(image_size=8, patch_size=4, num_layers=1, num_heads=2,
                                                hidden_dim=8, mlp_dim=16, num_classes=3).eval()


def resnet18():
    torchvision = pytest.importorskip("torchvision")
    return torchvision.models.resnet18(num_classes=4).eval()


def ids(vocab, length=5):
    return lambda: ((torch.randint(0, vocab, (B, length)),), {})


def x(*shape):
    return lambda: ((torch.randn(B, *shape),), {})


def seq_first(*shape):
    return lambda: ((torch.randn(shape[0], B, *shape[1:]),), {})


def attention(length, source, embed, kdim=None, vdim=None):
    def inputs():
        q = torch.randn(B, length, embed)
        k, v = torch.randn(B, source, kdim or embed), torch.randn(B, source, vdim or embed)
        return (q, k, v), {}
    return inputs


def self_attention_seq_first(length, embed):
    def inputs():
        q = torch.randn(length, B, embed)
        return (q, q, q), {}
    return inputs


CASES = [
    Case("linear", lambda: nn.Linear(5, 4), x(2, 5)),
    Case("bilinear", lambda: nn.Bilinear(3, 4, 2), lambda: ((torch.randn(B, 3), torch.randn(B, 4)), {})),
    Case("conv1d", lambda: nn.Conv1d(4, 6, 3, padding=1), x(4, 9)),
    Case("conv2d_groups_circular", lambda: nn.Conv2d(4, 6, 3, groups=2, padding=1, padding_mode="circular"),
         x(4, 6, 6)),
    Case("conv3d", lambda: nn.Conv3d(2, 3, 2), x(2, 4, 4, 4)),
    Case("conv_transpose1d", lambda: nn.ConvTranspose1d(3, 4, 3, stride=2), x(3, 5)),
    Case("conv_transpose2d_groups", lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2), x(4, 4, 4)),
    Case("embedding_padding", lambda: nn.Embedding(11, 4, padding_idx=0), ids(11)),
    Case("embedding_bag", lambda: nn.EmbeddingBag(11, 4, mode="mean"), ids(11), second_order=False),
    Case("layer_norm", lambda: nn.LayerNorm([4, 5]), x(2, 4, 5)),
    Case("rms_norm", lambda: nn.RMSNorm(5), x(2, 5)),
    Case("group_norm", lambda: nn.GroupNorm(2, 6), x(6, 4)),
    Case("batch_norm_eval", lambda: _with_stats(nn.BatchNorm2d(3)).eval(), x(3, 4, 4)),
    Case("prelu", lambda: nn.PReLU(4), x(4, 3)),
    Case("mha", lambda: nn.MultiheadAttention(8, 2, batch_first=True), attention(5, 5, 8)),
    Case("mha_kdim_vdim", lambda: nn.MultiheadAttention(8, 2, kdim=6, vdim=4, batch_first=True),
         attention(5, 7, 8, 6, 4)),
    Case("mha_seq_first", lambda: nn.MultiheadAttention(8, 2), self_attention_seq_first(5, 8), bdim=1),
    Case("encoder_layer", lambda: nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True).eval(),
         x(5, 8),
         second_order=False),  # torch's CPU attention kernel has no double backward
    Case("decoder_layer", lambda: nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, batch_first=True).eval(),
         lambda: ((torch.randn(B, 4, 8), torch.randn(B, 6, 8)), {}), second_order=False),
    Case("lstm_proj", lambda: nn.LSTM(3, 6, proj_size=2, batch_first=True), x(4, 3), second_order=False),
    Case("gru_bidirectional_2_layers", lambda: nn.GRU(3, 4, num_layers=2, bidirectional=True), seq_first(4, 3),
         bdim=1, second_order=False),
    Case("subclass_own_forward", lambda: TwiceLinear(4, 3), x(4)),
    Case("std_conv2d", lambda: StdConv2d(3, 4, 3), x(3, 6, 6), scale=0.3),
    Case("subclass_own_conv_forward", lambda: OwnConvForward(3, 4, 3), x(3, 6, 6)),
    Case("weight_norm_parametrized", lambda: torch.nn.utils.parametrizations.weight_norm(nn.Linear(4, 3)), x(4)),
    Case("forward_hook", lambda: hooked("forward"), x(4)),
    Case("forward_pre_hook", lambda: hooked("pre"), x(4)),
    Case("tied_lm", TiedLM, ids(11), include=("emb.weight", "mix.weight")),
    Case("tied_lm_all", TiedLM, ids(11)),
    Case("keyword_inputs", KeywordInputs,
         lambda: ((torch.randn(B, 4),), {"gate": torch.rand(B, 1), "offset": torch.randn(B, 3)})),
    Case("bert_from_config", lambda: LastHidden(bert(), "last_hidden_state"),
         lambda: ((torch.randint(0, 40, (B, 6)),), {"attention_mask": _mask(6)}), second_order=False),
    Case("gpt2_tied_from_config", lambda: LastHidden(gpt2(), "logits"), ids(40, 6), second_order=False,
         scale=0.02),
    Case("resnet18_layer4_fc", resnet18, x(3, 32, 32), include=("layer4.", "fc."), second_order=False, scale=0.02),
    Case("vit_small", vit, x(3, 8, 8), second_order=False),
]


def _with_stats(bn):
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2)
    return bn


def _mask(length):
    mask = torch.ones(B, length, dtype=torch.long)
    mask[0, -2:] = 0
    return mask


# --- the checks ------------------------------------------------------------------------------------------


def setup(case: Case):
    torch.manual_seed(0)
    module = case.make()
    args, kwargs = case.inputs()
    own = dict(module.named_parameters())
    names = [n for n in own if case.include is None or n.startswith(case.include)]
    params = {n: (own[n].detach() + case.scale * torch.randn(B, *own[n].shape)).requires_grad_() for n in names}
    return module, args, kwargs, params


def split(tree, i, bdim):
    """Example i of every tensor with the batch in ``bdim`` (kept as a batch of one)."""
    return tree_map(lambda t: t.narrow(bdim, i, 1) if isinstance(t, torch.Tensor) and t.dim() > bdim
                    and t.shape[bdim] == B else t, tree)


def loop(module, params, args, kwargs, bdim):
    outs = []
    for i in range(B):
        p = {k: v[i] for k, v in params.items()}
        out = torch.func.functional_call(module, p, split(args, i, bdim), split(kwargs, i, bdim))
        outs.append(out[0] if isinstance(out, tuple) else out)
    return torch.cat(outs, dim=bdim)


def first(out):
    return out[0] if isinstance(out, tuple) else out


def grads(out, params, second_order):
    g = torch.autograd.grad(out.square().sum(), list(params.values()), create_graph=second_order)
    if not second_order:
        return g, ()
    return g, torch.autograd.grad(sum(t.square().sum() for t in g), list(params.values()))


def close(a, b, what, atol=1e-5, rtol=1e-4):
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_per_example_equals_loop(case):
    module, args, kwargs, params = setup(case)
    got = first(hn.functional_call(module, params, args, kwargs, per_example=True, strict=case.include is None))
    want = loop(module, params, args, kwargs, case.bdim)
    close(got, want, "outputs")
    (g1, g2), (w1, w2) = grads(got, params, case.second_order), grads(want, params, case.second_order)
    for name, a, b in zip(params, g1, w1, strict=True):
        close(a, b, f"gradient of {name}", atol=1e-4)
    for name, a, b in zip(params, g2, w2, strict=case.second_order):
        close(a, b, f"second-order gradient of {name}", atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_shared_equals_torch_func_and_materialize(case):
    module, args, kwargs, params = setup(case)
    one = {k: v[0] for k, v in params.items()}
    got = first(hn.functional_call(module, one, args, kwargs, strict=False))
    close(got, first(torch.func.functional_call(module, one, args, kwargs)), "shared call")
    plain = hn.materialize(module, {k: v.detach() for k, v in one.items()}, strict=False)
    close(first(plain(*args, **kwargs)), got.detach(), "materialize")


def test_cases_cover_every_parametrised_torch_layer_asked_for():
    kinds = {type(c.make()) for c in CASES if not c.name.endswith("from_config")}
    for layer in (nn.Bilinear, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.EmbeddingBag, nn.RMSNorm, nn.PReLU,
                  nn.MultiheadAttention, nn.TransformerDecoderLayer, nn.LSTM, nn.GRU):
        assert layer in kinds, layer


# --- refused, with an error that names the module ----------------------------------------------------------


class ReadsChild(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return x @ self.fc.weight.mT


REFUSED = [
    ("sync_batch_norm", lambda: nn.SyncBatchNorm(3), x(3, 4), r"SyncBatchNorm '' cannot use per-example"),
    ("embedding_max_norm", lambda: nn.Embedding(5, 3, max_norm=1.0), ids(5), r"Embedding '' has max_norm=1.0"),
    ("parent_reads_child", ReadsChild, x(4), r"'fc.weight' holds one tensor per example"),
    ("mha_bias_kv", lambda: nn.MultiheadAttention(8, 2, add_bias_kv=True, batch_first=True), attention(3, 3, 8),
     r"add_bias_kv/add_zero_attn"),
]


@pytest.mark.parametrize("name, make, inputs, match", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_with_a_named_error(name, make, inputs, match):
    module = make()
    args, kwargs = inputs()
    params = {k: v.detach().expand(B, *v.shape) for k, v in module.named_parameters()}
    with pytest.raises(hn.PerExampleError, match=match):
        hn.functional_call(module, params, args, kwargs, per_example=True)


def test_global_hooks_are_refused_per_example():
    net = nn.Linear(3, 2)
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, a, o: o)
    try:
        with pytest.raises(hn.PerExampleError, match="global module hooks are registered"):
            hn.functional_call(net, {"weight": torch.zeros(B, 2, 3)}, torch.randn(B, 3), per_example=True,
                               strict=False)
    finally:
        handle.remove()


def test_vmap_failure_names_the_module():
    class Item(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(2))

        def forward(self, x):
            return x * self.w if self.w.sum().item() > 0 else x

    with pytest.raises(hn.PerExampleError, match=r"per-example Item '' has no batched kernel and torch.func.vmap"):
        hn.functional_call(Item(), {"w": torch.ones(B, 2)}, torch.randn(B, 2), per_example=True)


def test_kernel_choice_follows_the_class_not_isinstance():
    kernels = hn._kernels
    assert kernels.find_kernel(nn.Linear(2, 2)) is kernels.linear_kernel
    assert kernels.find_kernel(nn.MultiheadAttention(4, 2).out_proj) is kernels.linear_kernel  # no own forward
    assert kernels.find_kernel(TwiceLinear(2, 2)) is None
    assert kernels.find_kernel(StdConv2d(1, 1, 1)) is None
    assert kernels.find_kernel(OwnConvForward(1, 1, 1)) is None


def test_gpt2_conv1d_takes_a_kernel_and_keeps_lora_factored():
    transformers = pytest.importorskip("transformers")
    conv = transformers.pytorch_utils.Conv1D(48, 40)  # weight (in 40, out 48)
    assert hn._kernels.find_kernel(conv) is hn._kernels.transposed_linear_kernel
    x = torch.randn(16, 3, 40)
    a, b = torch.randn(16, 2, 48, requires_grad=True), torch.randn(16, 40, 2, requires_grad=True)
    factors = {"weight": hn.LoRA(a, b)}
    with LargestTensor() as probe:
        got = hn.functional_call(conv, factors, x, per_example=True, mode="lora", strict=False)
        got.square().sum().backward()
    assert probe.largest < 16 * 40 * 48
    dense = conv.weight.detach() + b @ a  # (16, 40, 48)
    want = torch.cat([torch.func.functional_call(conv, {"weight": dense[i]}, (x[i:i + 1],)) for i in range(16)])
    close(got, want, "Conv1D with per-example LoRA", atol=1e-4)


@pytest.mark.parametrize("mode", ["residual", "lora"])
def test_ties_in_residual_and_lora_modes(mode):
    torch.manual_seed(0)
    lm = TiedLM()
    ids = torch.randint(0, 11, (B, 5))
    if mode == "residual":
        delta = torch.randn(B, 11, 6) * 0.1
        params, dense = {"emb.weight": delta}, lm.emb.weight.detach() + delta
    else:
        a, b = torch.randn(B, 2, 6) * 0.3, torch.randn(B, 11, 2) * 0.3
        params, dense = {"emb.weight": hn.LoRA(a, b)}, lm.emb.weight.detach() + b @ a
    got = hn.functional_call(lm, params, ids, per_example=True, mode=mode, strict=False)
    want = torch.cat([torch.func.functional_call(lm, {"emb.weight": dense[i]}, (ids[i:i + 1],)) for i in range(B)])
    close(got, want, f"tied LM, {mode}")  # the head uses the generated table too
    one = {"emb.weight": hn.LoRA(a[0], b[0])} if mode == "lora" else {"emb.weight": delta[0]}
    plain = hn.materialize(lm, one, mode=mode, strict=False)
    assert plain.head.weight is plain.emb.weight
    close(plain(ids), torch.func.functional_call(lm, {"emb.weight": dense[0]}, (ids,)), f"materialize, {mode}")
