"""Reproduction ``inr``: few-shot INR adaptation (HyperPlanes) and random-projection compression (D'OH).

A. Few-shot reconstruction on Fashion-MNIST: observe 15% of the pixels of an unseen image and
   predict the rest with a SIREN: universal θ (no adaptation), MAML θ + k SGD steps, the
   HyperPlanes-style Δθ hypernetwork, and a full-weight hypernetwork. PSNR on the unobserved
   pixels and adaptation time per image. Claim: Δθ matches or beats few-step fine-tuning at several
   times less adaptation time.
B. Rate-distortion on scikit-image photos (grey, 64x64, 128x128 and 256x256): D'OH over a sweep of latent
   sizes vs directly trained SIRENs of several widths, both quantised to 8 bits. Claim: D'OH reaches
   a given PSNR with fewer stored bits.
"""

from __future__ import annotations

import statistics
import time

import torch

from ..data import load_fashion_mnist
from ..functional import functional_call
from ..methods.inr import DOH, adapt_sgd, coordinate_grid, hyperplanes, psnr, quantized_bits, siren
from . import _claims
from ._common import configured, pyplot, run_jobs, save

FULL = {"seeds": 3, "steps": 1500, "test_images": 1000, "fit_steps": 2000, "workers": 2}
QUICK = {"seeds": 1, "steps": 3, "test_images": 20, "fit_steps": 5, "workers": 1}
SIDE, FRACTION, WIDTH, DEPTH = 28, 0.15, 32, 2
K = int(FRACTION * SIDE * SIDE)  # observed pixels per image
INNER_LR, MAML_STEPS = 1e-2, 5
PHOTOS = (("camera", 64), ("astronaut", 64), ("coffee", 64), ("camera", 128))  # (name, side in pixels)
LATENTS = (128, 256, 512, 1024)
WIDTHS = (6, 8, 12, 16)
LARGE = ("camera", 256), (512, 1024), (12, 16)  # a 256 px photo, fewer sizes (each fit costs 16x a 64 px one)
DOH_TARGET_WIDTH = 32
BITS = 8


def _observe(images: torch.Tensor, gen: torch.Generator):
    """Random K of the 784 pixels of each image: (coords (B, K, 2), values (B, K, 1), mask (B, 784))."""
    grid = coordinate_grid(SIDE, SIDE)
    order = torch.stack([torch.randperm(SIDE * SIDE, generator=gen) for _ in range(len(images))])
    seen = order[:, :K]
    mask = torch.zeros(len(images), SIDE * SIDE, dtype=torch.bool).scatter_(1, seen, True)
    return grid[seen], torch.gather(images, 1, seen.unsqueeze(-1)), mask


def _train_few_shot(method: str, steps: int, seed: int, train: torch.Tensor):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    grid = coordinate_grid(SIDE, SIDE)
    inr = siren(2, WIDTH, DEPTH, 1)
    model = None
    if method not in ("universal", "maml"):
        model = hyperplanes(inr, in_features=3, set_size=K, full=method == "full")
    params = [p for p in (model or inr).parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4 if method == "full" else 1e-3, fused=True)
    for _ in range(steps):
        images = train[torch.randint(0, len(train), (32,), generator=gen)]  # (B, 784, 1)
        coords, values, _ = _observe(images, gen)
        if method == "universal":
            pred = inr(grid).expand(len(images), -1, -1)
        elif method == "maml":
            adapted = adapt_sgd(inr, coords, values, MAML_STEPS, INNER_LR, create_graph=True)
            pred = functional_call(inr, adapted, (grid.expand(len(images), -1, -1),), per_example=True)
        else:
            pred = model(grid.expand(len(images), -1, -1), cond=torch.cat([coords, values], -1))
        loss = (pred - images).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return inr, model


def few_shot(job) -> list[dict]:
    method, steps, seed, n_test = job
    torch.set_num_threads(1)
    x, _ = load_fashion_mnist("train")
    xt, _ = load_fashion_mnist("test")
    train, test = x[:20000].reshape(-1, SIDE * SIDE, 1), xt[:n_test].reshape(-1, SIDE * SIDE, 1)
    inr, model = _train_few_shot(method, steps, seed, train)
    coords, values, mask = _observe(test, torch.Generator().manual_seed(1000 + seed))
    grid = coordinate_grid(SIDE, SIDE).expand(len(test), -1, -1)
    rows = []
    variants = [("maml", k) for k in (1, 5, 20)] if method == "maml" else [(method, 0)]
    for name, k in variants:
        start = time.perf_counter()
        if name == "maml":
            adapted = adapt_sgd(inr, coords, values, k, INNER_LR)
            with torch.no_grad():
                pred = functional_call(inr, adapted, (grid,), per_example=True)
        else:
            with torch.no_grad():
                pred = inr(grid) if name == "universal" else model(grid, cond=torch.cat([coords, values], -1))
        per_image_ms = (time.perf_counter() - start) / len(test) * 1e3
        unseen = ~mask
        mse = ((pred.squeeze(-1) - test.squeeze(-1)).square() * unseen).sum(1) / unseen.sum(1)
        rows.append({"part": "few_shot", "method": name if name != "maml" else f"maml, {k} steps", "seed": seed,
                     "psnr_unobserved": (10 * torch.log10(1 / mse.clamp_min(1e-12))).mean().item(),
                     "adapt_ms_per_image": per_image_ms})
    return rows


