"""Account simulator: one tiny hand-made scenario per rule with exact cash and positions, a
cash-never-negative property, the evaluator oracle and causality."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backtest.context import EvalContext
from backtest.errors import BacktestError
from backtest.metrics_ic import quantile_buckets, spearman_from_orders
from backtest.rules import CostModel
from backtest.simulate import (
    MarketData,
    SimConfig,
    SimResult,
    simulate,
    targets_to_matrix,
)
from factors.row_order import row_orders

A, B, S = "600000.SH", "000001.SZ", "688001.SH"
COSTS = CostModel(commission=0.0003, min_commission=5.0, transfer_fee=0.00001)
D = pd.DatetimeIndex(["2023-09-04", "2023-09-05", "2023-09-06", "2023-09-07", "2023-09-08",
                      "2023-09-11"])        # after 2023-08-28: stamp tax 0.05%


def cfg(**kw) -> SimConfig:
    base = dict(init_cash=100_000.0, costs=COSTS, participation=None)
    base.update(kw)
    return SimConfig(**base)


def tg(*rows) -> pd.DataFrame:
    return pd.DataFrame([(pd.Timestamp(d), c, w) for d, c, w in rows],
                        columns=["trade_date", "ts_code", "target_weight"])


def flat(prices: dict, dates=D, **kw) -> MarketData:
    """Open == close == the given per-day price list for each code."""
    codes = list(prices)
    px = np.array([prices[c] for c in codes], dtype=float).T
    return MarketData.from_arrays(dates[:len(px)], codes, px, px.copy(), **kw)


def pos(res: SimResult, day, code=A):
    p = res.positions
    row = p[(p["trade_date"] == pd.Timestamp(day)) & (p["ts_code"] == code)]
    return (0.0, 0.0) if row.empty else (row["quantity"].item(), row["sellable"].item())


def approx(x):
    return pytest.approx(x, rel=1e-12, abs=1e-7)


def test_t_plus_1_and_exact_cash():
    m = flat({A: [10.0] * 4})
    r = simulate(tg((D[0], A, 1.0), (D[1], A, 0.0)), m, cfg())
    # day 1: 10000 shares + fees do not fit -> scaled to 9900 (lots of 100)
    cash1 = 100_000 - 99_000 - 99_000 * 0.0003 - 99_000 * 0.00001
    assert r.cash.iloc[1] == approx(cash1)
    assert pos(r, D[1]) == (9900, 0)                 # bought today: not sellable (T+1)
    assert r.nav.iloc[1] == approx(cash1 + 99_000)
    # day 2: sold at the open; stamp tax 0.05% on the sell
    cash2 = cash1 + 99_000 - 99_000 * 0.0003 - 99_000 * 0.0005 - 99_000 * 0.00001
    assert r.cash.iloc[2] == approx(cash2)
    assert pos(r, D[2]) == (0.0, 0.0)
    assert r.trades["side"].tolist() == ["buy", "sell"]
    assert r.rejected.empty
    # sellable equals the holding the next day; without T+1 it equals it at once
    r2 = simulate(tg((D[0], A, 1.0)), m, cfg())
    assert pos(r2, D[1]) == (9900, 0) and pos(r2, D[2]) == (9900, 9900)
    r3 = simulate(tg((D[0], A, 1.0)), m, cfg(t_plus_1=False))
    assert pos(r3, D[1]) == (9900, 9900)


def test_limit_up_buy_rejected():
    up = np.full((4, 2), np.nan)
    up[1, 0] = 11.0
    m = flat({A: [10.0, 11.0, 11.0, 11.0], B: [10.0] * 4}, limit_up=up)
    r = simulate(tg((D[0], A, 0.5), (D[0], B, 0.5)), m, cfg())
    assert r.cash.iloc[1] == approx(100_000 - 50_000 - 15.0 - 0.5)
    assert pos(r, D[1], A) == (0.0, 0.0) and pos(r, D[1], B) == (5000, 0)
    rej = r.rejected
    assert len(rej) == 1 and rej["reason"].item() == "limit_up_buy"
    assert (rej["ts_code"].item(), rej["side"].item()) == (A, "buy")
    assert rej["quantity"].item() == approx(50_000 / 11.0)
    assert rej["trade_date"].item() == D[1]
    # the same day without the price-limit rule: the buy goes through
    r2 = simulate(tg((D[0], A, 0.5), (D[0], B, 0.5)), m, cfg(price_limits=False))
    assert pos(r2, D[1], A)[0] == 4500 and r2.rejected.empty


def test_limit_down_sell_rejected_then_retried():
    down = np.full((5, 1), np.nan)
    down[2, 0] = 9.0
    m = flat({A: [10.0, 10.0, 9.0, 9.5, 9.5]}, limit_down=down)
    r = simulate(tg((D[0], A, 0.5), (D[1], A, 0.0), (D[2], A, 0.0)), m, cfg())
    cash1 = 100_000 - 50_000 - 15.0 - 0.5
    assert r.cash.iloc[2] == approx(cash1)            # sell at limit-down rejected
    assert pos(r, D[2]) == (5000, 5000)
    assert r.rejected["reason"].tolist() == ["limit_down_sell"]
    assert r.rejected["quantity"].item() == 5000
    v = 5000 * 9.5                                    # retried on the next rebalance
    assert r.cash.iloc[3] == approx(cash1 + v - v * 0.0003 - v * 0.0005 - v * 0.00001)
    assert pos(r, D[3]) == (0.0, 0.0)


def test_minimum_commission():
    m = flat({A: [10.0] * 3})
    r = simulate(tg((D[0], A, 0.5)), m, cfg(init_cash=2_000.0))
    t = r.trades.iloc[0]
    assert t["quantity"] == 100 and t["commission"] == 5.0     # 0.3 yuan -> 5 yuan minimum
    assert r.cash.iloc[1] == approx(2_000 - 1_000 - 5.0 - 0.01)


@pytest.mark.parametrize("sell_day,rate", [("2023-08-27", 0.001), ("2023-08-28", 0.0005)])
def test_stamp_tax_date_switch(sell_day, rate):
    dates = pd.DatetimeIndex(["2023-08-24", "2023-08-25", sell_day])
    m = flat({A: [10.0] * 3}, dates=dates)
    r = simulate(tg((dates[0], A, 0.1), (dates[1], A, 0.0)), m, cfg())
    sell = r.trades[r.trades["side"] == "sell"].iloc[0]
    assert sell["trade_date"] == pd.Timestamp(sell_day)
    assert sell["stamp_tax"] == approx(10_000 * rate)
    cash1 = 100_000 - 10_000 - 5.0 - 0.1
    assert r.cash.iloc[2] == approx(cash1 + 10_000 - 5.0 - 10_000 * rate - 0.1)


def test_star_lot_rule():
    m = flat({S: [10.0] * 3, A: [10.0] * 3})
    r = simulate(tg((D[0], S, 1.0)), m, cfg(init_cash=10_000.0))
    assert pos(r, D[1], S) == (999, 0)                 # >= 200, then 1-share steps
    assert r.cash.iloc[1] == approx(10_000 - 9_990 - 5.0 - 0.0999)
    r = simulate(tg((D[0], A, 1.0)), m, cfg(init_cash=10_000.0))
    assert pos(r, D[1], A) == (900, 0)                 # main board: lots of 100
    assert r.cash.iloc[1] == approx(10_000 - 9_000 - 5.0 - 0.09)
    r = simulate(tg((D[0], S, 1.0)), m, cfg(init_cash=1_500.0))
    assert r.trades.empty and r.cash.iloc[1] == 1_500.0
    assert r.rejected["reason"].tolist() == ["below_min_lot"]


def test_odd_lot_full_sell_after_bonus_shares():
    # 1000 shares; ex-date on day 2: cash 0.5 per share and 2.5 bonus shares per 10
    ref = (10.0 - 0.5) / 1.25                          # ex-right reference price 7.6
    adj = np.array([[1.0], [1.0], [10.0 / ref], [10.0 / ref], [10.0 / ref]])
    bonus = np.array([[0.0], [0.0], [0.25], [0.0], [0.0]])
    m = flat({A: [10.0, 10.0, ref, ref, ref]}, adj_factor=adj, bonus=bonus)
    w2 = 600 * ref / (100_000 - 10_005.1 + 500 + 1250 * ref)   # target 600 shares on day 3
    r = simulate(tg((D[0], A, 0.1), (D[2], A, w2), (D[3], A, 0.0)), m, cfg())
    cash1 = 100_000 - 10_000 - 5.0 - 0.1
    assert r.cash.iloc[1] == approx(cash1)
    assert pos(r, D[2]) == (1250, 1250)                # bonus shares: an odd lot of 50
    assert r.cash.iloc[2] == approx(cash1 + 500.0)     # the cash dividend
    assert r.corporate["quantity_after"].tolist() == [1250]
    # day 3: asked to sell 650 -> 600 (lots of 100), the odd lot stays
    v3 = 600 * ref
    cash3 = cash1 + 500 + v3 - 5.0 - v3 * 0.0005 - v3 * 0.00001
    assert pos(r, D[3]) == (650, 650) and r.cash.iloc[3] == approx(cash3)
    # day 4: target 0 -> the whole 650 including the odd lot
    v4 = 650 * ref
    assert pos(r, D[4]) == (0.0, 0.0)
    assert r.cash.iloc[4] == approx(cash3 + v4 - 5.0 - v4 * 0.0005 - v4 * 0.00001)


def test_corporate_action_modes():
    ref = 9.5                                          # cash dividend 0.5, no bonus shares
    adj = np.array([[1.0], [1.0], [10 / ref], [10 / ref]])
    m = flat({A: [10.0, 10.0, ref, ref]}, adj_factor=adj)          # no dividend table
    free = SimConfig.frictionless(init_cash=10_000.0)
    r = simulate(tg((D[0], A, 1.0)), m, free)
    assert pos(r, D[1])[0] == approx(1000.0)
    assert pos(r, D[2])[0] == approx(1000.0 * 10 / ref)             # quantity x adj ratio
    assert r.nav.iloc[2] == approx(10_000.0)                         # value preserved
    # lots without a dividend table: floor(q x r) shares, the fraction as cash
    r = simulate(tg((D[0], A, 1.0)), m, cfg(init_cash=10_100.0, costs=CostModel.zero()))
    q2 = np.floor(1000 * 10 / ref)
    assert pos(r, D[2])[0] == q2
    assert r.cash.iloc[2] == approx(100.0 + (1000 * 10 / ref - q2) * ref)
    assert r.nav.iloc[2] == approx(10_100.0)
    # with a dividend table (no bonus): shares unchanged, 0.5 per share as cash
    m2 = flat({A: [10.0, 10.0, ref, ref]}, adj_factor=adj, bonus=np.zeros((4, 1)))
    r = simulate(tg((D[0], A, 1.0)), m2, cfg(init_cash=10_100.0, costs=CostModel.zero()))
    assert pos(r, D[2])[0] == 1000 and r.cash.iloc[2] == approx(600.0)
    # switched off: shares kept, the dividend is lost
    r = simulate(tg((D[0], A, 1.0)), m2, cfg(init_cash=10_100.0, costs=CostModel.zero(),
                                            corporate_actions=False))
    assert pos(r, D[2])[0] == 1000 and r.cash.iloc[2] == approx(100.0)


def test_suspension():
    close = np.array([[10.0, 10.0], [10.0, 10.0], [np.nan, np.nan], [11.0, 10.0]])
    m = MarketData.from_arrays(D[:4], [A, B], close.copy(), close)
    r = simulate(tg((D[0], A, 0.5), (D[1], A, 0.0), (D[1], B, 0.4)), m, cfg())
    rej = r.rejected.sort_values("ts_code")
    assert rej["reason"].tolist() == ["suspended", "suspended"]
    assert rej["side"].tolist() == ["buy", "sell"]              # B buy, A sell
    cash1 = 100_000 - 50_000 - 15.0 - 0.5
    assert r.cash.iloc[2] == approx(cash1) and pos(r, D[2]) == (5000, 5000)
    assert r.nav.iloc[2] == approx(cash1 + 5000 * 10.0)          # marked at the last close
    assert r.nav.iloc[3] == approx(cash1 + 5000 * 11.0)


def test_participation_cap():
    vol = np.full((3, 1), 5_000.0)
    m = flat({A: [10.0] * 3}, vol=vol)
    r = simulate(tg((D[0], A, 0.1)), m, cfg(participation=0.1))
    assert pos(r, D[1]) == (500, 0)
    assert r.cash.iloc[1] == approx(100_000 - 5_000 - 5.0 - 0.05)
    assert r.rejected["reason"].tolist() == ["participation"]
    assert r.rejected["quantity"].item() == approx(500.0)


def test_vwap_execution_and_slippage():
    px = np.array([[10.0], [10.0], [10.0]])
    vw = np.array([[10.0], [12.0], [10.0]])
    m = MarketData.from_arrays(D[:3], [A], px, px.copy(), vwap=vw)
    c = CostModel(commission=0.0, min_commission=0.0, transfer_fee=0.0, slippage_bps=50)
    r = simulate(tg((D[0], A, 0.5)), m, cfg(execution="vwap", costs=c))
    t = r.trades.iloc[0]
    assert t["price"] == approx(12.0 * 1.005)
    assert t["quantity"] == 4100                        # 50000 / 12.06 = 4145.9 -> 4100
    assert t["slippage"] == approx(4100 * 12.0 * 0.005)
    assert r.cash.iloc[1] == approx(100_000 - 4100 * 12.06)


def test_no_rebalance_on_dates_without_targets_and_zero_weight_rows():
    m = flat({A: [10.0, 10.0, 12.0, 12.0, 12.0]})
    r = simulate(tg((D[0], A, 0.5)), m, cfg())
    assert len(r.trades) == 1                          # weight drift is not rebalanced
    assert pos(r, D[4]) == (5000, 5000)
    W, rebal = targets_to_matrix(tg((D[0], A, 0.5), (D[2], B, 0.0)),
                                 flat({A: [1.0] * 5, B: [1.0] * 5}))
    assert rebal.tolist() == [False, True, False, True, False]
    assert W[3].tolist() == [0.0, 0.0]                 # A absent on D[2] -> target 0


def test_weekend_targets_use_the_latest_date():
    m = flat({A: [10.0] * 3, B: [10.0] * 3})
    t = tg((pd.Timestamp("2023-09-02"), A, 0.5), (pd.Timestamp("2023-09-03"), B, 0.5))
    W, rebal = targets_to_matrix(t, m)
    assert rebal.tolist() == [True, False, False] and W[0].tolist() == [0.0, 0.5]


@pytest.mark.parametrize("bad,msg", [
    (tg((D[0], A, -0.1)), "negative"),
    (tg((D[0], A, 0.7), (D[0], B, 0.7)), "sum to"),
    (tg((D[0], "999999.SH", 0.1)), "999999.SH"),
    (tg((D[0], A, np.nan)), "non-finite"),
    (tg((D[0], A, 0.1), (D[0], A, 0.2)), "duplicate"),
    (pd.DataFrame({"date": [D[0]], "ts_code": [A]}), "target_weight"),
])
def test_bad_targets(bad, msg):
    with pytest.raises(BacktestError, match=msg):
        simulate(bad, flat({A: [10.0] * 3, B: [10.0] * 3}), cfg())


def test_bad_config_and_market():
    with pytest.raises(BacktestError, match="execution"):
        SimConfig(execution="close")
    with pytest.raises(BacktestError, match="participation"):
        SimConfig(participation=2.0)
    with pytest.raises(BacktestError, match="shape"):
        MarketData.from_arrays(D[:3], [A], np.ones((3, 1)), np.ones((2, 1)))


def test_save_roundtrip(tmp_path):
    m = flat({A: [10.0] * 3})
    r = simulate(tg((D[0], A, 0.5)), m, cfg())
    r.save(tmp_path / "out")
    nav = pd.read_parquet(tmp_path / "out" / "nav.parquet")
    assert np.allclose(nav["nav"], r.nav.to_numpy()) and list(nav.columns)[0] == "trade_date"
    tr = pd.read_parquet(tmp_path / "out" / "trades.parquet")
    assert tr["quantity"].tolist() == r.trades["quantity"].tolist()
    assert not list((tmp_path / "out").glob("*.tmp"))


# ------------------------------------------------------------------ random markets

def random_market(rng, T=40, N=12, limits=True, susp=0.05, ca=True):
    codes = [f"{600000 + i:06d}.SH" if i % 4 else f"{688000 + i:06d}.SH" for i in range(N)]
    ret = rng.normal(0, 0.03, (T, N))
    close = 10 * np.exp(np.cumsum(ret, axis=0))
    opn = close * np.exp(rng.normal(0, 0.01, (T, N)))
    bar = rng.random((T, N)) > susp
    bar[0] = True
    close = np.where(bar, np.round(close, 2), np.nan)
    opn = np.where(bar, np.round(opn, 2), np.nan)
    adj = np.cumprod(np.where(rng.random((T, N)) < (0.03 if ca else 0), 1.05, 1.0), axis=0)
    up = dn = None
    if limits:
        prev = np.vstack([close[:1], close[:-1]])
        up = np.where(rng.random((T, N)) < 0.1, opn, np.round(prev * 1.1, 2))
        dn = np.where(rng.random((T, N)) < 0.1, opn, np.round(prev * 0.9, 2))
    vol = rng.integers(0, 200_000, (T, N)).astype(float)
    jump = adj > np.vstack([adj[:1], adj[:-1]])          # ex-dates: cash only or bonus shares
    bonus = np.where(jump & (rng.random((T, N)) < 0.5), 0.04, 0.0)
    return MarketData.from_arrays(pd.bdate_range("2022-01-03", periods=T), codes, opn, close,
                                  vol=vol, limit_up=up, limit_down=dn, has_bar=bar,
                                  adj_factor=adj, bonus=bonus)


def random_targets(rng, m, every=3, k=5):
    rows = []
    for t in range(0, len(m.dates), every):
        names = rng.choice(len(m.codes), size=k, replace=False)
        w = rng.random(k)
        w = w / w.sum() * rng.uniform(0.3, 1.0)
        rows += [(m.dates[t], m.codes[j], float(x)) for j, x in zip(names, w)]
    return pd.DataFrame(rows, columns=["trade_date", "ts_code", "target_weight"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), cash=st.floats(5_000, 2e6),
       slip=st.floats(0, 30), minc=st.sampled_from([0.0, 5.0, 50.0]),
       part=st.sampled_from([None, 0.01, 0.5]), lots=st.booleans())
def test_cash_never_negative(seed, cash, slip, minc, part, lots):
    rng = np.random.default_rng(seed)
    m = random_market(rng)
    c = CostModel(commission=0.0003, min_commission=minc, transfer_fee=0.00001,
                  slippage_bps=slip)
    r = simulate(random_targets(rng, m), m, SimConfig(init_cash=cash, costs=c,
                                                      participation=part, lots=lots))
    assert (r.cash.to_numpy() >= 0).all()
    assert np.isfinite(r.nav.to_numpy()).all()
    p = r.positions
    assert (p["quantity"] > 0).all() and (p["sellable"] <= p["quantity"]).all()
    assert (p["quantity"] == np.floor(p["quantity"])).all()
    tr = r.trades
    if lots and len(tr):
        main = tr[tr["ts_code"].str.startswith("60") & (tr["side"] == "buy")]
        assert (main["quantity"] % 100 == 0).all()
        star = tr[tr["ts_code"].str.startswith("68") & (tr["side"] == "buy")]
        assert (star["quantity"] >= 200).all()
    # cash bookkeeping: start + sells - buys - fees + dividends = end
    sells = tr.loc[tr["side"] == "sell", "value"].sum()
    buys = tr.loc[tr["side"] == "buy", "value"].sum()
    fees = r.costs[["commission", "stamp_tax", "transfer_fee"]].to_numpy().sum()
    divs = r.corporate["cash"].sum() if len(r.corporate) else 0.0
    assert r.cash.iloc[-1] == pytest.approx(cash + sells - buys - fees + divs, rel=1e-9)


def test_causality_truncation():
    rng = np.random.default_rng(7)
    m = random_market(rng, T=50)
    t = random_targets(rng, m, every=2)
    full = simulate(t, m, cfg(init_cash=1e6, participation=0.2))
    for k in (5, 17, 33):
        cut = m.dates[k]
        part = simulate(t[t["trade_date"] <= cut], m.truncate(cut),
                        cfg(init_cash=1e6, participation=0.2))
        assert np.array_equal(part.nav.to_numpy(), full.nav.to_numpy()[:k + 1])
        assert np.array_equal(part.cash.to_numpy(), full.cash.to_numpy()[:k + 1])


# ------------------------------------------------------------------ evaluator oracle

def test_oracle_quantile_nav_equals_evaluator():
    """Frictionless, fractional: nav_exec of the top-quantile portfolio compounds exactly the
    evaluator's top-bucket forward return fwd_1[t] = open_adj[t+2] / open_adj[t+1] - 1."""
    rng = np.random.default_rng(3)
    T, N, Q = 80, 40, 5
    m = random_market(rng, T=T, N=N, limits=False, susp=0.08, ca=True)
    open_adj = m.open * m.adj_factor
    umask = rng.random((T, N)) > 0.1
    ctx = EvalContext.from_arrays(m.dates, m.codes, open_adj, umask, m.has_bar,
                                  {"all": (m.dates[0], m.dates[-1])}, horizons=(1,),
                                  horizon=1, embargo=0)
    f = rng.normal(size=(T, N))
    f[rng.random((T, N)) < 0.1] = np.nan
    oy, ny = ctx.label_order(1)
    of, nf = row_orders(f)
    _, ranks, counts = spearman_from_orders(f, of, nf, ctx.fwd[1], oy, ny, ctx.eligible,
                                            want_ranks=True)
    means, top = quantile_buckets(ranks, counts, ctx.fwd[1], Q)
    rows = []
    for t in range(T - 2):
        names = np.flatnonzero(top[t])
        assert names.size > 0
        rows += [(m.dates[t], m.codes[j], 1.0 / names.size) for j in names]
    targets = pd.DataFrame(rows, columns=["trade_date", "ts_code", "target_weight"])
    r = simulate(targets, m, SimConfig.frictionless())
    ne = r.nav_exec.to_numpy()
    sim_ret = ne[2:] / ne[1:-1] - 1.0               # held from t+1's open to t+2's open
    assert np.abs(sim_ret - means[:T - 2, Q - 1]).max() < 1e-9
    compounded = np.prod(1.0 + means[:T - 2, Q - 1])
    assert ne[-1] / ne[1] == pytest.approx(compounded, rel=1e-9)
    assert r.rejected.empty


