"""`mine data` end to end: the real tushare client -> the local Tushare Pro server on 127.0.0.1
-> bootstrap / update / status / check -> a warehouse every command reads unchanged."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mining.cli import app
from tushare_server import TEST_TOKEN, make_market, serve

runner = CliRunner()


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """A warehouse bootstrapped, then updated, from the local server (one module-wide fill)."""
    market = make_market(seed=3, n_stocks=24, start="2024-01-02", n_days=60)
    url, stop = serve(market)
    tmp = tmp_path_factory.mktemp("e2e")
    root = tmp / "ashare"
    days = market.trade_days
    cfg = tmp / "mine.toml"
    cfg.write_text(f"""
[data]
root = "{root}"
cache_dir = "{tmp / 'cache'}"
[evaluate]
train = ["{days[0][:4]}-{days[0][4:6]}-{days[0][6:]}", "{days[29][:4]}-{days[29][4:6]}-{days[29][6:]}"]
valid = ["{days[30][:4]}-{days[30][4:6]}-{days[30][6:]}", "{days[47][:4]}-{days[47][4:6]}-{days[47][6:]}"]
test = ["{days[48][:4]}-{days[48][4:6]}-{days[48][6:]}", "2030-12-31"]
embargo = 1
min_listed_days = 1
[store]
path = "{tmp / 'lb.db'}"
[backtest]
out_dir = "{tmp / 'bt'}"
[model]
out_dir = "{tmp / 'models'}"
[tushare]
http_url = "{url}"
indices = ["000300.SH", "000905.SH"]
""")
    env = {"TUSHARE_TOKEN": TEST_TOKEN}
    mid, last = days[40], days[-1]
    iso = lambda d: f"{d[:4]}-{d[4:6]}-{d[6:]}"  # noqa: E731
    boot = runner.invoke(app, ["--config", str(cfg), "data", "bootstrap", "--root", str(root),
                               "--start", iso(days[0]), "--end", iso(mid), "--json"], env=env)
    upd = runner.invoke(app, ["--config", str(cfg), "data", "update", "--root", str(root),
                              "--end", iso(last), "--json"], env=env)
    yield {"market": market, "root": root, "cfg": cfg, "boot": boot, "upd": upd, "env": env,
           "stop": stop, "iso": iso}
    stop()


def test_bootstrap_then_update_fill_the_warehouse(filled):
    for res in (filled["boot"], filled["upd"]):
        assert res.exit_code == 0, res.output
    root = filled["root"]
    for rel in ("trade_cal.parquet", "stock_basic.parquet", "daily", "daily_basic", "stk_limit",
                "namechange.parquet", "index_daily.parquet", "index_member.parquet",
                "industry_sw.parquet", "dividend.parquet", "_jobs.sqlite"):
        assert (root / rel).exists(), rel
    import pandas as pd
    daily = pd.read_parquet(root / "daily")
    m = filled["market"]
    assert daily.trade_date.max() == pd.Timestamp(filled["iso"](m.trade_days[-1]))
    assert not daily.duplicated(["ts_code", "trade_date"]).any()
    basic = pd.read_parquet(root / "stock_basic.parquet")
    assert set(basic.list_status) >= {"L", "D"}              # delisted names are kept


def test_token_never_written(filled):
    for p in Path(filled["root"]).parent.rglob("*"):
        if p.is_file():
            assert TEST_TOKEN.encode() not in p.read_bytes(), p


def test_update_again_is_a_noop_and_status_reports(filled):
    r = runner.invoke(app, ["--config", str(filled["cfg"]), "data", "update", "--root",
                            str(filled["root"]), "--end",
                            filled["iso"](filled["market"].trade_days[-1]), "--json"],
                      env=filled["env"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert sum(out["calls"].values()) == 0, out["calls"]
    s = runner.invoke(app, ["--config", str(filled["cfg"]), "data", "status", "--root",
                            str(filled["root"]), "--json"])
    assert s.exit_code == 0, s.output
    assert "daily" in s.stdout


def test_every_command_reads_the_filled_warehouse(filled):
    cfg = str(filled["cfg"])
    r = runner.invoke(app, ["--config", cfg, "eval", "-ts_mean(ret, 5)", "--universe", "all",
                            "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["splits"]["train"]["n_days"] > 0


def test_check_on_the_filled_warehouse(filled):
    r = runner.invoke(app, ["--config", str(filled["cfg"]), "data", "check", "--root",
                            str(filled["root"]), "--json"])
    assert r.exit_code in (0, 1), r.output
    rep = json.loads(r.stdout)
    assert rep["ok"] == (r.exit_code == 0)
    assert "duplicates" in rep["checked"] and "ohlc" in rep["checked"]
    bad = runner.invoke(app, ["--config", str(filled["cfg"]), "data", "check", "--root",
                              str(filled["root"]), "--start", "Jan 5"])
    assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.output


def test_bootstrap_dry_run_needs_no_token_and_writes_nothing(tmp_path):
    root = tmp_path / "new"
    r = runner.invoke(app, ["data", "bootstrap", "--root", str(root), "--start", "2024-01-02",
                            "--end", "2024-03-29", "--dry-run", "--json"],
                      env={"TUSHARE_TOKEN": ""})
    assert r.exit_code == 0, r.output
    plan = json.loads(r.stdout)
    import pandas as pd
    weekdays = len(pd.bdate_range("2024-01-02", "2024-03-29"))          # 1 call per open day
    assert plan["calls"]["daily"] == weekdays == plan["calls"]["stk_limit"]
    assert plan["est_seconds"] > 0 and not root.exists()


def test_gp_combine_backtest_export_run_on_the_filled_warehouse(filled):
    cfg = str(filled["cfg"])
    g = runner.invoke(app, ["--config", cfg, "gp", "--universe", "all", "--population", "20",
                            "--generations", "1", "--top", "3", "--json"])
    assert g.exit_code == 0, g.output
    lib = runner.invoke(app, ["--config", cfg, "library", "--add", "--universe", "all", "--json"])
    assert lib.exit_code == 0, lib.output
    c = runner.invoke(app, ["--config", cfg, "combine", "--universe", "all", "--top", "3",
                            "--include-forced",              # random market: noise factors
                            "--n", "5", "--window", "5", "--start", filled["iso"](
                                filled["market"].trade_days[30]), "--json"])
    assert c.exit_code == 0, c.output
    b = runner.invoke(app, ["--config", cfg, "backtest", "--targets", "latest",
                            "--benchmark", "000300.SH", "--json"])
    assert b.exit_code == 0, b.output
    assert json.loads(b.stdout)["n_trades"] > 0
    e = runner.invoke(app, ["--config", cfg, "export", "--cash", "1000000", "--json"])
    assert e.exit_code == 0, e.output


def test_check_and_status_refuse_empty_or_corrupt_roots(filled, tmp_path):
    """One line, exit 2, the file named: no traceback, no silent "clean"."""
    import shutil
    empty = tmp_path / "empty"
    empty.mkdir()
    r = runner.invoke(app, ["data", "check", "--root", str(empty)])
    assert r.exit_code == 2 and "holds no warehouse dataset" in r.output
    bad = tmp_path / "bad"
    shutil.copytree(filled["root"], bad)
    (bad / "trade_cal.parquet").write_bytes(b"garbage")
    for cmd in ("check", "status"):
        r = runner.invoke(app, ["data", cmd, "--root", str(bad)])
        assert r.exit_code == 2, r.output
        assert "trade_cal.parquet: unreadable Parquet" in r.output
        assert "Traceback" not in r.output
