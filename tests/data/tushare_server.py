"""A local server speaking Tushare Pro's wire protocol, answering from a synthetic market.

The test bed of the Tushare data path: the real ``tushare`` client (or
:class:`data.tushare.TushareProvider`) is pointed at ``serve(...)[0]`` and gets Tushare-shaped
answers without any network.

Protocol (as ``tushare.pro.client.DataApi.query`` speaks it): ``POST <url>/<api_name>`` with the
JSON body ``{"api_name", "token", "params", "fields"}``; the reply is ``{"code": 0, "msg": "",
"data": {"fields": [...], "items": [[...], ...]}}`` or ``{"code": <non-zero>, "msg": ...}``.
Dates are ``YYYYMMDD`` strings, nulls ``null``, units as Tushare delivers them (vol in lots,
amount in thousand yuan, shares in 10k shares, market values in 10k yuan, weights in %).

Every endpoint honours ``fields`` (a comma-separated string or a list; empty = all columns) and
``limit`` / ``offset``, with a per-endpoint row limit in the server (``row_limits``; small values
in tests make the client page). The token must equal the expected one (``code 40101``
otherwise).

Scripted faults (:class:`Faults`): ``Faults({"daily": ["rate_limit", "http500"]})`` answers the
next two ``daily`` requests with those faults, in order, then normally; ``Faults(prob=0.2,
seed=1)`` injects a random transient fault into each request with that probability. Kinds:

========== ==============================================================================
kind       reply
========== ==============================================================================
rate_limit ``code 40203`` with Tushare's per-minute message (transient)
daily_cap  ``code 40203`` with the per-day message (not worth retrying)
http500    HTTP 500 with an empty body (the client returns an empty frame without columns)
timeout    the reply is delayed by ``Faults.delay`` seconds (set the client timeout below)
truncated  HTTP 200 whose JSON body is cut in half
reset      the connection is closed without a reply
server     ``code 50101`` "服务器内部错误" (a server-side error, transient)
empty_items ``code 0`` with the fields but zero rows, even for a day that has data
token      ``code 40101`` token invalid
permission ``code 2002`` no permission for the endpoint
========== ==============================================================================

``serve`` returns ``(url, stop)``; ``stop()`` shuts the server down and ``stop.counts``
(requests per endpoint, faults included) and ``stop.requests`` (``(api_name, params)`` of each
request, never the token) let tests see what was asked.

Run by hand: ``python tests/data/tushare_server.py --port 8766 --seed 0`` (token
:data:`TEST_TOKEN` unless ``--token``).
"""
from __future__ import annotations

import argparse
import json
import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd

TEST_TOKEN = "tk-test-0123456789abcdef0123456789abcdef"
RATE_LIMIT_MSG = ("抱歉，您每分钟最多访问该接口200次，权限的具体详情访问："
                  "https://tushare.pro/document/1?doc_id=108。")
DAILY_CAP_MSG = ("抱歉，您每天最多访问该接口10000次，权限的具体详情访问："
                 "https://tushare.pro/document/1?doc_id=108。")
TOKEN_MSG = "您的token不对，请确认。"
PERMISSION_MSG = ("抱歉，您没有访问该接口的权限，权限的具体详情访问："
                  "https://tushare.pro/document/1?doc_id=108。")
SERVER_MSG = "服务器内部错误，请稍后重试。"
#: Default per-endpoint row limit of the server when ``row_limits`` does not name one.
DEFAULT_ROW_LIMIT = 6000
INDEX_CODES = ("000300.SH", "000905.SH", "000001.SH")
_LOCK = threading.Lock()
TRANSIENT = ("rate_limit", "http500", "timeout", "truncated", "reset", "server")


# ---------------------------------------------------------------------------------------------
# the synthetic market