# ------------------------------------------------------------------ from the warehouse

@pytest.fixture(scope="module")
def synth_dm(tmp_path_factory):
    from ashare_synth import build_warehouse

    from data.manager import DataManager
    return DataManager(build_warehouse(tmp_path_factory.mktemp("wh_sim")).root)


def test_from_dm_matches_the_manager(synth_dm):
    dm, codes = synth_dm, ["000002.SZ", "600000.SH", "688001.SH"]
    m = MarketData.from_dm(dm, codes, "2020-08-10", "2020-09-04")
    raw = dm.panels(["raw_open", "raw_close", "vol", "adj_factor"], "2020-08-10", "2020-09-04",
                    codes=codes)
    up, down = dm.limit_prices("2020-08-10", "2020-09-04", codes=codes)
    np.testing.assert_array_equal(m.open, raw["raw_open"].to_numpy())
    np.testing.assert_array_equal(m.limit_up, up.to_numpy())
    np.testing.assert_array_equal(m.limit_down, down.to_numpy())
    np.testing.assert_allclose(m.vwap * m.adj_factor,
                               dm.panel("vwap", "2020-08-10", "2020-09-04", codes=codes)
                               .to_numpy(), rtol=1e-12)
    assert not m.has_bar[m.dates.get_loc(pd.Timestamp("2020-08-18")), 0]   # suspended
    assert m.bonus is not None and (m.bonus == 0).all()       # no dividend table here


