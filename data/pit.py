"""Point-in-time panels from event tables: dated ST status and announced fundamentals.

Private helpers of :class:`data.manager.DataManager` (its ``st_mask`` and the fundamental
fields of ``panels`` are the public interface). Pure functions on DataFrames and arrays,
vectorised with ``searchsorted`` and cumulative maxima (no per-date loops).

ST status (``namechange.parquet``)
----------------------------------
A name that starts with ``ST`` or ``*ST`` (also the pre-2006 ``SST`` / ``S*ST``) marks the
stock ST on every day of ``[start_date, end_date]`` (``end_date`` NaT = still ST). The status
is visible from ``start_date``: the exchange announces the name change before it takes
effect.

Fundamentals (``fina_indicator``, ``income``, ``balancesheet``, ``cashflow``)
-----------------------------------------------------------------------------
A report's announcement day is ``f_ann_date`` where present, else ``ann_date``. It becomes
visible on the first open day strictly AFTER that day (a report published in the evening of
``d`` is tradeable on the next session) and is carried forward. On each day the panel shows,
among all reports visible so far, the one with the latest ``end_date``, in its latest
announced version: several reports announced together -> the latest ``end_date`` wins; a
restatement (same ``end_date`` announced again) replaces the earlier version from its own
visible day; a restatement of an OLDER period than the latest one does not move the panel
back. Values are the report's as stored (a NaN in the newest report stays NaN).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["ST_PATTERN", "st_intervals", "interval_mask", "visible_days", "pit_panels"]

#: Regular expression of an ST name (ST, *ST and the pre-reform SST / S*ST).
ST_PATTERN = r"^S?\*?ST"


def st_intervals(namechange: pd.DataFrame) -> pd.DataFrame:
    """ST spells from ``namechange`` rows.

    Parameters
    ----------
    namechange : DataFrame
        Columns ``ts_code, name, start_date, end_date`` (dates datetime64; ``end_date`` NaT =
        open).

    Returns
    -------
    DataFrame
        Columns ``ts_code, start_date, end_date`` of the rows whose name is an ST name.
    """
    nm = namechange["name"].astype(str).str.strip()
    st = namechange.loc[nm.str.match(ST_PATTERN), ["ts_code", "start_date", "end_date"]]
    return st.dropna(subset=["start_date"]).reset_index(drop=True)


def interval_mask(codes_col: pd.Series, starts, ends, dates: pd.DatetimeIndex,
                  codes: pd.Index) -> np.ndarray:
    """``(T, N)`` bool: True where ``start <= date <= end`` for one of a code's intervals.

    Parameters
    ----------
    codes_col : Series of str
        Code of each interval.
    starts, ends : array_like of datetime64
        Inclusive bounds; ``ends`` NaT = open-ended.
    dates : DatetimeIndex (T,)
        Ascending rows.
    codes : Index (N,)
        Columns.

    Returns
    -------
    ndarray of bool, shape (T, N)
    """
    T, N = len(dates), len(codes)
    j = pd.Index(codes).get_indexer(pd.Index(codes_col.astype(str)))
    keep = j >= 0
    s = pd.DatetimeIndex(starts).as_unit("ns").asi8[keep]
    e_idx = pd.DatetimeIndex(ends)
    e = e_idx.as_unit("ns").asi8.copy()
    e[np.asarray(e_idx.isna())] = np.iinfo(np.int64).max
    e = e[keep]
    d = pd.DatetimeIndex(dates).as_unit("ns").asi8
    t0 = np.searchsorted(d, s, side="left")
    t1 = np.searchsorted(d, e, side="right")
    diff = np.zeros((T + 1, N), dtype=np.int32)
    np.add.at(diff, (t0, j[keep]), 1)
    np.add.at(diff, (t1, j[keep]), -1)
    return np.cumsum(diff[:T], axis=0) > 0


def visible_days(ann: pd.Series, all_open: pd.DatetimeIndex) -> np.ndarray:
    """First open day strictly after each announcement day (int64 ns; -1 = never visible).

    Parameters
    ----------
    ann : Series of datetime64
        Announcement days (NaT = unknown: never visible).
    all_open : DatetimeIndex
        Every open day of the exchange calendar, ascending.

    Returns
    -------
    ndarray of int64
        ns since the epoch; -1 where the announcement is NaT or after the last open day.
    """
    a = pd.DatetimeIndex(ann)
    cal = all_open.as_unit("ns").asi8
    pos = np.searchsorted(cal, a.as_unit("ns").asi8, side="right")
    ok = ~np.asarray(a.isna()) & (pos < len(cal))
    return np.where(ok, cal[np.minimum(pos, len(cal) - 1)], -1)


def pit_panels(reports: pd.DataFrame, columns: list[str], all_open: pd.DatetimeIndex,
               dates: pd.DatetimeIndex, codes: pd.Index) -> dict[str, np.ndarray]:
    """Point-in-time ``(T, N)`` panels of report ``columns`` (rules: module docstring).

    Parameters
    ----------
    reports : DataFrame
        Columns ``ts_code, end_date, ann_date`` (and ``f_ann_date`` if the dataset has it)
        plus ``columns``; units as stored.
    columns : list of str
        Value columns to return.
    all_open : DatetimeIndex
        Every open day of the exchange calendar (the "next open day" calendar).
    dates : DatetimeIndex (T,)
        Panel rows (trading days, ascending).
    codes : Index (N,)
        Panel columns.

    Returns
    -------
    dict of str -> ndarray (T, N) float64
        NaN before a stock's first visible report (and for codes without reports).
    """
    T, N = len(dates), len(codes)
    out = {c: np.full((T, N), np.nan) for c in columns}
    if T == 0 or N == 0 or reports.empty:
        return out
    ann = reports["ann_date"]
    if "f_ann_date" in reports:
        ann = reports["f_ann_date"].fillna(reports["ann_date"])
    df = pd.DataFrame({"j": pd.Index(codes).get_indexer(reports["ts_code"].astype(str)),
                       "v": visible_days(ann, all_open),
                       "end": pd.DatetimeIndex(reports["end_date"]).as_unit("ns").asi8,
                       "ann": pd.DatetimeIndex(ann).as_unit("ns").asi8,
                       "seq": np.arange(len(reports))})
    for c in columns:
        df[c] = pd.to_numeric(reports[c], errors="coerce").to_numpy(np.float64)
    d = pd.DatetimeIndex(dates).as_unit("ns").asi8
    df = df.loc[(df["j"] >= 0) & (df["v"] >= 0) & (df["v"] <= d[-1])
                & ~pd.isna(reports["end_date"]).to_numpy()]
    if df.empty:
        return out
    # Per stock in order of visibility (ties: older period first, then announcement order):
    # a row counts when its period is the latest seen so far; the last counting row of each
    # (stock, visible day) is the day's state.
    df = df.sort_values(["j", "v", "end", "ann", "seq"], kind="mergesort")
    latest = df.groupby("j", sort=False)["end"].cummax()
    df = df.loc[df["end"].to_numpy() == latest.to_numpy()]
    df = df.drop_duplicates(["j", "v"], keep="last")
    t = np.searchsorted(d, df["v"].to_numpy(), side="left")     # visible from row t
    df = df.assign(t=t).drop_duplicates(["j", "t"], keep="last")  # before dates[0] -> row 0
    t, j = df["t"].to_numpy(), df["j"].to_numpy()
    src = np.full((T, N), -1, dtype=np.int64)
    src[t, j] = np.arange(len(df))
    src = np.maximum.accumulate(src, axis=0)        # rows in df ascend in t within each j
    has = src >= 0
    for c in columns:
        vals = df[c].to_numpy()
        out[c] = np.where(has, vals[np.maximum(src, 0)], np.nan)
    return out
