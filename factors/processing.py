"""Cross-sectional factor processing: winsorize, z-score, direction, industry + size neutralisation.

Every function works on a (T, N) panel (time on axis 0, stocks on axis 1; a bare ndarray or a
wide DataFrame) one row (date) at a time, fully vectorised over all rows at once: no per-date
loop, no ``groupby.apply``. Only values of the same row are combined, so every output row
depends on its input row alone (causal by construction).

NaN policy
    Non-finite inputs are missing; a name outside ``mask`` (e.g. the point-in-time universe) is
    treated as missing and comes back NaN. Statistics of a row use its finite, in-mask names.
    A row with fewer than ``min_names`` usable names (or zero dispersion) comes back all NaN.

Neutralisation (per-date OLS)
    ``x[t] = D[t] a[t] + Z[t] b[t] + e[t]`` with ``D`` the industry dummies (an intercept when no
    industry is given) and ``Z`` the continuous exposures (e.g. log total market value); the
    output is the residual ``e``. By the Frisch-Waugh-Lovell theorem this equals regressing the
    within-industry demeaned ``x`` on the within-industry demeaned ``Z``: group means are one
    matrix product with the one-hot industry matrix, and the small ``K x K`` normal equations
    of every date are solved in one batched :func:`numpy.linalg.lstsq`-equivalent call
    (pseudo-inverse): a (1800, 5000) panel with 110 industries and log size takes about 1.9 s
    on the shared 2-core dev machine (winsorize 0.8 s, z-score 0.7 s).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from factors.errors import EvaluationError

#: Scale that turns the median absolute deviation into a normal-consistent sigma.
MAD_SCALE = 1.4826


def _arr(x, name: str) -> np.ndarray:
    a = np.array(x.to_numpy() if isinstance(x, pd.DataFrame) else x, dtype=np.float64)
    if a.ndim != 2:
        raise EvaluationError(f"{name} must be a (T, N) panel, got shape {a.shape}")
    return a


def _usable(a: np.ndarray, mask) -> np.ndarray:
    ok = np.isfinite(a)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != a.shape:
            raise EvaluationError(f"mask has shape {m.shape}, expected {a.shape}")
        ok &= m
    return ok


def _like(x, out: np.ndarray):
    if isinstance(x, pd.DataFrame):
        return pd.DataFrame(out, index=x.index, columns=x.columns)
    return out


def winsorize(x, mask=None, *, method: str = "mad", k: float = 5.0,
              limits: tuple[float, float] = (0.01, 0.99), min_names: int = 3):
    """Clip each row's outliers (cross-sectional winsorisation).

    Parameters
    ----------
    x : array_like or DataFrame, shape (T, N)
        Factor values; non-finite = missing.
    mask : array_like of bool, shape (T, N), optional
        Names to use (e.g. universe membership); others come back NaN.
    method : {"mad", "quantile"}
        ``"mad"``: clip to ``median +- k * 1.4826 * MAD`` of the row (robust sigma);
        ``"quantile"``: clip to the row's ``limits`` quantiles (linear interpolation).
    k : float, default 5.0
        MAD multiple.
    limits : (float, float), default (0.01, 0.99)
        Lower and upper quantiles for ``method="quantile"``.
    min_names : int, default 3
        Rows with fewer usable names are all NaN.

    Returns
    -------
    ndarray or DataFrame (same type as ``x``), shape (T, N), float64

    Raises
    ------
    EvaluationError
        Bad shape, unknown method or bad limits.
    """
    a = _arr(x, "x")
    ok = _usable(a, mask)
    a[~ok] = np.nan
    good_rows = ok.sum(axis=1) >= min_names
    a[~good_rows] = np.nan
    with np.errstate(all="ignore"), _quiet():
        if method == "mad":
            med = np.nanmedian(a, axis=1, keepdims=True)
            mad = np.nanmedian(np.abs(a - med), axis=1, keepdims=True) * MAD_SCALE
            lo, hi = med - k * mad, med + k * mad
        elif method == "quantile":
            ql, qh = limits
            if not 0.0 <= ql < qh <= 1.0:
                raise EvaluationError(f"winsorize limits must satisfy 0 <= lo < hi <= 1, "
                                      f"got {limits}")
            lo = np.nanquantile(a, ql, axis=1, keepdims=True)
            hi = np.nanquantile(a, qh, axis=1, keepdims=True)
        else:
            raise EvaluationError(f"unknown winsorize method {method!r}; use 'mad' or 'quantile'")
        out = np.clip(a, lo, hi)
    return _like(x, out)


class _quiet:
    """Silence numpy's 'All-NaN slice' RuntimeWarnings inside a block."""

    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)