def _photo(name: str, side: int) -> torch.Tensor:
    """(side², 1) grey values in [0, 1], row-major."""
    from skimage import color, data, img_as_float
    from skimage.transform import resize

    img = getattr(data, name)()
    img = color.rgb2gray(img[..., :3]) if img.ndim == 3 else img_as_float(img)
    return torch.tensor(resize(img, (side, side), anti_aliasing=True), dtype=torch.float32).reshape(-1, 1)


def rate_distortion(job) -> list[dict]:
    """Fit one photo with D'OH (latent ``size``) or a SIREN (width ``size``): Adam with cosine decay,
    then quantise what is stored to ``BITS`` bits."""
    kind, size, (photo, side), steps, seed = job
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    target, grid = _photo(photo, side), coordinate_grid(side, side)
    model = DOH(siren(2, DOH_TARGET_WIDTH, 3, 1), latent_dim=size, seed=seed) if kind == "doh" else siren(2, size, 3, 1)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-2 if kind == "doh" else 1e-3, fused=True)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        loss = (model(grid) - target).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
    with torch.no_grad():
        float_psnr = psnr(model(grid), target).item()
        if kind == "doh":
            z, biases, bits = model.quantized(BITS)
            pred = model(grid, z, biases)
        else:
            weights, bits = quantized_bits(model, BITS)
            pred = functional_call(model, weights, (grid,))
    return [{"part": "rate_distortion", "kind": kind, "size": size, "photo": f"{photo} {side}px", "seed": seed,
             "bpp": bits / side**2, "psnr": psnr(pred, target).item(), "psnr_float": float_psnr,
             "params": sum(p.numel() for p in params)}]


def _dispatch(job):
    return few_shot(job[1:]) if job[0] == "few_shot" else rate_distortion(job[1:])


def _tables(rows) -> str:
    lines = [f"A. Fashion-MNIST, {K} of 784 pixels observed; PSNR (dB) on the unobserved pixels",
             f"{'method':<22} {'PSNR':>8} {'sd':>6} {'adapt ms/image':>15}"]
    fs = [r for r in rows if r["part"] == "few_shot"]
    for method in dict.fromkeys(r["method"] for r in fs):
        rs = [r for r in fs if r["method"] == method]
        values = [r["psnr_unobserved"] for r in rs]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        lines.append(f"{method:<22} {statistics.fmean(values):>8.2f} {spread:>6.2f} "
                     f"{statistics.fmean(r['adapt_ms_per_image'] for r in rs):>15.3f}")
    lines += ["", f"B. Photos, stored values quantised to {BITS} bits: bits per pixel and PSNR (dB), quantised and "
              "float", f"{'photo':<15} {'model':<6} {'size':>6} {'bpp':>7} {'PSNR':>7} {'float':>7}"]
    rd = [r for r in rows if r["part"] == "rate_distortion"]
    for r in sorted(rd, key=lambda r: (r["photo"], r["kind"], r["bpp"])):
        lines.append(f"{r['photo']:<15} {r['kind']:<6} {r['size']:>6} {r['bpp']:>7.3f} {r['psnr']:>7.2f} "
                     f"{r['psnr_float']:>7.2f}")
    return "\n".join(lines)


def _interp(x: float, xs: list[float], ys: list[float]) -> float | None:
    """Linear interpolation of the curve (xs ascending, ys) at x; None outside [xs[0], xs[-1]]."""
    for i in range(len(xs) - 1):
        if xs[i] <= x <= xs[i + 1]:
            return ys[i] + (ys[i + 1] - ys[i]) * (x - xs[i]) / (xs[i + 1] - xs[i])
    return None


