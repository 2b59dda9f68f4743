"""Planning the ingest: which parts of which dataset are missing, and the calls each needs.

A :class:`Part` is one unit of work: the provider calls that fetch it (one trade date of the
whole market per call for the daily endpoints, never one stock per call), and, for an open
day, the date whose reply must not be empty. :func:`plan_dataset` lists the parts of a
dataset between ``start`` and ``end`` that the job table does not have as done; the
partitioning is described in :mod:`data.datasets`.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from data.datasets import Dataset
from data.tushare import TushareConfig

__all__ = [
    "INDEX_WEIGHT_CODES",
    "Part",
    "plan_dataset",
    "quarter_ends",
    "ymd",
]

#: Indices whose constituent weights are fetched (monthly).
INDEX_WEIGHT_CODES = ("000300.SH", "000905.SH", "000852.SH")
#: A report period counts as complete this many days after its end (annual reports: Apr 30).
PERIOD_SETTLE_DAYS = 120

_FIELDS_DAILY = ("ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "vol",
                 "amount")


def ymd(d) -> str:
    """A date as Tushare's ``YYYYMMDD``."""
    return pd.Timestamp(d).strftime("%Y%m%d")


@dataclass(frozen=True)
class Part:
    """One unit of fetching.

    Attributes
    ----------
    dataset : str
        Dataset name.
    part : str
        Part name in the job table (``YYYYMMDD``, ``2024``, ``asof=YYYYMMDD``,
        ``000300.SH/2024``, ``000300.SH/202403@20240315``...).
    calls : tuple of (endpoint, params, fields)
        The provider calls, in order.
    day : str or None
        For a per-day part: the open day (``YYYYMMDD``) whose required endpoints must answer
        with rows.
    """

    dataset: str
    part: str
    calls: tuple[tuple[str, dict, tuple[str, ...]], ...]
    day: str | None = None


def quarter_ends(start: pd.Timestamp, end: pd.Timestamp) -> list[pd.Timestamp]:
    """Report periods (quarter ends) from the year before ``start`` up to ``end``."""
    q = pd.date_range(pd.Timestamp(start.year - 1, 1, 1), end, freq="QE")
    return [pd.Timestamp(x) for x in q]


def _suffix(final: bool, e: pd.Timestamp) -> str:
    return "" if final else f"@{ymd(e)}"


def plan_dataset(ds: Dataset, *, start: pd.Timestamp, end: pd.Timestamp,
                 open_days: pd.DatetimeIndex, done: set[str],
                 indices: tuple[str, ...] = TushareConfig.indices) -> list[Part]:
    """The parts of ``ds`` in ``[start, end]`` not in ``done``, in fetch order.

    Parameters
    ----------
    ds : Dataset
        The dataset.
    start, end : Timestamp
        The warehouse's first date and this run's end date.
    open_days : DatetimeIndex
        Open trade days (the per-day parts are those in ``[start, end]``).
    done : set of str
        Parts already done.
    indices : tuple of str
        Index codes of ``index_daily``.
    """
    cols = ds.columns
    parts: list[Part] = []
    if ds.unit == "year":
        for y in range(start.year, end.year + 1):
            parts.append(Part(ds.name, str(y), (("trade_cal", {
                "exchange": "SSE", "start_date": f"{y}0101", "end_date": f"{y}1231"}, cols),)))
    elif ds.unit == "snapshot":
        if ds.name == "stock_basic":
            calls = tuple((ds.endpoints[0], {"list_status": s}, cols) for s in "LDP")
        elif ds.name == "industry_sw":
            calls = tuple((ds.endpoints[0], {"is_new": s}, cols) for s in "YN")
        else:
            calls = ((ds.endpoints[0], {}, cols),)
        parts.append(Part(ds.name, f"asof={ymd(end)}", calls))
    elif ds.unit == "day":
        days = open_days[(open_days >= start) & (open_days <= end)]
        for d in days:
            s = ymd(d)
            if ds.name == "daily":
                calls = (("daily", {"trade_date": s}, _FIELDS_DAILY),
                         ("adj_factor", {"trade_date": s}, ("ts_code", "trade_date",
                                                            "adj_factor")))
            elif ds.name == "dividend":
                calls = (("dividend", {"ann_date": s}, cols),)
            else:
                calls = ((ds.endpoints[0], {"trade_date": s}, cols),)
            parts.append(Part(ds.name, s, calls, day=s))
    elif ds.unit == "code_year":
        for code in indices:
            for y in range(start.year, end.year + 1):
                s = max(start, pd.Timestamp(y, 1, 1))
                e = min(end, pd.Timestamp(y, 12, 31))
                name = f"{code}/{y}{_suffix(end >= pd.Timestamp(y, 12, 31), e)}"
                parts.append(Part(ds.name, name, ((ds.endpoints[0], {
                    "ts_code": code, "start_date": ymd(s), "end_date": ymd(e)}, cols),)))
    elif ds.unit == "code_month":
        months = pd.period_range(start, end, freq="M")
        for code in INDEX_WEIGHT_CODES:
            for m in months:
                first, last = m.start_time.normalize(), m.end_time.normalize()
                s, e = max(start, first), min(end, last)
                name = f"{code}/{m.strftime('%Y%m')}{_suffix(end >= last, e)}"
                parts.append(Part(ds.name, name, ((ds.endpoints[0], {
                    "index_code": code, "start_date": ymd(s), "end_date": ymd(e)}, cols),)))
    elif ds.unit == "period":
        for q in quarter_ends(start, end):
            final = end >= q + pd.Timedelta(days=PERIOD_SETTLE_DAYS)
            parts.append(Part(ds.name, f"{ymd(q)}{_suffix(final, end)}", ((
                ds.endpoints[0], {"period": ymd(q)}, cols),)))
    else:  # pragma: no cover - a dataset spec error
        raise ValueError(f"unknown unit {ds.unit!r} of dataset {ds.name!r}")
    return [p for p in parts if p.part not in done]
