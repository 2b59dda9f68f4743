"""Time-series order-statistic operators (``kind="ts"``): rolling median, MAD, quantiles, rank.

Same conventions as :mod:`factors.ops_ts` (the "ts NaN policy"): a window covers the stock's
last ``window`` finite observations, warm-up rows are NaN, causal, input never modified. The
kernels keep each stock's window as a sorted buffer (:mod:`factors._kernels_ts`, ``_k_order``).
"""
from __future__ import annotations

from factors import _kernels as K
from factors.ops_ts import _unary
from factors.registry import register


@register("ts_median", kind="ts", n_inputs=1, n_windows=1, min_window=1)
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
    return _unary("ts_median", x, window, K.MEDIAN)


@register("ts_mad", kind="ts", n_inputs=1, n_windows=1, min_window=2)
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
    return _unary("ts_mad", x, window, K.MAD)


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


@register("ts_qtlu", kind="ts", n_inputs=1, n_windows=1, min_window=1)
@_qtl_doc(K.Q_UPPER, "QTLU")
def ts_qtlu(x, window):
    return _unary("ts_qtlu", x, window, K.QTLU)


@register("ts_qtld", kind="ts", n_inputs=1, n_windows=1, min_window=1)
@_qtl_doc(K.Q_LOWER, "QTLD")
def ts_qtld(x, window):
    return _unary("ts_qtld", x, window, K.QTLD)


@register("ts_rank", kind="ts", n_inputs=1, n_windows=1, min_window=2)
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
    return _unary("ts_rank", x, window, K.RANK)
