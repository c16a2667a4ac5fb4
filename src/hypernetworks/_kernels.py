"""Per-example forward passes of common layers: one weight set per example of the batch.

Each kernel takes the module, ``w`` (``{leaf name: tensor (B, *shape) | LowRankWeight}`` for the
tensors that are generated; the module's own tensors fill in the rest) and the module's call
arguments, and computes exactly what the module's own ``forward`` computes for each example.
``find_kernel`` gives a module a kernel only when its class's ``forward`` is the stock one.

Dense weights go through ``bmm`` / grouped convolution. Low-rank weights ``W0 + B·A`` stay
factored (``x·Aᵀ·Bᵀ``, no ``(B, O, I)`` tensor) in Linear, Embedding, MultiheadAttention and
``transformers``' Conv1D; the
convolution kernels and every module without a kernel build the dense ``(B, *weight shape)``
tensor first (``LowRankWeight.dense``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import nn


class LowRankWeight(NamedTuple):
    """A weight ``base + B·A`` kept factored: base (O, I), A (B, r, I), B (B, O, r)."""

    base: torch.Tensor
    A: torch.Tensor
    B: torch.Tensor

    def dense(self) -> torch.Tensor:
        """The full weight (..., *base.shape); for layers without a factored kernel."""
        delta = torch.matmul(self.B, self.A)  # (B, O, I·k)
        return self.base + delta.reshape(*delta.shape[:-2], *self.base.shape)

    def rows(self, chunks: int) -> tuple[LowRankWeight, ...]:
        """Split the output rows into ``chunks`` factored weights sharing A (e.g. q, k, v)."""
        return tuple(LowRankWeight(base, self.A, b)
                     for base, b in zip(self.base.chunk(chunks, 0), self.B.chunk(chunks, -2), strict=True))


class PerExampleError(ValueError):
    """A module cannot be run with per-example weights as called."""


def dense(value):
    return value.dense() if isinstance(value, LowRankWeight) else value


def batched(module_name: str, x: torch.Tensor, batch: int, dim: int = 0) -> torch.Tensor:
    """``x`` with ``batch`` examples in ``dim``; an input with one example there is shared by all
    (broadcast, e.g. position ids of shape (1, T))."""
    if x.dim() > dim and x.shape[dim] == batch:
        return x
    if x.dim() > dim and x.shape[dim] == 1:
        return x.expand(*x.shape[:dim], batch, *x.shape[dim + 1:])
    raise PerExampleError(
        f"functional_call: module '{module_name}' got an input of shape {tuple(x.shape)}, "
        f"expected batch size {batch} (or 1, shared) in dim {dim} to match the per-example weights; "
        "every module with generated tensors must see the whole batch."
    )


def linear(x: torch.Tensor, weight, bias: torch.Tensor | None) -> torch.Tensor:
    """``x (B, ..., I)`` times a weight ``(O, I)``, ``(B, O, I)`` or LowRankWeight; bias (O,) or (B, O)."""
    batch, in_features = x.shape[0], x.shape[-1]
    shared_bias = bias if bias is not None and bias.dim() == 1 else None
    if isinstance(weight, LowRankWeight):
        out_features = weight.base.shape[0]
        y = F.linear(x.reshape(-1, in_features), weight.base, shared_bias)  # (B·N, O)
        xb = x.reshape(batch, -1, in_features)  # (B, N, I)
        if xb.shape[1] == 1:  # one row per example: a broadcast product beats a batch of mat-vecs
            u = (weight.A * xb).sum(-1).unsqueeze(1)  # (B, r, I) -> (B, 1, r)
        else:
            u = torch.bmm(xb, weight.A.mT)  # (B, N, r)
        y = torch.baddbmm(y.reshape(batch, -1, out_features), u, weight.B.mT)  # (B, N, O): + (x·Aᵀ)·Bᵀ, fused
    elif weight.dim() == 3:
        out_features = weight.shape[1]
        xb = x.reshape(batch, -1, in_features)  # (B, N, I)
        if bias is not None and shared_bias is None:
            y = torch.baddbmm(bias.unsqueeze(1), xb, weight.mT)  # (B, N, O)
            return y.reshape(*x.shape[:-1], out_features)
        y = torch.bmm(xb, weight.mT)  # (B, N, O)
        if shared_bias is not None:
            y = y + shared_bias
        return y.reshape(*x.shape[:-1], out_features)
    else:
        out_features = weight.shape[0]
        y = F.linear(x, weight, shared_bias)
    if bias is not None and shared_bias is None:
        y = y.reshape(batch, -1, out_features) + bias.unsqueeze(1)  # (B, N, O)
    return y.reshape(*x.shape[:-1], out_features)


def transposed_linear_kernel(name, module: nn.Module, w, batch, x):
    """``transformers``' ``Conv1D`` (GPT-2): ``x @ W + b`` with W stored (I, O), i.e. a Linear whose
    weight is transposed; low-rank weights stay factored (``(B·A)ᵀ = Aᵀ·Bᵀ``)."""
    x = batched(name, x, batch)
    weight, bias = _params(module, w, "weight", "bias")
    if isinstance(weight, LowRankWeight):
        weight = LowRankWeight(weight.base.mT, weight.B.mT, weight.A.mT)  # base (O, I), A (B, r, I), B (B, O, r)
    else:
        weight = weight.mT  # (O, I) or (B, O, I)
    return linear(x, weight, bias)


def _channel_view(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """(B, C) -> (B, C, 1, ...) broadcastable over an input of ``ndim`` dims; (C,) -> (C, 1, ...)."""
    lead = t.shape[:-1] if t.dim() == 2 else ()
    return t.reshape(*lead, t.shape[-1], *([1] * (ndim - 2)))


def _params(module: nn.Module, w: dict, *names: str):
    return [w[n] if n in w else getattr(module, n) for n in names]


def linear_kernel(name, module: nn.Linear, w, batch, x):
    x = batched(name, x, batch)
    weight, bias = _params(module, w, "weight", "bias")
    return linear(x, weight, bias)


def conv_kernel(name, module: nn.modules.conv._ConvNd, w, batch, x):
    x = batched(name, x, batch)
    weight, bias = _params(module, w, "weight", "bias")
    weight = dense(weight)
    nd = x.dim() - 2
    conv = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
    padding = module.padding
    if module.padding_mode != "zeros":
        x = F.pad(x, module._reversed_padding_repeated_twice, mode=module.padding_mode)
        padding = 0
    if weight.dim() == nd + 3:  # (B, O, C/g, *k): one grouped conv over the batch, bias fused
        out_channels = weight.shape[1]
        if bias is not None:  # (B·O,): a per-example (B, O) bias as a view, a shared (O,) one repeated
            bias = (bias if bias.dim() == 2 else bias.expand(batch, out_channels)).reshape(-1)
        y = conv(x.reshape(1, -1, *x.shape[2:]),  # (1, B·C, *S)
                 weight.reshape(-1, *weight.shape[2:]),  # (B·O, C/g, *k)
                 bias, module.stride, padding, module.dilation, batch * module.groups)
        return y.reshape(batch, out_channels, *y.shape[2:])  # (B, O, *S')
    if bias is None or bias.dim() == 1:
        return conv(x, weight, bias, module.stride, padding, module.dilation, module.groups)
    y = conv(x, weight, None, module.stride, padding, module.dilation, module.groups)
    return y + _channel_view(bias, y.dim())


def conv_transpose_kernel(name, module: nn.modules.conv._ConvTransposeNd, w, batch, x,
                          output_size=None):
    x = batched(name, x, batch)
    weight, bias = _params(module, w, "weight", "bias")
    weight = dense(weight)
    nd = x.dim() - 2
    conv_t = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[nd - 1]
    padding = cast(tuple[int, ...], module.padding)  # a transposed convolution has no string padding
    output_padding = module._output_padding(x, output_size, list(module.stride), list(padding),
                                            list(module.kernel_size), nd, list(module.dilation))
    if weight.dim() == nd + 3:  # (B, C, O/g, *k)
        y = conv_t(x.reshape(1, -1, *x.shape[2:]),  # (1, B·C, *S)
                   weight.reshape(-1, *weight.shape[2:]),  # (B·C, O/g, *k)
                   None, module.stride, padding, output_padding,
                   batch * module.groups, module.dilation)
        y = y.reshape(batch, -1, *y.shape[2:])  # (B, O, *S')
    else:
        y = conv_t(x, weight, None, module.stride, padding, output_padding,
                   module.groups, module.dilation)
    return y if bias is None else y + _channel_view(bias, y.dim())


def batch_norm_kernel(name, module: nn.modules.batchnorm._BatchNorm, w, batch, x):
    """Statistics over the whole batch (and running stats updated) as usual; affine per example."""
    x = batched(name, x, batch)
    module._check_input_dim(x)
    factor = 0.0 if module.momentum is None else module.momentum
    if module.training and module.track_running_stats and module.num_batches_tracked is not None:
        module.num_batches_tracked.add_(1)
        if module.momentum is None:
            factor = 1.0 / float(module.num_batches_tracked)
    use_batch_stats = module.training or (module.running_mean is None and module.running_var is None)
    keep = not module.training or module.track_running_stats
    y = F.batch_norm(x, module.running_mean if keep else None, module.running_var if keep else None,
                     None, None, use_batch_stats, factor, module.eps)
    return _affine(module, w, y, lambda t: _channel_view(t, y.dim()))


def layer_norm_kernel(name, module: nn.LayerNorm, w, batch, x):
    x = batched(name, x, batch)
    y = F.layer_norm(x, module.normalized_shape, None, None, module.eps)
    k = len(module.normalized_shape)
    return _affine(module, w, y, lambda t: _trailing_view(t, y.dim(), k))


def rms_norm_kernel(name, module: nn.RMSNorm, w, batch, x):
    x = batched(name, x, batch)
    y = F.rms_norm(x, module.normalized_shape, None, module.eps)
    k = len(module.normalized_shape)
    return _affine(module, w, y, lambda t: _trailing_view(t, y.dim(), k))


def group_norm_kernel(name, module: nn.GroupNorm, w, batch, x):
    x = batched(name, x, batch)
    y = F.group_norm(x, module.num_groups, None, None, module.eps)
    return _affine(module, w, y, lambda t: _channel_view(t, y.dim()))


def _trailing_view(t: torch.Tensor, ndim: int, k: int) -> torch.Tensor:
    """(B, *ns) -> (B, 1, ..., *ns) for an input of ``ndim`` dims normalised over ``k`` dims."""
    if t.dim() == k:
        return t
    return t.reshape(t.shape[0], *([1] * (ndim - 1 - k)), *t.shape[1:])


def _affine(module, w, y, view):
    weight, bias = (w.get(n, getattr(module, n, None)) for n in ("weight", "bias"))
    if weight is not None:
        y = y * view(weight)
    if bias is not None:
        y = y + view(bias)
    return y


def embedding_kernel(name, module: nn.Embedding, w, batch, indices):
    indices = batched(name, indices, batch)
    table = w.get("weight", module.weight)
    if isinstance(table, torch.Tensor) and table.dim() == 2:
        return F.embedding(indices, table, module.padding_idx, module.max_norm, module.norm_type,
                           module.scale_grad_by_freq, module.sparse)
    for option in ("max_norm", "scale_grad_by_freq", "sparse"):
        if getattr(module, option) not in (None, False):
            raise PerExampleError(
                f"functional_call: Embedding '{name}' has {option}={getattr(module, option)}, which "
                "per-example tables do not support; build it without, or use per_example=False."
            )
    flat = indices.reshape(batch, -1)  # (B, N)
    rows = torch.arange(batch, device=indices.device).unsqueeze(1)  # (B, 1)
    if isinstance(table, LowRankWeight):  # base rows + (rows of B)·A: no (B, V, D) table
        out = F.embedding(flat, table.base) + torch.bmm(table.B[rows, flat], table.A)  # (B, N, D)
    else:
        out = table[rows, flat]  # (B, N, D)
    if module.padding_idx is not None:  # no gradient into the padding row, as F.embedding
        pad = (flat == module.padding_idx).unsqueeze(-1)
        out = torch.where(pad, out.detach(), out)
    return out.reshape(*indices.shape, out.shape[-1])


def mha_kernel(name, module: nn.MultiheadAttention, w, batch, query, key, value,
               key_padding_mask=None, need_weights=True, attn_mask=None,
               average_attn_weights=True, is_causal=False):
    """Multi-head attention with per-example projections (Vaswani et al. 2017)."""
    if module.bias_k is not None or module.add_zero_attn:
        raise PerExampleError(
            f"functional_call: MultiheadAttention '{name}' uses add_bias_kv/add_zero_attn, "
            "which per-example weights do not support."
        )
    bdim = 0 if module.batch_first else 1
    query, key, value = (batched(name, t, batch, bdim) for t in (query, key, value))
    if not module.batch_first:
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))  # (B, L, E)
    get = lambda n: w.get(n, getattr(module, n))  # noqa: E731
    if module._qkv_same_embed_dim:
        wq, wk, wv = _split3(get("in_proj_weight"))  # factored weights stay factored
    else:
        wq, wk, wv = get("q_proj_weight"), get("k_proj_weight"), get("v_proj_weight")
    bias = get("in_proj_bias")
    bq, bk, bv = (None, None, None) if bias is None else bias.chunk(3, dim=-1)
    heads, embed = module.num_heads, module.embed_dim
    q, k, v = linear(query, wq, bq), linear(key, wk, bk), linear(value, wv, bv)  # (B, L|S, E)
    q, k, v = (t.reshape(batch, t.shape[1], heads, embed // heads).transpose(1, 2)
               for t in (q, k, v))  # (B, H, L|S, d)
    mask = _attention_mask(attn_mask, key_padding_mask, batch, heads, q)
    if mask is None and is_causal:
        mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril()
    dropout = module.dropout if module.training else 0.0
    weights = None
    if need_weights:
        scores = q @ k.mT / math.sqrt(q.shape[-1])  # (B, H, L, S)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
        weights = F.dropout(scores.softmax(-1), dropout, module.training)
        out = weights @ v  # (B, H, L, d)
        if average_attn_weights:
            weights = weights.mean(1)  # (B, L, S)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
    out = out.transpose(1, 2).reshape(batch, -1, embed)  # (B, L, E)
    out = linear(out, w.get("out_proj.weight", module.out_proj.weight),
                 w.get("out_proj.bias", module.out_proj.bias))
    if not module.batch_first:
        out = out.transpose(0, 1)
    return out, weights


def _split3(weight):
    return weight.rows(3) if isinstance(weight, LowRankWeight) else weight.chunk(3, dim=-2)


def _attention_mask(attn_mask, key_padding_mask, batch, heads, q):
    """Merge masks into one broadcastable to (B, H, L, S): bool (True = attend) or additive float."""
    masks = []
    if attn_mask is not None:
        if attn_mask.dim() == 3:  # (B·H, L, S)
            attn_mask = attn_mask.reshape(batch, heads, *attn_mask.shape[1:])
        masks.append(_as_additive(attn_mask, q.dtype))
    if key_padding_mask is not None:  # (B, S), True = ignore
        masks.append(_as_additive(key_padding_mask, q.dtype)[:, None, None, :])
    if not masks:
        return None
    return masks[0] if len(masks) == 1 else masks[0] + masks[1]


def _as_additive(mask: torch.Tensor, dtype) -> torch.Tensor:
    """torch's convention: a bool mask is True where attention is *not* allowed."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


