"""Memory of a training step, estimated without running it.

The step (forward, a loss, backward) is traced on fake tensors (shapes and dtypes, no data, no
compute: ``torch._subclasses.FakeTensorMode``) while every tensor storage it creates is counted from
its creation until it is freed; the largest total at any moment is the step's peak. Tensors that
exist before the step (parameters, buffers, optimiser state) are not part of that peak and are added
by arithmetic. Work buffers that a kernel allocates and frees inside one call are invisible to the
count; the one large case known, CPU convolutions, is added by a rule (``_REORDERING``). Not
counted: other kernels' work buffers and the allocator's rounding.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.weak import WeakIdKeyDictionary

from ._shadow import shadow_tree

# Optimiser state per trainable value, in units of the parameter's size.
OPTIMISER_STATE = {"adam": 2, "adamw": 2, "sgd": 0, "sgd_momentum": 1}


class PeakTensorMemory(TorchDispatchMode):
    """Bytes of the tensors created inside the context, alive at once: ``peak`` (and ``live`` now).

    Counts each new storage from the op that creates it until it is freed; tensors that existed
    before (parameters, inputs) and views of them are not counted. Works on real and on fake
    tensors, on any device (on the CPU, where torch has no ``max_memory_allocated``, it is the
    tensor-level equivalent). Work buffers that a kernel frees before it returns are not seen (CPU
    convolutions' are added by a rule, see ``_REORDERING``). ``on_created(tensor)`` is called for
    each counted tensor (a hook for subclasses).

    Example:
        >>> with PeakTensorMemory() as mem:
        ...     y = torch.ones(1024) * 2  # two tensors of 4 KiB alive at once
        >>> mem.peak
        8192
    """

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._seen = WeakIdKeyDictionary()

    def on_created(self, tensor: torch.Tensor) -> None:
        """Called for every tensor whose storage is counted (subclasses may look at its shape)."""

    def _freed(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        for t in tree_flatten((args, kwargs))[0]:  # storages first met as inputs existed before: not counted
            if isinstance(t, torch.Tensor) and t.untyped_storage() not in self._seen:
                self._seen[t.untyped_storage()] = None
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                if storage not in self._seen:
                    nbytes = storage.nbytes()
                    self._seen[storage] = weakref.ref(storage, lambda _, n=nbytes: self._freed(n))
                    self.live += nbytes
                    self.peak = max(self.peak, self.live)
                    self.on_created(t)
        if func in _REORDERING:
            self.peak = max(self.peak, self.live + _cpu_bytes((args, kwargs)))
        return out


# Convolutions on the CPU (oneDNN) copy their tensor inputs into blocked layouts and hold the copies
# while the outputs are written: a work space of about the inputs' size, alive inside the call only.
_REORDERING = {torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default}


def _cpu_bytes(tree) -> int:
    return sum(t.numel() * t.element_size() for t in tree_flatten(tree)[0]
               if isinstance(t, torch.Tensor) and t.device.type == "cpu")


def _fake_inputs(inputs, batch_size: int | None):
    """Fake tensors (inside an active ``FakeTensorMode``) of the shapes, dtypes and devices of the
    tensors in ``inputs``, with ``batch_size`` in dim 0 when given."""
    def fake(t):
        if not isinstance(t, torch.Tensor):
            return t
        if batch_size is None:
            return torch.empty_like(t)
        if t.dim() == 0:
            raise ValueError("memory estimate: batch_size needs a batch dim (dim 0) in every tensor input, got a "
                             "0-dim tensor; pass the inputs at the batch size wanted and batch_size=None.")
        return torch.empty((batch_size, *t.shape[1:]), dtype=t.dtype, device=t.device)

    return tree_map(fake, inputs)


def training_bytes(module: nn.Module, call: Callable, inputs: tuple, batch_size: int | None = None,
                   optimizer: str = "adam") -> dict[str, int]:
    """Bytes of one training step of ``module``: ``call(module, *inputs)``, the sum of its outputs that
    need gradients, backward to every trainable tensor; traced on fake tensors (nothing is computed,
    allocated or written on ``module``: a shadow of it holds fake copies of its tensors).

    Args:
        module: the trained module (its parameters and buffers are the state).
        call: ``call(module, *inputs) -> outputs`` (any pytree of tensors).
        inputs: example inputs: only shapes, dtypes and devices are read.
        batch_size: replaces dim 0 of every tensor in ``inputs`` (None: as given).
        optimizer: one of ``OPTIMISER_STATE`` (its state per trainable value).

    Returns:
        ``{"parameters": parameters and buffers, "optimizer": optimiser state, "step": peak of the
        tensors the step creates (activations, gradients), "total": their sum}``, in bytes.
    """
    if optimizer not in OPTIMISER_STATE:
        raise ValueError(f"memory estimate: optimizer must be one of {sorted(OPTIMISER_STATE)}, got {optimizer!r}.")
    state = dict(module.named_parameters(remove_duplicate=False)) | dict(module.named_buffers(remove_duplicate=False))
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in state.values()}
    trainable = {id(p): p.numel() * p.element_size() for p in module.parameters() if p.requires_grad}

    def step(fake_state, *fake_inputs):  # .backward() fills the fake copies' .grad, as a real step fills .grad
        outputs = [t for t in tree_flatten(call(shadow_tree(module, fake_state), *fake_inputs))[0]
                   if isinstance(t, torch.Tensor) and t.requires_grad]
        if outputs:
            loss = sum((t.float().sum() for t in outputs[1:]), outputs[0].float().sum())
            del outputs  # as a training loop, which keeps the loss only
            loss.backward()

    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        fake_state = {n: mode.from_tensor(t) for n, t in state.items()}
        fake_inputs = _fake_inputs(inputs, batch_size)
    counter = PeakTensorMemory()
    with mode, counter:
        step(fake_state, *fake_inputs)
    parts = {"parameters": sum(storages.values()), "optimizer": OPTIMISER_STATE[optimizer] * sum(trainable.values()),
             "step": counter.peak}
    return {**parts, "total": sum(parts.values())}
