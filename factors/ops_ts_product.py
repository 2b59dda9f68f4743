"""Rolling product (``kind="ts"``): WorldQuant Alpha101's ``product(x, d)``.

Same conventions as :mod:`factors.ops_ts` (the "ts NaN policy"): a window covers the stock's last
``window`` finite observations, warm-up rows are NaN, causal, input never modified. Like the
other operators added for Alpha101 (``signed_power``, the group operators) it is not offered to
genetic programming (``gp=False``), so GP's function set and seeded runs are unchanged.
"""
from __future__ import annotations

from numba import njit

from factors import _kernels_ts as KT
from factors.registry import register


@njit(cache=True, nogil=True)
def _product(v, w, o):
    """Rolling product, recomputed per window (exact with zeros and signs; O(n w))."""
    for i in range(v.shape[0]):
        if i < w - 1:
            o[i] = KT.NAN
            continue
        p = 1.0
        for k in range(i - w + 1, i + 1):
            p *= v[k]
        o[i] = p


@register(kernel=_product, gp=False)
def ts_product(x, window):
    """Rolling product of the window's observations: ``x_t * x_{t-1} * ... * x_{t-d+1}``.

    Parameters
    ----------
    x : ndarray, shape (T, N)
    window : int
        Number of observations ``d``, ``>= 1``.

    Returns
    -------
    ndarray of float64, shape (T, N)
        In the units of ``x`` to the power ``d``; NaN where the product overflows.

    Raises
    ------
    ValueError
        If ``window < 1`` or is not an integer, or ``x`` is not 1-D/2-D.

    Notes
    -----
    NaN policy: ts policy (module docstring); a non-finite product (overflow) is NaN. Each
    window is multiplied out afresh (no running quotient), so zeros and sign changes are exact.
    Reference: WorldQuant 101 ``product(x, d)`` = "time-series product over the past d days"
    (Kakushadze 2016, arXiv:1601.00991, appendix A); pandas ``rolling(d).apply(np.prod)``.
    """
