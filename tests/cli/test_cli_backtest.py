"""`mine combine` and `mine backtest` end to end (synthetic warehouse; one slow real-data test)."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mining.cli import app
from mining.cli_app import load as load_config

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    from ashare_synth import build_warehouse
    return build_warehouse(tmp_path_factory.mktemp("ashare")).root


def _config(tmp_path: Path, root: Path, **bt) -> Path:
    extra = "\n".join(f"{k} = {json.dumps(v)}" for k, v in bt.items())
    text = f"""
[data]
root = "{root}"
[evaluate]
train = ["2010-01-01", "2020-08-09"]
valid = ["2020-08-10", "2025-07-25"]
test = ["2025-07-28", "2025-08-15"]
embargo = 1
min_listed_days = 3
[store]
path = "{tmp_path / 'lb.db'}"
[backtest]
universe = "all"
start = "2020-08-10"
end = ""
out_dir = "{tmp_path / 'bt'}"
slippage_bps = 0.0
{extra}
"""
    p = tmp_path / "mine.toml"
    p.write_text(text)
    return p


def _add(cfg_path: Path, formulas: dict[str, float]) -> None:
    from factors.store import FactorStore
    from factors.store_records import FactorRecord
    cfg = load_config(cfg_path)
    with FactorStore(cfg.store.path) as store:
        for i, (f, train_ic) in enumerate(formulas.items()):
            sg = -1 if train_ic < 0 else 1     # valid agrees with train (flips never combine)
            rec = FactorRecord(formula=f, name=f"f{i}", source="library", universe="all",
                               horizon=1, metrics={"train": {"rank_ic_mean": train_ic},
                                                   "valid": {"rank_ic_mean": sg * 0.02,
                                                             "rank_icir": sg * (0.2 - i / 100),
                                                             "rank_ic_t": sg * 5.0,
                                                             "n_ic_days": 500}})
            assert store.add(rec, {}, force=True).accepted


def _out(res) -> str:
    return " ".join(res.output.split())       # rich wraps long lines


def _json(res):
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout, parse_constant=_no_nan)


def _no_nan(c):
    raise AssertionError(f"non-strict JSON constant {c}")


def _strict(path: Path):
    """A JSON file as the strict JSON `--json` prints (NaN -> null)."""
    from mining.cli_app import to_jsonable
    return to_jsonable(json.loads(path.read_text()))


def test_combine_needs_a_leaderboard(tmp_path, synth_root):
    cfg = _config(tmp_path, synth_root)
    res = runner.invoke(app, ["--config", str(cfg), "combine", "--top", "3"])
    assert res.exit_code == 2
    assert "mine library --add" in _out(res)


def test_combine_then_backtest(tmp_path, synth_root):
    cfg = _config(tmp_path, synth_root)
    _add(cfg, {"ts_delta(close, 1)": -0.02, "-log(vol)": 0.01, "ts_delta(close, 1) * 2": 0.0})
    out = tmp_path / "comb"
    s = _json(runner.invoke(app, ["--config", str(cfg), "combine", "--top", "3", "--method",
                                  "icir", "--n", "2", "--rebalance", "weekly", "--window", "5",
                                  "--out", str(out), "--json"]))
    names = [m["name"] for m in s["members"]]
    assert names[0] == "f0" and "f2" not in names          # f2 duplicates f0 (|corr| 1)
    assert s["members"][0]["sign"] == -1.0                  # train RankIC < 0 -> flipped
    assert s["dropped"] and s["dropped"][0]["name"] == "f2"
    tg = pd.read_parquet(out / "targets.parquet")
    assert list(tg.columns) == ["trade_date", "ts_code", "target_weight", "strategy_name"]
    assert (tg.groupby("trade_date").target_weight.sum() <= 1 + 1e-12).all()
    assert tg.groupby("trade_date").size().max() <= 2
    assert (tg.trade_date.dt.day_of_week == 4).sum() > 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "targets.csv", parse_dates=["trade_date"]),
                                  tg, check_dtype=False)
    assert (out / "score.parquet").is_file() and (out / "factor_weights.parquet").is_file()
    assert s["out_dir"] == str(out) and s["config"] == str(cfg)
    assert "in-sample" in s["note"] and "is_st_latest" in s["note"]    # no dated ST history
    assert _strict(out / "combine.json") == {k: v for k, v in s.items()
                                             if k not in ("config", "store", "peak_rss_mb")}

    bt_out = tmp_path / "bt_out"
    b = _json(runner.invoke(app, ["--config", str(cfg), "backtest", "--targets",
                                  str(out / "targets.csv"), "--benchmark", "000300.SH",
                                  "--cash", "500000", "--out", str(bt_out), "--json"]))
    p = b["performance"]
    nav = pd.read_parquet(bt_out / "nav.parquet")
    assert p["total_return"] == pytest.approx(nav.nav.iloc[-1] / nav.nav.iloc[0] - 1)
    assert b["init_cash"] == 500000
    from ashare_synth import CAL  # index close = 4000 + row in CAL
    i0, i1 = CAL.get_loc(nav.trade_date.iloc[0]), CAL.get_loc(nav.trade_date.iloc[-1])
    assert b["benchmark_performance"]["total_return"] == pytest.approx((4000 + i1) / (4000 + i0)
                                                                       - 1)
    # nav.parquet carries the benchmark close and the excess NAV (ratio of normalised curves)
    bench = np.array([4000.0 + CAL.get_loc(d) for d in nav.trade_date])
    np.testing.assert_allclose(nav.bench_close, bench)
    np.testing.assert_allclose(nav.excess_nav, (nav.nav / nav.nav.iloc[0]) / (bench / bench[0]))
    assert {r["period"] for r in b["yearly"]} <= {"train", "valid", "test", "-"} | {
        f"{a}/{c}" for a in ("train", "valid", "test", "-") for c in ("train", "valid",
                                                                        "test", "-")}
    for f in ("trades", "rejected", "costs", "positions"):
        assert (bt_out / f"{f}.parquet").is_file()
    assert "in-sample" in b["note"] and "survivors" in b["note"] and "is_st_latest" in b["note"]
    assert _strict(bt_out / "performance.json") == {k: v for k, v in b.items()
                                                    if k not in ("config", "store")}
    # --out that holds results: refused without --force, before any data loads
    args = ["--config", str(cfg), "backtest", "--targets", str(out / "targets.csv"),
            "--benchmark", "000300.SH", "--cash", "500000", "--out", str(bt_out), "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "already holds results" in _out(res)
    again = _json(runner.invoke(app, args + ["--force"]))
    assert again["performance"] == p
    # issue 11: each backtest is a strategy trial; the deflated Sharpe ratio charges for them
    ds = b["deflated_sharpe"]
    assert ds["n_trials"] == 1 and ds["sr_var_source"] == "null" and ds["sr0"] == 0.0
    assert ds["n_obs"] == p["n_days"] and 0 <= ds["dsr"] <= 1
    assert ds["sharpe_annual"] == pytest.approx(p["sharpe"])
    assert again["deflated_sharpe"]["n_trials"] == 1           # the same targets: one trial
    mc = _json(runner.invoke(app, ["--config", str(cfg), "backtest", "--preset", "microcap",
                                   "--mv-min", "0", "--mv-max", "1e12", "--hold", "2",
                                   "--json"]))["deflated_sharpe"]
    assert mc["n_trials"] == 2 and mc["sr_var_source"] == "trials" and mc["sr0"] > 0
    text = _out(runner.invoke(app, [a for a in args if a != "--json"] + ["--force"]))
    assert "deflated Sharpe (DSR)" in text and "strategies tried (N) │ 2 │" in text


def test_backtest_errors(tmp_path, synth_root):
    cfg = _config(tmp_path, synth_root)
    res = runner.invoke(app, ["--config", str(cfg), "backtest", "--targets",
                              str(tmp_path / "missing.parquet")])
    assert res.exit_code == 2 and "not found" in _out(res)
    res = runner.invoke(app, ["--config", str(cfg), "backtest", "--preset", "microcap",
                              "--benchmark", "999999.SH"])
    assert res.exit_code == 2 and "unknown index" in _out(res) and "000300.SH" in _out(res)
    res = runner.invoke(app, ["--config", str(cfg), "backtest"])
    assert res.exit_code == 2 and "exactly one of" in _out(res)
    res = runner.invoke(app, ["--config", str(cfg), "backtest", "--preset", "smallcap"])
    assert res.exit_code == 2 and "use one of microcap" in _out(res)


def test_microcap_preset_on_synthetic(tmp_path, synth_root):
    cfg = _config(tmp_path, synth_root)
    b = _json(runner.invoke(app, ["--config", str(cfg), "backtest", "--preset", "microcap",
                                  "--mv-min", "0", "--mv-max", "1e12", "--hold", "2",
                                  "--start", "2020-08-10", "--end", "2020-09-04", "--json"]))
    tg = pd.read_parquet(Path(b["out_dir"]) / "targets.parquet")
    assert (tg.groupby("trade_date").size() == 2).all()
    assert b["strategy"] == "microcap" and b["n_trades"] > 0
    assert "in-sample" not in b["note"] and "survivors" in b["note"]
    assert "every past date" in b["note"]                 # ST: the current status only


@pytest.mark.slow
def test_microcap_preset_real_quarter(tmp_path):
    real = load_config(REPO / "mine.toml")
    cfg = tmp_path / "mine.toml"
    cfg.write_text(f'[data]\nroot = "{real.data.root}"\n[backtest]\n'
                   f'out_dir = "{tmp_path / "bt"}"\n[store]\npath = "{tmp_path / "lb.db"}"\n')
    b = _json(runner.invoke(app, ["--config", str(cfg), "backtest", "--preset", "microcap",
                                  "--start", "2023-01-01", "--end", "2023-03-31", "--unseal-test",
                                  "--json"]))
    tg = pd.read_parquet(Path(b["out_dir"]) / "targets.parquet")
    days = sorted(tg.trade_date.unique())
    assert len(days) == 12 and (tg.groupby("trade_date").size() == 3).all()
    from data.manager import DataManager
    dm = DataManager(real.data.root)
    mv = dm.panel("total_mv", "2023-01-01", "2023-03-31", codes=sorted(tg.ts_code.unique()))
    vals = mv.stack().reindex(pd.MultiIndex.from_frame(tg[["trade_date", "ts_code"]]))
    assert ((vals >= 2e9) & (vals <= 3e9)).all()
    assert not tg.ts_code.isin(dm.stock_basic().query("is_st_latest").ts_code).any()
    p = b["performance"]
    assert p["n_days"] > 50 and np.isfinite(p["sharpe"]) and p["max_drawdown"] <= 0
    assert b["test_unsealed"] and b["audit_id"] == 1
    assert b["costs"]["stamp_tax"] > 0 and b["costs"]["commission"] > 0


# --------------------------------------------------------------------------- shell conventions
@pytest.fixture
def no_data(monkeypatch):
    """Any attempt to load data fails the test: validation must come first."""
    from backtest import candidates
    from data.manager import DataManager

    def boom(*a, **k):
        raise AssertionError("data loaded before the options were validated")
    monkeypatch.setattr(DataManager, "from_config", classmethod(boom))
    monkeypatch.setattr(candidates, "make_workspace", boom)


@pytest.mark.parametrize("args, msg", [
    (["combine", "--method", "foo"], "--method 'foo'"),
    (["combine", "--strategy", "top3"], "--strategy 'top3'"),
    (["combine", "--rebalance", "fortnightly"], "--rebalance 'fortnightly'"),
    (["combine", "--rebalance", "0"], "--rebalance '0'"),
    (["combine", "--neutralize", "industry,sector"], "--neutralize"),
    (["combine", "--end", "Dec 31 2021"], "--end 'Dec 31 2021'"),
    (["combine", "--top", "0"], "--top must be > 0"),
    (["combine", "--n", "-3"], "--n must be > 0"),
    (["combine", "--window", "0"], "--window must be >= 2"),
    (["backtest", "--preset", "microcap", "--start", "2021/01/01"], "--start '2021/01/01'"),
    (["backtest", "--preset", "microcap", "--cash", "0"], "--cash must be > 0"),
    (["backtest", "--preset", "smallcap"], "use one of microcap"),
    (["backtest", "--targets", "nope.parquet"], "file not found"),
    (["backtest"], "exactly one of"),
    (["export", "--cash", "1", "--format", "csv"], "--format 'csv'"),
    (["export", "--cash", "-1"], "--cash must be >= 0"),
    (["export", "--cash", "1", "--date", "yesterday"], "--date 'yesterday'"),
    (["export", "--cash", "1", "--targets", "nope.csv"], "file not found"),
    (["export", "--cash", "1", "--cash-reserve", "1.5"], "--cash-reserve"),
])
def test_options_validated_before_data_loads(tmp_path, synth_root, no_data, args, msg):
    cfg = _config(tmp_path, synth_root)
    res = runner.invoke(app, ["--config", str(cfg), *args])
    assert res.exit_code == 2, res.output
    assert "error:" in _out(res) and msg in _out(res)
    assert "AssertionError" not in _out(res)


def test_config_default_dates_validated(tmp_path, synth_root, no_data):
    cfg = _config(tmp_path, synth_root)
    cfg.write_text(cfg.read_text().replace('end = ""', 'end = "end of 2025"'))
    res = runner.invoke(app, ["--config", str(cfg), "combine"])
    assert res.exit_code == 2 and "[backtest] end 'end of 2025'" in _out(res)


def test_help_shows_section_names():
    for cmd in ("combine", "backtest", "export"):
        res = runner.invoke(app, [cmd, "--help"])
        assert res.exit_code == 0 and "[backtest]" in res.output


def test_combine_runs_get_their_own_folders_and_latest(tmp_path, synth_root):
    from backtest.combine_run import CombineSettings, run_combine
    from backtest.run_dirs import find_latest_targets, read_latest
    cfg_path = _config(tmp_path, synth_root)
    _add(cfg_path, {"ts_delta(close, 1)": -0.02, "-log(vol)": 0.01})
    args = ["--config", str(cfg_path), "combine", "--top", "2", "--n", "2", "--window", "5",
            "--json"]
    a = _json(runner.invoke(app, args))
    first = Path(a["out_dir"])
    before = {p.name: p.stat().st_mtime_ns for p in first.iterdir()}
    b = _json(runner.invoke(app, args))
    second = Path(b["out_dir"])
    assert first != second and first.parent == second.parent == tmp_path / "bt"
    assert first.name.startswith("combine-ic-all-") and a["run_id"] in first.name
    assert {p.name: p.stat().st_mtime_ns for p in first.iterdir()} == before   # untouched
    assert read_latest(tmp_path / "bt") == second
    assert find_latest_targets(tmp_path / "bt") == second / "targets.parquet"
    # the library call: same numbers, record == combine.json
    cfg = load_config(cfg_path)
    run = run_combine(cfg, CombineSettings.from_config(cfg.backtest, top=2, n=2, window=5),
                      model_dir=cfg.model.out_dir)
    assert run.out_dir not in (first, second)
    assert _strict(run.out_dir / "combine.json") == json.loads(
        json.dumps(_jsonable(run.to_dict())))
    pd.testing.assert_frame_equal(run.targets.reset_index(drop=True),
                                  pd.read_parquet(second / "targets.parquet"))
    # export (--json) finds the latest targets through the pointer
    e = _json(runner.invoke(app, ["--config", str(cfg_path), "export", "--cash", "100000",
                                  "--json"]))
    assert e["targets"] == str(run.out_dir / "targets.parquet")
    assert e["date"] == str(run.targets.trade_date.max().date())
    assert len(e["orders"]) == len(pd.read_csv(e["files"]["orders"]))
    res = runner.invoke(app, ["--config", str(cfg_path), "export", "--cash", "100000"])
    assert res.exit_code == 2 and "--force" in _out(res)          # same day's files exist
    res = runner.invoke(app, ["--config", str(cfg_path), "export", "--cash", "100000",
                              "--force"])
    assert res.exit_code == 0 and "orders" in _out(res)
    # `mine backtest --targets latest` / a run folder: the newest combine run's targets
    for spec in ("latest", str(run.out_dir)):
        bt = _json(runner.invoke(app, ["--config", str(cfg_path), "backtest", "--targets",
                                       spec, "--json"]))
        assert bt["performance"]["end"] and Path(bt["out_dir"]).is_dir()


def _jsonable(d):
    from mining.cli_app import to_jsonable
    return to_jsonable(d)


def test_backtest_library_record_equals_file(tmp_path, synth_root):
    from backtest.backtest_run import (
        BacktestRunSettings,
        MicrocapSettings,
        run_microcap,
    )
    cfg = load_config(_config(tmp_path, synth_root))
    run = run_microcap(cfg, MicrocapSettings.from_config(cfg.backtest, mv_min=0, mv_max=1e12,
                                                         hold=2),
                       BacktestRunSettings.from_config(cfg.backtest, start="2020-08-10",
                                                       end="2020-09-04"))
    assert run.out_dir.name.startswith("microcap-") and run.strategy == "microcap"
    assert _strict(run.out_dir / "performance.json") == _jsonable(run.to_dict())
    assert (run.out_dir / "targets.parquet").is_file()


def test_combine_compare_table_on_valid(tmp_path, synth_root):
    """`mine combine --compare`: every method on the same members, valid split only; the
    library's record and the table agree; a ridge run records the budgeted n_drop."""
    from backtest.combine import METHODS
    cfg = _config(tmp_path, synth_root, refit=5, min_train=5, num_threads=1)
    _add(cfg, {"ts_delta(close, 1)": -0.02, "-log(vol)": 0.01, "ts_mean(ret, 5)": 0.01})
    base = ["--config", str(cfg), "combine", "--top", "3", "--window", "5", "--compare"]
    d = _json(runner.invoke(app, [*base, "--json"]))
    assert [r["method"] for r in d["rows"]] == list(METHODS)
    assert d["split"] == "valid" and d["end"] <= "2025-07-25"       # never the test split
    assert len({r["n_days"] for r in d["rows"]}) == 1 and d["rows"][0]["n_days"] > 0
    assert d["members"] and not (tmp_path / "bt").exists()          # no run folder written
    res = runner.invoke(app, base)
    assert res.exit_code == 0, res.output
    out = _out(res)
    for m in METHODS:
        assert f" {m} " in out
    assert "long-short annual" in out
    r = _json(runner.invoke(app, ["--config", str(cfg), "combine", "--top", "3", "--window",
                                  "5", "--method", "ridge", "--n", "4", "--rebalance", "5",
                                  "--turnover-budget", "60", "--json"]))
    assert r["strategy"] == "topk" and r["method"] == "ridge"
    assert r["n_drop"] == 4 and r["turnover_budget"] == 60.0        # min(10, 4, 60*4*5/252)
    res = runner.invoke(app, ["--config", str(cfg), "combine", "--top", "3", "--window", "5",
                              "--method", "sym", "--n", "4", "--rebalance", "5", "--json"])
    assert _json(res)["n_drop"] == 0                                # floor(10*4*5/252) = 0
    assert "gives 0 replacements per rebalance" in " ".join(res.stderr.split())


