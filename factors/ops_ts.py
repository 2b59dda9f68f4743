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

Implementation: numba kernels in :mod:`factors._kernels` (compact each stock's observations,
run a numerically stable rolling kernel, scatter back). Reference semantics, used as test
oracles: ``s.dropna().rolling(d, min_periods=d).<stat>().reindex(s.index)`` per column.
"""
from __future__ import annotations

import numpy as np

from factors import _kernels as K
from factors.registry import REGISTRY, register


def _window(name: str, window) -> int:
    """Validate ``window`` against the operator's ``min_window``; return it as ``int``."""
    if isinstance(window, (bool, np.bool_)) or not isinstance(window, (int, np.integer)):
        raise ValueError(f"{name}: window must be an integer, got {window!r}")
    lo = REGISTRY[name].min_window
    if window < lo:
        raise ValueError(f"{name}: window {window} is below the minimum window {lo}")
    return int(window)


def _panel(name: str, x) -> tuple[np.ndarray, bool]:
    a = np.ascontiguousarray(x, dtype=np.float64)
    if a.ndim == 1:
        return a.reshape(-1, 1), True
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a (T, N) panel or a (T,) series, got shape {a.shape}")
    return a, False


def _unary(name: str, x, window, code: int) -> np.ndarray:
    w = _window(name, window)
    a, squeeze = _panel(name, x)
    out = K.ts_unary(a, w, code)
    return out[:, 0] if squeeze else out


def _binary(name: str, x, y, window, code: int) -> np.ndarray:
    w = _window(name, window)
    a, squeeze = _panel(name, x)
    b, _ = _panel(name, y)
    if a.shape != b.shape:
        raise ValueError(f"{name}: x and y shapes differ: {np.shape(x)} vs {np.shape(y)}")
    out = K.ts_binary(a, b, w, code)
    return out[:, 0] if squeeze else out


@register("ts_delay", kind="ts", n_inputs=1, n_windows=1, min_window=1)
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
    return _unary("ts_delay", x, window, K.DELAY)


@register("ts_delta", kind="ts", n_inputs=1, n_windows=1, min_window=1)
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
    return _unary("ts_delta", x, window, K.DELTA)


@register("ts_pct_change", kind="ts", n_inputs=1, n_windows=1, min_window=1)
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
    return _unary("ts_pct_change", x, window, K.PCT_CHANGE)


@register("ts_sum", kind="ts", n_inputs=1, n_windows=1, min_window=1)
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
    return _unary("ts_sum", x, window, K.SUM)


@register("ts_mean", kind="ts", n_inputs=1, n_windows=1, min_window=1)
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
    return _unary("ts_mean", x, window, K.MEAN)


@register("ts_std", kind="ts", n_inputs=1, n_windows=1, min_window=2)
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
    return _unary("ts_std", x, window, K.STD)


@register("ts_zscore", kind="ts", n_inputs=1, n_windows=1, min_window=2)
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
    return _unary("ts_zscore", x, window, K.ZSCORE)


@register("ts_skew", kind="ts", n_inputs=1, n_windows=1, min_window=3)
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
    return _unary("ts_skew", x, window, K.SKEW)


@register("ts_min", kind="ts", n_inputs=1, n_windows=1, min_window=1)
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
    return _unary("ts_min", x, window, K.MIN)


@register("ts_max", kind="ts", n_inputs=1, n_windows=1, min_window=1)
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
    return _unary("ts_max", x, window, K.MAX)


@register("ts_argmin", kind="ts", n_inputs=1, n_windows=1, min_window=2)
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
    return _unary("ts_argmin", x, window, K.ARGMIN)


@register("ts_argmax", kind="ts", n_inputs=1, n_windows=1, min_window=2)
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
    return _unary("ts_argmax", x, window, K.ARGMAX)


@register("ts_decay_linear", kind="ts", n_inputs=1, n_windows=1, min_window=1)
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
    return _unary("ts_decay_linear", x, window, K.DECAY_LINEAR)


@register("ts_ema", kind="ts", n_inputs=1, n_windows=1, min_window=1)
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
    return _unary("ts_ema", x, window, K.EMA)


@register("ts_cov", kind="ts", n_inputs=2, n_windows=1, min_window=2)
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
    return _binary("ts_cov", x, y, window, K.COV)


@register("ts_corr", kind="ts", n_inputs=2, n_windows=1, min_window=2)
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
    return _binary("ts_corr", x, y, window, K.CORR)
