"""Tests of data.check (``mine data check``) on the synthetic warehouse of :mod:`ashare_synth`,
in its snapshot layout and in a contract-layout variant (suspend_d, namechange, dividend)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ashare_synth import CAL, SUSPENDED, build_warehouse

from data.check import check_warehouse
from mining.cli_data_check import render_check

REAL = Path("/work/shared/data/ashare")


def contract_layout(root: Path) -> Path:
    """The synthetic warehouse plus the contract's datasets, consistent with its bars."""
    build_warehouse(root)
    cal = pd.read_parquet(root / "trade_cal.parquet")
    opn = cal.loc[cal.is_open == 1, "cal_date"].sort_values()
    idx = opn.searchsorted(cal.cal_date, side="left") - 1
    cal["pretrade_date"] = [opn.iloc[i] if i >= 0 else pd.NaT for i in idx]
    cal.to_parquet(root / "trade_cal.parquet", index=False)
    sus = [(c, d) for c, (a, b) in SUSPENDED.items() for d in CAL if a <= d <= b]
    write_suspend(root, sus)
    pd.DataFrame({"ts_code": ["600000.SH"], "end_date": pd.to_datetime(["2019-12-31"]),
                  "ann_date": pd.to_datetime(["2020-06-01"]), "div_proc": ["实施"],
                  "stk_div": [0.0], "cash_div_tax": [0.5],
                  "ex_date": pd.to_datetime(["2020-08-20"])}
                 ).to_parquet(root / "dividend.parquet", index=False)
    pd.DataFrame({"ts_code": ["600001.SH", "600001.SH"], "name": ["Stock600001", "ST600001"],
                  "start_date": pd.to_datetime(["1998-01-01", "2019-05-01"]),
                  "end_date": pd.to_datetime(["2019-04-30", None])}
                 ).to_parquet(root / "namechange.parquet", index=False)
    return root


def write_suspend(root: Path, rows) -> None:
    sp = pd.DataFrame(rows, columns=["ts_code", "trade_date"])
    sp["trade_date"] = sp.trade_date.astype("datetime64[ns]")
    sp["suspend_type"] = "S"
    (root / "suspend_d").mkdir(exist_ok=True)
    for f in (root / "suspend_d").glob("*.parquet"):
        f.unlink()
    for y, part in sp.groupby(sp.trade_date.dt.year):
        part.sort_values(["ts_code", "trade_date"]).to_parquet(
            root / "suspend_d" / f"suspend_d_{y}.parquet", index=False)


def edit_daily(root: Path, year: int, fn) -> None:
    p = root / "daily" / f"daily_{year}.parquet"
    d = fn(pd.read_parquet(p))
    d.sort_values(["ts_code", "trade_date"]).to_parquet(p, index=False)


def at(d, code, date):
    return (d.ts_code == code) & (d.trade_date == pd.Timestamp(date))


def plant(root: Path) -> None:
    """Planted problems; see :data:`EXPECTED`."""
    def y2020(d):
        d.loc[at(d, "600000.SH", "2020-09-01"), "low"] = \
            d.loc[at(d, "600000.SH", "2020-09-01"), "high"] + 0.5           # low > high
        return pd.concat([d, d[at(d, "600000.SH", "2020-08-12")]])          # duplicate row

    def y2023(d):
        d.loc[(d.ts_code == "000002.SZ") & (d.trade_date >= "2023-03-20"), "adj_factor"] *= 1.1
        d.loc[(d.ts_code == "300001.SZ") & (d.trade_date >= "2023-03-22"), "adj_factor"] *= 1.05
        for code in ("600000.SH", "300001.SZ"):                             # +15% moves
            m = at(d, code, "2023-03-15")
            d.loc[m, "close"] = (d.loc[m, "pre_close"] * 1.15).round(2)
            d.loc[m, "high"] = np.maximum(d.loc[m, "high"], d.loc[m, "close"])
        return d[~at(d, "600000.SH", "2023-03-24")]                         # missing, no record

    edit_daily(root, 2020, y2020)
    edit_daily(root, 2023, y2023)
    def y2025(d):
        d.loc[d.ts_code == "000002.SZ", "adj_factor"] *= 1.1                # keep the new level
        d.loc[d.ts_code == "300001.SZ", "adj_factor"] *= 1.05
        return d[~at(d, "000002.SZ", "2025-08-05")]                         # missing, suspended

    edit_daily(root, 2025, y2025)
    sp = pd.concat([pd.read_parquet(root / "suspend_d"),
                    pd.DataFrame({"ts_code": ["000002.SZ"], "suspend_type": ["S"],
                                  "trade_date": [pd.Timestamp("2025-08-05")]})])
    write_suspend(root, sp[["ts_code", "trade_date"]].itertuples(index=False))
    dv = pd.read_parquet(root / "dividend.parquet")
    extra = dv.iloc[[0]].assign(ts_code="300001.SZ", ex_date=pd.Timestamp("2023-03-22"),
                                end_date=pd.Timestamp("2022-12-31"))
    pd.concat([dv, extra]).to_parquet(root / "dividend.parquet", index=False)
    ix = pd.read_parquet(root / "index_daily.parquet")
    ix[ix.trade_date <= "2025-08-08"].to_parquet(root / "index_daily.parquet", index=False)


