"""Numba kernel of the account simulator (see :mod:`backtest.simulate` for the semantics).

One pass over the trading days; per day: corporate actions, mark at the execution price,
sells, buys scaled to the cash, mark at the close. All arrays are (T, N) float64 on trading
days (NaN = no bar) unless stated. Records (trades, rejections, positions, corporate actions)
go to growable float64 buffers that the wrapper turns into DataFrames.
"""
from __future__ import annotations

import numpy as np
from numba import njit

#: rejection reason codes -> names (the kernel writes codes)
REASONS = ("", "suspended", "limit_up_buy", "limit_down_sell", "participation", "below_min_lot",
           "insufficient_cash")
SUSPENDED, LIMIT_UP, LIMIT_DOWN, PARTICIPATION, BELOW_LOT, NO_CASH = 1, 2, 3, 4, 5, 6
#: quantity modes
FRACTIONAL, WHOLE, LOTS = 0, 1, 2
_EPS = 1e-9
TRADE_COLS = ("t", "j", "side", "quantity", "price", "value", "commission", "stamp_tax",
              "transfer_fee", "slippage")
REJECT_COLS = ("t", "j", "side", "quantity", "reason")
POS_COLS = ("t", "j", "quantity", "sellable", "price", "value")
CORP_COLS = ("t", "j", "ratio", "quantity_before", "quantity_after", "cash")


@njit(cache=True)
def _push(buf, n, row):
    """Append ``row`` to ``buf`` (growing it by doubling); returns the possibly new buffer."""
    if n >= buf.shape[0]:
        new = np.empty((buf.shape[0] * 2 + 16, buf.shape[1]))
        new[:n] = buf[:n]
        buf = new
    buf[n, :] = row
    return buf


@njit(cache=True)
def _cents(p):
    return np.floor(p * 100.0 + 0.5)


@njit(cache=True)
def _round_qty(x, held, lo, step, mode, sell):
    """Valid quantity <= x (buy) or <= min(x, held) (sell); see backtest.rules."""
    if not (x > 0.0):
        return 0.0
    if sell and x + _EPS >= held:
        return held
    if mode == FRACTIONAL:
        return x
    n = np.floor(x + _EPS)
    if mode == WHOLE:
        return n
    if n < lo:
        return 0.0
    return lo + np.floor((n - lo) / step) * step


@njit(cache=True)
def _fees(value, rate, minc, tf, stamp):
    if value <= 0.0:
        return 0.0, 0.0, 0.0
    c = rate * value
    if c < minc:
        c = minc
    return c, stamp * value, tf * value


