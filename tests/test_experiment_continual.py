"""The ``continual`` reproduction: knobs chosen on validation only, the quick pipeline, its claims."""

import json
import warnings

from hypernetworks import cli
from hypernetworks.experiments import continual


def _row(method, strength, seed, val, test):
    """A finished run whose final validation accuracy is ``val`` and final test accuracy ``test``."""
    return {"benchmark": "split", "method": method, "strength": strength, "seed": seed,
            "matrix": [[test, test]], "val_final": [val, val]}


def test_knobs_are_chosen_on_validation_never_on_test():
    # λ = 10 is best on test, λ = 100 on validation (mean over the tuning seeds 0 and 1); seed 2 is not for tuning
    rows = [_row("ewc", 10.0, 0, 0.80, 0.99), _row("ewc", 10.0, 1, 0.80, 0.99),
            _row("ewc", 100.0, 0, 0.90, 0.50), _row("ewc", 100.0, 1, 0.86, 0.50),
            _row("ewc", 10.0, 2, 0.99, 0.99), _row("ewc", 100.0, 2, 0.10, 0.50),
            _row("hnet", 0.1, 0, 0.70, 0.9), _row("hnet", 0.1, 1, 0.70, 0.9),
            _row("hnet", 1.0, 0, 0.75, 0.1), _row("hnet", 1.0, 1, 0.75, 0.1)]
    chosen = continual.choose(rows, {"ewc": [10.0, 100.0], "hnet": [0.1, 1.0]}, "split", range(2))
    assert chosen == {"ewc": 100.0, "hnet": 1.0}


def test_validation_split_is_carved_from_training_data():
    bench = continual.split_fashion_mnist(2, n_val=500)
    for task in bench.tasks:
        assert len(task.xv) == 500 and len(task.x) + 500 == 12000 and len(task.xt) == 2000
        assert set(task.yv.tolist()) == {0, 1}


def test_reproduce_continual_quick(tmp_path, check_claims):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli.main(["reproduce", "continual", "--quick", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "continual-quick.json").read_text())
    rows = {(s["benchmark"], s["method"]): s for s in record["summary"]}
    assert set(rows) == {(b, m) for b in ("split", "permuted") for m in continual.METHODS}
    assert all(0 <= s["final"] <= 1 and 0 <= s["val"] <= 1 for s in rows.values())
    for bench, grid in record["config"]["grid"].items():  # every swept knob took a value from its grid
        assert all(rows[(bench, m)]["strength"] in values for m, values in grid.items())
    assert rows[("split", "hnet-beta0")]["strength"] == 0.0
    assert 0.5 < rows[("split", "hnet")]["compression"] < 1.5  # the headline is about the target's size
    claims = check_claims(record, statements=2 * 6)
    assert {c["ours"]["name"].split()[0] for c in claims} == {"hnet", "hnet-large", "hnet-beta0"}
