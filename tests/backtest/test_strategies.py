"""backtest.strategies: schedules, TopN, TopK-dropout, caps, target files, micro-cap preset."""
import numpy as np
import pandas as pd
import pytest

from backtest.errors import BacktestError
from backtest.strategies import (
    apply_caps,
    microcap_targets,
    rebalance_mask,
    to_targets,
    topk_dropout_weights,
    topn_weights,
)
from backtest.targets import read_targets, write_targets

rng = np.random.default_rng(11)


def test_rebalance_schedules():
    d = pd.bdate_range("2024-01-01", "2024-03-29")
    np.testing.assert_array_equal(np.flatnonzero(rebalance_mask(d, 5))[:3], [0, 5, 10])
    assert rebalance_mask(d, "daily").all()
    wk = d[rebalance_mask(d, "weekly")]
    assert (wk.day_of_week == 4).all() and len(wk) == 13         # every Friday
    mo = d[rebalance_mask(d, "monthly")]
    assert list(mo.strftime("%m-%d")) == ["01-31", "02-29", "03-29"]
    assert rebalance_mask(d, "3").sum() == rebalance_mask(d, 3).sum()
    with pytest.raises(BacktestError, match="unknown rebalance"):
        rebalance_mask(d, "hourly")
    with pytest.raises(BacktestError, match="k >= 1"):
        rebalance_mask(d, 0)


def test_topn_matches_brute_force():
    T, N, n = 20, 30, 5
    s = rng.standard_normal((T, N))
    s[rng.random((T, N)) < 0.1] = np.nan
    e = rng.random((T, N)) < 0.7
    e[2] = False
    e[4, :3] = True
    e[4, 3:] = False
    s[4, :3] = [1.0, 2.0, 3.0]
    rb = rebalance_mask(pd.bdate_range("2024-01-01", periods=T), 2)
    W = topn_weights(s, e, n, rb)
    for t in range(T):
        if not rb[t]:
            assert np.isnan(W[t]).all()
            continue
        ok = np.flatnonzero(e[t] & np.isfinite(s[t]))
        best = ok[np.argsort(-s[t, ok])][:n]
        expect = np.zeros(N)
        expect[best] = 1.0 / len(best) if len(best) else 0.0
        np.testing.assert_allclose(W[t], expect)
    np.testing.assert_allclose(W[4, :3], 1 / 3)            # fewer candidates than n: 1/count
    np.testing.assert_allclose(topn_weights(s, e, n, rb, fixed=True)[4, :3], 1 / n)
    assert (W[2] == 0).all()                                 # no candidate: all cash


def test_topk_dropout_replaces_at_most_n_drop():
    T, N, k, nd = 40, 60, 10, 2
    s = rng.standard_normal((T, N))
    e = np.ones((T, N), bool)
    rb = np.ones(T, bool)
    W = topk_dropout_weights(s, e, k, nd, rb)
    held = W > 0
    assert (held.sum(axis=1) == k).all()
    sold = (held[:-1] & ~held[1:]).sum(axis=1)
    assert sold.max() <= nd and sold.max() > 0
    # the names bought are the best non-held names of that day
    for t in range(1, T):
        bought = np.flatnonzero(held[t] & ~held[t - 1])
        nonheld = np.flatnonzero(~held[t - 1])
        best = nonheld[np.argsort(-s[t, nonheld])][:len(bought)]
        assert set(bought) == set(best)
    # n_drop = k is plain TopN
    np.testing.assert_allclose(topk_dropout_weights(s, e, k, k, rb), topn_weights(s, e, k, rb))
    with pytest.raises(BacktestError, match="n_drop"):
        topk_dropout_weights(s, e, 3, 5, rb)


def test_weights_are_causal():
    """Truncating future rows leaves past weights unchanged (TopN and TopK-dropout)."""
    T, N = 30, 25
    s = rng.standard_normal((T, N))
    e = rng.random((T, N)) < 0.8
    rb = rebalance_mask(pd.bdate_range("2024-01-01", periods=T), 3)
    for fn in (lambda a, b, r: topn_weights(a, b, 5, r),
               lambda a, b, r: topk_dropout_weights(a, b, 5, 2, r)):
        full = fn(s, e, rb)
        for t in (7, 15, 22):
            np.testing.assert_array_equal(fn(s[:t], e[:t], rb[:t]), full[:t])