def zscore(x, mask=None, *, min_names: int = 3):
    """Cross-sectional z-score: ``(x - mean_row) / std_row`` (population std, ddof=0).

    Parameters
    ----------
    x : array_like or DataFrame, shape (T, N)
    mask : array_like of bool, shape (T, N), optional
        Names to use; others come back NaN.
    min_names : int, default 3
        Rows with fewer usable names or zero dispersion are all NaN.

    Returns
    -------
    ndarray or DataFrame, shape (T, N), float64
        Each usable row has mean 0 and std 1 over its finite entries.

    Raises
    ------
    EvaluationError
        Bad shape.
    """
    a = _arr(x, "x")
    ok = _usable(a, mask)
    n = ok.sum(axis=1, keepdims=True).astype(np.float64)
    v = np.where(ok, a, 0.0)
    with np.errstate(all="ignore"):
        mu = v.sum(axis=1, keepdims=True) / n
        d = np.where(ok, a - mu, 0.0)
        sd = np.sqrt((d * d).sum(axis=1, keepdims=True) / n)
        good = (n >= min_names) & (sd > 1e-12 * np.maximum(1.0, np.abs(mu)))
        out = np.where(ok & good, d / np.where(good, sd, 1.0), np.nan)
    return _like(x, out)


def industry_codes(industry: Sequence) -> np.ndarray:
    """Integer group codes ``0..G-1`` for a sequence of industry labels (missing = own group).

    Parameters
    ----------
    industry : sequence, length N
        One label per stock (e.g. ``stock_basic.industry_ts``); None/NaN/"" form one extra
        group ``"unknown"`` so that such names are still demeaned among themselves.

    Returns
    -------
    ndarray of int64, shape (N,)
    """
    s = pd.Series(list(industry), dtype=object)
    s = s.where(s.notna() & (s.astype(str) != ""), "__unknown__")
    return pd.factorize(s.astype(str))[0].astype(np.int64)


def neutralize(x, *, industry=None, exposures: Sequence = (), mask=None, min_names: int = 3):
    """Residual of a per-date OLS of ``x`` on industry dummies and continuous exposures.

    Parameters
    ----------
    x : array_like or DataFrame, shape (T, N)
        Factor values.
    industry : array_like of int, shape (N,) or (T, N), optional
        Static group code per stock (:func:`industry_codes`), or dated codes per (date, stock)
        (:meth:`data.manager.DataManager.industry`: Shenwan point in time where the warehouse
        has ``industry_sw``, else the static label on every date). None = a single group (an
        intercept).
    exposures : sequence of array_like, each (T, N)
        Continuous regressors, e.g. ``log(total_mv)`` for size. A name with a non-finite
        exposure is left out of that date's regression and comes back NaN.
    mask : array_like of bool, shape (T, N), optional
        Names to use.
    min_names : int, default 3
        Rows with fewer usable names than ``max(min_names, K + 2)`` are all NaN.

    Returns
    -------
    ndarray or DataFrame, shape (T, N)
        Residuals: zero mean within every industry of every date and orthogonal to each
        exposure (on the usable names).

    Raises
    ------
    EvaluationError
        Shape mismatches.

    Notes
    -----
    Frisch-Waugh-Lovell (module docstring). Group means are ``(x * ok) @ G / ok @ G`` with
    ``G`` the (N, groups) one-hot matrix; the exposure coefficients of all dates come from one
    batched pseudo-inverse of the ``(T, K, K)`` normal matrices (collinear exposures are
    handled by the pseudo-inverse).
    """
    a = _arr(x, "x")
    T, N = a.shape
    ok = _usable(a, mask)
    zs = []
    for i, z in enumerate(exposures):
        zi = _arr(z, f"exposures[{i}]")
        if zi.shape != a.shape:
            raise EvaluationError(f"exposures[{i}] has shape {zi.shape}, expected {a.shape}")
        ok &= np.isfinite(zi)
        zs.append(zi)
    if industry is None:
        g = np.zeros(N, dtype=np.int64)
    else:
        g = np.asarray(industry, dtype=np.int64)
        if g.shape not in ((N,), (T, N)):
            raise EvaluationError(f"industry must have shape ({N},) or ({T}, {N}), "
                                  f"got {g.shape}")
    if g.ndim == 2:                                     # dated groups: per-(date, group) sums
        n_g = int(g.max()) + 1 if g.size else 1
        key = (np.arange(T)[:, None] * n_g + g).ravel()
        cnt2 = np.bincount(key, weights=ok.ravel().astype(np.float64), minlength=T * n_g)

        def demean(v: np.ndarray) -> np.ndarray:
            v0 = np.where(ok, v, 0.0)
            tot = np.bincount(key, weights=v0.ravel(), minlength=T * n_g)
            means = np.divide(tot, cnt2, out=np.zeros_like(tot), where=cnt2 > 0)[key]
            return np.where(ok, v0 - means.reshape(T, N), 0.0)
    else:
        G = np.zeros((N, int(g.max()) + 1 if N else 1))
        G[np.arange(N), g] = 1.0
        okf = ok.astype(np.float64)
        cnt = okf @ G                                   # (T, groups)
        inv = np.divide(1.0, cnt, out=np.zeros_like(cnt), where=cnt > 0)

        def demean(v: np.ndarray) -> np.ndarray:
            v0 = np.where(ok, v, 0.0)
            means = ((v0 @ G) * inv) @ G.T              # (T, N): each name's group mean
            return np.where(ok, v0 - means, 0.0)

    y = demean(a)
    if zs:
        Z = np.stack([demean(z) for z in zs], axis=2)   # (T, N, K)
        A = np.einsum("tnk,tnj->tkj", Z, Z)
        b = np.einsum("tnk,tn->tk", Z, y)
        beta = np.einsum("tkj,tj->tk", np.linalg.pinv(A), b)
        y = y - np.einsum("tnk,tk->tn", Z, beta)
    need = max(min_names, len(zs) + 2)
    good = ok.sum(axis=1, keepdims=True) >= need
    out = np.where(ok & good, y, np.nan)
    return _like(x, out)


