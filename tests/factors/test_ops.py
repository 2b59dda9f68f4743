"""Every operator against an independent pandas / numpy oracle on small seeded panels."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from factors import _kernels_cs as K
from factors.operators import get_op

TOL = dict(rtol=1e-9, atol=1e-12, equal_nan=True)


def _panel(seed: int = 0, T: int = 160, N: int = 10) -> np.ndarray:
    """Random panel with NaN holes, a late listing, ties, a constant stretch and an empty column."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, N))
    x[rng.random((T, N)) < 0.15] = np.nan
    x[:40, 1] = np.nan                       # listed late
    x[:, 2] = np.round(x[:, 2] * 2) / 2      # many ties
    x[60:100, 3] = 1.5                       # constant stretch (zero variance windows)
    x[:, 4] = np.nan                         # never traded
    x[rng.random(T) < 0.5, 5] = np.nan       # sparse
    return x


def _call(name, *args, **kw):
    return get_op(name).func(*args, **kw)


def _ts_oracle(x: np.ndarray, fn) -> np.ndarray:
    """Apply ``fn`` to each column's non-NaN observations and put results back on their rows."""
    df = pd.DataFrame(x)
    cols = [fn(df[c].dropna()).reindex(df.index).to_numpy(dtype=float) for c in df]
    return _nan_clean(np.column_stack(cols))  # operators never return inf (e.g. x / 0)


def _ts2_oracle(x, y, fn) -> np.ndarray:
    cols = []
    for c in range(x.shape[1]):
        j = pd.DataFrame({"a": x[:, c], "b": y[:, c]}).dropna()
        cols.append(fn(j["a"], j["b"]).reindex(range(x.shape[0])).to_numpy(dtype=float))
    return np.column_stack(cols)


def _apply(w, f):
    return lambda s: s.rolling(w, min_periods=w).apply(f, raw=True)


def _zscore_window(a):
    sd = a.std(ddof=1)
    return (a[-1] - a.mean()) / sd if sd > 0 else np.nan


ROLLING = {
    "ts_sum": lambda w: lambda s: s.rolling(w, min_periods=w).sum(),
    "ts_mean": lambda w: lambda s: s.rolling(w, min_periods=w).mean(),
    "ts_std": lambda w: lambda s: s.rolling(w, min_periods=w).std(),
    "ts_min": lambda w: lambda s: s.rolling(w, min_periods=w).min(),
    "ts_max": lambda w: lambda s: s.rolling(w, min_periods=w).max(),
    "ts_median": lambda w: lambda s: s.rolling(w, min_periods=w).median(),
    "ts_qtlu": lambda w: lambda s: s.rolling(w, min_periods=w).quantile(0.8),
    "ts_qtld": lambda w: lambda s: s.rolling(w, min_periods=w).quantile(0.2),
    "ts_skew": lambda w: lambda s: s.rolling(w, min_periods=w).skew(),
    "ts_rank": lambda w: lambda s: s.rolling(w, min_periods=w).rank(pct=True, method="average"),
    "ts_delay": lambda w: lambda s: s.shift(w),
    "ts_delta": lambda w: lambda s: s.diff(w),
    "ts_pct_change": lambda w: lambda s: s.pct_change(w),
    "ts_ema": lambda w: lambda s: s.ewm(span=w, adjust=False, min_periods=w).mean(),
    "ts_mad": lambda w: _apply(w, lambda a: np.median(np.abs(a - np.median(a)))),
    "ts_argmax": lambda w: _apply(w, lambda a: np.argmax(a[::-1])),
    "ts_argmin": lambda w: _apply(w, lambda a: np.argmin(a[::-1])),
    "ts_decay_linear": lambda w: _apply(
        w, lambda a: np.dot(a, np.arange(1, len(a) + 1)) / (len(a) * (len(a) + 1) / 2)),
    "ts_zscore": lambda w: _apply(w, _zscore_window),
}


@pytest.mark.parametrize("name, window", [
    (name, w) for name in sorted(ROLLING) for w in (1, 2, 3, 4, 5, 20)
    if w >= get_op(name).min_window])
def test_ts_unary_matches_pandas(name, window):
    x = _panel(seed=window)
    expected = _ts_oracle(x, ROLLING[name](window))
    np.testing.assert_allclose(_call(name, x, window), expected, **TOL)


