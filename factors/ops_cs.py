"""Cross-sectional operators (``kind="cs"``): statistics across stocks, one date (row) at a time.

Conventions shared by every operator here:

* Signature ``func(x, mask=None)``: ``x`` is a ``(T, N)`` panel, ``mask`` a boolean ``(T, N)``
  universe mask or ``None`` (every stock eligible). The result is a new ``float64`` ``(T, N)``
  array; inputs are never modified.
* NaN policy: an entry is *eligible* when it is finite and inside ``mask``. Ineligible entries
  are NaN in the output and ignored by the row statistics; a row without eligible entries (or
  whose statistic is undefined, e.g. zero dispersion) is all NaN.
* Causal by construction: row ``t`` of the output only reads row ``t``.

Implementation: numba row loops (:mod:`factors._kernels_cs`); ranks walk the exact row orders
of :func:`factors.row_order.row_orders`.
Reference semantics, used as test oracles: ``df.where(mask)`` followed by the pandas row
statistic (``rank(axis=1, pct=True)``, ``mean(axis=1)``, ``std(axis=1, ddof=0)``...).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from factors import _kernels_cs as K
from factors.registry import register

_DEMEAN, _ZSCORE, _SCALE = 0, 1, 2


@njit(cache=True, nogil=True)
def _row_stats(x, ok, mode, out):
    """Per row over eligible entries: demean (0), z-score with ddof=0 (1), x / sum|x| (2),
    into ``out`` (NaN-filled by the caller)."""
    T, N = x.shape
    for t in range(T):
        m = 0
        s = 0.0
        sa = 0.0
        lo = np.inf
        hi = -np.inf
        for j in range(N):
            if ok[t, j]:
                v = x[t, j]
                m += 1
                s += v
                sa += abs(v)
                lo = min(lo, v)
                hi = max(hi, v)
        if m == 0:
            continue
        if mode == _SCALE:
            if sa > 0.0:
                for j in range(N):
                    if ok[t, j]:
                        out[t, j] = x[t, j] / sa
            continue
        mean = s / m
        if mode == _DEMEAN:
            for j in range(N):
                if ok[t, j]:
                    out[t, j] = x[t, j] - mean
            continue
        if hi == lo:  # zero dispersion: z-score undefined
            continue
        ss = 0.0
        for j in range(N):
            if ok[t, j]:
                d = x[t, j] - mean
                ss += d * d
        sd = np.sqrt(ss / m)
        if not sd > 0.0:    # dispersion underflows to 0 (e.g. 1e-300 scale): undefined
            continue
        for j in range(N):
            if ok[t, j]:
                r = (x[t, j] - mean) / sd
                out[t, j] = r if np.isfinite(r) else np.nan
    return out


def _stats(name: str, x, mask, mode: int) -> np.ndarray:
    a = K.as_panel(x, name)
    out = np.full(a.shape, np.nan)           # NumPy-allocated (factors._ts_driver)
    _row_stats(a, K.valid_entries(a, mask, f"{name} mask"), mode, out)
    np.copyto(out, np.nan, where=~np.isfinite(out))  # e.g. sum|x| overflowing
    return out


@register
def cs_rank(x, mask=None):
    """Cross-sectional percentile rank in ``(0, 1]``, average ties: ``rank / m`` per date.

    Parameters
    ----------
    x : ndarray, shape (T, N)
    mask : ndarray of bool, shape (T, N), optional
        Universe mask; ``None`` means all stocks.

    Returns
    -------
    ndarray of float64, shape (T, N)
        ``m`` is the number of eligible stocks on the date.

    Raises
    ------
    ValueError
        If ``x`` is not 2-D or ``mask`` has another shape.

    Notes
    -----
    NaN policy: cs policy (module docstring). Reference: pandas
    ``df.where(mask).rank(axis=1, pct=True, method="average")``; WorldQuant 101 ``rank``.
    """
    return K.rank_pct_rows(K.as_panel(x, "cs_rank"), mask)


@register
def cs_zscore(x, mask=None):
    """Cross-sectional z-score ``(x - mean) / std`` per date, population std (``ddof=0``).

    Parameters
    ----------
    x : ndarray, shape (T, N)
    mask : ndarray of bool, shape (T, N), optional
        Universe mask; ``None`` means all stocks.

    Returns
    -------
    ndarray of float64, shape (T, N)

    Raises
    ------
    ValueError
        If ``x`` is not 2-D or ``mask`` has another shape.

    Notes
    -----
    NaN policy: cs policy (module docstring); a date whose eligible values are all equal
    (zero std, including a single eligible stock) is all NaN.
    """
    return _stats("cs_zscore", x, mask, _ZSCORE)


@register
def cs_demean(x, mask=None):
    """Cross-sectional demeaning ``x - mean`` per date (mean over eligible stocks).

    Parameters
    ----------
    x : ndarray, shape (T, N)
    mask : ndarray of bool, shape (T, N), optional
        Universe mask; ``None`` means all stocks.

    Returns
    -------
    ndarray of float64, shape (T, N)

    Raises
    ------
    ValueError
        If ``x`` is not 2-D or ``mask`` has another shape.

    Notes
    -----
    NaN policy: cs policy (module docstring).
    """
    return _stats("cs_demean", x, mask, _DEMEAN)


@register
def cs_scale(x, mask=None):
    """Cross-sectional scaling ``x / sum(|x|)`` per date, so that ``sum(|x|) = 1``.

    Parameters
    ----------
    x : ndarray, shape (T, N)
    mask : ndarray of bool, shape (T, N), optional
        Universe mask; ``None`` means all stocks.

    Returns
    -------
    ndarray of float64, shape (T, N)

    Raises
    ------
    ValueError
        If ``x`` is not 2-D or ``mask`` has another shape.

    Notes
    -----
    NaN policy: cs policy (module docstring); a date whose eligible values are all zero is all
    NaN. Reference: WorldQuant 101 ``scale(x, a=1)`` (Kakushadze 2016).
    """
    return _stats("cs_scale", x, mask, _SCALE)
