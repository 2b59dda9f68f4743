"""The factor language's fields, as data.

Every name a formula may use as a leaf is listed in :data:`FIELDS` with its unit (after load),
how it is derived and its caveats. ``mine fields`` prints this table; the parser's whitelist of
field names and :meth:`data.manager.DataManager.panels` both read it, so a field is added here and
in the manager's derivation table only.

Units follow the data contracts in :mod:`data`: prices in yuan (back-adjusted prices in
yuan x adjustment factor), volumes in shares, money in yuan. Tushare's ``vol`` (lots of 100
shares), ``amount`` (thousand yuan) and ``total_share`` (ten-thousand shares) are converted
once at load.
"""
from __future__ import annotations

from dataclasses import dataclass

#: Last trading day on which the warehouse has a real ``amount`` (see the warehouse README).
AMOUNT_LAST_REAL_DATE = "2023-03-17"


@dataclass(frozen=True)
class FieldSpec:
    """One field of the factor language.

    Attributes
    ----------
    name : str
        Name used in formulas (``close``, ``vwap``...).
    unit : str
        Unit of the loaded panel values.
    doc : str
        How the field is derived, with any caveat (one or two sentences).
    source : str
        Warehouse columns it is computed from (``file.column`` notation).
    """

    name: str
    unit: str
    doc: str
    source: str


_ADJ = ("Back-adjusted (hfq) price = raw x adj_factor; continuous across dividends and bonus "
        "shares. The factor base is arbitrary, so only ratios (returns, rank, correlation) are "
        "meaningful, never the level.")

_SPECS: tuple[FieldSpec, ...] = (
    FieldSpec("open", "yuan x adj_factor", f"Opening price. {_ADJ}",
              "daily.open, daily.adj_factor"),
    FieldSpec("high", "yuan x adj_factor", f"Daily high. {_ADJ}", "daily.high, daily.adj_factor"),
    FieldSpec("low", "yuan x adj_factor", f"Daily low. {_ADJ}", "daily.low, daily.adj_factor"),
    FieldSpec("close", "yuan x adj_factor", f"Closing price. {_ADJ}",
              "daily.close, daily.adj_factor"),
    FieldSpec("vwap", "yuan x adj_factor",
              "Volume-weighted average price = amount / volume (raw yuan per share) x adj_factor. "
              f"After {AMOUNT_LAST_REAL_DATE} the warehouse has no amount, so the proxy "
              "(open+high+low+close)/4 (raw) x adj_factor is used (median error vs the real "
              "VWAP ~0.3%); DataManager.is_proxy_vwap flags those cells.",
              "daily.amount, daily.vol, daily.open/high/low/close, daily.adj_factor"),
    FieldSpec("raw_open", "yuan", "Unadjusted opening price (2 decimals). Use for price limits, "
              "lots and costs, not for returns across ex-dates.", "daily.open"),
    FieldSpec("raw_high", "yuan", "Unadjusted daily high (2 decimals).", "daily.high"),
    FieldSpec("raw_low", "yuan", "Unadjusted daily low (2 decimals).", "daily.low"),
    FieldSpec("raw_close", "yuan", "Unadjusted closing price (2 decimals).", "daily.close"),
    FieldSpec("pre_close", "yuan",
              "Previous close after ex-right adjustment (Tushare convention): on an ex-dividend "
              "day it is the exchange's reference price, on the listing day the IPO price. The "
              "base of the daily price limits.", "daily.pre_close"),
    FieldSpec("vol", "shares", "Traded volume = Tushare vol (lots of 100 shares) x 100.",
              "daily.vol"),
    FieldSpec("amount", "yuan",
              "Traded value = Tushare amount (thousand yuan) x 1000. After "
              f"{AMOUNT_LAST_REAL_DATE} (and on the few earlier rows without amount) it is the "
              "proxy vol (shares) x (open+high+low+close)/4 (raw yuan); "
              "DataManager.is_proxy_amount flags those cells.",
              "daily.amount, daily.vol, daily.open/high/low/close"),
    FieldSpec("total_share", "shares",
              "Estimated total share count = daily_basic_est.total_share (10k shares) x 1e4: the "
              "real quarterly snapshot carried forward and scaled on bonus-share ex-dates only "
              "(misses placements, buybacks, conversions between quarter ends). NaN before "
              "2010-03-31, for listings after 2025-12-31, and on days without a bar.",
              "daily_basic_est.total_share"),
    FieldSpec("total_mv", "yuan",
              "Estimated total market value = total_share (shares) x raw close (yuan). Inherits "
              "the total_share caveats; there is no float market value in the warehouse.",
              "daily_basic_est.total_share, daily.close"),
    FieldSpec("turnover", "fraction (shares / shares)",
              "Turnover proxy = vol (shares) / total_share (shares). Uses TOTAL not free-float "
              "shares, so it is lower than the vendor's turnover_rate, especially for stocks "
              "with large locked-up holdings.",
              "daily.vol, daily_basic_est.total_share"),
    FieldSpec("ret", "fraction",
              "Close-to-close adjusted return close_t / close_prev - 1, where close_prev is the "
              "stock's own previous bar (across a suspension it is the return since the last "
              "bar). NaN on a stock's first bar in the warehouse (IPO day, or 2010-01-04 for "
              "older stocks).", "daily.close, daily.adj_factor"),
    FieldSpec("adj_factor", "dimensionless",
              "Cumulative backward adjustment factor (hfq = raw x adj_factor); rises on "
              "ex-dividend and bonus-share days. Arbitrary base: only ratios are meaningful.",
              "daily.adj_factor"),
)

#: name -> FieldSpec, in display order.
FIELDS: dict[str, FieldSpec] = {s.name: s for s in _SPECS}


def field_names() -> list[str]:
    """Names of all fields of the factor language, in display order.

    Returns
    -------
    list of str
        The keys of :data:`FIELDS`.
    """
    return list(FIELDS)
