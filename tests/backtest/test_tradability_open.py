"""Tradability decided at the open of t+1 (issue 11): the evaluator's two-sided eligibility,
the strategies' buy-side entries, the simulator's fills, causality and the ST caveat.

Designed events of the synthetic warehouse (tests/data/ashare_synth.py), stock 000002.SZ:
one-price limit-up on 2020-08-26, opens at limit-up and trades lower on 2020-08-28, ordinary
day on 2020-08-27, one-price limit-down on 2023-03-10 (decision day 2023-03-09).
"""
import numpy as np
import pandas as pd
import pytest

from backtest.context import EvalConfig, EvalContext
from backtest.strategies import eligible_mask, microcap_targets, rebalance_mask, topn_weights

C = "000002.SZ"
CFG = EvalConfig(min_listed_days=0)


@pytest.fixture(scope="module")
def dm(tmp_path_factory):
    from ashare_synth import build_warehouse

    from data.manager import DataManager
    return DataManager(build_warehouse(tmp_path_factory.mktemp("wh_open")).root)


def _ctx(dm, start, end):
    return EvalContext.from_data(dm, "all", start, end, CFG)


def _at(mask, dates, codes, day, code=C) -> bool:
    return bool(mask[pd.DatetimeIndex(dates).get_loc(pd.Timestamp(day)),
                     list(codes).index(code)])


def _entry(dm, start, end):
    dates = dm.calendar(start, end)
    codes = dm.universe_codes("all", start, end)
    return eligible_mask(dm, "all", dates, codes, min_listed_days=0), dates, codes


@pytest.mark.parametrize("decision,evaluator,buy", [
    ("2020-08-27", False, False),   # t+1 opens at limit-up, its low below: neither (a)
    ("2020-08-25", False, False),   # t+1 one-price limit-up: neither
    ("2023-03-09", False, True),    # t+1 one-price limit-down: buyable only (b)
    ("2020-08-26", True, True),     # t+1 opens strictly inside the limits: both (c)
])
def test_execution_day_open_decides(dm, decision, evaluator, buy):
    start, end = ("2020-08-10", "2020-09-04") if decision < "2021" else ("2023-03-06",
                                                                        "2023-03-31")
    ctx = _ctx(dm, start, end)
    assert _at(ctx.eligible, ctx.dates, ctx.codes, decision) is evaluator
    m, dates, codes = _entry(dm, start, end)
    assert _at(m, dates, codes, decision) is buy


def test_eligibility_is_the_open_inside_rule_at_t_plus_1(dm):
    """eligible[t] == universe[t] & bar[t+1] & (down < open < up)[t+1], against an oracle."""
    start, end = "2020-08-10", "2020-09-04"
    ctx = _ctx(dm, start, end)
    codes = ctx.codes
    opn = dm.panel("raw_open", start, end, codes=codes)
    up, down = dm.limit_prices(start, end, codes=codes)
    o, u, d = ((x * 100).round().to_numpy() for x in (opn, up, down))
    with np.errstate(invalid="ignore"):
        inside = np.isfinite(o) & ~(o >= u) & ~(o <= d)
        below = np.isfinite(o) & ~(o >= u)
    um = dm.universe_mask("all", ctx.dates, codes)
    np.testing.assert_array_equal(ctx.eligible[:-1], um[:-1] & inside[1:])
    assert not ctx.eligible[-1].any()
    m, _, _ = _entry(dm, start, end)
    np.testing.assert_array_equal(m[:-1], um[:-1] & below[1:])
    assert (ctx.eligible[:-1] <= m[:-1]).all()       # two-sided is stricter than buy side


def test_truncating_the_future_changes_only_the_last_row(dm):
    """(d) causality: an earlier end changes the last row only (it depends on t+1)."""
    start, end = "2020-08-10", "2020-09-04"
    full = _ctx(dm, start, end)
    mfull, dates, codes = _entry(dm, start, end)
    for cut in ("2020-08-25", "2020-08-27", "2020-08-31"):
        short = _ctx(dm, start, cut)
        n = len(short.dates)
        j = full.codes.get_indexer(short.codes)
        np.testing.assert_array_equal(short.eligible[:-1], full.eligible[:n - 1][:, j])
        assert not short.eligible[-1].any()
        ms, sd, sc = _entry(dm, start, cut)
        j = pd.Index(codes).get_indexer(sc)
        np.testing.assert_array_equal(ms[:-1], mfull[:n - 1][:, j])
    # the last row cannot see t+1: it checks t's bar only (the live case)
    ms, sd, sc = _entry(dm, start, "2020-08-27")
    assert _at(ms, sd, sc, "2020-08-27") and not _at(mfull, dates, codes, "2020-08-27")


