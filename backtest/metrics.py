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

Deflated Sharpe ratio (:func:`deflated_sharpe`; Bailey & Lopez de Prado 2014, "The Deflated
Sharpe Ratio: Correcting for Selection Bias, Backtest Overfitting and Non-Normality", Journal of
Portfolio Management 40(5), 94-107), on per-period (daily, not annualised) quantities:

* ``SR = mean(r) / std(r, ddof=1)`` over ``T`` daily returns, skewness ``g3`` and (non-excess)
  kurtosis ``g4`` of ``r`` (sample moments, normal: 0 and 3)
* probabilistic Sharpe ratio ``PSR(SR*) = Phi((SR - SR*) sqrt(T - 1) /
  sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2))``
* expected maximum Sharpe ratio of ``N`` independent trials with zero true Sharpe and variance
  ``V`` of their estimates: ``SR0 = sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma
  Phi^-1(1 - 1/(N e)))``, ``gamma`` = Euler-Mascheroni constant; ``SR0 = 0`` for ``N = 1``
* ``DSR = PSR(SR0)``: the probability that the true Sharpe ratio exceeds what the best of
  ``N`` skill-less trials would show.
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


# ------------------------------------------------------------------- deflated Sharpe ratio
#: Euler-Mascheroni constant.
EULER_GAMMA = 0.5772156649015329


def expected_max_sharpe(n_trials: int, sr_var: float) -> float:
    """``SR0``: expected maximum Sharpe ratio of ``n_trials`` skill-less trials (module docstring).

    Parameters
    ----------
    n_trials : int
        Number of independent strategies tried, ``N >= 1``.
    sr_var : float
        Variance of the trials' (per-period) Sharpe ratio estimates, ``>= 0``.

    Returns
    -------
    float
        ``0`` for ``N = 1`` or ``V = 0``; in the units of the Sharpe ratios.

    Raises
    ------
    BacktestError
        ``n_trials < 1`` or a negative / non-finite ``sr_var``.
    """
    from scipy.stats import norm

    if isinstance(n_trials, bool) or int(n_trials) != n_trials or n_trials < 1:
        raise BacktestError(f"n_trials must be an integer >= 1, got {n_trials!r}")
    if not (math.isfinite(sr_var) and sr_var >= 0):
        raise BacktestError(f"sr_var must be finite and >= 0, got {sr_var!r}")
    n = int(n_trials)
    if n == 1 or sr_var == 0:
        return 0.0
    z = norm.ppf([1.0 - 1.0 / n, 1.0 - 1.0 / (n * math.e)])
    return float(math.sqrt(sr_var) * ((1.0 - EULER_GAMMA) * z[0] + EULER_GAMMA * z[1]))


def probabilistic_sharpe(sr: float, sr_star: float, n_obs: int, skew: float = 0.0,
                         kurt: float = 3.0) -> float:
    """``PSR(SR*)``: probability that the true Sharpe ratio exceeds ``sr_star`` (module docstring).

    ``sr``, ``sr_star`` per period; ``n_obs`` = number of returns ``T``; ``skew`` and ``kurt``
    (non-excess) of the returns. NaN for ``T < 2``, a non-finite input or a non-positive
    variance term ``1 - g3 SR + (g4 - 1) / 4 SR^2``.
    """
    from scipy.stats import norm

    vals = (sr, sr_star, skew, kurt)
    if n_obs < 2 or not all(math.isfinite(v) for v in vals):
        return math.nan
    denom = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    if not denom > 0:
        return math.nan
    return float(norm.cdf((sr - sr_star) * math.sqrt(n_obs - 1.0) / math.sqrt(denom)))


@dataclass
class DeflatedSharpe:
    """The deflated Sharpe ratio of one backtest and its inputs (module docstring).

    ``sharpe``, ``sr0`` and ``sr_var`` are per period (daily); ``sharpe_annual`` is
    ``sharpe * sqrt(252)``. ``sr_var_source`` says where ``sr_var`` came from: ``"trials"``
    (sample variance, ddof=1, of the ``n_trials`` recorded trials' Sharpe ratios) or ``"null"``
    (fewer than 2 finite trial Sharpe ratios: ``1 / (T - 1)``, the variance of the Sharpe ratio
    estimate of one normal strategy with zero true Sharpe; with ``N = 1`` it does not matter,
    ``SR0 = 0``). ``psr0`` is ``PSR(0)``, the single-trial probability of a positive Sharpe.
    """

    sharpe: float
    sharpe_annual: float
    n_obs: int
    skew: float
    kurtosis: float
    n_trials: int
    sr_var: float
    sr_var_source: str
    sr0: float
    dsr: float
    psr0: float

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}


def deflated_sharpe(returns, n_trials: int, trial_sharpes=None) -> DeflatedSharpe:
    """Deflated Sharpe ratio of a daily return series after ``n_trials`` strategies were tried.

    Parameters
    ----------
    returns : array_like of float
        Daily simple returns of the selected strategy (non-finite values dropped).
    n_trials : int
        Distinct strategies tried, this one included (``N >= 1``).
    trial_sharpes : array_like of float, optional
        Daily Sharpe ratio of each trial; their sample variance is ``V`` when at least 2 are
        finite, else ``V = 1 / (T - 1)`` (see :class:`DeflatedSharpe`).

    Returns
    -------
    DeflatedSharpe
        NaN ``sharpe`` / ``dsr`` when fewer than 2 returns or zero volatility.

    Raises
    ------
    BacktestError
        ``n_trials < 1``.
    """
    from scipy.stats import kurtosis, skew

    r = np.asarray(returns, dtype=np.float64).ravel()
    r = r[np.isfinite(r)]
    t = int(r.size)
    sd = float(r.std(ddof=1)) if t > 1 else math.nan
    sr = float(r.mean()) / sd if sd > 0 else math.nan
    g3 = float(skew(r)) if sd > 0 else math.nan
    g4 = float(kurtosis(r, fisher=False)) if sd > 0 else math.nan
    ts = np.asarray([] if trial_sharpes is None else trial_sharpes, dtype=np.float64).ravel()
    ts = ts[np.isfinite(ts)]
    if ts.size >= 2:
        var, source = float(ts.var(ddof=1)), "trials"
    else:
        var, source = (1.0 / (t - 1) if t > 1 else math.nan), "null"
    sr0 = expected_max_sharpe(n_trials, var) if math.isfinite(var) else math.nan
    return DeflatedSharpe(
        sharpe=sr, sharpe_annual=sr * math.sqrt(ANNUAL_DAYS), n_obs=t, skew=g3, kurtosis=g4,
        n_trials=int(n_trials), sr_var=var, sr_var_source=source, sr0=sr0,
        dsr=probabilistic_sharpe(sr, sr0, t, g3, g4), psr0=probabilistic_sharpe(sr, 0.0, t, g3, g4))


__all__ = ["ANNUAL_DAYS", "Performance", "performance", "drawdown", "benchmark_nav",
           "yearly_table", "EULER_GAMMA", "DeflatedSharpe", "deflated_sharpe",
           "expected_max_sharpe", "probabilistic_sharpe"]
