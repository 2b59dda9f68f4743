"""Reconciliation of broker fills against an order plan and the simulator's fills of the day.

Inputs
------
* An order plan (``orders_YYYYMMDD.csv`` of ``mine export``, :data:`backtest.orders.PLAN_COLUMNS`)
  dated ``D``: its ``ok`` orders are what was meant to be sent on the execution day, the first
  trading day after ``D``.
* The fills a broker reported (:func:`read_fills`), in one of two formats, detected from the
  header:

  - ``plain``: ``ts_code, side (buy/sell), volume (shares), price (yuan), time`` [,
    ``trade_date, order_id, trade_id, amount``, and the fees: ``fee`` (total) or
    ``commission, stamp_tax, transfer_fee``];
  - ``qmt``: the QMT adapter's ``query_stock_trades`` export
    (:func:`backtest.qmt_adapter.trades_frame`, xtquant ``XtTrade`` field names):
    ``stock_code, order_type (23 buy / 24 sell), traded_volume, traded_price, traded_time``
    (Unix seconds, or a date-time text) [, ``traded_amount, order_id, traded_id,
    commission``].
* The simulator's fills of the same orders on the execution day (:func:`simulate_plan`): the
  account simulator's fill rules (:mod:`backtest.simulate`, module docstring steps 3, 4 and
  6) applied to the plan's quantities: execution at the raw open (or VWAP) with
  ``slippage_bps``, rejection when suspended or at the limit, the ``participation`` cap
  re-rounded to lots, and the :class:`backtest.rules.CostModel` fees. The account simulator
  itself works from target weights and an all-cash start, so the replay takes the plan's
  order quantities instead; it does not re-scale buys to cash (the plan is cash-checked at
  the reference price).

Measures (:func:`reconcile`)
----------------------------
Per (ts_code, side) order: planned quantity (``ok`` orders; 0 for flagged / skipped rows),
filled quantity and volume-weighted fill price; ``fill_status`` ``filled`` / ``partial`` /
``missing`` / ``over`` (more than planned) / ``unplanned`` (fills with no ``ok`` order) /
``not_sent`` (a flagged or skipped row with no fill).

Slippage, basis points, **positive = worse for us** on both sides::

    slip_ref_bps = s x (fill_price - ref_price) / ref_price x 1e4,   s = +1 buy, -1 sell
    slip_sim_bps = s x (fill_price - sim_price) / sim_price x 1e4

(a buy filled above, or a sell below, the benchmark price is positive). ``slip_ref_yuan`` =
``s x (fill - ref) x filled``. Summary averages are weighted by filled value.

Costs: ``fees_plan`` = the cost model on the planned quantity at the reference price (no
slippage); ``fees_model`` = the cost model on the actual filled amount (commission with its
per-order minimum, stamp tax on sells at the execution day's rate, transfer fee);
``fees_sim`` = the replay's fees; ``fees_reported`` = what the broker file says (NaN when it
has no fee column). The summary breaks plan / sim / model down by component.

Drift: ``drift_shares`` = signed filled - signed planned quantity (buys +, sells -), which is
the positions after the day implied by the fills minus the planned positions
(``planned_after = current_qty + s x planned``, ``actual_after = current_qty + s x filled``;
NaN for a code the plan does not know); ``drift_value`` = drift x ref_price; ``cash_drift``
= actual net cash flow (sells - buys - fees) - planned net cash flow.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from backtest import rules
from backtest.errors import BacktestError
from backtest.rules import CostModel

__all__ = ["FILL_COLUMNS", "COST_COLUMNS", "FORMATS", "read_fills", "simulate_plan", "reconcile",
           "Reconciliation", "ORDER_COLUMNS"]

#: Columns of a normalised fills table (:func:`read_fills`, :func:`simulate_plan`).
FILL_COLUMNS = ["trade_date", "ts_code", "side", "volume", "price", "amount", "fee", "time",
                "order_id", "trade_id"]
#: Required columns per detected format.
FORMATS = {"plain": ("ts_code", "side", "volume", "price", "time"),
           "qmt": ("stock_code", "order_type", "traded_volume", "traded_price",
                   "traded_time")}
#: Cost columns of the replay's fills (:func:`simulate_plan`), yuan.
COST_COLUMNS = ("commission", "stamp_tax", "transfer_fee", "slippage")
_QMT_SIDES = {23: "buy", 24: "sell"}
_CODE = re.compile(r"^\d{6}\.(SH|SZ|BJ)$")
_TZ = "Asia/Shanghai"
#: Columns of :attr:`Reconciliation.orders`.
ORDER_COLUMNS = ["ts_code", "side", "plan_status", "planned_qty", "filled_qty", "fill_status",
                 "n_fills", "ref_price", "fill_price", "sim_qty", "sim_price",
                 "slip_ref_bps", "slip_sim_bps", "slip_ref_yuan", "fees_plan", "fees_model",
                 "fees_sim", "fees_reported", "current_qty", "planned_after", "actual_after",
                 "drift_shares", "drift_value"]


def _fail(path, row: int | None, col: str, msg: str):
    where = f"row {row}, column {col!r}" if row is not None else f"column {col!r}"
    raise BacktestError(f"fills file {str(path)!r}: {where}: {msg}")


def _numbers(path, df, col, label, *, integer=False) -> np.ndarray:
    v = pd.to_numeric(df[col].str.strip(), errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(v) | (v <= 0)
    if integer:
        bad |= np.abs(v - np.round(v)) > 1e-9
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        what = "a whole number of shares > 0" if integer else "a number > 0"
        _fail(path, i + 1, label, f"{df[col].iloc[i]!r} is not {what}")
    return v


def _times(path, s: pd.Series, col: str, epoch: bool) -> tuple[list[str], list[str]]:
    """(trade_date, time) text per row; date '' when the value holds only a clock time."""
    dates, times = [], []
    for i, raw in enumerate(s.fillna("").astype(str).str.strip()):
        if raw == "":
            _fail(path, i + 1, col, "empty")
        ts = None
        if epoch and re.fullmatch(r"\d{9,13}(\.0+)?", raw):
            x = float(raw)
            ts = pd.Timestamp(x, unit="ms" if x > 1e11 else "s", tz="UTC").tz_convert(_TZ)
            ts = ts.tz_localize(None)
        elif re.fullmatch(r"\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?", raw):
            dates.append("")
            times.append(raw)
            continue
        else:
            try:
                ts = pd.Timestamp(raw)
            except (ValueError, TypeError):
                ts = None
            if ts is None or ts is pd.NaT:
                _fail(path, i + 1, col, f"{raw!r} is not a time (HH:MM:SS or a date-time)")
            if ts.tzinfo is not None:
                ts = ts.tz_convert(_TZ).tz_localize(None)
        dates.append(ts.strftime("%Y-%m-%d"))
        times.append(ts.strftime("%Y-%m-%d %H:%M:%S"))
    return dates, times


def read_fills(path: str | os.PathLike) -> tuple[pd.DataFrame, str]:
    """Read and validate a broker fills CSV, detecting its format from the header.

    Parameters
    ----------
    path : path
        CSV in the ``plain`` or ``qmt`` format (module docstring).

    Returns
    -------
    (DataFrame, str)
        Columns :data:`FILL_COLUMNS` (``volume`` int64 shares, ``price`` / ``amount`` /
        ``fee`` float yuan, ``fee`` NaN when the file has none, ``trade_date`` ISO text or ''
        when the file has only clock times), in file order; and the format name.

    Raises
    ------
    BacktestError
        Missing or empty file, unreadable CSV, a header matching neither format, or a bad
        cell: the message names the row (1 = first data row) and the column.
    """
    p = Path(path)
    if not p.is_file():
        raise BacktestError(f"fills file {str(p)!r}: file not found")
    if p.stat().st_size == 0:
        raise BacktestError(f"fills file {str(p)!r} is empty (0 bytes)")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BacktestError(f"fills file {str(p)!r} is not a readable CSV ({first})") from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    fmt = next((f for f, cols in FORMATS.items() if set(cols) <= set(df.columns)), None)
    if fmt is None:
        raise BacktestError(
            f"fills file {str(p)!r}: columns {', '.join(df.columns) or '(none)'} match no "
            f"format; a fills CSV needs {', '.join(FORMATS['plain'])}; a QMT "
            f"query_stock_trades export needs {', '.join(FORMATS['qmt'])}")
    if fmt == "qmt":
        ren = {"stock_code": "ts_code", "traded_volume": "volume", "traded_price": "price",
               "traded_time": "time", "traded_amount": "amount", "traded_id": "trade_id",
               "commission": "fee"}
        df = df.rename(columns=ren)
    names = {v: k for k, v in ren.items()} if fmt == "qmt" else {}
    label = (lambda c: names.get(c, c))
    code_col = "stock_code" if fmt == "qmt" else "ts_code"
    out = pd.DataFrame(index=df.index)
    codes = df["ts_code"].str.strip().str.upper()
    bad = ~codes.str.match(_CODE.pattern)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        _fail(p, i + 1, code_col, f"{df['ts_code'].iloc[i]!r} is not a ts_code "
                                  f"(like 600000.SH)")
    if fmt == "qmt":
        ot = pd.to_numeric(df["order_type"].str.strip(), errors="coerce")
        side = ot.map(_QMT_SIDES)
        if side.isna().any():
            i = int(np.flatnonzero(side.isna().to_numpy())[0])
            _fail(p, i + 1, "order_type", f"{df['order_type'].iloc[i]!r} is not 23 "
                                          f"(STOCK_BUY) or 24 (STOCK_SELL)")
    else:
        side = df["side"].str.strip().str.lower()
        bad = ~side.isin(["buy", "sell"])
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            _fail(p, i + 1, "side", f"{df['side'].iloc[i]!r} is not buy or sell")
    vol = _numbers(p, df, "volume", label("volume"), integer=True)
    px = _numbers(p, df, "price", label("price"))
    if vol.max(initial=0) > 1e13:
        _fail(p, int(np.argmax(vol)) + 1, label("volume"), "volume above 1e13 shares")
    dates, times = _times(p, df["time"], label("time"), epoch=fmt == "qmt")
    if "trade_date" in df.columns:
        for i, raw in enumerate(df["trade_date"].str.strip()):
            if raw:
                try:
                    dates[i] = pd.Timestamp(raw).strftime("%Y-%m-%d")
                except (ValueError, TypeError):
                    _fail(p, i + 1, "trade_date", f"{raw!r} is not a date")
    out["trade_date"] = dates
    out["ts_code"] = codes.to_numpy()
    out["side"] = side.to_numpy()
    out["volume"] = np.round(vol).astype(np.int64)
    out["price"] = px
    amt = np.full(len(df), np.nan)
    if "amount" in df.columns:
        a = pd.to_numeric(df["amount"].str.strip(), errors="coerce").to_numpy(np.float64)
        amt = np.where(np.isfinite(a) & (a > 0), a, np.nan)
    out["amount"] = np.where(np.isfinite(amt), amt, vol * px)
    fee = np.full(len(df), np.nan)
    fee_cols = (["fee"] if "fee" in df.columns else      # a total, else its components
                [c for c in ("commission", "stamp_tax", "transfer_fee") if c in df.columns])
    if fee_cols:
        fee = np.zeros(len(df))
        for c in fee_cols:
            v = pd.to_numeric(df[c].str.strip().replace("", "0"), errors="coerce")
            v = v.to_numpy(np.float64)
            if (~np.isfinite(v) | (v < 0)).any():
                i = int(np.flatnonzero(~np.isfinite(v) | (v < 0))[0])
                _fail(p, i + 1, label(c), f"{df[c].iloc[i]!r} is not a fee >= 0 (yuan)")
            fee += v
    out["fee"] = fee
    out["time"] = times
    for c in ("order_id", "trade_id"):
        out[c] = df[c].str.strip().to_numpy() if c in df.columns else ""
    return out.reset_index(drop=True)[FILL_COLUMNS], fmt


# ----------------------------------------------------------------------------- the replay
def simulate_plan(plan: pd.DataFrame, market, day, costs: CostModel,
                  participation: float | None = 0.1, execution: str = "open",
                  price_limits: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The simulator's fills of a plan's ``ok`` orders on one execution day.

    Parameters
    ----------
    plan : DataFrame
        An order plan (:data:`backtest.orders.PLAN_COLUMNS`).
    market : backtest.simulate.MarketData
        Raw market arrays holding ``day`` and every code of the plan's ``ok`` orders.
    day : str or Timestamp
        The execution day (a date of ``market``).
    costs : CostModel
    participation : float or None
        Max share of the day's volume per order (None / 0 = no cap).
    execution : {"open", "vwap"}
    price_limits : bool

    Returns
    -------
    (fills, rejected)
        ``fills``: :data:`FILL_COLUMNS` plus ``commission, stamp_tax, transfer_fee,
        slippage`` (yuan; ``fee`` is their sum without slippage), ``time`` = ``execution``;
        ``rejected``: ``ts_code, side, volume, reason`` (``suspended``, ``limit_up_buy``,
        ``limit_down_sell``, ``participation``, ``missing_market_data``).

    Raises
    ------
    BacktestError
        ``day`` is not a date of ``market``.
    """
    d = pd.Timestamp(day)
    if d not in market.dates:
        raise BacktestError(f"no market data on {d.date()} for the replay")
    t = int(market.dates.get_loc(d))
    px_all = market.open if execution == "open" else market.vwap
    fills, rej = [], []
    ok = plan[plan["status"] == "ok"]
    for r in ok.itertuples(index=False):
        code, side, q = str(r.ts_code), str(r.side), int(r.quantity)
        if code not in market.codes:
            rej.append((code, side, q, "missing_market_data"))
            continue
        j = int(market.codes.get_loc(code))
        px = float(px_all[t, j])
        up = float(market.limit_up[t, j]) if price_limits else np.nan
        dn = float(market.limit_down[t, j]) if price_limits else np.nan
        reason = rules.check_order(side, px, up, dn, bool(market.has_bar[t, j]))
        if reason is not None:
            rej.append((code, side, q, reason))
            continue
        if participation:
            cap = participation * float(market.vol[t, j]) if market.vol[t, j] > 0 else 0.0
            if q > cap:
                qc = (rules.round_buy_qty(code, cap) if side == "buy"
                      else rules.round_sell_qty(code, cap, held=int(r.current_qty)))
                rej.append((code, side, q - qc, "participation"))
                q = qc
        if q <= 0:
            continue
        fill = costs.fill_price(side, px)
        value = q * fill
        f = costs.fees(side, value, d)
        fills.append({"trade_date": str(d.date()), "ts_code": code, "side": side, "volume": q,
                      "price": fill, "amount": value, "fee": sum(f.values()),
                      "time": execution, "order_id": "", "trade_id": "", **f,
                      "slippage": q * abs(fill - px)})
    cols = FILL_COLUMNS + list(COST_COLUMNS)
    return (pd.DataFrame(fills, columns=cols),
            pd.DataFrame(rej, columns=["ts_code", "side", "volume", "reason"]))


