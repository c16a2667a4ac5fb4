"""The jobs of reproduction ``inr``: (A) few-shot adaptation of a SIREN on Fashion-MNIST, (B) fitting
and quantising one photo with D'OH or a plain SIREN. See ``inr`` for the claims and the run."""

from __future__ import annotations

import time

import torch

from ..data import load_fashion_mnist
from ..functional import functional_call
from ..methods.inr import (
    DOH,
    RANGE_BITS,
    SEED_BITS,
    adapt_sgd,
    coordinate_grid,
    fit_inr,
    hyperplanes,
    psnr,
    quantized_bits,
    siren,
)

# --- A: few-shot adaptation ---------------------------------------------------------------------
SIDE, FRACTION, WIDTH, DEPTH = 28, 0.15, 32, 2
K = int(FRACTION * SIDE * SIDE)  # observed pixels per image
BATCH, QUERY = 16, 256  # images per training step; random pixels of each scored (observed or not)
FOURIER, SIGMA = 64, 3.0  # the set encoder's Fourier features of the coordinates
INNER_LR, MAML_STEPS = 1e-2, 5  # MAML's meta-training inner loop
SGD_STEPS = (1, 5, 20)
SGD_LRS = (3e-3, 1e-2, 3e-2, 1e-1)  # test-time step sizes, chosen per k on validation images
TUNE_SEED = 100  # the seed of the learning-rate tuning runs (evaluation seeds are 0, 1, ...)
TRAIN_IMAGES, VAL_START = 20000, 50000  # training images x[:20000]; validation x[50000:] (both from train)


def _observe(images: torch.Tensor, gen: torch.Generator):
    """Random K of the 784 pixels of each image: (coords (B, K, 2), values (B, K, 1), mask (B, 784))."""
    grid = coordinate_grid(SIDE, SIDE)
    order = torch.stack([torch.randperm(SIDE * SIDE, generator=gen) for _ in range(len(images))])
    seen = order[:, :K]
    mask = torch.zeros(len(images), SIDE * SIDE, dtype=torch.bool).scatter_(1, seen, True)
    return grid[seen], torch.gather(images, 1, seen.unsqueeze(-1)), mask


def _split(name: str, n: int) -> torch.Tensor:
    """(n, 784, 1) images of the ``train`` / ``val`` / ``test`` split in [0, 1]."""
    x, _ = load_fashion_mnist("test" if name == "test" else "train")
    start = {"train": 0, "val": VAL_START, "test": 0}[name]
    return x[start:start + n].reshape(-1, SIDE * SIDE, 1)


