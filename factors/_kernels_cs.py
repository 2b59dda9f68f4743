"""Cross-sectional row kernels (numba) and the panel helpers of the evaluator and backtests.

Public helpers: :func:`as_panel`, :func:`valid_entries`, :func:`rank_pct_rows`,
:func:`rank_corr_rows`, :func:`pearson_rows`. The time-series kernels are in
:mod:`factors._kernels_ts` and their drivers in :mod:`factors._ts_driver`.

NaN policy: an entry is eligible when it is finite (and inside the mask, when one is given);
ineligible entries are ignored by the row statistics and NaN in panel outputs. A row whose
statistic is undefined (too few eligible entries, zero dispersion) is NaN.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from factors.row_order import row_ranks

NAN = np.nan


# ---------------------------------------------------------------- non-finite entries

@njit(cache=True, nogil=True)
def _nan_nonfinite_flat(a):
    """Replace every non-finite entry of the 1-D ``a`` by NaN, in place (one pass)."""
    for i in range(a.shape[0]):
        if not np.isfinite(a[i]):
            a[i] = NAN


@njit(cache=True, nogil=True)
def _has_inf_flat(a):
    n = 0
    for i in range(a.shape[0]):  # a count, not an early exit: the loop vectorises
        n += np.isinf(a[i])
    return n > 0


def nan_nonfinite_(a: np.ndarray) -> np.ndarray:
    """Replace ``+-inf`` (and NaN) entries of the float64 array ``a`` by NaN, in place.

    One compiled pass for a writeable C- or Fortran-contiguous array (no temporary masks),
    else :func:`numpy.copyto`. Returns ``a``.
    """
    if a.dtype == np.float64 and a.flags.writeable and a.ndim and (
            a.flags.c_contiguous or a.flags.f_contiguous):
        _nan_nonfinite_flat(a.reshape(-1, order="C" if a.flags.c_contiguous else "F"))
    else:
        np.copyto(a, np.nan, where=~np.isfinite(a))
    return a


def has_inf(a: np.ndarray) -> bool:
    """True when the float64 array ``a`` holds ``+inf`` or ``-inf`` (one compiled pass)."""
    if a.dtype == np.float64 and a.ndim and (a.flags.c_contiguous or a.flags.f_contiguous):
        return bool(_has_inf_flat(a.reshape(-1, order="C" if a.flags.c_contiguous else "F")))
    return bool(np.isinf(a).any())


# ---------------------------------------------------------------- cross-sectional row kernels

@njit(cache=True, nogil=True)
def _pearson_rows(a, b):
    """Row-wise two-pass Pearson correlation over entries finite in both (NaN rules above)."""
    T, N = a.shape
    out = np.empty(T)
    va = np.empty(N)
    vb = np.empty(N)
    for t in range(T):
        out[t] = NAN
        m = 0
        same_a = True
        same_b = True
        for j in range(N):
            p = a[t, j]
            q = b[t, j]
            if np.isfinite(p) and np.isfinite(q):
                va[m] = p
                vb[m] = q
                same_a = same_a and p == va[0]
                same_b = same_b and q == vb[0]
                m += 1
        if m < 3 or same_a or same_b:
            continue
        ma = 0.0
        mb = 0.0
        for k in range(m):
            ma += va[k]
            mb += vb[k]
        ma /= m
        mb /= m
        sab = 0.0
        saa = 0.0
        sbb = 0.0
        for k in range(m):
            da = va[k] - ma
            db = vb[k] - mb
            sab += da * db
            saa += da * da
            sbb += db * db
        if saa > 0.0 and sbb > 0.0:
            out[t] = min(1.0, max(-1.0, sab / np.sqrt(saa * sbb)))
    return out


# ---------------------------------------------------------------- Python-level helpers

def as_panel(x, name: str = "x") -> np.ndarray:
    """Return ``x`` as a C-contiguous float64 2-D array (no copy when it already is one).

    Raises
    ------
    ValueError
        If ``x`` is not two-dimensional.
    """
    a = np.ascontiguousarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D (T, N) panel, got shape {a.shape}")
    return a


def valid_entries(x: np.ndarray, mask, name: str = "mask") -> np.ndarray:
    """Boolean ``(T, N)`` array: ``x`` finite and (when given) ``mask`` True.

    Raises
    ------
    ValueError
        If ``mask`` is given and its shape differs from ``x.shape``.
    """
    ok = np.isfinite(x)
    m = _checked_mask(x, mask, name)
    if m is not None:
        ok &= m
    return ok


def _checked_mask(x: np.ndarray, mask, name: str = "mask") -> np.ndarray | None:
    """``mask`` as a bool array of ``x``'s shape (``None`` stays ``None``).

    Raises
    ------
    ValueError
        If ``mask`` has another shape than ``x``.
    """
    if mask is None:
        return None
    m = np.asarray(mask, dtype=np.bool_)
    if m.shape != x.shape:
        raise ValueError(f"{name}: mask shape {m.shape} does not match panel shape {x.shape}")
    return m


def rank_pct_rows(x, mask=None) -> np.ndarray:
    """Percentile rank of each row's entries, average ties (pandas ``rank(axis=1, pct=True)``).

    Parameters
    ----------
    x : array_like, shape (T, N)
        Values; non-finite entries are missing.
    mask : array_like of bool, shape (T, N), optional
        Universe mask; ``None`` means every entry is eligible.

    Returns
    -------
    ndarray of float64, shape (T, N)
        ``rank / m`` in ``(0, 1]`` where ``m`` is the number of eligible entries in the row
        (finite and in ``mask``); NaN for ineligible entries.

    Raises
    ------
    ValueError
        If ``x`` is not 2-D or ``mask`` has another shape.
    """
    a = as_panel(x)
    return row_ranks(a, _checked_mask(a, mask), pct=True)


def rank_rows(x, mask=None) -> np.ndarray:
    """1-based rank of each row's entries, average ties (``scipy.stats.rankdata(x, axis=1,
    nan_policy="omit")`` on the eligible entries, bit for bit: average ranks are exact halves).

    Parameters and errors as :func:`rank_pct_rows`; returns float64 ``(T, N)``, NaN for
    ineligible entries.
    """
    a = as_panel(x)
    return row_ranks(a, _checked_mask(a, mask))


def _pair(a, b, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pa = as_panel(a, "a")
    pb = as_panel(b, "b")
    if pa.shape != pb.shape:
        raise ValueError(f"a and b shapes differ: {pa.shape} vs {pb.shape}")
    ok = valid_entries(pa, mask)
    ok &= np.isfinite(pb)
    return pa, pb, ok


def rank_corr_rows(a, b, mask=None) -> np.ndarray:
    """Per-row Spearman rank correlation (e.g. the daily RankIC of a factor against returns).

    Parameters
    ----------
    a, b : array_like, shape (T, N)
        Panels to correlate row by row.
    mask : array_like of bool, shape (T, N), optional
        Universe mask; ``None`` means every entry is eligible.

    Returns
    -------
    ndarray of float64, shape (T,)
        Pearson correlation of the average-tie ranks of ``a`` and ``b``, both ranked among the
        entries that are finite in both and in ``mask``. NaN when fewer than 3 such entries or
        when either side is constant on them (zero variance).

    Raises
    ------
    ValueError
        If the panels are not 2-D, their shapes differ or ``mask`` has another shape.
    """
    pa, pb, ok = _pair(a, b, mask)
    return _pearson_rows(row_ranks(pa, ok), row_ranks(pb, ok))


def pearson_rows(a, b, mask=None) -> np.ndarray:
    """Per-row Pearson correlation (e.g. the daily IC, or factor-to-factor correlation).

    Parameters
    ----------
    a, b : array_like, shape (T, N)
        Panels to correlate row by row.
    mask : array_like of bool, shape (T, N), optional
        Universe mask; ``None`` means every entry is eligible.

    Returns
    -------
    ndarray of float64, shape (T,)
        Two-pass Pearson correlation over the entries finite in both and in ``mask``, clipped
        to [-1, 1]. NaN when fewer than 3 such entries or when either side is constant.

    Raises
    ------
    ValueError
        If the panels are not 2-D, their shapes differ or ``mask`` has another shape.
    """
    pa, pb, ok = _pair(a, b, mask)
    if mask is None:
        return _pearson_rows(pa, pb)
    return _pearson_rows(np.where(ok, pa, np.nan), pb)
