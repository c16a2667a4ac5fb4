import pytest
import torch

from hypernetworks.data import load_fashion_mnist, photo_patches


def test_fashion_mnist_loads_offline():
    x, y = load_fashion_mnist("test")
    assert x.shape == (10000, 1, 28, 28) and y.shape == (10000,)
    assert 0 <= x.min() and x.max() <= 1 and set(y.unique().tolist()) == set(range(10))


def test_fashion_mnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_fashion_mnist("train", path=tmp_path)
    with pytest.raises(ValueError, match="split must be"):
        load_fashion_mnist("val")


def test_photo_patches_are_deterministic():
    a, b = photo_patches(30, size=8, seed=3), photo_patches(30, size=8, seed=3)
    assert a.shape == (30, 1, 8, 8) and torch.equal(a, b) and a.std() > 0


def test_mnist_subset_loads_offline():
    from hypernetworks.data import load_mnist_subset

    x, y = load_mnist_subset()
    assert x.shape == (5000, 1, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert torch.equal(torch.bincount(y), torch.full((10,), 500))  # 500 per digit
    assert x.std() > 0.2  # real images, not blanks


def test_fortune_categories_counts_quotes(tmp_path):
    from hypernetworks.data import fortune_categories

    for name, n in [("big", 3), ("small", 1)]:
        (tmp_path / name).write_text("\n%\n".join(f"quote {i}" for i in range(n)) + "\n%\n")
        (tmp_path / f"{name}.dat").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a category")
    assert fortune_categories(path=tmp_path) == ["big", "small"]
    assert fortune_categories(min_quotes=2, path=tmp_path) == ["big"]
    with pytest.raises(FileNotFoundError, match="fortunes package"):
        fortune_categories(path=tmp_path / "missing")
