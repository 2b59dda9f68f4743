"""Elementwise operators (``kind="elementwise"``): arithmetic, comparisons and transforms.

Conventions shared by every operator here:

* Inputs are arrays of a common (broadcastable) shape, usually ``(T, N)`` panels; Python or
  NumPy scalars (formula literals) broadcast. The result is a new ``float64`` array of the
  broadcast shape; inputs are never modified.
* NaN policy: NaN in any input gives NaN (except ``where``, which only reads the chosen branch).
  ``+-inf`` never escapes: every non-finite result (division by zero, log of 0, overflow, an
  infinite input) is mapped to NaN, and the comparison operators treat an infinite input as
  missing.
* No warnings are emitted for invalid values; they become NaN silently.
"""
from __future__ import annotations

import numpy as np

from factors._kernels_cs import nan_nonfinite_
from factors.registry import register


def _f(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _finite(out) -> np.ndarray:
    """Return ``out`` as a float64 array with every non-finite entry replaced by NaN."""
    return nan_nonfinite_(np.array(out, dtype=np.float64, copy=None))


def _apply(ufunc, *args) -> np.ndarray:
    with np.errstate(all="ignore"):
        return _finite(ufunc(*(_f(a) for a in args)))


def _compare(ufunc, x, y) -> np.ndarray:
    x, y = _f(x), _f(y)
    return np.where(np.isfinite(x) & np.isfinite(y), ufunc(x, y), np.nan)


@register(infix="+")
def add(x, y):
    """Sum ``x + y``.

    Parameters
    ----------
    x, y : array_like, broadcastable (usually shape (T, N)), or scalars

    Returns
    -------
    ndarray of float64, broadcast shape

    Raises
    ------
    ValueError
        If the shapes do not broadcast.

    Notes
    -----
    NaN policy: NaN if either input is NaN; overflow to inf gives NaN.
    """
    return _apply(np.add, x, y)


@register(infix="-")
def sub(x, y):
    """Difference ``x - y``.

    Parameters
    ----------
    x, y : array_like, broadcastable (usually shape (T, N)), or scalars

    Returns
    -------
    ndarray of float64, broadcast shape

    Raises
    ------
    ValueError
        If the shapes do not broadcast.

    Notes
    -----
    NaN policy: NaN if either input is NaN; overflow to inf gives NaN.
    """
    return _apply(np.subtract, x, y)


@register(infix="*")
def mul(x, y):
    """Product ``x * y``.

    Parameters
    ----------
    x, y : array_like, broadcastable (usually shape (T, N)), or scalars

    Returns
    -------
    ndarray of float64, broadcast shape

    Raises
    ------
    ValueError
        If the shapes do not broadcast.

    Notes
    -----
    NaN policy: NaN if either input is NaN; overflow to inf gives NaN.
    """
    return _apply(np.multiply, x, y)


@register(infix="/")
def div(x, y):
    """Quotient ``x / y``; division by zero gives NaN (never inf).

    Parameters
    ----------
    x, y : array_like, broadcastable (usually shape (T, N)), or scalars

    Returns
    -------
    ndarray of float64, broadcast shape

    Raises
    ------
    ValueError
        If the shapes do not broadcast.

    Notes
    -----
    NaN policy: NaN if either input is NaN or ``y == 0``; overflow gives NaN.
    """
    return _apply(np.divide, x, y)


@register
def inv(x):
    """Reciprocal ``1 / x``; ``x == 0`` gives NaN.

    Parameters
    ----------
    x : array_like, usually shape (T, N)

    Returns
    -------
    ndarray of float64, shape of ``x``

    Notes
    -----
    NaN policy: NaN where ``x`` is NaN or 0 (or the result overflows).
    """
    return _apply(np.reciprocal, x)


@register
def neg(x):
    """Negation ``-x``.

    Parameters
    ----------
    x : array_like, usually shape (T, N)

    Returns
    -------
    ndarray of float64, shape of ``x``

    Notes
    -----
    NaN policy: NaN where ``x`` is NaN.
    """
    return _apply(np.negative, x)


@register(name="abs")
def abs_(x):
    """Absolute value ``|x|``.

    Parameters
    ----------
    x : array_like, usually shape (T, N)

    Returns
    -------
    ndarray of float64, shape of ``x``

    Notes
    -----
    NaN policy: NaN where ``x`` is NaN.
    """
    return _apply(np.abs, x)


@register
def sign(x):
    """Sign of ``x``: -1.0, 0.0 or 1.0.

    Parameters
    ----------
    x : array_like, usually shape (T, N)

    Returns
    -------
    ndarray of float64, shape of ``x``

    Notes
    -----
    NaN policy: NaN where ``x`` is NaN or infinite.
    """
    x = _f(x)
    return np.where(np.isfinite(x), np.sign(x), np.nan)


@register
def log(x):
    """Natural logarithm ``ln(x)``; ``x <= 0`` gives NaN.

    Parameters
    ----------
    x : array_like, usually shape (T, N)

    Returns
    -------
    ndarray of float64, shape of ``x``

    Notes
    -----
    NaN policy: NaN where ``x`` is NaN, ``<= 0`` or infinite.
    """
    return _apply(np.log, x)


@register
def sqrt(x):
    """Square root; ``x < 0`` gives NaN.

    Parameters
    ----------
    x : array_like, usually shape (T, N)

    Returns
    -------
    ndarray of float64, shape of ``x``

    Notes
    -----
    NaN policy: NaN where ``x`` is NaN, negative or infinite.
    """
    return _apply(np.sqrt, x)


@register(gp=False)
def power(x, y):
    """Power ``x ** y``; NaN where the result is not a finite real number.

    Parameters
    ----------
    x, y : array_like, broadcastable (usually shape (T, N)), or scalars

    Returns
    -------
    ndarray of float64, broadcast shape

    Raises
    ------
    ValueError
        If the shapes do not broadcast.

    Notes
    -----
    NaN policy: NaN if either input is NaN, for a negative base with a non-integer exponent,
    for ``0 ** negative`` and on overflow.
    """
    return _apply(np.power, x, y)


@register(gp=False)
def signed_power(x, y):
    """Signed power ``sign(x) * |x| ** y``.

    Parameters
    ----------
    x, y : array_like, broadcastable (usually shape (T, N)), or scalars
        Base and exponent (a formula literal such as ``2.0`` broadcasts).

    Returns
    -------
    ndarray of float64, broadcast shape
        Same sign as ``x``; ``0`` where ``x == 0`` and ``y > 0``.

    Raises
    ------
    ValueError
        If the shapes do not broadcast.

    Notes
    -----
    NaN policy: NaN if either input is NaN, for ``0 ** negative`` and on overflow. Reference:
    WorldQuant 101 ``SignedPower(x, a) = sign(x) * (abs(x) ^ a)`` (Kakushadze 2016,
    arXiv:1601.00991, appendix A).
    """
    x, y = _f(x), _f(y)
    with np.errstate(all="ignore"):
        return _finite(np.sign(x) * np.power(np.abs(x), y))


@register(name="max")
def max_(x, y):
    """Elementwise maximum of ``x`` and ``y`` (not a rolling or cross-sectional max).

    Parameters
    ----------
    x, y : array_like, broadcastable (usually shape (T, N)), or scalars

    Returns
    -------
    ndarray of float64, broadcast shape

    Raises
    ------
    ValueError
        If the shapes do not broadcast.

    Notes
    -----
    NaN policy: NaN if either input is NaN (``np.maximum``, not ``np.fmax``).
    """
    return _apply(np.maximum, x, y)


@register(name="min")
def min_(x, y):
    """Elementwise minimum of ``x`` and ``y`` (not a rolling or cross-sectional min).

    Parameters
    ----------
    x, y : array_like, broadcastable (usually shape (T, N)), or scalars

    Returns
    -------
    ndarray of float64, broadcast shape

    Raises
    ------
    ValueError
        If the shapes do not broadcast.

    Notes
    -----
    NaN policy: NaN if either input is NaN (``np.minimum``, not ``np.fmin``).
    """
    return _apply(np.minimum, x, y)


@register(gp=False)
def gt(x, y):
    """Indicator ``x > y`` as 1.0 / 0.0.

    Parameters
    ----------
    x, y : array_like, broadcastable (usually shape (T, N)), or scalars

    Returns
    -------
    ndarray of float64, broadcast shape

    Raises
    ------
    ValueError
        If the shapes do not broadcast.

    Notes
    -----
    NaN policy: NaN if either input is NaN or infinite.
    """
    return _compare(np.greater, x, y)


@register(gp=False)
def lt(x, y):
    """Indicator ``x < y`` as 1.0 / 0.0.

    Parameters
    ----------
    x, y : array_like, broadcastable (usually shape (T, N)), or scalars

    Returns
    -------
    ndarray of float64, broadcast shape

    Raises
    ------
    ValueError
        If the shapes do not broadcast.

    Notes
    -----
    NaN policy: NaN if either input is NaN or infinite.
    """
    return _compare(np.less, x, y)


@register(gp=False)
def where(cond, x, y):
    """Select ``x`` where ``cond > 0``, else ``y``.

    Parameters
    ----------
    cond, x, y : array_like, broadcastable (usually shape (T, N)), or scalars

    Returns
    -------
    ndarray of float64, broadcast shape

    Raises
    ------
    ValueError
        If the shapes do not broadcast.

    Notes
    -----
    NaN policy: NaN where ``cond`` is NaN or infinite; otherwise the chosen branch's value
    (NaN if that branch is NaN, whatever the other branch holds).
    """
    cond, x, y = _f(cond), _f(x), _f(y)
    out = np.where(cond > 0, x, y)
    return _finite(np.where(np.isfinite(cond), out, np.nan))
