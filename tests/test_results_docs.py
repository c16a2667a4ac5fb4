"""docs/results.md's computed blocks match the committed JSON of full runs, and the renderer works."""

import json
from pathlib import Path

import pytest

from hypernetworks import cli
from hypernetworks.experiments import REPRODUCTIONS, _claims, _docs

ROOT = Path(__file__).resolve().parents[1]
DOCS, JSON_DIR = ROOT / "docs" / "results.md", ROOT / "docs" / "results"


def test_docs_match_committed_json():
    text = DOCS.read_text()
    assert _docs.render(text, JSON_DIR) == text, "run `hypernetworks results render` and commit docs/results.md"


def test_every_committed_json_is_a_full_run_rendered_in_the_docs():
    names = _docs.blocks(DOCS.read_text())
    assert len(names) == len(set(names))
    for path in sorted(JSON_DIR.glob("*.json")):
        record = json.loads(path.read_text())
        assert path.stem in REPRODUCTIONS and path.stem in names
        assert record["quick"] is False and record["name"] == path.stem
        for c in record["claims"]:  # verdicts follow from the stored numbers
            if c["kind"] != "untestable":
                assert c["verdict"] == _claims.verdict(c["difference"], c["direction"], c["against"])


def _record(verdict_values):
    claims = [_claims.paired("ours beats base", "acc", ours, base, ours_name="a", baseline_name="b")
              for ours, base in verdict_values]
    return {"name": "mip", "quick": False, "command": "hypernetworks reproduce mip", "wall_s": 12.3, "commit": "abc",
            "threads": 1, "table": "a table\n", "claims": claims}


def test_render_replaces_only_the_blocks(tmp_path):
    (tmp_path / "mip.json").write_text(json.dumps(_record([([0.9, 0.95], [0.8, 0.8]), ([0.7], [0.8])])))
    text = "intro\n<!-- claims:mip -->\nstale\n<!-- /claims:mip -->\nafter\n"
    out = _docs.render(text, tmp_path)
    assert out.startswith("intro\n<!-- claims:mip -->\n```\nhypernetworks reproduce mip   # 12 s wall time, commit abc")
    assert out.endswith("<!-- /claims:mip -->\nafter\n") and "stale" not in out
    assert "0 of 2 reproduced, 1 partly, 1 not reproduced" in out  # t(1) is wide: 2 seeds only give "partly"
    assert "| ours beats base | acc | a: 0.925 | b: 0.800 | difference +0.125 [" in out
    assert _docs.render(out, tmp_path) == out  # rendering is idempotent
    with pytest.raises(FileNotFoundError, match="claims:ghn has no"):
        _docs.render("<!-- claims:ghn -->\n<!-- /claims:ghn -->\n", tmp_path)


def test_cli_render_and_check(tmp_path, capsys):
    (tmp_path / "mip.json").write_text(json.dumps(_record([([0.9, 0.91, 0.92], [0.8, 0.8, 0.81])])))
    docs = tmp_path / "results.md"
    docs.write_text("<!-- claims:mip -->\n<!-- /claims:mip -->\n")
    args = ["results", "render", "--docs", str(docs), "--json-dir", str(tmp_path)]
    with pytest.raises(SystemExit, match="differs"):
        cli.main([*args, "--check"])
    cli.main(args)
    assert "**reproduced**" in docs.read_text()
    cli.main([*args, "--check"])
    assert "matches" in capsys.readouterr().out

