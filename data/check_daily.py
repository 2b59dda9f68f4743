"""Daily-bar checks of :func:`data.check.check_warehouse` (duplicates, OHLC, adj_factor jumps,
price limits, missing days), vectorised over the whole long daily table.

Rows are sorted once by an int64 key ``code_id << 32 | day`` (day numbers since 1970), so
"previous bar of the same stock" is the previous row when the code ids agree. Price-limit rules
come from :mod:`data.limits` (exchange rules; see its docstring), never restated here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data import limits
from data.io import parquet_errors

__all__ = ["NAT", "check_daily", "days", "read"]

_COLS = ["ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "vol",
         "amount", "adj_factor"]
NAT = np.iinfo(np.int64).min
_SHIFT = np.int64(1) << 32
_OFF = np.int64(1) << 31
#: Moves within this fraction of pre_close cannot breach any limit (the smallest is 5%).
_SAFE_MOVE = 0.04
#: Price tolerance (yuan) of the OHLC consistency rules: half a cent.
_PX_TOL = 0.005

def days(values) -> np.ndarray:
    """Day numbers (int64 days since 1970-01-01; NaT -> ``NAT``) of any datetime-like."""
    a = np.asarray(values)
    if a.dtype.kind != "M":
        a = pd.to_datetime(pd.Series(values)).to_numpy()
    a = a.astype("datetime64[D]")
    out = a.astype(np.int64)
    out[np.isnat(a)] = NAT
    return out


def read(files: list[Path], columns: list[str] | None = None,
         dictionary: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read the present ``columns`` of ``files`` into one frame (string keys as categories)."""
    tabs = []
    for f in files:
        with parquet_errors(f):
            names = pq.read_schema(f).names
            cols = names if columns is None else [c for c in columns if c in names]
            tabs.append(pq.read_table(f, columns=cols,
                                      read_dictionary=[c for c in dictionary if c in cols]))
    if not tabs:
        return pd.DataFrame(columns=columns or [])
    t = pa.concat_tables(tabs, promote_options="permissive")
    return t.to_pandas()



def _d(day) -> str:
    return str(np.datetime64(int(day), "D"))


def _code_ids(values, cats: np.ndarray) -> np.ndarray:
    """Ids of ``values`` in the daily's code categories (-1 = not in the daily table)."""
    return pd.Index(cats).get_indexer(np.asarray(values, dtype=object)).astype(np.int64)


def check_daily(rep, root: Path, ds: dict[str, list[Path]], opn, start, end, *,
                gap_days: int, adj_tol: float, limit_tol: float) -> int | None:
    """Run the daily-table checks into ``rep`` (a :class:`data.check.CheckReport`).

    Returns
    -------
    int or None
        The last trade day (day number) of the rows checked; None without rows.
    """
    df = read(ds["daily"], _COLS, dictionary=("ts_code",))
    if "ts_code" not in df or "trade_date" not in df:
        for c in ("ohlc", "adj_factor", "price_limit", "missing_days"):
            rep.skipped[c] = "daily has no ts_code / trade_date"
        return None
    tc = df["ts_code"]
    tc = tc if isinstance(tc.dtype, pd.CategoricalDtype) else tc.astype("category")
    cats = np.asarray(tc.cat.categories.astype(str), dtype=object)
    code = tc.cat.codes.to_numpy().astype(np.int64)
    day = days(df["trade_date"].to_numpy())
    keep = np.ones(len(df), bool)
    if start is not None:
        keep &= day >= start
    if end is not None:
        keep &= day <= end
    key = code * _SHIFT + (day + _OFF)
    order = np.argsort(np.where(keep, key, np.iinfo(np.int64).max), kind="stable")
    order = order[:int(keep.sum())]
    code, day, key = code[order], day[order], key[order]
    col = {c: df[c].to_numpy(np.float64)[order] for c in _COLS[2:] if c in df}
    del df, tc
    rep.rows["daily"] = len(code)
    if not len(code):
        rep.notes.append("daily: no rows in the requested range")
        return None

    dup = np.r_[False, key[1:] == key[:-1]]
    rep.add("duplicates", "error", cats[code[dup]], day[dup],
            ["daily: duplicate (ts_code, trade_date)"] * int(dup.sum()))
    _ohlc(rep, cats, code, day, col)
    u = ~dup
    code, day, key = code[u], day[u], key[u]
    col = {c: v[u] for c, v in col.items()}
    same = np.r_[False, code[1:] == code[:-1]]
    info = _codes_info(rep, ds, cats, code, day)
    all_open = opn if opn is not None else np.unique(day)
    resumed = np.zeros(len(day), bool)
    resumed[1:] = same[1:] & (np.searchsorted(all_open, day[1:], "left")
                              - np.searchsorted(all_open, day[:-1], "right") > 0)
    _adj(rep, ds, cats, code, day, key, col, same, adj_tol)
    _limits(rep, ds, cats, code, day, col, info, all_open, resumed, limit_tol)
    if opn is None:
        rep.skipped["missing_days"] = "trade_cal.parquet missing"
    else:
        _missing(rep, ds, cats, code, day, same, info, opn, start, end, gap_days)
    return int(day.max())


