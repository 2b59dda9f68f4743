"""Fast per-day rank statistics for the evaluator (:mod:`backtest.evaluate`).

The evaluator computes many Spearman correlations of one factor against several label panels
(forward returns at several horizons) and against its own lagged copy, and genetic programming
calls it thousands of times against the same labels. Ranking both sides from scratch on every
call (``factors._kernels_cs.rank_corr_rows``) spends almost all its time in per-row ``argsort``.
This module splits the work instead:

1. :func:`factors.row_order.row_orders` sorts every row **once** (compact packed integer
   keys: ``np.sort``, or a radix sort on full-market rows), giving an exact ascending order
   of the finite values.
2. :func:`spearman_from_orders` then computes the per-row Spearman correlation of two panels
   over any subset (finite in both and inside a mask) in O(N) per row by walking the two
   precomputed orders, skipping names outside the subset and averaging the ranks of ties.

Label orders are cached on the evaluation context, so a GP fitness evaluation sorts only the
factor. The results equal ``rank_corr_rows`` (tested against it) up to floating-point rounding.

Conventions: panels are ``float64`` ``(R, N)`` with rows = days; non-finite means missing.
Ranks are 1-based average-tie ranks (pandas ``rank(method="average")``).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from factors.row_threads import split_rows


@njit(cache=True, nogil=True)
def _ranks_on_subset(x, order, n_order, keep, out):
    """Average 1-based ranks of ``x[j]`` over ``keep`` by walking ``order``; returns the count."""
    pos = 0
    k = 0
    while k < n_order:
        v = x[order[k]]
        e = k
        cnt = 0
        while e < n_order and x[order[e]] == v:
            if keep[order[e]]:
                cnt += 1
            e += 1
        if cnt > 0:
            r = pos + 0.5 * (cnt + 1)
            for q in range(k, e):
                j = order[q]
                if keep[j]:
                    out[j] = r
            pos += cnt
        k = e
    return pos


@njit(cache=True, nogil=True)
def _spearman_kernel(xa, oa, na, xb, ob, nb, mask, want_ranks, out, ranks, counts):
    """Fills ``out`` (NaN-initialised), ``ranks`` (NaN-initialised when ``want_ranks``) and
    ``counts`` for the rows given."""
    R, N = xa.shape
    keep = np.zeros(N, np.bool_)
    ra = np.empty(N)
    rb = np.empty(N)
    for r in range(R):
        n = 0
        for j in range(N):
            s = mask[r, j] and np.isfinite(xa[r, j]) and np.isfinite(xb[r, j])
            keep[j] = s
            if s:
                n += 1
        counts[r] = n
        if n == 0:
            continue
        _ranks_on_subset(xa[r], oa[r], na[r], keep, ra)
        if want_ranks:
            for j in range(N):
                if keep[j]:
                    ranks[r, j] = ra[j]
        if n < 3:
            continue
        _ranks_on_subset(xb[r], ob[r], nb[r], keep, rb)
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
            c = sab / np.sqrt(saa * sbb)
            out[r] = min(1.0, max(-1.0, c))


def spearman_from_orders(xa, oa, na, xb, ob, nb, mask, want_ranks: bool = False):
    """Per-row Spearman correlation of ``xa`` and ``xb`` from precomputed row orders.

    Parameters
    ----------
    xa, xb : ndarray of float64, shape (R, N)
        The two panels.
    oa, na, ob, nb : ndarray
        Their :func:`factors.row_order.row_orders` (orders ``(R, N)`` and counts ``(R,)``). Each order must
        contain at least every entry of the subset below (e.g. built on ``mask`` or unmasked).
    mask : ndarray of bool, shape (R, N)
        Names allowed per row. The subset is ``mask & isfinite(xa) & isfinite(xb)``.
    want_ranks : bool, default False
        Also return the average ranks of ``xa`` on the subset.

    Returns
    -------
    corr : ndarray of float64, shape (R,)
        Pearson correlation of the average-tie ranks over the subset, clipped to [-1, 1];
        NaN when the subset has fewer than 3 names or either side is constant on it.
    ranks : ndarray of float64, shape (R, N) (only when ``want_ranks``)
        1-based average ranks of ``xa`` within the subset, NaN outside it.
    counts : ndarray of int64, shape (R,) (only when ``want_ranks``)
        Subset size per row.
    """
    mask = np.ascontiguousarray(mask, dtype=np.bool_)
    R, N = xa.shape
    want_ranks = bool(want_ranks)
    corr, counts = np.full(R, np.nan), np.zeros(R, np.int64)
    ranks = np.full((R if want_ranks else 1, N), np.nan)

    def rows(lo: int, hi: int) -> None:        # rows are independent (factors.row_threads)
        _spearman_kernel(xa[lo:hi], oa[lo:hi], na[lo:hi], xb[lo:hi], ob[lo:hi], nb[lo:hi],
                         mask[lo:hi], want_ranks, corr[lo:hi],
                         ranks[lo:hi] if want_ranks else ranks, counts[lo:hi])
    split_rows(rows, R)
    if want_ranks:
        return corr, ranks, counts
    return corr


@njit(cache=True, nogil=True)
def _bucket_kernel(ranks, counts, y, q):
    R, N = ranks.shape
    means = np.full((R, q), np.nan)
    top = np.zeros((R, N), np.bool_)
    sums = np.zeros(q)
    cnt = np.zeros(q, np.int64)
    for r in range(R):
        n = counts[r]
        if n < q:
            continue
        sums[:] = 0.0
        cnt[:] = 0
        for j in range(N):
            rk = ranks[r, j]
            if np.isfinite(rk):
                r2 = np.int64(2.0 * rk + 0.5)          # twice the average rank (integer)
                b = ((r2 - 2) * q) // (2 * n)
                b = min(q - 1, max(0, b))
                sums[b] += y[r, j]
                cnt[b] += 1
                if b == q - 1:
                    top[r, j] = True
        for b in range(q):
            if cnt[b] > 0:
                means[r, b] = sums[b] / cnt[b]
    return means, top


def quantile_buckets(ranks: np.ndarray, counts: np.ndarray, y: np.ndarray,
                     quantiles: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-count factor buckets per row and their equal-weight mean label.

    Parameters
    ----------
    ranks : ndarray of float64, shape (R, N)
        1-based average-tie ranks of the factor among the row's ``counts[r]`` names (NaN
        outside), as returned by :func:`spearman_from_orders` with ``want_ranks=True``.
    counts : ndarray of int64, shape (R,)
        Names ranked per row.
    y : ndarray of float64, shape (R, N)
        Label (forward return); must be finite wherever ``ranks`` is.
    quantiles : int
        Number of buckets ``Q``.

    Returns
    -------
    means : ndarray of float64, shape (R, Q)
        Mean ``y`` per bucket, bucket 0 = lowest factor; NaN for an empty bucket and for every
        bucket of a row with fewer than ``Q`` names.
    top : ndarray of bool, shape (R, N)
        Membership of the top bucket (``Q - 1``).

    Notes
    -----
    Bucket ``b = floor((rank - 1) * Q / n)``: without ties the buckets hold ``n / Q`` names
    each (sizes differ by at most one). Tied names share their average rank and therefore a
    bucket, so heavy ties give unequal buckets; a constant factor puts every name in the middle
    bucket (the extreme buckets are empty and the long-short return is NaN).
    """
    return _bucket_kernel(ranks, np.asarray(counts, np.int64),
                          np.ascontiguousarray(y, dtype=np.float64), int(quantiles))


