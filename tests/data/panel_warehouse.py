"""A small synthetic warehouse with one long block of trading days and a planted signal, in the
real layout (``daily/daily_YYYY.parquet``, ``trade_cal``, ``stock_basic``, ``index_daily``,
``daily_basic_est``), for end-to-end runs of the producers (GP, combine, backtest) through the
CLI: unlike :mod:`ashare_synth` its splits are long enough for the 20-day decay horizons, so
candidates get valid metrics and the gate accepts some.

``N`` main-board stocks, ``T`` weekdays from 2021-01-04, random walks within +-4 % a day (no
price limit is hit). The planted signal: the volume on day ``t`` carries the next label
(open ``t+1`` -> open ``t+2``), so ``vol`` / ``cs_rank(vol)`` has a positive RankIC. Units are
Tushare's (lots, thousand yuan, 10k shares). Not real data.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

#: Splits for ``[evaluate]`` matching the default calendar (T = 170).
SPLITS = {"train": ("2021-01-04", "2021-05-07"), "valid": ("2021-05-17", "2021-08-06"),
          "test": ("2021-08-16", "2021-08-27")}


def build_panel_warehouse(root: Path, n_stocks: int = 16, n_days: int = 170,
                          seed: int = 11) -> Path:
    """Write the warehouse into ``root`` (created) and return ``root``."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "daily").mkdir(parents=True, exist_ok=True)
    cal = pd.bdate_range("2021-01-04", periods=n_days)
    codes = [f"{600000 + i}.SH" for i in range(n_stocks)]
    T, N = n_days, n_stocks
    opn = np.empty((T, N))
    close = np.empty((T, N))
    prev = 10 + rng.uniform(0, 20, N)
    for t in range(T):
        opn[t] = np.round(prev * (1 + np.clip(rng.normal(0, 0.006, N), -0.02, 0.02)), 2)
        close[t] = np.round(prev * (1 + np.clip(rng.normal(0, 0.015, N), -0.035, 0.035)), 2)
        prev = close[t]
    fut = np.zeros((T, N))
    fut[:-2] = opn[2:] / opn[1:-1] - 1
    vol = np.round(np.exp(10 + 12 * fut + rng.normal(0, 0.15, (T, N))))
    hi = np.round(np.maximum(opn, close) * (1 + np.abs(rng.normal(0, 0.003, (T, N)))), 2)
    lo = np.round(np.minimum(opn, close) * (1 - np.abs(rng.normal(0, 0.003, (T, N)))), 2)
    pre = np.vstack([opn[:1], close[:-1]])
    daily = pd.DataFrame({
        "ts_code": np.tile(codes, T), "trade_date": np.repeat(cal.values, N),
        "open": opn.ravel(), "high": hi.ravel(), "low": lo.ravel(), "close": close.ravel(),
        "pre_close": pre.ravel(), "vol": vol.ravel(), "adj_factor": 1.0,
        "amount": (vol * 100 * (hi + lo) / 2 / 1000).ravel()})
    daily["trade_date"] = daily["trade_date"].astype("datetime64[ns]")
    daily = daily.sort_values(["ts_code", "trade_date"]).reset_index(drop=True)
    for year, part in daily.groupby(daily.trade_date.dt.year):
        part.to_parquet(root / "daily" / f"daily_{year}.parquet", index=False)
    tc = pd.DataFrame({"exchange": "SSE", "cal_date": cal, "is_open": 1,
                       "pretrade_date": pd.NaT})
    tc.to_parquet(root / "trade_cal.parquet", index=False)
    g = daily.groupby("ts_code").trade_date
    sb = pd.DataFrame({"ts_code": codes, "symbol": [c[:6] for c in codes],
                       "name": [f"Stock{c[:6]}" for c in codes], "board": "Main",
                       "list_date": pd.Timestamp("2015-01-05"), "is_st_latest": False})
    sb["first_trade_date"] = sb.ts_code.map(g.min())
    sb["last_trade_date"] = sb.ts_code.map(g.max())
    sb.to_parquet(root / "stock_basic.parquet", index=False)
    est = daily[["ts_code", "trade_date"]].copy()
    est["total_share"] = est.ts_code.map(lambda c: 1000.0 + int(c[:6]) % 97 * 10.0)
    est["anchor_date"] = est.trade_date
    est.to_parquet(root / "daily_basic_est.parquet", index=False)
    idx = pd.DataFrame({"ts_code": "000300.SH", "trade_date": cal,
                        "close": 4000 + np.arange(T, dtype=float)})
    for c in ("open", "high", "low"):
        idx[c] = idx["close"]
    idx["pre_close"] = idx["close"] - 1.0
    idx["pct_chg"] = (idx["close"] / idx["pre_close"] - 1) * 100
    idx["vol"], idx["amount"] = 1e6, 2e6
    idx.to_parquet(root / "index_daily.parquet", index=False)
    return root


def report_config(tmp: Path, root: Path) -> Path:
    """A mine.toml on this warehouse for the report tests (store and run folders in ``tmp``)."""
    p = tmp / "mine.toml"
    p.write_text(f"""
[data]
root = "{root}"
cache_dir = "{tmp / 'cache'}"
[evaluate]
train = {json.dumps(list(SPLITS['train']))}
valid = {json.dumps(list(SPLITS['valid']))}
test = {json.dumps(list(SPLITS['test']))}
embargo = 1
min_listed_days = 0
[store]
path = "{tmp / 'lb.db'}"
[backtest]
out_dir = "{tmp / 'bt'}"
""")
    return p