def test_caps_redistribute():
    W = np.array([[0.5, 0.3, 0.2, 0.0], [np.nan] * 4])
    out = apply_caps(W, max_weight=0.4)
    np.testing.assert_allclose(out[0], [0.4, 0.36, 0.24, 0.0])
    assert np.isnan(out[1]).all()
    # infeasible: 2 names, cap 0.3 -> 0.6 invested, rest cash
    np.testing.assert_allclose(apply_caps(np.array([[0.5, 0.5]]), max_weight=0.3), [[0.3, 0.3]])
    # industry cap on random weights
    T, N = 15, 40
    W = rng.random((T, N)) * (rng.random((T, N)) < 0.5)
    W /= W.sum(axis=1, keepdims=True)
    g = rng.integers(0, 6, N)
    out = apply_caps(W, max_weight=0.08, industry=g, max_industry_weight=0.25)
    G = np.eye(6)[g]
    assert (out <= 0.08 + 1e-9).all() and ((out @ G) <= 0.25 + 1e-9).all()
    assert (out.sum(axis=1) <= 1 + 1e-9).all()
    # the most a row can hold: sum over industries of min(industry cap, stock cap x names)
    reach = np.minimum(0.25, 0.08 * ((W > 0) @ G)).sum(axis=1)
    np.testing.assert_allclose(out.sum(axis=1), np.minimum(1.0, reach), atol=1e-6)
    with pytest.raises(BacktestError, match="industry codes"):
        apply_caps(W, max_industry_weight=0.2)


def test_targets_round_trip_and_validation(tmp_path):
    d = pd.bdate_range("2024-01-01", periods=3)
    W = np.array([[0.5, 0.5, 0.0], [np.nan] * 3, [0.0, 0.25, 0.75]])
    df = to_targets(W, d, ["600000.SH", "000001.SZ", "300750.SZ"], "t")
    assert list(df.columns) == ["trade_date", "ts_code", "target_weight", "strategy_name"]
    assert len(df) == 4 and df["trade_date"].nunique() == 2
    pq, csv = write_targets(df, tmp_path / "sub" / "targets")
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["targets.csv",
                                                                     "targets.parquet"]
    for p in (pq, csv):
        back = read_targets(p)
        pd.testing.assert_frame_equal(back, df)
    with pytest.raises(BacktestError, match="not found"):
        read_targets(tmp_path / "nope.parquet")
    bad = df.copy()
    bad.loc[0, "target_weight"] = 0.9
    with pytest.raises(BacktestError, match="sum to"):
        write_targets(bad, tmp_path / "bad")
    with pytest.raises(BacktestError, match="missing column"):
        write_targets(df.drop(columns="ts_code"), tmp_path / "bad")


def test_microcap_preset_on_synthetic_warehouse(tmp_path):
    from ashare_synth import build_warehouse

    from data.manager import DataManager
    dm = DataManager(build_warehouse(tmp_path / "wh").root)
    start, end = "2020-08-10", "2020-09-04"
    mv_lo, mv_hi = 1.0e8, 4.0e8
    got = microcap_targets(dm, start, end, mv_min=mv_lo, mv_max=mv_hi, hold=2, every=5)
    dates = dm.calendar(start, end)
    mv = dm.panel("total_mv", start, end)
    st = set(dm.stock_basic().query("is_st_latest").ts_code)
    rows = []
    for i in range(0, len(dates), 5):
        day = mv.loc[dates[i]].dropna()
        day = day[(day >= mv_lo) & (day <= mv_hi) & ~day.index.isin(list(st))]
        pick = day.sort_values(kind="stable").index[:2]
        rows += [(dates[i], c, 1.0 / 2) for c in pick]         # 1/hold, rest in cash
    exp = pd.DataFrame(rows, columns=["trade_date", "ts_code", "target_weight"])
    exp = exp.sort_values(["trade_date", "ts_code"]).reset_index(drop=True)
    assert len(exp) > 0
    pd.testing.assert_frame_equal(got[["trade_date", "ts_code", "target_weight"]], exp,
                                  check_dtype=False)
    assert not got.ts_code.isin(list(st)).any()
    # 000002.SZ is suspended 2020-08-17..21: never picked on those days
    sus = got[(got.trade_date >= "2020-08-17") & (got.trade_date <= "2020-08-21")]
    assert "000002.SZ" not in set(sus.ts_code)
    # causality: an earlier end gives the same targets up to it
    short = microcap_targets(dm, start, "2020-08-25", mv_min=mv_lo, mv_max=mv_hi, hold=2,
                             every=5)
    pd.testing.assert_frame_equal(short, got[got.trade_date <= "2020-08-25"]
                                  .reset_index(drop=True))
    with pytest.raises(BacktestError, match="mv_min"):
        microcap_targets(dm, start, end, mv_min=5e9, mv_max=1e9)
