"""Reproduction ``dofa``: one wavelength-conditioned network for band sets and wavelengths it never saw.

Claim (Xiong et al., "Neural plasticity-inspired multimodal foundation model for Earth observation",
DOFA, 2024): a patch embedding generated from the bands' central wavelengths lets one network serve
any combination of bands, close to a model dedicated to that combination.

Differences from the paper (no multispectral data offline): the bands are pseudo-bands computed from
the RGB of scikit-image's 8 colour photos, and the task is to name the photo and half (top or bottom)
a 32x32 patch comes from (16 classes). Splits are by column within every photo: train the left 60%,
validation the next 15%, test the right 25%.

Pseudo-bands. The camera's channels c in {B, G, R} are Gaussian spectral responses centred at
``CAMERA`` (0.46, 0.54, 0.62 µm) with width ``CAMERA_SIGMA``; pseudo-band k is a Gaussian response
centred at ``CENTRES[k]`` (9 centres evenly spaced over 0.45-0.70 µm) with width ``BAND_SIGMA``. Its
value at a pixel is the mix of that pixel's RGB weighted by the overlap of the two responses:

    band_k = sum_c w_kc · rgb_c,   w_kc ∝ ∫ N(λ; μ_k, σ_k) N(λ; μ_c, σ_c) dλ
                                        ∝ exp(-(μ_k - μ_c)² / (2 (σ_k² + σ_c²))),   sum_c w_kc = 1,

so each band is a distinct mix, and the mix changes smoothly with the centre wavelength.

Protocol. Two centres (``HELD_OUT_CENTRES``) and three combinations of the other bands
(``HELD_OUT_COMBOS``) never occur in training; every training batch takes a random subset of 1-4 of
the 7 training bands (held-out combinations redrawn). Compared on the held-out combinations and on
``CENTRE_COMBOS`` (combinations that contain a held-out centre): the DOFA ViT; the same ViT with a
fixed 7-slot patch embedding trained on the same batches with missing bands zero-filled (at test, a
held-out band is either dropped or put in the nearest free slot); and a fixed-channel ViT dedicated to
each test combination. Each model's learning rate is chosen on the validation split (its own training
bands) from ``LRS`` with seed 0.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import DOFAViT
from . import _claims
from ._common import configured, pyplot, run_jobs, save

PHOTOS = ("astronaut", "chelsea", "coffee", "colorwheel", "hubble_deep_field", "immunohistochemistry", "retina",
          "rocket")
CAMERA = (0.46, 0.54, 0.62)  # µm, centres of the B, G, R responses
CAMERA_SIGMA, BAND_SIGMA = 0.045, 0.015  # µm
CENTRES = tuple(round(0.45 + 0.03125 * k, 5) for k in range(9))  # µm, 0.45 ... 0.70
HELD_OUT_CENTRES = (2, 6)  # 0.5125 and 0.6375 µm: never in training
TRAIN_BANDS = tuple(k for k in range(len(CENTRES)) if k not in HELD_OUT_CENTRES)
Combos = tuple[tuple[int, ...], ...]
HELD_OUT_COMBOS: Combos = ((0, 4), (1, 5, 8), (0, 3, 5, 7))  # of training bands, never drawn in training
CENTRE_COMBOS: Combos = ((2,), (3, 6), (0, 2, 6, 8))  # with held-out centres
SEEN_COMBOS = ((4,), (1, 7), (0, 3, 8), (1, 4, 5, 7))  # drawable in training, for reference
SPLITS = {"train": (0.0, 0.6), "val": (0.6, 0.75), "test": (0.75, 1.0)}  # column ranges
SIZE, PATCH, DIM, BATCH, MAX_BANDS, VAL_COMBOS = 32, 8, 64, 64, 4, 12
FULL = {"seeds": 5, "steps": 1000, "lrs": (3e-4, 1e-3, 3e-3), "val_per_class": 40, "test_per_class": 60,
        "workers": 2}
QUICK = {"seeds": 1, "steps": 3, "lrs": (1e-3, 3e-3), "val_per_class": 2, "test_per_class": 3, "workers": 1}
MARGIN = 0.05  # "close to a dedicated model": at most 5 points below it


def band_weights() -> torch.Tensor:
    """``(K, 3)`` weights of R, G, B (columns in that order) in each pseudo-band; rows sum to 1."""
    mu = torch.tensor(CENTRES, dtype=torch.float64).unsqueeze(1)  # (K, 1)
    cam = torch.tensor(CAMERA[::-1], dtype=torch.float64)  # (3,): R, G, B
    w = torch.exp(-(mu - cam) ** 2 / (2 * (BAND_SIGMA**2 + CAMERA_SIGMA**2)))  # (K, 3)
    return (w / w.sum(1, keepdim=True)).float()


def pseudo_bands(rgb: torch.Tensor) -> torch.Tensor:
    """``(3, H, W)`` RGB in [0, 1] -> ``(K, H, W)`` pseudo-bands in [0, 1] (the module docstring's mix)."""
    if rgb.dim() != 3 or rgb.shape[0] != 3:
        raise ValueError(f"pseudo_bands: expected an RGB image of shape (3, H, W), got {tuple(rgb.shape)}.")
    return torch.einsum("kc,chw->khw", band_weights(), rgb)  # (K, H, W)


def load_photos() -> list[torch.Tensor]:
    """The ``PHOTOS`` as ``(K, H, W)`` pseudo-band stacks in [-0.5, 0.5]."""
    from skimage import data

    out = []
    for name in PHOTOS:
        rgb = torch.tensor(getattr(data, name)()[..., :3], dtype=torch.float32).permute(2, 0, 1) / 255  # (3, H, W)
        out.append(pseudo_bands(rgb) - 0.5)
    return out


def crops(photos: list[torch.Tensor], split: str, per_class: int, gen: torch.Generator):
    """``per_class`` random 32x32 crops of each class (photo x half) from ``split``'s columns:
    ``(N, K, 32, 32)`` and labels ``(N,)``, N = 16 · per_class."""
    lo_frac, hi_frac = SPLITS[split]
    xs, ys = [], []
    for p, img in enumerate(photos):
        h, w = img.shape[1:]
        lo, hi = int(lo_frac * w), int(hi_frac * w) - SIZE
        for half in range(2):
            top, bottom = half * (h // 2), (half + 1) * (h // 2) - SIZE
            rows = torch.randint(top, bottom + 1, (per_class,), generator=gen).tolist()
            cols = torch.randint(lo, hi + 1, (per_class,), generator=gen).tolist()
            xs += [img[:, r:r + SIZE, c:c + SIZE] for r, c in zip(rows, cols, strict=True)]
            ys += [2 * p + half] * per_class
    return torch.stack(xs), torch.tensor(ys)


def draw_combo(gen: torch.Generator) -> tuple[int, ...]:
    """A random subset of 1-4 training bands (sorted), never one of ``HELD_OUT_COMBOS``."""
    while True:
        size = int(torch.randint(1, MAX_BANDS + 1, (1,), generator=gen))
        picks = torch.randperm(len(TRAIN_BANDS), generator=gen)[:size].tolist()
        combo = tuple(sorted(TRAIN_BANDS[i] for i in picks))
        if combo not in HELD_OUT_COMBOS:
            return combo


def slots(combo: tuple[int, ...], nearest: bool) -> list[tuple[int, int]]:
    """``(band, slot)`` pairs placing ``combo`` into the fixed network's ``TRAIN_BANDS`` slots. A held-out
    band is dropped, or with ``nearest`` put in the free slot of the nearest training band (ties: shorter)."""
    pairs = [(b, TRAIN_BANDS.index(b)) for b in combo if b in TRAIN_BANDS]
    for b in (b for b in combo if b not in TRAIN_BANDS and nearest):
        taken = {s for _, s in pairs}
        free = [s for s in range(len(TRAIN_BANDS)) if s not in taken]
        pairs.append((b, min(free, key=lambda s: (abs(CENTRES[TRAIN_BANDS[s]] - CENTRES[b]), TRAIN_BANDS[s]))))
    return pairs


class FixedChannelViT(nn.Module):
    """The DOFA ViT with an ordinary ``channels``-slot patch embedding: ``(B, channels, H, W) -> (B, classes)``."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.vit = DOFAViT(SIZE, PATCH, num_classes, DIM)
        del self.vit.patch_embed  # replaced by the fixed-channel embedding below
        self.embed = nn.Conv2d(channels, DIM, PATCH, stride=PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2) + self.vit.pos  # (B, N, E)
        return self.vit.head(self.vit.norm(self.vit.encoder(tokens)).mean(1))


def _logits(kind: str, model: nn.Module, x: torch.Tensor, combo: tuple[int, ...], nearest: bool = False):
    """The model's logits on the bands ``combo`` of ``x (B, K, H, W)``."""
    if kind == "dofa":
        return model(x[:, list(combo)], torch.tensor([CENTRES[b] for b in combo]))
    if kind == "dedicated":
        return model(x[:, list(combo)])
    filled = x.new_zeros(x.shape[0], len(TRAIN_BANDS), *x.shape[2:])  # (B, 7, H, W), missing bands zero
    for band, slot in slots(combo, nearest):
        filled[:, slot] = x[:, band]
    return model(filled)


def _accuracy(kind, model, x, y, combo, nearest=False) -> float:
    with torch.no_grad():
        return (_logits(kind, model, x, combo, nearest).argmax(1) == y).float().mean().item()


def _run(job) -> dict:
    """Train one model; return its validation accuracy and its test accuracy per evaluated combination."""
    kind, combo, lr, seed, cfg = job
    torch.set_num_threads(1)
    photos = load_photos()
    data_gen = torch.Generator().manual_seed(12345)  # the same validation and test crops for every run
    xv, yv = crops(photos, "val", cfg["val_per_class"], data_gen)
    xt, yt = crops(photos, "test", cfg["test_per_class"], data_gen)
    val_combos = [draw_combo(data_gen) for _ in range(VAL_COMBOS)]
    torch.manual_seed(seed)
    classes = 2 * len(PHOTOS)
    if kind == "dofa":
        model = DOFAViT(SIZE, PATCH, classes, DIM)
    else:
        model = FixedChannelViT(len(TRAIN_BANDS) if kind == "fixed" else len(combo), classes)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    start = time.time()
    for _ in range(cfg["steps"]):
        x, y = crops(photos, "train", BATCH // classes, gen)  # (64, K, 32, 32), 4 per class
        loss = F.cross_entropy(_logits(kind, model, x, combo or draw_combo(gen)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    train_s = time.time() - start
    model.eval()
    if kind == "dedicated":
        val = _accuracy(kind, model, xv, yv, combo)
        test = {_name(combo): _accuracy(kind, model, xt, yt, combo)}
    else:
        val = statistics.fmean(_accuracy(kind, model, xv, yv, c) for c in val_combos)
        test = {_name(c): _accuracy(kind, model, xt, yt, c) for c in SEEN_COMBOS + HELD_OUT_COMBOS + CENTRE_COMBOS}
        if kind == "fixed":
            test |= {_name(c) + " nearest": _accuracy(kind, model, xt, yt, c, nearest=True) for c in CENTRE_COMBOS}
    return {"kind": kind, "combo": _name(combo) if combo else None, "lr": lr, "seed": seed, "val": val,
            "test": test, "train_s": train_s, "params": sum(p.numel() for p in model.parameters())}


def _name(combo: tuple[int, ...]) -> str:
    """``"481/575"``: the bands' centres in nm, a held-out centre starred."""
    return "/".join(f"{1000 * CENTRES[b]:.0f}" + ("*" if b in HELD_OUT_CENTRES else "") for b in combo)


def _models() -> list[tuple[str, tuple[int, ...] | None]]:
    """``(kind, combo)`` of every model trained per seed (combo None: trained on random subsets)."""
    shared: list[tuple[str, tuple[int, ...] | None]] = [("dofa", None), ("fixed", None)]
    return shared + [("dedicated", c) for c in HELD_OUT_COMBOS + CENTRE_COMBOS]


def _key(kind: str, combo: tuple[int, ...] | None) -> tuple[str, str | None]:
    return kind, _name(combo) if combo else None


def _select(rows: list[dict]) -> dict:
    """``{(kind, combo name): lr}``: per model, the learning rate with the best seed-0 validation accuracy."""
    best = {}
    for model in _models():
        rs = [r for r in rows if (r["kind"], r["combo"]) == _key(*model)]
        best[_key(*model)] = max(rs, key=lambda r: r["val"])["lr"]
    return best


def _per_seed(rows, kind, combo, key) -> list[float]:
    rs = sorted((r for r in rows if (r["kind"], r["combo"]) == (kind, combo)), key=lambda r: r["seed"])
    return [r["test"][key] for r in rs]


def _group(rows, kind, combos, suffix="") -> list[float]:
    """Per seed, the mean test accuracy of a multi-combination model over ``combos``."""
    per_combo = [_per_seed(rows, kind, None, _name(c) + suffix) for c in combos]
    return [statistics.fmean(vals) for vals in zip(*per_combo, strict=True)]


def _dedicated(rows, combos) -> list[float]:
    per_combo = [_per_seed(rows, "dedicated", _name(c), _name(c)) for c in combos]
    return [statistics.fmean(vals) for vals in zip(*per_combo, strict=True)]


def _claims_of(rows) -> list[dict]:
    """Per seed, mean test accuracy over a group of held-out combinations, paired by seed."""
    claims = []
    for group, combos in (("held-out combinations of seen bands", HELD_OUT_COMBOS),
                          ("combinations with held-out centres", CENTRE_COMBOS)):
        ours = _group(rows, "dofa", combos)
        claims.append(_claims.paired(f"{group}: DOFA beats the fixed-channel ViT with missing bands zero-filled",
                                     "mean test accuracy", ours, _group(rows, "fixed", combos),
                                     ours_name="dofa, random subsets", baseline_name="fixed, zero-filled"))
        if combos == CENTRE_COMBOS:
            claims.append(_claims.paired(f"{group}: DOFA beats the fixed-channel ViT with each held-out band in the "
                                         "nearest free slot", "mean test accuracy", ours,
                                         _group(rows, "fixed", combos, " nearest"), ours_name="dofa, random subsets",
                                         baseline_name="fixed, nearest slot"))
        claims.append(_claims.paired(f"{group}: DOFA is close to (at most {100 * MARGIN:.0f} points below) ViTs "
                                     "dedicated to each combination", "mean test accuracy", ours,
                                     _dedicated(rows, combos), ours_name="dofa, random subsets",
                                     baseline_name="dedicated per combination", against=-MARGIN))
    return claims


def _table(rows, lrs: dict) -> str:
    seeds = len({r["seed"] for r in rows if r["kind"] == "dofa"})

    def cell(vals):
        return f"{100 * statistics.fmean(vals):>7.1f} ± {100 * statistics.pstdev(vals):<4.1f}" if vals else " " * 14

    cols = ("DOFA ViT", "fixed, zero-filled", "fixed, nearest slot", "dedicated")
    lines = ["test accuracy (%) naming photo and half of a 32x32 patch (16 classes, chance 6.2%), by bands at test",
             f"time (centres in nm; * = never seen in training); mean ± std over {seeds} seed(s)",
             f"{'bands':<20}{'group':<18}" + "".join(f"{c:>22}" for c in cols)]
    groups = (("seen", SEEN_COMBOS), ("held out", HELD_OUT_COMBOS), ("held-out centre", CENTRE_COMBOS))
    for group, combos in groups:
        for c in combos:
            name = _name(c)
            cells = [_per_seed(rows, "dofa", None, name), _per_seed(rows, "fixed", None, name),
                     _per_seed(rows, "fixed", None, name + " nearest") if c in CENTRE_COMBOS else [],
                     _per_seed(rows, "dedicated", name, name) if c not in SEEN_COMBOS else []]
            lines.append(f"{name:<20}{group:<18}" + "".join(f"{cell(v):>22}" for v in cells))
    chosen = [f"{lrs[('dofa', None)]:.0e}", f"{lrs[('fixed', None)]:.0e}", f"{lrs[('fixed', None)]:.0e}", "per model"]
    lines.append(f"{'learning rate':<38}" + "".join(f"{v:>22}" for v in chosen))
    return "\n".join(lines)


def _plot(rows, path) -> None:
    plt = pyplot()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.4), gridspec_kw={"width_ratios": [1, 2.4]})
    w = band_weights()
    for c, (label, colour) in enumerate((("R", "tab:red"), ("G", "tab:green"), ("B", "tab:blue"))):
        ax0.plot([1000 * m for m in CENTRES], w[:, c].tolist(), "o-", color=colour, label=f"weight of {label}")
    for k in HELD_OUT_CENTRES:
        ax0.axvline(1000 * CENTRES[k], color="grey", ls=":")
    ax0.set(xlabel="pseudo-band centre (nm; dotted: held out)", ylabel="mix weight")
    ax0.legend(fontsize=7)
    combos = HELD_OUT_COMBOS + CENTRE_COMBOS
    xs = range(len(combos))

    def mean(vals):
        return 100 * statistics.fmean(vals)

    ax1.plot(xs, [mean(_per_seed(rows, "dofa", None, _name(c))) for c in combos], "o-", label="DOFA, random subsets")
    ax1.plot(xs, [mean(_per_seed(rows, "fixed", None, _name(c))) for c in combos], "s-", label="fixed, zero-filled")
    ax1.plot(xs[len(HELD_OUT_COMBOS):], [mean(_per_seed(rows, "fixed", None, _name(c) + " nearest"))
                                         for c in CENTRE_COMBOS], "v--", label="fixed, nearest slot")
    ax1.plot(xs, [mean(_per_seed(rows, "dedicated", _name(c), _name(c))) for c in combos], "^", ms=8,
             label="dedicated per combination")
    ax1.axvline(len(HELD_OUT_COMBOS) - 0.5, color="grey", ls=":")
    ax1.set_xticks(list(xs), [_name(c) for c in combos], fontsize=7)
    ax1.set(xlabel="bands at test time (nm); left: held-out combinations, right: held-out centres (*)",
            ylabel="test accuracy (%)")
    ax1.legend(fontsize=7)
    save(fig, path)


def run(quick: bool, out_dir, log=print) -> dict:
    cfg = configured(QUICK if quick else FULL)
    job_cfg = {k: cfg[k] for k in ("steps", "val_per_class", "test_per_class")}
    sweep = [(kind, combo, lr, 0, job_cfg) for kind, combo in _models() for lr in cfg["lrs"]]
    log(f"dofa: {len(sweep)} seed-0 runs over learning rates {cfg['lrs']}, then {cfg['seeds'] - 1} more seed(s) "
        f"of {len(_models())} models; {cfg['steps']} steps each")
    swept = run_jobs(_run, sweep, cfg["workers"])
    lrs = _select(swept)
    chosen = [r for r in swept if lrs[(r["kind"], r["combo"])] == r["lr"]]
    more = [(kind, combo, lrs[_key(kind, combo)], seed, job_cfg) for seed in range(1, cfg["seeds"])
            for kind, combo in _models()]
    rows = chosen + run_jobs(_run, more, cfg["workers"])
    plot = out_dir / "dofa.png"
    _plot(rows, plot)
    config = cfg | {"centres_um": CENTRES, "held_out_centres": HELD_OUT_CENTRES,
                    "band_weights_RGB": band_weights().tolist(), "held_out_combos": list(map(_name, HELD_OUT_COMBOS)),
                    "centre_combos": list(map(_name, CENTRE_COMBOS)),
                    "chosen_lr": {f"{k} {c or 'random subsets'}": v for (k, c), v in lrs.items()}}
    return {"config": config,
            "claims": _claims_of(rows), "sweep": swept, "runs": rows, "table": _table(rows, lrs), "plot": str(plot)}

