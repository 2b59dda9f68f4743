"""RankIC and turnover of many factors against one label, in one pass each (GP fitness).

Genetic programming scores thousands of programs against the same label on the same rows.
:func:`backtest.metrics_ic.spearman_from_orders` called twice per program (RankIC against
the label, and the rank autocorrelation at lag 1 that gives turnover) walks four row orders
per day. :func:`ic_and_turnover` gives the same numbers bit for bit from one walk on most
days:

* the label's ranks on its whole subset are computed once per run (:func:`label_ranks`) and
  used whenever the factor covers the subset; when a few names lack a factor value the ranks
  on the rest are derived from them (:func:`_drop_ranks`, exact on half-integer ranks);
* a day's ranks of the factor are reused by the next day's autocorrelation whenever the two
  subsets are the same names (membership and missing values change rarely).

Conventions as :mod:`backtest.metrics_ic` (float64 ``(R, N)`` panels, rows = days,
non-finite = missing, 1-based average-tie ranks). Measured on the CSI300 GP workload
(2,166 train days x 580 names): the two calls 44-64 ms per program, this pass 17-40 ms.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from backtest.metrics_ic import _ranks_on_subset

__all__ = ["label_ranks", "ic_and_turnover"]


@njit(cache=True, nogil=True)
def _subset_ranks(y, oy, ny, mask, ranks):
    """Average ranks of each row of ``y`` over ``mask & isfinite(y)`` (NaN outside); counts."""
    R, N = y.shape
    counts = np.zeros(R, np.int64)
    keep = np.zeros(N, np.bool_)
    row = np.empty(N)
    for r in range(R):
        n = 0
        for j in range(N):
            s = mask[r, j] and np.isfinite(y[r, j])
            keep[j] = s
            n += s
        counts[r] = n
        if n == 0:
            continue
        _ranks_on_subset(y[r], oy[r], ny[r], keep, row)
        for j in range(N):
            if keep[j]:
                ranks[r, j] = row[j]
    return counts


def label_ranks(y: np.ndarray, oy: np.ndarray, ny: np.ndarray,
                mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average-tie ranks of a label on ``mask & isfinite(y)`` per row, for :func:`ic_and_turnover`.

    Parameters
    ----------
    y : ndarray of float64, shape (R, N)
    oy, ny : ndarray
        ``y``'s :func:`factors.row_order.row_orders` (containing at least the finite masked-in entries).
    mask : ndarray of bool, shape (R, N)

    Returns
    -------
    ranks : ndarray of float64, shape (R, N)
        1-based average ranks, NaN outside the row's subset.
    counts : ndarray of int64, shape (R,)
        Subset size per row.
    """
    y = np.ascontiguousarray(y, dtype=np.float64)
    ranks = np.full(y.shape, np.nan)
    counts = _subset_ranks(y, oy, ny, np.ascontiguousarray(mask, dtype=np.bool_), ranks)
    return ranks, counts


@njit(cache=True, nogil=True)
def _rank_corr(ra, rb, keep, n):
    """Pearson correlation of two rank vectors over ``keep`` (``n`` entries), clipped."""
    N = keep.shape[0]
    mid = 0.5 * (n + 1)
    sab = 0.0
    saa = 0.0
    sbb = 0.0
    for j in range(N):
        if keep[j]:
            da = ra[j] - mid
            db = rb[j] - mid
            sab += da * db
            saa += da * da
            sbb += db * db
    if saa > 0.0 and sbb > 0.0:
        return min(1.0, max(-1.0, sab / np.sqrt(saa * sbb)))
    return np.nan


#: At most this many label names missing from a row's IC subset: the label's ranks on the
#: subset are derived from its cached ranks (:func:`_drop_ranks`) instead of a walk.
_MAX_DROPS = 16


@njit(cache=True, nogil=True)
def _drop_ranks(ry, y, keep, drops, n_drops, out):
    """Average ranks on ``keep`` = a cached subset minus the names ``drops[:n_drops]``.

    ``rank_keep(j) = rank_full(j) - #{d: y_d < y_j} - #{d: y_d == y_j} / 2``: exact on the
    half-integer ranks, so bit for bit what a walk of the order gives.
    """
    N = keep.shape[0]
    for j in range(N):
        if keep[j]:
            v = y[j]
            less = 0
            eq = 0
            for i in range(n_drops):
                w = y[drops[i]]
                less += w < v
                eq += w == v
            out[j] = ry[j] - less - 0.5 * eq


