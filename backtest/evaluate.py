"""The one factor evaluator: RankIC / IC, decay, quantile long-short, turnover, coverage.

Every producer (library factors, GP, LLM, models) is scored here, on the same labels, the same
eligible names and the same date splits.

Labels, eligibility, splits and embargo are defined by :mod:`backtest.context`.
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
from dataclasses import dataclass, field, fields
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from backtest.context import DECAY_HORIZONS, EvalContext
from backtest.factor_series import FactorSeries
from backtest.metrics_ic import (
    finite_mean,
    long_short_stats,
    quantile_buckets,
    series_moments,
    spearman_from_orders,
    top_turnover,
    top_turnover_series,
)
from factors._kernels_cs import pearson_rows
from factors.errors import EvaluationError
from factors.row_order import row_orders
from factors.trials import one_sided_p

#: Trading days per year used for annualisation.
ANNUAL_DAYS = 252


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
    annualised); ``*_t`` = mean / Newey-West standard error with ``horizon - 1`` lags (the daily
    ``h``-day labels overlap; for ``horizon = 1`` this is ``mean / std * sqrt(n_ic_days)``),
    see :func:`backtest.metrics_ic.newey_west_t`; ``rank_ic_p`` = one-sided p-value of
    ``rank_ic_t`` for a positive mean, ``P(T_{n-1} >= rank_ic_t)`` with ``n = n_ic_days``
    (:func:`factors.trials.one_sided_p`; the gate orients it by the train direction).
    Return metrics are annualised with 252 days (module docstring). Undefined values are NaN.
    ``series`` holds the daily series (:class:`backtest.factor_series.FactorSeries`) when
    :func:`evaluate_factor` was asked to keep them, else None; it is not part of
    :meth:`to_dict` (JSON output and stored metrics do not carry it).
    """

    split: str
    n_days: int
    n_ic_days: int
    horizon: int
    rank_ic_mean: float
    rank_ic_std: float
    rank_icir: float
    rank_ic_t: float
    rank_ic_p: float
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
    series: Optional[FactorSeries] = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: Python floats/ints, NaN and inf as ``None``, ``ic_decay`` keys as str
        (every metric; not ``series``)."""
        return _json_safe({f.name: getattr(self, f.name) for f in fields(self)
                           if f.name != "series"})


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
                    quantiles: int | None = None, *,
                    keep_series: bool = False) -> dict[str, FactorReport]:
    """Evaluate a factor panel on the requested splits.

    Per day ``t`` (headline horizon ``h = ctx.horizon``), over the names eligible at ``t``
    whose factor and ``fwd_h`` are finite:

    * RankIC = Spearman (average-tie ranks), IC = Pearson of factor and ``fwd_h``;
      ``ic_decay[k]`` = mean RankIC against ``fwd_k`` for ``k`` in 1, 2, 5, 10, 20.
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
    quantiles : int, optional
        Number of buckets ``Q`` (>= 2); default ``ctx.quantiles`` (``[evaluate] quantiles``).
    keep_series : bool, default False
        Attach the daily series each metric summarises to the reports (``report.series``,
        :class:`backtest.factor_series.FactorSeries`): RankIC / IC, RankIC per label horizon,
        per-bucket returns, long-short, top-bucket turnover. Off for mining (GP / LLM
        candidates), where only the summaries are used.

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
    q = int(ctx.quantiles if quantiles is None else quantiles)
    if q < 2:
        raise EvaluationError(f"quantiles must be >= 2, got {quantiles!r}")
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
            if keep_series:
                reports[s].series = _empty_series(s, h, q, ctx)
            continue
        a, b = lo - L, hi - L
        ric = {k: v[a:b] for k, v in d["ric"].items()}
        rm, rs, rir, rt, n_ic = series_moments(ric[h], lags=h - 1)
        r_fin = ric[h][np.isfinite(ric[h])]
        im, is_, iir, it, _ = series_moments(d["ic"][a:b], lags=h - 1)
        mq = d["means"][a:b]
        qann = [finite_mean(mq[:, j]) / h * ANNUAL_DAYS for j in range(q)]
        ls_ann, ls_sh, ls_cum, ls_mdd = long_short_stats(mq[:, -1] - mq[:, 0], h, ANNUAL_DAYS)
        reports[s] = FactorReport(
            split=s, n_days=hi - lo, n_ic_days=n_ic, horizon=h,
            rank_ic_mean=rm, rank_ic_std=rs, rank_icir=rir, rank_ic_t=rt,
            rank_ic_p=one_sided_p(rt, n_ic),
            rank_ic_pos=float((r_fin > 0).mean()) if r_fin.size else math.nan,
            ic_mean=im, ic_std=is_, icir=iir, ic_t=it,
            ic_decay={k: finite_mean(v) for k, v in ric.items() if k in DECAY_HORIZONS},
            quantile_ann_returns=qann, ls_ann_return=ls_ann, ls_sharpe=ls_sh,
            ls_cum_return=ls_cum, ls_max_drawdown=ls_mdd, turnover=top_turnover(d["top"][a:b]),
            rank_autocorr=finite_mean(d["auto"][a:b]), coverage=finite_mean(d["cov"][a:b]))
        if keep_series:
            reports[s].series = FactorSeries(
                split=s, horizon=h, dates=ctx.dates[lo:hi], rank_ic=ric[h], ic=d["ic"][a:b],
                quantile_returns=mq, long_short=mq[:, -1] - mq[:, 0],
                turnover=top_turnover_series(d["top"][a:b]), rank_ic_by_horizon=ric)
    return reports


def _empty_series(split: str, h: int, q: int, ctx: EvalContext) -> FactorSeries:
    e = np.empty(0)
    return FactorSeries(split=split, horizon=h, dates=ctx.dates[:0], rank_ic=e, ic=e,
                        quantile_returns=np.empty((0, q)), long_short=e, turnover=e,
                        rank_ic_by_horizon={k: e for k in sorted(set(DECAY_HORIZONS)
                                                                 & set(ctx.fwd) | {h})})


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
                        rank_ic_std=nan, rank_icir=nan, rank_ic_t=nan, rank_ic_p=nan,
                        rank_ic_pos=nan,
                        ic_mean=nan, ic_std=nan, icir=nan, ic_t=nan,
                        ic_decay={k: nan for k in DECAY_HORIZONS}, quantile_ann_returns=[nan] * q,
                        ls_ann_return=nan, ls_sharpe=nan, ls_cum_return=nan,
                        ls_max_drawdown=nan, turnover=nan, rank_autocorr=nan, coverage=nan)
