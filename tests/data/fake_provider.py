"""An in-process fake of the Tushare provider serving a small synthetic market.

``FakeProvider(seed).query(api_name, params, fields)`` answers like
:meth:`data.tushare.TushareProvider.query`: a DataFrame with the requested ``fields`` (Tushare
column names, dates as ``YYYYMMDD`` strings), filtered by ``trade_date``, ``ts_code``,
``index_code``, ``start_date``/``end_date``, ``list_status``, ``ann_date``, ``period``.

Market (deterministic for a seed): 10 stocks, one delisted on 2024-01-19 (600100.SH), one ST
from 2024-01-10 (000005.SZ, via namechange), one listed on 2024-01-15 (001380.SZ), one
suspended 2024-01-22..23 (000002.SZ); trading days: the weekdays 2023-12-01..2024-02-29; two
indices with daily bars, monthly weights of 000300.SH/000905.SH, dividends, quarterly
fundamentals.

Scriptable failures: ``fail={(api_name, trade_date): "empty" | Exception}``; the environment
variable ``FAKE_KILL_AT_CALL=N`` makes the N-th call SIGKILL its own process.
"""
from __future__ import annotations

import os
import signal
import zlib

import numpy as np
import pandas as pd

DAYS = pd.bdate_range("2023-12-01", "2024-02-29")
STOCKS = {  # code -> (name, list_date, delist_date, list_status)
    "000001.SZ": ("平安银行", "19910403", None, "L"),
    "000002.SZ": ("万科A", "19910129", None, "L"),
    "000005.SZ": ("世纪星源", "19901210", None, "L"),
    "000858.SZ": ("五粮液", "19980427", None, "L"),
    "001380.SZ": ("新股", "20240115", None, "L"),
    "300750.SZ": ("宁德时代", "20180611", None, "L"),
    "600000.SH": ("浦发银行", "19991110", None, "L"),
    "600100.SH": ("退市股", "19970625", "20240119", "D"),
    "600519.SH": ("贵州茅台", "20010827", None, "L"),
    "688981.SH": ("中芯国际", "20200716", None, "L"),
}
INDICES = ("000300.SH", "000905.SH")
SUSPENDED = {("000002.SZ", "20240122"), ("000002.SZ", "20240123")}


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("|".join(map(str, key)).encode()))


