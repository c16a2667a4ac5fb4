"""The claim records and their one verdict rule."""

import math

import pytest

from hypernetworks.experiments import _claims


def test_t_quantiles_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 4, 9, 29, 30, 31, 40, 100, 1000):
        assert _claims.t975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1.5e-3)


def test_interval_by_hand():
    # mean 2, sample sd 1, n 3: half width t(2) / sqrt(3) = 4.303 / 1.732
    got = _claims.interval([1.0, 2.0, 3.0])
    assert got["mean"] == 2.0 and got["n"] == 3
    assert got["high"] - 2.0 == pytest.approx(4.303 / math.sqrt(3))
    assert _claims.interval([0.5]) == {"mean": 0.5, "low": None, "high": None, "n": 1}
    with pytest.raises(ValueError, match="finite"):
        _claims.interval([1.0, float("nan")])


@pytest.mark.parametrize(("ours", "base", "direction", "against", "expected"), [
    ([0.9, 0.91, 0.92], [0.8, 0.8, 0.81], "higher", 0.0, "reproduced"),      # interval above 0
    ([0.9, 0.7, 0.95], [0.8, 0.8, 0.81], "higher", 0.0, "partly"),           # mean above, interval spans 0
    ([0.7, 0.71, 0.72], [0.8, 0.8, 0.81], "higher", 0.0, "not reproduced"),  # wrong way
    ([0.8, 0.8], [0.8, 0.8], "higher", 0.0, "not reproduced"),               # a tie is not a win
    ([0.7, 0.71, 0.72], [0.8, 0.8, 0.81], "lower", 0.0, "reproduced"),
    ([0.79, 0.795, 0.8], [0.8, 0.8, 0.8], "higher", -0.02, "reproduced"),    # non-inferior within 2 points
    ([0.9], [0.8], "higher", 0.0, "partly"),                                 # one seed: no interval
    ([0.7], [0.8], "higher", 0.0, "not reproduced"),
])
def test_paired_verdicts(ours, base, direction, against, expected):
    c = _claims.paired("s", "m", ours, base, ours_name="a", baseline_name="b", direction=direction, against=against)
    assert c["verdict"] == expected
    assert c["difference"]["mean"] == pytest.approx(sum(ours) / len(ours) - sum(base) / len(base))


def test_target_and_untestable():
    assert _claims.target("s", "m", [0.6, 0.62, 0.61], ours_name="a", against=0.5)["verdict"] == "reproduced"
    assert _claims.target("s", "m", [0.4, 0.7], ours_name="a", against=0.5)["verdict"] == "partly"
    assert _claims.target("s", "m", [1.0, 1.2], ours_name="a", direction="lower", against=1.5)["verdict"] \
        == "partly"  # n = 2: t(1) = 12.7 makes the interval wide
    u = _claims.untestable("s", "no data")
    assert u["verdict"] == "cannot be tested here"
    assert _claims.tally([u, _claims.target("s", "m", [1.0], ours_name="a", against=0)]) \
        == "0 of 2 reproduced, 1 partly, 1 cannot be tested here"


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="pair them by seed"):
        _claims.paired("s", "m", [1.0], [1.0, 2.0], ours_name="a", baseline_name="b")
    with pytest.raises(ValueError, match="direction must be one of"):
        _claims.target("s", "m", [1.0], ours_name="a", direction="up", against=0)