@njit(cache=True)
def simulate_kernel(px, close, vol, lup, ldn, bar, adj, bonus, W, rebal, stamp, lot_lo,
                    lot_step, init_cash, comm, minc, tf, slip, part, mode, price_limits,
                    t_plus_1, corp, has_bonus):
    """Run the account day by day.

    Parameters
    ----------
    px : (T, N) raw execution price (open or vwap); close : (T, N) raw close;
    vol : (T, N) shares; lup, ldn : (T, N) raw limit prices (NaN = none);
    bar : (T, N) bool; adj : (T, N) adj_factor; bonus : (T, N) bonus shares per share on
    ex-dates (used when ``has_bonus``); W : (T, N) target weights executed on day t;
    rebal : (T,) bool, rebalance on day t; stamp : (T,) sell stamp-tax rate;
    lot_lo, lot_step : (N,) minimum buy lot and step; scalars: costs, participation (<= 0 =
    no cap), mode (FRACTIONAL / WHOLE / LOTS), rule switches.

    Returns
    -------
    nav, nav_exec, cash : (T,); costs : (T, 5) commission, stamp, transfer, slippage, dividend
    cash; trades, rejects, positions, corporate : record buffers with their counts.
    """
    T, N = px.shape
    q = np.zeros(N)
    bought = np.zeros(N)
    last_close = np.full(N, np.nan)
    adj_last = np.full(N, np.nan)
    cash = init_cash
    nav = np.empty(T)
    nav_exec = np.empty(T)
    cash_out = np.empty(T)
    costs = np.zeros((T, 5))
    trades = np.empty((1024, 10))
    rejects = np.empty((256, 5))
    pos = np.empty((4096, 6))
    corpbuf = np.empty((64, 6))
    nt = 0
    nr = 0
    npos = 0
    nc = 0
    tq = np.zeros(N)
    desired = np.zeros(N)
    sfrac = slip / 1e4
    row10 = np.empty(10)
    row6 = np.empty(6)
    row5 = np.empty(5)
    for t in range(T):
        # ---- corporate actions before the open (holdings from earlier days only)
        for j in range(N):
            bought[j] = 0.0
            if bar[t, j] and np.isfinite(adj[t, j]):
                a_prev = adj_last[j]
                if corp and q[j] > 0.0 and np.isfinite(a_prev) and adj[t, j] != a_prev \
                        and np.isfinite(last_close[j]):
                    r = adj[t, j] / a_prev
                    before = q[j]
                    if mode == FRACTIONAL:
                        nq = before * r
                        div = 0.0
                    else:
                        full = np.floor(before * r + _EPS)
                        if has_bonus and np.isfinite(bonus[t, j]):
                            nq = np.floor(before * (1.0 + bonus[t, j]) + _EPS)
                            if nq > full:
                                nq = full
                        else:
                            nq = full
                        div = (before * r - nq) * last_close[j] / r
                    q[j] = nq
                    cash += div
                    costs[t, 4] += div
                    row6[0] = t; row6[1] = j; row6[2] = r; row6[3] = before
                    row6[4] = nq; row6[5] = div
                    corpbuf = _push(corpbuf, nc, row6)
                    nc += 1
                adj_last[j] = adj[t, j]
        # ---- mark at the execution price
        ne = cash
        for j in range(N):
            if q[j] != 0.0:
                if bar[t, j] and px[t, j] > 0.0:
                    ne += q[j] * px[t, j]
                else:
                    ne += q[j] * last_close[j]
        nav_exec[t] = ne
        if rebal[t]:
            # ---- target quantities at the execution price (last close when no bar)
            for j in range(N):
                w = W[t, j]
                tq[j] = 0.0
                if w > 0.0:
                    p = px[t, j] if (bar[t, j] and px[t, j] > 0.0) else last_close[j]
                    if p > 0.0:
                        tq[j] = w * ne / p
                    else:                                    # never traded: cannot buy
                        row5[0] = t; row5[1] = j; row5[2] = 1.0; row5[3] = np.nan
                        row5[4] = SUSPENDED
                        rejects = _push(rejects, nr, row5)
                        nr += 1
            # ---- sells first: cash from sales is usable the same day
            for j in range(N):
                want = q[j] - tq[j]
                if not (q[j] > 0.0 and want > _EPS * (1.0 + q[j])):
                    continue
                ok = bar[t, j] and px[t, j] > 0.0
                reason = 0
                if not ok:
                    reason = SUSPENDED
                elif price_limits and np.isfinite(ldn[t, j]) and \
                        _cents(px[t, j]) <= _cents(ldn[t, j]):
                    reason = LIMIT_DOWN
                if reason != 0:
                    row5[0] = t; row5[1] = j; row5[2] = -1.0; row5[3] = want; row5[4] = reason
                    rejects = _push(rejects, nr, row5)
                    nr += 1
                    continue
                if want + _EPS >= q[j]:
                    want = q[j]
                if part > 0.0:
                    cap = part * vol[t, j] if vol[t, j] > 0.0 else 0.0
                    if want > cap:
                        row5[0] = t; row5[1] = j; row5[2] = -1.0; row5[3] = want - cap
                        row5[4] = PARTICIPATION
                        rejects = _push(rejects, nr, row5)
                        nr += 1
                        want = cap
                sellable = q[j]                  # start-of-day holdings are all sellable
                qty = _round_qty(want, sellable, lot_lo[j], lot_step[j], mode, True)
                if qty <= 0.0:
                    continue
                fill = px[t, j] * (1.0 - sfrac)
                value = qty * fill
                c, s, f = _fees(value, comm, minc, tf, stamp[t])
                cash += value - c - s - f
                q[j] -= qty
                if q[j] < _EPS:
                    q[j] = 0.0
                sl = qty * px[t, j] * sfrac
                costs[t, 0] += c; costs[t, 1] += s; costs[t, 2] += f; costs[t, 3] += sl
                row10[0] = t; row10[1] = j; row10[2] = -1.0; row10[3] = qty; row10[4] = fill
                row10[5] = value; row10[6] = c; row10[7] = s; row10[8] = f; row10[9] = sl
                trades = _push(trades, nt, row10)
                nt += 1
            # ---- buys: desired quantities after the order checks and the volume cap
            nb = 0
            for j in range(N):
                desired[j] = 0.0
                want = tq[j] - q[j]
                if not (tq[j] > 0.0 and want > _EPS * (1.0 + tq[j])):
                    continue
                ok = bar[t, j] and px[t, j] > 0.0
                reason = 0
                if not ok:
                    reason = SUSPENDED
                elif price_limits and np.isfinite(lup[t, j]) and \
                        _cents(px[t, j]) >= _cents(lup[t, j]):
                    reason = LIMIT_UP
                if reason != 0:
                    row5[0] = t; row5[1] = j; row5[2] = 1.0; row5[3] = want; row5[4] = reason
                    rejects = _push(rejects, nr, row5)
                    nr += 1
                    continue
                if part > 0.0:
                    cap = part * vol[t, j] if vol[t, j] > 0.0 else 0.0
                    if want > cap:
                        row5[0] = t; row5[1] = j; row5[2] = 1.0; row5[3] = want - cap
                        row5[4] = PARTICIPATION
                        rejects = _push(rejects, nr, row5)
                        nr += 1
                        want = cap
                if _round_qty(want, 0.0, lot_lo[j], lot_step[j], mode, False) <= 0.0:
                    if q[j] == 0.0 and want > 0.0 and mode == LOTS:
                        row5[0] = t; row5[1] = j; row5[2] = 1.0; row5[3] = want
                        row5[4] = BELOW_LOT
                        rejects = _push(rejects, nr, row5)
                        nr += 1
                    continue
                desired[j] = want
                nb += 1
            # ---- one scale factor so that the buys (with fees) fit in the cash
            scale = 1.0
            if nb > 0:
                for it in range(60):
                    total = 0.0
                    for j in range(N):
                        if desired[j] > 0.0:
                            qty = _round_qty(desired[j] * scale, 0.0, lot_lo[j], lot_step[j],
                                             mode, False)
                            v = qty * px[t, j] * (1.0 + sfrac)
                            c, s, f = _fees(v, comm, minc, tf, 0.0)
                            total += v + c + f
                    if total <= cash:
                        break
                    ratio = cash / total if cash > 0.0 else 0.0
                    if ratio > 1.0 - 1e-12:
                        ratio = 1.0 - 1e-12
                    scale *= ratio
                for j in range(N):
                    if desired[j] <= 0.0:
                        continue
                    fill = px[t, j] * (1.0 + sfrac)
                    qty = _round_qty(desired[j] * scale, 0.0, lot_lo[j], lot_step[j], mode,
                                     False)
                    # never spend more than the cash left: closed-form affordable quantity
                    rem = cash * (1.0 - 1e-12)
                    a1 = rem / (fill * (1.0 + tf + comm))
                    a2 = (rem - minc) / (fill * (1.0 + tf))
                    aff = a1 if a1 < a2 else a2
                    if qty > aff:
                        qty = _round_qty(aff, 0.0, lot_lo[j], lot_step[j], mode, False)
                    if qty <= 0.0:
                        row5[0] = t; row5[1] = j; row5[2] = 1.0; row5[3] = desired[j]
                        row5[4] = NO_CASH
                        rejects = _push(rejects, nr, row5)
                        nr += 1
                        continue
                    value = qty * fill
                    c, s, f = _fees(value, comm, minc, tf, 0.0)
                    cash -= value + c + f
                    q[j] += qty
                    bought[j] += qty
                    sl = qty * px[t, j] * sfrac
                    costs[t, 0] += c; costs[t, 2] += f; costs[t, 3] += sl
                    row10[0] = t; row10[1] = j; row10[2] = 1.0; row10[3] = qty
                    row10[4] = fill; row10[5] = value; row10[6] = c; row10[7] = 0.0
                    row10[8] = f; row10[9] = sl
                    trades = _push(trades, nt, row10)
                    nt += 1
        # ---- mark at the close
        nv = cash
        for j in range(N):
            if bar[t, j] and close[t, j] > 0.0:
                last_close[j] = close[t, j]
            if q[j] != 0.0:
                nv += q[j] * last_close[j]
                row6[0] = t; row6[1] = j; row6[2] = q[j]
                row6[3] = q[j] - bought[j] if t_plus_1 else q[j]
                row6[4] = last_close[j]; row6[5] = q[j] * last_close[j]
                pos = _push(pos, npos, row6)
                npos += 1
        nav[t] = nv
        cash_out[t] = cash
    return (nav, nav_exec, cash_out, costs, trades[:nt], rejects[:nr], pos[:npos],
            corpbuf[:nc])
