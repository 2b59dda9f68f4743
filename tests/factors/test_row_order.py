"""Exact row orders and ranks from packed-key sorts (factors.row_order)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numba import njit

from factors._kernels_cs import rank_pct_rows, rank_rows
from factors.row_order import row_orders, row_ranks
from factors.row_threads import row_threads


def _assert_exact_orders(x, m):
    """``row_orders(x, m)`` lists each row's kept entries once, ascending; returns it."""
    order, counts = row_orders(x, m)
    keep = np.isfinite(x) & (True if m is None else m)
    np.testing.assert_array_equal(counts, keep.sum(1))
    for r in range(x.shape[0]):
        o = order[r, :counts[r]]
        assert sorted(o.tolist()) == np.flatnonzero(keep[r]).tolist()
        assert (np.diff(x[r, o]) >= 0).all()
    return order, counts


def test_row_orders_are_exact_with_near_ties_and_signed_zero():
    rng = np.random.default_rng(6)
    R, N = 40, 300
    x = rng.standard_normal((R, N))
    x[:, :60] = 1.0 + rng.integers(0, 6, (R, 60)) * 2.0 ** -51     # differ in the last bits
    x[:, 60:80] = -1e-300 * rng.integers(0, 3, (R, 20))
    x[:, 80:90] = -0.0
    x[:, 90:100] = 0.0
    x[rng.random((R, N)) < 0.1] = np.nan
    x[0, 5] = np.inf
    mask = rng.random((R, N)) < 0.8
    for m in (None, mask):
        order, counts = _assert_exact_orders(x, m)
        order2, counts2, tied = row_orders(x, m, ties=True)
        np.testing.assert_array_equal(counts2, counts)
        for r in range(R):
            np.testing.assert_array_equal(order2[r, :counts[r]], order[r, :counts[r]])
            v = x[r, order[r, :counts[r]]]
            exp = np.zeros(x.shape[1], bool)
            exp[1:counts[r]] = v[1:] == v[:-1]          # -0.0 == 0.0 is a tie
            np.testing.assert_array_equal(tied[r], exp)


def test_row_orders_leave_exact_ties_in_key_order():
    x = np.array([[3.0, 1.0, 3.0, 1.0, 2.0, 3.0] * 5])                 # groups of 10 equal keys
    order, counts = row_orders(x)
    assert counts[0] == 30
    o = order[0]
    assert (np.diff(x[0, o]) >= 0).all()
    for v in (1.0, 2.0, 3.0):                                          # ties keep column order
        cols = o[x[0, o] == v]
        assert (np.diff(cols) > 0).all()


@njit(cache=False)
def _argsort_walk(xm, order, pct, out):
    """The previous ``cs_rank`` kernel: average ranks from ``np.argsort`` of the +inf-filled row."""
    T, N = xm.shape
    for t in range(T):
        m = 0
        for j in range(N):
            out[t, j] = np.nan
            m += np.isfinite(xm[t, j])
        row = xm[t]
        o = order[t]
        den = float(m) if pct and m > 0 else 1.0
        i = 0
        while i < m:
            j = i
            while j + 1 < m and row[o[j + 1]] == row[o[i]]:
                j += 1
            r = (0.5 * (i + j) + 1.0) / den
            for k in range(i, j + 1):
                out[t, o[k]] = r
            i = j + 1
    return out


def _argsort_ranks(x, mask, pct):
    ok = np.isfinite(x) & (True if mask is None else mask)
    xm = np.where(ok, x, np.inf)
    return _argsort_walk(xm, np.argsort(xm, axis=1), pct, np.empty(x.shape))


def _hard_panel(seed=1, R=50, N=3000):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(R, N))
    y[:, :500] = np.round(y[:, :500])                                   # heavy ties
    y[:, 500:600] = -0.0
    y[:, 600:700] = 0.0
    y[:, 700:800] = 1.0 + rng.integers(0, 5, (R, 100)) * 2.0 ** -52    # equal truncated keys
    y[:, 800:840] = rng.normal(size=(R, 40)) * 1e-300                  # subnormal-scale
    y[rng.random(y.shape) < 0.1] = np.nan
    y[0, 3], y[1, 4] = np.inf, -np.inf
    y[2] = np.nan                                                        # empty row
    y[3] = 5.0                                                           # constant row
    y[4, :] = np.nan
    y[4, 7] = 1.0                                                        # one entry
    y[5] = 1e308
    y[5, ::2] = -1e308
    return y, rng.random(y.shape) < 0.8


@pytest.mark.parametrize("pct", [True, False])
def test_row_ranks_equal_the_argsort_walk_bit_for_bit(pct):
    x, mask = _hard_panel()
    for m in (None, mask):
        np.testing.assert_array_equal(row_ranks(x, m, pct), _argsort_ranks(x, m, pct))
    got = rank_pct_rows(x, mask) if pct else rank_rows(x, mask)
    np.testing.assert_array_equal(got, _argsort_ranks(x, mask, pct))


