"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package (IDX files, gzip)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import torch

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def _read_idx(path: Path) -> torch.Tensor:
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"load_fashion_mnist: {path} is not an unsigned-byte IDX file.")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8).reshape(shape)


def load_fashion_mnist(split: str = "train", path: str | Path = FASHION_MNIST_DIR) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, 28, 28) float in [0, 1] and labels (N,) int64.

    Raises:
        FileNotFoundError: the files are missing (``apt-get install dataset-fashion-mnist``,
            which ``make install`` does as root).
    """
    if split not in _FILES:
        raise ValueError(f"load_fashion_mnist: split must be 'train' or 'test', got {split!r}.")
    path = Path(path)
    images, labels = (path / name for name in _FILES[split])
    for f in (images, labels):
        if not f.exists():
            raise FileNotFoundError(f"load_fashion_mnist: {f} not found; install Debian's "
                                    "dataset-fashion-mnist package or pass path=.")
    x = _read_idx(images).unsqueeze(1).float() / 255.0
    return x, _read_idx(labels).long()