# ----------------------------------------------------------------------------- reconcile
@dataclass
class Reconciliation:
    """Result of :func:`reconcile`.

    Attributes
    ----------
    orders : DataFrame
        One row per (ts_code, side), columns :data:`ORDER_COLUMNS` (module docstring).
    costs : DataFrame
        Index ``commission, stamp_tax, transfer_fee, total``; columns ``plan``, ``model``
        (on the actual fills), ``sim`` (NaN without a replay), ``reported`` (total only),
        ``actual_minus_plan``, ``actual_minus_sim`` (actual = reported when known, else
        model), yuan.
    summary : dict
        Counts per ``fill_status``, fill rate by value, value-weighted slippage (bps) against
        the reference and the simulator, slippage in yuan, drift totals, ``cash_drift``.
    """

    orders: pd.DataFrame
    costs: pd.DataFrame
    summary: dict = field(default_factory=dict)


def _agg(fills: pd.DataFrame) -> pd.DataFrame:
    if fills is None or len(fills) == 0:
        return pd.DataFrame(columns=["volume", "amount", "fee", "n"],
                            index=pd.MultiIndex.from_tuples([], names=["ts_code", "side"]))
    g = fills.groupby(["ts_code", "side"], sort=True)
    out = g[["volume", "amount"]].sum()
    out["fee"] = g["fee"].sum(min_count=1) if "fee" in fills else np.nan
    out["n"] = g.size()
    return out


