"""Group-wise cross-sectional operators (``kind="cs"``): statistics within groups, per date.

The second input ``group`` is a categorical panel: entries with equal (finite) values on a
date form one group, e.g. the ``industry`` field (integer Shenwan L1 codes, dated where the
warehouse has dated membership, see :mod:`data.industry`). The values are only compared for
equality, so any float coding works.

Conventions (those of :mod:`factors.ops_cs`, per group instead of per date):

* Signature ``func(x, group, mask=None)``; ``x`` and ``group`` are ``(T, N)`` panels of equal
  shape, ``mask`` a boolean ``(T, N)`` universe mask or ``None``. The result is a new
  ``float64`` ``(T, N)`` array; inputs are never modified.
* NaN policy: an entry is *eligible* when ``x`` and ``group`` are finite and it is inside
  ``mask``. Ineligible entries are NaN in the output and ignored by the group statistics; a
  group whose statistic is undefined (zero dispersion for the z-score) is NaN.
* Causal by construction: row ``t`` of the output only reads row ``t``.
* Names carry the ``cs_`` prefix because the registry derives the kind (and the universe mask)
  from it. Genetic programming does not use them (``gp=False``): the second argument must be
  a categorical field, not an arbitrary sub-expression.

Implementation: one numba row loop. Rank and z-score order each row's eligible entries by
``(group, x)`` (stable sorts), then make one pass over the runs of equal group; demean and
mean need no order (dense group ids by binary search in a table of the values seen, one pass
for the sums, one for the output). Reference semantics (test
oracles): ``df.where(ok).groupby(group_row).transform(...)`` per date.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from factors import _kernels_cs as K
from factors.registry import register

_DEMEAN, _MEAN, _RANK, _ZSCORE = 0, 1, 2, 3


@njit(cache=True, nogil=True)
def _group_rows(x, g, ok, mode, out):
    """Per row, per run of equal ``g`` among eligible entries: demean/mean/pct rank/z-score
    into ``out`` (NaN-filled by the caller)."""
    T, N = x.shape
    idx = np.empty(N, np.int64)
    for t in range(T):
        m = 0
        for j in range(N):
            if ok[t, j]:
                idx[m] = j
                m += 1
        if m == 0:
            continue
        sel = idx[:m].copy()
        xs = np.empty(m)
        for k in range(m):
            xs[k] = x[t, sel[k]]
        o1 = np.argsort(xs, kind="mergesort")        # by x, then stably by group
        sel = sel[o1]
        gs = np.empty(m)
        for k in range(m):
            gs[k] = g[t, sel[k]]
        o2 = np.argsort(gs, kind="mergesort")
        sel = sel[o2]
        i = 0
        while i < m:
            gv = g[t, sel[i]]
            e = i
            while e + 1 < m and g[t, sel[e + 1]] == gv:
                e += 1
            n = e - i + 1
            s = 0.0
            for k in range(i, e + 1):
                s += x[t, sel[k]]
            mean = s / n
            if mode == _DEMEAN:
                for k in range(i, e + 1):
                    out[t, sel[k]] = x[t, sel[k]] - mean
            elif mode == _MEAN:
                for k in range(i, e + 1):
                    out[t, sel[k]] = mean
            elif mode == _RANK:
                a = i
                while a <= e:                        # runs of equal x: average rank
                    b = a
                    while b + 1 <= e and x[t, sel[b + 1]] == x[t, sel[a]]:
                        b += 1
                    r = (0.5 * (a + b) - i + 1.0) / n
                    for k in range(a, b + 1):
                        out[t, sel[k]] = r
                    a = b + 1
            else:
                same = True
                ss = 0.0
                for k in range(i, e + 1):
                    v = x[t, sel[k]]
                    same = same and v == x[t, sel[i]]
                    ss += (v - mean) * (v - mean)
                sd = np.sqrt(ss / n)
                if not same and sd > 0.0:
                    for k in range(i, e + 1):
                        out[t, sel[k]] = (x[t, sel[k]] - mean) / sd
            i = e + 1
    return out


@njit(cache=True, nogil=True)
def _group_mean_rows(x, g, ok, demean, out):
    """Per row, ``x`` minus its group mean (``demean``) or the group mean, in O(N) per row.

    Group values are mapped to dense ids through a small sorted table of the values seen so
    far (binary search, O(log k) per entry, skipped when a stock keeps the previous row's
    group; reset when it grows past ``N``), so no row is sorted. Each group's sum runs over its members in column order (pandas ``groupby``'s).
    """
    T, N = x.shape
    cap = 2 * N + 1
    sv = np.empty(cap)                  # distinct group values seen, ascending
    sid = np.empty(cap, np.int64)       # their dense ids
    s = np.zeros(cap)
    c = np.zeros(cap, np.int64)
    code = np.empty(N, np.int64)
    lastv = np.empty(N)
    lastq = np.full(N, -1, np.int64)
    k = 0
    for t in range(T):
        if k > N:
            k = 0
            lastq[:] = -1
        for q in range(k):
            s[q] = 0.0
            c[q] = 0
        for j in range(N):
            if not ok[t, j]:
                code[j] = -1
                continue
            v = g[t, j]
            if lastq[j] >= 0 and lastv[j] == v:     # same group as on the previous row
                q = lastq[j]
                code[j] = q
                s[q] += x[t, j]
                c[q] += 1
                continue
            lo, hi = 0, k
            while lo < hi:
                mid = (lo + hi) >> 1
                if sv[mid] < v:
                    lo = mid + 1
                else:
                    hi = mid
            p = lo
            if p < k and sv[p] == v:
                q = sid[p]
            else:
                for r in range(k, p, -1):
                    sv[r] = sv[r - 1]
                    sid[r] = sid[r - 1]
                sv[p] = v
                sid[p] = k
                q = k
                s[q] = 0.0
                c[q] = 0
                k += 1
            lastv[j] = v
            lastq[j] = q
            code[j] = q
            s[q] += x[t, j]
            c[q] += 1
        for j in range(N):
            q = code[j]
            if q >= 0:
                mean = s[q] / c[q]
                out[t, j] = x[t, j] - mean if demean else mean
    return out


def _grouped(name: str, x, group, mask, mode: int) -> np.ndarray:
    a = K.as_panel(x, name)
    g = K.as_panel(group, f"{name} group")
    if g.shape != a.shape:
        raise ValueError(f"{name}: group shape {g.shape} does not match panel shape {a.shape}")
    ok = K.valid_entries(a, mask, f"{name} mask") & np.isfinite(g)
    out = np.full(a.shape, np.nan)           # NumPy-allocated (factors._ts_driver)
    if mode in (_DEMEAN, _MEAN):
        _group_mean_rows(a, g, ok, mode == _DEMEAN, out)
    else:
        _group_rows(a, g, ok, mode, out)
    np.copyto(out, np.nan, where=~np.isfinite(out))
    return out


_PARAMS = """Parameters
    ----------
    x : ndarray, shape (T, N)
    group : ndarray, shape (T, N)
        Categorical codes (e.g. the ``industry`` field); equal values = one group.
    mask : ndarray of bool, shape (T, N), optional
        Universe mask; ``None`` means all stocks.

    Returns
    -------
    ndarray of float64, shape (T, N)
        {ret}

    Raises
    ------
    ValueError
        If ``x`` is not 2-D, or ``group`` or ``mask`` has another shape.

    Notes
    -----
    NaN policy: group-cs policy (module docstring){nan}. {ref}
    """


def _doc(summary: str, ret: str, nan: str = "", ref: str = ""):
    def deco(func):
        func.__doc__ = f"{summary}\n\n    " + _PARAMS.format(ret=ret, nan=nan, ref=ref)
        return func
    return deco


@register(gp=False)
@_doc("Industry neutralisation: ``x`` minus the mean of its group on the date.",
      "Group mean is over eligible entries; a single-member group gives 0.",
      ref="Reference: WorldQuant 101 ``IndNeutralize(x, g)`` = \"x cross-sectionally "
          "neutralized against groups g (subindustries, industries, sectors, etc.), i.e., x is "
          "cross-sectionally demeaned within each group g\" (Kakushadze 2016, "
          "arXiv:1601.00991, appendix A).")
def cs_neutralize(x, group, mask=None):  # docstring from _doc
    return _grouped("cs_neutralize", x, group, mask, _DEMEAN)


@register(gp=False)
@_doc("Group mean of ``x`` on the date, broadcast to every member of the group.",
      "The mean over the group's eligible entries.")
def cs_group_mean(x, group, mask=None):  # docstring from _doc
    return _grouped("cs_group_mean", x, group, mask, _MEAN)


@register(gp=False)
@_doc("Percentile rank of ``x`` within its group on the date, in ``(0, 1]``, average ties.",
      "``rank / m_g`` with ``m_g`` the group's number of eligible entries.",
      ref="Reference: pandas ``groupby(g).rank(pct=True, method='average')`` per date.")
def cs_group_rank(x, group, mask=None):  # docstring from _doc
    return _grouped("cs_group_rank", x, group, mask, _RANK)


@register(gp=False)
@_doc("Z-score of ``x`` within its group on the date, population std (``ddof=0``).",
      "``(x - mean_g) / std_g``.",
      nan="; a group whose eligible values are all equal (including a single member) is NaN")
def cs_group_zscore(x, group, mask=None):  # docstring from _doc
    return _grouped("cs_group_zscore", x, group, mask, _ZSCORE)