@pytest.mark.parametrize("window", [5, 10, 30, 60])
@pytest.mark.parametrize("name, q", [("ts_qtlu", 0.8), ("ts_qtld", 0.2), ("ts_median", 0.5)])
def test_ts_quantile_matches_numpy_at_qlib_windows(name, q, window):
    """Second oracle (numpy linear quantile) at Alpha158's QTLU/QTLD windows."""
    x = _panel(seed=window, T=200)
    expected = _ts_oracle(x, _apply(window, lambda a: np.quantile(a, q)))
    np.testing.assert_allclose(_call(name, x, window), expected, **TOL)


def test_ts_quantile_order_and_hand_values():
    x = np.array([4.0, 1.0, np.nan, 3.0, 2.0, 5.0, 0.0])
    # windows (obs 4,1,3,2,5 / 1,3,2,5,0); sorted [1,2,3,4,5] -> i=3.2: 4.2; i=0.8: 1.8
    np.testing.assert_allclose(_call("ts_qtlu", x, 5)[5:], [4.2, 3.4])
    np.testing.assert_allclose(_call("ts_qtld", x, 5)[5:], [1.8, 0.8])
    assert np.isnan(_call("ts_qtlu", x, 5)[:5]).all()
    p = _panel(seed=7)
    lo, med, hi = (_call(n, p, 10) for n in ("ts_qtld", "ts_median", "ts_qtlu"))
    ok = np.isfinite(med)
    assert np.all(lo[ok] <= med[ok]) and np.all(med[ok] <= hi[ok])
    assert np.array_equal(np.isfinite(lo), ok) and np.array_equal(np.isfinite(hi), ok)


@pytest.mark.parametrize("window", [2, 3, 10, 11, 60])
def test_ts_median_and_mad_are_exact_order_statistics_on_ties(window):
    """The sorted window buffer (slots tracked, equal values, signed zeros, long runs) gives
    numpy's median and MAD of every window exactly (``==``, so -0.0 equals 0.0)."""
    rng = np.random.default_rng(window)
    x = rng.integers(-3, 4, (400, 6)).astype(float)
    x[:, 1] *= 0.5                                      # halves
    x[rng.random(400) < 0.3, 2] = -0.0                  # signed zeros among zeros
    x[100:250, 3] = 2.0                                 # a long run of one value
    x[rng.random((400, 6)) < 0.1] = np.nan
    med_exp = _ts_oracle(x, _apply(window, np.median))
    mad_exp = _ts_oracle(x, _apply(window, lambda a: np.median(np.abs(a - np.median(a)))))
    for got, exp in ((_call("ts_median", x, window), med_exp),
                     (_call("ts_mad", x, window), mad_exp)):
        ok = np.isfinite(exp)
        assert np.array_equal(np.isfinite(got), ok)
        assert (got[ok] == exp[ok]).all()


@pytest.mark.parametrize("window", [2, 3, 5, 20])
@pytest.mark.parametrize("name", ["ts_corr", "ts_cov"])
def test_ts_pair_matches_pandas_on_joint_observations(name, window):
    x = _panel(seed=1)
    y = _panel(seed=2)
    method = "corr" if name == "ts_corr" else "cov"
    expected = _ts2_oracle(x, y, lambda a, b: getattr(a.rolling(window, min_periods=window),
                                                      method)(b))
    np.testing.assert_allclose(_call(name, x, y, window), expected, **TOL)


def test_ts_ops_skip_missing_rows():
    """A suspension does not shorten the window: it spans the stock's own observations."""
    nan = np.nan
    x = np.array([1.0, 2.0, nan, nan, 3.0, 4.0])
    np.testing.assert_array_equal(_call("ts_mean", x, 3), [nan, nan, nan, nan, 2.0, 3.0])
    np.testing.assert_array_equal(_call("ts_delay", x, 1), [nan, 1.0, nan, nan, 2.0, 3.0])
    np.testing.assert_array_equal(_call("ts_argmax", x, 3), [nan, nan, nan, nan, 0, 0])


def test_ts_infinite_input_is_missing():
    x = _panel(seed=3)
    y = x.copy()
    y[10, 0] = np.inf
    y[20, 6] = -np.inf
    x[10, 0] = np.nan
    x[20, 6] = np.nan
    for name in ("ts_mean", "ts_std", "ts_rank", "ts_max", "ts_ema"):
        np.testing.assert_array_equal(_call(name, y, 5), _call(name, x, 5))