def _ohlc(rep, cats, code, day, col) -> None:
    need = ("open", "high", "low", "close")
    if not all(c in col for c in need):
        rep.skipped["ohlc"] = "daily lacks open/high/low/close"
        return
    o, h, lo, c = (col[k] for k in need)
    with np.errstate(invalid="ignore"):
        rules = {"low > min(open, close)": lo > np.fmin(o, c) + _PX_TOL,
                 "high < max(open, close)": h < np.fmax(o, c) - _PX_TOL,
                 "low > high": lo > h + _PX_TOL,
                 "missing or non-positive price": ~(np.fmin(np.fmin(o, h), np.fmin(lo, c)) > 0)
                 | np.isnan(o + h + lo + c)}
        if "pre_close" in col:
            rules["pre_close <= 0"] = col["pre_close"] <= 0
        for k in ("vol", "amount"):
            if k in col:
                rules[f"{k} < 0"] = col[k] < 0
    bad = np.logical_or.reduce(list(rules.values()))
    idx = np.flatnonzero(bad)
    det = [", ".join(k for k, m in rules.items() if m[i])
           + f" (o {o[i]:.2f} h {h[i]:.2f} l {lo[i]:.2f} c {c[i]:.2f})" for i in idx]
    rep.add("ohlc", "error", cats[code[idx]], day[idx], det)
    rep.checked.append("ohlc")


def _codes_info(rep, ds, cats, code, day) -> dict[str, np.ndarray]:
    """Per code id: list / delist day (NAT when unknown), current ST flag."""
    n = len(cats)
    info = {"list": np.full(n, NAT), "delist": np.full(n, NAT), "st": np.zeros(n, bool),
            "has_st": False}
    if "stock_basic" not in ds:
        return info
    sb = read(ds["stock_basic"], ["ts_code", "list_date", "delist_date", "is_st_latest"])
    ids = _code_ids(sb["ts_code"], cats)
    ok = ids >= 0
    for k, c in (("list", "list_date"), ("delist", "delist_date")):
        if c in sb:
            info[k][ids[ok]] = days(sb[c])[ok]
    if "is_st_latest" in sb:
        info["st"][ids[ok]] = sb["is_st_latest"].fillna(False).to_numpy(bool)[ok]
        info["has_st"] = True
    return info


def _adj(rep, ds, cats, code, day, key, col, same, tol) -> None:
    if "adj_factor" not in col:
        rep.skipped["adj_factor"] = "daily has no adj_factor column"
        return
    if "dividend" not in ds:
        rep.skipped["adj_factor"] = "dividend.parquet missing (no events to explain jumps)"
        return
    dv = read(ds["dividend"], ["ts_code", "ex_date", "div_proc"])
    if "ex_date" not in dv:
        rep.skipped["adj_factor"] = "dividend has no ex_date column"
        return
    if "div_proc" in dv:
        dv = dv[dv["div_proc"].astype(str).isin(["实施", "实施方案"])]
    ids, ex = _code_ids(dv["ts_code"], cats), days(dv["ex_date"])
    ok = (ids >= 0) & (ex != NAT)
    ev = np.unique(ids[ok] * _SHIFT + (ex[ok] + _OFF))
    af = col["adj_factor"]
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.r_[0.0, af[1:] / af[:-1] - 1.0]
    jump = np.flatnonzero(same & (np.abs(rel) > tol))
    # an event explains the jump when its ex-date lies in (previous bar, this bar]
    hits = np.searchsorted(ev, key[jump], "right") - np.searchsorted(ev, key[jump - 1], "right")
    bad = jump[hits == 0]
    rep.add("adj_factor", "warning", cats[code[bad]], day[bad],
            [f"adj_factor {af[i - 1]:.6g} -> {af[i]:.6g} ({rel[i]:+.4%}) since {_d(day[i - 1])} "
             "with no dividend / bonus-share ex-date" for i in bad])
    rep.checked.append("adj_factor")


