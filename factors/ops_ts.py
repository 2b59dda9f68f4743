"""Time-series operators (``kind="ts"``): rolling statistics along axis 0, one stock at a time.

Conventions shared by every operator here (the "ts NaN policy" of :mod:`factors.registry`):

* ``x`` is a ``(T, N)`` panel (time on axis 0); a 1-D ``(T,)`` array is treated as one stock
  and a 1-D result is returned. Any numeric dtype is accepted; the result is a new ``float64``
  array of the input's shape and the input is never modified.
* A stock's *observations* are its finite entries (``NaN`` and ``+-inf`` are missing). The
  window covers the stock's last ``window`` observations (its own trading days, as in Qlib),
  so a suspension does not shorten the window.
* The output is NaN where the input is missing, during warm-up (the stock's first
  ``window - 1`` observations; ``window`` for the lag operators) and wherever the statistic is
  undefined or not finite.
* Causal: the value at row ``t`` only uses rows ``<= t``.
* ``window`` must be a Python or NumPy integer ``>= min_window`` of the operator, otherwise
  ``ValueError`` naming the operator and the window is raised.

Implementation: each operator is a declaration (signature + docstring) registered with a 1-D
rolling kernel ``k(v, w, o)`` (``k(a, b, w, o)`` for two inputs); :mod:`factors._ts_driver`
compiles the 2-D driver (compact each stock's observations, run the kernel, scatter back). The
small kernels below bind the mode arguments of the shared kernels of
:mod:`factors._kernels_ts`. Reference semantics, used as test oracles:
``s.dropna().rolling(d, min_periods=d).<stat>().reindex(s.index)`` per column.
"""
from __future__ import annotations

from numba import njit

from factors import _kernels_ts as KT
from factors.registry import register


@njit(cache=True, nogil=True)
def _delay(v, w, o):
    KT.k_lag(v, w, o, 0)


@njit(cache=True, nogil=True)
def _delta(v, w, o):
    KT.k_lag(v, w, o, 1)


@njit(cache=True, nogil=True)
def _pct_change(v, w, o):
    KT.k_lag(v, w, o, 2)


@njit(cache=True, nogil=True)
def _sum(v, w, o):
    KT.k_sum(v, w, o, False)


@njit(cache=True, nogil=True)
def _mean(v, w, o):
    KT.k_sum(v, w, o, True)


@njit(cache=True, nogil=True)
def _std(v, w, o):
    KT.k_var(v, w, o, False)


@njit(cache=True, nogil=True)
def _zscore(v, w, o):
    KT.k_var(v, w, o, True)


@njit(cache=True, nogil=True)
def _min(v, w, o):
    KT.k_extreme(v, w, o, False, False)


@njit(cache=True, nogil=True)
def _max(v, w, o):
    KT.k_extreme(v, w, o, True, False)


@njit(cache=True, nogil=True)
def _argmin(v, w, o):
    KT.k_extreme(v, w, o, False, True)


@njit(cache=True, nogil=True)
def _argmax(v, w, o):
    KT.k_extreme(v, w, o, True, True)


@register(kernel=_delay)
def ts_delay(x, window):
    """Value ``window`` observations ago (lag over the stock's own valid observations).

    ``x[t_d]`` where ``t_0 = t > t_1 > ...`` are the stock's rows with a finite value.

    Parameters
    ----------
    x : ndarray, shape (T, N)
    window : int
        Lag ``d`` in observations, ``>= 1``.

    Returns
    -------
    ndarray of float64, shape (T, N)

    Raises
    ------
    ValueError
        If ``window < 1`` or is not an integer, or ``x`` is not 1-D/2-D.

    Notes
    -----
    NaN policy: ts policy (module docstring); warm-up is the first ``d`` observations.
    Reference: pandas ``s.dropna().shift(d)``; WorldQuant 101 ``delay`` (Kakushadze 2016).
    """


@register(kernel=_delta)
def ts_delta(x, window):
    """Change over ``window`` observations: ``x - ts_delay(x, window)``.

    Parameters
    ----------
    x : ndarray, shape (T, N)
    window : int
        Lag ``d`` in observations, ``>= 1``.

    Returns
    -------
    ndarray of float64, shape (T, N)

    Raises
    ------
    ValueError
        If ``window < 1`` or is not an integer, or ``x`` is not 1-D/2-D.

    Notes
    -----
    NaN policy: ts policy (module docstring); warm-up is the first ``d`` observations.
    Reference: pandas ``s.dropna().diff(d)``; WorldQuant 101 ``delta`` (Kakushadze 2016).
    """


@register(kernel=_pct_change)
def ts_pct_change(x, window):
    """Relative change over ``window`` observations: ``x / ts_delay(x, window) - 1``.

    Parameters
    ----------
    x : ndarray, shape (T, N)
    window : int
        Lag ``d`` in observations, ``>= 1``.

    Returns
    -------
    ndarray of float64, shape (T, N)

    Raises
    ------
    ValueError
        If ``window < 1`` or is not an integer, or ``x`` is not 1-D/2-D.

    Notes
    -----
    NaN policy: ts policy (module docstring); warm-up is the first ``d`` observations; a zero
    denominator gives NaN. Reference: pandas ``s.dropna().pct_change(d)``.
    """


@register(kernel=_sum)
def ts_sum(x, window):
    """Rolling sum of the last ``window`` observations.

    Neumaier-compensated add/remove with exact recomputation once per window (no drift).

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
    NaN policy: ts policy (module docstring). Reference: pandas ``rolling(d).sum()``.
    """