def test_zero_variance_windows():
    x = np.r_[np.arange(5.0), np.full(10, 7.0), np.arange(5.0)]
    std = _call("ts_std", x, 4)
    assert np.all(std[8:15] == 0.0)                       # exact zero, not rounding noise
    assert np.all(std[3:8] > 0) and np.all(std[15:] > 0)
    assert np.all(np.isnan(_call("ts_zscore", x, 4)[8:15]))
    assert np.all(np.isnan(_call("ts_skew", x, 4)[8:15]))
    y = np.random.default_rng(0).standard_normal(20)
    corr = _call("ts_corr", x, y, 4)
    assert np.all(np.isnan(corr[8:15])) and np.all(np.isfinite(corr[3:8]))
    assert np.all(_call("ts_cov", x, y, 4)[8:15] == 0.0)


def test_ts_argmax_ties_pick_most_recent():
    x = np.array([3.0, 1.0, 3.0, 2.0, 0.0])
    np.testing.assert_array_equal(_call("ts_argmax", x, 3), [np.nan, np.nan, 0, 1, 2])
    np.testing.assert_array_equal(_call("ts_argmin", -x, 3), [np.nan, np.nan, 0, 1, 2])


def test_pct_change_zero_denominator_is_nan():
    x = np.array([0.0, 1.0, 2.0, 0.0, 5.0])
    out = _call("ts_pct_change", x, 1)
    assert np.isnan(out[1]) and np.isnan(out[4])
    np.testing.assert_allclose(out[2:4], [1.0, -1.0])


def test_decay_linear_weights():
    x = np.array([1.0, 2.0, 4.0, 8.0])
    np.testing.assert_allclose(_call("ts_decay_linear", x, 3)[2:],
                               [(1 + 4 + 12) / 6, (2 + 8 + 24) / 6])


def _exact_windows(v: np.ndarray, w: int, shift: float):
    """Exact two-pass windowed mean and std; ``v - shift`` is exact (Sterbenz), so no rounding
    of the large common level enters the deviations."""
    win = sliding_window_view(v - shift, w)
    mean = win.mean(axis=1)
    std = np.sqrt(((win - mean[:, None]) ** 2).sum(axis=1) / (w - 1))
    return mean + shift, std


@pytest.mark.parametrize("noise", [1.0, 1e-3])
@pytest.mark.parametrize("w", [2, 5, 20, 250])
def test_no_drift_on_long_large_valued_series(noise, w):
    rng = np.random.default_rng(42)
    v = 1e6 + noise * rng.standard_normal(100_000)
    mean, std = _exact_windows(v, w, 1e6)
    np.testing.assert_allclose(_call("ts_mean", v, w)[w - 1:], mean, rtol=1e-9)
    np.testing.assert_allclose(_call("ts_std", v, w)[w - 1:], std, rtol=1e-9)


@pytest.mark.parametrize("start", range(100, 120, 3))
def test_moments_recover_after_volatile_spell(start):
    """Huge values leaving the window must not leave cancellation error behind."""
    rng = np.random.default_rng(7)
    v = rng.standard_normal(300) * 1e-3
    v[start:start + 10] += 1e8 * rng.standard_normal(10)
    y = rng.standard_normal(300)
    w = 20
    after = start + 10 + w  # first row whose window is clear of the spell
    _, std = _exact_windows(v, w, 0.0)
    np.testing.assert_allclose(_call("ts_std", v, w)[after:], std[after - w + 1:], rtol=1e-9)
    wa = sliding_window_view(v, w)
    wb = sliding_window_view(y, w)
    da = wa - wa.mean(axis=1, keepdims=True)
    db = wb - wb.mean(axis=1, keepdims=True)
    corr = (da * db).sum(axis=1) / np.sqrt((da * da).sum(axis=1) * (db * db).sum(axis=1))
    np.testing.assert_allclose(_call("ts_corr", v, y, w)[after:], corr[after - w + 1:],
                               rtol=1e-9)
    skew = pd.Series(v).rolling(w).apply(lambda a: pd.Series(a).skew(), raw=True).to_numpy()
    np.testing.assert_allclose(_call("ts_skew", v, w)[after:], skew[after:], rtol=1e-9)


# ---------------------------------------------------------------- cross-sectional

def _mask(x, seed=0):
    return np.random.default_rng(seed).random(x.shape) < 0.8