def _st_rows(rep, ds, cats, code, day, info, idx) -> tuple[np.ndarray, bool]:
    """ST flag of rows ``idx``; second value True when it is only the current status."""
    if "namechange" in ds:
        nc = read(ds["namechange"], ["ts_code", "name", "start_date", "end_date"])
        st = nc["name"].astype(str).str.match(r"^[\*S]*ST").to_numpy(bool)
        nc = nc[st]
        ids, s0 = _code_ids(nc["ts_code"], cats), days(nc["start_date"])
        e0 = days(nc["end_date"]) if "end_date" in nc else np.full(len(nc), NAT)
        ok = (ids >= 0) & (s0 != NAT)
        ik = ids[ok] * _SHIFT + (s0[ok] + _OFF)
        o = np.argsort(ik, kind="stable")
        ik, iid, ie = ik[o], ids[ok][o], e0[ok][o]
        rk = code[idx] * _SHIFT + (day[idx] + _OFF)
        j = np.searchsorted(ik, rk, "right") - 1
        jj = np.maximum(j, 0)
        flag = (j >= 0) & (iid[jj] == code[idx]) if len(ik) else np.zeros(len(idx), bool)
        if len(ik):
            flag &= (ie[jj] == NAT) | (day[idx] <= ie[jj])
        return flag, False
    if info["has_st"]:
        rep.notes.append("price_limit: ST from stock_basic.is_st_latest (current status only, "
                         "no namechange history): 5% breaches within 10% are info")
    else:
        rep.notes.append("price_limit: no ST information (namechange / is_st_latest); "
                         "every main-board stock judged at 10%")
    return info["st"][code[idx]], True


def _limits(rep, ds, cats, code, day, col, info, all_open, resumed, tol) -> None:
    if "pre_close" not in col or "close" not in col:
        rep.skipped["price_limit"] = "daily lacks pre_close / close"
        return
    pre, close = col["pre_close"], col["close"]
    with np.errstate(invalid="ignore"):
        cand = np.flatnonzero((pre > 0) & (np.abs(close - pre) > _SAFE_MOVE * pre))
    st, latest_only = _st_rows(rep, ds, cats, code, day, info, cand)
    first = np.full(len(cats), NAT)                    # list day, else the first bar
    first[code[::-1]] = day[::-1]
    ld = np.where(info["list"] != NAT, info["list"], first)[code[cand]]
    age = (np.searchsorted(all_open, day[cand], "left")
           - np.searchsorted(all_open, ld, "left")).astype(np.int64)
    age[ld < all_open[0]] = np.iinfo(np.int32).max     # as data.limits.listing_age
    ld64 = ld.astype("datetime64[D]").astype("datetime64[ns]")
    # limits.limit_cents takes one date row; its pct only changes at these constants
    bounds = days([limits.CHINEXT_REFORM, limits.MAIN_BOARD_REGISTRATION])
    seg = np.searchsorted(np.sort(bounds), day[cand], "right")
    tc = round(tol * 100)
    cc = np.round(close[cand] * 100.0)
    out = {"warning": [], "info": []}
    board = limits.boards(cats)
    for s in np.unique(seg):
        m = np.flatnonzero(seg == s)
        when = pd.DatetimeIndex([np.datetime64(int(day[cand[m[0]]]), "D")])
        args = (pre[cand[m]][None, :], pd.Index(cats[code[cand[m]]]))
        rest = (when, age[m][None, :], ld64[m])
        up, dn = (a[0] for a in limits.limit_cents(*args, st[m], *rest))
        with np.errstate(invalid="ignore"):
            bad = (cc[m] > up + tc) | (cc[m] < dn - tc)
            soft = resumed[cand[m]].copy()
            if latest_only:
                up2, dn2 = (a[0] for a in limits.limit_cents(*args, np.zeros(len(m), bool),
                                                              *rest))
                soft |= st[m] & (cc[m] <= up2 + tc) & (cc[m] >= dn2 - tc)
        for k in np.flatnonzero(bad):
            i, j = cand[m[k]], m[k]
            why = "; first bar after a suspension" if resumed[i] else ""
            why += "; ST judged on current status" if latest_only and st[j] else ""
            b = board[code[i]] + (" ST" if st[j] else "")
            out["info" if soft[k] else "warning"].append(
                (cats[code[i]], day[i],
                 (f"close {close[i]:.2f} vs pre_close {pre[i]:.2f} ({close[i] / pre[i] - 1:+.2%})"
                  f" beyond [{dn[k] / 100:.2f}, {up[k] / 100:.2f}] ({b}{why})")))
    for sev, rows in out.items():
        if rows:
            c, d, t = zip(*sorted(rows, key=lambda r: (r[0], r[1])))
            rep.add("price_limit", sev, c, d, t)
    rep.checked.append("price_limit")


