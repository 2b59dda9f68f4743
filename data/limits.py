"""A-share price-limit and tradability rules on ``(T, N)`` arrays (pure functions).

Private helpers of :class:`data.manager.DataManager` (its ``limit_prices`` and
``tradable_mask`` are the public interface) and of :mod:`backtest.rules` (:func:`boards`).

Price limits
------------
The exchanges' daily price-limit rule (SSE / SZSE trading rules; ChiNext reform of
2020-08-24; STAR Market since it opened on 2019-07-22): a trade may not print above
``limit-up`` or below ``limit-down`` of the day.
``limit = round_half_up(pre_close x (1 +- pct), 0.01)`` computed in integer cents, with pct by
board and date: main board (60xxxx, 000/001/002/003) 10%; ST main board 5%; ChiNext (30xxxx)
10% before 2020-08-24 and 20% from that day; STAR (68xxxx) 20%. ST is the caller's, per code or
per (date, code): the manager passes its dated ST panel (``namechange``), or on the embedded
snapshot ``is_st_latest``, the CURRENT status, for every date. No limit on a new
listing's first days, counted in trading days from ``list_date``: 5 days for STAR, ChiNext
listed from 2020-08-24 and main board listed from 2023-04-10 (registration system); otherwise
the first day only (its +44% / -36% cap is treated as no limit). Not modelled: delisting-period
and resumption-after-restructuring special rules; the Beijing Stock Exchange's 30% (the
warehouse holds no BSE stocks; a BSE code would count as main board).

Tradability at the open (:func:`trade_flags`; the rule of ``DataManager.tradable_mask``)
----------------------------------------------------------------------------------------
Decided by the day's raw OPEN against its limit prices, in cents, never by its high / low:
the open-auction price is what an order at the open meets, and an order at the limit cannot
expect a fill in the queue there. A name with a bar is

* ``buy``-able when ``open < limit-up`` (a stock opening at limit-down, even one-price locked
  there, can be bought);
* ``sell``-able when ``open > limit-down``;
* tradable on both sides (``both``, the evaluator's rule: its long-short portfolio needs
  either side) when ``limit-down < open < limit-up``, strictly.

A stock opening at limit-up and trading lower during the day is therefore not buyable; a name
without a limit (NaN limit: a new listing's first days) counts as inside its limits. No bar
(suspended, not listed) is never tradable.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["CHINEXT_REFORM", "MAIN_BOARD_REGISTRATION", "boards", "listing_age",
           "limit_cents", "trade_flags"]

CHINEXT_REFORM = pd.Timestamp("2020-08-24")
MAIN_BOARD_REGISTRATION = pd.Timestamp("2023-04-10")


def _board(codes: pd.Index) -> np.ndarray:
    """'main' / 'chinext' / 'star' per code, from the code prefix."""
    s = pd.Index(codes).astype(str)
    return np.where(s.str.startswith("30"), "chinext",
                    np.where(s.str.startswith("68"), "star", "main"))


def boards(codes) -> np.ndarray:
    """Board of each code from its prefix: ``30`` ChiNext, ``68`` STAR, otherwise main board.

    Parameters
    ----------
    codes : sequence of str
        Tushare codes (``600000.SH``).

    Returns
    -------
    ndarray of str
        ``"main"``, ``"chinext"`` or ``"star"`` per code (BSE codes count as main board).
    """
    return _board(pd.Index(codes))


def listing_age(all_open: pd.DatetimeIndex, list_dates: pd.DatetimeIndex,
                dates: pd.DatetimeIndex) -> np.ndarray:
    """Trading days since ``list_date`` per (date, code); 0 on the listing day.

    Parameters
    ----------
    all_open : DatetimeIndex
        Every open day of the exchange calendar, ascending (the counting calendar).
    list_dates : DatetimeIndex (N,)
        List date per code; NaT = unknown.
    dates : DatetimeIndex (T,)
        The rows.

    Returns
    -------
    ndarray (T, N) int64
        Stocks listed before ``all_open[0]`` (or with an unknown list date) get
        ``np.iinfo(np.int32).max``.
    """
    lpos = all_open.searchsorted(list_dates, side="left").astype(np.int64)
    old = (list_dates < all_open[0]) | list_dates.isna()
    dpos = all_open.searchsorted(dates, side="left").astype(np.int64)
    age = dpos[:, None] - lpos[None, :]
    age[:, np.asarray(old)] = np.iinfo(np.int32).max
    return age


def limit_cents(pre_close: np.ndarray, codes: pd.Index, st: np.ndarray,
                dates: pd.DatetimeIndex, age: np.ndarray, list_dates: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Limit-up / limit-down prices in cents (rules: module docstring).

    Parameters
    ----------
    pre_close : ndarray (T, N) float64
        Raw previous close in yuan; NaN = no bar.
    codes : Index (N,)
        Tushare codes (board from the prefix).
    st : bool ndarray (N,) or (T, N)
        ST flag per code (applied to every date) or per (date, code).
    dates : DatetimeIndex (T,)
    age : ndarray (T, N)
        Listing age from :func:`listing_age`.
    list_dates : datetime64[ns] ndarray (N,)

    Returns
    -------
    (up, down) : tuple of ndarray (T, N) float64
        Cents, rounded half-up; NaN where there is no bar or no limit (a new listing's first
        days).
    """
    board = _board(codes)
    after = np.asarray(dates >= CHINEXT_REFORM)[:, None]
    st = np.asarray(st, dtype=bool)
    st = st[None, :] if st.ndim == 1 else st
    pct = np.where((board == "star")[None, :], 20,
                   np.where(st & (board == "main")[None, :], 5, 10))
    pct = np.where((board == "chinext")[None, :] & after, 20, pct)
    free_days = np.where(
        (board == "star") | ((board == "chinext") & (list_dates >= CHINEXT_REFORM.asm8))
        | ((board == "main") & (list_dates >= MAIN_BOARD_REGISTRATION.asm8)), 5, 1)
    unlimited = (age >= 0) & (age < free_days[None, :])
    ok = ~np.isnan(pre_close) & ~unlimited
    cents = np.round(np.where(ok, pre_close, 0.0) * 100.0).astype(np.int64)
    up = ((cents * (100 + pct) + 50) // 100).astype(np.float64)
    down = ((cents * (100 - pct) + 50) // 100).astype(np.float64)
    up[~ok] = np.nan
    down[~ok] = np.nan
    return up, down


def trade_flags(raw: dict[str, np.ndarray], up: np.ndarray, down: np.ndarray
                ) -> dict[str, np.ndarray]:
    """Open-auction tradability flags from the raw open and the limit prices (module docstring).

    Parameters
    ----------
    raw : dict of str -> ndarray (T, N) float64
        Raw ``open`` and ``close`` in yuan; NaN close = no bar.
    up, down : ndarray (T, N) float64
        Limit-up / limit-down prices in cents (:func:`limit_cents`); NaN = no limit.

    Returns
    -------
    dict of str -> bool ndarray (T, N)
        ``bar`` (has a bar), ``buy`` (bar and open below limit-up; no limit: True), ``sell``
        (bar and open above limit-down; no limit: True). Both sides: ``buy & sell``.
    """
    bar = ~np.isnan(raw["close"])
    opn = np.round(np.where(bar, raw["open"], 0.0) * 100.0)
    with np.errstate(invalid="ignore"):
        buy = bar & ~(opn >= up)
        sell = bar & ~(opn <= down)
    return {"bar": bar, "buy": buy, "sell": sell}
