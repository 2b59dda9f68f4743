"""Performance of an account NAV: returns, risk, drawdown, turnover, benchmark-relative metrics.

Definitions (``r_t = NAV_t / NAV_{t-1} - 1`` daily simple returns, ``n`` = number of them,
252 trading days a year, risk-free rate 0)

* total return ``NAV_end / NAV_start - 1``; annualised return ``(1 + total)^(252 / n) - 1``
* annualised volatility ``std(r, ddof=1) * sqrt(252)``
* Sharpe ``mean(r) / std(r, ddof=1) * sqrt(252)``
* drawdown ``DD_t = NAV_t / max_{s<=t} NAV_s - 1``; max drawdown ``min_t DD_t`` (<= 0), with
  the peak day, the trough day and the recovery day (first close back at the peak; None if
  not recovered)
* Calmar ``annualised return / |max drawdown|``
* win rate: share of days with ``r_t > 0`` among days with ``r_t != 0``
* turnover (annualised, one-sided) ``sum(traded value) / 2 / mean(NAV) * 252 / n``
* against a benchmark with daily returns ``b_t`` (index close-to-close, same days):
  excess return = annualised return - benchmark annualised return; active return
  ``a_t = r_t - b_t``; tracking error ``std(a, ddof=1) * sqrt(252)``; information ratio
  ``mean(a) / std(a, ddof=1) * sqrt(252)``

The NAV's first value is the starting point (no return on the first day). All metrics are
vectorised numpy over the whole series; :func:`yearly_table` applies the same definitions to
each calendar year (the year's first return is measured from the previous year's last NAV).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from backtest.errors import BacktestError

#: Trading days per year.
ANNUAL_DAYS = 252


@dataclass
class Performance:
    """Summary metrics of one NAV series (definitions: module docstring). NaN = undefined."""

    start: str
    end: str
    n_days: int
    total_return: float
    annual_return: float
    annual_vol: float
    sharpe: float
    max_drawdown: float
    max_dd_peak: str | None
    max_dd_trough: str | None
    max_dd_recovery: str | None
    calmar: float
    win_rate: float
    turnover: float
    benchmark: str | None = None
    benchmark_annual_return: float = math.nan
    excess_return: float = math.nan
    tracking_error: float = math.nan
    information_ratio: float = math.nan

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}


def _nav(nav) -> pd.Series:
    if not isinstance(nav, pd.Series):
        raise BacktestError("nav must be a pandas Series indexed by trade_date")
    s = nav.astype(np.float64).dropna()
    if len(s) < 2:
        raise BacktestError(f"nav needs at least 2 finite values, got {len(s)}")
    if (s <= 0).any():
        raise BacktestError("nav must stay positive")
    return s


def _annual(total: float, n: int) -> float:
    return (1.0 + total) ** (ANNUAL_DAYS / n) - 1.0 if n > 0 and total > -1 else math.nan


def _sharpe(r: np.ndarray) -> float:
    if r.size < 2:
        return math.nan
    sd = r.std(ddof=1)
    return float(r.mean() / sd * math.sqrt(ANNUAL_DAYS)) if sd > 0 else math.nan


def drawdown(nav) -> pd.Series:
    """Drawdown series ``NAV_t / running max - 1`` (<= 0), same index as ``nav``."""
    s = _nav(nav)
    return s / s.cummax() - 1.0


def _max_dd(s: pd.Series) -> tuple[float, str | None, str | None, str | None]:
    v = s.to_numpy()
    peak = np.maximum.accumulate(v)
    dd = v / peak - 1.0
    it = int(np.argmin(dd))
    if dd[it] >= 0:
        return 0.0, None, None, None
    ip = int(np.argmax(v[:it + 1]))
    after = np.flatnonzero(v[it:] >= v[ip])
    rec = str(s.index[it + after[0]].date()) if after.size else None
    return float(dd[it]), str(s.index[ip].date()), str(s.index[it].date()), rec


def benchmark_nav(dm, code: str, dates) -> pd.Series:
    """Benchmark closes on ``dates`` from :meth:`data.manager.DataManager.index_daily`.

    Raises
    ------
    DataError
        Unknown index code (the message lists the available ones).
    """
    dates = pd.DatetimeIndex(dates)
    df = dm.index_daily(code, dates[0], dates[-1])
    return df["close"].reindex(dates).ffill().rename(code)


def performance(nav, *, trades: pd.DataFrame | None = None, benchmark=None,
                benchmark_name: str | None = None) -> Performance:
    """Summary metrics of an account NAV (definitions: module docstring).

    Parameters
    ----------
    nav : Series
        NAV in yuan (or any positive scale), index trade_date ascending; NaN rows dropped.
    trades : DataFrame, optional
        Fills with a ``value`` column in yuan (:attr:`backtest.simulate.SimResult.trades`);
        without it turnover is NaN.
    benchmark : Series, optional
        Benchmark level (e.g. index close) on the same dates; aligned on ``nav``'s index and
        forward-filled.
    benchmark_name : str, optional

    Returns
    -------
    Performance

    Raises
    ------
    BacktestError
        Fewer than 2 NAV values or a non-positive NAV.
    """
    s = _nav(nav)
    v = s.to_numpy()
    r = v[1:] / v[:-1] - 1.0
    n = r.size
    total = float(v[-1] / v[0] - 1.0)
    ann = _annual(total, n)
    vol = float(r.std(ddof=1) * math.sqrt(ANNUAL_DAYS)) if n > 1 else math.nan
    mdd, peak, trough, rec = _max_dd(s)
    moved = r[r != 0]
    turnover = math.nan
    if trades is not None and "value" in trades:
        tv = float(np.abs(trades["value"].to_numpy(np.float64)).sum())
        turnover = tv / 2.0 / float(v.mean()) * ANNUAL_DAYS / n
    out = Performance(
        start=str(s.index[0].date()), end=str(s.index[-1].date()), n_days=n,
        total_return=total, annual_return=ann, annual_vol=vol, sharpe=_sharpe(r),
        max_drawdown=mdd, max_dd_peak=peak, max_dd_trough=trough, max_dd_recovery=rec,
        calmar=ann / abs(mdd) if mdd < 0 else math.nan,
        win_rate=float((moved > 0).mean()) if moved.size else math.nan, turnover=turnover)
    if benchmark is not None:
        b = pd.Series(benchmark).astype(np.float64).reindex(s.index).ffill().to_numpy()
        if np.isfinite(b).all() and (b > 0).all():
            rb = b[1:] / b[:-1] - 1.0
            a = r - rb
            out.benchmark = benchmark_name or getattr(benchmark, "name", None)
            out.benchmark_annual_return = _annual(float(b[-1] / b[0] - 1.0), n)
            out.excess_return = ann - out.benchmark_annual_return
            out.tracking_error = float(a.std(ddof=1) * math.sqrt(ANNUAL_DAYS)) if n > 1 \
                else math.nan
            out.information_ratio = _sharpe(a)
    return out


def yearly_table(nav, benchmark=None, *, splits: Mapping[str, tuple] | None = None
                 ) -> pd.DataFrame:
    """Per-calendar-year metrics of a NAV (and a benchmark).

    Parameters
    ----------
    nav : Series
        Account NAV, index trade_date.
    benchmark : Series, optional
        Benchmark level on the same dates.
    splits : mapping of str to (start, end), optional
        Evaluation splits (``[evaluate] train/valid/test``); adds ``period``, the split of the
        year's first and last day (``"valid/test"`` for a year that straddles two, ``"-"``
        outside every split).

    Returns
    -------
    DataFrame
        Index year; columns ``return`` (the year's compounded return), ``vol``, ``sharpe``,
        ``max_drawdown`` (within the year), ``n_days``, and with a benchmark ``bench_return``,
        ``excess``, ``ir``; ``period`` when ``splits`` are given.
    """
    s = _nav(nav)
    v = s.to_numpy()
    r = pd.Series(v[1:] / v[:-1] - 1.0, index=s.index[1:])
    df = pd.DataFrame({"r": r})
    if benchmark is not None:
        b = pd.Series(benchmark).astype(np.float64).reindex(s.index).ffill()
        df["a"] = r - (b / b.shift(1) - 1.0).iloc[1:]
        df["b"] = (b / b.shift(1) - 1.0).iloc[1:]
    df["lr"] = np.log1p(df["r"])
    year = df.index.year
    g = df.groupby(year)
    out = pd.DataFrame({"return": np.expm1(g["lr"].sum()),
                        "vol": g["r"].std(ddof=1) * math.sqrt(ANNUAL_DAYS),
                        "n_days": g["r"].size()})
    out["sharpe"] = g["r"].mean() / g["r"].std(ddof=1) * math.sqrt(ANNUAL_DAYS)
    # within-year drawdown: running peak restarts at the previous year's last NAV
    wealth = np.exp(g["lr"].cumsum())
    peak = np.maximum(wealth.groupby(year).cummax(), 1.0)
    out["max_drawdown"] = (wealth / peak - 1.0).groupby(year).min()
    if benchmark is not None:
        out["bench_return"] = np.expm1(np.log1p(df["b"]).groupby(year).sum())
        out["excess"] = out["return"] - out["bench_return"]
        out["ir"] = g["a"].mean() / g["a"].std(ddof=1) * math.sqrt(ANNUAL_DAYS)
    if splits:
        days = pd.Series(df.index, index=df.index)
        first, last = days.groupby(year).min(), days.groupby(year).max()

        def label(d: pd.Timestamp) -> str:
            for name, (lo, hi) in splits.items():
                if pd.Timestamp(lo) <= d <= pd.Timestamp(hi):
                    return name
            return "-"

        out["period"] = [label(f) if label(f) == label(e) else f"{label(f)}/{label(e)}"
                         for f, e in zip(first, last)]
    out.index.name = "year"
    return out


__all__ = ["ANNUAL_DAYS", "Performance", "performance", "drawdown", "benchmark_nav",
           "yearly_table"]
