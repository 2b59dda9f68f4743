"""Adds the issue-10 Tushare datasets to a copy of the synthetic warehouse (:mod:`ashare_synth`).

Designed events (Tushare units as delivered; the test module asserts each):

* ``stock_basic`` is replaced by a Tushare-shaped one (list_status L/D, delist_date, industry;
  no first_trade_date / is_st_latest) with a delisted stock 000003.SZ (bars 2020-08-10 ..
  2020-08-28, delisted 2020-08-31).
* ``namechange``: 600000.SH is ST from 2020-08-17 to 2020-08-21; 600001.SH (ST today in the
  snapshot columns) only becomes ST on 2023-03-01.
* ``stk_limit`` (2020 only): 000002.SZ with the computed limits, except 2020-08-12 where
  up_limit is 0.05 higher (proves the exchange's prices are used).
* ``daily_basic``: total_share = 1.1 x the estimate, total_mv = 1.1 x total_share x close + 1
  (10k yuan; differs from the estimate), circ_mv, turnover_rate, pe_ttm, pb, ps_ttm, dv_ttm.
* ``industry_sw``: 000002.SZ moves from 801180.SI to 801720.SI on 2020-08-24; 301001.SZ has no
  classification.
* ``fina_indicator`` / ``income`` / ``balancesheet`` / ``cashflow``: see :data:`FINA`.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from ashare_synth import STOCKS, Warehouse

D = pd.Timestamp
DELISTED = "000003.SZ"
DELIST_DATE = D("2020-08-31")
STK_DAY = D("2020-08-12")
#: (ts_code, end_date, ann_date, f_ann_date, roe %) rows of fina_indicator.
FINA = [
    ("600000.SH", "2020-03-31", "2020-04-28", None, 2.0),       # before the calendar
    ("600000.SH", "2020-06-30", "2020-08-19", None, 5.0),       # -> visible 2020-08-20
    ("600000.SH", "2020-06-30", "2020-08-26", None, 4.5),       # restatement -> 2020-08-27
    ("600000.SH", "2020-03-31", "2020-08-31", None, 9.9),       # older restated: ignored
    ("600000.SH", "2022-12-31", "2023-03-10", None, 11.0),      # -> 2023-03-13
    ("300001.SZ", "2019-12-31", "2020-08-15", None, 7.0),       # Saturday, together with ...
    ("300001.SZ", "2020-03-31", "2020-08-15", None, 1.5),       # ... a later period: wins
    ("688001.SH", "2020-06-30", "2020-08-20", "2020-08-25", 3.0),  # f_ann_date -> 08-26
]


def _delisted_bars(cal: pd.DatetimeIndex) -> pd.DataFrame:
    days = cal[(cal >= D("2020-08-10")) & (cal <= D("2020-08-28"))]
    close = 3.0 * np.cumprod(np.full(len(days), 0.99))
    close = np.round(close, 2)
    pre = np.r_[3.0, close[:-1]]
    return pd.DataFrame({"ts_code": DELISTED, "trade_date": days, "open": pre, "high":
                         np.maximum(pre, close), "low": np.minimum(pre, close), "close": close,
                         "pre_close": pre, "vol": 5000.0, "adj_factor": 1.0,
                         "amount": 5000.0 * close / 10})


def build_tushare_layout(src: Warehouse, root: Path, computed_limits) -> Warehouse:
    """Copy ``src`` to ``root`` and add the issue-10 datasets (module docstring).

    ``computed_limits`` is ``(up, down)`` of 000002.SZ on 2020 from a plain DataManager.
    """
    shutil.copytree(src.root, root)
    cal = pd.DatetimeIndex(sorted(src.daily.trade_date.unique()))
    daily = pd.concat([src.daily, _delisted_bars(cal)]).sort_values(["ts_code", "trade_date"])
    daily = daily.reset_index(drop=True)
    for year, part in daily.groupby(daily.trade_date.dt.year):
        part.to_parquet(root / "daily" / f"daily_{year}.parquet", index=False)

    codes = [*STOCKS, DELISTED]
    sb = pd.DataFrame({
        "ts_code": codes, "symbol": [c[:6] for c in codes], "name": [f"S{c[:6]}" for c in codes],
        "area": "x", "industry": ["银行" if c == "600000.SH" else "其他" for c in codes],
        "market": "主板", "exchange": [c[-2:] for c in codes],
        "list_status": ["D" if c == DELISTED else "L" for c in codes],
        "list_date": pd.to_datetime([STOCKS[c][1] if c in STOCKS else "1991-01-14"
                                     for c in codes]),
        "delist_date": [DELIST_DATE if c == DELISTED else pd.NaT for c in codes]})
    sb["delist_date"] = pd.to_datetime(sb["delist_date"]).astype("datetime64[ns]")
    sb.sort_values("ts_code").to_parquet(root / "stock_basic.parquet", index=False)

    pd.DataFrame([("600000.SH", "S600000", "2019-01-01", "2020-08-16"),
                  ("600000.SH", "ST600000", "2020-08-17", "2020-08-21"),
                  ("600000.SH", "S600000", "2020-08-22", None),
                  ("600001.SH", "S600001", "2010-01-01", "2023-02-28"),
                  ("600001.SH", "*ST600001", "2023-03-01", None)],
                 columns=["ts_code", "name", "start_date", "end_date"]) \
        .assign(start_date=lambda d: pd.to_datetime(d.start_date),
                end_date=lambda d: pd.to_datetime(d.end_date),
                ann_date=lambda d: pd.to_datetime(d.start_date), change_reason="x") \
        .to_parquet(root / "namechange.parquet", index=False)

    up, down = computed_limits
    lim = pd.DataFrame({"ts_code": "000002.SZ", "trade_date": up.index,
                        "up_limit": up.to_numpy(), "down_limit": down.to_numpy()}).dropna()
    lim.loc[lim.trade_date == STK_DAY, "up_limit"] += 0.05
    lim["pre_close"] = np.nan
    (root / "stk_limit").mkdir()
    lim.to_parquet(root / "stk_limit" / "stk_limit_2020.parquet", index=False)

    db = daily[["ts_code", "trade_date", "close", "vol"]].merge(
        src.est[["ts_code", "trade_date", "total_share"]], how="left")
    db["total_share"] = db["total_share"].fillna(2000.0) * 1.1
    db["total_mv"] = db["total_share"] * db["close"] + 1.0
    db["circ_mv"] = db["total_mv"] * 0.6
    db["float_share"] = db["total_share"] * 0.6
    db["turnover_rate"] = db["vol"] * 100 / (db["float_share"] * 1e4) * 100
    db["pe_ttm"], db["pb"], db["ps_ttm"], db["dv_ttm"] = 15.0, 1.5, 3.0, 2.5
    (root / "daily_basic").mkdir()
    db = db.drop(columns=["close", "vol"])
    for year, part in db.groupby(db.trade_date.dt.year):
        part.to_parquet(root / "daily_basic" / f"daily_basic_{year}.parquet", index=False)

    rows = [(c, "801780.SI" if c == "600000.SH" else "801010.SI", "L2" + c[:3], D("2014-01-01"),
             pd.NaT) for c in codes if c not in ("000002.SZ", "301001.SZ")]
    rows += [("000002.SZ", "801180.SI", "851811.SI", D("2014-01-01"), D("2020-08-24")),
             ("000002.SZ", "801720.SI", "857221.SI", D("2020-08-24"), pd.NaT)]
    sw = pd.DataFrame(rows, columns=["ts_code", "l1_code", "l2_code", "in_date", "out_date"])
    sw["l1_name"], sw["l2_name"] = sw["l1_code"], sw["l2_code"]
    sw.sort_values(["ts_code", "in_date"]).to_parquet(root / "industry_sw.parquet", index=False)

    fina = pd.DataFrame(FINA, columns=["ts_code", "end_date", "ann_date", "f_ann_date", "roe"])
    for c in ("end_date", "ann_date", "f_ann_date"):
        fina[c] = pd.to_datetime(fina[c]).astype("datetime64[ns]")
    fina["eps"] = fina["roe"] / 10
    for c in ("roa", "bps", "grossprofit_margin", "netprofit_yoy", "debt_to_assets"):
        fina[c] = fina["roe"] * 2
    fina.to_parquet(root / "fina_indicator.parquet", index=False)
    base = fina[["ts_code", "end_date", "ann_date", "f_ann_date"]]
    base.assign(revenue=fina.roe * 1e8, n_income=fina.roe * 1e7) \
        .to_parquet(root / "income.parquet", index=False)
    base.assign(total_assets=fina.roe * 1e9, total_liab=fina.roe * 5e8) \
        .to_parquet(root / "balancesheet.parquet", index=False)
    base.assign(n_cashflow_act=fina.roe * 1e6).to_parquet(root / "cashflow.parquet", index=False)
    return Warehouse(root, daily, src.est)
