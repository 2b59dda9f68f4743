"""The daily series behind a factor report, their Parquet files and an alphalens export.

:func:`backtest.evaluate.evaluate_factor` with ``keep_series=True`` attaches a
:class:`FactorSeries` to each :class:`~backtest.evaluate.FactorReport` (the GP / LLM hot path
never asks for them). :func:`series_frames` turns the series of several splits into long
tables, :func:`factor_data` builds alphalens' ``factor_data`` layout from the factor panel, and
:func:`save_series` writes a whole folder (``mine eval --save DIR``), staged and renamed into
place (:class:`data.staging.StagedDir`).

Files written by :func:`save_series` (:data:`SERIES_FILES`):

``rank_ic.parquet``
    trade_date, split, rank_ic, ic: the daily RankIC / Pearson IC at the headline horizon.
``quantile_returns.parquet``
    trade_date, split, quantile (1 = lowest factor .. Q), return: equal-weight mean forward
    return (headline horizon, overlapping ``h``-day returns) of each bucket.
``long_short.parquet``
    trade_date, split, long_short: top minus bottom bucket.
``turnover.parquet``
    trade_date, split, turnover: share of the top bucket new that day (NaN on a split's first
    day).
``ic_decay.parquet``
    horizon, split, rank_ic_mean, rank_ic_std, rank_icir, rank_ic_t, n_ic_days: RankIC
    against each label horizon of the context (1, 2, 5, 10, 20; t with ``horizon - 1``
    Newey-West lags).
``rank_ic_by_horizon.parquet``
    trade_date, split, horizon, rank_ic: the daily series behind ``ic_decay``.
``factor_data.parquet``
    alphalens' layout (:func:`factor_data`).
``report.json``
    the metrics as ``mine eval --json`` prints them.

Every row belongs to a split that was evaluated: train and valid, test only when unsealed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from backtest.context import EvalContext
from backtest.metrics_ic import quantile_labels, series_moments, spearman_from_orders
from data.errors import AlphamineError
from data.io import write_json_atomic
from data.staging import StagedDir, clean_stale
from factors.errors import EvaluationError
from factors.row_order import row_orders

__all__ = ["FactorSeries", "SERIES_FILES", "series_frames", "factor_data", "check_save_dir",
           "save_series"]

#: Every file :func:`save_series` writes (``--force`` replaces only a folder of these).
SERIES_FILES = frozenset({
    "rank_ic.parquet", "quantile_returns.parquet", "long_short.parquet", "turnover.parquet",
    "ic_decay.parquet", "rank_ic_by_horizon.parquet", "factor_data.parquet", "report.json"})


@dataclass
class FactorSeries:
    """Daily series of one factor on one split (kept out of ``FactorReport.to_dict``).

    Attributes
    ----------
    split : str
    horizon : int
        Headline label horizon.
    dates : DatetimeIndex, length D
        The split's trading days (after the embargo).
    rank_ic, ic : ndarray, shape (D,)
        Daily Spearman / Pearson IC against ``fwd_h``; NaN on undefined days.
    quantile_returns : ndarray, shape (D, Q)
        Mean ``fwd_h`` per bucket, column 0 = lowest factor.
    long_short : ndarray, shape (D,)
        Last minus first bucket.
    turnover : ndarray, shape (D,)
        Share of the top bucket not in it the day before
        (:func:`backtest.metrics_ic.top_turnover_series`).
    rank_ic_by_horizon : dict of int to ndarray (D,)
        Daily RankIC against every label horizon of the context (``ic_decay`` are their means).
    """

    split: str
    horizon: int
    dates: pd.DatetimeIndex
    rank_ic: np.ndarray
    ic: np.ndarray
    quantile_returns: np.ndarray
    long_short: np.ndarray
    turnover: np.ndarray
    rank_ic_by_horizon: dict


def series_frames(series: Sequence[FactorSeries]) -> dict[str, pd.DataFrame]:
    """Long tables of several splits' series (schemas: module docstring).

    Returns
    -------
    dict of str to DataFrame
        Keys ``rank_ic``, ``quantile_returns``, ``long_short``, ``turnover``, ``ic_decay``,
        ``rank_ic_by_horizon``; rows ordered by split (as given) then date.
    """
    parts: dict[str, list] = {k: [] for k in ("rank_ic", "quantile_returns", "long_short",
                                              "turnover", "ic_decay", "rank_ic_by_horizon")}
    for s in series:
        d = pd.DatetimeIndex(s.dates, name="trade_date")
        base = {"trade_date": d, "split": s.split}
        parts["rank_ic"].append(pd.DataFrame({**base, "rank_ic": s.rank_ic, "ic": s.ic}))
        parts["long_short"].append(pd.DataFrame({**base, "long_short": s.long_short}))
        parts["turnover"].append(pd.DataFrame({**base, "turnover": s.turnover}))
        qr = np.asarray(s.quantile_returns, dtype=np.float64)
        q = qr.shape[1]
        parts["quantile_returns"].append(pd.DataFrame({
            "trade_date": np.repeat(d.values, q), "split": s.split,
            "quantile": np.tile(np.arange(1, q + 1), len(d)), "return": qr.ravel()}))
        for k, v in sorted(s.rank_ic_by_horizon.items()):
            m, sd, ir, t, n = series_moments(v, lags=k - 1)
            parts["ic_decay"].append(pd.DataFrame({
                "horizon": [k], "split": [s.split], "rank_ic_mean": [m], "rank_ic_std": [sd],
                "rank_icir": [ir], "rank_ic_t": [t], "n_ic_days": [n]}))
            parts["rank_ic_by_horizon"].append(pd.DataFrame({**base, "horizon": k,
                                                             "rank_ic": v}))
    empty = {"rank_ic": ["trade_date", "split", "rank_ic", "ic"],
             "quantile_returns": ["trade_date", "split", "quantile", "return"],
             "long_short": ["trade_date", "split", "long_short"],
             "turnover": ["trade_date", "split", "turnover"],
             "ic_decay": ["horizon", "split", "rank_ic_mean", "rank_ic_std", "rank_icir",
                          "rank_ic_t", "n_ic_days"],
             "rank_ic_by_horizon": ["trade_date", "split", "horizon", "rank_ic"]}
    return {k: (pd.concat(v, ignore_index=True) if v else pd.DataFrame(columns=empty[k]))
            for k, v in parts.items()}


def factor_data(values, ctx: EvalContext, splits: Sequence[str] = ("train", "valid"),
                quantiles: int | None = None) -> pd.DataFrame:
    """The factor in alphalens' ``factor_data`` layout.

    Parameters
    ----------
    values : array_like, shape (T, N)
        Factor panel on the context's dates x codes.
    ctx : EvalContext
    splits : sequence of str
        Splits whose rows are exported (the caller decides whether test is allowed).
    quantiles : int, optional
        Buckets; default ``ctx.quantiles``.

    Returns
    -------
    DataFrame
        Index ``(date, asset)`` (names as alphalens'
        ``get_clean_factor_and_forward_returns``), columns one forward return per context
        horizon named ``"<k>D"`` (``"1D"``, ``"5D"``, ``"10D"``, ``"20D"``: the evaluator's
        labels ``ctx.fwd[k]``, open of ``t+1`` to open of ``t+1+k``, not alphalens'
        close-to-close), ``factor`` and ``factor_quantile`` (int 1..Q, the evaluator's
        buckets at the headline horizon, :func:`backtest.metrics_ic.quantile_labels`).
        Rows: names eligible on the day with a finite factor and finite labels at every
        horizon (alphalens drops rows with a missing forward return too), on days with at
        least Q such names at the headline horizon.

    Raises
    ------
    EvaluationError
        On a shape mismatch or an unknown split.
    """
    q = int(ctx.quantiles if quantiles is None else quantiles)
    f = np.ascontiguousarray(values, dtype=np.float64)
    if f.shape != ctx.shape:
        raise EvaluationError(f"factor has shape {f.shape}, expected {ctx.shape}")
    h = ctx.horizon
    hs = sorted(ctx.fwd)
    out = []
    for s in splits:
        lo, hi = ctx.split_bounds(s)
        if hi <= lo:
            continue
        fr, e = f[lo:hi], ctx.eligible[lo:hi]
        of, nf = row_orders(fr)
        oy, ny = ctx.label_order(h)
        _, ranks, counts = spearman_from_orders(fr, of, nf, ctx.fwd[h][lo:hi], oy[lo:hi],
                                                ny[lo:hi], e, want_ranks=True)
        bucket = quantile_labels(ranks, counts, q)
        keep = bucket > 0
        for k in hs:
            keep &= np.isfinite(ctx.fwd[k][lo:hi])
        rr, cc = np.nonzero(keep)
        df = pd.DataFrame({f"{k}D": ctx.fwd[k][lo:hi][rr, cc] for k in hs})
        df["factor"] = fr[rr, cc]
        df["factor_quantile"] = bucket[rr, cc].astype(np.int64)
        df.index = pd.MultiIndex.from_arrays(
            [ctx.dates[lo:hi][rr], pd.Index(ctx.codes)[cc]], names=["date", "asset"])
        out.append(df)
    if not out:
        cols = [f"{k}D" for k in hs] + ["factor", "factor_quantile"]
        return pd.DataFrame(columns=cols, index=pd.MultiIndex.from_arrays(
            [pd.DatetimeIndex([]), pd.Index([], dtype=object)], names=["date", "asset"]))
    return pd.concat(out)


def check_save_dir(path: str | os.PathLike, force: bool = False) -> Path:
    """Check that ``path`` may receive a series folder; return it.

    Raises
    ------
    AlphamineError
        ``path`` is a file; or a non-empty folder without ``force``; or, with ``force``, a
        folder holding anything but :data:`SERIES_FILES` (``--force`` replaces the folder as a
        whole, so it never deletes other files).
    """
    p = Path(path).expanduser()
    if p.is_symlink():
        p = p.resolve()
    if p.exists() and not p.is_dir():
        raise AlphamineError(f"--save {str(p)!r} is a file, not a folder")
    if p.is_dir() and any(p.iterdir()):
        if not force:
            raise AlphamineError(f"--save {str(p)!r} is not empty; choose a new or empty "
                                 f"folder, or pass --force to replace it")
        other = sorted(x.name for x in p.iterdir()
                       if not (x.is_file() and x.name in SERIES_FILES))
        if other:
            raise AlphamineError(f"--save {str(p)!r} holds files mine eval did not write "
                                 f"({', '.join(other[:5])}{' ...' if len(other) > 5 else ''}); "
                                 f"--force only replaces a saved series folder")
    return p


def save_series(path: str | os.PathLike, reports: Mapping, values, ctx: EvalContext,
                report: dict, *, force: bool = False) -> Path:
    """Write a series folder (module docstring) whole: staged, then renamed into place.

    Parameters
    ----------
    path : path
        The folder (see :func:`check_save_dir`).
    reports : mapping of split to FactorReport
        Reports from ``evaluate_factor(..., keep_series=True)``; their splits are the ones
        written (also for ``factor_data``).
    values : array_like, shape (T, N)
        The evaluated factor panel.
    ctx : EvalContext
    report : dict
        Written as ``report.json``.
    force : bool, default False
        Replace an existing series folder.

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    AlphamineError
        A refused folder (:func:`check_save_dir`), a report without series.
    """
    p = check_save_dir(path, force)
    series = []
    for s, r in reports.items():
        if getattr(r, "series", None) is None:
            raise AlphamineError(f"the {s} report holds no daily series "
                                 f"(evaluate with keep_series=True)")
        series.append(r.series)
    q = series[0].quantile_returns.shape[1] if series else ctx.quantiles
    frames = series_frames(series)
    frames["factor_data"] = factor_data(values, ctx, splits=list(reports), quantiles=q)
    p.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(p.parent)
    with StagedDir(p, replace=force) as stage:
        for name, df in frames.items():
            df.to_parquet(stage.path / f"{name}.parquet", index=(name == "factor_data"))
        write_json_atomic(stage.path / "report.json", report)
    return p
