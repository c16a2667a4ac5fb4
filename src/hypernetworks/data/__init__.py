"""Offline loaders for the real data sets the reproductions use (nothing is downloaded)."""

from .fashion_mnist import FASHION_MNIST_DIR as FASHION_MNIST_DIR
from .fashion_mnist import load_fashion_mnist as load_fashion_mnist
from .fortunes import fortune_categories as fortune_categories
from .fortunes import load_fortunes as load_fortunes
from .mnist_subset import load_mnist_subset as load_mnist_subset
from .photos import photo_patches as photo_patches

__all__ = [
    "FASHION_MNIST_DIR",
    "fortune_categories",
    "load_fashion_mnist",
    "load_fortunes",
    "load_mnist_subset",
    "photo_patches",
]
