"""The operators added for Alpha101: ts_product, signed_power, cs_neutralize and cs_group_*.

Oracles are pandas (``s.dropna().rolling(d)`` per column; ``groupby`` per date). Causality,
NaN policy, dtype and mask handling of these operators are covered, like every operator's, by
test_registry_invariants.py (parametrised over the registry); the causality of the group ops
with a dated group panel is checked here as well.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from factors.operators import get_op

T, N = 40, 9


def _panel(seed=0, holes=True):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.5, (T, N))
    if holes:
        x[rng.random((T, N)) < 0.15] = np.nan
    return x


def _groups(seed=1):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 3, (T, N)).astype(float)
    g[rng.random((T, N)) < 0.05] = np.nan
    return g


@pytest.mark.parametrize("window", [1, 3, 7])
def test_ts_product_matches_pandas(window):
    x = _panel()
    x[5, 2] = 0.0
    got = get_op("ts_product").func(x, window)
    ref = pd.DataFrame(x).apply(
        lambda s: s.dropna().rolling(window).apply(np.prod, raw=True).reindex(s.index))
    np.testing.assert_allclose(got, ref.to_numpy(), rtol=1e-12, equal_nan=True)
    assert np.isnan(got[np.isnan(x)]).all()


def test_ts_product_overflow_is_nan():
    x = np.full((5, 1), 1e200)
    assert np.isnan(get_op("ts_product").func(x, 2)[1:]).all()


def test_signed_power():
    sp = get_op("signed_power").func
    x = np.array([-2.0, -0.5, 0.0, 0.5, 3.0, np.nan])
    np.testing.assert_allclose(sp(x, 2.0), [-4.0, -0.25, 0.0, 0.25, 9.0, np.nan])
    np.testing.assert_allclose(sp(x, 0.5), np.sign(x) * np.sqrt(np.abs(x)))
    assert np.isnan(sp(np.array([0.0]), -1.0)).all()              # 0 ** negative
    y = np.array([1.0, 2.0, 3.0, 1.0, 0.0, 1.0])                   # panel exponent
    np.testing.assert_allclose(sp(x, y), np.sign(x) * np.abs(x) ** y)


_ORACLES = {
    "cs_neutralize": lambda s: s - s.mean(),
    "cs_group_mean": lambda s: s * 0 + s.mean(),
    "cs_group_rank": lambda s: s.rank(pct=True, method="average"),
    "cs_group_zscore": lambda s: (s - s.mean()) / s.std(ddof=0),
}


@pytest.mark.parametrize("name", sorted(_ORACLES))
@pytest.mark.parametrize("masked", [False, True])
def test_group_ops_match_pandas_groupby(name, masked):
    x, g = _panel(2), _groups(3)
    x[4, :5] = 1.0                                 # ties inside a group
    mask = np.random.default_rng(4).random((T, N)) < 0.8 if masked else None
    got = get_op(name).func(x, g, mask=mask)
    ok = np.isfinite(x) & np.isfinite(g) & (True if mask is None else mask)
    ref = np.full((T, N), np.nan)
    for t in range(T):
        s = pd.Series(np.where(ok[t], x[t], np.nan))
        r = s.groupby(g[t]).transform(_ORACLES[name]).to_numpy()
        ref[t] = np.where(ok[t], r, np.nan)
    ref[~np.isfinite(ref)] = np.nan
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14, equal_nan=True)


def test_neutralize_sums_to_zero_per_group_and_single_member_is_zero():
    x, g = _panel(5, holes=False), _groups(6)
    g[np.isnan(g)] = 0.0
    out = get_op("cs_neutralize").func(x, g)
    for t in range(T):
        for k in np.unique(g[t]):
            assert abs(out[t, g[t] == k].sum()) < 1e-12
    g1 = np.zeros((T, N))
    g1[:, 0] = 7.0                                   # stock 0 alone in its group
    assert (get_op("cs_neutralize").func(x, g1)[:, 0] == 0.0).all()
    assert np.isnan(get_op("cs_group_zscore").func(x, g1)[:, 0]).all()


def test_group_ops_are_causal_with_dated_groups():
    x, g = _panel(7), _groups(8)
    for name in _ORACLES:
        op = get_op(name)
        full = op.func(x, g)
        for k in (1, 13, T - 1):
            np.testing.assert_array_equal(op.func(x[:k], g[:k]), full[:k])


def test_group_shape_mismatch_raises():
    with pytest.raises(ValueError, match="cs_neutralize: group shape"):
        get_op("cs_neutralize").func(np.zeros((3, 4)), np.zeros((3, 5)))


def test_ts_argmax_convention_is_days_ago():
    """Alpha101's Ts_ArgMax as used in factors/alpha101.py: 0 = today, ties -> most recent."""
    x = np.array([[1.0], [5.0], [2.0], [5.0], [3.0], [0.0]])
    got = get_op("ts_argmax").func(x, 3)[:, 0]
    np.testing.assert_array_equal(got[2:], [1.0, 0.0, 1.0, 2.0])
    got = get_op("ts_argmin").func(x, 3)[:, 0]
    np.testing.assert_array_equal(got[2:], [2.0, 1.0, 2.0, 0.0])
