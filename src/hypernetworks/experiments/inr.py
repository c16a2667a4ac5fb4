"""Reproduction ``inr``: few-shot INR adaptation (HyperPlanes) and random-projection compression (D'OH).

A. Few-shot reconstruction on Fashion-MNIST: observe 15% of the pixels of an unseen image and
   predict the rest with a SIREN: the HyperPlanes-style Δθ hypernetwork (its set encoder reads the
   coordinates as Fourier features) in one forward pass, against a MAML-trained θ + 1, 5 or 20 SGD
   steps, and a universal θ (no adaptation). PSNR on the unobserved pixels against adaptation wall
   time. Claim: Δθ matches few-step fine-tuning at several times less adaptation time. Adam rates
   (hypernetwork, MAML) and the test-time SGD step sizes are chosen on validation images.
B. Rate-distortion on scikit-image photos (grey, 256 and 512 px): D'OH over a sweep of latent sizes vs
   directly trained SIRENs of several widths, both quantised to 8 bits; each method's Adam rate chosen
   on a held-out photo; bits counted as the paper does (latent + biases + seed), the quantisation
   ranges shown apart. Claim: D'OH reaches a given PSNR with fewer stored bits.
"""

from __future__ import annotations

import statistics

from . import _claims
from ._common import configured, pyplot, run_jobs, save
from .inr_tasks import BITS, SGD_STEPS, K, few_shot, fit_photo, tune_few_shot

FULL = {"seeds": 3, "steps": 10000, "universal_steps": 2000, "tune_steps": 1000, "val_images": 500,
        "test_images": 1000, "fit_steps": 2500, "workers": 1}
QUICK = {"seeds": 1, "steps": 3, "universal_steps": 3, "tune_steps": 2, "val_images": 20, "test_images": 20,
         "fit_steps": 5, "workers": 1}
TRAIN_LRS = (3e-4, 1e-3, 3e-3)  # Adam rates swept for the hypernetwork and for MAML's θ
FIT_LRS = (1e-3, 3e-3, 1e-2, 3e-2)  # Adam rates swept for D'OH and for the SIRENs
PHOTOS = (("camera", 256), ("astronaut", 256), ("coffee", 256), ("camera", 512), ("astronaut", 512), ("moon", 512))
TUNE_PHOTO = ("chelsea", 256)  # held out: the fit rates are chosen on it
LATENTS = (128, 256, 512, 1024)
WIDTHS = (8, 12, 16, 20, 24)
TUNE_SIZE = {"doh": 512, "siren": 16}  # the sizes the rates are tuned at (about equal bits)
UNIVERSAL_LR = 1e-3  # the universal θ is a reference row, not in a claim: not tuned


def _dispatch(job):
    if job[0] == "tune_few_shot":
        return tune_few_shot(job[1:])
    return few_shot(job[1:]) if job[0] == "few_shot" else fit_photo(job)


def _best(rows, key: str, score: str) -> dict:
    """{value of ``key``'s group: the lr with the highest ``score``} over tuning rows."""
    out = {}
    for group in dict.fromkeys(r[key] for r in rows):
        rs = [r for r in rows if r[key] == group]
        out[group] = max(rs, key=lambda r: r[score])["lr"]
    return out


def _tune(cfg, quick: bool, log) -> tuple[dict, dict, list]:
    """Run both sweeps: ({few-shot method: Adam rate}, {fit kind: Adam rate}, their rows)."""
    photo = ("chelsea", 32) if quick else TUNE_PHOTO
    jobs = [("tune_few_shot", m, cfg["tune_steps"], lr, cfg["val_images"]) for m in ("hyperplanes", "maml")
            for lr in TRAIN_LRS]
    jobs += [("tune_fit", kind, TUNE_SIZE[kind], photo, cfg["fit_steps"], lr, 0) for kind in ("doh", "siren")
             for lr in FIT_LRS]
    log(f"inr: tuning, {len(jobs)} jobs")
    rows = [r for rs in run_jobs(_dispatch, jobs, cfg["workers"]) for r in rs]
    train = _best([r for r in rows if r["part"] == "tune_few_shot"], "method", "val_psnr")
    fit = _best([r for r in rows if r["part"] == "tune_fit"], "kind", "psnr")
    return train, fit, rows


