"""Render the computed parts of docs/results.md from committed result JSON.

Between ``<!-- claims:NAME -->`` and ``<!-- /claims:NAME -->`` the docs hold what was computed from
``docs/results/NAME.json``: the command with its wall time and commit, the verdict tally, one row
per claim (means, the difference with its 95% interval, the verdict) and the table the run
printed. ``render`` rewrites those blocks and leaves every other line alone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ._claims import tally

BLOCK = re.compile(r"(<!-- claims:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /claims:(?P=name) -->)", re.S)


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    size = abs(x)
    if 0 < size < 0.01:
        return f"{x:.2g}"  # small differences keep two significant digits
    return f"{x:.1f}" if size >= 100 else f"{x:.2f}" if size >= 10 else f"{x:.3f}"


def _signed(x: float) -> str:
    return ("+" if x >= 0 else "−") + _num(abs(x))


def claim_row(c: dict) -> str:
    """One markdown table row for a claim record."""
    if c["kind"] == "untestable":
        return f"| {c['statement']} | - | - | - | {c['reason']} | **{c['verdict']}** |"
    d, sign = c["difference"], ">" if c["direction"] == "higher" else "<"
    ours = f"{c['ours']['name']}: {_num(c['ours']['mean'])}"
    base = f"{c['baseline']['name']}: {_num(c['baseline']['mean'])}" if c["baseline"] else "-"
    what = "difference" if c["kind"] == "paired" else "ours"
    ci = f"[{_signed(d['low'])}, {_signed(d['high'])}]" if d["low"] is not None else "no interval"
    diff = f"{what} {_signed(d['mean'])} {ci}; n = {d['n']}, over {c['over']}; claimed {sign} {_num(c['against'])}"
    return f"| {c['statement']} | {c['metric']} | {ours} | {base} | {diff} | **{c['verdict']}** |"


def block(record: dict, name: str) -> str:
    """The rendered text of one reproduction's block (without its markers)."""
    claims = record["claims"]
    quick = " (quick run: checks the pipeline, not the claim)" if record.get("quick") else ""
    dirty = record.get("uncommitted")
    commit = str(record.get("commit")) + (f" + uncommitted {', '.join(dirty)}" if dirty else "")
    lines = ["```", f"{record['command']}   # {record['wall_s']:,.0f} s wall time, commit {commit}, "
             f"{record.get('threads', 1)} torch thread(s) per process{quick}", "```", "",
             f"**Computed verdicts** (from `docs/results/{name}.json`, 95% t-intervals): {tally(claims)}.", "",
             "| claim | metric | ours | baseline | interval | verdict |", "|---|---|---|---|---|---|",
             *(claim_row(c) for c in claims), "", "```", record["table"].strip("\n"), "```"]
    return "\n".join(lines) + "\n"


def render(text: str, json_dir: Path) -> str:
    """``text`` with every claims block re-rendered from ``json_dir/NAME.json``.

    Raises:
        FileNotFoundError: a block names a reproduction without committed JSON.
    """
    def one(m: re.Match) -> str:
        path = Path(json_dir) / f"{m['name']}.json"
        if not path.exists():
            raise FileNotFoundError(f"render: docs block claims:{m['name']} has no {path}; commit the JSON of a "
                                    "full run there or remove the block.")
        return m.group(1) + block(json.loads(path.read_text()), m["name"]) + m.group(4)

    return BLOCK.sub(one, text)


def blocks(text: str) -> list[str]:
    """Names of the claims blocks in ``text``, in order."""
    return [m["name"] for m in BLOCK.finditer(text)]