def _claims_of(rows) -> list[dict]:
    """(A) paired by seed: HyperPlanes vs MAML with 5 and 1 steps (PSNR), and its speed-up over 5 steps;
    (B) per photo: D'OH's PSNR minus the quantised SIRENs' interpolated at D'OH's rate, over the rates
    of D'OH inside the SIRENs' range (one seed)."""
    fs = [r for r in rows if r["part"] == "few_shot"]

    def few(method, key="psnr_unobserved"):
        return [r[key] for r in sorted((r for r in fs if r["method"] == method), key=lambda r: r["seed"])]

    hp = few("hyperplanes")
    claims = [_claims.paired("A: HyperPlanes' Δθ matches (at most 0.25 dB below) 5 steps of MAML fine-tuning",
                             "PSNR on unobserved pixels (dB)", hp, few("maml, 5 steps"), ours_name="hyperplanes",
                             baseline_name="maml, 5 steps", against=-0.25),
              _claims.paired("A: HyperPlanes' Δθ beats 1 step of MAML fine-tuning", "PSNR on unobserved pixels (dB)",
                             hp, few("maml, 1 steps"), ours_name="hyperplanes", baseline_name="maml, 1 steps"),
              _claims.target("A: HyperPlanes adapts at least 2x faster than 5 steps of fine-tuning",
                             "adaptation time ratio (maml 5 steps / hyperplanes)",
                             [m / h for m, h in zip(few("maml, 5 steps", "adapt_ms_per_image"),
                                                    few("hyperplanes", "adapt_ms_per_image"), strict=True)],
                             ours_name="hyperplanes", against=2.0)]
    rd = [r for r in rows if r["part"] == "rate_distortion"]
    for photo in dict.fromkeys(r["photo"] for r in rd):
        sirens = sorted((r for r in rd if (r["photo"], r["kind"]) == (photo, "siren")), key=lambda r: r["bpp"])
        pairs = [(d["psnr"], _interp(d["bpp"], [r["bpp"] for r in sirens], [r["psnr"] for r in sirens]))
                 for d in sorted((r for r in rd if (r["photo"], r["kind"]) == (photo, "doh")), key=lambda r: r["bpp"])]
        pairs = [(d, s) for d, s in pairs if s is not None]
        statement = f"B: {photo}: D'OH reaches a higher PSNR than quantised SIRENs at the same bits per pixel"
        if not pairs:
            claims.append(_claims.untestable(statement, "no D'OH rate falls inside the SIRENs' range of rates"))
            continue
        claims.append(_claims.paired(statement, "PSNR after 8-bit quantisation (dB)", [d for d, _ in pairs],
                                     [s for _, s in pairs], ours_name="doh", baseline_name="siren, interpolated",
                                     over="rate points (one seed)"))
    return claims


def _plot(rows, path) -> None:
    plt = pyplot()
    rd = [r for r in rows if r["part"] == "rate_distortion"]
    photos = list(dict.fromkeys(r["photo"] for r in rd))
    fig, axes = plt.subplots(1, len(photos), figsize=(3.4 * len(photos), 3), squeeze=False)
    for ax, photo in zip(axes[0], photos, strict=True):
        for kind, label in (("doh", "D'OH (latent sweep)"), ("siren", "quantised SIREN (width sweep)")):
            rs = sorted((r for r in rd if (r["photo"], r["kind"]) == (photo, kind)), key=lambda r: r["bpp"])
            ax.plot([r["bpp"] for r in rs], [r["psnr"] for r in rs], "o-", label=label)
        ax.set(title=photo, xlabel="bits per pixel", ylabel="PSNR (dB)")
    axes[0][0].legend(fontsize=7)
    save(fig, path)


def run(quick: bool, out_dir, log=print) -> dict:
    cfg = configured(QUICK if quick else FULL)
    jobs = [("few_shot", m, cfg["steps"], s, cfg["test_images"]) for m in ("maml", "hyperplanes", "full", "universal")
            for s in range(cfg["seeds"])]
    jobs += [("rd", "doh", n, p, cfg["fit_steps"], 0) for n in LATENTS for p in PHOTOS]
    jobs += [("rd", "siren", w, p, cfg["fit_steps"], 0) for w in WIDTHS for p in PHOTOS]
    jobs += [("rd", "doh", n, LARGE[0], cfg["fit_steps"], 0) for n in LARGE[1]]
    jobs += [("rd", "siren", w, LARGE[0], cfg["fit_steps"], 0) for w in LARGE[2]]
    if quick:
        jobs = [j for j in jobs if j[0] == "few_shot" or (j[2] in (LATENTS[0], WIDTHS[0]) and j[3] == PHOTOS[0])]
    log(f"inr: {len(jobs)} jobs, {cfg['workers']} worker process(es), 1 thread each")
    rows = [r for rs in run_jobs(_dispatch, jobs, cfg["workers"]) for r in rs]
    plot = out_dir / "inr.png"
    _plot(rows, plot)
    return {"config": cfg, "claims": _claims_of(rows), "runs": rows, "table": _tables(rows), "plot": str(plot)}