def test_warehouse_rules_end_to_end(synth_dm):
    """Suspension, one-price limit-up and an ex-dividend day of the synthetic warehouse."""
    m = MarketData.from_dm(synth_dm, ["000002.SZ", "600000.SH"], "2020-08-10", "2020-09-04")
    c = cfg(init_cash=200_000.0, participation=None)
    # 000002.SZ suspended 08-17..21; one-price limit-up on 08-26; opens at limit-up on 08-28
    days = ("2020-08-10", "2020-08-14", "2020-08-25", "2020-08-27")
    rows = [(d, "600000.SH", 0.5) for d in days] + [(d, "000002.SZ", 0.3) for d in days[1:]]
    r = simulate(tg(*rows), m, c)
    rej = r.rejected.set_index("trade_date")
    assert rej.loc[pd.Timestamp("2020-08-17"), "reason"] == "suspended"
    assert rej.loc[pd.Timestamp("2020-08-26"), "reason"] == "limit_up_buy"
    assert rej.loc[pd.Timestamp("2020-08-28"), "reason"] == "limit_up_buy"
    assert not (r.trades["ts_code"] == "000002.SZ").any()
    # the same order at the day's VWAP (below the limit) fills on 08-28
    rv = simulate(tg(("2020-08-27", "000002.SZ", 0.3)), m, cfg(execution="vwap",
                                                                init_cash=200_000.0))
    assert rv.trades["trade_date"].tolist() == [pd.Timestamp("2020-08-28")]
    # 600000.SH: cash dividend of 0.50 per share on 2020-08-20
    q = pos(r, "2020-08-19", "600000.SH")[0]
    assert q > 0 and q % 100 == 0
    assert r.corporate["trade_date"].tolist() == [pd.Timestamp("2020-08-20")]
    assert r.corporate["cash"].item() == pytest.approx(0.5 * q, rel=1e-9)
    assert pos(r, "2020-08-20", "600000.SH")[0] == q
    assert (r.cash.to_numpy() >= 0).all()


