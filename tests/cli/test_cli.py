"""The `mine` console script, end to end through typer's runner.

Real-data tests (marked slow) use a small slice of ../shared/data/ashare with a temporary config
and leaderboard, so they never touch the user's `.alphamine/` files.
"""
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from data.config import load_config
from mining.cli import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _config(tmp_path: Path, **gp) -> Path:
    root = load_config(REPO / "mine.toml").data.root
    gp_lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in gp.items())
    text = f"""
[data]
root = "{root}"
[evaluate]
train = ["2017-01-01", "2018-06-30"]
valid = ["2018-07-01", "2018-12-31"]
test = ["2019-01-01", "2019-06-30"]
embargo = 20
[store]
path = "{tmp_path / 'lb.db'}"
min_valid_rank_ic = 0.0
[gp]
{gp_lines}
"""
    p = tmp_path / "mine.toml"
    p.write_text(text)
    return p


def test_ops_and_fields_list_the_registries():
    from data.fields import FIELDS
    from factors.operators import all_ops
    r = runner.invoke(app, ["ops"])
    assert r.exit_code == 0
    for op in all_ops():
        assert op.name in r.output
    r = runner.invoke(app, ["fields"])
    assert r.exit_code == 0
    for f in FIELDS:
        assert f in r.output


def test_bad_formula_is_a_clear_error(tmp_path):
    cfg = _config(tmp_path)
    r = runner.invoke(app, ["--config", str(cfg), "eval", "close + __import__('os')"])
    assert r.exit_code == 2
    assert "__import__" in r.output and "column" in r.output


def test_unknown_universe_is_a_clear_error(tmp_path):
    cfg = _config(tmp_path)
    r = runner.invoke(app, ["--config", str(cfg), "eval", "close", "--universe", "csi42"])
    assert r.exit_code == 2
    assert "csi42" in r.output and "csi300" in r.output


def test_missing_data_root_says_how_to_fix(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text(f'[data]\nroot = "{tmp_path / "nowhere"}"\n')
    r = runner.invoke(app, ["--config", str(p), "eval", "close"])
    assert r.exit_code == 2
    assert "nowhere" in r.output and "root" in r.output


@pytest.mark.slow
def test_eval_json_on_real_data(tmp_path):
    cfg = _config(tmp_path)
    r = runner.invoke(app, ["--config", str(cfg), "eval",
                            "-ts_corr(cs_rank(vol), cs_rank(close), 10)", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["formula"] == "-ts_corr(cs_rank(vol), cs_rank(close), 10)"
    assert set(out["splits"]) == {"train", "valid"}          # test sealed by default
    for split in ("train", "valid"):
        m = out["splits"][split]
        for key in ("rank_ic_mean", "rank_icir", "ic_mean", "icir", "turnover",
                    "ls_ann_return", "ls_sharpe", "coverage"):
            assert key in m
        assert 0.5 < m["coverage"] <= 1.0
        assert -1 < m["rank_ic_mean"] < 1
    r = runner.invoke(app, ["--config", str(cfg), "eval", "close / ts_delay(close, 5)",
                            "--json", "--unseal-test"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert set(out["splits"]) == {"train", "valid", "test"} and out["test_unsealed"]


@pytest.mark.slow
def test_gp_end_to_end_writes_leaderboard(tmp_path):
    cfg = _config(tmp_path, universe="csi300", start="2017-01-01", end="2018-12-31",
                  population=40, generations=2, top=3, seed=1,
                  fields=["close", "open", "vol", "ret"])
    r = runner.invoke(app, ["--config", str(cfg), "gp"])
    assert r.exit_code == 0, r.output
    assert "gen 2/2" in r.output
    r = runner.invoke(app, ["--config", str(cfg), "leaderboard", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert 1 <= len(rows) <= 3
    assert all(row["source"] == "gp" for row in rows)
    for row in rows:
        assert row["train_rank_ic_mean"] > 0             # oriented on train
        assert row["valid_rank_ic_mean"] is not None
        assert row["n_tried"] > 0
    r = runner.invoke(app, ["--config", str(cfg), "leaderboard", "--csv"])
    assert r.exit_code == 0 and r.output.splitlines()[0].startswith("id,")
    # a second identical run (same seed) finds the same programs: they are rejected as
    # duplicates, the earlier rows are untouched, and the walk goes on to further programs
    r = runner.invoke(app, ["--config", str(cfg), "gp"])
    assert r.exit_code == 0, r.output
    assert f"{len(rows)} duplicate" in r.output
    rows2 = json.loads(runner.invoke(app, ["--config", str(cfg), "leaderboard", "--json",
                                           "--top", "100"]).output)
    before = {x["formula"]: x["id"] for x in rows}
    after = {x["formula"]: x["id"] for x in rows2}
    assert all(after[f] == i for f, i in before.items())
