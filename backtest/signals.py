"""The attack layer's scores: four sub-scores per stock per day, their weighted composite, ATR.

Every sub-score is a cross-sectional percentile on ``0..100`` (100 = best) among the
universe's members of the day (point-in-time membership), so they add up on one scale:

factor
    The mined composite of the latest ``mine combine`` run (its ``score.parquet``: the
    IC-weighted members, weights lagged ``horizon + 1`` days, :mod:`backtest.combine`),
    ``100 x cs_rank(score)``. NaN on the days the run does not cover (no run: NaN everywhere,
    with a note).
valuation
    Cheapness within the Shenwan L1 industry: ``100 x (cs_group_rank(ep, industry) +
    cs_group_rank(bp, industry)) / 2`` with ``ep = 1 / pe`` (a loss-maker, pe NaN with a pb,
    gets ``ep = -1``: the dearest) and ``bp = 1 / pb``; a name whose industry has fewer than
    3 valued members that day is ranked across the universe instead (a lone member would
    always score 100). ``pe, pb``: the daily ``pe_ttm, pb``
    of ``daily_basic`` when the warehouse has it, else the embedded quarterly
    ``valuation_quarterly`` snapshots carried forward from their visible day
    (:func:`data.fundamentals.valuation_rows`: point in time).
technical
    ``100 x (cs_rank(MACD) + cs_rank(volume ratio) + cs_rank(breakout)) / 3`` written in the
    factor language (:data:`TECHNICAL`): the MACD(12, 26, 9) histogram over the close, the
    day's volume over its mean of the previous ``volume_window`` days, and the close over the
    highest close of the previous ``breakout_window`` days (> 1: a breakout).
industry
    Shenwan industries' strength. Relative strength (:data:`INDUSTRY`): ``cs_rank(
    cs_group_mean(close / ts_delay(close, industry_window) - 1, industry))``, the industry's
    mean return over the window (its rank is the rank of the return relative to the
    market's). When the warehouse has Tushare ``moneyflow`` (opt-in, ``[tushare]
    extra_datasets``), also fund flow (:data:`INDUSTRY_FLOW`): the industry's net active
    inflow as a share of its traded value over the window, ``sum_i ts_sum(net_mf_amount, W) /
    sum_i ts_sum(amount, W)`` over its members ``i`` (both yuan), written as the ratio of the
    two group means (equal to the ratio of the sums: both means run over the same members,
    the two inputs sharing one NaN pattern), and the sub-score is ``100 x (cs_rank(strength)
    + cs_rank(flow)) / 2``; a name whose industry has no flow that day keeps the strength
    rank alone. Without ``moneyflow``: strength only, with a note.

The composite is ``sum_k w_k s_k / sum_k w_k`` over the sub-scores that are finite for the
stock that day (``[signals] w_*``); NaN when none is. Source: the attack layer of
``reference/system-dev-doc-zh.md`` (进攻层: 多因子打分, 估值, 技术面, 行业强度).

Causality: every panel is computed from rows ``<= t`` (the factor language's ``ts_*``
operators look back only; combine weights are lagged), so truncating the future leaves past
scores unchanged (tests/backtest/test_signals.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from factors.expr_eval import evaluate
from factors.expr_parse import compile_formula

__all__ = ["SignalsConfig", "SUBSCORES", "TECHNICAL", "INDUSTRY", "INDUSTRY_FLOW", "VALUATION",
           "SignalScores",
           "wilder_atr", "technical_score", "industry_score", "valuation_score",
           "factor_score", "composite", "valuation_panels"]

#: Sub-score names, in display order.
SUBSCORES = ("factor", "valuation", "technical", "industry")

#: Technical sub-score in the factor language (windows from ``[signals]``).
TECHNICAL = ("(cs_rank(ts_ema(close, 12) - ts_ema(close, 26) - ts_ema(ts_ema(close, 12) - "
             "ts_ema(close, 26), 9)) + cs_rank(vol / ts_mean(ts_delay(vol, 1), {volume_window}))"
             " + cs_rank(close / ts_max(ts_delay(close, 1), {breakout_window}))) / 3")
#: Industry-strength sub-score in the factor language.
INDUSTRY = ("cs_rank(cs_group_mean(close / ts_delay(close, {industry_window}) - 1, industry))")
#: Industry fund flow in the factor language: net active inflow over traded value of the
#: industry over the window (``net_mf_amount``, ``amount`` in yuan, one NaN pattern).
INDUSTRY_FLOW = ("cs_rank(cs_group_mean(ts_sum(net_mf_amount, {industry_window}), industry) / "
                 "cs_group_mean(ts_sum(amount, {industry_window}), industry))")
#: Valuation sub-score in the factor language (``ep``, ``bp``: :func:`valuation_panels`).
VALUATION = "(cs_group_rank(ep, industry) + cs_group_rank(bp, industry)) / 2"
#: Valuation across the whole universe, for names whose industry is too small to rank in.
VALUATION_ALL = "(cs_rank(ep) + cs_rank(bp)) / 2"


@dataclass(frozen=True)
class SignalsConfig:
    """``[signals]``: the attack layer's weights, thresholds, book and stops (module docstring;
    every default is restated with a comment in ``mine.toml``)."""

    #: Accepted values of the numeric keys (checked by the config loader).
    RANGES: ClassVar[dict] = {
        "w_factor": (0, 100), "w_valuation": (0, 100), "w_technical": (0, 100),
        "w_industry": (0, 100), "buy_threshold": (0, 100), "exit_threshold": (0, 100),
        "max_names": (1, 1000), "max_weight": (0, 1, True), "max_industry_weight": (0, 1, True),
        "atr_window": (2, 250), "k_stop": (0, 50, True), "k_tp": (0, 50, True),
        "volume_window": (1, 250), "breakout_window": (1, 250), "industry_window": (1, 250),
        "lookback": (1, 5000)}

    universe: str = "csi300"
    w_factor: float = 0.4
    w_valuation: float = 0.2
    w_technical: float = 0.2
    w_industry: float = 0.2
    buy_threshold: float = 75.0
    exit_threshold: float = 45.0
    max_names: int = 20
    max_weight: float = 0.05
    max_industry_weight: float = 0.3
    atr_window: int = 14
    k_stop: float = 2.0
    k_tp: float = 4.0
    volume_window: int = 5
    breakout_window: int = 20
    industry_window: int = 20
    lookback: int = 250
    combine_run: str = ""
    notify: bool = True

    def __post_init__(self) -> None:
        if self.exit_threshold > self.buy_threshold:
            raise ValueError(f"exit_threshold ({self.exit_threshold:g}) must not exceed "
                             f"buy_threshold ({self.buy_threshold:g})")
        if sum(self.weights.values()) <= 0:
            raise ValueError("w_factor + w_valuation + w_technical + w_industry must be > 0")

    @property
    def weights(self) -> dict:
        """Sub-score name -> weight."""
        return {"factor": self.w_factor, "valuation": self.w_valuation,
                "technical": self.w_technical, "industry": self.w_industry}

    @property
    def slot_weight(self) -> float:
        """Target weight of one buy: ``min(1 / max_names, max_weight)``."""
        return min(1.0 / self.max_names, self.max_weight)


@dataclass
class SignalScores:
    """Sub-score and composite panels, ``(T, N)`` float64 on ``0..100`` (NaN: not scored).

    Attributes
    ----------
    dates : DatetimeIndex (T,); codes : Index (N,)
    scores : dict
        ``name -> (T, N)`` for every name of :data:`SUBSCORES`.
    composite : ndarray (T, N)
    notes : list of str
        What was skipped or approximated (fund flow, no combine run, quarterly valuation).
    """

    dates: pd.DatetimeIndex
    codes: pd.Index
    scores: dict
    composite: np.ndarray
    notes: list = field(default_factory=list)


def wilder_atr(high, low, close, window: int = 14) -> np.ndarray:
    """Wilder's average true range, per stock over its own bars.

    ``TR_t = max(H_t - L_t, |H_t - C_prev|, |L_t - C_prev|)`` (``H - L`` on a stock's first
    bar); the first ATR is the mean of the first ``window`` TRs, then ``ATR_t = (ATR_prev x
    (window - 1) + TR_t) / window``.

    Parameters
    ----------
    high, low, close : ndarray (T, N)
        Prices on one scale (use adjusted prices across ex-dates), NaN = no bar.
    window : int
        ``n`` of ATR(n), ``>= 1``.

    Returns
    -------
    ndarray (T, N) float64
        Same units as the prices; NaN on days without a bar and before a stock's
        ``window``-th bar. Row ``t`` reads rows ``<= t`` only.

    Raises
    ------
    ValueError
        Shapes differ or ``window < 1``.

    Notes
    -----
    Source: J. W. Wilder, *New Concepts in Technical Trading Systems* (1978), ch. 2.
    """
    h, lo, c = (np.asarray(a, dtype=np.float64) for a in (high, low, close))
    if not (h.shape == lo.shape == c.shape) or h.ndim != 2:
        raise ValueError(f"high, low, close must be (T, N) of one shape, got {h.shape}, "
                         f"{lo.shape}, {c.shape}")
    if int(window) != window or window < 1:
        raise ValueError(f"window must be an integer >= 1, got {window!r}")
    T, N = h.shape
    out = np.full((T, N), np.nan)
    prev = np.full(N, np.nan)
    count = np.zeros(N, dtype=np.int64)
    acc = np.zeros(N)
    for t in range(T):
        ok = np.isfinite(h[t]) & np.isfinite(lo[t]) & np.isfinite(c[t])
        tr = h[t] - lo[t]
        hp = np.isfinite(prev)
        tr = np.where(hp, np.fmax(tr, np.fmax(np.abs(h[t] - prev), np.abs(lo[t] - prev))), tr)
        count = count + ok
        warm = ok & (count <= window)
        acc = np.where(warm, acc + np.where(ok, tr, 0.0), acc)
        first = ok & (count == window)
        acc = np.where(first, acc / window, acc)
        later = ok & (count > window)
        acc = np.where(later, (acc * (window - 1) + np.where(ok, tr, 0.0)) / window, acc)
        out[t] = np.where(ok & (count >= window), acc, np.nan)
        prev = np.where(ok, c[t], prev)
    return out


def _eval(text: str, data: dict, mask) -> np.ndarray:
    return evaluate(compile_formula(text, fields=set(data)), data, mask=mask)


def technical_score(close, vol, mask=None, *, volume_window: int = 5,
                    breakout_window: int = 20) -> np.ndarray:
    """Technical sub-score ``0..100`` (:data:`TECHNICAL`; module docstring).

    Parameters
    ----------
    close : ndarray (T, N)
        Adjusted close.
    vol : ndarray (T, N)
        Volume (any unit; only ratios matter).
    mask : ndarray of bool (T, N), optional
        Universe membership for the cross-sectional ranks.

    Returns
    -------
    ndarray (T, N); NaN outside ``mask`` and during the indicators' warm-up.
    """
    f = TECHNICAL.format(volume_window=volume_window, breakout_window=breakout_window)
    return 100.0 * _eval(f, {"close": close, "vol": vol}, mask)


def industry_score(close, industry, mask=None, *, window: int = 20, net_mf=None,
                   amount=None) -> np.ndarray:
    """Industry-strength sub-score ``0..100``: relative strength (:data:`INDUSTRY`) and, given
    ``net_mf`` and ``amount``, fund flow (:data:`INDUSTRY_FLOW`); module docstring.

    Parameters
    ----------
    close : ndarray (T, N)
        Adjusted close.
    industry : ndarray (T, N)
        Point-in-time industry codes (:meth:`data.manager.DataManager.industry`).
    mask : ndarray of bool (T, N), optional
        Universe membership: only members are scored and counted in the industry sums.
    window : int
        ``W`` of the return and of the flow sums (trading days; each stock's own bars).
    net_mf, amount : ndarray (T, N), optional
        Net active inflow (``net_mf_amount``, yuan, Tushare ``moneyflow``) and traded value
        (``amount``, yuan); both or neither. A cell missing in either is missing in both (so
        the industry ratio is a ratio of sums over the same stock-days).

    Returns
    -------
    ndarray (T, N)
        Every member of an industry gets the industry's score. With fund flow: ``100 x
        (cs_rank(strength) + cs_rank(flow)) / 2``, the strength rank alone where the flow
        rank is NaN; without: ``100 x cs_rank(strength)``. NaN outside ``mask`` and during
        the warm-up. Row ``t`` reads rows ``<= t`` only.

    Raises
    ------
    ValueError
        Only one of ``net_mf`` / ``amount`` given.
    """
    ind = np.asarray(industry, np.float64)
    strength = _eval(INDUSTRY.format(industry_window=window), {"close": close, "industry": ind},
                     mask)
    if net_mf is None and amount is None:
        return 100.0 * strength
    if net_mf is None or amount is None:
        raise ValueError("industry_score: give both net_mf and amount, or neither")
    mf, amt = np.asarray(net_mf, np.float64), np.asarray(amount, np.float64)
    ok = np.isfinite(mf) & np.isfinite(amt)
    flow = _eval(INDUSTRY_FLOW.format(industry_window=window),
                 {"net_mf_amount": np.where(ok, mf, np.nan), "amount": np.where(ok, amt, np.nan),
                  "industry": ind}, mask)
    return 100.0 * np.where(np.isfinite(flow), (strength + flow) / 2.0, strength)


def valuation_score(pe, pb, industry, mask=None, *, min_group: int = 3) -> np.ndarray:
    """Valuation sub-score ``0..100``: cheap within the industry is high (module docstring).

    Parameters
    ----------
    pe, pb : ndarray (T, N)
        Point-in-time ratios (NaN pe with a finite pb = a loss-maker).
    industry : ndarray (T, N)
    mask : ndarray of bool (T, N), optional
    min_group : int
        Industries with fewer valued members on a day rank their names across the universe
        (:data:`VALUATION_ALL`).

    Returns
    -------
    ndarray (T, N); NaN where pb is missing.
    """
    pe = np.asarray(pe, np.float64)
    pb = np.asarray(pb, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ep = np.where(pe > 0, 1.0 / pe, np.where(np.isfinite(pb), -1.0, np.nan))
        bp = np.where(pb > 0, 1.0 / pb, np.nan)
    ind = np.asarray(industry, np.float64)
    data = {"ep": ep, "bp": bp, "industry": ind}
    grp = _eval(VALUATION, data, mask)
    whole = _eval(VALUATION_ALL, {"ep": ep, "bp": bp}, mask)
    ok = np.isfinite(bp) & np.isfinite(ind) & (True if mask is None else np.asarray(mask, bool))
    T = ok.shape[0]
    g = np.where(ok, ind, 0).astype(np.int64)
    G = int(g.max()) + 1 if g.size else 1
    key = np.arange(T)[:, None] * G + g
    size = np.bincount(key[ok], minlength=T * G)[key]
    return 100.0 * np.where(size >= min_group, grp, whole)


def factor_score(score, mask=None) -> np.ndarray:
    """Factor sub-score ``0..100``: ``100 x cs_rank(score)`` of the combine composite."""
    return 100.0 * _eval("cs_rank(s)", {"s": np.asarray(score, np.float64)}, mask)


def composite(scores: dict, weights: dict) -> np.ndarray:
    """``sum w_k s_k / sum w_k`` over the finite sub-scores of each cell (NaN: none finite).

    Parameters
    ----------
    scores : dict of name -> ndarray (T, N)
    weights : dict of name -> float (>= 0; a name absent or 0 plays no part)
    """
    num = den = None
    for k, s in scores.items():
        w = float(weights.get(k, 0.0))
        if w <= 0:
            continue
        s = np.asarray(s, np.float64)
        ok = np.isfinite(s)
        a, b = np.where(ok, w * s, 0.0), np.where(ok, w, 0.0)
        num, den = (a, b) if num is None else (num + a, den + b)
    if num is None:
        raise ValueError("composite: no sub-score with a positive weight")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def valuation_panels(dm, dates, codes) -> tuple[np.ndarray, np.ndarray, str]:
    """Point-in-time ``pe, pb`` panels ``(T, N)`` and their source.

    ``daily_basic`` (``pe_ttm``, ``pb``, daily) when the warehouse has it; else the quarterly
    ``valuation_quarterly`` snapshots, each carried forward from its ``visible_date`` (a
    snapshot is never used before that day). All-NaN when neither exists.
    """
    dates = pd.DatetimeIndex(dates)
    codes = pd.Index(codes)
    if dm.has_dataset("daily_basic"):
        p = dm.panels(["pe_ttm", "pb"], dates[0], dates[-1], codes=codes)
        return (p["pe_ttm"].to_numpy(np.float64), p["pb"].to_numpy(np.float64),
                "daily_basic pe_ttm / pb")
    vq = dm.valuation_quarterly(codes)
    T, N = len(dates), len(codes)
    pe, pb = np.full((T, N), np.nan), np.full((T, N), np.nan)
    if len(vq):
        vq = vq.sort_values(["visible_date", "quarter"])
        ti = dates.searchsorted(pd.DatetimeIndex(vq["visible_date"]), side="left")
        ci = codes.get_indexer(vq["ts_code"])
        ok = ci >= 0
        # rows visible before the window start are placed on its first day
        for arr, col in ((pe, "pe"), (pb, "pb")):
            v = vq[col].to_numpy(np.float64)
            keep = ok & (ti < T)
            arr[ti[keep], ci[keep]] = v[keep]
            stamp = np.zeros((T, N), dtype=bool)
            stamp[ti[keep], ci[keep]] = True
            arr[:] = _ffill_stamped(arr, stamp)
    return pe, pb, "valuation_quarterly (quarterly snapshots, carried forward)"


def _ffill_stamped(arr: np.ndarray, stamp: np.ndarray) -> np.ndarray:
    """Carry each stamped cell forward down its column (a stamped NaN resets it)."""
    T = arr.shape[0]
    idx = np.where(stamp, np.arange(T)[:, None], -1)
    last = np.maximum.accumulate(idx, axis=0)
    out = np.take_along_axis(arr, np.maximum(last, 0), axis=0)
    out[last < 0] = np.nan
    return out
