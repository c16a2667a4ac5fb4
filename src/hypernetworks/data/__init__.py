"""Offline loaders for the real data sets the reproductions use (nothing is downloaded)."""

from .fashion_mnist import FASHION_MNIST_DIR as FASHION_MNIST_DIR
from .fashion_mnist import load_fashion_mnist as load_fashion_mnist
from .fortunes import load_fortunes as load_fortunes
from .photos import photo_patches as photo_patches

__all__ = ["FASHION_MNIST_DIR", "load_fashion_mnist", "load_fortunes", "photo_patches"]
