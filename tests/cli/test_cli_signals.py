"""`mine signals` and `mine signals --backtest` end to end on the synthetic panel warehouse
(tests/data/panel_warehouse.py: 16 stocks, no valuation data, one industry), with a planted
`mine combine` score for the factor sub-score."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from notify_servers import HTTPReceiver
from panel_warehouse import build_panel_warehouse, report_config
from typer.testing import CliRunner

from mining.cli import app

runner = CliRunner()
SIGNALS = """
[signals]
universe = "all"
max_names = 4
max_weight = 0.25
buy_threshold = 60.0
exit_threshold = 40.0
lookback = 60
k_stop = 1.0
k_tp = 1.5
combine_run = "{combine}"
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("signals")
    root = build_panel_warehouse(tmp / "wh")
    cfg = report_config(tmp, root)
    run = tmp / "combine-planted"
    run.mkdir()
    cal = pd.bdate_range("2021-01-04", periods=170)
    codes = [f"{600000 + i}.SH" for i in range(16)]
    sc = pd.DataFrame({"trade_date": np.repeat(cal, 16), "ts_code": np.tile(codes, 170),
                       "score": np.tile(np.arange(16, dtype=float), 170)})
    sc.to_parquet(run / "score.parquet", index=False)
    cfg.write_text(cfg.read_text() + SIGNALS.format(combine=run))
    return tmp, cfg


def mine(cfg: Path, *args: str):
    return runner.invoke(app, ["--config", str(cfg), *args])


def test_signals_day_stored_with_stop_alert_and_notification(env, monkeypatch):
    tmp, cfg = env
    text = cfg.read_text() + '[notify]\nchannels = ["webhook"]\nmax_retries = 0\n'
    cfg2 = tmp / "notify.toml"
    cfg2.write_text(text)
    with HTTPReceiver() as h:
        monkeypatch.setenv("ALPHAMINE_WEBHOOK_URL", h.url)
        r = mine(cfg2, "signals", "--date", "2021-06-30", "--json")
        assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["date"] == "2021-06-30" and out["n_scored"] == 16
    assert any("fund flow skipped" in n for n in out["notes"])
    assert any("valuation skipped" in n for n in out["notes"])
    top = out["top"]
    # planted factor score = code index: 600015.SH ranks first (100), 600000.SH last
    fs = {t["ts_code"]: t["factor_score"] for t in out["top"]}
    assert fs.get("600015.SH") == pytest.approx(100.0)
    assert all(t["valuation_score"] is None for t in top)
    stops = out["stops"]
    assert [(s["ts_code"], s["reason"]) for s in stops] == [("600014.SH", "stop_loss")]
    assert out["alerts_added"] == 1 and out["delivery"]["webhook"]["sent"] == 1
    assert "600014.SH stop_loss" in h.payloads()[-1]["text"]["content"]
    con = sqlite3.connect(tmp / "lb.db")
    n = con.execute("SELECT COUNT(*) FROM signals WHERE trade_date = '2021-06-30'").fetchone()
    flags = dict(con.execute("SELECT flag, COUNT(*) FROM signals GROUP BY flag").fetchall())
    al = con.execute("SELECT ts_code, rule, notify_sent FROM alerts_log").fetchall()
    con.close()
    assert n[0] == 16 and flags.get("sell") == 1 and sum(flags.values()) == 16
    assert al == [("600014.SH", "stop_loss", '["webhook"]')]
    for s in out["signals"]:
        if s["flag"] == "buy":
            assert s["stop"] == pytest.approx(s["entry"] - 1.0 * s["atr"])
            assert s["take_profit"] == pytest.approx(s["entry"] + 1.5 * s["atr"])
    # again: the day's rows are replaced, the stop alert is not duplicated
    r = mine(cfg, "signals", "--date", "2021-06-30", "--no-notify")
    assert r.exit_code == 0, r.output
    assert "16 rows written to the signals table" in " ".join(r.stdout.split())
    con = sqlite3.connect(tmp / "lb.db")
    assert con.execute("SELECT COUNT(*) FROM signals").fetchone()[0] == 16
    assert con.execute("SELECT COUNT(*) FROM alerts_log").fetchone()[0] == 1
    con.close()
    r = mine(cfg, "alerts", "--rule", "stop_loss", "--json")
    assert r.exit_code == 0, r.output
    assert [a["ts_code"] for a in json.loads(r.stdout)["alerts"]] == ["600014.SH"]


def test_signal_backtest_run_folder_and_report(env):
    tmp, cfg = env
    r = mine(cfg, "signals", "--backtest", "--start", "2021-05-17", "--end", "2021-08-06",
             "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["strategy"] == "signals_all" and d["n_trades"] > 0
    perf = d["performance"]
    for k in ("annual_return", "excess_return", "information_ratio", "max_drawdown",
              "turnover"):
        assert k in perf
    run = Path(d["out_dir"])
    for f in ("nav.parquet", "trades.parquet", "performance.json", "yearly.csv",
              "signals.parquet", "stops.parquet", "signals.json"):
        assert (run / f).is_file(), f
    trades = pd.read_parquet(run / "trades.parquet")
    assert set(trades["reason"]) <= {"score", "exit_score", "no_score", "stop_loss",
                                     "take_profit"}
    # T+1: a sell always comes after the position's buy day
    for row in trades[trades.side == "sell"].itertuples():
        bought = trades[(trades.ts_code == row.ts_code) & (trades.side == "buy")
                        & (trades.trade_date <= row.trade_date)].trade_date
        assert bought.max() < row.trade_date
    rep = mine(cfg, "report", "backtest", str(run), "--out", str(tmp / "rep.html"))
    assert rep.exit_code == 0, rep.output
    assert (tmp / "rep.html").stat().st_size > 1000


def test_signals_on_a_test_split_day_needs_live_and_is_logged(env):
    """The default day is the last of valid; a test-split day is refused without --live
    (nothing logged); --live scores the last day of the data, in the (synthetic) test split:
    logged in the audit log as live use, no performance shown."""
    tmp, cfg = env
    r = mine(cfg, "signals", "--no-notify", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["audit_id"] is None and out["date"] == "2021-08-06"           # end of valid
    r = mine(cfg, "signals", "--date", "2021-08-27", "--no-notify")
    assert r.exit_code != 0 and "sealed test split" in r.output and "--live" in r.output
    assert json.loads(mine(cfg, "audit", "--json").stdout)["audit"] == []
    bad = mine(cfg, "signals", "--live", "--date", "2021-06-30")
    assert bad.exit_code == 2 and "drop --date" in bad.output
    r = mine(cfg, "signals", "--live", "--no-notify", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["date"] == "2021-08-27" and isinstance(out["audit_id"], int)
    assert "performance" not in out
    rows = json.loads(mine(cfg, "audit", "--json").stdout)["audit"]
    assert any(a["id"] == out["audit_id"] and a["purpose"] == "live" for a in rows)
