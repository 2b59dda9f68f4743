"""Industry classification panels: dated Shenwan (``industry_sw.parquet``) or a static label.

Private helpers of :meth:`data.manager.DataManager.industry` (the public interface).

Rules
-----
* ``industry_sw.parquet`` (Tushare ``index_member_all``, Shenwan 2021): a stock belongs to
  ``l1_code`` / ``l2_code`` on day ``d`` iff ``in_date <= d < out_date`` (``out_date`` NaT =
  still in; the exit day already belongs to the next classification). When intervals of one
  stock overlap, the one with the latest ``in_date`` wins.
* Integer codes: the sorted distinct codes of the requested level in the WHOLE file map to
  ``0..G-1`` (stable across date ranges and code lists); a stock without a classification on
  a day gets ``G`` (one extra "unknown" group, as :func:`factors.processing.industry_codes`).
* Static fallback (no ``industry_sw.parquet``, e.g. the embedded snapshot): one label per
  stock (``stock_basic.industry_ts``, else Tushare's ``stock_basic.industry``) repeated on
  every date; labels are coded in sorted order, missing = one extra group.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["sw_panel", "static_panel"]


def sw_panel(sw: pd.DataFrame, level: int, dates: pd.DatetimeIndex, codes: pd.Index
             ) -> tuple[np.ndarray, list[str]]:
    """Dated Shenwan industry codes ``(T, N)`` int64 (rules: module docstring).

    Parameters
    ----------
    sw : DataFrame
        ``industry_sw.parquet`` (``ts_code, l1_code, l2_code, in_date, out_date``...).
    level : {1, 2}
        Shenwan level.
    dates : DatetimeIndex (T,)
    codes : Index (N,)

    Returns
    -------
    codes_panel : ndarray of int64, shape (T, N)
        ``0..G-1`` for known industries, ``G`` for none.
    labels : list of str
        Industry code (e.g. ``801010.SI``) of each integer ``0..G-1``.
    """
    col = f"l{int(level)}_code"
    lab = sw[col].astype("string")
    labels = sorted(lab.dropna().unique().tolist())
    G = len(labels)
    T, N = len(dates), len(codes)
    out = np.full((T, N), G, dtype=np.int64)
    df = pd.DataFrame({"j": pd.Index(codes).get_indexer(sw["ts_code"].astype(str)),
                       "g": pd.Index(labels).get_indexer(lab.fillna("")),
                       "in": pd.DatetimeIndex(sw["in_date"]).as_unit("ns").asi8})
    o = pd.DatetimeIndex(sw["out_date"])
    out_ns = o.as_unit("ns").asi8.copy()
    out_ns[np.asarray(o.isna())] = np.iinfo(np.int64).max
    df["out"] = out_ns
    d = pd.DatetimeIndex(dates).as_unit("ns").asi8
    df = df.loc[(df["j"] >= 0) & ~pd.isna(sw["in_date"]).to_numpy()]
    if T == 0 or df.empty:
        return out, labels
    df = df.loc[df["in"] <= d[-1]].sort_values(["j", "in"], kind="mergesort")
    df["t"] = np.searchsorted(d, df["in"].to_numpy(), side="left")
    df = df.drop_duplicates(["j", "t"], keep="last").reset_index(drop=True)
    src = np.full((T, N), -1, dtype=np.int64)
    src[df["t"].to_numpy(), df["j"].to_numpy()] = np.arange(len(df))
    src = np.maximum.accumulate(src, axis=0)
    idx = np.maximum(src, 0)
    g = df["g"].to_numpy()[idx]
    live = (src >= 0) & (d[:, None] < df["out"].to_numpy()[idx]) & (g >= 0)
    out[live] = g[live]
    return out, labels


def static_panel(labels_per_code: pd.Series, dates: pd.DatetimeIndex
                 ) -> tuple[np.ndarray, list[str]]:
    """A static label per stock as a ``(T, N)`` int64 panel (fallback; module docstring).

    Parameters
    ----------
    labels_per_code : Series
        One label per requested code, in column order (NaN / "" = unknown).
    dates : DatetimeIndex (T,)

    Returns
    -------
    codes_panel : ndarray of int64, shape (T, N)
    labels : list of str
        Label of each integer ``0..G-1`` (``G`` = unknown).
    """
    s = labels_per_code.astype("string")
    s = s.where(s.notna() & (s != ""))
    labels = sorted(s.dropna().unique().tolist())
    g = pd.Index(labels).get_indexer(s.fillna("\0"))
    g = np.where(g < 0, len(labels), g).astype(np.int64)
    return np.broadcast_to(g, (len(dates), len(g))).copy(), labels