# ------------------------------------------------------------------ real data (slow)

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "ashare"


@pytest.mark.slow
@pytest.mark.skipif(not (REAL / "trade_cal.parquet").is_file(), reason="real warehouse missing")
def test_oracle_on_real_csi300_2019():
    """The evaluator oracle on real data: CSI300 2019, top quintile of 5-day reversal."""
    from backtest.context import EvalConfig
    from data.manager import DataManager

    dm = DataManager(REAL)
    ecfg = EvalConfig(train=("2019-01-01", "2019-12-31"), valid=("2020-01-01", "2020-01-10"),
                      test=("2020-01-11", "2020-01-20"))
    ctx = EvalContext.from_data(dm, "csi300", "2019-01-01", "2019-12-31", ecfg)
    m = MarketData.from_dm(dm, ctx.codes, "2019-01-01", "2019-12-31")
    assert m.dates.equals(ctx.dates)
    T, N = m.shape
    c = pd.DataFrame(m.close * m.adj_factor)
    f = -(c / c.shift(5) - 1.0).to_numpy()
    oy, ny = ctx.label_order(1)
    of, nf = row_orders(f)
    _, ranks, counts = spearman_from_orders(f, of, nf, ctx.fwd[1], oy, ny, ctx.eligible,
                                            want_ranks=True)
    means, top = quantile_buckets(ranks, counts, ctx.fwd[1], 5)
    days = [t for t in range(T - 2) if top[t].any()]
    assert len(days) > 200
    rows = [(m.dates[t], m.codes[j], 1.0 / top[t].sum()) for t in days
            for j in np.flatnonzero(top[t])]
    targets = pd.DataFrame(rows, columns=["trade_date", "ts_code", "target_weight"])
    r = simulate(targets, m, SimConfig.frictionless())
    assert len(r.corporate) > 0                           # real ex-dates crossed
    ne = r.nav_exec.to_numpy()
    d = np.array(days)
    d = d[np.isin(d + 1, d)]                              # consecutive decision days
    sim = ne[d + 2] / ne[d + 1] - 1.0
    assert np.abs(sim - means[d, 4]).max() < 1e-9


