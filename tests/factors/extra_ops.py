"""Test-only operators, written with the public API only (:func:`factors.registry.register`).

Loaded by ``test_add_operator.py`` inside :func:`factors.registry.scope`, so they never leak
into other tests. NaN policy: ``extra_clip`` propagates NaN; ``ts_extra_range`` follows the ts
policy of :mod:`factors.registry` (via its driver).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from factors.registry import register


@register
def extra_clip(x):
    """Clip to ``[-1, 1]`` (test-only operator).

    Parameters
    ----------
    x : array_like, usually shape (T, N)

    Returns
    -------
    ndarray of float64, shape of ``x``

    Notes
    -----
    NaN policy: NaN stays NaN.
    """
    return np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0)


@njit(cache=True)
def _k_range(v, w, o):
    """Rolling max - min of the last ``w`` values (naive O(n w), test-only)."""
    for i in range(v.shape[0]):
        if i < w - 1:
            o[i] = np.nan
            continue
        lo = v[i]
        hi = v[i]
        for k in range(i - w + 1, i):
            lo = min(lo, v[k])
            hi = max(hi, v[k])
        o[i] = hi - lo


@register(min_window=2, kernel=_k_range, gp_windows=(3, 7))
def ts_extra_range(x, window):
    """Rolling range ``max - min`` of the last ``window`` observations (test-only operator).

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
    NaN policy: ts policy. Reference: pandas ``rolling(d).max() - rolling(d).min()``.
    """