def _loss(method: str, inr, model, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mean squared error on QUERY random pixels of each image after adapting to its K observed ones."""
    coords, values, _ = _observe(images, gen)
    idx = torch.randint(0, SIDE * SIDE, (len(images), QUERY), generator=gen)
    query, target = coordinate_grid(SIDE, SIDE)[idx], torch.gather(images, 1, idx.unsqueeze(-1))
    if method == "universal":
        pred = inr(query)
    elif method == "maml":
        adapted = adapt_sgd(inr, coords, values, MAML_STEPS, INNER_LR, create_graph=True)
        pred = functional_call(inr, adapted, (query,), per_example=True)
    else:
        pred = model(query, cond=torch.cat([coords, values], -1))
    return (pred - target).square().mean()


def train_few_shot(method: str, steps: int, lr: float, seed: int, train: torch.Tensor):
    """Adam at ``lr`` for ``steps`` steps of BATCH images: (the shared SIREN θ, the hypernetwork or None)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    inr = siren(2, WIDTH, DEPTH, 1)
    model = None
    if method == "hyperplanes":
        model = hyperplanes(inr, in_features=3, set_size=K, fourier=FOURIER, sigma=SIGMA, seed=seed)
    opt = torch.optim.Adam([p for p in (model or inr).parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        loss = _loss(method, inr, model, train[torch.randint(0, len(train), (BATCH,), generator=gen)], gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return inr, model


def _predict(method: str, inr, model, coords, values, k: int = 0, lr: float = 0.0) -> torch.Tensor:
    """Every pixel (B, 784, 1) of each image after adapting to its observations (B, K, ·)."""
    grid = coordinate_grid(SIDE, SIDE).expand(len(coords), -1, -1)
    if method == "maml":
        adapted = adapt_sgd(inr, coords, values, k, lr)
        with torch.no_grad():
            return functional_call(inr, adapted, (grid,), per_example=True)
    with torch.no_grad():
        return inr(grid) if method == "universal" else model(grid, cond=torch.cat([coords, values], -1))


def _unseen_psnr(pred: torch.Tensor, images: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean over images of the PSNR (dB) on the pixels not observed."""
    unseen = ~mask
    mse = ((pred.squeeze(-1) - images.squeeze(-1)).square() * unseen).sum(1) / unseen.sum(1)
    return (10 * torch.log10(1 / mse.clamp_min(1e-12))).mean().item()


def _timed(fn, repeats: int = 3):
    """(fn(), the fastest of ``repeats`` wall times in seconds): the least disturbed by other load."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def tune_few_shot(job) -> list[dict]:
    """Train ``method`` at one Adam rate on the tuning seed; its validation PSNR (MAML: after its
    meta-training inner loop)."""
    method, steps, lr, n_val = job
    torch.set_num_threads(1)
    inr, model = train_few_shot(method, steps, lr, TUNE_SEED, _split("train", TRAIN_IMAGES))
    val = _split("val", n_val)
    coords, values, mask = _observe(val, torch.Generator().manual_seed(2000 + TUNE_SEED))
    pred = _predict(method, inr, model, coords, values, MAML_STEPS, INNER_LR)
    return [{"part": "tune_few_shot", "method": method, "lr": lr, "steps": steps,
             "val_psnr": _unseen_psnr(pred, val, mask)}]


def few_shot(job) -> list[dict]:
    """Train ``method`` on ``seed``; PSNR on the unobserved pixels of the test images and adaptation time.
    MAML is evaluated after 1, 5 and 20 SGD steps, each at the step size best on validation images."""
    method, steps, lr, seed, n_val, n_test = job
    torch.set_num_threads(1)
    inr, model = train_few_shot(method, steps, lr, seed, _split("train", TRAIN_IMAGES))
    val, test = _split("val", n_val), _split("test", n_test)
    val_obs = _observe(val, torch.Generator().manual_seed(2000 + seed))
    coords, values, mask = _observe(test, torch.Generator().manual_seed(1000 + seed))
    rows = []
    for k in SGD_STEPS if method == "maml" else (0,):
        sgd_lr, val_scores = 0.0, {}
        if method == "maml":
            val_scores = {s: _unseen_psnr(_predict(method, inr, model, *val_obs[:2], k, s), val, val_obs[2])
                          for s in SGD_LRS}
            sgd_lr = max(val_scores, key=lambda s: val_scores[s])
        pred, seconds = _timed(lambda k=k, s=sgd_lr: _predict(method, inr, model, coords, values, k, s))
        rows.append({"part": "few_shot", "method": f"sgd, {k} steps" if method == "maml" else method,
                     "seed": seed, "train_lr": lr, "sgd_steps": k, "sgd_lr": sgd_lr,
                     "val_psnr_by_sgd_lr": {str(s): v for s, v in val_scores.items()},
                     "psnr_unobserved": _unseen_psnr(pred, test, mask),
                     "adapt_ms_per_image": seconds / n_test * 1e3})
    return rows


# --- B: rate-distortion of D'OH and quantised SIRENs --------------------------------------------
DOH_TARGET_WIDTH, BITS, FIT_BATCH = 32, 8, 4096


def photo(name: str, side: int) -> torch.Tensor:
    """(side², 1) grey values in [0, 1], row-major: the photo's central square, resized."""
    from skimage import color, data, img_as_float
    from skimage.transform import resize

    img = getattr(data, name)()
    img = color.rgb2gray(img[..., :3]) if img.ndim == 3 else img_as_float(img)
    h, w = img.shape
    s = min(h, w)
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return torch.tensor(resize(img, (side, side), anti_aliasing=True), dtype=torch.float32).reshape(-1, 1)


def fit_photo(job) -> list[dict]:
    """Fit one photo with D'OH (latent ``size``) or a SIREN 2-w-w-w-1 (width ``size``), Adam at ``lr``,
    then quantise what is stored to BITS bits. Bits as the paper counts them: D'OH stores z, the
    biases and the seed; a SIREN all its weights; ``overhead_bits``: the min and max of each tensor."""
    part, kind, size, (name, side), steps, lr, seed = job
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    target, grid = photo(name, side), coordinate_grid(side, side)
    model = DOH(siren(2, DOH_TARGET_WIDTH, 3, 1), latent_dim=size, seed=seed) if kind == "doh" else siren(2, size, 3, 1)
    fit_inr(model, grid, target, steps=steps, lr=lr, batch=FIT_BATCH, seed=seed)
    with torch.no_grad():
        float_psnr = psnr(model(grid), target).item()
        if isinstance(model, DOH):
            z, biases, bits = model.quantized(BITS)
            pred, tensors, extra = model(grid, z, biases), 1 + len(biases), SEED_BITS
        else:
            weights, bits = quantized_bits(model, BITS)
            pred, tensors, extra = functional_call(model, weights, (grid,)), len(weights), 0
    overhead = tensors * RANGE_BITS
    stored = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return [{"part": part, "kind": kind, "size": size, "photo": f"{name} {side}px", "seed": seed, "lr": lr,
             "steps": steps, "values_stored": stored, "bits": bits - overhead + extra, "overhead_bits": overhead,
             "bpp": (bits - overhead + extra) / side**2, "bpp_with_overhead": (bits + extra) / side**2,
             "psnr": psnr(pred, target).item(), "psnr_float": float_psnr}]
