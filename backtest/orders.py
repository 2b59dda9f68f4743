"""Order plans for execution: the diff between ``target_positions`` and a live account.

The research side ends in ``target_positions`` (one row per ``trade_date`` x ``ts_code`` with a
``target_weight``; see :mod:`backtest.targets`). This module turns one day of targets plus the
account's current holdings and cash into a lot-rounded, limit-aware **order plan**. The same
:func:`order_plan` is used by ``mine export`` (offline, prices from the warehouse) and by the
QMT adapter (:mod:`backtest.qmt_adapter`, prices and holdings from xtquant), so the plan a user
reviews is the plan that gets placed.

Plan construction (:func:`order_plan`)
--------------------------------------
1. Total equity ``E = cash + sum(quantity x ref_price)`` over current holdings (raw yuan).
2. Target value per stock ``target_weight x E x (1 - cash_reserve)``; wanted change in shares
   ``target_value / ref_price - quantity``.
3. **Sells first**: every held stock above its target (including every holding absent from the
   targets, target 0) gets a sell rounded with :func:`backtest.rules.round_sell_qty` (100-share
   lots, STAR 200 minimum then 1-share steps; selling the whole holding includes its odd lot).
4. **Buys**: every stock below its target gets a buy rounded with
   :func:`backtest.rules.round_buy_qty`. The buy budget is the cash plus the estimated proceeds
   of the sells that are not flagged, net of their fees; when the wanted buys do not fit they
   are scaled down pro rata, re-rounded to lots and then checked one by one (largest target
   weight first) so that cash after every estimated fee stays >= 0.
5. **Flags, never silent drops**: an order the exchange rules would reject at the reference
   price keeps its row with ``status = "flagged"`` and ``reason`` from
   :func:`backtest.rules.check_order` (``suspended``, ``limit_up_buy``, ``limit_down_sell``),
   or ``not_sellable_t1`` (fewer sellable shares than the sell needs: T+1), ``no_price``,
   ``below_min_lot`` (a new position smaller than one lot) or ``insufficient_cash``. Flagged
   orders are excluded from the cash budget and are not placed by the adapter.
6. Optional ``min_order_value``: smaller orders (except selling a whole holding) get
   ``status = "skipped"`` (not budgeted, not placed).

Estimated fees (``est_fees``) are commission (with its minimum), sell-side stamp tax and
transfer fee from :class:`backtest.rules.CostModel` on the value at the slipped fill price,
plus the slippage itself (``quantity x |fill - ref|``). ``est_value = quantity x ref_price``.

Timing: targets dated ``D`` are computed from data up to the close of ``D`` and traded on the
next session. ``mine export`` therefore uses the close of ``D`` as the reference price and
``D``'s limit prices / bar to flag names that closed locked at a limit or were suspended on
``D`` -- a heuristic for the next open; the exchange decides at order time.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from backtest import rules
from backtest.errors import BacktestError
from backtest.rules import CostModel

__all__ = ["PLAN_COLUMNS", "positions_frame", "order_plan", "plan_summary"]

#: Columns of an order plan, in order.
PLAN_COLUMNS = ["ts_code", "side", "quantity", "ref_price", "est_value", "est_fees",
                "current_qty", "sellable_qty", "target_weight", "target_value", "status",
                "reason"]
#: Columns of a quotes table (index ``ts_code``) as used by :func:`order_plan`.
_WEIGHT_TOL = 1e-6


#: Largest holding accepted (shares); ICBC, the largest A-share, has ~3.6e11 shares.
MAX_SHARES = 1e13


def _show(v) -> str:
    """A cell for a message: text quoted, numbers plain (``-100``, not ``np.int64(-100)``)."""
    return repr(v) if isinstance(v, str) else str(v)


def positions_frame(pos, source: str = "positions") -> pd.DataFrame:
    """Holdings as index ``ts_code`` with int64 ``quantity`` / ``sellable`` (see
    :func:`backtest.export.read_positions`); ``pos`` is a frame, a quantity Series or None."""
    empty = pd.DataFrame({"quantity": pd.Series(dtype=np.int64),
                          "sellable": pd.Series(dtype=np.int64)},
                         index=pd.Index([], dtype=object, name="ts_code"))
    if pos is None:
        return empty
    if isinstance(pos, pd.Series):
        pos = pos.rename("quantity").rename_axis("ts_code").reset_index()
    df = pos.reset_index() if "ts_code" not in pos.columns else pos.copy()
    for c in ("ts_code", "quantity"):
        if c not in df.columns:
            raise BacktestError(f"{source}: missing column {c!r}; positions need ts_code, "
                                f"quantity[, sellable]")
    if len(df) == 0:
        return empty
    blank = df["ts_code"].isna() | (df["ts_code"].astype(str).str.strip() == "")
    if blank.any():
        raise BacktestError(f"{source}: ts_code missing on row "
                            f"{int(np.flatnonzero(blank.to_numpy())[0]) + 1}")
    df["ts_code"] = df["ts_code"].astype(str).str.strip()
    if df["ts_code"].duplicated().any():
        raise BacktestError(f"{source}: duplicated ts_code "
                            f"{df.loc[df['ts_code'].duplicated(), 'ts_code'].iloc[0]}")
    cols = {}
    for c in ("quantity", "sellable"):
        if c not in df.columns:
            continue
        v = pd.to_numeric(df[c], errors="coerce").to_numpy(np.float64)
        # above MAX_SHARES (1e13, more than any A-share's share count) the int64 cast and
        # the order arithmetic would overflow: such a holding is an input error
        bad = (~np.isfinite(v) | (v < 0) | (v > MAX_SHARES)
               | (np.abs(v - np.round(v)) > 1e-9))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise BacktestError(f"{source}: {c} must be a whole number of shares in "
                                f"[0, {MAX_SHARES:.0e}], got {_show(df[c].iloc[i])} for "
                                f"{df['ts_code'].iloc[i]}")
        cols[c] = np.round(v).astype(np.int64)
    q = cols["quantity"]
    s = cols.get("sellable", q)
    if (s > q).any():
        i = int(np.flatnonzero(s > q)[0])
        raise BacktestError(f"{source}: sellable {s[i]} > quantity {q[i]} for "
                            f"{df['ts_code'].iloc[i]}")
    out = pd.DataFrame({"quantity": q, "sellable": s},
                       index=pd.Index(df["ts_code"].to_numpy(), name="ts_code"))
    return out.loc[out["quantity"] > 0]


# ----------------------------------------------------------------------------- the plan
def _weights(targets_day) -> pd.Series:
    if isinstance(targets_day, pd.Series):
        w = targets_day.astype(np.float64)
    else:
        if "trade_date" in targets_day.columns and targets_day["trade_date"].nunique() > 1:
            raise BacktestError("order_plan takes one day of targets; select it with "
                                "targets_for(targets, date)")
        w = pd.Series(targets_day["target_weight"].to_numpy(np.float64),
                      index=targets_day["ts_code"].astype(str).to_numpy())
    if w.index.has_duplicates:
        raise BacktestError(f"duplicated ts_code in the day's targets: "
                            f"{w.index[w.index.duplicated()][0]}")
    if (~np.isfinite(w) | (w < 0)).any() or w.sum() > 1.0 + _WEIGHT_TOL:
        raise BacktestError("the day's target weights must be finite, >= 0 and sum to <= 1")
    return w


def _col(x, codes: pd.Index, default: float) -> np.ndarray:
    if x is None:
        return np.full(len(codes), default)
    s = x if isinstance(x, pd.Series) else pd.Series(x)
    s.index = s.index.astype(str)
    return np.array(s.reindex(codes).to_numpy(np.float64, na_value=default), dtype=np.float64)


def _fees(cost: CostModel, side: str, qty: int, px: float, date) -> float:
    if qty <= 0:
        return 0.0
    fill = cost.fill_price(side, px)
    return float(sum(cost.fees(side, qty * fill, date).values())) + qty * abs(fill - px)


def order_plan(targets_day, current_positions, cash: float, prices, limits=None, date=None,
               cost_model: CostModel | None = None, *, has_bar=None,
               cash_reserve: float = 0.0, min_order_value: float = 0.0) -> pd.DataFrame:
    """Orders that move an account from its holdings to one day's target weights.

    Parameters
    ----------
    targets_day : DataFrame or Series
        One day of targets (``ts_code``, ``target_weight``), or a Series weight by ts_code.
        Weights are fractions of total equity, >= 0, summing to <= 1 (the rest stays cash).
    current_positions : DataFrame, Series or None
        Holdings: ``ts_code``, ``quantity`` [, ``sellable``] in shares (see
        :func:`backtest.export.read_positions`); a Series is quantity by ts_code; None = empty account.
    cash : float
        Available cash, yuan (>= 0).
    prices : Series or dict
        Reference price per ts_code, raw yuan (e.g. the last close). Every held stock needs
        one (its value enters equity); a target without one is flagged ``no_price``.
    limits : (Series, Series) or None
        Limit-up and limit-down prices per ts_code, raw yuan; missing / NaN = no limit.
    date : str or Timestamp
        The trading date the fees are dated (stamp-tax rate).
    cost_model : CostModel, optional
        Default ``CostModel()`` (0.03% commission, 5 yuan minimum, 0.001% transfer fee).
    has_bar : Series or dict, optional
        Whether each stock trades (False = suspended). Default (and for codes missing from
        it): it has a price.
    cash_reserve : float
        Fraction of equity kept uninvested (0 <= cash_reserve < 1).
    min_order_value : float
        Orders worth less than this (yuan) are not sent (``status = "skipped"``, reason
        ``below_min_order_value``), except sells of a whole holding. Avoids paying the
        minimum commission on small top-ups / trims. Default 0 (off).

    Returns
    -------
    DataFrame
        Columns :data:`PLAN_COLUMNS`: sells first then buys, each sorted by ts_code.
        ``quantity`` is in shares (int), ``est_value`` / ``est_fees`` / ``target_value`` in
        yuan, ``status`` is ``"ok"``, ``"flagged"`` or ``"skipped"``, ``reason`` is empty for
        plain ``ok`` orders, ``"reduced_for_cash"`` for buys cut to fit the budget, else the
        flag reason (module docstring) or ``below_min_order_value``. Stocks already at
        target (within one lot) get no row. Cash after the ``ok`` orders and their estimated
        fees is >= 0.

    Raises
    ------
    BacktestError
        Invalid weights, positions or cash, or a held stock without a reference price.
    """
    if not (isinstance(cash, (int, float, np.floating)) and math.isfinite(cash) and cash >= 0):
        raise BacktestError(f"cash must be a finite number >= 0 (yuan), got {cash!r}")
    if not (math.isfinite(min_order_value) and min_order_value >= 0):
        raise BacktestError(f"min_order_value must be >= 0 (yuan), got {min_order_value!r}")
    if not 0.0 <= cash_reserve < 1.0:
        raise BacktestError(f"cash_reserve must be in [0, 1), got {cash_reserve!r}")
    if date is None:
        raise BacktestError("order_plan needs the trading date (stamp-tax rate)")
    date = pd.Timestamp(date)
    cost = cost_model if cost_model is not None else CostModel()
    w = _weights(targets_day)
    pos = positions_frame(current_positions)
    codes = pd.Index(sorted(set(w.index) | set(pos.index)), name="ts_code")
    wt = w.reindex(codes).fillna(0.0).to_numpy()
    qty = pos["quantity"].reindex(codes).fillna(0).to_numpy(np.int64)
    sellable = pos["sellable"].reindex(codes).fillna(0).to_numpy(np.int64)
    px = _col(prices, codes, np.nan)
    px[~(px > 0)] = np.nan
    up = _col(limits[0], codes, np.nan) if limits is not None else np.full(len(codes), np.nan)
    down = _col(limits[1], codes, np.nan) if limits is not None else np.full(len(codes), np.nan)
    bar = np.isfinite(px)
    if has_bar is not None:
        hb = _col(has_bar, codes, np.nan)
        bar = np.where(np.isnan(hb), bar, hb > 0)
    no_px = (qty > 0) & ~np.isfinite(px)
    if no_px.any():
        raise BacktestError(f"no reference price for held stock(s) "
                            f"{', '.join(codes[no_px][:5])}: pass prices for every holding")
    equity = float(cash) + float(np.nansum(qty * px))
    tval = wt * equity * (1.0 - cash_reserve)
    with np.errstate(invalid="ignore"):
        want = tval / px - qty            # NaN where there is no price (target not held)
    rows: list[dict] = []

    def row(i, side, q, status, reason):
        p = px[i]
        ev = q * p if np.isfinite(p) else np.nan
        fee = _fees(cost, side, q, p, date) if np.isfinite(p) else np.nan
        rows.append({"ts_code": codes[i], "side": side, "quantity": int(q), "ref_price": p,
                     "est_value": ev, "est_fees": fee, "current_qty": int(qty[i]),
                     "sellable_qty": int(sellable[i]), "target_weight": wt[i],
                     "target_value": tval[i], "status": status, "reason": reason})
        return ev, fee

    budget = float(cash)
    # ---- sells
    for i in np.flatnonzero(want < 0):
        code = codes[i]
        q = rules.round_sell_qty(code, -want[i], held=int(qty[i]))
        if q <= 0:
            continue
        reason = rules.check_order("sell", px[i], up[i], down[i], bool(bar[i]))
        if reason is None and q > sellable[i]:
            reason = "not_sellable_t1"
        if reason is None and q < qty[i] and q * px[i] < min_order_value:
            row(i, "sell", q, "skipped", "below_min_order_value")
            continue
        ev, fee = row(i, "sell", q, "ok" if reason is None else "flagged", reason or "")
        if reason is None:
            budget += ev - fee
    # ---- buys
    cand = []                              # (i, wanted lot-rounded quantity)
    for i in np.flatnonzero(~(want <= 0) & (wt > 0)):
        code = codes[i]
        if not np.isfinite(px[i]):
            row(i, "buy", 0, "flagged", "no_price")
            continue
        q = rules.round_buy_qty(code, want[i])
        if q <= 0:
            if qty[i] == 0:
                row(i, "buy", 0, "flagged", "below_min_lot")
            continue
        reason = rules.check_order("buy", px[i], up[i], down[i], bool(bar[i]))
        if reason is not None:
            row(i, "buy", q, "flagged", reason)
            continue
        if q * px[i] < min_order_value:
            row(i, "buy", q, "skipped", "below_min_order_value")
            continue
        cand.append((i, q))
    need = sum(q * px[i] + _fees(cost, "buy", q, px[i], date) for i, q in cand)
    scale = 1.0 if need <= budget else max(budget, 0.0) / need
    cand.sort(key=lambda t: (-wt[t[0]], codes[t[0]]))
    for i, q0 in cand:
        code, p = codes[i], px[i]
        q = q0 if scale >= 1.0 else rules.round_buy_qty(code, q0 * scale)
        while q > 0:
            c = q * p + _fees(cost, "buy", q, p, date)
            if c <= budget + 1e-9:
                break
            shrink = (budget - _fees(cost, "buy", q, p, date)) / p
            q = rules.round_buy_qty(code, min(q - 1, shrink))
        if q <= 0:
            row(i, "buy", q0, "flagged", "insufficient_cash")
            continue
        ev, fee = row(i, "buy", q, "ok", "" if q == q0 else "reduced_for_cash")
        budget -= ev + fee
    plan = pd.DataFrame(rows, columns=PLAN_COLUMNS)
    plan["_s"] = (plan["side"] == "buy").astype(int)
    plan = plan.sort_values(["_s", "ts_code"], kind="stable").drop(columns="_s")
    plan = plan.reset_index(drop=True)
    plan["quantity"] = plan["quantity"].astype(np.int64)
    return plan


def plan_summary(plan: pd.DataFrame, cash: float) -> dict:
    """Totals of a plan: counts, gross values, fees and the estimated cash left.

    Returns
    -------
    dict
        ``n_orders`` (ok), ``n_sell``, ``n_buy``, ``n_flagged``, ``n_skipped``, ``gross_sell``,
        ``gross_buy``, ``est_fees`` (ok orders, yuan), ``cash_after`` (cash + sells - buys -
        fees, yuan) and ``flagged`` (reason -> count).
    """
    ok = plan[plan["status"] == "ok"]
    sell = ok[ok["side"] == "sell"]
    buy = ok[ok["side"] == "buy"]
    fees = float(ok["est_fees"].sum())
    flagged = plan.loc[plan["status"] == "flagged", "reason"].value_counts()
    skipped = int((plan["status"] == "skipped").sum())
    return {"n_orders": int(len(ok)), "n_sell": int(len(sell)), "n_buy": int(len(buy)),
            "n_flagged": int(flagged.sum()), "n_skipped": skipped,
            "gross_sell": float(sell["est_value"].sum()),
            "gross_buy": float(buy["est_value"].sum()), "est_fees": fees,
            "cash_after": float(cash) + float(sell["est_value"].sum())
            - float(buy["est_value"].sum()) - fees,
            "flagged": {str(k): int(v) for k, v in flagged.items()}}