def test_row_ranks_are_pandas_average_ranks():
    x, mask = _hard_panel(seed=2, R=20, N=900)
    x = np.where(np.isinf(x), np.nan, x)         # pandas ranks inf; row_ranks skips it
    exp = pd.DataFrame(np.where(mask, x, np.nan)).rank(axis=1, pct=True).to_numpy()
    np.testing.assert_allclose(row_ranks(x, mask, pct=True), exp, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(row_ranks(np.array([[-0.0, 0.0, 1.0]])), [[1.5, 1.5, 3.0]])


def test_row_ranks_threads_and_truncation_do_not_change_rows():
    x, mask = _hard_panel(seed=3, R=300, N=903)
    with row_threads(3):                      # first: no freed buffer of this shape to reuse
        par = row_ranks(x, mask, pct=True)
        o3, n3 = row_orders(x, mask)
    np.testing.assert_array_equal(par, _argsort_ranks(x, mask, True))
    one = row_ranks(x, mask, pct=True)
    np.testing.assert_array_equal(par, one)
    o1, n1 = row_orders(x, mask)
    assert np.array_equal(n1, n3)
    assert all(np.array_equal(o1[r, :n1[r]], o3[r, :n3[r]]) for r in range(len(n1)))
    np.testing.assert_array_equal(row_ranks(x[:120], mask[:120], pct=True), one[:120])


def test_mask_shape_errors_are_one_line():
    with pytest.raises(ValueError, match="mask shape"):
        rank_pct_rows(np.zeros((3, 4)), np.ones((3, 5), bool))
    for fn in (row_orders, row_ranks):
        with pytest.raises(ValueError, match="mask shape"):
            fn(np.zeros((3, 4)), np.ones((4, 3), bool))
        with pytest.raises(ValueError, match="2-D"):
            fn(np.zeros(4))


def test_key_compression_edge_rows_and_wide_panels():
    """Rows whose truncated keys collide in large groups (a cluster next to far outliers),
    values of both signs down to subnormals, and a panel too wide for int32 keys."""
    rng = np.random.default_rng(11)
    R, N = 6, 400
    x = rng.standard_normal((R, N))
    x[0] = 1e6 + rng.integers(0, 300, N) * 1e-9        # one big group of near-equal keys
    x[0, :2] = 0.0, 1e300
    x[1] = rng.standard_normal(N) * 10.0 ** rng.integers(-310, 300, N)  # every exponent
    x[2] = np.where(rng.random(N) < 0.5, -1, 1) * 2.2e-16 * rng.integers(0, 4, N)
    x[2, :3] = -0.1, 0.1, -0.0
    x[3] = -5e-324 * rng.integers(0, 3, N)               # subnormals and zeros
    x[4] = np.nan
    x[4, 7], x[4, 9] = -1.0, -1.0 + 2.0 ** -52
    x[5] = np.nextafter(1.0, 2.0) * rng.integers(1, 3, N) - rng.integers(0, 2, N) * 2.0 ** -50
    for pct in (False, True):
        np.testing.assert_array_equal(row_ranks(x, None, pct), _argsort_ranks(x, None, pct))
    wide = rng.standard_normal((3, 2 ** 16 + 5))         # 17 column bits: int64 keys
    wide[1, ::3] = np.round(wide[1, ::3])
    wide[2, :100] = np.nan
    mask = rng.random(wide.shape) < 0.6
    for m in (None, mask):
        np.testing.assert_array_equal(row_ranks(wide, m, True), _argsort_ranks(wide, m, True))
        order, counts = row_orders(wide, m)
        for r in range(3):
            assert (np.diff(wide[r, order[r, :counts[r]]]) >= 0).all()


def test_wide_rows_take_the_radix_sort_and_stay_exact():
    """Rows of >= 1,024 kept keys are radix-sorted: an integer-valued factor (0 next to the
    smallest non-zero value after truncation), zeros among tiny and huge magnitudes, and rows
    with one, two or no kept entries give exact orders and the argsort walk's ranks."""
    rng = np.random.default_rng(12)
    R, N = 12, 2500                                      # 12 column bits: uint32, radix
    x = rng.standard_normal((R, N)) * 10.0 ** rng.integers(-5, 5, (R, N))
    x[0] = rng.integers(0, 5, N)                         # 0..4: few distinct values
    x[1] = rng.integers(-2, 3, N) * 1e-12
    x[1, :3] = 1e300, -1e300, 5e-324
    x[2, rng.random(N) < 0.3] = 0.0
    x[3, rng.random(N) < 0.3] = -0.0
    x[4] = np.nan
    x[4, 10] = 2.0                                      # one kept entry
    x[5] = np.nan
    x[5, [3, 9]] = 1.0, -1.0
    x[6] = 1.0 + rng.integers(0, 3, N) * 2.0 ** -52     # last-bit differences only
    v = 10.0 ** rng.uniform(-3, 3, N // 2)              # pairs sharing a truncated key:
    x[8, 0::2], x[8, 1::2] = np.nextafter(v, np.inf), v  # the larger at the lower column,
    x[9, 0::2], x[9, 1::2] = v, v                       # exactly equal,
    x[10, 0::2], x[10, 1::2] = v, np.nextafter(v, np.inf)    # already in order
    mask = rng.random((R, N)) < 0.9
    mask[7] = False                                     # no kept entry
    for m in (None, mask):
        for pct in (False, True):
            np.testing.assert_array_equal(row_ranks(x, m, pct), _argsort_ranks(x, m, pct))
        order, counts = _assert_exact_orders(x, m)
        _, _, tied = row_orders(x, m, ties=True)
        for r in range(R):
            v = x[r, order[r, :counts[r]]]
            np.testing.assert_array_equal(tied[r, 1:counts[r]], v[1:] == v[:-1])
