"""Kernels made faster for the Alpha101 benchmark (issue 15) against the code they replace.

* ``cs_neutralize`` / ``cs_group_mean`` (:func:`factors.ops_group._group_mean_rows`, dense
  group ids, no sort) vs the sorting row kernel :func:`factors.ops_group._group_rows` and
  pandas ``groupby``: many distinct group values (the id table is reset), groups that change
  from row to row, a value tied across groups, -0.0 vs 0.0, causality.
* ``ts_rank``'s branch-free window count: bit-identical to the pandas average-tie percentile.
* :func:`factors._kernels_cs.has_inf` and :func:`factors._kernels_cs.nan_nonfinite_` vs numpy.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from factors import _kernels_cs as K
from factors import ops_group as G
from factors.operators import get_op


def _data(T=30, N=25, n_groups=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 2.0, (T, N))
    x[rng.random((T, N)) < 0.1] = np.nan
    g = rng.integers(0, n_groups, (T, N)).astype(float) * 1.5 - 2.0
    g[rng.random((T, N)) < 0.05] = np.nan
    return x, g


@pytest.mark.parametrize("n_groups", [1, 3, 200])     # 200 > N: the id table is reset
@pytest.mark.parametrize("demean", [True, False])
def test_group_mean_rows_matches_the_sorting_kernel_and_pandas(n_groups, demean):
    x, g = _data(n_groups=n_groups)
    mask = np.random.default_rng(9).random(x.shape) < 0.85
    ok = K.valid_entries(x, mask) & np.isfinite(g)
    got, old = np.full(x.shape, np.nan), np.full(x.shape, np.nan)
    G._group_mean_rows(x, g, ok, demean, got)
    G._group_rows(x, g, ok, G._DEMEAN if demean else G._MEAN, old)
    np.testing.assert_allclose(got, old, rtol=1e-13, atol=1e-14, equal_nan=True)
    ref = np.full(x.shape, np.nan)
    for t in range(x.shape[0]):
        s = pd.Series(np.where(ok[t], x[t], np.nan))
        m = s.groupby(g[t]).transform("mean").to_numpy()
        ref[t] = np.where(ok[t], x[t] - m if demean else m, np.nan)
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-14, equal_nan=True)
    assert np.array_equal(np.isnan(got), ~ok)


def test_group_mean_rows_signed_zero_is_one_group_and_single_member_is_zero():
    x = np.array([[1.0, 3.0, 5.0, 7.0]])
    g = np.array([[0.0, -0.0, 2.0, 3.0]])
    out = get_op("cs_neutralize").func(x, g)
    np.testing.assert_array_equal(out, [[-1.0, 1.0, 0.0, 0.0]])


def test_group_mean_is_causal_with_groups_changing_every_row():
    x, g = _data(T=40, n_groups=60, seed=3)
    for name in ("cs_neutralize", "cs_group_mean"):
        f = get_op(name).func
        full = f(x, g)
        for k in (1, 7, 39):
            np.testing.assert_array_equal(f(x[:k], g[:k]), full[:k])


@pytest.mark.parametrize("w", [2, 5, 12])
def test_ts_rank_matches_pandas_with_ties(w):
    rng = np.random.default_rng(w)
    x = rng.integers(0, 4, (60, 6)).astype(float)          # many ties in every window
    x[rng.random(x.shape) < 0.1] = np.nan
    got = get_op("ts_rank").func(x, w)
    ref = pd.DataFrame(x).apply(lambda s: s.dropna().rolling(w).rank(pct=True)
                                .reindex(s.index)).to_numpy()
    np.testing.assert_array_equal(got, ref)


def test_has_inf_and_nan_nonfinite_match_numpy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 7))
    assert not K.has_inf(a)
    a[3, 4] = np.nan
    assert not K.has_inf(a)
    a[10, 1] = -np.inf
    assert K.has_inf(a) and not K.has_inf(a[:, ::2].copy())
    assert K.has_inf(a[:, 1])                              # strided view: numpy path
    a[40, 6] = np.inf
    want = np.where(np.isfinite(a), a, np.nan)
    b = a.copy()
    assert K.nan_nonfinite_(b) is b
    np.testing.assert_array_equal(b, want)
    c = a[:, 1:5]                                           # non-contiguous: numpy path
    K.nan_nonfinite_(c)
    np.testing.assert_array_equal(c, want[:, 1:5])
    z = np.array(np.inf)                                    # 0-d
    assert K.has_inf(z) and np.isnan(K.nan_nonfinite_(z))
