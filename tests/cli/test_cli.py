"""The `mine` console script, end to end through typer's runner.

Real-data tests (marked slow) use a small slice of ../shared/data/ashare with a temporary config
and leaderboard, so they never touch the user's `.alphamine/` files.
"""
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mining.cli import app
from mining.cli_app import load as load_config

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
max_adj_p = 1.0     # 6 months of valid: a toy GP's best valid t is ~1.8, nothing is significant
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
    out = json.loads(r.stdout)
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
    out = json.loads(r.stdout)
    assert set(out["splits"]) == {"train", "valid", "test"} and out["test_unsealed"]


@pytest.mark.slow
def test_gp_end_to_end_writes_leaderboard(tmp_path):
    cfg = _config(tmp_path, universe="csi300", start="2017-01-01", end="2018-12-31",
                  population=40, generations=2, top=3, seed=1,
                  fields=["close", "open", "vol", "ret"])
    r = runner.invoke(app, ["--config", str(cfg), "gp"])
    assert r.exit_code == 0, r.output
    assert "gen 2/2" in r.output
    assert " distinct factors, " in r.output and " computed = " in r.output   # the search's rate
    r = runner.invoke(app, ["--config", str(cfg), "leaderboard", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["rows"]
    assert 1 <= len(rows) <= 3
    assert all(row["source"] == "gp" for row in rows)
    for row in rows:
        assert row["train_rank_ic_mean"] > 0             # oriented on train
        assert row["valid_rank_ic_mean"] is not None
        assert row["n_tried"] > 0
    r = runner.invoke(app, ["--config", str(cfg), "leaderboard", "--csv"])
    assert r.exit_code == 0 and r.output.splitlines()[0].startswith("id,")
    # a second identical run (same seed, members now in the pool and among the seeds): the
    # pool-aware walk skips the members' programs on train (|corr| 1 with a member) before
    # any look at valid, the earlier rows are untouched, and the walk goes on to others
    r = runner.invoke(app, ["--config", str(cfg), "gp", "--json"])
    assert r.exit_code == 0, r.output
    second = json.loads(r.stdout)
    assert second["peak_rss_mb"] > 0                     # the process's peak RSS (issue 15)
    assert second["skipped_train_corr"] >= len(rows) and second["n_seeds"] >= len(rows)
    assert not {row["formula"] for row in rows} & {d["formula"] for d in second["accepted"]}
    assert "duplicate" not in second["rejections"]
    rows2 = json.loads(runner.invoke(app, ["--config", str(cfg), "leaderboard", "--json",
                                           "--top", "100"]).output)["rows"]
    before = {x["formula"]: x["id"] for x in rows}
    after = {x["formula"]: x["id"] for x in rows2}
    assert all(after[f] == i for f, i in before.items())


# --------------------------------------------------------------------------- conventions
# Synthetic warehouse (tests/data/ashare_synth.py): the standard workspace's 20-day decay
# horizons leave its valid split without metrics, so JSON output holds nulls where NaN was.
from ashare_synth import build_warehouse  # noqa: E402


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli_synth")
    root = build_warehouse(tmp / "wh").root
    p = tmp / "mine.toml"
    p.write_text(f"""
[data]
root = "{root}"
cache_dir = "{tmp / 'cache'}"
[evaluate]
train = ["2020-08-10", "2020-09-04"]
valid = ["2023-03-06", "2023-03-31"]
test = ["2025-07-28", "2025-08-15"]
embargo = 1
min_listed_days = 0
[store]
path = "{tmp / 'lb.db'}"
min_valid_rank_ic = 0.0
[gp]
universe = "all"
start = "2020-08-10"
population = 20
generations = 1
top = 2
n_jobs = 1
fields = ["close", "vol"]
[model]
out_dir = "{tmp / 'models'}"
""")
    return p


def _strict(text: str):
    def bad(c):
        raise AssertionError(f"non-strict JSON constant {c}")
    return json.loads(text, parse_constant=bad)


def test_ops_fields_library_json_are_strict():
    for cmd in (["ops", "--json"], ["ops", "--kind", "ts", "--json"], ["fields", "--json"],
                ["library", "--json"]):
        r = runner.invoke(app, cmd)
        assert r.exit_code == 0, r.output
        out = _strict(r.stdout)
        assert out
    ts = _strict(runner.invoke(app, ["ops", "--kind", "ts", "--json"]).output)
    assert {o["kind"] for o in ts} == {"ts"} and all(isinstance(o["min_window"], int) for o in ts)
    r = runner.invoke(app, ["ops", "--kind", "weird"])
    assert r.exit_code == 2 and "elementwise" in r.output


def test_library_set_alpha101_lists_the_set():
    r = runner.invoke(app, ["library", "--set", "alpha101", "--json"])
    assert r.exit_code == 0, r.output
    out = _strict(r.stdout)
    assert out["set"] == "alpha101" and out["unavailable"] == {}
    assert [f["name"] for f in out["library"]] == [f"alpha{n:03d}" for n in range(1, 102)]
    assert "cs_neutralize(vwap, industry)" in out["library"][57]["formula"]
    default = _strict(runner.invoke(app, ["library", "--json"]).stdout)
    assert default["set"] == "default" and "mom_60" in {f["name"] for f in default["library"]}
    r = runner.invoke(app, ["library", "--set", "alpha101"])
    assert r.exit_code == 0 and "factor library: alpha101" in r.output


def test_config_show_text_and_json(synth):
    r = runner.invoke(app, ["--config", str(synth), "config", "show"])
    assert r.exit_code == 0, r.output
    assert f"# config: {synth}" in r.output
    for section in ("[data]", "[evaluate]", "[store]", "[gp]", "[backtest]", "[llm]", "[model]"):
        assert section in r.output
    assert 'train = ["2020-08-10", "2020-09-04"]' in r.output and "population = 20" in r.output
    out = _strict(runner.invoke(app, ["--config", str(synth), "config", "show", "--json"]).output)
    assert out["source"] == str(synth) and out["sections"]["gp"]["population"] == 20
    assert out["sections"]["evaluate"]["embargo"] == 1


def test_config_show_defaults(monkeypatch):
    from data.config import Config
    from mining.cli_app import SCHEMA
    monkeypatch.setattr("mining.cli_app.load",
                        lambda p=None: Config(None, **{k: v() for k, v in SCHEMA.items()}))
    r = runner.invoke(app, ["config", "show"])
    assert r.exit_code == 0, r.output
    assert "built-in defaults" in r.output and "[gp]" in r.output
    assert _strict(runner.invoke(app, ["config", "show", "--json"]).output)["source"] is None


@pytest.fixture
def no_data(monkeypatch):
    """Any attempt to load data fails the test."""
    def boom(*a, **k):
        raise AssertionError("data loaded before option validation")
    monkeypatch.setattr("backtest.candidates.make_workspace", boom)
    monkeypatch.setattr("mining.gp_run.make_workspace", boom)
    monkeypatch.setattr("data.manager.DataManager.__init__", boom)


@pytest.mark.parametrize("args, fragment", [
    (["eval", "close", "--universe", "csi42"], "csi42"),
    (["eval", "close", "--start", "2020-13-45"], "--start"),
    (["eval", "close", "--end", "soon"], "--end"),
    (["gp", "--population", "0"], "--population"),
    (["gp", "--generations", "-1"], "--generations"),
    (["gp", "--top", "0"], "--top"),
    (["gp", "--universe", "sp500"], "sp500"),
    (["gp", "--start", "yesterday"], "--start"),
    (["leaderboard", "--sort", "bogus key"], "--sort"),
    (["leaderboard", "--sort", "test.rank_icir"], "test metrics"),
    (["leaderboard", "--source", "human"], "--source"),
    (["leaderboard", "--top", "0"], "--top"),
    (["leaderboard", "--universe", "csi42"], "csi42"),
    (["library", "--add", "--universe", "csi42"], "csi42"),
])
def test_bad_options_exit_2_before_any_data_loads(synth, no_data, args, fragment):
    r = runner.invoke(app, ["--config", str(synth), *args])
    assert r.exit_code == 2, r.output
    assert "error:" in r.output and fragment in r.output


def test_qlib_syntax_gets_a_hint(synth, no_data):
    r = runner.invoke(app, ["--config", str(synth), "eval", "Mean($close, 5)"])
    assert r.exit_code == 2
    out = " ".join(r.output.split())
    assert "Qlib" in out and "ts_mean(close, 5)" in out


def test_eval_json_and_text_on_synthetic_data(synth):
    r = runner.invoke(app, ["--config", str(synth), "eval", "ts_mean(close, 5)",
                            "--universe", "all", "--json"])
    assert r.exit_code == 0, r.output
    out = _strict(r.stdout)
    assert out["config"] == str(synth) and out["store"].endswith("lb.db")
    assert set(out["splits"]) == {"train", "valid"} and isinstance(out["horizon"], int)
    r = runner.invoke(app, ["--config", str(synth), "eval", "ts_mean(close, 5)",
                            "--universe", "all"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0].startswith(f"config {synth}")
    assert "ts_mean(close, 5)" in r.output and "rank_ic_mean" in r.output


def test_empty_leaderboard_says_what_to_run(tmp_path):
    cfg = _config(tmp_path)
    r = runner.invoke(app, ["--config", str(cfg), "leaderboard"])
    assert r.exit_code == 0, r.output
    assert "config " in r.output.splitlines()[0]
    assert "mine library --add" in r.output and "mine gp" in r.output
    out = _strict(runner.invoke(app, ["--config", str(cfg), "leaderboard", "--json"]).output)
    assert out["rows"] == [] and out["store"] == str(tmp_path / "lb.db")


def test_gp_and_library_json_then_leaderboard(synth):
    r = runner.invoke(app, ["--config", str(synth), "gp", "--json"])
    assert r.exit_code == 0, r.output
    out = _strict(r.stdout)
    assert out["run_id"] and out["n_programs_scored"] == 20 and out["config"] == str(synth)
    assert out["n_evaluated"] == out["n_accepted"] + sum(out["rejections"].values())
    r = runner.invoke(app, ["--config", str(synth), "gp", "--generations", "1"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith(f"config {synth}") and "gen 1/1" in r.output
    assert "evaluated" in r.output and "distinct programs tried" in r.output
    r = runner.invoke(app, ["--config", str(synth), "library", "--add", "--universe", "all",
                            "--json"])
    assert r.exit_code == 0, r.output
    out = _strict(r.stdout)
    assert len(out["run"]["decisions"]) == len(out["library"])
    r = runner.invoke(app, ["--config", str(synth), "leaderboard", "--json", "--top", "100"])
    rows = _strict(r.stdout)["rows"]
    assert {x["source"] for x in rows} >= {"library"}
    assert all(isinstance(x["id"], int) and isinstance(x["n_tried"], int) for x in rows)
    r = runner.invoke(app, ["--config", str(synth), "leaderboard", "--top", "100"])
    assert r.exit_code == 0
    long = max(rows, key=lambda x: len(x["formula"]))["formula"]
    assert any(long in line for line in r.output.splitlines())   # never split over lines


def _synth_with_store(synth: Path, tmp_path: Path, floor: float) -> Path:
    """The synthetic config with a fresh leaderboard and gate floor ``floor``."""
    text = re.sub(r'path = ".*lb\.db"', f'path = "{tmp_path / "lb.db"}"', synth.read_text())
    text = text.replace("min_valid_rank_ic = 0.0", f"min_valid_rank_ic = {floor}")
    p = tmp_path / "mine.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("train,valid,kind", [(0.03, 0.02, "accepted"),
                                                (-0.0014, 0.0119, "sign_flip"),
                                                (0.03, 0.004, "below_floor")])
def test_eval_add_json_gate(synth, tmp_path, monkeypatch, train, valid, kind):
    """The synthetic warehouse is too small for a RankIC, so the metrics are pinned."""
    from backtest.candidates import Evaluated
    from factors.store import FactorStore
    monkeypatch.setattr(Evaluated, "metrics", lambda self: {
        "train": {"rank_ic_mean": train, "rank_icir": 0.3},
        "valid": {"rank_ic_mean": valid, "rank_icir": 0.2, "rank_ic_t": 6.0,
                  "n_ic_days": 500}})
    cfg = _synth_with_store(synth, tmp_path, 0.01)
    r = runner.invoke(app, ["--config", str(cfg), "eval", "ts_mean(close, 5)", "--universe",
                            "all", "--add", "--json"])
    assert r.exit_code == 0, r.output
    g = _strict(r.stdout)["gate"]
    assert g["accepted"] is (kind == "accepted") and g["kind"] == kind and g["reason"]
    assert g["n_tried"] == 1 and 0 <= g["adj_p"] <= 1        # counted and charged
    with FactorStore(tmp_path / "lb.db") as store:
        (run,) = store.runs(source="manual")
        assert run.n_evaluated == 1 and run.n_accepted == int(g["accepted"])
        members = store.members()
        assert [m.source for m in members] == (["manual"] if g["accepted"] else [])
        assert (g["id"] is not None) is g["accepted"]
    r = runner.invoke(app, ["--config", str(cfg), "eval", "ts_mean(close, 5)", "--universe",
                            "all", "--add"])
    assert r.exit_code == 0
    assert "rejected" in r.output         # a rejection, or (accepted before) a duplicate


def test_eval_add_refuses_unseal_test(synth, no_data):
    r = runner.invoke(app, ["--config", str(synth), "eval", "close", "--add", "--unseal-test"])
    assert r.exit_code == 2 and "--unseal-test" in r.output


def test_eval_unseal_test_on_a_member_records_it(synth, tmp_path):
    """Issue 12: `mine eval <member formula> --unseal-test` exited 2 (the report's `split`
    field was handed to the store as a metric); it records the test metrics now."""
    import shutil
    from factors.store import FactorStore
    from factors.store_records import FactorRecord
    cfg_path = tmp_path / "mine.toml"
    shutil.copy(synth, cfg_path)
    store_path = tmp_path / "lb.db"
    cfg_path.write_text(cfg_path.read_text().replace(
        str(load_config(synth).store.path), str(store_path)))
    with FactorStore(store_path) as store:
        rec = FactorRecord(formula="close", name="px", source="library", universe="all",
                           horizon=1, metrics={"train": {"rank_ic_mean": 0.02},
                                               "valid": {"rank_ic_mean": 0.02}})
        assert store.add(rec, {}, force=True).accepted
    r = runner.invoke(app, ["--config", str(cfg_path), "eval", "close", "--universe", "all",
                            "--unseal-test", "--json"])
    assert r.exit_code == 0, r.output
    with FactorStore(store_path) as store:
        got = store.get("close", "all", 1)
    assert "test" in got.metrics and "split" not in got.metrics["test"]


def test_eval_counts_a_trial_and_leaderboard_shows_the_charge(synth, tmp_path, monkeypatch):
    """Issue 11: looking at valid is a trial (counted once per formula); the leaderboard shows
    the count and adjusted p at acceptance and against today's ledger."""
    from backtest.candidates import Evaluated
    from factors.store import FactorStore
    monkeypatch.setattr(Evaluated, "metrics", lambda self: {
        "train": {"rank_ic_mean": 0.03, "rank_icir": 0.3},
        "valid": {"rank_ic_mean": 0.02, "rank_icir": 0.2, "rank_ic_t": 4.0,
                  "n_ic_days": 500}})
    cfg = _synth_with_store(synth, tmp_path, 0.01)
    args = ["--config", str(cfg), "eval", "--universe", "all"]
    out = _strict(runner.invoke(app, [*args, "ts_mean(close, 5)", "--json"]).stdout)
    assert out["trial"]["n_tried"] == 1 and out["trial"]["method"] == "bhy"
    r = runner.invoke(app, [*args, "-ts_mean(close, 5)"])          # its negation: same trial
    assert r.exit_code == 0 and "counted as a trial: bhy adjusted p" in " ".join(r.output.split())
    assert "over 1 trial " in " ".join(r.output.split())
    r = runner.invoke(app, [*args, "ts_mean(close, 10)", "--add", "--json"])
    g = _strict(r.stdout)["gate"]
    assert g["accepted"] and g["n_tried"] == 2
    runner.invoke(app, [*args, "ts_mean(close, 20)"])
    with FactorStore(tmp_path / "lb.db") as store:
        assert store.n_trials("all", 1) == 3
    rows = _strict(runner.invoke(app, ["--config", str(cfg), "leaderboard", "--json"]).stdout
                   )["rows"]
    (row,) = rows
    assert row["n_tried"] == 2 and row["n_tried_now"] == 3 and row["haircut"] == "bhy"
    assert 0 < row["adj_p"] < row["adj_p_now"] < 0.05
    r = runner.invoke(app, ["--config", str(cfg), "leaderboard"])
    assert r.exit_code == 0 and "2 (3)" in r.output and "adj p" in r.output