@register(kernel=_mean)
def ts_mean(x, window):
    """Rolling mean of the last ``window`` observations.

    Neumaier-compensated add/remove with exact recomputation once per window (no drift).

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
    NaN policy: ts policy (module docstring). Reference: pandas ``rolling(d).mean()``.
    """


@register(min_window=2, kernel=_std)
def ts_std(x, window):
    """Rolling sample standard deviation (``ddof=1``) of the last ``window`` observations.

    Parameters
    ----------
    x : ndarray, shape (T, N)
    window : int
        Number of observations, ``>= 2``.

    Returns
    -------
    ndarray of float64, shape (T, N)
        Exactly 0 on windows of identical values.

    Raises
    ------
    ValueError
        If ``window < 2`` or is not an integer, or ``x`` is not 1-D/2-D.

    Notes
    -----
    NaN policy: ts policy (module docstring). Welford updates with exact recomputation, so no
    drift on long, large-valued series. Reference: pandas ``rolling(d).std()``.
    """


@register(min_window=2, kernel=_zscore)
def ts_zscore(x, window):
    """Time-series z-score ``(x - ts_mean(x, d)) / ts_std(x, d)`` (``ddof=1``).

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
    NaN policy: ts policy (module docstring); NaN where the window's std is zero.
    """


@register(min_window=3, kernel=KT.k_skew)
def ts_skew(x, window):
    """Rolling bias-corrected sample skewness ``sqrt(n(n-1))/(n-2) * m3 / m2**1.5``.

    ``m2``, ``m3`` are the window's central moments (divided by ``n = window``).

    Parameters
    ----------
    x : ndarray, shape (T, N)
    window : int
        Number of observations, ``>= 3``.

    Returns
    -------
    ndarray of float64, shape (T, N)

    Raises
    ------
    ValueError
        If ``window < 3`` or is not an integer, or ``x`` is not 1-D/2-D.

    Notes
    -----
    NaN policy: ts policy (module docstring); NaN on windows of identical values.
    Reference: pandas ``rolling(d).skew()`` (adjusted Fisher-Pearson coefficient).
    """


@register(kernel=_min)
def ts_min(x, window):
    """Rolling minimum of the last ``window`` observations.

    Monotonic deque, O(1) amortised per step.

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
    NaN policy: ts policy (module docstring). Reference: pandas ``rolling(d).min()``.
    """


@register(kernel=_max)
def ts_max(x, window):
    """Rolling maximum of the last ``window`` observations.

    Monotonic deque, O(1) amortised per step.

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
    NaN policy: ts policy (module docstring). Reference: pandas ``rolling(d).max()``.
    """


@register(min_window=2, kernel=_argmin)
def ts_argmin(x, window):
    """Observations since the window's minimum (0 = today; ties -> the most recent).

    Parameters
    ----------
    x : ndarray, shape (T, N)
    window : int
        Number of observations ``d``, ``>= 2``.

    Returns
    -------
    ndarray of float64, shape (T, N)
        Values in ``0 .. d-1``.

    Raises
    ------
    ValueError
        If ``window < 2`` or is not an integer, or ``x`` is not 1-D/2-D.

    Notes
    -----
    NaN policy: ts policy (module docstring). Reference: WorldQuant 101 ``ts_argmin``
    (Kakushadze 2016), counted backwards from today.
    """


@register(min_window=2, kernel=_argmax)
def ts_argmax(x, window):
    """Observations since the window's maximum (0 = today; ties -> the most recent).

    Parameters
    ----------
    x : ndarray, shape (T, N)
    window : int
        Number of observations ``d``, ``>= 2``.

    Returns
    -------
    ndarray of float64, shape (T, N)
        Values in ``0 .. d-1``.

    Raises
    ------
    ValueError
        If ``window < 2`` or is not an integer, or ``x`` is not 1-D/2-D.

    Notes
    -----
    NaN policy: ts policy (module docstring). Reference: WorldQuant 101 ``ts_argmax``
    (Kakushadze 2016), counted backwards from today.
    """


@register(kernel=KT.k_decay)
def ts_decay_linear(x, window):
    """Linearly decaying weighted mean: weights ``d, d-1, ..., 1`` from newest to oldest.

    ``sum_{k=0}^{d-1} (d - k) * x[t_k] / (d (d + 1) / 2)``, ``t_0 = t`` and ``t_k`` the stock's
    earlier valid rows.

    Parameters
    ----------
    x : ndarray, shape (T, N)
    window : int
        Number of observations ``d``, ``>= 1``.

    Returns
    -------
    ndarray of float64, shape (T, N)

    Raises
    ------
    ValueError
        If ``window < 1`` or is not an integer, or ``x`` is not 1-D/2-D.

    Notes
    -----
    NaN policy: ts policy (module docstring). Reference: WorldQuant 101 ``decay_linear``
    (Kakushadze 2016).
    """


@register(kernel=KT.k_ema)
def ts_ema(x, window):
    """Exponential moving average, ``alpha = 2 / (d + 1)``: ``y = (1-alpha) y_prev + alpha x``.

    Started at the stock's first observation (``y = x``) and updated on observations only.

    Parameters
    ----------
    x : ndarray, shape (T, N)
    window : int
        Span ``d``, ``>= 1``.

    Returns
    -------
    ndarray of float64, shape (T, N)

    Raises
    ------
    ValueError
        If ``window < 1`` or is not an integer, or ``x`` is not 1-D/2-D.

    Notes
    -----
    NaN policy: ts policy (module docstring); warm-up NaN for the first ``d - 1``
    observations. The value depends on all history since the stock's first observation.
    Reference: pandas ``s.dropna().ewm(span=d, adjust=False, min_periods=d).mean()``.
    """
