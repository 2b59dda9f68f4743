"""Reconciliation (backtest.reconcile): fills files in both formats, hand-computed slippage,
missing / partial / over / unplanned fills, cost differences, positions drift, the replay."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.errors import BacktestError
from backtest.orders import PLAN_COLUMNS
from backtest.reconcile import read_fills, reconcile, simulate_plan
from backtest.rules import CostModel
from backtest.simulate import MarketData

DAY = "2024-07-01"          # execution day (stamp tax 0.05%)
COST = CostModel(commission=0.0003, min_commission=5.0, transfer_fee=0.00001)


def _plan() -> pd.DataFrame:
    rows = [("600000.SH", "sell", 1000, 10.0, 1000, "ok", ""),
            ("000001.SZ", "buy", 500, 20.0, 0, "ok", ""),
            ("600519.SH", "buy", 100, 1500.0, 0, "ok", ""),
            ("300750.SZ", "buy", 200, 180.0, 0, "flagged", "limit_up_buy")]
    df = pd.DataFrame(rows, columns=["ts_code", "side", "quantity", "ref_price", "current_qty",
                                     "status", "reason"])
    df["est_value"] = df["quantity"] * df["ref_price"]
    df["est_fees"] = 0.0
    df["sellable_qty"] = df["current_qty"]
    df["target_weight"] = 0.1
    df["target_value"] = 0.0
    return df[PLAN_COLUMNS]


PLAIN = """ts_code,side,volume,price,time,order_id
600000.SH,sell,600,9.98,2024-07-01 09:30:05,1
600000.SH,sell,400,9.97,2024-07-01 09:31:00,1
000001.SZ,buy,300,20.04,2024-07-01 09:32:00,2
002594.SZ,buy,100,250.00,2024-07-01 09:33:00,9
"""


def _fills(tmp_path, text=PLAIN, name="fills.csv"):
    p = tmp_path / name
    p.write_text(text)
    return read_fills(p)


def _sim() -> pd.DataFrame:
    return pd.DataFrame({"ts_code": ["600000.SH", "000001.SZ"], "side": ["sell", "buy"],
                         "volume": [1000, 500], "price": [9.99, 20.02],
                         "amount": [9990.0, 10010.0],
                         "fee": [5 + 4.995 + 0.0999, 5 + 0.1001],
                         "commission": [5.0, 5.0], "stamp_tax": [4.995, 0.0],
                         "transfer_fee": [0.0999, 0.1001]})


def test_hand_computed_reconciliation(tmp_path):
    fills, fmt = _fills(tmp_path)
    assert fmt == "plain" and list(fills["trade_date"].unique()) == [DAY]
    r = reconcile(_plan(), fills, DAY, COST, sim_fills=_sim())
    o = r.orders.set_index(["ts_code", "side"])
    st = o["fill_status"].to_dict()
    assert st == {("000001.SZ", "buy"): "partial", ("002594.SZ", "buy"): "unplanned",
                  ("300750.SZ", "buy"): "not_sent", ("600000.SH", "sell"): "filled",
                  ("600519.SH", "buy"): "missing"}
    sell = o.loc[("600000.SH", "sell")]
    # VWAP (600 x 9.98 + 400 x 9.97) / 1000 = 9.976; a sell 2.4 fen below 10.00: +24 bps (worse)
    assert sell["fill_price"] == pytest.approx(9.976)
    assert sell["slip_ref_bps"] == pytest.approx(24.0)
    assert sell["slip_ref_yuan"] == pytest.approx(24.0)               # 1000 x 0.024
    assert sell["slip_sim_bps"] == pytest.approx((9.99 - 9.976) / 9.99 * 1e4)
    buy = o.loc[("000001.SZ", "buy")]
    assert buy["slip_ref_bps"] == pytest.approx(20.0)                   # 20.04 vs 20.00
    assert buy["slip_sim_bps"] == pytest.approx((20.04 - 20.02) / 20.02 * 1e4)
    assert np.isnan(o.loc[("600519.SH", "buy"), "slip_ref_bps"])
    # fees: the model on the actual amounts vs on the plan (hand-computed)
    assert sell["fees_model"] == pytest.approx(5 + 0.0005 * 9976 + 0.00001 * 9976)
    assert buy["fees_model"] == pytest.approx(5 + 0.00001 * 6012)
    assert sell["fees_plan"] == pytest.approx(5 + 5 + 0.1)
    assert o.loc[("600519.SH", "buy"), "fees_plan"] == pytest.approx(45 + 1.5)
    assert o.loc[("300750.SZ", "buy"), "fees_plan"] == 0.0              # flagged: not planned
    c = r.costs
    assert c.loc["total", "plan"] == pytest.approx(10.1 + 5.1 + 46.5)
    model = 5 + 4.988 + 0.09976 + 5 + 0.06012 + 7.5 + 0.25
    assert c.loc["total", "model"] == pytest.approx(model)
    assert c.loc["stamp_tax", "model"] == pytest.approx(4.988)
    assert c.loc["stamp_tax", "sim"] == pytest.approx(4.995)
    assert c.loc["total", "actual_minus_plan"] == pytest.approx(model - 61.7)
    assert c.loc["total", "actual_minus_sim"] == pytest.approx(model - (10.0949 + 5.1001))
    assert np.isnan(c.loc["total", "reported"])
    # drift: 200 shares of 000001 and 100 of 600519 not bought, 100 of 002594 bought unplanned
    assert o["drift_shares"].to_dict() == {("000001.SZ", "buy"): -200,
                                           ("002594.SZ", "buy"): 100,
                                           ("300750.SZ", "buy"): 0, ("600000.SH", "sell"): 0,
                                           ("600519.SH", "buy"): -100}
    assert o.loc[("000001.SZ", "buy"), "drift_value"] == pytest.approx(-4000.0)
    assert o.loc[("000001.SZ", "buy"), "planned_after"] == 500
    assert o.loc[("000001.SZ", "buy"), "actual_after"] == 300
    assert o.loc[("600000.SH", "sell"), "actual_after"] == 0
    s = r.summary
    assert s["status"]["partial"] == 1 and s["status"]["missing"] == 1
    assert s["n_orders"] == 3 and s["n_drift"] == 3
    assert s["fill_rate_value"] == pytest.approx((10000 + 6000) / 170000)
    assert s["cash_drift"] == pytest.approx((9976 - 6012 - 25000 - model)
                                            - (10000 - 10000 - 150000 - 61.7))
    # value-weighted over the orders with a reference price (the unplanned one has none)
    assert s["slip_ref_bps"] == pytest.approx((24 * 9976 + 20 * 6012) / (9976 + 6012))


def test_over_fill_and_reported_fees(tmp_path):
    text = ("ts_code,side,volume,price,time,commission,stamp_tax,transfer_fee\n"
            "600000.SH,sell,1000,10.00,09:30:00,5,5,0.1\n"
            "000001.SZ,buy,600,19.90,09:31:00,5,0,0.12\n")
    fills, _ = _fills(tmp_path, text)
    assert list(fills["trade_date"]) == ["", ""]            # clock times only
    fills["trade_date"] = DAY
    r = reconcile(_plan(), fills, DAY, COST)
    o = r.orders.set_index(["ts_code", "side"])
    assert o.loc[("000001.SZ", "buy"), "fill_status"] == "over"
    assert o.loc[("000001.SZ", "buy"), "slip_ref_bps"] == pytest.approx(-50.0)   # better
    assert o.loc[("600000.SH", "sell"), "slip_ref_bps"] == pytest.approx(0.0)
    assert o.loc[("000001.SZ", "buy"), "fees_reported"] == pytest.approx(5.12)
    assert r.costs.loc["total", "reported"] == pytest.approx(15.22)
    assert r.costs.loc["total", "actual_minus_plan"] == pytest.approx(15.22 - 61.7)
    assert np.isnan(r.costs.loc["total", "sim"])             # no replay given
    assert o.loc[("000001.SZ", "buy"), "drift_shares"] == 100


def test_qmt_format_matches_plain(tmp_path):
    # traded_time in Unix seconds; 2024-07-01 09:30:05 in Shanghai = 01:30:05 UTC
    t0 = int(pd.Timestamp("2024-07-01 01:30:05", tz="UTC").timestamp())
    text = ("account_id,stock_code,order_type,traded_id,traded_time,traded_price,"
            "traded_volume,traded_amount,order_id\n"
            f"1,600000.SH,24,a1,{t0},9.98,600,5988,1\n"
            f"1,600000.SH,24,a2,{t0 + 55},9.97,400,3988,1\n"
            f"1,000001.SZ,23,a3,{t0 + 115},20.04,300,6012,2\n"
            f"1,002594.SZ,23,a4,{t0 + 175},250.00,100,25000,9\n")
    q, fmt = _fills(tmp_path, text, "qmt.csv")
    p, _ = _fills(tmp_path)
    assert fmt == "qmt"
    assert list(q["time"]) == list(p["time"]) and list(q["trade_date"]) == [DAY] * 4
    assert list(q["trade_id"]) == ["a1", "a2", "a3", "a4"]
    a = reconcile(_plan(), q, DAY, COST).orders
    b = reconcile(_plan(), p, DAY, COST).orders
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("text, fragment", [
    ("ts_code,side,volume,price,time\n600000.SH,hold,100,10,09:30\n",
     "row 1, column 'side': 'hold' is not buy or sell"),
    ("ts_code,side,volume,price,time\n600000.SH,buy,100,10,09:30\n600000.SH,buy,150.5,10,"
     "09:31\n", "row 2, column 'volume': '150.5' is not a whole number"),
    ("ts_code,side,volume,price,time\n600000.SH,buy,100,-1,09:30\n",
     "row 1, column 'price': '-1' is not a number > 0"),
    ("ts_code,side,volume,price,time\n600000,buy,100,10,09:30\n",
     "row 1, column 'ts_code': '600000' is not a ts_code"),
    ("ts_code,side,volume,price,time\n600000.SH,buy,100,10,noon\n",
     "row 1, column 'time': 'noon' is not a time"),
    ("stock_code,order_type,traded_volume,traded_price,traded_time\n600000.SH,25,100,10,"
     "1719797405\n", "row 1, column 'order_type': '25' is not 23"),
    ("code,qty\n600000.SH,100\n", "match no format"),
    ("", "is empty (0 bytes)"),
])
def test_bad_fills_file_names_row_and_column(tmp_path, text, fragment):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(BacktestError) as e:
        read_fills(p)
    assert fragment in str(e.value) and str(p) in str(e.value)


def test_replay_applies_the_simulator_rules():
    codes = ["600000.SH", "000001.SZ", "600519.SH", "300750.SZ"]
    opn = np.array([[10.05, 20.10, 1510.0, 190.0]])
    mk = MarketData.from_arrays([DAY], codes, open=opn, close=opn,
                                vol=np.array([[1e6, 1e6, 1e6, 1e6]]),
                                limit_up=np.array([[11.0, 22.0, 1510.0, 198.0]]),
                                limit_down=np.array([[9.0, 18.0, 1300.0, 160.0]]))
    plan = _plan()
    plan.loc[1, "quantity"] = 250_000                 # above 10% of 1e6 shares: cut to 100,000
    cost = CostModel(commission=0.0003, min_commission=5.0, transfer_fee=0.00001,
                     slippage_bps=10.0)
    fills, rej = simulate_plan(plan, mk, DAY, cost, participation=0.1)
    f = fills.set_index("ts_code")
    assert set(f.index) == {"600000.SH", "000001.SZ"}          # 600519 at limit-up; 300750 flagged
    assert f.loc["600000.SH", "price"] == pytest.approx(10.05 * 0.999)
    assert f.loc["000001.SZ", "volume"] == 100_000
    assert f.loc["000001.SZ", "price"] == pytest.approx(20.10 * 1.001)
    v = 1000 * 10.05 * 0.999
    assert f.loc["600000.SH", "fee"] == pytest.approx(5 + 0.0005 * v + 0.00001 * v)
    assert f.loc["600000.SH", "slippage"] == pytest.approx(1000 * 10.05 * 0.001)
    assert sorted(map(tuple, rej[["ts_code", "reason"]].to_numpy())) == [
        ("000001.SZ", "participation"), ("600519.SH", "limit_up_buy")]
    assert rej.set_index("ts_code").loc["000001.SZ", "volume"] == 150_000
    with pytest.raises(BacktestError, match="no market data on 2024-07-02"):
        simulate_plan(plan, mk, "2024-07-02", cost)


def test_replay_is_causal():
    """Truncating the market after the execution day changes nothing (and later days' bars
    are never read): the replay and the reconciliation of a day use that day only."""
    codes = ["600000.SH", "000001.SZ", "600519.SH", "300750.SZ"]
    dates = pd.bdate_range(DAY, periods=4)
    rng = np.random.default_rng(0)
    opn = 10 + rng.uniform(0, 5, (4, 4))
    mk = MarketData.from_arrays(dates, codes, open=opn, close=opn * 1.01,
                                vol=rng.uniform(1e3, 1e6, (4, 4)))
    cost = CostModel(slippage_bps=5.0)
    fills = pd.DataFrame({"trade_date": DAY, "ts_code": ["600000.SH"], "side": ["sell"],
                          "volume": [1000], "price": [9.9], "amount": [9900.0],
                          "fee": [np.nan], "time": [""], "order_id": [""], "trade_id": [""]})
    full = simulate_plan(_plan(), mk, DAY, cost)
    cut = simulate_plan(_plan(), mk.truncate(DAY), DAY, cost)
    for a, b in zip(full, cut):
        pd.testing.assert_frame_equal(a, b)
    assert len(full[0]) > 0
    pd.testing.assert_frame_equal(reconcile(_plan(), fills, DAY, cost, full[0]).orders,
                                  reconcile(_plan(), fills, DAY, cost, cut[0]).orders)
    # changing a later day's bars changes nothing either
    mk.open[1:] *= 2.0
    mk.vol[1:] = 0.0
    pd.testing.assert_frame_equal(simulate_plan(_plan(), mk, DAY, cost)[0], full[0])