# Modules refused with per-example weights: SyncBatchNorm needs cross-process statistics.
UNSUPPORTED = (nn.SyncBatchNorm,)

# {class: kernel}: a module gets the kernel of the nearest class in its MRO listed here, provided
# no class in between redefines anything but these (so its forward is the stock one).
KERNELS: dict[type[nn.Module], Callable] = {
    nn.Linear: linear_kernel,
    **dict.fromkeys((nn.Conv1d, nn.Conv2d, nn.Conv3d), conv_kernel),
    **dict.fromkeys((nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d), conv_transpose_kernel),
    **dict.fromkeys((nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d), batch_norm_kernel),
    nn.LayerNorm: layer_norm_kernel,
    nn.RMSNorm: rms_norm_kernel,
    nn.GroupNorm: group_norm_kernel,
    nn.Embedding: embedding_kernel,
    nn.MultiheadAttention: mha_kernel,
}
# Kernels for classes of other libraries, found by name so that the library need not import them.
NAMED_KERNELS: dict[tuple[str, str], Callable] = {
    ("transformers.pytorch_utils", "Conv1D"): transposed_linear_kernel,
}
_HARMLESS = {"__init__", "__module__", "__qualname__", "__doc__", "__dict__", "__weakref__", "__annotations__",
             "__firstlineno__", "__static_attributes__", "__constants__", "reset_parameters", "extra_repr",
             "__repr__"}


def find_kernel(module: nn.Module) -> Callable | None:
    """The kernel that computes exactly what ``module.forward`` does, or None (see ``KERNELS``)."""
    for cls in type(module).__mro__:
        kernel = KERNELS.get(cls) or NAMED_KERNELS.get((cls.__module__, cls.__qualname__))
        if kernel is not None:
            return kernel
        if any(name not in _HARMLESS and (callable(v) or hasattr(v, "__get__")) for name, v in vars(cls).items()):
            return None  # a subclass with its own behaviour
    return None
