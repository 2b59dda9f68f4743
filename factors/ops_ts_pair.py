"""Two-input time-series operators (``kind="ts"``): rolling covariance and correlation.

Same conventions as :mod:`factors.ops_ts` (the "ts NaN policy"), with one difference: an
observation is a row where *both* inputs are finite (joint validity), so the window covers the
stock's last ``window`` joint observations. The kernel (:func:`factors._kernels_ts.k_cov`) runs
on the jointly compacted series ``k(a, b, w, o)``.
"""
from __future__ import annotations

from numba import njit

from factors import _kernels_ts as KT
from factors.registry import register


@njit(cache=True, nogil=True)
def _cov(a, b, w, o):
    KT.k_cov(a, b, w, o, False)


@njit(cache=True, nogil=True)
def _corr(a, b, w, o):
    KT.k_cov(a, b, w, o, True)


@register(min_window=2, kernel=_cov)
def ts_cov(x, y, window):
    """Rolling sample covariance (``ddof=1``) of ``x`` and ``y`` over joint observations.

    Parameters
    ----------
    x, y : ndarray, shape (T, N)
        Panels of equal shape.
    window : int
        Number of joint observations, ``>= 2``.

    Returns
    -------
    ndarray of float64, shape (T, N)

    Raises
    ------
    ValueError
        If ``window < 2`` or is not an integer, or the shapes differ or are not 1-D/2-D.

    Notes
    -----
    NaN policy: an observation is a row where both are finite; NaN where either is missing,
    warm-up as the ts policy. Reference: pandas ``rolling(d).cov(other)`` on the jointly
    non-NaN rows.
    """


@register(min_window=2, kernel=_corr)
def ts_corr(x, y, window):
    """Rolling Pearson correlation of ``x`` and ``y`` over joint observations.

    Parameters
    ----------
    x, y : ndarray, shape (T, N)
        Panels of equal shape.
    window : int
        Number of joint observations, ``>= 2``.

    Returns
    -------
    ndarray of float64, shape (T, N)
        Values in ``[-1, 1]``.

    Raises
    ------
    ValueError
        If ``window < 2`` or is not an integer, or the shapes differ or are not 1-D/2-D.

    Notes
    -----
    NaN policy: an observation is a row where both are finite; NaN where either is missing,
    during warm-up, and where either side's std over the window is zero. Reference: pandas
    ``rolling(d).corr(other)`` on the jointly non-NaN rows; WorldQuant 101 ``correlation``.
    """