def test_topn_keeps_holdings_that_cannot_be_bought():
    """keep: a held name stays among the best n while not eligible; others need eligible."""
    T, N = 6, 5
    s = np.tile(np.array([5.0, 4.0, 3.0, 2.0, 1.0]), (T, 1))
    e = np.ones((T, N), bool)
    e[2, 0] = False             # held name 0 not buyable on row 2
    e[2, 1] = False             # and neither is name 1
    rb = np.ones(T, bool)
    W0 = topn_weights(s, e, 2, rb)                       # stateless: 0 and 1 replaced
    np.testing.assert_allclose(W0[2], [0, 0, 0.5, 0.5, 0])
    W = topn_weights(s, e, 2, rb, keep=np.ones((T, N), bool))
    np.testing.assert_allclose(W[2], [0.5, 0.5, 0, 0, 0])     # both held: kept
    e2 = e.copy()
    e2[:2, 1] = False                                     # 1 never held before row 2
    W2 = topn_weights(s, e2, 2, rb, keep=np.ones((T, N), bool))
    np.testing.assert_allclose(W2[1], [0.5, 0, 0.5, 0, 0])
    np.testing.assert_allclose(W2[2], [0.5, 0, 0.5, 0, 0])    # 1 cannot enter on row 2
    W3 = topn_weights(s, e, 2, rb, keep=np.zeros((T, N), bool))
    np.testing.assert_array_equal(W3, W0)                 # keep nothing: stateless result
    # causal: truncating the future leaves past rows unchanged
    rng = np.random.default_rng(3)
    s, e, k = rng.standard_normal((30, 12)), rng.random((30, 12)) < 0.6, rng.random((30, 12)) < 0.8
    rb = rebalance_mask(pd.bdate_range("2024-01-01", periods=30), 3)
    full = topn_weights(s, e, 4, rb, keep=k)
    for t in (5, 13, 22):
        np.testing.assert_array_equal(topn_weights(s[:t], e[:t], 4, rb[:t], keep=k[:t]),
                                      full[:t])


def test_microcap_does_not_enter_a_limit_up_open(dm, monkeypatch):
    """The preset's new entries need the t+1 open below limit-up; a holding may stay."""
    start, end = "2020-08-10", "2020-09-04"
    dates = dm.calendar(start, end)
    pos = dates.get_loc(pd.Timestamp("2020-08-27"))      # t+1 = 08-28 opens at limit-up
    kw = dict(mv_min=0.0, mv_max=1e15, hold=1, universe="all")
    # make 000002.SZ the smallest name every day, then start the schedule on 08-27
    real = dm.panels

    def panels(fields, *a, **k):
        out = real(fields, *a, **k)
        if "total_mv" in out:
            out["total_mv"] = out["total_mv"].copy()
            out["total_mv"][C] = 1.0
        return out
    monkeypatch.setattr(dm, "panels", panels)
    got = microcap_targets(dm, dates[pos], end, every=1, **kw)
    first = got[got.trade_date == dates[pos]]
    assert C not in set(first.ts_code) and len(first) == 1    # next smallest instead
    assert C in set(got[got.trade_date == dates[pos + 1]].ts_code)
    # held from the day before (08-26, t+1 = 08-27 ordinary): kept on 08-27
    held = microcap_targets(dm, dates[pos - 1], end, every=1, **kw)
    assert held[held.trade_date == dates[pos]].ts_code.tolist() == [C]


def test_simulator_fills_at_the_opposite_limit(dm):
    """Buy at a limit-down open fills; sell at a limit-up open fills; the reverse is rejected."""
    from backtest.simulate import MarketData, SimConfig, simulate
    from backtest.rules import CostModel
    cfg = SimConfig(init_cash=100_000.0, participation=None,
                    costs=CostModel(commission=0.0003, min_commission=5.0, transfer_fee=0.0))
    m = MarketData.from_dm(dm, [C], "2023-03-06", "2023-03-17")
    tg = pd.DataFrame({"trade_date": pd.to_datetime(["2023-03-09"]), "ts_code": [C],
                       "target_weight": [0.5]})
    r = simulate(tg, m, cfg)                          # executes 03-10, one-price limit-down
    buy = r.trades.iloc[0]
    assert r.rejected.empty and buy["trade_date"] == pd.Timestamp("2023-03-10")
    assert buy["side"] == "buy" and buy["price"] == pytest.approx(m.limit_down[m.dates.get_loc(
        pd.Timestamp("2023-03-10")), 0])
    tg2 = pd.DataFrame({"trade_date": pd.to_datetime(["2023-03-07", "2023-03-09"]),
                        "ts_code": [C, C], "target_weight": [0.5, 0.0]})
    r2 = simulate(tg2, m, cfg)                        # the sell meets the limit-down open
    assert r2.rejected["reason"].tolist() == ["limit_down_sell"]
    m2 = MarketData.from_dm(dm, [C], "2020-08-24", "2020-09-04")
    tg3 = pd.DataFrame({"trade_date": pd.to_datetime(["2020-08-24", "2020-08-27"]),
                        "ts_code": [C, C], "target_weight": [0.5, 0.0]})
    r3 = simulate(tg3, m2, cfg)                       # sell at 08-28's limit-up open: fills
    sells = r3.trades[r3.trades.side == "sell"]
    assert sells["trade_date"].tolist() == [pd.Timestamp("2020-08-28")] and r3.rejected.empty


def test_st_caveat_only_without_a_dated_history(dm, tmp_path):
    import shutil

    from backtest.caveats import st_caveat
    from data.manager import DataManager
    note = st_caveat(dm)
    assert "stock_basic.is_st_latest" in note and "every past date" in note
    root = tmp_path / "wh"
    shutil.copytree(dm.root, root)
    pd.DataFrame({"ts_code": ["600001.SH"], "name": ["ST Stock"],
                  "start_date": pd.to_datetime(["2020-08-12"]), "end_date": [pd.NaT],
                  "ann_date": pd.to_datetime(["2020-08-11"]), "change_reason": ["ST"]}
                 ).to_parquet(root / "namechange.parquet", index=False)
    dated = DataManager(root)
    assert dated.st_source() == ("namechange.parquet (dated ST names)", True)
    assert st_caveat(dated) == ""
