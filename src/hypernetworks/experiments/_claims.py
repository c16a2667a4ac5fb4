"""Claim records: per-seed numbers in, a 95% interval and a verdict out, by one rule.

A claim compares a per-seed quantity ``q`` with a reference value ``against`` in a claimed
direction (``"higher"`` or ``"lower"``):

- ``paired``: ``q_i = ours_i - baseline_i`` for each seed ``i`` (both lists in the same seed
  order); ``against`` is 0, or a margin (``against=-0.01`` with ``"higher"`` reads "ours is at
  most 1 point worse", a non-inferiority claim).
- ``target``: ``q_i = ours_i``; ``against`` is a fixed threshold (``accuracy >= 0.5``).

Interval: the mean of ``q`` ± t(0.975, n - 1) · sd(q) / √n over the n values (Student's t, sample
standard deviation), for n >= 2. With n = 1 there is no interval.

Verdict rule (the only one; docs render it, prose never upgrades it), for ``"higher"``:

- ``reproduced``: n >= 2 and the interval's lower end is above ``against``;
- ``not reproduced``: the mean is at or below ``against`` (this covers an interval wholly below);
- ``partly``: otherwise: the mean is on the claimed side but the interval reaches ``against``, or
  n = 1 (one seed, no interval).

``"lower"`` mirrors it. ``untestable`` records a claim this setup cannot check, with the reason:
verdict ``cannot be tested here``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

VERDICTS = ("reproduced", "partly", "not reproduced", "cannot be tested here")
DIRECTIONS = ("higher", "lower")
# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t975(df: int) -> float:
    """Two-sided 95% quantile of Student's t with ``df`` degrees of freedom (a table to 30, then the
    Cornish-Fisher expansion around the normal 1.96, exact to 3 decimals)."""
    if df < 1:
        raise ValueError(f"t975: degrees of freedom must be >= 1, got {df}.")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def interval(values: Sequence[float]) -> dict:
    """Mean and 95% t-interval of ``values``: ``{"mean", "low", "high", "n"}`` (no low/high when n = 1)."""
    vals = [float(v) for v in values]
    if not vals or not all(math.isfinite(v) for v in vals):
        raise ValueError(f"interval: expected one or more finite values, got {vals}.")
    mean = statistics.fmean(vals)
    if len(vals) == 1:
        return {"mean": mean, "low": None, "high": None, "n": 1}
    half = t975(len(vals) - 1) * statistics.stdev(vals) / math.sqrt(len(vals))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": len(vals)}


def verdict(stats: dict, direction: str, against: float) -> str:
    """The verdict of an ``interval`` result for a claim that it lies ``direction`` of ``against``."""
    if direction not in DIRECTIONS:
        raise ValueError(f"verdict: direction must be one of {DIRECTIONS}, got {direction!r}.")
    sign = 1.0 if direction == "higher" else -1.0
    if sign * (stats["mean"] - against) <= 0:
        return "not reproduced"
    if stats["n"] >= 2:
        near = stats["low"] if direction == "higher" else stats["high"]
        if sign * (near - against) > 0:
            return "reproduced"
    return "partly"


def _side(name: str, values: Sequence[float]) -> dict:
    vals = [float(v) for v in values]
    return {"name": name, "values": vals, "mean": statistics.fmean(vals)}


def paired(statement: str, metric: str, ours: Sequence[float], baseline: Sequence[float], *, ours_name: str,
           baseline_name: str, direction: str = "higher", against: float = 0.0, over: str = "seeds") -> dict:
    """A claim that ``ours - baseline`` (paired, value by value) lies ``direction`` of ``against``.

    Args:
        statement: the claim in one sentence, as the docs will show it.
        metric: what the numbers are, with units (``"test accuracy"``, ``"PSNR (dB)"``).
        ours: per-seed values of the method, (n,).
        baseline: per-seed values of the baseline in the same order, (n,).
        ours_name: label of the method's row.
        baseline_name: label of the baseline's row.
        direction: ``"higher"`` or ``"lower"``: which way the difference is claimed to go.
        against: the value the difference is compared with (0, or a margin).
        over: what the values range over (``"seeds"``, ``"rate points"``).

    Raises:
        ValueError: when the lists differ in length or hold non-finite values.
    """
    if len(ours) != len(baseline):
        raise ValueError(f"paired: {statement!r}: ours has {len(ours)} values, the baseline {len(baseline)}; "
                         "pair them by seed.")
    stats = interval([o - b for o, b in zip(ours, baseline, strict=True)])
    return {"statement": statement, "metric": metric, "kind": "paired", "over": over, "direction": direction,
            "against": against, "ours": _side(ours_name, ours), "baseline": _side(baseline_name, baseline),
            "difference": stats, "verdict": verdict(stats, direction, against)}


def target(statement: str, metric: str, ours: Sequence[float], *, ours_name: str, direction: str = "higher",
           against: float, over: str = "seeds") -> dict:
    """A claim that the method's own value lies ``direction`` of the fixed threshold ``against``.

    Args are as for ``paired``; the interval is of ``ours`` itself, compared with ``against``.
    """
    stats = interval(ours)
    return {"statement": statement, "metric": metric, "kind": "target", "over": over, "direction": direction,
            "against": against, "ours": _side(ours_name, ours), "baseline": None, "difference": stats,
            "verdict": verdict(stats, direction, against)}


def untestable(statement: str, reason: str) -> dict:
    """A claim this setup cannot check; ``reason`` says why."""
    return {"statement": statement, "metric": None, "kind": "untestable", "reason": reason,
            "verdict": "cannot be tested here"}


def tally(claims: Sequence[dict]) -> str:
    """``"2 of 5 reproduced, 1 partly, 2 not reproduced"``: the counts of each verdict, in fixed order."""
    counts = {v: sum(c["verdict"] == v for c in claims) for v in VERDICTS}
    head = f"{counts['reproduced']} of {len(claims)} reproduced"
    rest = [f"{counts[v]} {v}" for v in VERDICTS[1:] if counts[v]]
    return ", ".join([head, *rest])