def test_member_references_through_eval_combine_and_report(tmp_path, synth_root):
    """factor("<name>") resolves in every command that evaluates leaderboard formulas."""
    from factors.store import FactorStore
    from factors.store_records import FactorRecord
    cfg = _config(tmp_path, synth_root)
    _add(cfg, {"ts_delta(close, 1)": -0.02, "-log(vol)": 0.01})          # members f0, f1
    with FactorStore(load_config(cfg).store.path) as store:        # a member built on both
        rec = FactorRecord(formula='cs_rank(factor("f0")) - 0.5 * cs_rank(factor("f1"))',
                           name="child", source="manual", universe="all", horizon=1,
                           metrics={"train": {"rank_ic_mean": -0.01},
                                    "valid": {"rank_ic_mean": -0.02, "rank_icir": -0.3,
                                              "rank_ic_t": -5.0, "n_ic_days": 500}})
        assert store.add(rec, {}, force=True).accepted
    base = _json(runner.invoke(app, ["--config", str(cfg), "eval", "ts_delta(close, 1) * -1",
                                     "--universe", "all", "--json"]))
    ref = _json(runner.invoke(app, ["--config", str(cfg), "eval", 'factor("f0") * -1',
                                    "--universe", "all", "--json"]))
    assert ref["formula"] == 'factor("f0") * (-1.0)'
    assert ref["splits"] == base["splits"]        # the member's formula, evaluated in place
    res = runner.invoke(app, ["--config", str(cfg), "eval", 'factor("nope")', "--universe",
                              "all"])
    assert res.exit_code == 2 and "no leaderboard member named 'nope' in universe all" in _out(res)
    s = _json(runner.invoke(app, ["--config", str(cfg), "combine", "--top", "3", "--n", "2",
                                  "--out", str(tmp_path / "comb"), "--json"]))
    seen = {m["name"] for m in s["members"]} | {m["name"] for m in s["dropped"]}
    assert "child" in seen                      # evaluated (kept or dropped by correlation)
    pytest.importorskip("plotly")
    out = tmp_path / "child.html"
    res = runner.invoke(app, ["--config", str(cfg), "report", "factor", 'factor("child")',
                              "--universe", "all", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert out.is_file()