def _model_fees(cost: CostModel, side: str, value: float, date) -> dict:
    return cost.fees(side, value, date) if value > 0 else {
        "commission": 0.0, "stamp_tax": 0.0, "transfer_fee": 0.0}


def reconcile(plan: pd.DataFrame, fills: pd.DataFrame, date, cost_model: CostModel,
              sim_fills: pd.DataFrame | None = None) -> Reconciliation:
    """Compare broker fills with an order plan and (optionally) the simulator's fills.

    Parameters
    ----------
    plan : DataFrame
        The order plan (:data:`backtest.orders.PLAN_COLUMNS`).
    fills : DataFrame
        Broker fills of the execution day (:data:`FILL_COLUMNS`, :func:`read_fills`).
    date : str or Timestamp
        The execution day (dates the stamp-tax rate of the modelled fees).
    cost_model : CostModel
    sim_fills : DataFrame, optional
        :func:`simulate_plan`'s fills; None = no simulator comparison (NaN columns).

    Returns
    -------
    Reconciliation
        Definitions and sign convention in the module docstring.
    """
    d = pd.Timestamp(date)
    p = plan.copy()
    p["ts_code"] = p["ts_code"].astype(str)
    p["planned"] = np.where(p["status"] == "ok", p["quantity"].astype(np.int64), 0)
    p = p.groupby(["ts_code", "side"], sort=True).agg(
        plan_status=("status", "first"), planned_qty=("planned", "sum"),
        ref_price=("ref_price", "first"), current_qty=("current_qty", "first"))
    a = _agg(fills)
    s = _agg(sim_fills) if sim_fills is not None else None
    idx = p.index.union(a.index)
    o = p.reindex(idx)
    o["plan_status"] = o["plan_status"].fillna("none")
    o["planned_qty"] = o["planned_qty"].fillna(0).astype(np.int64)
    o["filled_qty"] = a["volume"].reindex(idx).fillna(0).astype(np.int64)
    o["n_fills"] = a["n"].reindex(idx).fillna(0).astype(np.int64)
    amt = a["amount"].reindex(idx).astype(np.float64).fillna(0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        o["fill_price"] = np.where(o["filled_qty"] > 0, amt / o["filled_qty"], np.nan)
    pl, fl = o["planned_qty"].to_numpy(), o["filled_qty"].to_numpy()
    o["fill_status"] = np.select(
        [(pl > 0) & (fl == pl), (pl > 0) & (fl == 0), (pl > 0) & (fl < pl), (pl > 0),
         fl > 0], ["filled", "missing", "partial", "over", "unplanned"], "not_sent")
    sgn = np.where(idx.get_level_values("side") == "buy", 1.0, -1.0)
    if s is not None:
        sq = s["volume"].reindex(idx).fillna(0).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            o["sim_price"] = np.where(sq > 0, s["amount"].reindex(idx) / sq, np.nan)
        o["sim_qty"] = sq.astype(np.int64)
        o["fees_sim"] = s["fee"].reindex(idx).astype(np.float64).fillna(0.0)
    else:
        o["sim_qty"], o["sim_price"], o["fees_sim"] = 0, np.nan, np.nan
    ref, fp, sp = (o["ref_price"].to_numpy(np.float64), o["fill_price"].to_numpy(np.float64),
                   o["sim_price"].to_numpy(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        o["slip_ref_bps"] = sgn * (fp - ref) / ref * 1e4
        o["slip_sim_bps"] = sgn * (fp - sp) / sp * 1e4
        o["slip_ref_yuan"] = sgn * (fp - ref) * fl
    comps = ("commission", "stamp_tax", "transfer_fee")
    plan_c = {c: np.zeros(len(o)) for c in comps}
    model_c = {c: np.zeros(len(o)) for c in comps}
    for i, (code, side) in enumerate(idx):
        fp_ = _model_fees(cost_model, side, float(pl[i] * ref[i]) if pl[i] else 0.0, d)
        fm_ = _model_fees(cost_model, side, float(amt.iloc[i]), d)
        for c in comps:
            plan_c[c][i], model_c[c][i] = fp_[c], fm_[c]
    o["fees_plan"] = sum(plan_c.values())
    o["fees_model"] = sum(model_c.values())
    o["fees_reported"] = a["fee"].reindex(idx).astype(np.float64)
    cur = o["current_qty"].to_numpy(np.float64)
    o["planned_after"] = cur + sgn * pl
    o["actual_after"] = cur + sgn * fl
    o["drift_shares"] = (sgn * (fl - pl)).astype(np.int64)
    o["drift_value"] = o["drift_shares"] * o["ref_price"]
    orders = o.reset_index()[ORDER_COLUMNS]

    reported = float(orders["fees_reported"].sum()) if orders["fees_reported"].notna().any() \
        else np.nan
    sim_comp = ({c: float(sim_fills[c].sum()) for c in comps}
                if sim_fills is not None and len(sim_fills) else
                ({c: 0.0 for c in comps} if sim_fills is not None else
                 {c: np.nan for c in comps}))
    costs = pd.DataFrame({"plan": {c: float(plan_c[c].sum()) for c in comps},
                          "model": {c: float(model_c[c].sum()) for c in comps},
                          "sim": sim_comp}).reindex(list(comps))
    costs.loc["total"] = costs.sum(skipna=False)
    costs["reported"] = np.nan
    costs.loc["total", "reported"] = reported
    actual = costs["model"].copy()
    if np.isfinite(reported):
        actual.loc["total"] = reported
    costs["actual_minus_plan"] = actual - costs["plan"]
    costs["actual_minus_sim"] = actual - costs["sim"]
    if np.isfinite(reported):        # components unknown when only a total is reported
        costs.loc[list(comps), ["actual_minus_plan", "actual_minus_sim"]] = np.nan
    return Reconciliation(orders, costs, _summary(orders, costs, sgn, amt.to_numpy()))


def _wavg(x: np.ndarray, w: np.ndarray) -> float | None:
    ok = np.isfinite(x) & np.isfinite(w) & (w > 0)
    return float(np.sum(x[ok] * w[ok]) / np.sum(w[ok])) if ok.any() else None


def _summary(o: pd.DataFrame, costs: pd.DataFrame, sgn: np.ndarray, amt: np.ndarray) -> dict:
    counts = o["fill_status"].value_counts()
    planned_value = float((o["planned_qty"] * o["ref_price"]).sum())
    matched = o["planned_qty"] > 0
    filled_value = float(np.minimum(o["filled_qty"], o["planned_qty"])[matched]
                         .mul(o["ref_price"][matched]).sum())
    fees_actual = (costs.loc["total", "reported"] if np.isfinite(costs.loc["total", "reported"])
                   else costs.loc["total", "model"])
    plan_flow = float(np.sum(-sgn * o["planned_qty"] * o["ref_price"].fillna(0.0))
                      - costs.loc["total", "plan"])
    act_flow = float(np.sum(-sgn * amt) - fees_actual)
    return {
        "n_orders": int((o["planned_qty"] > 0).sum()),
        "status": {k: int(counts.get(k, 0)) for k in
                   ("filled", "partial", "missing", "over", "unplanned", "not_sent")},
        "planned_value": planned_value,
        "fill_rate_value": filled_value / planned_value if planned_value > 0 else None,
        "slip_ref_bps": _wavg(o["slip_ref_bps"].to_numpy(), amt),
        "slip_sim_bps": _wavg(o["slip_sim_bps"].to_numpy(), amt),
        "slip_ref_yuan": float(np.nansum(o["slip_ref_yuan"])),
        "fees_plan": float(costs.loc["total", "plan"]),
        "fees_actual": float(fees_actual),
        "fees_sim": float(costs.loc["total", "sim"]),
        "n_drift": int((o["drift_shares"] != 0).sum()),
        "drift_value_gross": float(np.nansum(np.abs(o["drift_value"]))),
        "planned_cash_flow": plan_flow, "actual_cash_flow": act_flow,
        "cash_drift": act_flow - plan_flow,
        "sign_convention": "slippage bps: positive = worse for us (buy above / sell below "
                           "the benchmark price)"}
