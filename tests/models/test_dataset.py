"""Dataset: feature set as data, normalisation steps, label, sample mask, causality."""
from __future__ import annotations

import numpy as np
import pytest

from data.errors import ConfigError
from factors.alpha158 import ALPHA158, FEATURE_SETS, UNSUPPORTED, feature_set
from factors.expr_eval import evaluate
from factors.expr_parse import parse
from models.dataset import build_dataset, normalise_label, robust_zscore


def test_feature_sets_parse_and_are_unique():
    assert len(ALPHA158) == 158 - len(UNSUPPORTED) == 158
    for name, feats in FEATURE_SETS.items():
        names = [f.name for f in feats]
        assert len(set(names)) == len(names), name
        for f in feats:
            parse(f.formula)
    with pytest.raises(ConfigError, match="unknown feature set"):
        feature_set("nope")


def _series_panel(y):
    return {"close": np.asarray(y, float)[:, None], "high": np.asarray(y, float)[:, None] + 1,
            "low": np.asarray(y, float)[:, None] - 1}


@pytest.mark.parametrize("d", [5, 20])
def test_regression_features_match_polyfit(d):
    rng = np.random.default_rng(3)
    y = 10 + np.cumsum(rng.normal(0, 1, 80))
    data = _series_panel(y)
    by = {f.name: f for f in ALPHA158}
    beta = evaluate(parse(by[f"BETA{d}"].formula), data)[:, 0]
    rsqr = evaluate(parse(by[f"RSQR{d}"].formula), data)[:, 0]
    resi = evaluate(parse(by[f"RESI{d}"].formula), data)[:, 0]
    k = np.arange(1, d + 1)
    for t in range(d - 1, 80):
        w = y[t - d + 1:t + 1]
        b, a = np.polyfit(k, w, 1)
        r2 = np.corrcoef(k, w)[0, 1] ** 2
        assert beta[t] == pytest.approx(b / y[t], rel=1e-8, abs=1e-12)
        assert rsqr[t] == pytest.approx(r2, rel=1e-8, abs=1e-12)
        assert resi[t] == pytest.approx((w[-1] - (a + b * d)) / y[t], rel=1e-6, abs=1e-10)
    assert np.isnan(beta[: d - 1]).all()


def test_imax_matches_qlib_idxmax():
    rng = np.random.default_rng(4)
    y = rng.normal(0, 1, 50)
    data = _series_panel(y)
    by = {f.name: f for f in ALPHA158}
    imax = evaluate(parse(by["IMAX10"].formula), data)[:, 0]
    for t in range(9, 50):
        w = y[t - 9:t + 1] + 1  # high = close + 1
        assert imax[t] == pytest.approx((np.argmax(w) + 1) / 10)


@pytest.mark.parametrize("d", [5, 10, 20, 30, 60])
def test_qtlu_qtld_match_qlib_pandas_quantile(d):
    """Qlib: Quantile($close, d, 0.8)/$close (pandas rolling quantile), placed after MIN{d}."""
    import pandas as pd
    rng = np.random.default_rng(d)
    y = 10 + np.cumsum(rng.normal(0, 1, 120))
    data = _series_panel(y)
    names = [f.name for f in ALPHA158]
    assert names.index(f"QTLU{d}") == names.index(f"MIN{d}") + 5
    assert names.index(f"QTLD{d}") == names.index(f"QTLU{d}") + 5
    by = {f.name: f for f in ALPHA158}
    for fam, q in (("QTLU", 0.8), ("QTLD", 0.2)):
        got = evaluate(parse(by[f"{fam}{d}"].formula), data)[:, 0]
        want = pd.Series(y).rolling(d).quantile(q).to_numpy() / y
        np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
        assert np.isnan(got[: d - 1]).all() and np.isfinite(got[d - 1:]).all()


def test_robust_zscore_known_values_and_mask():
    x = np.array([[1.0, 2.0, 3.0, 4.0, 100.0, np.nan],
                  [5.0, 5.0, 5.0, 5.0, 5.0, 5.0],
                  [0.0, 0.0, 0.0, 0.0, 1.0, 7.0]])
    mask = np.ones_like(x, dtype=bool)
    mask[0, 4] = False          # the outlier is not a member: stats from 1..4
    z = robust_zscore(x, mask, clip=3.0)
    med, mad = 2.5, 1.0 * 1.4826
    assert z[0, 0] == pytest.approx((1 - med) / mad)
    assert z[0, 4] == 3.0                        # non-member transformed with member stats, clipped
    assert np.isnan(z[0, 5])
    assert (z[1] == 0).all()                     # constant date
    # MAD == 0 but values differ: population std is the scale
    sd = np.std([0, 0, 0, 0, 1.0, 7.0])
    assert z[2, 4] == pytest.approx(1.0 / sd)
    assert np.nanmax(np.abs(z)) <= 3.0


def test_normalise_label_rank_and_zscore():
    y = np.array([[0.03, -0.01, 0.02, 0.02, np.nan, 0.5],
                  [0.01, np.nan, np.nan, np.nan, np.nan, np.nan]])
    m = np.isfinite(y)
    m[0, 5] = False
    r = normalise_label(y, m, "rank")
    assert r[0, 1] == -0.5 and r[0, 0] == 0.5
    assert r[0, 2] == r[0, 3] == 0.0             # tie of ranks 2,3 of 4 -> 2.5 -> 0.0
    assert np.isnan(r[0, 4]) and np.isnan(r[0, 5])
    assert r[1, 0] == 0.0                        # single name
    z = normalise_label(y, m, "zscore")
    assert np.nanmean(z[0]) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ConfigError):
        normalise_label(y, m, "minmax")


