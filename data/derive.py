"""Field derivations: raw warehouse arrays (Tushare units) -> panels in the units of
:mod:`data.fields`.

Private helpers of :meth:`data.manager.DataManager.panels` (``ret``, which needs look-back
history, stays in the manager). Raw arrays are ``(T, N)`` float64 keyed by warehouse column
(``close``, :data:`data._load.EST_COLUMN`, ``"daily_basic.total_mv"``...).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from data._load import EST_COLUMN, PARTITIONED
from data.fields import BASE_FIELDS, FIELDS

__all__ = ["REAL_MV", "amount_and_proxy", "dataset_fields", "deps", "derive", "raw_vwap"]

#: field -> raw columns it is computed from (warehouse names, EST_COLUMN = total_share).
_DEPS: dict[str, tuple[str, ...]] = {
    "open": ("open", "adj_factor"), "high": ("high", "adj_factor"),
    "low": ("low", "adj_factor"), "close": ("close", "adj_factor"),
    "vwap": ("amount", "vol", "open", "high", "low", "close", "adj_factor"),
    "raw_open": ("open",), "raw_high": ("high",), "raw_low": ("low",), "raw_close": ("close",),
    "pre_close": ("pre_close",), "vol": ("vol",),
    "amount": ("amount", "vol", "open", "high", "low", "close"),
    "total_share": (EST_COLUMN, "close"), "total_mv": (EST_COLUMN, "close"),
    "turnover": ("vol", EST_COLUMN), "ret": ("close", "adj_factor"),
    "adj_factor": ("adj_factor",),
}
assert set(_DEPS) == set(BASE_FIELDS), "data.fields and the derivation table disagree"
#: Base fields read from the real daily_basic instead of the estimate when the warehouse has it.
REAL_MV: dict[str, tuple[str, ...]] = {
    "total_share": ("daily_basic.total_share", "close"),
    "total_mv": ("daily_basic.total_mv", "close"),
    "turnover": ("vol", "daily_basic.total_share")}


def deps(field: str, real_mv: bool) -> tuple[str, ...]:
    """Raw columns a base field needs (``real_mv``: the warehouse has ``daily_basic/``)."""
    return REAL_MV[field] if real_mv and field in REAL_MV else _DEPS[field]


def _ohlc4(r) -> np.ndarray:
    return (r["open"] + r["high"] + r["low"] + r["close"]) / 4.0


def amount_and_proxy(r) -> tuple[np.ndarray, np.ndarray]:
    """Real amount in yuan and the proxy flag (bar present, amount missing)."""
    amt = r["amount"] * 1000.0
    return amt, np.isnan(amt) & ~np.isnan(r["close"])


def raw_vwap(r) -> np.ndarray:
    """Unadjusted VWAP in yuan: amount / shares, or the (O+H+L+C)/4 proxy."""
    amt, proxy = amount_and_proxy(r)
    shares = r["vol"] * 100.0
    proxy = proxy | (shares <= 0)
    return np.where(proxy, _ohlc4(r), amt / np.where(shares > 0, shares, np.nan))


def derive(fields: list[str], r: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Base fields (except ``ret``) from the raw arrays ``r`` (units: :mod:`data.fields`).

    Market value uses ``daily_basic.total_share`` / ``daily_basic.total_mv`` when ``r`` holds
    them (see :func:`deps`), else the estimate :data:`data._load.EST_COLUMN`; NaN on days
    without a bar.
    """
    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for f in fields:
            if f in ("open", "high", "low", "close"):
                out[f] = r[f] * r["adj_factor"]
            elif f.startswith("raw_"):
                out[f] = r[f[4:]].copy()
            elif f in ("pre_close", "adj_factor"):
                out[f] = r[f].copy()
            elif f == "vol":
                out[f] = r["vol"] * 100.0
            elif f == "amount":
                amt, proxy = amount_and_proxy(r)
                out[f] = np.where(proxy, r["vol"] * 100.0 * _ohlc4(r), amt)
            elif f == "vwap":
                out[f] = raw_vwap(r) * r["adj_factor"]
            elif f in ("total_share", "total_mv", "turnover"):
                no_bar = np.isnan(r["close"] if "close" in r else r["vol"])
                if f == "total_mv" and "daily_basic.total_mv" in r:   # real, 10k yuan
                    out[f] = np.where(no_bar, np.nan, r["daily_basic.total_mv"] * 1e4)
                    continue
                src = "daily_basic.total_share" if "daily_basic.total_share" in r \
                    else EST_COLUMN
                shares = np.where(no_bar, np.nan, r[src] * 1e4)
                if f == "total_share":
                    out[f] = shares
                elif f == "total_mv":
                    out[f] = shares * r["close"]
                else:
                    out[f] = r["vol"] * 100.0 / shares
    return out


def dataset_fields(fields: list[str], r: dict[str, np.ndarray], opt, dates: pd.DatetimeIndex,
                   codes: pd.Index) -> dict[str, np.ndarray]:
    """Fields of optional datasets (:attr:`data.fields.FieldSpec.dataset`), scaled to their unit.

    Fields of the day-partitioned datasets (``daily_basic``, ``moneyflow``) come from ``r``
    (``"<dataset>.<column>"``; a field with several :attr:`data.fields.FieldSpec.parts` is
    their signed sum), report fields from :meth:`data.optional.Optional.fundamentals` (point in
    time). NaN on days without a bar (``r["close"]``) and where a needed column has no row.
    """
    out: dict[str, np.ndarray] = {}
    if not fields:
        return out
    no_bar = np.isnan(r["close"])
    by_ds: dict[str, list[str]] = {}
    for f in fields:
        by_ds.setdefault(FIELDS[f].dataset, []).append(f)
    for ds, fs in by_ds.items():
        cols = sorted({c for f in fs for _, c in FIELDS[f].parts})
        if ds in PARTITIONED:
            vals = {c: r[f"{ds}.{c}"] for c in cols}
        else:
            vals = opt.fundamentals(ds, cols, dates, codes)
        for f in fs:
            v = sum(sign * vals[c] for sign, c in FIELDS[f].parts)
            out[f] = np.where(no_bar, np.nan, v * FIELDS[f].scale)
    return out
