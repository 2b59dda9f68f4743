"""Point-in-time stock universes (index memberships).

Membership comes from ``index_member.parquet``, using ONLY rows with
``source == "Homes1ck/sQlib"``: those are the full constituent lists (300 / 500 / 800 / 1000
names at any date, including names later delisted). The other source in that file
(``fr220574/...``) holds survivors only and would bias a CSI300 universe.

Rules
-----
* A stock is a member on trading day ``d`` iff ``in_date <= d <= out_date`` for one of its
  intervals.
* The full lists end on 2025-08-06 (the last ``out_date`` of each index). Intervals that end on
  that last date are treated as still open: the last known membership is carried forward to
  every later date. Index reviews after that day (e.g. December 2025) are therefore NOT
  reflected; treat index universes after 2025-08-06 as approximate.
* ``"all"`` is every stock with a bar (not suspended) on the day.
* Survivorship: the price data holds stocks still listed in 2026, so some historical members
  have no prices (about 292 of 300 CSI300 names on 2020-06-30). :func:`universe_codes` returns
  only codes with price data.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from data.errors import UniverseError

#: universe name -> index code in ``index_member.parquet`` (``None``: every stock with a bar).
UNIVERSES: dict[str, str | None] = {
    "csi300": "000300.SH",
    "csi500": "000905.SH",
    "csi800": "000906.SH",
    "csi1000": "000852.SH",
    "all": None,
}

#: The ``source`` value of the full (survivorship-free) membership lists.
FULL_LIST_SOURCE = "Homes1ck/sQlib"
#: Sources accepted as full lists: the snapshot's, and the Tushare ingest's (derived from the
#: monthly ``index_weight``; ``out_date`` NaT = still a member).
FULL_LIST_SOURCES = (FULL_LIST_SOURCE, "index_weight")


def check_universe(universe: str) -> str | None:
    """Return the index code of ``universe`` (``None`` for ``"all"``).

    Raises
    ------
    UniverseError
        If the name is unknown; the message lists the valid names.
    """
    if universe not in UNIVERSES:
        raise UniverseError(f"unknown universe {universe!r}; valid: {', '.join(UNIVERSES)}")
    return UNIVERSES[universe]


def _intervals(index_member_df: pd.DataFrame, index_code: str
               ) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Full-list intervals of one index: codes, in/out dates (int64 ns), open ends extended."""
    df = index_member_df
    sel = df["source"].isin(FULL_LIST_SOURCES) & (df["index_code"] == index_code)
    sub = df.loc[sel, ["con_code", "in_date", "out_date", "source"]]
    if sub.empty:
        raise UniverseError(f"index_member has no {FULL_LIST_SOURCE!r} rows for {index_code}; "
                            "the warehouse cannot support this universe")
    ins = pd.DatetimeIndex(sub["in_date"]).as_unit("ns").asi8.copy()
    out_idx = pd.DatetimeIndex(sub["out_date"])
    outs = out_idx.as_unit("ns").asi8.copy()
    open_end = np.asarray(out_idx.isna())
    snap = (sub["source"] == FULL_LIST_SOURCE).to_numpy() & ~open_end
    if snap.any():              # the snapshot's lists end 2025-08-06: carry the last forward
        outs[snap & (outs == outs[snap].max())] = np.iinfo(np.int64).max
    outs[open_end] = np.iinfo(np.int64).max                            # NaT: still a member
    return sub["con_code"].astype(str), ins, outs


