"""Grey-scale patches of the scikit-image sample photos (shipped with scikit-image)."""

from __future__ import annotations

import torch

PHOTOS = ("camera", "astronaut", "coffee", "chelsea", "rocket", "coins", "moon", "page", "text", "brick", "grass",
          "gravel", "horse", "hubble_deep_field", "immunohistochemistry")


def _grey(name: str) -> torch.Tensor:
    from skimage import color, data, img_as_float

    img = getattr(data, name)()
    if img.ndim == 3:
        img = color.rgb2gray(img[..., :3])
    return torch.tensor(img_as_float(img), dtype=torch.float32)


def photo_patches(n: int, size: int = 16, names: tuple[str, ...] = PHOTOS, seed: int = 0) -> torch.Tensor:
    """``n`` random ``size`` x ``size`` patches (n, 1, size, size) in [0, 1], drawn evenly from the photos."""
    gen = torch.Generator().manual_seed(seed)
    images = [_grey(name) for name in names]
    out = torch.empty(n, 1, size, size)
    for i in range(n):
        img = images[i % len(images)]
        r = torch.randint(0, img.shape[0] - size + 1, (1,), generator=gen).item()
        c = torch.randint(0, img.shape[1] - size + 1, (1,), generator=gen).item()
        out[i, 0] = img[r:r + size, c:c + size]
    return out