def test_cs_rank_matches_pandas():
    x = _panel(seed=4)
    m = _mask(x)
    exp = pd.DataFrame(x).where(m).rank(axis=1, pct=True, method="average").to_numpy()
    np.testing.assert_allclose(_call("cs_rank", x, mask=m), exp, **TOL)
    exp_all = pd.DataFrame(x).rank(axis=1, pct=True).to_numpy()
    np.testing.assert_allclose(_call("cs_rank", x, mask=None), exp_all, **TOL)


def test_cs_moments_match_pandas():
    x = _panel(seed=5)
    m = _mask(x, 1)
    df = pd.DataFrame(x).where(m)
    mean = df.mean(axis=1)
    np.testing.assert_allclose(_call("cs_demean", x, mask=m), df.sub(mean, axis=0).to_numpy(),
                               **TOL)
    z = df.sub(mean, axis=0).div(df.std(axis=1, ddof=0), axis=0)
    np.testing.assert_allclose(_call("cs_zscore", x, mask=m), z.to_numpy(), **TOL)
    sc = df.div(df.abs().sum(axis=1), axis=0)
    out = _call("cs_scale", x, mask=m)
    np.testing.assert_allclose(out, sc.to_numpy(), **TOL)
    np.testing.assert_allclose(np.nansum(np.abs(out), axis=1), 1.0, rtol=1e-12)


def test_cs_degenerate_rows_are_nan():
    nan = np.nan
    x = np.array([[1.0, 1.0, 1.0], [nan, nan, nan], [0.0, 0.0, nan], [2.0, np.inf, 4.0]])
    z = _call("cs_zscore", x)
    assert np.all(np.isnan(z[:3]))
    np.testing.assert_allclose(z[3], [-1.0, np.nan, 1.0], equal_nan=True)
    assert np.all(np.isnan(_call("cs_scale", x)[2]))
    np.testing.assert_allclose(_call("cs_rank", x)[0], [2 / 3] * 3)
    np.testing.assert_allclose(_call("cs_rank", x)[3], [0.5, np.nan, 1.0], equal_nan=True)
    assert np.all(np.isnan(_call("cs_rank", x)[1]))


def test_cs_mask_shape_checked():
    x = _panel()
    with pytest.raises(ValueError, match="mask"):
        _call("cs_rank", x, mask=np.ones((3, 3), bool))


def test_rank_corr_rows_is_spearman():
    rng = np.random.default_rng(8)
    a = rng.standard_normal((30, 40))
    b = a + rng.standard_normal((30, 40))
    a[:, 0] = np.round(a[:, 0])            # ties
    a[rng.random(a.shape) < 0.1] = np.nan
    b[rng.random(b.shape) < 0.1] = np.nan
    m = rng.random(a.shape) < 0.9
    ok = m & np.isfinite(a) & np.isfinite(b)
    da = pd.DataFrame(np.where(ok, a, np.nan))
    db = pd.DataFrame(np.where(ok, b, np.nan))
    exp = np.array([da.iloc[t].corr(db.iloc[t], method="spearman") for t in range(30)])
    np.testing.assert_allclose(K.rank_corr_rows(a, b, m), exp, rtol=1e-9)
    exp_p = np.array([da.iloc[t].corr(db.iloc[t]) for t in range(30)])
    np.testing.assert_allclose(K.pearson_rows(a, b, m), exp_p, rtol=1e-9)
    np.testing.assert_allclose(K.rank_pct_rows(a, m),
                               pd.DataFrame(a).where(m).rank(axis=1, pct=True).to_numpy(), **TOL)


