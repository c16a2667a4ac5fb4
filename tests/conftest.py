"""Shared fixtures."""

import pytest

from hypernetworks.experiments import _claims


def _check_claims(record: dict, statements: int = 1) -> list[dict]:
    """A quick run's record holds at least ``statements`` claims, each verdict recomputed from the numbers
    stored next to it (so none can be written by hand)."""
    assert record["quick"] is True
    claims = record["claims"]
    assert isinstance(claims, list) and len(claims) >= statements
    for c in claims:
        assert c["verdict"] in _claims.VERDICTS and c["statement"]
        if c["kind"] == "untestable":
            assert c["verdict"] == "cannot be tested here" and c["reason"]
            continue
        ours = c["ours"]["values"]
        values = ours if c["kind"] == "target" else [o - b for o, b in zip(ours, c["baseline"]["values"], strict=True)]
        stats = _claims.interval(values)
        assert stats["n"] == c["difference"]["n"] == len(ours)
        assert abs(stats["mean"] - c["difference"]["mean"]) < 1e-9
        assert c["verdict"] == _claims.verdict(stats, c["direction"], c["against"])
    return claims


@pytest.fixture
def check_claims():
    return _check_claims