def membership_mask(index_member_df: pd.DataFrame, universe: str, dates: pd.DatetimeIndex,
                    codes: pd.Index, bars: np.ndarray | None = None) -> np.ndarray:
    """Point-in-time membership as a boolean ``(T, N)`` array.

    Parameters
    ----------
    index_member_df : DataFrame
        ``index_member.parquet`` (columns ``index_code, con_code, in_date, out_date, source``).
    universe : str
        A key of :data:`UNIVERSES`.
    dates : DatetimeIndex
        ``T`` trading days, ascending.
    codes : Index
        ``N`` ts_codes (any order).
    bars : ndarray of bool, optional
        ``(T, N)`` has-a-bar mask; required meaning for ``"all"`` (returned as a copy). Without
        it ``"all"`` gives an all-True mask. Ignored for index universes.

    Returns
    -------
    ndarray of bool, shape (T, N)
        True where the code is a member on the date (see the module rules, incl. carry-forward
        after 2025-08-06).

    Raises
    ------
    UniverseError
        Unknown universe name, or no full-list rows for its index.

    Notes
    -----
    Vectorised: each interval becomes ``+1`` at ``searchsorted(dates, in_date)`` and ``-1`` at
    ``searchsorted(dates, out_date, 'right')`` in a ``(T + 1, N)`` difference array, and a
    cumulative sum over time gives the interval count per cell.
    """
    index_code = check_universe(universe)
    dates = pd.DatetimeIndex(dates)
    codes = pd.Index(codes)
    T, N = len(dates), len(codes)
    if index_code is None:
        if bars is None:
            return np.ones((T, N), dtype=bool)
        return np.asarray(bars, dtype=bool).copy()
    con, ins, outs = _intervals(index_member_df, index_code)
    j = codes.get_indexer(pd.Index(con))
    keep = j >= 0
    d = dates.as_unit("ns").asi8
    t0 = np.searchsorted(d, ins[keep], side="left")
    t1 = np.searchsorted(d, outs[keep], side="right")
    diff = np.zeros((T + 1, N), dtype=np.int32)
    np.add.at(diff, (t0, j[keep]), 1)
    np.add.at(diff, (t1, j[keep]), -1)
    return np.cumsum(diff[:T], axis=0) > 0


def universe_codes(index_member_df: pd.DataFrame, universe: str, start, end,
                   stock_basic_df: pd.DataFrame) -> pd.Index:
    """Codes that are members at any date in ``[start, end]`` and have price data there.

    Parameters
    ----------
    index_member_df : DataFrame
        ``index_member.parquet``.
    universe : str
        A key of :data:`UNIVERSES`.
    start, end : str or Timestamp
        Inclusive date range.
    stock_basic_df : DataFrame
        ``stock_basic.parquet``; ``first_trade_date`` / ``last_trade_date`` (embedded
        snapshot) decide whether a code has prices overlapping ``[start, end]``; without them
        (a Tushare ``stock_basic`` with list_status L, D and P rows) the listed interval
        ``[list_date, delist_date]`` does, so delisted stocks belong to ``"all"`` while listed
        (survivorship-free).

    Returns
    -------
    pandas.Index
        Sorted unique ts_codes (named ``ts_code``).

    Raises
    ------
    UniverseError
        Unknown universe name.
    """
    index_code = check_universe(universe)
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    sb = stock_basic_df
    if "first_trade_date" in sb:            # the embedded snapshot: first / last bar
        first = pd.DatetimeIndex(sb["first_trade_date"])
        last = pd.DatetimeIndex(sb["last_trade_date"])
    else:                                   # Tushare stock_basic (L, D, P): listed interval
        # a null list_date (AKShare's stock list has none) counts as listed since ever
        first = pd.DatetimeIndex(sb["list_date"]).fillna(pd.Timestamp.min)
        last = pd.DatetimeIndex(sb["delist_date"]) if "delist_date" in sb \
            else pd.DatetimeIndex([pd.NaT] * len(sb))
        last = last.fillna(pd.Timestamp.max)
    has_data = pd.Index(sb["ts_code"].astype(str)[(first <= end) & (last >= start)])
    if index_code is None:
        return pd.Index(np.sort(has_data.unique().to_numpy()), name="ts_code")
    con, ins, outs = _intervals(index_member_df, index_code)
    hit = (ins <= end.as_unit("ns").value) & (outs >= start.as_unit("ns").value)
    members = pd.Index(con[hit].unique())
    codes = members.intersection(has_data)
    return pd.Index(np.sort(codes.to_numpy()), name="ts_code")