class FakeProvider:
    """The fake provider (module docstring)."""

    name = "fake"

    def __init__(self, seed: int = 0, fail: dict | None = None):
        self.seed = seed
        self.fail = dict(fail or {})
        self.calls: dict[str, int] = {}
        self.n = 0
        kill = os.environ.get("FAKE_KILL_AT_CALL")
        self.kill_at = int(kill) if kill else 0

    # ------------------------------------------------------------------ the interface
    def query(self, api_name, params=None, fields=()):
        params = dict(params or {})
        self.n += 1
        self.calls[api_name] = self.calls.get(api_name, 0) + 1
        if self.kill_at and self.n >= self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        f = self.fail.get((api_name, params.get("trade_date")))
        if isinstance(f, BaseException):
            raise f
        df = getattr(self, "_" + api_name)(params)
        if f == "empty":
            df = df.iloc[:0]
        if fields:
            for c in fields:
                if c not in df.columns:
                    df[c] = None
            df = df[list(fields)]
        return df.reset_index(drop=True)

    # ------------------------------------------------------------------ helpers
    def _listed(self, day: str) -> list[str]:
        return [c for c, (_, ld, dd, _) in STOCKS.items()
                if ld <= day and (dd is None or day < dd)]

    @staticmethod
    def _range(params, days=DAYS):
        s = pd.Timestamp(params.get("start_date", "19000101"))
        e = pd.Timestamp(params.get("end_date", "22000101"))
        return [d.strftime("%Y%m%d") for d in days if s <= d <= e]

    def _bar(self, code: str, day: str) -> dict:
        r = _rng(self.seed, code, day)
        close = round(10 + 90 * r.random(), 2)
        pre = round(close / (1 + r.normal(0, 0.02)), 2)
        return {"ts_code": code, "trade_date": day, "open": pre, "high": max(pre, close) + 0.1,
                "low": min(pre, close) - 0.1, "close": close, "pre_close": pre,
                "vol": float(r.integers(1000, 100000)), "amount": round(r.random() * 1e5, 3)}

    # ------------------------------------------------------------------ endpoints
    def _trade_cal(self, p):
        cal = pd.date_range(p.get("start_date", "20230101"), p.get("end_date", "20241231"))
        rows, prev = [], None
        for d in cal:
            is_open = int(d.weekday() < 5)
            rows.append({"exchange": "SSE", "cal_date": d.strftime("%Y%m%d"),
                         "is_open": is_open, "pretrade_date": prev})
            if is_open:
                prev = d.strftime("%Y%m%d")
        return pd.DataFrame(rows[::-1])

    def _stock_basic(self, p):
        rows = [{"ts_code": c, "symbol": c[:6], "name": n, "area": "深圳", "industry": "银行",
                 "market": "主板", "exchange": c[-2:] + "SE", "list_status": st,
                 "list_date": ld, "delist_date": dd}
                for c, (n, ld, dd, st) in STOCKS.items() if st == p.get("list_status", "L")]
        return pd.DataFrame(rows, columns=["ts_code", "symbol", "name", "area", "industry",
                                           "market", "exchange", "list_status", "list_date",
                                           "delist_date"])

    def _namechange(self, p):
        return pd.DataFrame([
            {"ts_code": "000005.SZ", "name": "世纪星源", "start_date": "19901210",
             "end_date": "20240109", "ann_date": "19901201", "change_reason": "改名"},
            {"ts_code": "000005.SZ", "name": "ST星源", "start_date": "20240110",
             "end_date": None, "ann_date": "20240109", "change_reason": "ST"}])

    def _index_member_all(self, p):
        rows = [{"ts_code": c, "l1_code": "801780.SI", "l1_name": "银行", "l2_code": "801783.SI",
                 "l2_name": "股份制银行", "in_date": "20211213", "out_date": None, "is_new": "Y"}
                for c in STOCKS]
        rows.append({"ts_code": "000001.SZ", "l1_code": "801790.SI", "l1_name": "非银金融",
                     "l2_code": "801791.SI", "l2_name": "证券", "in_date": "20140101",
                     "out_date": "20211212", "is_new": "N"})
        return pd.DataFrame([r for r in rows if r["is_new"] == p.get("is_new", "Y")])

    def _days_rows(self, p, make):
        day = p["trade_date"]
        if pd.Timestamp(day) not in DAYS:
            return pd.DataFrame()
        return pd.DataFrame([make(c, day) for c in self._listed(day)
                             if (c, day) not in SUSPENDED])

    def _daily(self, p):
        return self._days_rows(p, self._bar)

    def _adj_factor(self, p):
        return self._days_rows(p, lambda c, d: {"ts_code": c, "trade_date": d,
                                                "adj_factor": 1.0 + (c == "000001.SZ") * 0.5})

    def _daily_basic(self, p):
        def row(c, d):
            r = _rng(self.seed, "db", c, d)
            return {"ts_code": c, "trade_date": d, "turnover_rate": r.random() * 5,
                    "pe": 10 + r.random() * 20, "pb": 1 + r.random(), "total_share": 1e5,
                    "float_share": 8e4, "free_share": 6e4, "total_mv": 1e6 * (1 + r.random()),
                    "circ_mv": 8e5}
        return self._days_rows(p, row)

    def _stk_limit(self, p):
        def row(c, d):
            pre = self._bar(c, d)["pre_close"]
            return {"ts_code": c, "trade_date": d, "pre_close": pre,
                    "up_limit": round(pre * 1.1, 2), "down_limit": round(pre * 0.9, 2)}
        return self._days_rows(p, row)

    def _suspend_d(self, p):
        day = p["trade_date"]
        return pd.DataFrame([{"ts_code": c, "trade_date": d, "suspend_timing": None,
                              "suspend_type": "S"} for c, d in sorted(SUSPENDED) if d == day],
                            columns=["ts_code", "trade_date", "suspend_timing", "suspend_type"])

    def _dividend(self, p):
        rows = [{"ts_code": "600000.SH", "end_date": "20231231", "ann_date": "20240110",
                 "div_proc": "预案", "cash_div": 0.5, "cash_div_tax": 0.5},
                {"ts_code": "000001.SZ", "end_date": "20230630", "ann_date": "20240116",
                 "div_proc": "实施", "cash_div": 0.3, "cash_div_tax": 0.3,
                 "record_date": "20240118", "ex_date": "20240119", "pay_date": "20240119"}]
        return pd.DataFrame([r for r in rows if r["ann_date"] == p.get("ann_date")])

    def _index_daily(self, p):
        return pd.DataFrame([{**self._bar(p["ts_code"], d), "pct_chg": 0.1}
                             for d in self._range(p)])

    def _index_weight(self, p):
        firsts = self._month_firsts(p)
        code = p["index_code"]
        if code not in INDICES:
            return pd.DataFrame()
        rows = []
        for d in firsts:
            members = [c for c in self._listed(d)][: (6 if code == "000300.SH" else 4)]
            if d >= "20240201" and code == "000300.SH":
                members = members[1:]
            rows += [{"index_code": code, "con_code": c, "trade_date": d,
                      "weight": 100 / len(members)} for c in members]
        return pd.DataFrame(rows)

    def _month_firsts(self, p):
        firsts = pd.Series(DAYS).groupby(DAYS.to_period("M")).min()
        return [d.strftime("%Y%m%d") for d in firsts if d.strftime("%Y%m%d") in self._range(p)]

    def _fina(self, p, cols):
        q = p["period"]
        ann = (pd.Timestamp(q) + pd.Timedelta(days=30)).strftime("%Y%m%d")
        if ann > "20240229":
            return pd.DataFrame()
        rows = []
        for c in STOCKS:
            r = _rng(self.seed, "fin", c, q)
            rows.append({"ts_code": c, "ann_date": ann, "f_ann_date": ann, "end_date": q,
                         **{k: float(r.normal()) for k in cols}})
        return pd.DataFrame(rows)

    def _fina_indicator_vip(self, p):
        return self._fina(p, ("eps", "roe"))

    def _income_vip(self, p):
        return self._fina(p, ("revenue", "n_income"))

    def _balancesheet_vip(self, p):
        return self._fina(p, ("total_assets", "total_liab"))

    def _cashflow_vip(self, p):
        return self._fina(p, ("n_cashflow_act",))