def _missing(rep, ds, cats, code, day, same, info, opn, start, end, gap_days) -> None:
    n_open = len(opn)
    pos_l = np.searchsorted(opn, day, "left")
    pos_r = np.searchsorted(opn, day, "right")
    closed = np.flatnonzero(pos_l == pos_r)
    rep.add("missing_days", "error", cats[code[closed]], day[closed],
            ["bar on a day trade_cal marks closed (or outside it)"] * len(closed))
    lo = int(np.searchsorted(opn, start, "left")) if start is not None else 0
    hi = int(np.searchsorted(opn, end, "right")) if end is not None else n_open
    hi = min(hi, int(np.searchsorted(opn, day.max(), "right")))
    # internal gaps: open days in (previous bar, this bar)
    i = np.flatnonzero(same)
    g_code, g_first, g_n = [code[i]], [pos_r[i - 1]], [pos_l[i] - pos_r[i - 1]]
    heads = np.flatnonzero(~same)
    tails = np.r_[heads[1:] - 1, len(code) - 1]
    ld = info["list"][code[heads]]
    f0 = np.maximum(np.searchsorted(opn, ld, "left"), lo)
    has = ld != NAT
    g_code.append(code[heads][has])
    g_first.append(f0[has])
    g_n.append((pos_l[heads] - f0)[has])
    dl = info["delist"][code[tails]]
    stop = np.where(dl != NAT, np.searchsorted(opn, dl, "left"), hi)   # exclusive
    stop = np.minimum(stop, hi)
    g_code.append(code[tails])
    g_first.append(pos_r[tails])
    g_n.append(stop - pos_r[tails])
    gc, gf, gn = (np.concatenate(a).astype(np.int64) for a in (g_code, g_first, g_n))
    k = gn > 0
    gc, gf, gn = gc[k], gf[k], gn[k]
    if "suspend_d" not in ds:
        long = gn > gap_days
        rep.notes.append(f"missing_days: suspend_d missing; {int((~long).sum())} gap(s) of at "
                         f"most {gap_days} open days ({int(gn[~long].sum())} days) assumed "
                         "suspensions and not reported")
        rep.add("missing_days", "info", cats[gc[long]], opn[gf[long]],
                [f"possible suspension or gap: {n} open day(s) without a bar, "
                 f"{_d(opn[f])}..{_d(opn[f + n - 1])} (suspend_d missing)"
                 for f, n in zip(gf[long], gn[long])])
        rep.checked.append("missing_days")
        return
    sp = read(ds["suspend_d"], ["ts_code", "trade_date", "suspend_type"])
    if "suspend_type" in sp:
        sp = sp[sp["suspend_type"].astype(str) != "R"]
    sid = _code_ids(sp["ts_code"], cats)
    sk = np.unique(sid * _SHIFT + (days(sp["trade_date"]) + _OFF))
    gid = np.repeat(np.arange(len(gn)), gn)
    p = np.repeat(gf, gn) + (np.arange(int(gn.sum())) - np.repeat(np.cumsum(gn) - gn, gn))
    ek = gc[gid] * _SHIFT + (opn[p] + _OFF)
    un = ~np.isin(ek, sk)
    ug, up = gid[un], p[un]
    g, a = np.unique(ug, return_index=True)
    b = len(ug) - 1 - np.unique(ug[::-1], return_index=True)[1]
    cnt = np.bincount(ug, minlength=len(gn))[g]
    rep.add("missing_days", "error", cats[gc[g]], opn[up[a]],
            [f"{c} open day(s) with no bar and no suspension record, "
             f"{_d(opn[x])}..{_d(opn[y])}" + (f" (of a {gn[j]}-day gap)" if c < gn[j] else "")
             for c, x, y, j in zip(cnt, up[a], up[b], g)])
    rep.checked.append("missing_days")