def test_kernel_rounding_agrees_with_rules():
    """The kernel's lot rounding is the one of backtest.rules (used by the QMT order plan)."""
    from backtest import _sim_kernel as K
    from backtest.rules import lot_params, round_buy_qty, round_sell_qty

    rng = np.random.default_rng(11)
    for code in (A, S, "300750.SZ"):
        lo, step = (float(x[0]) for x in lot_params([code]))
        for x, held in zip(rng.uniform(0, 3000, 300), rng.integers(0, 3000, 300)):
            assert K._round_qty(x, 0.0, lo, step, K.LOTS, False) == round_buy_qty(code, x)
            assert K._round_qty(x, float(held), lo, step, K.LOTS, True) == \
                round_sell_qty(code, x, int(held))


def test_simconfig_from_config():
    from backtest.settings import BacktestConfig
    bt = BacktestConfig()
    c = SimConfig.from_config(bt, execution="vwap")
    assert (c.init_cash, c.execution, c.participation) == (bt.init_cash, "vwap", bt.participation)
    assert c.costs == CostModel.from_config(bt) and c.lots and c.price_limits
    f = SimConfig.frictionless()
    assert f.fractional and not f.price_limits and f.participation is None
    assert f.costs.fees("sell", 1e6, "2020-01-02") == {"commission": 0.0, "stamp_tax": 0.0,
                                                       "transfer_fee": 0.0}


@pytest.mark.slow
@pytest.mark.skipif(not (REAL / "trade_cal.parquet").is_file(), reason="real warehouse missing")
def test_real_ex_dividend_600519_2020():
    """600519.SH paid 17.025 yuan per share (pre-tax) on 2020-06-24: credited as cash."""
    from data.manager import DataManager

    m = MarketData.from_dm(DataManager(REAL), ["600519.SH"], "2020-06-15", "2020-06-30")
    r = simulate(tg(("2020-06-15", "600519.SH", 1.0)), m, cfg(init_cash=1_000_000.0))
    q = pos(r, "2020-06-23", "600519.SH")[0]
    assert q == 700                                  # 1e6 / ~1400 yuan, lots of 100
    ca = r.corporate
    assert ca["trade_date"].tolist() == [pd.Timestamp("2020-06-24")]
    assert ca["quantity_after"].item() == 700
    assert ca["cash"].item() == pytest.approx(700 * 17.025, rel=2e-3)