def process_factor(x, mask=None, *, sign: float = 1.0, winsor: str | None = "mad",
                   industry=None, size=None, neutral: Sequence[str] = (), min_names: int = 3
                   ) -> np.ndarray:
    """The standard pipeline for one factor panel: winsorize -> z-score -> direction ->
    optional neutralisation -> z-score.

    Parameters
    ----------
    x : array_like or DataFrame, shape (T, N)
        Raw factor values.
    mask : array_like of bool, shape (T, N), optional
        Names to use (point-in-time universe).
    sign : float, default 1.0
        Direction: ``-1`` flips a factor whose (train) RankIC is negative, so that higher is
        better for every processed factor.
    winsor : {"mad", "quantile"} or None
        Winsorisation method (:func:`winsorize`); None skips it.
    industry : array_like of int, shape (N,) or (T, N), optional
        Group codes (:func:`industry_codes`, or dated from
        :meth:`data.manager.DataManager.industry`), required when ``"industry"`` is in
        ``neutral``.
    size : array_like, shape (T, N), optional
        Size exposure (log total market value), required when ``"size"`` is in ``neutral``.
    neutral : sequence of {"industry", "size"}
        Exposures to neutralise.
    min_names : int, default 3

    Returns
    -------
    ndarray, shape (T, N), float64
        Row-wise mean 0 / std 1 on usable names, NaN elsewhere.

    Raises
    ------
    EvaluationError
        Unknown neutraliser or a missing exposure input.
    """
    bad = [n for n in neutral if n not in ("industry", "size")]
    if bad:
        raise EvaluationError(f"unknown neutralisation {bad[0]!r}; use 'industry' and/or 'size'")
    if "industry" in neutral and industry is None:
        raise EvaluationError("industry neutralisation needs industry codes")
    if "size" in neutral and size is None:
        raise EvaluationError("size neutralisation needs a size panel (log total_mv)")
    a = _arr(x, "x")
    if winsor:
        a = winsorize(a, mask, method=winsor, min_names=min_names)
    a = zscore(a, mask, min_names=min_names) * float(np.sign(sign) or 1.0)
    if neutral:
        a = neutralize(a, industry=industry if "industry" in neutral else None,
                       exposures=[size] if "size" in neutral else [], mask=mask,
                       min_names=min_names)
        a = zscore(a, mask, min_names=min_names)
    return a


__all__ = ["MAD_SCALE", "winsorize", "zscore", "industry_codes", "neutralize", "process_factor"]
