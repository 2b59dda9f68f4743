"""Time-series order-statistic operators (``kind="ts"``): rolling median, MAD, quantiles, rank.

Same conventions as :mod:`factors.ops_ts` (the "ts NaN policy"): a window covers the stock's
last ``window`` finite observations, warm-up rows are NaN, causal, input never modified. The
kernels keep each stock's window as a sorted buffer (:func:`factors._kernels_ts.k_order`).
"""
from __future__ import annotations

from numba import njit

from factors import _kernels_ts as KT
from factors.registry import register

#: Quantile levels of ``ts_qtlu`` / ``ts_qtld`` (Qlib Alpha158 QTLU/QTLD).
Q_UPPER, Q_LOWER = 0.8, 0.2


@njit(cache=True, nogil=True)
def _median(v, w, o):
    KT.k_order(v, w, o, False, -1.0)


@njit(cache=True, nogil=True)
def _mad(v, w, o):
    KT.k_order(v, w, o, True, -1.0)


@njit(cache=True, nogil=True)
def _qtlu(v, w, o):
    KT.k_order(v, w, o, False, Q_UPPER)


@njit(cache=True, nogil=True)
def _qtld(v, w, o):
    KT.k_order(v, w, o, False, Q_LOWER)


@register(kernel=_median)
def ts_median(x, window):
    """Rolling median (mean of the two middle values for an even window).

    Parameters
    ----------
    x : ndarray, shape (T, N)
    window : int
        Number of observations, ``>= 1``.

    Returns
    -------
    ndarray of float64, shape (T, N)

    Raises
    ------
    ValueError
        If ``window < 1`` or is not an integer, or ``x`` is not 1-D/2-D.

    Notes
    -----
    NaN policy: ts policy (module docstring). Reference: pandas ``rolling(d).median()``.
    """


@register(min_window=2, kernel=_mad)
def ts_mad(x, window):
    """Rolling median absolute deviation ``median(|x_k - median(x_k)|)``, unscaled.

    Parameters
    ----------
    x : ndarray, shape (T, N)
    window : int
        Number of observations, ``>= 2``.

    Returns
    -------
    ndarray of float64, shape (T, N)

    Raises
    ------
    ValueError
        If ``window < 2`` or is not an integer, or ``x`` is not 1-D/2-D.

    Notes
    -----
    NaN policy: ts policy (module docstring). No 1.4826 normal-consistency factor. Reference:
    ``rolling(d).apply(lambda a: np.median(np.abs(a - np.median(a))))``.
    """


_QTL_DOC = """Rolling {pct}% quantile of the window, linear interpolation between order statistics.

    ``a[lo] + (a[lo + 1] - a[lo]) * (i - lo)`` with ``a`` the window's ``d`` observations sorted
    ascending, ``i = {q} * (d - 1)`` and ``lo = floor(i)``.

    Parameters
    ----------
    x : ndarray, shape (T, N)
    window : int
        Number of observations ``d``, ``>= 1``.

    Returns
    -------
    ndarray of float64, shape (T, N)
        In the units of ``x``.

    Raises
    ------
    ValueError
        If ``window < 1`` or is not an integer, or ``x`` is not 1-D/2-D.

    Notes
    -----
    NaN policy: ts policy (module docstring). Reference: pandas ``rolling(d).quantile({q})``
    (= ``numpy.quantile`` default ``method="linear"``); source: Qlib Alpha158 ``{name}``
    (``Quantile($close, d, {q})/$close``).
    """


def _qtl_doc(q: float, name: str):
    """Give a quantile operator its docstring (before ``@register`` reads it)."""
    def deco(func):
        func.__doc__ = _QTL_DOC.format(pct=round(100 * q), q=q, name=name)
        return func
    return deco


@register(kernel=_qtlu)
@_qtl_doc(Q_UPPER, "QTLU")
def ts_qtlu(x, window):  # docstring from _qtl_doc
    ...


@register(kernel=_qtld)
@_qtl_doc(Q_LOWER, "QTLD")
def ts_qtld(x, window):  # docstring from _qtl_doc
    ...


@register(min_window=2, kernel=KT.k_rank)
def ts_rank(x, window):
    """Percentile rank of today's value within its window, in ``(0, 1]``, average ties.

    ``(#{x_k < x_t} + (#{x_k == x_t} + 1) / 2) / d`` over the window's ``d`` observations.

    Parameters
    ----------
    x : ndarray, shape (T, N)
    window : int
        Number of observations ``d``, ``>= 2``.

    Returns
    -------
    ndarray of float64, shape (T, N)

    Raises
    ------
    ValueError
        If ``window < 2`` or is not an integer, or ``x`` is not 1-D/2-D.

    Notes
    -----
    NaN policy: ts policy (module docstring). Reference: pandas
    ``rolling(d).rank(pct=True, method="average")``; WorldQuant 101 ``ts_rank``.
    """
