"""Benchmark helper: the FactorReport statistics computed with alphalens-reloaded.

Both sides see the same factor, labels and names:

* labels: alphamine's ``fwd_h[t] = open_adj[t+1+h] / open_adj[t+1] - 1`` (``ctx.fwd``), handed
  to :func:`alphalens.utils.get_clean_factor` as its forward returns (``get_clean_factor_and_
  forward_returns`` cannot take external labels; it would compute close-to-close returns with
  forward-filled prices);
* names: the factor is NaN-ed where a name is not eligible or any label horizon is missing,
  because alphalens drops a (date, asset) row when any forward-return column is NaN.

The alphalens calls mirror what :func:`backtest.evaluate.evaluate_factor` reports: RankIC for
every horizon (``factor_information_coefficient``), daily quantile returns
(``mean_return_by_quantile``), the long-short portfolio (``factor_returns``), top-quantile
turnover (``quantile_turnover``) and rank autocorrelation (``factor_rank_autocorrelation``).
"""
from __future__ import annotations

import contextlib
import io
import warnings

import alphalens.performance as al_perf
import alphalens.utils as al_utils
import numpy as np
import pandas as pd
from timing import Took, timed

HORIZONS = (1, 5, 10, 20)


def common_mask(factor: np.ndarray, ctx, horizons=HORIZONS) -> np.ndarray:
    """(T, N) bool: eligible, finite factor and finite label for every horizon."""
    ok = ctx.eligible & np.isfinite(factor)
    for h in horizons:
        ok &= np.isfinite(ctx.fwd[h])
    return ok


def alphalens_inputs(factor: np.ndarray, ctx, split: str, horizons=HORIZONS
                     ) -> tuple[pd.Series, pd.DataFrame]:
    """Long-format (date, asset) factor Series and forward-return frame of one split.

    The factor is NaN outside :func:`common_mask`; forward-return columns are named ``"1D"``,
    ``"5D"``... as alphalens expects.
    """
    lo, hi = ctx.split_bounds(split)
    ok = common_mask(factor, ctx, horizons)[lo:hi]
    idx = pd.MultiIndex.from_product([ctx.dates[lo:hi], ctx.codes], names=["date", "asset"])
    fwd = pd.DataFrame({f"{h}D": ctx.fwd[h][lo:hi].reshape(-1) for h in horizons}, index=idx)
    fac = pd.Series(np.where(ok, factor[lo:hi], np.nan).reshape(-1), index=idx, name="factor")
    return fac, fwd


def run_alphalens(fac: pd.Series, fwd: pd.DataFrame, quantiles: int = 5, period: int = 1
                  ) -> tuple[dict[str, Took], dict[str, object]]:
    """Run the alphalens pipeline; return (time per step, results).

    alphalens prints its data-loss summary and emits pandas warnings: both are silenced.
    """
    secs: dict[str, Took] = {}
    out: dict[str, object] = {}

    def step(name, fn):
        secs[name], out[name] = timed(fn)

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step("get_clean_factor", lambda: al_utils.get_clean_factor(
            fac, fwd, quantiles=quantiles, max_loss=1.0))
        fd = out["get_clean_factor"]
        step("factor_information_coefficient",
             lambda: al_perf.factor_information_coefficient(fd))
        step("mean_return_by_quantile", lambda: al_perf.mean_return_by_quantile(
            fd, by_date=True, demeaned=False))
        step("factor_returns", lambda: al_perf.factor_returns(fd))
        step("quantile_turnover", lambda: al_perf.quantile_turnover(
            fd["factor_quantile"], quantiles, period=period))
        step("factor_rank_autocorrelation",
             lambda: al_perf.factor_rank_autocorrelation(fd, period=period))
    return secs, out


def alphalens_end_to_end(factor: np.ndarray, open_adj: np.ndarray, ctx, split: str,
                                 horizons=HORIZONS, quantiles: int = 5) -> Took:
    """Time of ``get_clean_factor_and_forward_returns`` (alphalens' own labels).

    Prices are the back-adjusted opens shifted one row earlier (``price[t] = open_adj[t+1]``), so
    alphalens' ``price[t+h] / price[t] - 1`` is the same open-to-open label up to its
    forward-filling of missing prices; ``filter_zscore`` is off. Timing only.
    """
    lo, hi = ctx.split_bounds(split)
    ok = common_mask(factor, ctx, horizons)[lo:hi]
    prices = pd.DataFrame(open_adj, index=ctx.dates, columns=ctx.codes).shift(-1)
    idx = pd.MultiIndex.from_product([ctx.dates[lo:hi], ctx.codes], names=["date", "asset"])
    fac = pd.Series(np.where(ok, factor[lo:hi], np.nan).reshape(-1), index=idx).dropna()
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        took, _ = timed(lambda: al_utils.get_clean_factor_and_forward_returns(
            fac, prices, quantiles=quantiles, periods=tuple(horizons), filter_zscore=None,
            max_loss=1.0))
    return took


def ic_agreement(ours: dict[int, np.ndarray], theirs: pd.DataFrame, dates: pd.DatetimeIndex
                 ) -> tuple[float, float, float, float]:
    """Compare daily RankIC series: (max |diff|, mean |diff|, our mean h=1, their mean h=1).

    ``ours[h]`` is the split's daily RankIC (length ``len(dates)``); ``theirs`` is the output
    of ``factor_information_coefficient``. A day defined on one side only counts as a mismatch
    (diff = inf).
    """
    diffs = []
    for h, s in ours.items():
        a = pd.Series(s, index=dates)
        b = theirs[f"{h}D"].reindex(dates)
        both_nan = a.isna() & b.isna()
        d = (a - b).abs().where(~both_nan, 0.0).fillna(np.inf)
        diffs.append(d.to_numpy())
    d = np.concatenate(diffs)
    return (float(d.max()), float(d.mean()), float(np.nanmean(ours[1])),
            float(theirs["1D"].mean()))