# ---------------------------------------------------------------- summary statistics

def finite_mean(x) -> float:
    """Mean of the finite values of ``x``; NaN (no warning) when there are none."""
    v = np.asarray(x, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


def newey_west_t(x, lags: int = 0) -> tuple[float, float, int]:
    """t-statistic of the mean of a daily series with a Newey-West (HAC) standard error.

    Over the ``n`` finite values ``x_t`` (NaN days are dropped and the rest treated as
    consecutive), with ``e_t = x_t - mean`` and ``L = lags``:

    ``gamma_j = (1/n) sum_{t > j} e_t e_{t-j}``,
    ``S = gamma_0 + 2 sum_{j=1}^{L} (1 - j / (L + 1)) gamma_j`` (Bartlett weights),
    ``se = sqrt(S * n / (n - 1) / n)``, ``t = mean / se``.

    The ``n / (n - 1)`` factor makes ``L = 0`` the classic ``mean / (std(ddof=1) / sqrt(n))``.
    With overlapping ``h``-day labels the daily IC series is autocorrelated up to lag
    ``h - 1``; the evaluator passes ``lags = h - 1``. Source: Newey & West (1987), "A simple,
    positive semi-definite, heteroskedasticity and autocorrelation consistent covariance
    matrix", Econometrica 55(3), 703-708.

    Returns
    -------
    t, se, n : float, float, int
        NaN ``t`` and ``se`` for ``n < 2`` or a non-positive long-run variance.
    """
    v = np.asarray(x, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n < 2:
        return math.nan, math.nan, n
    e = v - v.mean()
    s = float(e @ e) / n
    for j in range(1, min(int(lags), n - 1) + 1):
        s += 2.0 * (1.0 - j / (lags + 1.0)) * float(e[j:] @ e[:-j]) / n
    if not s > 0:
        return math.nan, math.nan, n
    se = math.sqrt(s / (n - 1))
    return float(v.mean()) / se, se, n


def series_moments(x, lags: int = 0) -> tuple[float, float, float, float, int]:
    """Summary of a daily IC series over its finite values.

    Returns
    -------
    mean, std, ir, t, n : float, float, float, float, int
        ``std`` with ddof=1 (NaN for ``n < 2``), ``ir = mean / std`` (NaN when ``std`` is 0
        or NaN), ``t`` the Newey-West t-statistic with ``lags`` lags (:func:`newey_west_t`;
        ``lags = 0`` gives ``ir * sqrt(n)``); all NaN and ``n = 0`` for an empty series.
    """
    v = np.asarray(x, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan, 0
    m = float(v.mean())
    s = float(v.std(ddof=1)) if n > 1 else math.nan
    ir = m / s if s > 0 else math.nan
    t = newey_west_t(v, lags)[0] if s > 0 else math.nan
    return m, s, ir, t, n


def long_short_stats(ls, h: int, annual_days: int = 252) -> tuple[float, float, float, float]:
    """Annualised statistics of a daily series of overlapping ``h``-day long-short returns.

    Parameters
    ----------
    ls : array_like of float, shape (D,)
        Daily top-minus-bottom ``h``-day returns (fractions); NaN = no spread that day.
    h : int
        Label horizon in trading days.
    annual_days : int, default 252

    Returns
    -------
    ann_return, sharpe, cum_return, max_drawdown : float
        ``mean / h * annual_days``; ``mean / std * sqrt(annual_days / h)`` (ddof=1);
        ``prod(1 + ls[::h]) - 1`` (non-overlapping every-``h``-th-day compounding, NaN days
        count as flat); the worst peak-to-trough of that curve, as a fraction <= 0. All NaN
        when the series has no finite value.
    """
    ls = np.asarray(ls, dtype=np.float64)
    m, s, _, _, n = series_moments(ls)
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan
    ann = m / h * annual_days
    sharpe = m / s * math.sqrt(annual_days / h) if s > 0 else math.nan
    step = np.nan_to_num(ls[::h], nan=0.0)
    wealth = np.concatenate(([1.0], np.cumprod(1.0 + step)))
    peak = np.maximum.accumulate(wealth)
    return ann, sharpe, float(wealth[-1] - 1.0), float((wealth / peak - 1.0).min())


def top_turnover(top: np.ndarray) -> float:
    """Mean daily share of the top bucket's names that were not in it the day before.

    Parameters
    ----------
    top : ndarray of bool, shape (D, N)
        Top-bucket membership on consecutive days.

    Returns
    -------
    float
        Mean over days ``d >= 1`` where both day ``d`` and ``d - 1`` have a non-empty top
        bucket of ``|top[d] \\ top[d-1]| / |top[d]|``; NaN when there is no such day.
    """
    if top.shape[0] < 2:
        return math.nan
    n_top = top.sum(axis=1)
    new = (top[1:] & ~top[:-1]).sum(axis=1)
    ok = (n_top[1:] > 0) & (n_top[:-1] > 0)
    return float((new[ok] / n_top[1:][ok]).mean()) if ok.any() else math.nan


def top_turnover_series(top: np.ndarray) -> np.ndarray:
    """Daily share of the top bucket's names that were not in it the day before.

    Parameters
    ----------
    top : ndarray of bool, shape (D, N)
        Top-bucket membership on consecutive days.

    Returns
    -------
    ndarray of float64, shape (D,)
        ``|top[d] \\ top[d-1]| / |top[d]|`` where both days have a non-empty top bucket, NaN
        elsewhere (always on day 0). Its finite mean is :func:`top_turnover`.
    """
    out = np.full(top.shape[0], np.nan)
    if top.shape[0] < 2:
        return out
    n_top = top.sum(axis=1)
    new = (top[1:] & ~top[:-1]).sum(axis=1)
    ok = (n_top[1:] > 0) & (n_top[:-1] > 0)
    out[1:][ok] = new[ok] / n_top[1:][ok]
    return out


def quantile_labels(ranks: np.ndarray, counts: np.ndarray, quantiles: int) -> np.ndarray:
    """Bucket of each name, 1..Q, as :func:`quantile_buckets` assigns them; 0 = none.

    Parameters
    ----------
    ranks, counts : ndarray
        As for :func:`quantile_buckets`.
    quantiles : int

    Returns
    -------
    ndarray of int64, shape (R, N)
        ``1 + floor((rank - 1) * Q / n)`` (clipped to 1..Q) where the rank is finite and the
        row has at least ``Q`` names; 0 elsewhere.
    """
    q = int(quantiles)
    n = np.asarray(counts, np.int64)[:, None]
    fin = np.isfinite(ranks) & (n >= q)
    r2 = np.floor(2.0 * np.where(fin, ranks, 1.0) + 0.5).astype(np.int64)
    b = np.clip(((r2 - 2) * q) // np.maximum(2 * n, 1), 0, q - 1) + 1
    return np.where(fin, b, 0)
