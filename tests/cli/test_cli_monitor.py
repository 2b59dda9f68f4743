"""`mine monitor` and `mine alerts` end to end on the synthetic warehouse (tests/data/
ashare_synth.py) with planted quarterly valuation snapshots and dividend plans."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ashare_synth import build_warehouse
from notify_servers import HTTPReceiver
from typer.testing import CliRunner

from mining.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def wh(tmp_path_factory) -> Path:
    """The synthetic warehouse plus fundamentals with known alerts (universe csi300 over
    2023-03-06..2025-08-15 = 600000.SH, 000002.SZ, 300001.SZ, 688001.SH):

    * 600000.SH: dividend yield 0.5 % in 2023Q2 and Q3 -> low_yield at 2023-09-30;
    * 000002.SZ: pb 1.0 -> 1.8 at 2024-06-30 -> pb_jump and pb_high (above its flat
      history); FY2024 dividend 40 % below FY2023
      (annual plan announced 2025-03-20, seen 2025-07-28, the next open day of the sparse
      synthetic calendar) -> dividend_cut.
    """
    root = build_warehouse(tmp_path_factory.mktemp("ashare"))
    root = root.root
    q = pd.date_range("2019-03-31", "2025-06-30", freq="QE")
    rows = []
    for code in ("600000.SH", "000002.SZ", "300001.SZ", "688001.SH"):
        dv = np.full(len(q), 3.0)
        pb = np.full(len(q), 1.0)
        if code == "600000.SH":
            dv[(q >= "2023-06-30") & (q <= "2023-09-30")] = 0.5
        if code == "000002.SZ":
            pb[q >= "2024-06-30"] = 1.8
        for i, d in enumerate(q):
            rows.append((code, d, d, 10.0, 1e6, 1e5, 10.0, pb[i], 1.0, dv[i]))
    pd.DataFrame(rows, columns=["ts_code", "snapshot_date", "anchor_date", "anchor_close",
                                "total_mv", "total_share", "pe", "pb", "ps", "dv_ratio"]
                 ).to_parquet(root / "valuation_quarterly.parquet", index=False)
    div = pd.DataFrame([
        ("000002.SZ", "2023-12-31", "2024-03-20", "实施", 1.0, 1000.0, "2024-06-20"),
        ("000002.SZ", "2024-12-31", "2025-03-20", "预案", 0.6, 1000.0, None),
        ("600000.SH", "2023-12-31", "2024-03-20", "实施", 1.0, 1000.0, "2024-06-20"),
        ("600000.SH", "2024-12-31", "2025-03-20", "预案", 1.0, 1000.0, None),
    ], columns=["ts_code", "end_date", "ann_date", "div_proc", "cash_div_tax", "base_share",
                "ex_date"])
    for c in ("end_date", "ann_date", "ex_date"):
        div[c] = pd.to_datetime(div[c])
    div["stk_div"] = 0.0
    div.to_parquet(root / "dividend.parquet", index=False)
    return root


def config(tmp: Path, root: Path, extra: str = "") -> Path:
    p = tmp / "mine.toml"
    p.write_text(f'[data]\nroot = "{root}"\ncache_dir = "{tmp / "cache"}"\n'
                 f'[store]\npath = "{tmp / "lb.db"}"\n{extra}')
    return p


def mine(cfg: Path, *args: str):
    r = runner.invoke(app, ["--config", str(cfg), *args])
    return r


def test_monitor_logs_alerts_once_and_alerts_acks(wh, tmp_path):
    cfg = config(tmp_path, wh)
    r = mine(cfg, "monitor", "--universe", "csi300", "--start", "2023-03-06", "--date",
             "2025-08-15", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    got = {(a["ts_code"], a["rule"], a["period"]) for a in out["alerts"]}
    assert got == {("600000.SH", "low_yield", "2023-09-30"),
                   ("000002.SZ", "pb_jump", "2024-06-30"),
                   ("000002.SZ", "pb_high", "2024-06-30"),
                   ("000002.SZ", "dividend_cut", "2024-12-31")}
    assert out["counts"]["dividend_cut"] == 1 and out["counts"]["pe_high"] == 0
    assert out["profit_source"] == "snapshot" and len(out["added"]) == 4
    cut = next(a for a in out["alerts"] if a["rule"] == "dividend_cut")
    assert cut["date"] == "2025-07-28" and cut["values"]["change"] == pytest.approx(-0.4)
    again = json.loads(mine(cfg, "monitor", "--start", "2023-03-06", "--date", "2025-08-15",
                            "--json").stdout)
    assert again["added"] == [] and again["duplicates"] == 4
    listed = json.loads(mine(cfg, "alerts", "--json").stdout)["alerts"]
    assert len(listed) == 4
    i = listed[0]["id"]
    r = mine(cfg, "alerts", "--ack", str(i))
    assert r.exit_code == 0 and f"alert {i} acknowledged" in r.stdout
    assert len(json.loads(mine(cfg, "alerts", "--json").stdout)["alerts"]) == 3
    assert len(json.loads(mine(cfg, "alerts", "--all", "--json").stdout)["alerts"]) == 4
    r = mine(cfg, "alerts", "--ack", "999")
    assert r.exit_code == 2 and "no alert with id 999" in r.stderr


def test_point_in_time_date(wh, tmp_path):
    """Before the FY2024 plan is seen (2025-07-28) there is no dividend cut."""
    cfg = config(tmp_path, wh)
    out = json.loads(mine(cfg, "monitor", "--start", "2023-03-06", "--date", "2025-07-25",
                          "--no-notify", "--json").stdout)
    assert out["counts"]["dividend_cut"] == 0 and out["counts"]["pb_jump"] == 1


def test_watchlist(wh, tmp_path):
    w = tmp_path / "watch.txt"
    w.write_text("# my names\n600000.SH\n")
    cfg = config(tmp_path, wh)
    r = mine(cfg, "monitor", "--watchlist", str(w), "--start", "2023-03-06", "--date",
             "2025-08-15")
    assert r.exit_code == 0, r.output
    assert "low_yield 1" in " ".join(r.stdout.split()) and "1 new in alerts_log" in r.stdout


def test_monitor_notifies_and_alerts_send_retries_later(wh, tmp_path, monkeypatch):
    extra = ('[notify]\nchannels = ["webhook"]\nmax_retries = 1\nretry_wait = 0.01\n'
             'timeout = 5.0\n')
    cfg = config(tmp_path, wh, extra)
    with HTTPReceiver(fail=10) as h:
        monkeypatch.setenv("ALPHAMINE_WEBHOOK_URL", h.url)
        r = mine(cfg, "monitor", "--start", "2023-03-06", "--date", "2025-08-15")
        assert r.exit_code == 0, r.output
        assert "kept pending" in " ".join(r.stderr.split())
        h.fail = 0
        r = mine(cfg, "alerts", "--send", "--json")
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["delivery"]["webhook"]["sent"] == 4
    content = h.payloads()[-1]["text"]["content"]
    assert "000002.SZ dividend_cut" in content and "600000.SH low_yield" in content


def test_profit_decline_uses_fina_indicator_when_present(wh, tmp_path):
    """With fina_indicator in the warehouse the rule reads netprofit_yoy; a report counts from
    the open day after its announcement (2023-03-17 -> seen 2023-03-20)."""
    import shutil
    root = tmp_path / "wh"
    shutil.copytree(wh, root)
    pd.DataFrame({"ts_code": "600000.SH",
                  "end_date": pd.to_datetime(["2022-06-30", "2022-09-30", "2022-12-31"]),
                  "ann_date": pd.to_datetime(["2022-08-20", "2022-10-25", "2023-03-17"]),
                  "netprofit_yoy": [3.0, -2.0, -8.0]}).to_parquet(
        root / "fina_indicator.parquet", index=False)
    cfg = config(tmp_path, root)
    before = json.loads(mine(cfg, "monitor", "--watchlist", str(_watch(tmp_path)), "--date",
                             "2023-03-17", "--no-notify", "--json").stdout)
    assert before["profit_source"] == "fina_indicator"
    assert before["counts"]["profit_decline"] == 0
    after = json.loads(mine(cfg, "monitor", "--watchlist", str(_watch(tmp_path)), "--date",
                            "2023-03-20", "--no-notify", "--json").stdout)
    (a,) = [x for x in after["alerts"] if x["rule"] == "profit_decline"]
    assert (a["period"], a["date"], a["values"]["change"]) == ("2022-12-31", "2023-03-20", -0.08)


def _watch(tmp_path: Path) -> Path:
    w = tmp_path / "w.txt"
    w.write_text("600000.SH\n")
    return w