@dataclass
class Market:
    """The synthetic market: one DataFrame per endpoint, in Tushare's columns and units.

    Attributes worth knowing in tests: ``trade_days`` (open days, ``YYYYMMDD``), ``delisted``,
    ``paused``, ``suspended`` (+ ``suspended_days``), ``new_listing``, ``st_stock`` (+
    ``st_start``, ``st_end``), ``div_stock`` (+ ``ex_date``), ``industry_changer``.
    """

    tables: dict[str, pd.DataFrame]
    trade_days: list[str]
    info: dict = field(default_factory=dict)

    def __getattr__(self, name):
        try:
            return self.__dict__["info"][name]
        except KeyError:
            raise AttributeError(name) from None


def _d(ts) -> str:
    return pd.Timestamp(ts).strftime("%Y%m%d")


def _codes(n: int) -> list[str]:
    out = []
    for i in range(n):
        kind = i % 4
        out.append([f"6000{i:02d}.SH", f"0000{i:02d}.SZ", f"3000{i:02d}.SZ",
                    f"6880{i:02d}.SH"][kind])
    return out


def _limit_pct(code: str, st: bool) -> float:
    if st:
        return 0.05
    return 0.20 if code.startswith(("300", "688")) else 0.10


def make_market(seed: int = 0, n_stocks: int = 30, start: str = "2024-01-02",
                n_days: int = 60) -> Market:
    """Build the synthetic market (deterministic for ``seed``).

    Codes cycle through main-board SH (600xxx), main-board SZ (000xxx), ChiNext (300xxx) and
    STAR (688xxx). Special stocks: index 1 is delisted two thirds in (list_status D, no bars
    from ``delist_date`` on), index 2 is suspended for 3 days (no daily rows; suspend_d S rows
    and an R row on resumption), index 3 lists a third in, index 4 is ST (namechange, 5% limits)
    for the middle third, index 5 is list_status P (no bars after 5/6 of the period), index 6
    pays a 0.5 yuan cash dividend (ex_date mid-period; pre_close and adj_factor step), index 7
    changes Shenwan industry mid-period.
    """
    assert 10 <= n_stocks <= 100 and n_days >= 30
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start)
    # calendar: weekdays open except one holiday (the 8th weekday)
    days, cal, d, weekday_i = [], [], t0, 0
    while len(days) < n_days:
        is_open = d.weekday() < 5
        if is_open:
            weekday_i += 1
            if weekday_i == 8:
                is_open = False
        cal.append((d, int(is_open)))
        if is_open:
            days.append(_d(d))
        d += pd.Timedelta(days=1)
    prev = t0 - pd.Timedelta(days=1)
    while prev.weekday() >= 5:
        prev -= pd.Timedelta(days=1)
    pre, prev = [], _d(prev)
    for dd, o in cal:
        pre.append(prev)
        if o:
            prev = _d(dd)
    trade_cal = pd.DataFrame({"exchange": "SSE", "cal_date": [_d(x) for x, _ in cal],
                              "is_open": [o for _, o in cal], "pretrade_date": pre})
    trade_cal = trade_cal.iloc[::-1].reset_index(drop=True)  # Tushare: newest first

    codes = _codes(n_stocks)
    third = n_days // 3
    info = {"delisted": codes[1], "delist_date": days[2 * third], "paused": codes[5],
            "suspended": codes[2], "suspended_days": days[10:13], "new_listing": codes[3],
            "list_date_new": days[third], "st_stock": codes[4], "st_start": days[third],
            "st_end": days[2 * third], "div_stock": codes[6], "ex_date": days[n_days // 2],
            "industry_changer": codes[7], "industry_change_date": days[n_days // 2],
            "paused_after": days[5 * n_days // 6], "codes": codes}
    names = {c: f"股票{i:02d}" for i, c in enumerate(codes)}

    sb = []
    for i, c in enumerate(codes):
        status, ld, dl = "L", "20100104", None
        if c == info["delisted"]:
            status, dl = "D", info["delist_date"]
        elif c == info["paused"]:
            status = "P"
        elif c == info["new_listing"]:
            ld = info["list_date_new"]
        sym, ex = c.split(".")
        market = ("创业板" if sym.startswith("300") else "科创板" if sym.startswith("688")
                  else "主板")
        sb.append({"ts_code": c, "symbol": sym, "name": names[c],
                   "area": ["深圳", "上海", "北京"][i % 3],
                   "industry": ["银行", "医药", "电子", "汽车"][i % 4], "market": market,
                   "exchange": "SSE" if ex == "SH" else "SZSE", "list_status": status,
                   "list_date": ld, "delist_date": dl})
    stock_basic = pd.DataFrame(sb)

    daily, adj, basic, limits, susp = [], [], [], [], []
    for i, c in enumerate(codes):
        price = float(np.round(rng.uniform(5, 50), 2))
        factor = float(np.round(rng.uniform(1, 3), 4))
        total_share = float(np.round(rng.uniform(1e4, 5e5), 2))
        first = info["list_date_new"] if c == info["new_listing"] else days[0]
        for t, day in enumerate(days):
            if day < first:
                continue
            if c == info["delisted"] and day >= info["delist_date"]:
                break
            if c == info["paused"] and day > info["paused_after"]:
                break
            st = c == info["st_stock"] and info["st_start"] <= day < info["st_end"]
            lim = _limit_pct(c, st)
            pre_close = price
            if c == info["div_stock"] and day == info["ex_date"]:
                cash = 0.5
                pre_close = round(price - cash, 2)
                factor = round(factor * price / pre_close, 4)
            up, down = round(pre_close * (1 + lim), 2), round(pre_close * (1 - lim), 2)
            limits.append((day, c, pre_close, up, down))
            if c == info["suspended"] and day in info["suspended_days"]:
                susp.append((c, day, None, "S"))
                continue
            if c == info["suspended"] and t > 0 and days[t - 1] == info["suspended_days"][-1]:
                susp.append((c, day, None, "R"))
            r = float(np.clip(rng.normal(0, 0.025), -lim, lim))
            close = float(np.clip(round(pre_close * (1 + r), 2), down, up))
            open_ = float(np.clip(round(pre_close * (1 + rng.normal(0, 0.01)), 2), down, up))
            high = float(min(up, round(max(open_, close) * (1 + abs(rng.normal(0, 0.005))), 2)))
            low = float(max(down, round(min(open_, close) * (1 - abs(rng.normal(0, 0.005))), 2)))
            vol = float(np.round(rng.uniform(1e4, 1e6), 2))
            amount = round(vol * 100 * (open_ + close) / 2 / 1000, 3)
            daily.append((c, day, open_, high, low, close, pre_close, round(close - pre_close, 2),
                          round((close / pre_close - 1) * 100, 4), vol, amount))
            adj.append((c, day, factor))
            float_share = round(total_share * 0.8, 2)
            free_share = round(total_share * 0.6, 2)
            basic.append((c, day, close, round(vol * 100 / float_share / 1e4 * 100, 4),
                          round(vol * 100 / free_share / 1e4 * 100, 4),
                          round(rng.uniform(0.5, 2), 2), round(rng.uniform(5, 50), 4),
                          round(rng.uniform(5, 50), 4), round(rng.uniform(0.5, 5), 4),
                          round(rng.uniform(0.5, 5), 4), round(rng.uniform(0.5, 5), 4),
                          round(rng.uniform(0, 3), 4), round(rng.uniform(0, 3), 4),
                          total_share, float_share, free_share,
                          round(close * total_share, 4), round(close * float_share, 4)))
            price = close
    by_day = ["trade_date", "ts_code"]

    def frame(rows, cols):
        return (pd.DataFrame(rows, columns=cols)
                .sort_values(by_day, ascending=[False, True]).reset_index(drop=True))

    tables = {"trade_cal": trade_cal, "stock_basic": stock_basic}
    tables["daily"] = frame(daily, ["ts_code", "trade_date", "open", "high", "low", "close",
                                    "pre_close", "change", "pct_chg", "vol", "amount"])
    tables["adj_factor"] = frame(adj, ["ts_code", "trade_date", "adj_factor"])
    tables["daily_basic"] = frame(basic, [
        "ts_code", "trade_date", "close", "turnover_rate", "turnover_rate_f", "volume_ratio",
        "pe", "pe_ttm", "pb", "ps", "ps_ttm", "dv_ratio", "dv_ttm", "total_share",
        "float_share", "free_share", "total_mv", "circ_mv"])
    tables["stk_limit"] = frame(limits, ["trade_date", "ts_code", "pre_close", "up_limit",
                                         "down_limit"])
    tables["suspend_d"] = frame(susp, ["ts_code", "trade_date", "suspend_timing",
                                       "suspend_type"])

    # namechange: every stock's listing name, plus the ST episode
    nc = []
    for c in codes:
        ld = stock_basic.set_index("ts_code").at[c, "list_date"]
        if c == info["st_stock"]:
            before = _d(pd.Timestamp(info["st_start"]) - pd.Timedelta(days=1))
            back = _d(pd.Timestamp(info["st_end"]) - pd.Timedelta(days=1))
            nc += [(c, names[c], ld, before, ld, "新股上市"),
                   (c, "ST" + names[c], info["st_start"], back, info["st_start"], "ST"),
                   (c, names[c], info["st_end"], None, info["st_end"], "撤销ST")]
        else:
            nc.append((c, names[c], ld, None, ld, "新股上市"))
    tables["namechange"] = pd.DataFrame(nc, columns=["ts_code", "name", "start_date",
                                                     "end_date", "ann_date", "change_reason"])

    # indices: equal-weighted returns of their members
    d_ = tables["daily"]
    ret = (d_.assign(r=d_["close"] / d_["pre_close"] - 1)
           .pivot(index="trade_date", columns="ts_code", values="r").sort_index())
    halves = {"000300.SH": codes[: n_stocks // 2], "000905.SH": codes[n_stocks // 2:],
              "000001.SH": codes}
    idx_rows = []
    for k, (ic, members) in enumerate(halves.items()):
        level = 1000.0 * (k + 3)
        for day, r in ret[[m for m in members if m in ret]].mean(axis=1).items():
            pre_close, close = level, round(level * (1 + r), 4)
            idx_rows.append((ic, day, close, round(pre_close * 1.001, 4),
                             round(max(close, pre_close) * 1.005, 4),
                             round(min(close, pre_close) * 0.995, 4), round(pre_close, 4),
                             round(close - pre_close, 4), round(r * 100, 4), 1e8, 1e9))
            level = close
    tables["index_daily"] = frame(idx_rows, [
        "ts_code", "trade_date", "close", "open", "high", "low", "pre_close", "change",
        "pct_chg", "vol", "amount"])

    # index_weight: monthly snapshot on the first trading day of each month; the CSI300-like
    # index swaps one member after the first month
    months = sorted({day[:6] for day in days})
    iw = []
    for m_i, month in enumerate(months):
        snap = min(day for day in days if day.startswith(month))
        for ic in ("000300.SH", "000905.SH"):
            members = [m for m in halves[ic] if m not in (info["delisted"],)]
            if ic == "000300.SH" and m_i >= 1:
                members = members[:-1] + [halves["000905.SH"][-1]]
            w = rng.uniform(1, 5, len(members))
            w = np.round(w / w.sum() * 100, 4)
            iw += [(ic, m, snap, float(x)) for m, x in zip(members, w)]
    tables["index_weight"] = (pd.DataFrame(iw, columns=["index_code", "con_code", "trade_date",
                                                        "weight"])
                              .sort_values(["trade_date", "index_code", "con_code"],
                                           ascending=[False, True, True])
                              .reset_index(drop=True))

    # Shenwan 2021 membership
    l1 = [("801780.SI", "银行", "801783.SI", "股份制银行Ⅱ"),
          ("801150.SI", "医药生物", "801151.SI", "化学制药"),
          ("801080.SI", "电子", "801081.SI", "半导体"),
          ("801880.SI", "汽车", "801093.SI", "汽车零部件")]
    sw = []
    for i, c in enumerate(codes):
        a = l1[i % 4]
        ld = stock_basic.set_index("ts_code").at[c, "list_date"]
        if c == info["industry_changer"]:
            b = l1[(i + 1) % 4]
            chg = info["industry_change_date"]
            sw.append((*a, a[2][:-3] + "01.SI", a[3] + "Ⅲ", c, names[c], ld, chg, "N"))
            sw.append((*b, b[2][:-3] + "01.SI", b[3] + "Ⅲ", c, names[c], chg, None, "Y"))
        else:
            out = info["delist_date"] if c == info["delisted"] else None
            sw.append((*a, a[2][:-3] + "01.SI", a[3] + "Ⅲ", c, names[c], ld, out,
                       "N" if out else "Y"))
    tables["index_member_all"] = pd.DataFrame(sw, columns=[
        "l1_code", "l1_name", "l2_code", "l2_name", "l3_code", "l3_name", "ts_code", "name",
        "in_date", "out_date", "is_new"])

    # dividend: one implemented cash dividend in range (plus its earlier plan row)
    ex = info["ex_date"]
    rec = _d(pd.Timestamp(ex) - pd.Timedelta(days=1))
    tables["dividend"] = pd.DataFrame([
        (info["div_stock"], "20231231", "20231115", "预案", 0.0, 0.0, 0.0, 0.5, 0.5,
         None, None, None, None, None, None, None),
        (info["div_stock"], "20231231", rec, "实施", 0.0, 0.0, 0.0, 0.5, 0.5, rec, ex, ex,
         None, rec, "20231231", 1e5)],
        columns=["ts_code", "end_date", "ann_date", "div_proc", "stk_div", "stk_bo_rate",
                 "stk_co_rate", "cash_div", "cash_div_tax", "record_date", "ex_date",
                 "pay_date", "div_listdate", "imp_ann_date", "base_date", "base_share"])

    # fundamentals: quarterly, announced 20..110 days after the period end
    ends = ["20230331", "20230630", "20230930", "20231231", "20240331"]
    fi, inc, bs, cf = [], [], [], []
    for c in codes:
        for e in ends:
            lag = int(rng.integers(20, 110))
            ann = _d(pd.Timestamp(e) + pd.Timedelta(days=lag))
            f_ann = ann
            rev = round(float(rng.uniform(1e8, 1e10)), 2)
            ni = round(rev * float(rng.uniform(-0.05, 0.2)), 2)
            ta = round(rev * 3, 2)
            tl = round(ta * 0.5, 2)
            fi.append((c, ann, e, round(ni / 1e9, 4), round(ni / (ta - tl) * 100, 4),
                       round(ni / ta * 100, 4), round(float(rng.uniform(10, 60)), 4),
                       round(tl / ta * 100, 4)))
            inc.append((c, ann, f_ann, e, "1", "1", "1", round(ni / 1e9, 4), rev, rev, ni, ni))
            bs.append((c, ann, f_ann, e, "1", "1", "1", ta, tl, round(ta - tl, 2)))
            cf.append((c, ann, f_ann, e, "1", "1", "1", round(ni * 1.1, 2), round(ni * 0.6, 2)))
    tables["fina_indicator"] = pd.DataFrame(fi, columns=[
        "ts_code", "ann_date", "end_date", "eps", "roe", "roa", "grossprofit_margin",
        "debt_to_assets"])
    rpt = ["report_type", "comp_type", "end_type"]
    tables["income"] = pd.DataFrame(inc, columns=[
        "ts_code", "ann_date", "f_ann_date", "end_date", *rpt, "basic_eps", "total_revenue",
        "revenue", "n_income", "n_income_attr_p"])
    tables["balancesheet"] = pd.DataFrame(bs, columns=[
        "ts_code", "ann_date", "f_ann_date", "end_date", *rpt, "total_assets", "total_liab",
        "total_hldr_eqy_exc_min_int"])
    tables["cashflow"] = pd.DataFrame(cf, columns=[
        "ts_code", "ann_date", "f_ann_date", "end_date", *rpt, "n_cashflow_act",
        "free_cashflow"])
    tables["moneyflow"] = _moneyflow(tables["daily"], seed)
    return Market(tables=tables, trade_days=days, info=info)


def _moneyflow(daily: pd.DataFrame, seed: int) -> pd.DataFrame:
    """``moneyflow`` rows (doc_id=170) for every bar of ``daily``: the day's volume (lots) and
    value (thousand yuan -> 10k yuan) split at random into buy and sell orders of four sizes,
    plus a net inflow that is NOT the bucket sum (Tushare computes it from L2 orders). Its own
    random stream, so the other tables do not depend on it."""
    rng = np.random.default_rng([seed, 170])
    n = len(daily)
    vol, amt = daily["vol"].to_numpy(float), daily["amount"].to_numpy(float) / 10.0
    share = rng.dirichlet(np.ones(8), size=n)              # 4 sizes x (buy, sell)
    out = {"ts_code": daily["ts_code"].to_numpy(), "trade_date": daily["trade_date"].to_numpy()}
    k = 0
    for size in ("sm", "md", "lg", "elg"):
        for side in ("buy", "sell"):
            out[f"{side}_{size}_vol"] = np.round(vol * share[:, k]).astype(np.int64)
            out[f"{side}_{size}_amount"] = np.round(amt * share[:, k], 2)
            k += 1
    df = pd.DataFrame(out)
    buy = sum(df[f"buy_{s}_amount"] for s in ("sm", "md", "lg", "elg"))
    sell = sum(df[f"sell_{s}_amount"] for s in ("sm", "md", "lg", "elg"))
    bv = sum(df[f"buy_{s}_vol"] for s in ("sm", "md", "lg", "elg"))
    sv = sum(df[f"sell_{s}_vol"] for s in ("sm", "md", "lg", "elg"))
    df["net_mf_vol"] = (bv - sv + rng.integers(-50, 50, n)).astype(np.int64)
    df["net_mf_amount"] = np.round(buy - sell + rng.normal(0, 5, n), 2)
    return df.sort_values(["trade_date", "ts_code"], ascending=[False, True]) \
        .reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# answering a query


def _in(s: pd.Series, value) -> pd.Series:
    vals = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return s.isin([v.strip() for v in vals])


#: endpoint -> (code column, date column used by trade_date/start_date/end_date)
_DATED = {"daily": ("ts_code", "trade_date"), "adj_factor": ("ts_code", "trade_date"),
          "daily_basic": ("ts_code", "trade_date"), "stk_limit": ("ts_code", "trade_date"),
          "moneyflow": ("ts_code", "trade_date"), "suspend_d": ("ts_code", "trade_date"),
          "index_daily": ("ts_code", "trade_date"),
          "index_weight": ("index_code", "trade_date"),
          "fina_indicator": ("ts_code", "ann_date"), "income": ("ts_code", "ann_date"),
          "balancesheet": ("ts_code", "ann_date"), "cashflow": ("ts_code", "ann_date"),
          "namechange": ("ts_code", "ann_date")}


def answer(market: Market, api: str, params: dict) -> pd.DataFrame:
    """All rows of ``api`` matching ``params`` (before fields / limit / offset).

    ``<name>_vip`` (the whole market per report period, for 5000+ points) answers as ``<name>``.
    """
    if api.endswith("_vip") and api[:-4] in market.tables:
        api = api[:-4]
    if api not in market.tables:
        raise KeyError(api)
    df = market.tables[api]
    p = {k: v for k, v in params.items() if v not in (None, "")}
    m = pd.Series(True, index=df.index)
    if api == "trade_cal":
        if "exchange" in p and p["exchange"] != "SSE":
            m &= False
        for k, op in (("start_date", "ge"), ("end_date", "le")):
            if k in p:
                m &= getattr(df["cal_date"], op)(str(p[k]))
        if "is_open" in p:
            m &= df["is_open"] == int(p["is_open"])
    elif api == "stock_basic":
        m &= _in(df["list_status"], p.get("list_status", "L"))
        for k in ("ts_code", "exchange", "market"):
            if k in p:
                m &= _in(df[k], p[k])
    elif api == "index_member_all":
        for k in ("l1_code", "l2_code", "l3_code", "ts_code", "is_new"):
            if k in p:
                m &= _in(df[k], p[k])
    elif api == "dividend":
        for k in ("ts_code", "ann_date", "record_date", "ex_date", "imp_ann_date"):
            if k in p:
                m &= _in(df[k].fillna(""), p[k])
    elif api in _DATED:
        code_col, date_col = _DATED[api]
        if code_col in p:
            m &= _in(df[code_col], p[code_col])
        if "ts_code" in p and code_col != "ts_code":
            m &= _in(df["con_code"], p["ts_code"])
        if "con_code" in p and "con_code" in df:
            m &= _in(df["con_code"], p["con_code"])
        if "trade_date" in p:
            m &= df[date_col] == str(p["trade_date"])
        if "ann_date" in p and date_col == "ann_date":
            m &= df["ann_date"] == str(p["ann_date"])
        if "period" in p:
            m &= df["end_date"] == str(p["period"])
        if "start_date" in p:
            m &= df[date_col].fillna("") >= str(p["start_date"])
        if "end_date" in p:
            m &= df[date_col].fillna("99999999") <= str(p["end_date"])
    return df[m]


# ---------------------------------------------------------------------------------------------
# faults


class Faults:
    """Scripted and random faults, consumed per endpoint; thread-safe.

    Parameters
    ----------
    script : dict of str to list of str, optional
        Endpoint (or ``"*"`` for any) -> fault kinds answered to its next requests, in order.
    prob : float
        Probability of a random transient fault (one of ``kinds``) on each unscripted request.
    kinds : sequence of str
        The kinds drawn in probability mode (default: the transient ones).
    seed : int
        Seed of the probability mode.
    delay : float
        Seconds a ``timeout`` reply is held back (make the client's timeout shorter).
    """

    def __init__(self, script: dict[str, list[str]] | None = None, *, prob: float = 0.0,
                 kinds=TRANSIENT, seed: int = 0, delay: float = 1.0):
        self.queues = {k: deque(v) for k, v in (script or {}).items()}
        self.prob, self.kinds, self.delay = prob, tuple(kinds), delay
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.injected: Counter = Counter()

    def add(self, api: str, *kinds: str) -> None:
        """Queue more faults for ``api``."""
        with self._lock:
            self.queues.setdefault(api, deque()).extend(kinds)

    def next(self, api: str) -> str | None:
        """The fault for this request of ``api`` (``None``: answer normally)."""
        with self._lock:
            for key in (api, "*"):
                q = self.queues.get(key)
                if q:
                    kind = q.popleft()
                    self.injected[kind] += 1
                    return kind
            if self.prob and self._rng.random() < self.prob:
                kind = self._rng.choice(self.kinds)
                self.injected[kind] += 1
                return kind
        return None


# ---------------------------------------------------------------------------------------------
# the HTTP server


def _plain(v):
    """A JSON value: NaN/NA -> null, numpy scalars -> Python."""
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    return v.item() if hasattr(v, "item") else v


class ServerHandle:
    """``stop()`` shuts the server down; ``counts`` / ``requests`` record what was asked."""

    def __init__(self, httpd: ThreadingHTTPServer, thread: threading.Thread):
        self._httpd, self._thread = httpd, thread
        self.counts: Counter = Counter()
        self.requests: list[tuple[str, dict]] = []

    def __call__(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _handler(market: Market, faults: Faults, token: str, row_limits: dict, handle):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet (and never log bodies)
            pass

        def _send(self, status: int, body: bytes, length: int | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, obj: dict) -> None:
            self._send(200, json.dumps(obj, ensure_ascii=False).encode("utf-8"))

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            try:
                req = json.loads(self.rfile.read(n) or b"{}")
            except ValueError:
                return self._json({"code": 40000, "msg": "请求格式错误", "data": None})
            api = req.get("api_name") or self.path.rstrip("/").rsplit("/", 1)[-1]
            params = dict(req.get("params") or {})
            with _LOCK:
                handle.counts[api] += 1
                handle.requests.append((api, {k: v for k, v in params.items()
                                              if k != "ts_type_name"}))
            if req.get("token") != token:
                return self._json({"code": 40101, "msg": TOKEN_MSG, "data": None})
            kind = faults.next(api)
            if kind == "timeout":
                time.sleep(faults.delay)
                kind = None
            if kind == "rate_limit":
                return self._json({"code": 40203, "msg": RATE_LIMIT_MSG, "data": None})
            if kind == "daily_cap":
                return self._json({"code": 40203, "msg": DAILY_CAP_MSG, "data": None})
            if kind == "token":
                return self._json({"code": 40101, "msg": TOKEN_MSG, "data": None})
            if kind == "permission":
                return self._json({"code": 2002, "msg": PERMISSION_MSG, "data": None})
            if kind == "server":
                return self._json({"code": 50101, "msg": SERVER_MSG, "data": None})
            if kind == "http500":
                return self._send(500, b"")
            if kind == "reset":
                self.close_connection = True
                self.connection.shutdown(2)
                return None
            try:
                df = answer(market, api, params)
            except KeyError:
                return self._json({"code": 2002,
                                   "msg": f"接口名{api}不存在或没有权限", "data": None})
            fields = req.get("fields") or ""
            if isinstance(fields, str):
                fields = [f.strip() for f in fields.split(",") if f.strip()]
            cols = [f for f in fields if f in df.columns] or list(df.columns)
            cap = int(row_limits.get(api, row_limits.get("*", DEFAULT_ROW_LIMIT)))
            limit = min(int(params.get("limit") or cap), cap)
            offset = int(params.get("offset") or 0)
            if kind == "empty_items":
                df = df.iloc[0:0]
            page = df[cols].iloc[offset:offset + limit]
            items = [[_plain(v) for v in row]
                     for row in page.astype(object).itertuples(index=False, name=None)]
            body = {"code": 0, "msg": "", "data": {"fields": cols, "items": items,
                                                   "has_more": len(df) > offset + limit}}
            if kind == "truncated":
                raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
                raw = raw[: max(1, len(raw) // 2)]
                return self._send(200, raw)
            return self._json(body)

    return Handler


def serve(market: Market, port: int = 0, faults: Faults | None = None, *,
          token: str = TEST_TOKEN, row_limits: dict[str, int] | int | None = None,
          host: str = "127.0.0.1"):
    """Start the server in a daemon thread; return ``(url, stop)``.

    ``url`` is the ``http_url`` to give the client (requests go to ``url/<api_name>``);
    ``stop()`` shuts it down, ``stop.counts`` counts requests per endpoint. ``row_limits``:
    endpoint (or ``"*"``) -> rows per reply (an int applies to all endpoints).
    """
    if isinstance(row_limits, int):
        row_limits = {"*": row_limits}
    faults = faults or Faults()
    holder: list = []

    class _Proxy:  # the handler needs the handle before it exists
        def __getattr__(self, name):
            return getattr(holder[0], name)

    httpd = ThreadingHTTPServer((host, port),
                                _handler(market, faults, token, dict(row_limits or {}),
                                         _Proxy()))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True, name="tushare-server")
    handle = ServerHandle(httpd, thread)
    handle.faults = faults
    holder.append(handle)
    thread.start()
    return f"http://{host}:{httpd.server_address[1]}/dataapi", handle


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="a local Tushare Pro server on synthetic data")
    ap.add_argument("--port", type=int, default=8766)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--token", default=TEST_TOKEN)
    ap.add_argument("--row-limit", type=int, default=DEFAULT_ROW_LIMIT)
    ap.add_argument("--n-stocks", type=int, default=30)
    ap.add_argument("--start", default="2024-01-02")
    ap.add_argument("--n-days", type=int, default=60, help="trading days of the market")
    a = ap.parse_args(argv)
    market = make_market(a.seed, n_stocks=a.n_stocks, start=a.start, n_days=a.n_days)
    url, stop = serve(market, a.port, token=a.token, row_limits=a.row_limit)
    print(f"serving Tushare Pro on {url} (set [tushare] http_url; token from --token)",
          flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stop()


if __name__ == "__main__":
    main()