@njit(cache=True, nogil=True)
def _ic_turnover_kernel(f, of, nf, y, oy, ny, e, ry, ly):
    R, N = f.shape
    ic = np.full(R, np.nan)
    auto = np.full(R, np.nan)
    k_ic = np.zeros(N, np.bool_)            # this row's IC subset, and f[r]'s ranks on it
    r_ic = np.empty(N)
    k_t = np.zeros(N, np.bool_)             # this row's turnover subset, f[r]'s ranks on it
    r_t = np.empty(N)
    p_ic = np.zeros(N, np.bool_)            # the previous row's two subsets and f[r-1]'s ranks
    q_ic = np.empty(N)
    p_t = np.zeros(N, np.bool_)
    q_t = np.empty(N)
    rb = np.empty(N)
    rp = np.empty(N)
    drops = np.empty(_MAX_DROPS, np.int64)
    n_p_ic = 0
    n_p_t = 0
    for r in range(R):
        fr = f[r]
        er = e[r]
        yr = y[r]
        n = 0
        nd = 0
        for j in range(N):
            ey = er[j] & np.isfinite(yr[j])
            s = ey & np.isfinite(fr[j])
            k_ic[j] = s
            n += s
            if ey and not s:
                if nd < _MAX_DROPS:
                    drops[nd] = j
                nd += 1
        if n > 0:
            _ranks_on_subset(fr, of[r], nf[r], k_ic, r_ic)
        if n >= 3:
            if nd == 0:                     # the label's whole subset: its ranks are cached
                ic[r] = _rank_corr(r_ic, ry[r], k_ic, n)
            else:
                if nd <= _MAX_DROPS:
                    _drop_ranks(ry[r], yr, k_ic, drops, nd, rb)
                else:
                    _ranks_on_subset(yr, oy[r], ny[r], k_ic, rb)
                ic[r] = _rank_corr(r_ic, rb, k_ic, n)
        m = 0
        if r >= 1:
            fp = f[r - 1]
            d_ic = 0
            d_p_ic = 0
            d_p_t = 0
            for j in range(N):
                s = er[j] & np.isfinite(fr[j]) & np.isfinite(fp[j])
                k_t[j] = s
                m += s
                d_ic += s != k_ic[j]
                d_p_ic += s != p_ic[j]
                d_p_t += s != p_t[j]
            if m > 0:
                if d_ic == 0:
                    r_t[:] = r_ic
                else:
                    _ranks_on_subset(fr, of[r], nf[r], k_t, r_t)
            if m >= 3:
                if d_p_t == 0 and n_p_t > 0:
                    auto[r] = _rank_corr(r_t, q_t, k_t, m)
                elif d_p_ic == 0 and n_p_ic > 0:
                    auto[r] = _rank_corr(r_t, q_ic, k_t, m)
                else:
                    _ranks_on_subset(fp, of[r - 1], nf[r - 1], k_t, rp)
                    auto[r] = _rank_corr(r_t, rp, k_t, m)
        p_ic, k_ic = k_ic, p_ic             # this row's subsets and ranks become "previous"
        q_ic, r_ic = r_ic, q_ic
        p_t, k_t = k_t, p_t
        q_t, r_t = r_t, q_t
        n_p_ic = n
        n_p_t = m
    return ic, auto


def ic_and_turnover(f, of, nf, y, oy, ny, e, ry, ly) -> tuple[np.ndarray, np.ndarray]:
    """Daily RankIC against a label and rank autocorrelation at lag 1, in one pass.

    The same numbers as ``spearman_from_orders(f, of, nf, y, oy, ny, e)`` and, for rows
    ``r >= 1``, ``spearman_from_orders(f[1:], of[1:], nf[1:], f[:-1], of[:-1], nf[:-1],
    e[1:])`` (bit for bit: the ranks are exact half-integers and every sum runs over the
    same names in the same order), at about a third of the cost: the label's ranks come from
    ``ry`` whenever the factor covers the label's whole subset, and a row's ranks of the
    factor are reused by the next row's autocorrelation whenever the two subsets are the
    same set of names (the common case: membership and missing values change rarely); when a
    few label names lack a factor value the label's ranks on the rest are derived from the
    cached ones (:func:`_drop_ranks`).

    Parameters
    ----------
    f : ndarray of float64, shape (R, N)
        Factor; ``of, nf`` its unmasked :func:`factors.row_order.row_orders`.
    y, oy, ny : ndarray
        Label and its row orders (containing every finite entry inside ``e``).
    e : ndarray of bool, shape (R, N)
        Eligible names per row.
    ry, ly : ndarray
        :func:`label_ranks` of ``y`` on ``e``.

    Returns
    -------
    ic : ndarray of float64, shape (R,)
        Spearman correlation of ``f`` and ``y`` over ``e & finite(f) & finite(y)``.
    auto : ndarray of float64, shape (R,)
        ``auto[r]``: Spearman correlation of ``f[r]`` and ``f[r - 1]`` over
        ``e[r] & finite(f[r]) & finite(f[r - 1])``; ``auto[0]`` is NaN. Both NaN for fewer
        than 3 names or a constant side, as :func:`spearman_from_orders`.
    """
    return _ic_turnover_kernel(f, of, nf, y, oy, ny, np.ascontiguousarray(e, dtype=np.bool_),
                               ry, ly)