def _jobs(cfg, quick: bool, train_lr: dict, fit_lr: dict) -> list:
    seeds = range(cfg["seeds"])
    steps = {"maml": cfg["steps"], "hyperplanes": cfg["steps"], "universal": cfg["universal_steps"]}
    jobs = [("few_shot", m, n, train_lr.get(m, UNIVERSAL_LR), s, cfg["val_images"], cfg["test_images"])
            for m, n in steps.items() for s in seeds]
    photos, latents, widths = (((("camera", 32), ("coffee", 32)), LATENTS[:1], WIDTHS[:2]) if quick
                               else (PHOTOS, LATENTS, WIDTHS))
    for p in photos:
        jobs += [("fit", "doh", n, p, cfg["fit_steps"], fit_lr["doh"], 0) for n in latents]
        jobs += [("fit", "siren", w, p, cfg["fit_steps"], fit_lr["siren"], 0) for w in widths]
    return jobs


def _interp(x: float, xs: list[float], ys: list[float]) -> float | None:
    """Linear interpolation of the curve (xs ascending, ys) at x; None outside [xs[0], xs[-1]]."""
    for i in range(len(xs) - 1):
        if xs[i] <= x <= xs[i + 1]:
            return ys[i] + (ys[i + 1] - ys[i]) * (x - xs[i]) / (xs[i + 1] - xs[i])
    return None


def _gaps(rd: list[dict], photo: str) -> list[float]:
    """D'OH's PSNR minus the quantised SIRENs' interpolated at D'OH's bits per pixel, at each D'OH rate
    inside the SIRENs' range of rates."""
    sirens = sorted((r for r in rd if (r["photo"], r["kind"]) == (photo, "siren")), key=lambda r: r["bpp"])
    out = []
    for d in sorted((r for r in rd if (r["photo"], r["kind"]) == (photo, "doh")), key=lambda r: r["bpp"]):
        s = _interp(d["bpp"], [r["bpp"] for r in sirens], [r["psnr"] for r in sirens])
        if s is not None:
            out.append(d["psnr"] - s)
    return out


def _few(rows, method: str, key: str = "psnr_unobserved") -> list[float]:
    rs = sorted((r for r in rows if r["part"] == "few_shot" and r["method"] == method), key=lambda r: r["seed"])
    return [r[key] for r in rs]


