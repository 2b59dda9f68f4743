"""Builder of a tiny synthetic warehouse in the real layout (daily/daily_YYYY.parquet,
trade_cal, ...), used by tests/data/conftest.py.

Calendar: three blocks of weekdays, 2020-08-10..2020-09-04 (the ChiNext reform on 2020-08-24),
2023-03-06..2023-03-31 (amount ends after 2023-03-17) and 2025-07-28..2025-08-15 (index lists end
2025-08-06), one daily file per year. Units are Tushare's (lots, thousand yuan, 10k shares).

Stocks and designed events (everything else is a seeded random walk within +-4% a day):

* 600000.SH main board, ex-dividend (cash 0.50) on 2020-08-20.
* 000002.SZ main board, suspended 2020-08-17..21; close 5.35 on 2020-08-25 (a half-up rounding
  case: 5.35 x 1.1 = 5.885 -> 5.89); one-price limit-up on 2020-08-26; opens at limit-up but
  trades lower on 2020-08-28; one-price limit-down on 2023-03-10.
* 300001.SZ ChiNext: closes at +10% on 2020-08-21 and at +20% on 2020-08-24.
* 688001.SH STAR, listed 2020-08-12 (late listing, first 5 days without limit).
* 600001.SH main board ST (is_st_latest): closes at +5% on 2020-08-13; suspended from
  2023-03-08 to 2025-07-31 (a gap longer than the manager's look-back, across year files).
* 001201.SZ main board listed 2023-03-08 (before the main-board registration reform).
* 301001.SZ ChiNext listed 2020-08-24 (after the ChiNext reform).
* 001300.SZ main board listed 2025-07-30 (after the registration reform); no total_share rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

CAL = (pd.bdate_range("2020-08-10", "2020-09-04")
       .append(pd.bdate_range("2023-03-06", "2023-03-31"))
       .append(pd.bdate_range("2025-07-28", "2025-08-15")))
AMOUNT_END = pd.Timestamp("2023-03-17")

# code -> (board, list_date, first price (IPO price if listed inside the calendar), is_st)
STOCKS = {
    "000002.SZ": ("Main", "1991-01-29", 5.00, False),
    "001201.SZ": ("SME/Main", "2023-03-08", 15.00, False),
    "001300.SZ": ("SME/Main", "2025-07-30", 12.00, False),
    "300001.SZ": ("ChiNext", "2009-10-30", 20.00, False),
    "301001.SZ": ("ChiNext", "2020-08-24", 30.00, False),
    "600000.SH": ("Main", "1999-11-10", 10.00, False),
    "600001.SH": ("Main", "1998-01-01", 8.00, True),
    "688001.SH": ("STAR", "2020-08-12", 25.00, False),
}
SUSPENDED = {
    "000002.SZ": (pd.Timestamp("2020-08-17"), pd.Timestamp("2020-08-21")),
    "600001.SH": (pd.Timestamp("2023-03-08"), pd.Timestamp("2025-07-31")),
}
EX_DATE = ("600000.SH", pd.Timestamp("2020-08-20"), 0.50)


def half_up(x: float, pct: int) -> float:
    """Independent oracle: exchange rounding of x * (1 + pct/100) via decimal arithmetic."""
    from decimal import ROUND_HALF_UP, Decimal
    return float((Decimal(str(x)) * (Decimal(100 + pct) / Decimal(100)))
                 .quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _bars(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for code, (_, list_date, p0, _) in STOCKS.items():
        ld = pd.Timestamp(list_date)
        af = 1.0 + int(code[:6]) % 7 / 10
        prev = p0
        for d in CAL:
            if d < ld:
                continue
            sus = SUSPENDED.get(code)
            if sus and sus[0] <= d <= sus[1]:
                continue
            pre = prev
            if d == ld:
                close = round(p0 * 1.44, 2)          # listing day: big jump, no limit
            else:
                close = round(pre * (1 + float(np.clip(rng.normal(0, 0.015), -0.04, 0.04))), 2)
            opn = round(pre * (1 + float(rng.normal(0, 0.004))), 2)
            if (code, d) == EX_DATE[:2]:
                pre = round(prev - EX_DATE[2], 2)
                af = af * prev / pre
                close, opn = round(pre * 1.01, 2), round(pre, 2)
            hi = round(max(opn, close) + abs(float(rng.normal(0, 0.005))) * pre, 2)
            lo = round(min(opn, close) - abs(float(rng.normal(0, 0.005))) * pre, 2)
            ev = (code, d.strftime("%Y-%m-%d"))
            if ev == ("000002.SZ", "2020-08-25"):
                close, hi = 5.35, max(hi, 5.35)
                lo = min(lo, 5.35)
            if ev == ("000002.SZ", "2020-08-26"):              # one-price limit-up
                opn = hi = lo = close = half_up(pre, 10)
            if ev == ("000002.SZ", "2020-08-28"):              # opens at limit-up, trades lower
                opn = hi = half_up(pre, 10)
                lo, close = round(pre * 1.02, 2), round(pre * 1.05, 2)
            if ev == ("000002.SZ", "2023-03-10"):              # one-price limit-down
                opn = hi = lo = close = half_up(pre, -10)
            if ev in (("300001.SZ", "2020-08-21"), ("600001.SH", "2020-08-13")):
                close = hi = half_up(pre, 10 if code == "300001.SZ" else 5)
            if ev == ("300001.SZ", "2020-08-24"):
                close = hi = half_up(pre, 20)
            vol = float(rng.integers(10_000, 100_000))          # lots
            vwap = float(rng.uniform(lo, hi))
            amount = vol * 100 * vwap / 1000 if d <= AMOUNT_END else np.nan
            rows.append((code, d, opn, hi, lo, close, pre, vol, af, amount))
            prev = close
    df = pd.DataFrame(rows, columns=["ts_code", "trade_date", "open", "high", "low", "close",
                                     "pre_close", "vol", "adj_factor", "amount"])
    df["trade_date"] = df["trade_date"].astype("datetime64[ns]")
    return df.sort_values(["ts_code", "trade_date"]).reset_index(drop=True)


@dataclass
class Warehouse:
    root: Path
    daily: pd.DataFrame          # long bars, Tushare units
    est: pd.DataFrame            # daily_basic_est rows

    def value(self, code: str, date: str, col: str) -> float:
        """One raw cell of the long daily frame (KeyError if no bar)."""
        d = self.daily
        hit = d[(d.ts_code == code) & (d.trade_date == pd.Timestamp(date))]
        if hit.empty:
            raise KeyError((code, date))
        return float(hit[col].iloc[0])

    def bar_dates(self, code: str) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(self.daily.loc[self.daily.ts_code == code, "trade_date"])


def build_warehouse(root: Path, seed: int = 7) -> Warehouse:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "daily").mkdir(exist_ok=True)
    daily = _bars(rng)
    for year, part in daily.groupby(daily.trade_date.dt.year):
        part.to_parquet(root / "daily" / f"daily_{year}.parquet", index=False)
    cal = pd.DataFrame({"exchange": "SSE", "cal_date": CAL, "is_open": 1})
    closed = pd.DataFrame({"exchange": "SSE", "cal_date": pd.to_datetime(["2020-08-15",
                                                                          "2023-03-11"]),
                           "is_open": 0})
    cal = pd.concat([cal, closed]).sort_values("cal_date").reset_index(drop=True)
    cal["pretrade_date"] = pd.NaT
    cal.to_parquet(root / "trade_cal.parquet", index=False)

    est = daily.loc[daily.ts_code != "001300.SZ", ["ts_code", "trade_date"]].copy()
    est["total_share"] = est.ts_code.map(lambda c: 1000.0 + int(c[:6]) % 97 * 10.0)
    est.loc[(est.ts_code == "600000.SH") & (est.trade_date >= "2023-01-01"), "total_share"] *= 1.2
    est["anchor_date"] = est.trade_date
    est.to_parquet(root / "daily_basic_est.parquet", index=False)

    g = daily.groupby("ts_code").trade_date
    sb = pd.DataFrame({
        "ts_code": list(STOCKS),
        "symbol": [c[:6] for c in STOCKS],
        "name": [("ST" if v[3] else "") + f"Stock{c[:6]}" for c, v in STOCKS.items()],
        "board": [v[0] for v in STOCKS.values()],
        "list_date": pd.to_datetime([v[1] for v in STOCKS.values()]),
        "is_st_latest": [v[3] for v in STOCKS.values()],
    })
    sb["first_trade_date"] = sb.ts_code.map(g.min())
    sb["last_trade_date"] = sb.ts_code.map(g.max())
    sb.to_parquet(root / "stock_basic.parquet", index=False)

    far, last = pd.Timestamp("2005-04-08"), pd.Timestamp("2025-08-06")
    full = "Homes1ck/sQlib"
    members = pd.DataFrame([
        ("000300.SH", "600000.SH", far, last, full),
        ("000300.SH", "000002.SZ", far, pd.Timestamp("2020-08-20"), full),
        ("000300.SH", "000002.SZ", pd.Timestamp("2023-03-01"), last, full),
        ("000300.SH", "300001.SZ", pd.Timestamp("2020-08-25"), pd.Timestamp("2023-03-15"), full),
        ("000300.SH", "688001.SH", pd.Timestamp("2025-07-29"), pd.Timestamp("2025-07-31"), full),
        ("000300.SH", "600005.SH", far, last, full),               # no price data
        ("000300.SH", "001201.SZ", pd.Timestamp("2023-03-08"), pd.Timestamp("2026-05-08"),
         "fr220574/Qlib-format-A-share-dataset"),                   # survivor list: ignored
        ("000905.SH", "600001.SH", far, last, full),
    ], columns=["index_code", "con_code", "in_date", "out_date", "source"])
    members.to_parquet(root / "index_member.parquet", index=False)

    idx = pd.DataFrame({"ts_code": "000300.SH", "trade_date": CAL,
                        "close": 4000 + np.arange(len(CAL), dtype=float)})
    for c in ("open", "high", "low"):
        idx[c] = idx["close"]
    idx["pre_close"] = idx["close"] - 1.0
    idx["pct_chg"] = (idx["close"] / idx["pre_close"] - 1) * 100
    idx["vol"] = 1e6
    idx["amount"] = 2e6
    idx.to_parquet(root / "index_daily.parquet", index=False)
    return Warehouse(root, daily, est)


def sealed_config(tmp_path: Path, root: Path) -> Path:
    """A mine.toml on this warehouse: train = the 2020 block, valid = 2023 block (to
    2025-07-25), test = the 2025 block; store, run folders and caches in ``tmp_path``."""
    p = tmp_path / "mine.toml"
    p.write_text(f"""
[data]
root = "{root}"
cache_dir = "{tmp_path / 'cache'}"
[evaluate]
train = ["2020-08-10", "2020-09-04"]
valid = ["2023-03-06", "2025-07-25"]
test = ["2025-07-28", "2025-08-15"]
embargo = 1
min_listed_days = 3
[store]
path = "{tmp_path / 'lb.db'}"
min_valid_rank_ic = 0.0
[gp]
universe = "all"
start = "2020-08-10"
population = 20
generations = 1
top = 2
n_jobs = 1
fields = ["close", "vol"]
[backtest]
universe = "all"
start = "2020-08-10"
out_dir = "{tmp_path / 'bt'}"
[model]
out_dir = "{tmp_path / 'models'}"
""")
    return p
