"""The signal book: buy/sell signals with ATR stops, simulated under the A-share rules.

:func:`run_book` walks the trading days once. Day ``t``:

1. Corporate actions before the open (as :mod:`backtest.simulate`): on an ``adj_factor``
   change with ratio ``r``, the quantity becomes ``floor(q x (1 + stk_div))`` (capped at
   ``floor(q x r)``; ``floor(q x r)`` without a dividend table), the rest of the value is
   cash; the position's entry, stop and take-profit prices are divided by ``r``.
2. At the open, pending exits (score exits decided at the close of ``t - 1``, and stops that
   could not be filled) sell the whole position at the raw open, unless the stock has no
   bar (``suspended``) or opens at or below limit-down (``limit_down_sell``): then the exit
   stays pending and is retried the next day.
3. At the open, the buys decided at the close of ``t - 1`` fill at the raw open: rejected at
   or above limit-up (``limit_up_buy``) or without a bar; quantity ``slot_weight x
   nav_exec / fill price`` rounded to lots (:mod:`backtest.rules`), cut to ``participation x
   volume``, then to the cash (``below_min_lot`` / ``insufficient_cash``). A buy signal is
   for that open only (never carried). The position's stop is ``open - k_stop x ATR`` and
   its take-profit ``open + k_tp x ATR`` (ATR of the signal day, in today's raw prices).
4. During the day, positions bought before ``t`` (T+1: never on the buy day) with no
   pending exit check the day's raw high/low: an open at or above the take-profit sells
   there at the open; an open at or below the stop sells at the open (gapped through); else a
   low at or below the stop sells at the stop, else a high at or above the take-profit
   sells at the take-profit (a day touching both counts the stop first: the conservative
   order). A fill price at or below limit-down (limit-locked) is rejected
   (``limit_down_sell``) and the exit is retried at the next open (step 2).
5. ``nav`` = cash + holdings at the raw close (last close while suspended).
6. At the close, decisions for ``t + 1`` from the composite of day ``t``: a held name
   without a pending exit whose composite is below ``exit_threshold`` (or NaN: it left the
   universe or lost its scores) gets a sell signal; names not held, eligible on ``t``, with
   a finite ATR and a composite ``>= buy_threshold`` get buy signals, best first, while the
   book has fewer than ``max_names`` names, each of weight ``slot_weight`` (the single-name
   cap) and while its Shenwan industry's weight (held names without a pending exit plus the
   day's buys, ``slot_weight`` each) stays within ``max_industry_weight``. Held names
   without an action get ``hold`` rows.

Fills pay slippage, commission (with its minimum), transfer fee and the dated stamp tax on
sells (:class:`backtest.rules.CostModel`); cash never goes negative. Not modelled: the
intraday order of the limit and stop events beyond the rule above. Causality: day ``t`` reads market rows ``<= t`` and
scores of days ``< t`` for its trades, and scores of day ``t`` for its decisions.
Source: the attack layer of ``reference/system-dev-doc-zh.md`` (买卖信号, ATR 止损止盈).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from backtest import _sim_kernel as K
from backtest.errors import BacktestError
from backtest.rules import cents, lot_params, stamp_tax_rates
from backtest.signals import SignalsConfig
from backtest.simulate import MarketData, SimConfig, SimResult

__all__ = ["BookResult", "run_book", "SIGNAL_COLS"]

#: Columns of :attr:`BookResult.signals`.
SIGNAL_COLS = ("trade_date", "ts_code", "flag", "reason", "composite", "entry", "stop",
               "take_profit")


@dataclass
class BookResult:
    """What :func:`run_book` produced.

    Attributes
    ----------
    sim : SimResult
        The account (NAV, trades with a ``reason`` column, rejections, costs, positions,
        corporate actions), as :func:`backtest.simulate.simulate` returns.
    signals : DataFrame
        One row per decision: :data:`SIGNAL_COLS`; ``flag`` ``buy`` / ``sell`` / ``hold``;
        ``reason`` ``score`` (buy), ``exit_score``, ``no_score``, ``stop_loss``,
        ``take_profit``, ``held``; prices raw yuan (a buy's ``entry`` is the signal day's
        close, the reference for its stop and take-profit).
    stops : DataFrame
        The stop-loss / take-profit hits: ``trade_date, ts_code, reason, stop, take_profit,
        fill`` (NaN fill: limit-locked, retried the next day), ``entry``.
    """

    sim: SimResult
    signals: pd.DataFrame
    stops: pd.DataFrame = field(default_factory=pd.DataFrame)


def _arr(x, shape, name):
    a = np.asarray(x, dtype=np.float64)
    if a.shape != shape:
        raise BacktestError(f"run_book: {name} has shape {a.shape}, expected {shape}")
    return a


def run_book(market: MarketData, high, low, score, atr, eligible, industry,
             cfg: SignalsConfig, sim: SimConfig | None = None) -> BookResult:
    """Run the signal book over ``market``'s days (rules: module docstring).

    Parameters
    ----------
    market : MarketData
        Raw prices, limits, volume, adj_factor, bars (``execution`` must be ``"open"``).
    high, low : ndarray (T, N)
        Raw daily high and low, yuan.
    score : ndarray (T, N)
        Composite ``0..100`` (:func:`backtest.signals.composite`), NaN = not scored.
    atr : ndarray (T, N)
        ATR in raw yuan of the same day (:func:`backtest.signals.wilder_atr` of adjusted
        prices divided by ``adj_factor``).
    eligible : ndarray of bool (T, N)
        May be bought on the decision day (universe member, bar, listing age; day ``t``
        only).
    industry : ndarray of int (T, N)
        Point-in-time industry codes (the industry cap).
    cfg : SignalsConfig
    sim : SimConfig, optional
        Costs, lots, participation, cash (default :class:`SimConfig` ()).

    Returns
    -------
    BookResult

    Raises
    ------
    BacktestError
        Misaligned arrays or ``execution != "open"``.
    """
    sim = sim or SimConfig()
    if sim.execution != "open":
        raise BacktestError("the signal book fills at the open: use execution = 'open'")
    T, N = market.shape
    high, low = _arr(high, (T, N), "high"), _arr(low, (T, N), "low")
    score, atr = _arr(score, (T, N), "score"), _arr(atr, (T, N), "atr")
    elig = np.asarray(eligible, dtype=bool)
    ind = np.asarray(industry, dtype=np.int64)
    if elig.shape != (T, N) or ind.shape != (T, N):
        raise BacktestError("run_book: eligible and industry must be (T, N)")
    codes = market.codes
    lo_q, st_q = lot_params(codes)
    mode = K.FRACTIONAL if sim.fractional else (K.LOTS if sim.lots else K.WHOLE)
    c = sim.costs
    slip = c.slippage_bps / 1e4
    stamp = stamp_tax_rates(market.dates) if c.stamp_tax else np.zeros(T)
    part = float(sim.participation or 0.0)
    w_slot = cfg.slot_weight

    cash = float(sim.init_cash)
    qty = np.zeros(N)
    buy_t = np.full(N, -1, dtype=np.int64)
    entry, stop, tp = (np.full(N, np.nan) for _ in range(3))
    exit_why = np.full(N, "", dtype=object)
    last_close = np.full(N, np.nan)
    last_adj = np.full(N, np.nan)
    pend_buy: dict[int, tuple[float, float]] = {}
    nav, nav_e, cash_s = np.zeros(T), np.zeros(T), np.zeros(T)
    costs = np.zeros((T, 4))
    trades, rejected, positions, corporate, signals, stops = [], [], [], [], [], []
    d = market.dates

    def sell(t, j, price, why):
        """Sell position ``j`` at ``price`` up to the participation cap; the rest of it stays
        a pending exit (``why``), retried at the next open (step 2)."""
        nonlocal cash
        q = qty[j]
        if part > 0:
            q = K._round_qty(min(q, part * market.vol[t, j]), q, lo_q[j], st_q[j], mode, True)
        if q > 0:
            fill = price * (1.0 - slip)
            value = q * fill
            cm, st, tf = K._fees(value, c.commission, c.min_commission, c.transfer_fee,
                                 stamp[t])
            cash += value - cm - st - tf
            sl = q * price * slip
            costs[t] += (cm, st, tf, sl)
            trades.append((d[t], codes[j], "sell", q, fill, value, cm, st, tf, sl, why))
            qty[j] -= q
        if qty[j] > 0:
            rejected.append((d[t], codes[j], "sell", qty[j], "participation"))
            exit_why[j] = why
            return
        qty[j] = 0.0
        buy_t[j] = -1
        entry[j] = stop[j] = tp[j] = np.nan
        exit_why[j] = ""

    for t in range(T):
        bar = market.has_bar[t]
        o, cl, ld, lu = market.open[t], market.close[t], market.limit_down[t], market.limit_up[t]
        # 1. corporate actions
        if sim.corporate_actions:
            adj = market.adj_factor[t]
            for j in np.flatnonzero(bar & (qty > 0) & np.isfinite(last_adj)
                                    & (adj != last_adj)):
                r = adj[j] / last_adj[j]
                new = np.floor(qty[j] * r + 1e-9)
                if market.bonus is not None:
                    new = min(new, np.floor(qty[j] * (1.0 + market.bonus[t, j]) + 1e-9))
                if sim.fractional:
                    new = qty[j] * r
                credit = (qty[j] * r - new) * last_close[j] / r
                corporate.append((d[t], codes[j], r, qty[j], new, credit))
                cash += credit
                qty[j] = new
                entry[j], stop[j], tp[j] = entry[j] / r, stop[j] / r, tp[j] / r
            last_adj = np.where(bar, adj, last_adj)
        mark = np.where(bar, o, last_close)
        nav_e[t] = cash + float(np.nansum(qty * mark))
        # 2. pending exits at the open
        for j in np.flatnonzero((qty > 0) & (exit_why != "") & (buy_t < t)):
            if not bar[j]:
                rejected.append((d[t], codes[j], "sell", qty[j], "suspended"))
            elif np.isfinite(ld[j]) and cents(o[j]) <= cents(ld[j]):
                rejected.append((d[t], codes[j], "sell", qty[j], "limit_down_sell"))
            else:
                sell(t, j, o[j], exit_why[j])
        # 3. buys at the open
        for j, (atr_sig, adj_sig) in pend_buy.items():
            if not bar[j]:
                rejected.append((d[t], codes[j], "buy", 0.0, "suspended"))
                continue
            if np.isfinite(lu[j]) and cents(o[j]) >= cents(lu[j]):
                rejected.append((d[t], codes[j], "buy", 0.0, "limit_up_buy"))
                continue
            p = o[j] * (1.0 + slip)
            want = w_slot * nav_e[t] / p
            if part > 0:
                want = min(want, part * market.vol[t, j])
            q = K._round_qty(want, 0.0, lo_q[j], st_q[j], mode, False)
            if q <= 0:
                rejected.append((d[t], codes[j], "buy", want, "below_min_lot"))
                continue
            rate = c.commission + c.transfer_fee
            if q * p * (1 + rate) + c.min_commission > cash:
                afford = max(cash - c.min_commission, 0.0) / (p * (1 + rate))
                q2 = K._round_qty(min(afford, q), 0.0, lo_q[j], st_q[j], mode, False)
                if q2 <= 0:
                    rejected.append((d[t], codes[j], "buy", q, "insufficient_cash"))
                    continue
                q = q2
            value = q * p
            cm, _, tf = K._fees(value, c.commission, c.min_commission, c.transfer_fee, 0.0)
            cash -= value + cm + tf
            sl = q * o[j] * slip
            costs[t] += (cm, 0.0, tf, sl)
            trades.append((d[t], codes[j], "buy", q, p, value, cm, 0.0, tf, sl, "score"))
            a = atr_sig * adj_sig / market.adj_factor[t, j]
            qty[j], buy_t[j] = q, t
            entry[j], stop[j], tp[j] = o[j], o[j] - cfg.k_stop * a, o[j] + cfg.k_tp * a
        pend_buy = {}
        # 4. stops and take-profits during the day (T+1)
        live = (qty > 0) & (buy_t < t) & (exit_why == "") & bar
        hit = live & ((low[t] <= stop) | (high[t] >= tp))
        for j in np.flatnonzero(hit):
            if o[j] >= tp[j]:
                fill, why = o[j], "take_profit"
            elif o[j] <= stop[j]:
                fill, why = o[j], "stop_loss"
            elif low[t, j] <= stop[j]:
                fill, why = stop[j], "stop_loss"
            else:
                fill, why = tp[j], "take_profit"
            ev = [d[t], codes[j], why, stop[j], tp[j], fill, entry[j]]
            if np.isfinite(ld[j]) and cents(fill) <= cents(ld[j]):
                rejected.append((d[t], codes[j], "sell", qty[j], "limit_down_sell"))
                exit_why[j] = why
                ev[5] = np.nan
            else:
                sell(t, j, fill, why)
            stops.append(tuple(ev))
            signals.append((d[t], codes[j], "sell", why, score[t, j], ev[6], ev[3], ev[4]))
        # 5. close
        last_close = np.where(bar, cl, last_close)
        val = qty * np.nan_to_num(last_close)
        cash_s[t] = cash
        nav[t] = cash + float(val.sum())
        for j in np.flatnonzero(qty > 0):
            positions.append((d[t], codes[j], qty[j], qty[j] if buy_t[j] < t else 0.0,
                              last_close[j], val[j]))
        # 6. decisions for t + 1 (an exit still pending from an earlier day is said again)
        s = score[t]
        for j in np.flatnonzero((qty > 0) & (exit_why != "") & ~hit):
            signals.append((d[t], codes[j], "sell", exit_why[j], s[j], entry[j], stop[j],
                            tp[j]))
        active = (qty > 0) & (exit_why == "")
        out = active & ~(s >= cfg.exit_threshold)
        for j in np.flatnonzero(out):
            exit_why[j] = "exit_score" if np.isfinite(s[j]) else "no_score"
            signals.append((d[t], codes[j], "sell", exit_why[j], s[j], entry[j], stop[j],
                            tp[j]))
        active &= ~out
        for j in np.flatnonzero(active):
            signals.append((d[t], codes[j], "hold", "held", s[j], entry[j], stop[j], tp[j]))
        slots = cfg.max_names - int(active.sum())
        cand = np.flatnonzero(elig[t] & (qty <= 0) & (s >= cfg.buy_threshold)
                              & np.isfinite(atr[t]) & (atr[t] > 0) & bar)
        if slots > 0 and cand.size:
            g_w: dict[int, float] = {}
            for j in np.flatnonzero(active):
                g_w[int(ind[t, j])] = g_w.get(int(ind[t, j]), 0.0) + w_slot
            for j in cand[np.argsort(-s[cand], kind="stable")]:
                if slots <= 0:
                    break
                g = int(ind[t, j])
                if g_w.get(g, 0.0) + w_slot > cfg.max_industry_weight + 1e-9:
                    continue
                g_w[g] = g_w.get(g, 0.0) + w_slot
                slots -= 1
                pend_buy[int(j)] = (atr[t, j], market.adj_factor[t, j])
                signals.append((d[t], codes[j], "buy", "score", s[j], cl[j],
                                cl[j] - cfg.k_stop * atr[t, j], cl[j] + cfg.k_tp * atr[t, j]))
    idx = d.rename("trade_date")
    tcols = ["trade_date", "ts_code", "side", "quantity", "price", "value", "commission",
             "stamp_tax", "transfer_fee", "slippage", "reason"]
    res = SimResult(
        nav=pd.Series(nav, index=idx, name="nav"),
        nav_exec=pd.Series(nav_e, index=idx, name="nav_exec"),
        cash=pd.Series(cash_s, index=idx, name="cash"),
        positions=pd.DataFrame(positions, columns=["trade_date", "ts_code", "quantity",
                                                   "sellable", "price", "value"]),
        trades=pd.DataFrame(trades, columns=tcols),
        rejected=pd.DataFrame(rejected, columns=["trade_date", "ts_code", "side", "quantity",
                                                 "reason"]),
        costs=pd.DataFrame(costs, index=idx, columns=["commission", "stamp_tax",
                                                      "transfer_fee", "slippage"]),
        corporate=pd.DataFrame(corporate, columns=["trade_date", "ts_code", "ratio",
                                                   "quantity_before", "quantity_after",
                                                   "cash"]))
    sig = pd.DataFrame(signals, columns=list(SIGNAL_COLS))
    st = pd.DataFrame(stops, columns=["trade_date", "ts_code", "reason", "stop", "take_profit",
                                      "fill", "entry"])
    return BookResult(res, sig, st)