def _claims_of(rows) -> list[dict]:
    """(A) paired by seed: HyperPlanes vs SGD from MAML's θ with 5 and 1 steps (PSNR), and its speed-up
    over 5 steps; (B) per photo size and over all photos, over photos: D'OH's PSNR gap to the quantised
    SIRENs at equal bits per pixel (paper's count), averaged over its rates inside the SIRENs' range."""
    hp, metric = _few(rows, "hyperplanes"), "PSNR on unobserved pixels (dB)"
    claims = [_claims.paired("A: HyperPlanes' Δθ matches (at most 0.25 dB below) 5 SGD steps from MAML's θ", metric,
                             hp, _few(rows, "sgd, 5 steps"), ours_name="hyperplanes", baseline_name="sgd, 5 steps",
                             against=-0.25),
              _claims.paired("A: HyperPlanes' Δθ beats 1 SGD step from MAML's θ", metric, hp,
                             _few(rows, "sgd, 1 steps"), ours_name="hyperplanes", baseline_name="sgd, 1 steps"),
              _claims.target("A: HyperPlanes adapts at least 2x faster than 5 SGD steps",
                             "adaptation time ratio (sgd 5 steps / hyperplanes)",
                             [m / h for m, h in zip(_few(rows, "sgd, 5 steps", "adapt_ms_per_image"),
                                                    _few(rows, "hyperplanes", "adapt_ms_per_image"), strict=True)],
                             ours_name="hyperplanes", against=2.0)]
    rd = [r for r in rows if r["part"] == "fit"]
    photos = list(dict.fromkeys(r["photo"] for r in rd))
    sides = list(dict.fromkeys(p.split()[-1] for p in photos))
    groups = {f"{side} photos": [p for p in photos if p.endswith(side)] for side in sides}
    if len(sides) > 1:
        groups["all photos"] = photos
    for group, members in groups.items():
        gaps = {p: _gaps(rd, p) for p in members}
        statement = (f"B: {group}: D'OH reaches a higher PSNR than quantised SIRENs at the same bits per "
                     "pixel (latent + biases + seed)")
        kept = [p for p in members if gaps[p]]
        if not kept:
            claims.append(_claims.untestable(statement, "no D'OH rate falls inside the SIRENs' range of rates"))
            continue
        means = [statistics.fmean(gaps[p]) for p in kept]
        claims.append(_claims.target(statement, "D'OH's PSNR minus the SIRENs' at equal bpp (dB), mean over its "
                                     "rates", means, ours_name="doh - siren", against=0.0,
                                     over=f"photos ({', '.join(kept)})"))
    return claims


def _tables(rows, train_lr: dict, fit_lr: dict) -> str:
    lines = [f"A. Fashion-MNIST, {K} of 784 pixels observed; PSNR (dB) on the unobserved pixels of the test images",
             f"{'method':<16} {'PSNR':>7} {'sd':>5} {'adapt ms/image':>15} {'train lr':>9} {'SGD lr per seed':>16}"]
    fs = [r for r in rows if r["part"] == "few_shot"]
    for method in dict.fromkeys(r["method"] for r in fs):
        rs = [r for r in fs if r["method"] == method]
        vals = [r["psnr_unobserved"] for r in rs]
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        sgd = ",".join(f"{r['sgd_lr']:g}" for r in rs) if rs[0]["sgd_steps"] else "-"
        ms = statistics.fmean(r["adapt_ms_per_image"] for r in rs)
        lines.append(f"{method:<16} {statistics.fmean(vals):>7.2f} {sd:>5.2f} {ms:>15.3f} {rs[0]['train_lr']:>9g} "
                     f"{sgd:>16}")
    lines += ["", "Tuning (validation images, tuning seed): Adam rate -> validation PSNR (dB)"]
    for r in (r for r in rows if r["part"] == "tune_few_shot"):
        lines.append(f"  {r['method']:<12} lr {r['lr']:<7g} {r['val_psnr']:>7.2f}")
    lines.append("Tuning (held-out photo): Adam rate -> PSNR (dB) after quantisation")
    for r in (r for r in rows if r["part"] == "tune_fit"):
        lines.append(f"  {r['kind']:<6} size {r['size']:<5} lr {r['lr']:<7g} {r['psnr']:>7.2f}")
    lines.append(f"chosen: few-shot {train_lr}; fits {fit_lr}")
    lines += ["", f"B. Photos, stored values quantised to {BITS} bits; bits per pixel as the paper counts them and "
              "with the per-tensor ranges; PSNR (dB) quantised and float",
              f"{'photo':<15} {'model':<6} {'size':>5} {'bits':>7} {'ranges':>6} {'bpp':>7} {'bpp+rng':>7} "
              f"{'PSNR':>6} {'float':>6}"]
    rd = [r for r in rows if r["part"] == "fit"]
    for r in sorted(rd, key=lambda r: (r["photo"], r["kind"], r["bpp"])):
        lines.append(f"{r['photo']:<15} {r['kind']:<6} {r['size']:>5} {r['bits']:>7} {r['overhead_bits']:>6} "
                     f"{r['bpp']:>7.4f} {r['bpp_with_overhead']:>7.4f} {r['psnr']:>6.2f} {r['psnr_float']:>6.2f}")
    return "\n".join(lines)