def test_row_correlations_nan_rules():
    a = np.array([[1.0, 2.0, np.nan, 4.0], [1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0]])
    b = np.array([[1.0, 3.0, 2.0, np.nan], [4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    for f in (K.rank_corr_rows, K.pearson_rows):
        r = f(a, b)
        assert np.isnan(r[0])            # only 2 joint names
        assert r[1] == pytest.approx(-1.0)
        assert np.isnan(r[2])            # zero variance
        assert r.shape == (3,) and r.dtype == np.float64


# ---------------------------------------------------------------- elementwise

def _ew_inputs():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((20, 6)) * 3
    y = rng.standard_normal((20, 6)) * 3
    x[0, 0] = np.nan
    y[1, 1] = np.nan
    y[2, 2] = 0.0
    x[3, 3] = 0.0
    return x, y


def _nan_clean(a):
    a = np.asarray(a, dtype=float).copy()
    a[~np.isfinite(a)] = np.nan
    return a


@pytest.mark.parametrize("name, oracle", [
    ("add", lambda x, y: x + y), ("sub", lambda x, y: x - y), ("mul", lambda x, y: x * y),
    ("div", lambda x, y: x / y), ("max", np.maximum), ("min", np.minimum),
    ("power", lambda x, y: np.abs(x) ** y),
])
def test_binary_elementwise(name, oracle):
    x, y = _ew_inputs()
    if name == "power":
        x = np.abs(x)
    with np.errstate(all="ignore"):
        exp = _nan_clean(oracle(x, y))
    out = _call(name, x, y)
    np.testing.assert_allclose(out, exp, **TOL)
    assert np.all(np.isfinite(out) | np.isnan(out))


@pytest.mark.parametrize("name, oracle", [
    ("neg", np.negative), ("abs", np.abs), ("sign", np.sign), ("log", np.log),
    ("sqrt", np.sqrt), ("inv", lambda x: 1.0 / x),
])
def test_unary_elementwise(name, oracle):
    x, _ = _ew_inputs()
    with np.errstate(all="ignore"):
        exp = _nan_clean(oracle(x))
    np.testing.assert_allclose(_call(name, x), exp, **TOL)


def test_elementwise_edge_cases():
    assert np.isnan(_call("div", np.array([1.0, 0.0]), np.array([0.0, 0.0]))).all()
    assert np.isnan(_call("inv", np.array([0.0]))).all()
    assert np.isnan(_call("log", np.array([0.0, -1.0]))).all()
    assert np.isnan(_call("sqrt", np.array([-1.0]))).all()
    assert np.isnan(_call("power", np.array([-8.0, 0.0, 10.0]), np.array([1 / 3, -1.0, 400.0]))
                    ).all()
    np.testing.assert_array_equal(_call("power", np.array([-2.0]), 3.0), [-8.0])
    assert np.isnan(_call("mul", np.array([1e200]), np.array([1e200]))).all()   # overflow
    assert np.isnan(_call("add", np.array([np.inf]), 1.0)).all()
    assert np.isnan(_call("sign", np.array([np.inf, np.nan]))).all()
    np.testing.assert_array_equal(_call("sign", np.array([-2.0, 0.0, 3.0])), [-1.0, 0.0, 1.0])


def test_comparisons_and_where():
    x = np.array([1.0, 2.0, np.nan, 3.0, np.inf])
    y = np.array([2.0, 2.0, 1.0, np.nan, 1.0])
    np.testing.assert_array_equal(_call("gt", x, y), [0.0, 0.0, np.nan, np.nan, np.nan])
    np.testing.assert_array_equal(_call("lt", x, y), [1.0, 0.0, np.nan, np.nan, np.nan])
    cond = np.array([1.0, -1.0, np.nan, 0.0, 2.0])
    a = np.array([10.0, 20.0, 30.0, 40.0, np.inf])
    b = np.array([-1.0, -2.0, -3.0, np.nan, -5.0])
    np.testing.assert_array_equal(_call("where", cond, a, b), [10.0, -2.0, np.nan, np.nan, np.nan])


def test_elementwise_scalars_broadcast():
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(_call("add", x, 1), x + 1)
    np.testing.assert_array_equal(_call("sub", 1.0, x), 1.0 - x)
    out = _call("div", x, 0.0)
    assert out.shape == (2, 3) and np.isnan(out).all()
    with pytest.raises(ValueError):
        _call("add", x, np.ones(4))


def test_rank_rows_is_scipy_rankdata_on_eligible_entries_bit_for_bit():
    from scipy.stats import rankdata

    from factors._kernels_cs import rank_rows
    rng = np.random.default_rng(11)
    x = rng.integers(0, 6, (40, 30)).astype(float)          # many ties
    x[rng.random(x.shape) < 0.1] = np.nan
    x[rng.random(x.shape) < 0.03] = np.inf
    mask = rng.random(x.shape) < 0.8
    xs = np.where(np.isfinite(x) & mask, x, np.nan)
    want = rankdata(xs, axis=1, nan_policy="omit")
    got = rank_rows(x, mask)
    assert got.tobytes() == want.tobytes()
