"""A-share rule helpers: boards, lots, stamp tax, costs, order checks (exact values)."""
import math

import numpy as np
import pandas as pd
import pytest

from backtest.errors import BacktestError
from backtest.rules import (
    CostModel,
    board,
    cents,
    check_order,
    lot_params,
    min_buy_qty,
    round_buy_qty,
    round_sell_qty,
    stamp_tax_rate,
    stamp_tax_rates,
)
from backtest.settings import BacktestConfig


def test_board_from_prefix():
    assert board("600000.SH") == "main"
    assert board("000001.SZ") == "main"
    assert board("300750.SZ") == "chinext"
    assert board("688981.SH") == "star"
    lo, st = lot_params(["600000.SH", "688981.SH", "300750.SZ"])
    assert lo.tolist() == [100, 200, 100] and st.tolist() == [100, 1, 100]


def test_min_buy_qty():
    assert min_buy_qty("600000.SH") == 100
    assert min_buy_qty("300750.SZ") == 100
    assert min_buy_qty("688981.SH") == 200


@pytest.mark.parametrize("code,shares,expected", [
    ("600000.SH", 0, 0), ("600000.SH", 99.9, 0), ("600000.SH", 100, 100),
    ("600000.SH", 1999.9999999999, 2000),      # float noise below a lot boundary
    ("600000.SH", 1999.5, 1900), ("300750.SZ", 250, 200),
    ("688981.SH", 199, 0), ("688981.SH", 200, 200), ("688981.SH", 201.7, 201),
    ("600000.SH", float("nan"), 0), ("600000.SH", -5, 0),
])
def test_round_buy_qty(code, shares, expected):
    assert round_buy_qty(code, shares) == expected


@pytest.mark.parametrize("code,shares,held,expected", [
    ("600000.SH", 250, 250, 250),      # odd lot sellable whole
    ("600000.SH", 1000, 250, 250),     # capped at the holding
    ("600000.SH", 150, 250, 100),      # part of it: multiples of 100
    ("600000.SH", 50, 250, 0),         # an odd lot cannot be sold alone
    ("600000.SH", 50, 50, 50),
    ("688981.SH", 150, 250, 0),        # STAR: at least 200 ...
    ("688981.SH", 220, 250, 220),      # ... then 1-share steps
    ("688981.SH", 150, 150, 150),      # ... or the whole holding
    ("600000.SH", 100, 0, 0),
])
def test_round_sell_qty(code, shares, held, expected):
    assert round_sell_qty(code, shares, held) == expected


def test_stamp_tax_dated():
    assert stamp_tax_rate("2023-08-27") == 0.001
    assert stamp_tax_rate("2023-08-28") == 0.0005
    assert stamp_tax_rate("2015-01-05") == 0.001
    assert stamp_tax_rate("2008-04-23") == 0.003
    v = stamp_tax_rates(pd.DatetimeIndex(["2023-08-25", "2023-08-28", "2024-01-02"]))
    assert v.tolist() == [0.001, 0.0005, 0.0005]


def test_fees_exact():
    c = CostModel(commission=0.0003, min_commission=5.0, transfer_fee=0.00001)
    f = c.fees("buy", 100_000.0, "2023-09-01")
    assert f == {"commission": pytest.approx(30.0), "stamp_tax": 0.0,
                 "transfer_fee": pytest.approx(1.0)}
    f = c.fees("sell", 10_000.0, "2023-08-25")       # commission 3 -> minimum 5
    assert f["commission"] == 5.0
    assert f["stamp_tax"] == pytest.approx(10.0)
    f = c.fees("sell", 10_000.0, "2023-08-28")
    assert f["stamp_tax"] == pytest.approx(5.0)
    assert c.fees("sell", 0.0, "2023-08-28") == {"commission": 0.0, "stamp_tax": 0.0,
                                                 "transfer_fee": 0.0}
    with pytest.raises(BacktestError, match="side"):
        c.fees("short", 1.0, "2023-08-28")


def test_fill_price_and_config():
    c = CostModel(slippage_bps=10)
    assert c.fill_price("buy", 10.0) == pytest.approx(10.01)
    assert c.fill_price("sell", 10.0) == pytest.approx(9.99)
    bt = BacktestConfig()
    m = CostModel.from_config(bt)
    assert (m.commission, m.min_commission, m.transfer_fee, m.slippage_bps) == (
        bt.commission, bt.min_commission, bt.transfer_fee, bt.slippage_bps)
    with pytest.raises(BacktestError, match="commission"):
        CostModel(commission=-0.1)
    with pytest.raises(BacktestError, match="slippage_bps"):
        CostModel(slippage_bps=math.nan)


def test_check_order():
    assert check_order("buy", 11.0, 11.0, 9.0, True) == "limit_up_buy"
    assert check_order("buy", 10.99, 11.0, 9.0, True) is None
    assert check_order("sell", 11.0, 11.0, 9.0, True) is None       # selling at limit-up is fine
    assert check_order("sell", 9.0, 11.0, 9.0, True) == "limit_down_sell"
    assert check_order("buy", 9.0, 11.0, 9.0, True) is None
    assert check_order("buy", 10.0, np.nan, np.nan, True) is None    # no limit (new listing)
    assert check_order("buy", 10.0, 11.0, 9.0, False) == "suspended"
    assert check_order("sell", np.nan, 11.0, 9.0, True) == "suspended"
    assert cents(10.005) == 1001 and cents(5.885) == 589
