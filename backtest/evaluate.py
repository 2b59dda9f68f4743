"""The one factor evaluator: RankIC / IC, decay, quantile long-short, turnover, coverage.

Every producer (library factors, GP, LLM, models) is scored here, on the same labels, the same
eligible names and the same date splits.

Timing (the contract of :mod:`data`)
    A factor value at row ``t`` uses data up to the close of ``t``. The label of horizon ``h``
    at ``t`` is ``fwd_h[t] = open_adj[t+1+h] / open_adj[t+1] - 1``: bought at the next open,
    held ``h`` days (see :func:`forward_returns`).
Eligibility
    A name enters the statistics of row ``t`` iff it is in the universe at ``t`` (point-in-time
    membership) and tradable at ``t+1``, the execution day (has a bar, is not one-price locked
    at the limit, listed at least ``min_listed_days``): ``eligible[t] = universe_mask[t] &
    tradable[t+1]``; the last row is never eligible. Each day's statistics use the eligible
    names whose factor and label are both finite.
Splits and embargo
    Splits (train / valid / test) are date ranges. The last ``max(embargo, max(horizons) + 1)``
    rows of each split are dropped from it, so no label window of a split reaches into the next
    one. Mining and leaderboards look at train/valid only; the test split is evaluated only
    when the caller asks for it (and records that it did).
Annualisation
    252 trading days a year. With horizon ``h`` the daily series are overlapping ``h``-day
    returns: annual return ``mean / h * 252``, Sharpe ``mean / std * sqrt(252 / h)``,
    cumulative return = product of ``1 + r`` over every ``h``-th day of the split.

The per-day rank statistics come from :mod:`backtest.metrics_ic` (labels are sorted once per
context and cached, so scoring a factor sorts only the factor); the Pearson IC uses
:func:`factors._kernels_cs.pearson_rows`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from backtest.metrics_ic import (finite_mean, long_short_stats, quantile_buckets, row_orders,
                                 series_moments, spearman_from_orders, top_turnover)
from data.config import EvalConfig
from data.errors import EvaluationError
from factors._kernels_cs import pearson_rows

#: Trading days per year used for annualisation.
ANNUAL_DAYS = 252
#: Horizons of the IC decay profile (trading days).
DECAY_HORIZONS: tuple[int, ...] = (1, 5, 10, 20)


# ---------------------------------------------------------------- labels

def forward_returns(open_adj, h: int) -> np.ndarray:
    """Forward open-to-open return of horizon ``h`` (the evaluation label).

    ``fwd[t] = open_adj[t + 1 + h] / open_adj[t + 1] - 1``: the return of buying at the open
    of the execution day ``t + 1`` and selling at the open ``h`` trading days later.

    Parameters
    ----------
    open_adj : array_like or DataFrame, shape (T, N) or (T,)
        Back-adjusted open prices (yuan; only ratios matter), time on axis 0. NaN = no bar.
    h : int
        Holding horizon in trading days, ``h >= 1``.

    Returns
    -------
    ndarray of float64, same shape as ``open_adj``
        NaN where either price is missing or not positive, and on the last ``h + 1`` rows
        (beyond the data). Causal in the label sense: row ``t`` reads rows ``t+1`` and
        ``t+1+h`` only.

    Raises
    ------
    ValueError
        If ``h`` is not a positive integer.
    """
    if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1:
        raise ValueError(f"forward_returns: horizon h must be a positive integer, got {h!r}")
    o = np.asarray(open_adj, dtype=np.float64)
    out = np.full(o.shape, np.nan)
    T = o.shape[0]
    if T > h + 1:
        a = o[1:T - h]
        b = o[1 + h:]
        ok = (a > 0) & (b > 0) & np.isfinite(a) & np.isfinite(b)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:T - 1 - h] = np.where(ok, b / np.where(ok, a, 1.0) - 1.0, np.nan)
    return out


# ---------------------------------------------------------------- context

def _split_rows(dates: pd.DatetimeIndex, splits: Mapping[str, tuple], gap: int) -> dict:
    rows = {}
    for name, (start, end) in splits.items():
        lo, hi = pd.Timestamp(start), pd.Timestamp(end)
        if hi < lo:
            raise EvaluationError(f"split {name!r}: end {end!s} is before start {start!s}")
        sel = np.asarray((dates >= lo) & (dates <= hi))
        idx = np.flatnonzero(sel)
        if gap > 0:
            sel[idx[-gap:]] = False
        rows[name] = sel
    return rows


@dataclass
class EvalContext:
    """Everything a factor is evaluated against: labels, eligible names and date splits.

    Attributes
    ----------
    dates : DatetimeIndex, length T
        Trading days, ascending.
    codes : Index, length N
        Stock codes (columns of every panel).
    universe : str
        Universe name (for reports).
    universe_mask : ndarray of bool, shape (T, N)
        Point-in-time universe membership.
    eligible : ndarray of bool, shape (T, N)
        ``universe_mask[t] & tradable[t+1]`` (see the module docstring); last row False.
    fwd : dict of int to ndarray (T, N)
        Forward returns per horizon (:func:`forward_returns`).
    split_rows : dict of str to ndarray of bool (T,)
        Rows of each split after the embargo (contiguous).
    horizon : int
        Headline horizon (IC, quantiles, long-short, turnover lag of ``rank_autocorr``).

    Notes
    -----
    Arrays are treated as read-only: label orders are cached on first use.
    """

    dates: pd.DatetimeIndex
    codes: pd.Index
    universe: str
    universe_mask: np.ndarray
    eligible: np.ndarray
    fwd: dict[int, np.ndarray]
    split_rows: dict[str, np.ndarray]
    horizon: int = 1
    _orders: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, int]:
        """``(T, N)``."""
        return (len(self.dates), len(self.codes))

    @classmethod
    def from_arrays(cls, dates, codes, open_adj, universe_mask, tradable,
                    splits: Mapping[str, tuple], horizons: Sequence[int] = DECAY_HORIZONS,
                    horizon: int = 1, embargo: int = 20, universe: str = "custom"
                    ) -> "EvalContext":
        """Build a context from aligned panels.

        Parameters
        ----------
        dates : array_like of datetime, length T
            Trading days, strictly ascending.
        codes : array_like, length N
            Stock codes.
        open_adj : array_like or DataFrame, shape (T, N)
            Back-adjusted opens (labels via :func:`forward_returns`).
        universe_mask, tradable : array_like of bool, shape (T, N)
            Point-in-time membership and tradability (bar, not one-price locked, listed long
            enough) on each day.
        splits : mapping of str to (start, end)
            Inclusive date ranges, e.g. ``{"train": ("2010-01-01", "2018-12-31"), ...}``.
        horizons : sequence of int, default (1, 5, 10, 20)
            Label horizons to precompute; ``horizon`` is added when missing.
        horizon : int, default 1
            Headline horizon.
        embargo : int, default 20
            Minimum rows dropped from the end of each split; the actual gap is
            ``max(embargo, max(horizons) + 1)``.
        universe : str, default "custom"
            Name recorded in the context.

        Returns
        -------
        EvalContext

        Raises
        ------
        EvaluationError
            On misaligned shapes, unsorted or duplicate dates, bad horizons or split ranges.
        """
        dates = pd.DatetimeIndex(dates)
        codes = pd.Index(codes)
        T, N = len(dates), len(codes)
        if not (dates.is_monotonic_increasing and dates.is_unique):
            raise EvaluationError("EvalContext: dates must be strictly increasing")
        hs = sorted({int(h) for h in horizons} | {int(horizon)})
        if hs[0] < 1:
            raise EvaluationError(f"EvalContext: horizons must be >= 1, got {hs}")
        if int(embargo) < 0:
            raise EvaluationError(f"EvalContext: embargo must be >= 0, got {embargo}")
        arrays = {}
        for name, arr, dtype in (("open_adj", open_adj, np.float64),
                                 ("universe_mask", universe_mask, np.bool_),
                                 ("tradable", tradable, np.bool_)):
            a = np.ascontiguousarray(arr, dtype=dtype)
            if a.shape != (T, N):
                raise EvaluationError(f"EvalContext: {name} has shape {a.shape}, expected "
                                      f"(T, N) = {(T, N)} from dates and codes")
            arrays[name] = a
        umask, trad = arrays["universe_mask"], arrays["tradable"]
        eligible = np.zeros((T, N), dtype=np.bool_)
        eligible[:-1] = umask[:-1] & trad[1:]
        fwd = {h: forward_returns(arrays["open_adj"], h) for h in hs}
        gap = max(int(embargo), hs[-1] + 1)
        return cls(dates=dates, codes=codes, universe=universe, universe_mask=umask,
                   eligible=eligible, fwd=fwd, split_rows=_split_rows(dates, splits, gap),
                   horizon=int(horizon))

    @classmethod
    def from_data(cls, dm, universe: str, start, end,
                  eval_cfg: EvalConfig | None = None) -> "EvalContext":
        """Build a context from the warehouse through a :class:`data.manager.DataManager`.

        Loads the back-adjusted ``open`` of the universe's codes, the point-in-time universe
        mask and the tradable mask (``eval_cfg.min_listed_days``) on the trading days in
        ``[start, end]``; the splits, embargo and headline horizon come from ``eval_cfg``
        (default :class:`data.config.EvalConfig`). Nothing after ``end`` is read, so the last
        row is ineligible and the last ``h + 1`` rows have no label (the embargo drops them).

        Raises
        ------
        DataError, UniverseError
            From the data manager (missing data, unknown universe, dates outside the data).
        EvaluationError
            If the manager returns misaligned arrays.
        """
        cfg = eval_cfg or EvalConfig()
        dates = dm.calendar(start, end)
        codes = dm.universe_codes(universe, start, end)
        opn = dm.panels(["open"], start, end, codes=codes)["open"]
        opn = opn.reindex(index=dates, columns=codes)
        umask = dm.universe_mask(universe, dates, codes)
        trad = dm.tradable_mask(start, end, codes, min_listed_days=cfg.min_listed_days)
        splits = {"train": cfg.train, "valid": cfg.valid, "test": cfg.test}
        return cls.from_arrays(dates, codes, opn.to_numpy(dtype=np.float64), umask, trad,
                               splits, horizons=DECAY_HORIZONS, horizon=cfg.horizon,
                               embargo=cfg.embargo, universe=universe)

    def split_bounds(self, split: str) -> tuple[int, int]:
        """Row range ``[lo, hi)`` of a split (``lo == hi`` when it is empty).

        Raises
        ------
        EvaluationError
            For an unknown split name (the message lists the known ones).
        """
        if split not in self.split_rows:
            raise EvaluationError(f"unknown split {split!r}; this context has "
                                  f"{', '.join(self.split_rows) or 'no splits'}")
        idx = np.flatnonzero(self.split_rows[split])
        return (int(idx[0]), int(idx[-1]) + 1) if idx.size else (0, 0)

    def label_order(self, h: int) -> tuple[np.ndarray, np.ndarray]:
        """Cached :func:`backtest.metrics_ic.row_orders` of ``fwd[h]`` on eligible names."""
        if h not in self.fwd:
            raise EvaluationError(f"horizon {h} not in this context (has {sorted(self.fwd)})")
        if h not in self._orders:
            self._orders[h] = row_orders(self.fwd[h], self.eligible)
        return self._orders[h]

    def restrict(self, start, end) -> "EvalContext":
        """A context on the rows with ``start <= date <= end`` (labels and splits kept as is)."""
        sel = np.asarray((self.dates >= pd.Timestamp(start)) & (self.dates <= pd.Timestamp(end)))
        return EvalContext(dates=self.dates[sel], codes=self.codes, universe=self.universe,
                           universe_mask=self.universe_mask[sel], eligible=self.eligible[sel],
                           fwd={h: v[sel] for h, v in self.fwd.items()},
                           split_rows={k: v[sel] for k, v in self.split_rows.items()},
                           horizon=self.horizon)


def _as_factor(factor, ctx: EvalContext, name: str = "factor") -> np.ndarray:
    if isinstance(factor, pd.DataFrame):
        factor = factor.reindex(index=ctx.dates, columns=ctx.codes)
    f = np.ascontiguousarray(factor, dtype=np.float64)
    if f.shape != ctx.shape:
        raise EvaluationError(f"{name} has shape {f.shape}, expected {ctx.shape} "
                              f"(dates x codes of the evaluation context)")
    return f


# ---------------------------------------------------------------- fast IC entry points

def rank_ic_series(factor, ctx: EvalContext, h: int | None = None) -> np.ndarray:
    """Daily RankIC: Spearman correlation of the factor with ``fwd_h`` on eligible names.

    Parameters
    ----------
    factor : array_like or DataFrame, shape (T, N)
        Factor values on the context's dates x codes; non-finite = missing.
    ctx : EvalContext
    h : int, optional
        Label horizon; default ``ctx.horizon``.

    Returns
    -------
    ndarray of float64, shape (T,)
        NaN on days with fewer than 3 usable names or a constant side. Every row is computed,
        including embargo rows; select a split with ``ctx.split_rows``.

    Raises
    ------
    EvaluationError
        On a shape mismatch or a horizon the context lacks.
    """
    h = ctx.horizon if h is None else int(h)
    oy, ny = ctx.label_order(h)
    f = _as_factor(factor, ctx)
    of, nf = row_orders(f, ctx.eligible)
    return spearman_from_orders(f, of, nf, ctx.fwd[h], oy, ny, ctx.eligible)


def mean_rank_ic(factor, ctx: EvalContext, split: str = "train") -> float:
    """Mean daily RankIC over one split at the headline horizon (the GP fitness).

    Sorts only the factor's rows of the split (labels are cached on the context): about
    20 ms for a (2200, 800) split after JIT warm-up.

    Returns
    -------
    float
        NaN when no day of the split has a defined RankIC (e.g. a constant factor).

    Raises
    ------
    EvaluationError
        On a shape mismatch or an unknown split.
    """
    f = _as_factor(factor, ctx)
    lo, hi = ctx.split_bounds(split)
    if hi <= lo:
        return math.nan
    h = ctx.horizon
    oy, ny = ctx.label_order(h)
    e = ctx.eligible[lo:hi]
    fs = f[lo:hi]
    of, nf = row_orders(fs, e)
    ic = spearman_from_orders(fs, of, nf, ctx.fwd[h][lo:hi], oy[lo:hi], ny[lo:hi], e)
    return finite_mean(ic)


def factor_corr(a, b, ctx: EvalContext, split: str = "valid") -> float:
    """Mean over a split's days of the cross-sectional Spearman correlation of two factors.

    Computed on eligible names finite in both (the leaderboard's correlation gate).

    Returns
    -------
    float
        NaN when no day has 3 common names with variation on both sides.

    Raises
    ------
    EvaluationError
        On a shape mismatch or an unknown split.
    """
    fa = _as_factor(a, ctx, "a")
    fb = _as_factor(b, ctx, "b")
    lo, hi = ctx.split_bounds(split)
    if hi <= lo:
        return math.nan
    e = ctx.eligible[lo:hi]
    xa, xb = fa[lo:hi], fb[lo:hi]
    oa, na = row_orders(xa, e)
    ob, nb = row_orders(xb, e)
    return finite_mean(spearman_from_orders(xa, oa, na, xb, ob, nb, e))


# ---------------------------------------------------------------- report

@dataclass
class FactorReport:
    """Metrics of one factor on one split (see :func:`evaluate_factor` for definitions).

    IC statistics are over the days with a defined IC: ``*_icir = mean / std`` (ddof=1, not
    annualised) and ``*_t = mean / std * sqrt(n_ic_days)``; for ``horizon > 1`` the daily
    labels overlap, so the t statistics are inflated (roughly by ``sqrt(horizon)``).
    Return metrics are annualised with 252 days (module docstring). Undefined values are NaN.
    """

    split: str
    n_days: int
    n_ic_days: int
    horizon: int
    rank_ic_mean: float
    rank_ic_std: float
    rank_icir: float
    rank_ic_t: float
    rank_ic_pos: float
    ic_mean: float
    ic_std: float
    icir: float
    ic_t: float
    ic_decay: dict[int, float]
    quantile_ann_returns: list[float]
    ls_ann_return: float
    ls_sharpe: float
    ls_cum_return: float
    ls_max_drawdown: float
    turnover: float
    rank_autocorr: float
    coverage: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: Python floats/ints, NaN and inf as ``None``, ``ic_decay`` keys as str."""
        return _json_safe(asdict(self))


def _json_safe(v):
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    return v


def evaluate_factor(factor, ctx: EvalContext, splits: Sequence[str] = ("train", "valid"),
                    quantiles: int = 5) -> dict[str, FactorReport]:
    """Evaluate a factor panel on the requested splits.

    Per day ``t`` (headline horizon ``h = ctx.horizon``), over the names eligible at ``t``
    whose factor and ``fwd_h`` are finite:

    * RankIC = Spearman (average-tie ranks), IC = Pearson of factor and ``fwd_h``;
      ``ic_decay[k]`` = mean RankIC against ``fwd_k`` for ``k`` in 1, 5, 10, 20.
    * Quantiles: bucket ``floor((rank - 1) * Q / n)`` (equal counts; tied names share a
      bucket, see :func:`backtest.metrics_ic.quantile_buckets`), equal-weight mean ``fwd_h``
      per bucket; ``quantile_ann_returns[q]`` = mean / h * 252, q1 = lowest factor, qQ =
      highest. Long-short = qQ - q1 (``ls_*``, see the module docstring); ``ls_max_drawdown``
      is the worst peak-to-trough of the every-``h``-th-day compounded curve, <= 0.
    * ``turnover``: mean over consecutive split days of the share of today's top-bucket names
      not in yesterday's top bucket.
    * ``rank_autocorr``: mean Spearman of ``factor[t]`` with ``factor[t - h]`` on names
      eligible at ``t`` and finite on both days.
    * ``coverage``: mean over days of (#eligible names with finite factor) / (#eligible).

    Parameters
    ----------
    factor : array_like or DataFrame, shape (T, N)
        Factor values on the context's dates x codes; non-finite = missing.
    ctx : EvalContext
    splits : sequence of str, default ("train", "valid")
        Splits to report. The test split is evaluated only when named here; recording that
        it was unsealed is the caller's job.
    quantiles : int, default 5
        Number of buckets ``Q`` (>= 2).

    Returns
    -------
    dict of str to FactorReport
        One report per split, in the order asked. A constant or all-NaN factor gives NaN IC,
        quantile and turnover metrics (no exception); coverage is still computed.

    Raises
    ------
    EvaluationError
        On a shape mismatch, an unknown split or ``quantiles < 2``.

    Notes
    -----
    Causal by construction: a split's metrics read factor rows of the split (and ``h``
    rows before it for ``rank_autocorr``) and labels that end inside the split.
    """
    if int(quantiles) < 2:
        raise EvaluationError(f"quantiles must be >= 2, got {quantiles!r}")
    q = int(quantiles)
    f = _as_factor(factor, ctx)
    h = ctx.horizon
    bounds = {s: ctx.split_bounds(s) for s in splits}
    spans = [b for b in bounds.values() if b[1] > b[0]]
    reports = {}
    if spans:
        L = max(0, min(b[0] for b in spans) - h)      # h rows of history for rank_autocorr
        H = max(b[1] for b in spans)
        d = _daily_series(f, ctx, L, H, q)
    for s, (lo, hi) in bounds.items():
        if hi <= lo:
            reports[s] = _empty_report(s, h, q)
            continue
        a, b = lo - L, hi - L
        ric = {k: v[a:b] for k, v in d["ric"].items()}
        rm, rs, rir, rt, n_ic = series_moments(ric[h])
        r_fin = ric[h][np.isfinite(ric[h])]
        im, is_, iir, it, _ = series_moments(d["ic"][a:b])
        mq = d["means"][a:b]
        qann = [finite_mean(mq[:, j]) / h * ANNUAL_DAYS for j in range(q)]
        ls_ann, ls_sh, ls_cum, ls_mdd = long_short_stats(mq[:, -1] - mq[:, 0], h, ANNUAL_DAYS)
        reports[s] = FactorReport(
            split=s, n_days=hi - lo, n_ic_days=n_ic, horizon=h,
            rank_ic_mean=rm, rank_ic_std=rs, rank_icir=rir, rank_ic_t=rt,
            rank_ic_pos=float((r_fin > 0).mean()) if r_fin.size else math.nan,
            ic_mean=im, ic_std=is_, icir=iir, ic_t=it,
            ic_decay={k: finite_mean(v) for k, v in ric.items() if k in DECAY_HORIZONS},
            quantile_ann_returns=qann, ls_ann_return=ls_ann, ls_sharpe=ls_sh,
            ls_cum_return=ls_cum, ls_max_drawdown=ls_mdd, turnover=top_turnover(d["top"][a:b]),
            rank_autocorr=finite_mean(d["auto"][a:b]), coverage=finite_mean(d["cov"][a:b]))
    return reports


def _daily_series(f: np.ndarray, ctx: EvalContext, L: int, H: int, q: int) -> dict:
    """Every daily series of :func:`evaluate_factor` on rows ``[L, H)`` (one factor sort)."""
    h = ctx.horizon
    fr, e = f[L:H], ctx.eligible[L:H]
    of, nf = row_orders(fr)                            # unmasked: reused by every statistic
    ric, ranks, counts = {}, None, None
    for k in sorted(set(DECAY_HORIZONS) & set(ctx.fwd) | {h}):
        oy, ny = ctx.label_order(k)
        res = spearman_from_orders(fr, of, nf, ctx.fwd[k][L:H], oy[L:H], ny[L:H], e,
                                   want_ranks=(k == h))
        if k == h:
            ric[k], ranks, counts = res
        else:
            ric[k] = res
    y = ctx.fwd[h][L:H]
    means, top = quantile_buckets(ranks, counts, y, q)
    auto = np.full(H - L, np.nan)
    if H - L > h:
        auto[h:] = spearman_from_orders(fr[h:], of[h:], nf[h:], fr[:-h], of[:-h], nf[:-h], e[h:])
    n_el = e.sum(axis=1)
    cov = np.where(n_el > 0, (e & np.isfinite(fr)).sum(axis=1) / np.maximum(n_el, 1), np.nan)
    return {"ric": ric, "ic": pearson_rows(fr, y, e), "means": means, "top": top,
            "auto": auto, "cov": cov}


def _empty_report(split: str, h: int, q: int) -> FactorReport:
    nan = math.nan
    return FactorReport(split=split, n_days=0, n_ic_days=0, horizon=h, rank_ic_mean=nan,
                        rank_ic_std=nan, rank_icir=nan, rank_ic_t=nan, rank_ic_pos=nan,
                        ic_mean=nan, ic_std=nan, icir=nan, ic_t=nan,
                        ic_decay={k: nan for k in DECAY_HORIZONS}, quantile_ann_returns=[nan] * q,
                        ls_ann_return=nan, ls_sharpe=nan, ls_cum_return=nan,
                        ls_max_drawdown=nan, turnover=nan, rank_autocorr=nan, coverage=nan)
