"""Value checks on user input that never poison a device.

A check of values (ids in range, γ in [0, 1], finite weights) needs the values on the host. On the
CPU that is free, so it runs by default and raises an ordinary ``ValueError``. On an accelerator it
costs one device synchronisation per call, so it is off by default and explicit (``validate=True``),
in the spirit of ``torch.distributions``' ``validate_args``. No check is a device-side assert: those
lose the message and leave a CUDA context unusable.
"""

from __future__ import annotations

import torch
from torch._subclasses.fake_tensor import is_fake


def check_values(ok: torch.Tensor, message: str, validate: bool | None = None) -> None:
    """Raise ``ValueError(message)`` unless every element of the bool tensor ``ok`` is True.

    Args:
        ok: the condition, elementwise.
        message: the one-line error.
        validate: ``None`` checks on the CPU only (free); ``True`` also on accelerators (one device
            sync; not inside ``torch.compile`` there); ``False`` never.
    """
    on_cpu = ok.device.type == "cpu"
    if validate is False or (validate is None and not on_cpu):
        return
    if torch.compiler.is_compiling():
        if not on_cpu:
            raise ValueError(f"{message.split(':')[0]}: validate=True on {ok.device.type} needs a device sync, "
                             "which torch.compile cannot trace; validate eagerly, or pass validate=False.")
        torch._assert_async(ok.all(), message)  # pyright: ignore[reportPrivateImportUsage]  (CPU: raises at once)
        return
    if is_fake(ok):  # traced for a memory estimate: no values to check
        return
    if not bool(ok.all()):
        raise ValueError(message)