EXPECTED = {("duplicates", "error", "600000.SH", "2020-08-12"),
            ("ohlc", "error", "600000.SH", "2020-09-01"),
            ("adj_factor", "warning", "000002.SZ", "2023-03-20"),
            ("price_limit", "warning", "600000.SH", "2023-03-15"),
            ("missing_days", "error", "600000.SH", "2023-03-24"),
            ("stale", "warning", None, "2025-08-08")}


def found(rep):
    return {(f.check, f.severity, f.ts_code,
             None if f.trade_date is None else f.trade_date.strftime("%Y-%m-%d"))
            for f in rep.findings}


@pytest.fixture
def contract(tmp_path) -> Path:
    return contract_layout(tmp_path / "wh")


def test_clean_contract_layout_has_no_findings(contract, capsys):
    rep = check_warehouse(contract)
    assert rep.findings == [] and rep.counts == {} and rep.ok
    assert rep.checked == ["calendar", "duplicates", "ohlc", "adj_factor", "price_limit",
                           "missing_days", "stale"]
    assert not any(k in rep.skipped for k in rep.checked)
    assert render_check(rep, as_json=False) == 0
    assert "clean" in capsys.readouterr().out


def test_planted_problems_are_exactly_found(contract, capsys):
    plant(contract)
    rep = check_warehouse(contract)
    assert found(rep) == EXPECTED
    assert not rep.ok
    assert rep.counts["duplicates"] == {"error": 1} and rep.counts["stale"] == {"warning": 1}
    assert render_check(rep, as_json=True) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and len(doc["findings"]) == 6 and doc["truncated"] == 0
    assert doc["findings"][0]["severity"] == "error"
    assert set(doc) >= {"root", "ok", "checked", "skipped", "counts", "findings"}


def test_json_findings_are_capped(contract, capsys):
    plant(contract)
    rep = check_warehouse(contract)
    from mining.cli_data_check import report_json
    doc = report_json(rep, limit=2)
    assert len(doc["findings"]) == 2 and doc["truncated"] == 4


def test_snapshot_layout_skips_and_notes(tmp_path):
    build_warehouse(tmp_path / "wh")
    rep = check_warehouse(tmp_path / "wh")
    assert rep.ok                                          # info only
    assert "dividend" in rep.skipped["adj_factor"]
    assert found(rep) == {("missing_days", "info", "600001.SH", "2023-03-08")}
    assert any("suspend_d missing" in n for n in rep.notes)
    assert any("is_st_latest" in n for n in rep.notes)
    assert any("pretrade_date is empty" in n for n in rep.notes)


def test_missing_calendar_skips_calendar_checks(contract):
    (contract / "trade_cal.parquet").unlink()
    rep = check_warehouse(contract)
    assert {"calendar", "missing_days", "stale"} <= set(rep.skipped)
    assert rep.ok


def test_stale_against_today_and_bad_pretrade_date(contract):
    cal = pd.read_parquet(contract / "trade_cal.parquet")
    cal.loc[cal.cal_date == "2023-03-07", "pretrade_date"] = pd.Timestamp("2023-03-01")
    cal.to_parquet(contract / "trade_cal.parquet", index=False)
    rep = check_warehouse(contract, today="2025-08-29", stale_days=2)
    got = found(rep)
    assert ("calendar", "error", None, "2023-03-07") in got
    stale = [f.detail for f in rep.findings if f.check == "stale"]
    assert any("before today" in s for s in stale)
    assert sum("10 open day(s) behind" in s for s in stale) == 3     # daily, est, index


def test_date_range_limits_daily_checks(contract):
    plant(contract)
    rep = check_warehouse(contract, start="2025-01-01")
    assert {f.check for f in rep.findings} == {"stale"}


@pytest.mark.slow
@pytest.mark.skipif(not REAL.is_dir(), reason="embedded snapshot not present")
def test_real_snapshot_completes():
    t0 = time.perf_counter()
    rep = check_warehouse(REAL)
    assert rep.rows["daily"] > 10_000_000
    assert set(rep.checked) == {"calendar", "duplicates", "ohlc", "adj_factor", "price_limit",
                                "missing_days", "stale"}
    assert time.perf_counter() - t0 < 120