def _plot_few_shot(ax, rows) -> None:
    fs = [r for r in rows if r["part"] == "few_shot"]

    def point(method):
        rs = [r for r in fs if r["method"] == method]
        vals = [r["psnr_unobserved"] for r in rs]
        return (statistics.fmean(r["adapt_ms_per_image"] for r in rs), statistics.fmean(vals),
                statistics.stdev(vals) if len(vals) > 1 else 0.0)

    sgd = [point(f"sgd, {k} steps") for k in SGD_STEPS]
    ax.errorbar([p[0] for p in sgd], [p[1] for p in sgd], [p[2] for p in sgd], fmt="o-", label="MAML θ + SGD")
    for k, p in zip(SGD_STEPS, sgd, strict=True):
        ax.annotate(f"{k}", (p[0], p[1]), textcoords="offset points", xytext=(4, -10), fontsize=7)
    for method, fmt in (("hyperplanes", "*"), ("universal", "x")):
        x, y, e = point(method)
        ax.errorbar([x], [y], [e], fmt=fmt, markersize=10, label=method)
    ax.set(xscale="log", title=f"A: {K} of 784 pixels seen", xlabel="adaptation ms / image",
           ylabel="PSNR unseen (dB)")
    ax.legend(fontsize=7)


def _plot(rows, path) -> None:
    plt = pyplot()
    rd = [r for r in rows if r["part"] == "fit"]
    photos = list(dict.fromkeys(r["photo"] for r in rd))
    cols = 4
    n_rows = (len(photos) + 1 + cols - 1) // cols
    fig, axes = plt.subplots(n_rows, cols, figsize=(3.4 * cols, 3 * n_rows), squeeze=False)
    flat = list(axes.flat)
    _plot_few_shot(flat[0], rows)
    for ax, photo in zip(flat[1:], photos, strict=False):
        for kind, label in (("doh", "D'OH (latent sweep)"), ("siren", "quantised SIREN (width sweep)")):
            rs = sorted((r for r in rd if (r["photo"], r["kind"]) == (photo, kind)), key=lambda r: r["bpp"])
            ax.plot([r["bpp"] for r in rs], [r["psnr"] for r in rs], "o-", label=label)
        ax.set(title=f"B: {photo}", xlabel="bits per pixel (latent + biases + seed)", ylabel="PSNR (dB)")
    flat[1].legend(fontsize=7)
    for ax in flat[len(photos) + 1:]:
        ax.axis("off")
    save(fig, path)


def run(quick: bool, out_dir, log=print) -> dict:
    cfg = configured(QUICK if quick else FULL)
    train_lr, fit_lr, tuning = _tune(cfg, quick, log)
    jobs = _jobs(cfg, quick, train_lr, fit_lr)
    log(f"inr: {len(jobs)} jobs, {cfg['workers']} worker process(es), 1 thread each; chosen {train_lr}, {fit_lr}")
    rows = tuning + [r for rs in run_jobs(_dispatch, jobs, cfg["workers"]) for r in rs]
    plot = out_dir / "inr.png"
    _plot(rows, plot)
    config = {**cfg, "train_lrs_swept": TRAIN_LRS, "fit_lrs_swept": FIT_LRS, "chosen_train_lr": train_lr,
              "chosen_fit_lr": fit_lr, "tune_photo": TUNE_PHOTO, "photos": PHOTOS, "latents": LATENTS,
              "widths": WIDTHS, "universal_lr": UNIVERSAL_LR}
    return {"config": config, "claims": _claims_of(rows), "runs": rows, "table": _tables(rows, train_lr, fit_lr),
            "plot": str(plot)}