def test_build_dataset_layout_label_and_mask(make_ws):
    ws = make_ws(T=160, N=20, seed=1)
    ds = build_dataset(ws, "qlib158", horizon=1, label_norm="rank")
    T, N = ws.ctx.shape
    assert ds.features.shape == (T, N, 158) and ds.features.dtype == np.float32
    assert ds.label.dtype == np.float32 and ds.label.shape == (T, N)
    assert np.isfinite(ds.features).all()
    assert np.abs(ds.features).max() <= 3.0
    # raw label is the evaluator's label; mask = universe & eligible & finite label
    np.testing.assert_allclose(ds.label_raw, ws.ctx.fwd[1].astype(np.float32), equal_nan=True)
    expect = ws.ctx.universe_mask & ws.ctx.eligible & np.isfinite(ws.ctx.fwd[1])
    np.testing.assert_array_equal(ds.sample_mask, expect)
    assert np.isnan(ds.label[~ds.sample_mask]).all()
    assert np.isfinite(ds.label[ds.sample_mask]).all()
    assert not ds.sample_mask[:, -1].any()       # never a universe member
    # missing raw values -> 0 and flagged invalid (stock 0 has no bars in its first 40 rows)
    assert not ds.feature_valid[:40, 0].any() and (ds.features[:40, 0] == 0).all()
    X, y = ds.to_long(slice(0, 50))
    assert list(X.index.names) == ["trade_date", "ts_code"]
    assert len(X) == ds.sample_mask[:50].sum() and X.dtypes.unique().tolist() == [np.float32]
    assert np.isfinite(y.to_numpy()).all()


def test_close_label_is_qlib_label(make_ws):
    ws = make_ws(T=80, N=10, seed=2)
    ds = build_dataset(ws, "library", horizon=1, label="close", label_norm="zscore")
    c = ws.field("close")
    expect = c[2:] / c[1:-1] - 1
    np.testing.assert_allclose(ds.label_raw[:-2], expect.astype(np.float32), equal_nan=True)
    with pytest.raises(ConfigError):
        build_dataset(ws, "library", label="vwap")
    with pytest.raises(ConfigError):
        build_dataset(ws, "library", horizon=0)


def test_features_are_causal(make_ws, truncate):
    ws = make_ws(T=150, N=12, seed=5)
    full = build_dataset(ws, "alpha158")
    k = 110
    cut = build_dataset(truncate(ws, k), "alpha158")
    np.testing.assert_array_equal(cut.features, full.features[:k])
    np.testing.assert_array_equal(cut.feature_valid, full.feature_valid[:k])


@pytest.mark.slow
def test_real_csi300_slice_builds_with_full_coverage():
    from backtest.candidates import make_workspace
    from mining.cli_app import load as load_config
    try:
        ws = make_workspace(load_config(), "csi300", "2018-06-01", "2018-12-31")
    except Exception as exc:  # pragma: no cover - the warehouse is optional
        pytest.skip(f"real data unavailable: {exc}")
    ds = build_dataset(ws, "alpha158")
    assert ds.shape[2] == 158 + len(FEATURE_SETS["library"])
    assert 250 <= ds.sample_mask.sum(axis=1)[:-2].mean() <= 300      # CSI300 members, tradable
    rows = ds.sample_mask.copy()
    rows[:70] = False                      # past the 60-day warm-up
    coverage = ds.feature_valid[rows].mean(axis=0)
    from models.dataset import _group_key
    short = [_group_key(parse(f)) <= 60 for f in ds.formulas]   # lib_rlsf needs 252 days
    low = [n for n, c, ok in zip(ds.feature_names, coverage, short) if ok and c < 0.95]
    assert not low, low
    assert sum(short) >= len(short) - 1


def test_global_robust_zscore_uses_fit_period_only():
    from models.dataset import global_robust_zscore
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, np.nan], [100.0, 200.0, 300.0]])
    fit = np.zeros_like(x, dtype=bool)
    fit[:2] = True                                 # rows 0-1 are the fit period
    z = global_robust_zscore(x, fit, clip=3.0)
    med, mad = 3.0, 1.0 * 1.4826                   # of [1, 2, 3, 4, 5]
    assert z[0, 0] == pytest.approx((1 - med) / mad)
    assert np.isnan(z[1, 2]) and (z[2] == 3.0).all()
    # values after the fit period do not move the statistics
    x2 = x.copy()
    x2[2] = -1e6
    np.testing.assert_array_equal(global_robust_zscore(x2, fit)[:2], z[:2])


def test_build_dataset_global_norm(make_ws, truncate):
    ws = make_ws(T=150, N=12, seed=6)
    fit_end = str(ws.ctx.dates[80].date())
    with pytest.raises(ConfigError, match="fit_end"):
        build_dataset(ws, "library", feature_norm="global")
    with pytest.raises(ConfigError, match="feature normalisation"):
        build_dataset(ws, "library", feature_norm="minmax")
    full = build_dataset(ws, "library", feature_norm="global", fit_end=fit_end)
    assert full.feature_norm == "global" and np.isfinite(full.features).all()
    # rows after fit_end do not influence any feature value
    cut = build_dataset(truncate(ws, 120), "library", feature_norm="global", fit_end=fit_end)
    np.testing.assert_array_equal(cut.features, full.features[:120])
