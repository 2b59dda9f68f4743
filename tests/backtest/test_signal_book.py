"""The signal book on hand-made markets: buys at the next open, stops and take-profits on the
right day and price (T+1, gaps, limit-locked days), score exits, caps, costs by hand,
causality (truncation)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.rules import CostModel
from backtest.signal_book import run_book
from backtest.signals import SignalsConfig
from backtest.simulate import MarketData, SimConfig

DATES = pd.bdate_range("2021-01-04", periods=5)
CFG = SignalsConfig(max_names=1, max_weight=1.0, max_industry_weight=1.0, buy_threshold=75.0,
                    exit_threshold=45.0, k_stop=2.0, k_tp=4.0)
FREE = SimConfig(init_cash=100_000.0, costs=CostModel.zero(), participation=None)


def one(o, h, lo, c, score, *, ld=None, lu=None, cfg=CFG, sim=FREE, atr=0.5):
    """One stock over len(o) days; ATR 0.5 yuan every day (stop 9, take-profit 12 on a 10 buy)."""
    T = len(o)
    col = lambda x: None if x is None else np.array(x, float).reshape(T, 1)  # noqa: E731
    m = MarketData.from_arrays(DATES[:T], ["600000.SH"], col(o), col(c),
                               limit_up=col(lu), limit_down=col(ld))
    return run_book(m, col(h), col(lo), col(score), np.full((T, 1), atr),
                    np.ones((T, 1), bool), np.zeros((T, 1), int), cfg, sim)


def trades(res):
    t = res.sim.trades
    return [(str(d.date()), s, q, round(p, 6), r) for d, s, q, p, r in
            zip(t.trade_date, t.side, t.quantity, t.price, t.reason)]


def test_stop_not_on_buy_day_then_at_the_stop_price():
    res = one(o=[10, 10, 9.5, 9.5], h=[10.2, 10.1, 9.6, 9.6], lo=[9.8, 8.5, 8.9, 9.4],
              c=[10, 9.5, 9.5, 9.5], score=[80, 60, 60, 60])
    assert trades(res) == [("2021-01-05", "buy", 10000, 10.0, "score"),
                           ("2021-01-06", "sell", 10000, 9.0, "stop_loss")]
    assert res.sim.nav.iloc[2] == pytest.approx(90_000.0)
    buy = res.signals[res.signals.flag == "buy"].iloc[0]
    assert (str(buy.trade_date.date()), buy.entry, buy.stop, buy.take_profit) == \
        ("2021-01-04", 10.0, 9.0, 12.0)
    st = res.stops.iloc[0]
    assert (str(st.trade_date.date()), st.reason, st.fill) == ("2021-01-06", "stop_loss", 9.0)


def test_gap_through_the_stop_sells_at_the_open():
    res = one(o=[10, 10, 8.5, 8.5], h=[10, 10.1, 8.7, 8.7], lo=[10, 9.9, 8.4, 8.4],
              c=[10, 10, 8.6, 8.6], score=[80, 60, 60, 60])
    assert trades(res)[1] == ("2021-01-06", "sell", 10000, 8.5, "stop_loss")


def test_limit_locked_down_cannot_sell_and_retries_next_open():
    ld = [9.0, 9.0, 8.0, 7.2]
    res = one(o=[10, 10, 8.0, 8.2], h=[10, 10.1, 8.0, 8.5], lo=[10, 9.9, 8.0, 8.0],
              c=[10, 10, 8.0, 8.3], score=[80, 60, 60, 60], ld=ld)
    assert trades(res)[1:] == [("2021-01-07", "sell", 10000, 8.2, "stop_loss")]
    rj = res.sim.rejected
    assert list(zip(rj.trade_date.dt.strftime("%Y-%m-%d"), rj.side, rj.reason)) == \
        [("2021-01-06", "sell", "limit_down_sell")]
    assert np.isnan(res.stops.iloc[0].fill)


def test_an_exit_locked_two_days_is_signalled_again_and_filled_on_the_third():
    res = one(o=[10, 10, 8.0, 7.2, 7.5], h=[10, 10.1, 8.0, 7.2, 7.8],
              lo=[10, 9.9, 8.0, 7.2, 7.4], c=[10, 10, 8.0, 7.2, 7.6],
              score=[80, 60, 60, 60, 60], ld=[9.0, 9.0, 8.0, 7.2, 6.5])
    assert trades(res)[1:] == [("2021-01-08", "sell", 10000, 7.5, "stop_loss")]
    assert res.sim.rejected.reason.tolist() == ["limit_down_sell"] * 2
    sells = res.signals[res.signals.flag == "sell"]
    assert list(zip(sells.trade_date.dt.strftime("%Y-%m-%d"), sells.reason)) == \
        [("2021-01-06", "stop_loss"), ("2021-01-07", "stop_loss")]


def test_take_profit_at_its_price_or_a_gap_up_open():
    res = one(o=[10, 10, 10.5, 10.5], h=[10, 10.1, 12.5, 12], lo=[10, 9.9, 10.4, 10],
              c=[10, 10, 12.2, 12], score=[80, 60, 60, 60])
    assert trades(res)[1] == ("2021-01-06", "sell", 10000, 12.0, "take_profit")
    res = one(o=[10, 10, 12.5, 12.5], h=[10, 10.1, 12.9, 12.5], lo=[10, 9.9, 12.4, 12],
              c=[10, 10, 12.6, 12], score=[80, 60, 60, 60])
    assert trades(res)[1] == ("2021-01-06", "sell", 10000, 12.5, "take_profit")


def test_a_day_touching_both_counts_the_stop_first():
    res = one(o=[10, 10, 10, 10], h=[10, 10.1, 12.5, 10], lo=[10, 9.9, 8.9, 10],
              c=[10, 10, 10, 10], score=[80, 60, 60, 60])
    assert trades(res)[1] == ("2021-01-06", "sell", 10000, 9.0, "stop_loss")


def test_score_exit_sells_at_the_next_open():
    res = one(o=[10, 10, 10.3, 10.4], h=[10, 10.1, 10.5, 10.5], lo=[10, 9.9, 10.2, 10.3],
              c=[10, 10, 10.4, 10.4], score=[80, 30, 30, 30])
    assert trades(res)[1] == ("2021-01-06", "sell", 10000, 10.3, "exit_score")
    sell = res.signals[res.signals.flag == "sell"].iloc[0]
    assert (str(sell.trade_date.date()), sell.reason) == ("2021-01-05", "exit_score")


def test_limit_up_open_rejects_the_buy():
    res = one(o=[10, 11, 11, 11], h=[10, 11, 11, 11], lo=[10, 11, 11, 11],
              c=[10, 11, 11, 11], score=[80, 60, 60, 60], lu=[11, 11, 12.1, 12.1])
    assert trades(res) == []
    assert res.sim.rejected.reason.tolist() == ["limit_up_buy"]


def test_costs_by_hand():
    sim = SimConfig(init_cash=100_000.0, participation=None,
                    costs=CostModel(commission=0.0003, min_commission=5.0,
                                    transfer_fee=0.00001, slippage_bps=10.0))
    res = one(o=[10, 10, 9.5, 9.5], h=[10.2, 10.1, 9.6, 9.6], lo=[9.8, 9.9, 8.9, 9.4],
              c=[10, 9.5, 9.5, 9.5], score=[80, 60, 60, 60], sim=sim)
    p = 10.0 * 1.001                                  # buy: 100000 / 10.01 -> 9900 shares
    v = 9900 * p
    cash = 100_000 - v - 0.0003 * v - 0.00001 * v
    s = 9.0 * 0.999                                   # sell at the stop, less slippage
    w = 9900 * s
    cash += w - 0.0003 * w - 0.00001 * w - 0.001 * w  # stamp tax 0.1 % in 2021
    assert trades(res)[0][2] == 9900
    assert res.sim.cash.iloc[2] == pytest.approx(cash, abs=1e-6)
    assert res.sim.costs["stamp_tax"].sum() == pytest.approx(0.001 * w)


def test_book_size_and_industry_cap():
    """Three names above the threshold, two in one industry; slot 1/3, industry cap 0.5: the
    best of industry 0 and the one of industry 1 are bought."""
    T, N = 3, 3
    m = MarketData.from_arrays(DATES[:T], ["600000.SH", "600001.SH", "600002.SH"],
                               np.full((T, N), 10.0), np.full((T, N), 10.0))
    cfg = SignalsConfig(max_names=3, max_weight=1 / 3, max_industry_weight=0.5)
    score = np.tile([90.0, 85.0, 80.0], (T, 1))
    res = run_book(m, np.full((T, N), 10.0), np.full((T, N), 10.0), score,
                   np.full((T, N), 0.5), np.ones((T, N), bool), np.tile([0, 0, 1], (T, 1)),
                   cfg, FREE)
    bought = res.sim.trades.query("side == 'buy'")
    assert sorted(bought.ts_code) == ["600000.SH", "600002.SH"]
    assert (bought.value <= 100_000 / 3 + 1e-6).all()


def test_book_is_causal():
    """Trades, signals and NAV up to day k are the same with the market truncated at k."""
    rng = np.random.default_rng(3)
    T, N = 60, 6
    dates = pd.bdate_range("2021-01-04", periods=T)
    close = 10 * np.cumprod(1 + rng.normal(0, 0.02, (T, N)), axis=0)
    opn = close * (1 + rng.normal(0, 0.005, (T, N)))
    hi = np.maximum(opn, close) * 1.01
    lo = np.minimum(opn, close) * 0.99
    score = rng.uniform(0, 100, (T, N))
    atr = np.full((T, N), 0.15)
    cfg = SignalsConfig(max_names=3, max_weight=0.3, max_industry_weight=1.0)
    codes = [f"60000{i}.SH" for i in range(N)]
    full_m = MarketData.from_arrays(dates, codes, opn, close)
    full = run_book(full_m, hi, lo, score, atr, np.ones((T, N), bool), np.zeros((T, N), int),
                    cfg, FREE)
    assert len(full.stops) > 0 and len(full.sim.trades) > 10
    k = 40
    part = run_book(full_m.truncate(dates[k]), hi[:k + 1], lo[:k + 1], score[:k + 1],
                    atr[:k + 1], np.ones((k + 1, N), bool), np.zeros((k + 1, N), int),
                    cfg, FREE)
    cut = lambda df: df[df.trade_date <= dates[k]].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(cut(full.sim.trades), part.sim.trades)
    pd.testing.assert_frame_equal(cut(full.signals), part.signals)
    np.testing.assert_array_equal(full.sim.nav.iloc[:k + 1], part.sim.nav)


def test_sells_are_cut_to_the_participation_cap_and_the_rest_sells_at_next_opens():
    """10,000 shares held, 10 % of a 40,000-share day may trade: the stop sells 4,000 at the
    stop price, the rest is a pending exit sold 4,000 then 2,000 at the next opens."""
    T = 5
    col = lambda x: np.array(x, float).reshape(T, 1)  # noqa: E731
    vol = col([1e6, 1e6, 40_000, 40_000, 40_000])
    m = MarketData.from_arrays(DATES[:T], ["600000.SH"], col([10, 10, 9.5, 9.2, 9.1]),
                               col([10, 9.5, 9.5, 9.2, 9.1]), vol=vol)
    sim = SimConfig(init_cash=100_000.0, costs=CostModel.zero(), participation=0.1)
    res = run_book(m, col([10.2, 10.1, 9.6, 9.3, 9.2]), col([9.8, 9.9, 8.9, 9.1, 9.0]),
                   col([80, 60, 60, 60, 60]), np.full((T, 1), 0.5), np.ones((T, 1), bool),
                   np.zeros((T, 1), int), CFG, sim)
    assert trades(res) == [("2021-01-05", "buy", 10000, 10.0, "score"),
                           ("2021-01-06", "sell", 4000, 9.0, "stop_loss"),
                           ("2021-01-07", "sell", 4000, 9.2, "stop_loss"),
                           ("2021-01-08", "sell", 2000, 9.1, "stop_loss")]
    rj = res.sim.rejected
    assert rj.reason.tolist() == ["participation"] * 2 and rj.quantity.tolist() == [6000, 2000]
    assert res.sim.nav.iloc[-1] == pytest.approx(100_000 - 10_000 * 10 + 36_000 + 36_800
                                                 + 18_200)
