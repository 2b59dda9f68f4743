"""Quarterly fundamentals as long, dated tables: valuation snapshots, dividend plans, reports.

Private helpers of :class:`data.manager.DataManager` (its ``valuation_quarterly``,
``dividend_plans`` and ``report_rows`` are the public interface), used by the stable layer
(:mod:`backtest.monitor`). Every row carries ``visible_date``: the first day its numbers may be
used, so a reader at day ``D`` keeps the rows with ``visible_date <= D`` (point in time).

* **Valuation** (``valuation_quarterly.parquet``): the ``daily_basic`` values at the close of
  ``anchor_date`` are visible from that day. Snapshots whose label is not a quarter end (the
  source's stray month ends) are dropped. Where ``anchor_date`` is missing, the quarter's most
  common anchor among the other stocks is used, else the label itself.
* **Dividend plans** (``dividend.parquet``): each row (a stage of one plan: 预案, 股东大会通过,
  实施, ...) is visible from the first open day strictly after its ``ann_date`` (the
  :func:`data.pit.visible_days` rule). Cash in yuan: ``cash_total = cash_div_tax x
  base_share x 1e4`` (pre-tax per share x 10k shares), 0 for a plan that was voted down
  (未通过) or stopped (停止实施).
* **Reports** (``fina_indicator``, ``income``...): every announced version, visible from the
  first open day after ``f_ann_date`` (else ``ann_date``), as :mod:`data.pit` does for panels.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from data.pit import visible_days

__all__ = ["valuation_rows", "dividend_rows", "report_rows", "CANCELLED"]

#: Dividend stages that mean no payment.
CANCELLED = ("未通过", "停止实施")


def _ns(s) -> pd.Series:
    return pd.to_datetime(pd.Series(s)).astype("datetime64[ns]")


def valuation_rows(vq: pd.DataFrame) -> pd.DataFrame:
    """Quarter-end valuation snapshots with their visible day.

    Parameters
    ----------
    vq : DataFrame
        ``valuation_quarterly.parquet`` (``ts_code, snapshot_date, anchor_date, total_mv,
        pe, pb, dv_ratio``; tushare units).

    Returns
    -------
    DataFrame
        ``ts_code, quarter`` (quarter end, datetime64[ns]), ``visible_date``, ``pe``, ``pb``
        (ratios; NaN for a loss-maker's pe), ``dv_ratio`` (%), ``total_mv`` (yuan = 万元 x
        1e4); one row per (ts_code, quarter), sorted by them.
    """
    snap = _ns(vq["snapshot_date"]).reset_index(drop=True)
    df = pd.DataFrame({"ts_code": vq["ts_code"].astype(str).to_numpy(),
                       "quarter": snap,
                       "anchor": _ns(vq["anchor_date"]).reset_index(drop=True)})
    for c in ("pe", "pb", "dv_ratio"):
        df[c] = pd.to_numeric(vq[c], errors="coerce").to_numpy(np.float64)
    df["total_mv"] = pd.to_numeric(vq["total_mv"], errors="coerce").to_numpy(np.float64) * 1e4
    df = df.loc[df["quarter"].dt.is_quarter_end.fillna(False)]
    modal = df.dropna(subset=["anchor"]).groupby("quarter")["anchor"].agg(
        lambda s: s.mode().iloc[0])
    df["visible_date"] = df["anchor"].fillna(df["quarter"].map(modal)).fillna(df["quarter"])
    df = df.drop(columns="anchor").drop_duplicates(["ts_code", "quarter"], keep="last")
    return df.sort_values(["ts_code", "quarter"]).reset_index(drop=True)


def dividend_rows(div: pd.DataFrame, all_open: pd.DatetimeIndex) -> pd.DataFrame:
    """Every stage of every dividend plan with its visible day and cash in yuan.

    Parameters
    ----------
    div : DataFrame
        ``dividend.parquet`` (``ts_code, end_date, ann_date, div_proc, cash_div_tax,
        base_share``).
    all_open : DatetimeIndex
        Every open day of the exchange calendar.

    Returns
    -------
    DataFrame
        ``ts_code, end_date, ann_date, visible_date, div_proc, cash_div_tax`` (yuan per share,
        pre-tax, 0 when none) and ``cash_total`` (yuan; NaN when ``base_share`` is missing and
        cash is paid); rows never visible (no ``ann_date``) are dropped.
    """
    df = pd.DataFrame({"ts_code": div["ts_code"].astype(str).to_numpy(),
                       "end_date": _ns(div["end_date"]).to_numpy(),
                       "ann_date": _ns(div["ann_date"]).to_numpy(),
                       "div_proc": div["div_proc"].astype(str).to_numpy()})
    cash = pd.to_numeric(div["cash_div_tax"], errors="coerce").fillna(0.0).to_numpy(np.float64)
    base = pd.to_numeric(div["base_share"], errors="coerce").to_numpy(np.float64)
    cash = np.where(df["div_proc"].isin(CANCELLED), 0.0, cash)
    df["cash_div_tax"] = cash
    df["cash_total"] = np.where(cash == 0.0, 0.0, cash * base * 1e4)
    v = visible_days(df["ann_date"], all_open)
    df["visible_date"] = pd.to_datetime(np.where(v >= 0, v, np.iinfo(np.int64).min))
    df = df.loc[(v >= 0) & df["end_date"].notna()]
    return df.sort_values(["ts_code", "end_date", "visible_date"], kind="mergesort"
                          ).reset_index(drop=True)


def report_rows(reports: pd.DataFrame, columns: list[str], all_open: pd.DatetimeIndex
                ) -> pd.DataFrame:
    """Every announced version of the reports with its visible day.

    Parameters
    ----------
    reports : DataFrame
        A report dataset (``ts_code, end_date, ann_date`` and maybe ``f_ann_date``, plus
        ``columns``), units as stored.
    columns : list of str
        Value columns to keep.
    all_open : DatetimeIndex
        Every open day of the exchange calendar.

    Returns
    -------
    DataFrame
        ``ts_code, end_date, visible_date`` and ``columns`` (float64), sorted by ts_code,
        end_date, visible_date (a later row of the same period is a restatement).
    """
    ann = reports["ann_date"]
    if "f_ann_date" in reports:
        ann = reports["f_ann_date"].fillna(reports["ann_date"])
    v = visible_days(pd.Series(ann), all_open)
    df = pd.DataFrame({"ts_code": reports["ts_code"].astype(str).to_numpy(),
                       "end_date": _ns(reports["end_date"]).to_numpy(),
                       "visible_date": pd.to_datetime(np.where(v >= 0, v, 0))})
    for c in columns:
        df[c] = pd.to_numeric(reports[c], errors="coerce").to_numpy(np.float64)
    df = df.loc[(v >= 0) & df["end_date"].notna()]
    return df.sort_values(["ts_code", "end_date", "visible_date"], kind="mergesort"
                          ).reset_index(drop=True)
