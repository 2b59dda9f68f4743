"""The stable layer's rules (backtest.monitor) on synthetic quarterly panels with known answers,
the point-in-time reading of fundamentals (data.fundamentals) and causality."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.monitor import (
    MonitorConfig,
    find_alerts,
    rule_dividend_cut,
    rule_low_yield,
    rule_profit_decline,
    rule_valuation_high,
    rule_valuation_jump,
)
from data.fundamentals import dividend_rows, report_rows, valuation_rows

OPEN = pd.DatetimeIndex(pd.bdate_range("2015-01-01", "2026-12-31"))


def val(code, pe=None, pb=None, dv=None, n=None, first="2020-03-31", lag_days=0, mv=1e10):
    """Valuation rows of one stock on consecutive quarter ends (visible ``lag_days`` after)."""
    n = n or len(next(x for x in (pe, pb, dv) if x is not None))
    q = pd.date_range(first, periods=n, freq="QE")
    nan = [np.nan] * n
    return pd.DataFrame({"ts_code": code, "quarter": q,
                         "visible_date": q + pd.Timedelta(days=lag_days),
                         "pe": pe if pe is not None else nan, "pb": pb if pb is not None else nan,
                         "dv_ratio": dv if dv is not None else nan, "total_mv": mv})


def hits(ev):
    return [(r.ts_code, pd.Timestamp(r.period).date().isoformat()) for r in
            ev.loc[ev["hit"]].itertuples()]


# ------------------------------------------------------------------------------ low yield
def test_low_yield_two_consecutive_quarters_onset_only():
    v = val("A", dv=[2.0, 2.0, 0.5, 0.5, 0.5, 2.0, 0.8, np.nan])   # NaN + market value = 0 %
    ev = rule_low_yield(v, 1.0, 2)
    assert hits(ev) == [("A", "2020-12-31"), ("A", "2021-12-31")]
    assert ev.loc[ev["hit"], "values"].iloc[1]["dv_ratio"] == 0.0
    rep = rule_low_yield(v, 1.0, 2, repeat=True)
    assert hits(rep) == [("A", "2020-12-31"), ("A", "2021-03-31"), ("A", "2021-12-31")]


def test_low_yield_run_breaks_on_a_missing_quarter_and_between_stocks():
    a = val("A", dv=[0.5, 0.5])
    gap = a.iloc[[0]].assign(quarter=pd.Timestamp("2020-12-31"),
                             visible_date=pd.Timestamp("2020-12-31"))
    b = val("B", dv=[0.5])
    v = pd.concat([a.iloc[[0]], gap, b]).reset_index(drop=True)   # Q1, Q4 (gap), then B
    assert hits(rule_low_yield(v, 1.0, 2)) == []
    assert hits(rule_low_yield(pd.concat([a, b]).reset_index(drop=True), 1.0, 2)) == [
        ("A", "2020-06-30")]


# ------------------------------------------------------------------------------ valuation
def test_pe_above_its_trailing_percentile():
    base = [12.0 if i % 2 else 10.0 for i in range(20)]            # 10, 12, ... 20 quarters
    pe = base + [20.0, 21.0, np.nan, 13.0]
    v = val("A", pe=pe)
    ev = rule_valuation_high(v, "pe", 0.9, 20, 12)
    assert np.quantile(base, 0.9) == pytest.approx(12.0)
    assert hits(ev) == [("A", "2025-03-31")]                      # 20 > 12; 21 is a repeat
    row = ev.loc[ev["hit"]].iloc[0]
    assert row["values"]["threshold"] == pytest.approx(12.0) and row["severity"] == "medium"
    # too little history: nothing before pctl_min_quarters values
    assert hits(rule_valuation_high(val("B", pe=[1.0] * 5 + [9.0]), "pe", 0.9, 20, 12)) == []


def test_valuation_jump_within_a_quarter():
    v = val("A", pb=[1.0, 1.6, 1.7, 4.0, -1.0, 3.0])
    ev = rule_valuation_jump(v, "pb", 0.5)
    assert hits(ev) == [("A", "2020-06-30"), ("A", "2020-12-31")]  # +60%, +135%; not via -1
    assert list(ev.loc[ev["hit"], "severity"]) == ["medium", "high"]


# ------------------------------------------------------------------------------ profit
def reports(code, yoy, first="2022-03-31", lag_days=30, col="netprofit_yoy"):
    q = pd.date_range(first, periods=len(yoy), freq="QE")
    return pd.DataFrame({"ts_code": code, "end_date": q,
                         "visible_date": q + pd.Timedelta(days=lag_days), col: yoy})


def test_profit_decline_two_reports_running():
    r = reports("A", [5.0, -3.0, -4.0, -1.0, 2.0, -5.0, -6.0])
    assert hits(rule_profit_decline(r, 2, "fina_indicator")) == [("A", "2022-09-30"),
                                                                  ("A", "2023-09-30")]


def test_profit_decline_from_income_year_on_year():
    # YTD net profit: 2022 Q1..Q4, 2023 Q1..Q4; 2023 Q2 and Q3 below 2022's
    r = reports("A", [10.0, 20, 30, 40, 11, 19, 29, 41], col="n_income")
    ev = rule_profit_decline(r, 2, "income")
    assert hits(ev) == [("A", "2023-09-30")]
    assert ev.loc[ev["hit"], "values"].iloc[0]["net_profit_prev"] == 30.0


def test_profit_decline_snapshot_proxy_counts_changes_of_annual_profit():
    # total_mv / pe = annual profit: 100 (4 quarters), 90, 90, 90, 90, 80 -> two declines
    pe = [100.0] * 4 + [10 / 0.9 * 10] * 4 + [125.0]
    v = val("A", pe=pe, mv=1e4)
    ev = rule_profit_decline(v, 2, "snapshot")
    assert hits(ev) == [("A", "2022-03-31")]


# ------------------------------------------------------------------------------ dividends
def raw_div(rows):
    return pd.DataFrame(rows, columns=["ts_code", "end_date", "ann_date", "div_proc",
                                       "cash_div_tax", "base_share"])


DIV = raw_div([
    ("A", "2022-12-31", "2023-03-20", "预案", 1.0, 1000.0),     # FY2022: 1.0 x 1e7 = 1e7 yuan
    ("A", "2022-12-31", "2023-03-20", "实施", 1.0, 1000.0),
    ("A", "2023-06-30", "2023-08-20", "预案", 0.3, 1000.0),     # FY2023 interim 3e6
    ("A", "2023-12-31", "2024-03-22", "预案", 0.2, 2000.0),     # + annual 4e6 (after a 2:1 split)
    ("B", "2022-12-31", "2023-04-10", "预案", 0.5, 1000.0),
    ("B", "2023-12-31", "2024-04-10", "预案", 0.9, 500.0),      # 4.5e6 vs 5e6: -10 %
    ("C", "2022-12-31", "2023-04-10", "预案", 0.5, 1000.0),
    ("C", "2023-12-31", "2024-04-10", "预案", 0.5, 1000.0),
    ("C", "2023-12-31", "2024-05-20", "未通过", 0.5, 1000.0),   # voted down: 0
])


def test_dividend_rows_units_and_visibility():
    d = dividend_rows(DIV, OPEN)
    a = d.loc[d.ts_code == "A"].iloc[0]
    assert a["cash_total"] == pytest.approx(1e7)                  # yuan/share x 10k shares
    assert a["visible_date"] == pd.Timestamp("2023-03-21")        # the next open day
    assert d.loc[d.div_proc == "未通过", "cash_total"].iloc[0] == 0.0


def test_dividend_cut_fiscal_year_totals():
    d = dividend_rows(DIV, OPEN)
    ev = rule_dividend_cut(d.loc[d.visible_date <= "2024-12-31"], 0.2)
    got = ev.loc[ev["hit"]]
    assert hits(ev) == [("A", "2023-12-31"), ("C", "2023-12-31")]
    assert got.iloc[0]["values"]["change"] == pytest.approx(-0.3)  # 7e6 vs 1e7
    assert pd.Timestamp(got.iloc[0]["date"]) == pd.Timestamp("2024-03-25")   # annual plan seen
    # point in time: before the annual plan nobody knows the year's total; before the vote C
    # is not cut
    early = rule_dividend_cut(d.loc[d.visible_date <= "2024-03-22"], 0.2)
    assert hits(early) == []
    mid = rule_dividend_cut(d.loc[d.visible_date <= "2024-05-01"], 0.2)
    assert hits(mid) == [("A", "2023-12-31")]


# ------------------------------------------------------------------------------ point in time
def test_valuation_rows_drop_stray_dates_and_date_missing_anchors():
    raw = pd.DataFrame({
        "ts_code": ["A", "A", "B", "A"],
        "snapshot_date": pd.to_datetime(["2018-12-31", "2019-01-31", "2018-12-31",
                                         "2019-03-31"]),
        "anchor_date": pd.to_datetime(["2019-01-02", "2019-01-31", None, None]),
        "total_mv": [1.0, 2, 3, 4], "pe": [1.0, 2, 3, 4], "pb": 1.0, "dv_ratio": 1.0})
    v = valuation_rows(raw)
    assert list(zip(v.ts_code, v.quarter.dt.strftime("%Y-%m-%d"),
                    v.visible_date.dt.strftime("%Y-%m-%d"))) == [
        ("A", "2018-12-31", "2019-01-02"), ("A", "2019-03-31", "2019-03-31"),
        ("B", "2018-12-31", "2019-01-02")]                        # modal anchor of the quarter
    assert v.total_mv.iloc[0] == 1e4                              # 万元 -> yuan


def test_report_rows_are_visible_the_open_day_after_announcement():
    raw = pd.DataFrame({"ts_code": ["A", "A"], "end_date": pd.to_datetime(["2023-12-31"] * 2),
                        "ann_date": pd.to_datetime(["2024-03-29", "2024-04-25"]),
                        "f_ann_date": pd.to_datetime([None, "2024-04-26"]),
                        "netprofit_yoy": [-5.0, -6.0]})
    r = report_rows(raw, ["netprofit_yoy"], OPEN)
    assert list(r.visible_date.dt.strftime("%Y-%m-%d")) == ["2024-04-01", "2024-04-29"]


def _world():
    v = pd.concat([val("A", pe=[12.0 if i % 2 else 10.0 for i in range(20)] + [20.0, 30, 50],
                       pb=[1.0] * 22 + [2.0], dv=[0.5] * 23, lag_days=2),
                   val("B", pe=[8.0] * 23, pb=[1.0] * 23, dv=[3.0] * 23)]
                  ).sort_values(["ts_code", "quarter"]).reset_index(drop=True)
    plans = dividend_rows(DIV, OPEN)
    rep = pd.concat([reports("A", [5.0, -3.0, -4.0, -1.0, 2.0, -5.0, -6.0]),
                     reports("B", [1.0, -1.0, 2.0, -1.0, -1.0, -1.0, 3.0], first="2022-12-31")])
    return v, plans, rep.sort_values(["ts_code", "end_date"]).reset_index(drop=True)


@pytest.mark.parametrize("date", ["2023-06-30", "2024-04-05", "2024-12-31", "2025-09-30"])
@pytest.mark.parametrize("start", [None, "2023-01-01"])
def test_truncating_the_future_never_changes_the_alerts(date, start):
    """Causality: rows visible after the monitor day (future quarters, later restatements)
    make no difference."""
    v, plans, rep = _world()
    d = pd.Timestamp(date)
    restated = pd.concat([rep, rep.assign(visible_date=d + pd.Timedelta(days=1),
                                          netprofit_yoy=-50.0)]).sort_values(
        ["ts_code", "end_date", "visible_date"], kind="mergesort").reset_index(drop=True)
    cfg = MonitorConfig()
    full = find_alerts(v, plans, restated, cfg, d, start, "fina_indicator")
    cut = find_alerts(v[v.visible_date <= d], plans[plans.visible_date <= d],
                      rep[rep.visible_date <= d], cfg, d, start, "fina_indicator")
    pd.testing.assert_frame_equal(full[0], cut[0])
    assert full[1] == cut[1]


def test_window_and_latest_state():
    v, plans, rep = _world()
    cfg = MonitorConfig()
    alerts, counts = find_alerts(v, plans, rep, cfg, "2024-12-31", "2024-01-01",
                                 "fina_indicator")
    got = set(zip(alerts.ts_code, alerts.rule, alerts.period))
    assert ("A", "dividend_cut", "2023-12-31") in got and ("C", "dividend_cut",
                                                            "2023-12-31") in got
    assert ("B", "profit_decline", "2023-12-31") in got          # 2nd -1, visible 2024-01-30
    assert ("A", "profit_decline", "2023-09-30") not in got      # visible 2023: before start
    assert not any(r == "pe_high" for _, r, _ in got)
    y25, _ = find_alerts(v, plans, rep, cfg, "2025-12-31", "2025-01-01", "fina_indicator")
    assert ("A", "pe_high", "2025-03-31") in set(zip(y25.ts_code, y25.rule, y25.period))
    assert all("2024-01-01" <= d <= "2024-12-31" for d in alerts.date)
    assert counts["low_yield"] == 0 and sum(counts.values()) == len(alerts)
    # the latest state after 2025-09-30 (A's numbers are seen 2 days after the quarter end):
    # A's pe keeps rising (30, 50) but alerts at the onset only; its pb doubles
    early, _ = find_alerts(v, plans, rep, cfg, "2025-10-01", None, "fina_indicator")
    assert "pb_jump" not in set(early.rule)
    latest, _ = find_alerts(v, plans, rep, cfg, "2025-10-02", None, "fina_indicator")
    got = set(zip(latest.ts_code, latest.rule, latest.period))
    assert ("A", "pb_jump", "2025-09-30") in got and ("A", "pe_high", "2025-09-30") not in got
    assert latest.loc[latest.rule == "pb_jump", "severity"].iloc[0] == "medium"


def test_config_rejects_unknown_rules():
    with pytest.raises(ValueError, match="unknown rule"):
        MonitorConfig(rules=("low_yield", "moon_phase"))
