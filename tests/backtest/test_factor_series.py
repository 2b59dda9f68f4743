"""The daily series kept by the evaluator (issue 13, "keep the series"): they reproduce the
report's metrics, are causal, export to alphalens' factor_data layout and save whole."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.context import DECAY_HORIZONS, EvalContext
from backtest.evaluate import evaluate_factor
from backtest.factor_series import (
    SERIES_FILES,
    check_save_dir,
    factor_data,
    save_series,
    series_frames,
)
from backtest.metrics_ic import finite_mean, long_short_stats, series_moments
from data.errors import AlphamineError

SPLITS = {"train": ("2020-01-01", "2020-06-30"), "valid": ("2020-07-01", "2020-10-31"),
          "test": ("2020-11-01", "2021-03-31")}


def _ctx(T=320, N=40, seed=0, horizon=1):
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=T)
    codes = pd.Index([f"{600000 + i}.SH" for i in range(N)])
    opn = 10.0 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0))
    opn[rng.random((T, N)) < 0.03] = np.nan
    um = rng.random((T, N)) >= 0.3
    tr = rng.random((T, N)) >= 0.05
    return EvalContext.from_arrays(dates, codes, opn, um, tr, SPLITS, horizon=horizon)


def _factor(ctx, seed=1):
    rng = np.random.default_rng(seed)
    f = ctx.fwd[ctx.horizon] * 0.3 + rng.normal(0, 0.02, ctx.shape)   # some signal
    f[rng.random(ctx.shape) < 0.05] = np.nan
    f[:, 3] = np.round(f[:, 3], 2)                                      # a few ties
    return f


@pytest.mark.parametrize("horizon", [1, 5])
def test_series_reproduce_the_report(horizon):
    ctx = _ctx(horizon=horizon)
    f = _factor(ctx)
    plain = evaluate_factor(f, ctx, splits=("train", "valid", "test"))
    reps = evaluate_factor(f, ctx, splits=("train", "valid", "test"), keep_series=True)
    for s, r in reps.items():
        assert plain[s].series is None
        assert r.to_dict() == plain[s].to_dict()                       # JSON unchanged
        assert "series" not in r.to_dict()
        se = r.series
        lo, hi = ctx.split_bounds(s)
        assert se.dates.equals(ctx.dates[lo:hi]) and se.split == s and se.horizon == horizon
        m, sd, _, t, n = series_moments(se.rank_ic, lags=horizon - 1)
        assert m == pytest.approx(r.rank_ic_mean, rel=1e-12) and n == r.n_ic_days
        assert t == pytest.approx(r.rank_ic_t, rel=1e-12)
        assert finite_mean(se.ic) == pytest.approx(r.ic_mean, rel=1e-12)
        for k, v in r.ic_decay.items():
            assert finite_mean(se.rank_ic_by_horizon[k]) == pytest.approx(v, rel=1e-12)
        q = [finite_mean(se.quantile_returns[:, j]) / horizon * 252
             for j in range(se.quantile_returns.shape[1])]
        np.testing.assert_allclose(q, r.quantile_ann_returns, rtol=1e-12)
        ls = long_short_stats(se.long_short, horizon)
        assert ls[0] == pytest.approx(r.ls_ann_return) and ls[1] == pytest.approx(r.ls_sharpe)
        assert finite_mean(se.turnover) == pytest.approx(r.turnover, rel=1e-12)
        assert np.isnan(se.turnover[0])

    fr = series_frames([r.series for r in reps.values()])
    for s, r in reps.items():
        ric = fr["rank_ic"][fr["rank_ic"].split == s]
        assert ric.rank_ic.mean() == pytest.approx(r.rank_ic_mean, rel=1e-12)
        assert ric.ic.mean() == pytest.approx(r.ic_mean, rel=1e-12)
        qr = fr["quantile_returns"][fr["quantile_returns"].split == s]
        got = qr.groupby("quantile")["return"].mean().to_numpy() / horizon * 252
        np.testing.assert_allclose(got, r.quantile_ann_returns, rtol=1e-12)
        dec = fr["ic_decay"][fr["ic_decay"].split == s].set_index("horizon")
        for k, v in r.ic_decay.items():
            assert dec.rank_ic_mean[k] == pytest.approx(v, rel=1e-12)
        tv = fr["turnover"][fr["turnover"].split == s]
        assert tv.turnover.mean() == pytest.approx(r.turnover, rel=1e-12)
    assert list(fr["rank_ic"].columns) == ["trade_date", "split", "rank_ic", "ic"]
    assert list(fr["quantile_returns"].columns) == ["trade_date", "split", "quantile", "return"]
    assert set(fr["quantile_returns"]["quantile"]) == set(range(1, ctx.quantiles + 1))


def test_series_are_causal():
    """Changing rows after day t leaves every series row before t - 20 unchanged (labels of
    the last max-horizon days before t read the changed rows)."""
    ctx = _ctx(T=320)
    f = _factor(ctx)
    full = evaluate_factor(f, ctx, splits=("train", "valid"), keep_series=True)
    cut = 200
    short = ctx.restrict(ctx.dates[0], ctx.dates[cut - 1])
    part = evaluate_factor(f[:cut], short, splits=("train", "valid"), keep_series=True)
    for s in ("train", "valid"):
        a, b = full[s].series, part[s].series
        n = len(b.dates) - 21                   # label tail
        if n <= 0:
            continue
        assert a.dates[:n].equals(b.dates[:n])
        for x, y in [(a.rank_ic, b.rank_ic), (a.ic, b.ic), (a.long_short, b.long_short),
                     (a.turnover, b.turnover), (a.quantile_returns, b.quantile_returns)]:
            np.testing.assert_array_equal(x[:n], y[:n])


def test_factor_data_layout():
    ctx = _ctx()
    f = _factor(ctx)
    fd = factor_data(f, ctx, splits=("train", "valid"))
    assert fd.index.names == ["date", "asset"]
    assert list(fd.columns) == [f"{k}D" for k in DECAY_HORIZONS] + ["factor", "factor_quantile"]
    assert fd["factor_quantile"].dtype == np.int64
    assert set(fd["factor_quantile"]) == set(range(1, ctx.quantiles + 1))
    assert not fd.isna().any().any()
    d = fd.index.get_level_values("date")
    assert d.max() <= ctx.dates[ctx.split_bounds("valid")[1] - 1]      # no test rows
    ti = ctx.dates.get_indexer(d)
    ci = ctx.codes.get_indexer(fd.index.get_level_values("asset"))
    assert ctx.eligible[ti, ci].all()
    np.testing.assert_array_equal(fd["factor"], f[ti, ci])
    for k in DECAY_HORIZONS:
        np.testing.assert_array_equal(fd[f"{k}D"], ctx.fwd[k][ti, ci])
    # the buckets are the evaluator's: their mean label per day is the quantile return
    # (one label horizon, so no row is dropped for a missing longer-horizon label)
    rng = np.random.default_rng(0)
    T, N = 320, 40
    opn = 10.0 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0))
    c1 = EvalContext.from_arrays(ctx.dates, ctx.codes, opn, rng.random((T, N)) >= 0.3,
                                 rng.random((T, N)) >= 0.05, SPLITS, horizons=(1,))
    f1 = _factor(c1)
    fd1 = factor_data(f1, c1)
    assert list(fd1.columns) == ["1D", "factor", "factor_quantile"]
    se = evaluate_factor(f1, c1, keep_series=True)["train"].series
    d1 = fd1.index.get_level_values("date")
    m = fd1["1D"].groupby([d1, fd1["factor_quantile"]]).mean().unstack()
    m = m.reindex(index=se.dates, columns=range(1, c1.quantiles + 1))
    np.testing.assert_allclose(m.to_numpy(), se.quantile_returns, rtol=1e-12)
    fd_t = factor_data(f, ctx, splits=("train", "valid", "test"))
    assert fd_t.index.get_level_values("date").max() >= pd.Timestamp(SPLITS["test"][0])


def test_save_series_whole_and_refusals(tmp_path):
    ctx = _ctx()
    f = _factor(ctx)
    reps = evaluate_factor(f, ctx, keep_series=True)
    out = tmp_path / "s"
    save_series(out, reps, f, ctx, {"splits": {s: r.to_dict() for s, r in reps.items()}})
    assert {p.name for p in out.iterdir()} == SERIES_FILES
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no staged leftovers
    ric = pd.read_parquet(out / "rank_ic.parquet")
    assert set(ric.split) == {"train", "valid"}
    fd = pd.read_parquet(out / "factor_data.parquet")
    assert fd.index.names == ["date", "asset"]
    with pytest.raises(AlphamineError, match="not empty"):
        save_series(out, reps, f, ctx, {})
    save_series(out, reps, f, ctx, {"again": 1}, force=True)
    assert '"again": 1' in (out / "report.json").read_text()
    (out / "mine.txt").write_text("x")
    with pytest.raises(AlphamineError, match="did not write"):
        check_save_dir(out, force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(AlphamineError, match="is a file"):
        check_save_dir(tmp_path / "file")
    with pytest.raises(AlphamineError, match="keep_series"):
        save_series(tmp_path / "t", evaluate_factor(f, ctx), f, ctx, {})
