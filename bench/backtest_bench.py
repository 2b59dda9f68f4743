"""Benchmark: the alphamine account simulator against backtrader, same strategy, same fills.

    python bench/backtest_bench.py [--quick] [--no-backtrader]

Strategy (both sides): CSI300 point-in-time members with a bar on day ``t``; momentum = 20-day
return of the back-adjusted close (ffilled over suspensions); every 5 trading days (from day
20) the top 50 by momentum (ties: code order), equal weight 1/50, decided at the close of ``t``
and executed at the next open. Account: 1,000,000 yuan; every rule on: 100-share lots (STAR 200
then 1), odd lots sold whole, T+1, price limits at the open, suspension = no trade, 10% volume
participation cap, commission 0.03% with a 5-yuan minimum, transfer fee 0.001%, dated stamp tax
on sells, 5 bps slippage; buys scaled so cash never goes negative.

Rule switched off for the comparison: corporate actions (backtrader has no ex-right
handling: positions keep their raw shares across ex-dates on both sides, dividends are lost).
Our time with corporate actions on is printed too.

backtrader side: one PandasData feed per stock (raw prices, ffilled over suspensions, extra
lines for the limit prices, the bar flag, membership and the adjusted close), cheat-on-open
(orders placed before the open of the execution bar, filled at its open), momentum and top-50
selection in ``next``, orders sized in ``next_open`` with the same sizing rules, a
CommissionInfo with the minimum commission, transfer fee and dated stamp tax, backtrader's own
slippage (``set_slippage_perc``, allowed outside the bar range). The sizing rules are written
out again here in plain Python (bench only; backtrader is not a package dependency).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backtest.rules import CostModel, lot_params, stamp_tax_rate  # noqa: E402
from backtest.seal import check_window, default_end  # noqa: E402
from backtest.simulate import MarketData, SimConfig, simulate  # noqa: E402
from data.manager import DataManager  # noqa: E402
from mining.cli_app import load as load_config  # noqa: E402

TOPK, EVERY, LOOKBACK = 50, 5, 20
COSTS = CostModel(commission=0.0003, min_commission=5.0, transfer_fee=0.00001,
                  slippage_bps=5.0)
INIT_CASH = 1_000_000.0
PART = 0.1
EPS = 1e-9


def load(start: str, end: str):
    cfg = load_config()
    check_window(cfg, end, None, "the backtest benchmark")   # reads the warehouse directly
    dm = DataManager.from_config(cfg)
    codes = dm.universe_codes("csi300", start, end)
    market = MarketData.from_dm(dm, codes, start, end)
    member = dm.universe_mask("csi300", market.dates, codes)
    return market, member


def momentum_targets(market: MarketData, member: np.ndarray) -> pd.DataFrame:
    """Top-K momentum targets (long format), vectorised numpy."""
    adj_close = pd.DataFrame(market.close * market.adj_factor).ffill().to_numpy()
    T, N = adj_close.shape
    mom = np.full((T, N), np.nan)
    mom[LOOKBACK:] = adj_close[LOOKBACK:] / adj_close[:-LOOKBACK] - 1.0
    ok = member & market.has_bar & np.isfinite(mom)
    days = np.arange(LOOKBACK, T, EVERY)
    score = np.where(ok[days], mom[days], -np.inf)
    order = np.argsort(-score, axis=1, kind="stable")[:, :TOPK]
    picked = np.take_along_axis(ok[days], order, axis=1)
    n = picked.sum(axis=1)
    rows_d = np.repeat(days, TOPK)[picked.ravel()]
    rows_c = order.ravel()[picked.ravel()]
    w = (1.0 / np.repeat(n, TOPK))[picked.ravel()]
    return pd.DataFrame({"trade_date": market.dates[rows_d], "ts_code": market.codes[rows_c],
                         "target_weight": w})


def run_ours(market, member, corporate_actions: bool):
    cfg = SimConfig(init_cash=INIT_CASH, execution="open", costs=COSTS, participation=PART,
                    lots=True, price_limits=True, t_plus_1=True,
                    corporate_actions=corporate_actions)
    t0 = time.perf_counter()
    targets = momentum_targets(market, member)
    res = simulate(targets, market, cfg)
    return time.perf_counter() - t0, res, targets


# ---------------------------------------------------------------------------- backtrader

def run_backtrader(market: MarketData, member: np.ndarray):
    import backtrader as bt

    T, N = market.shape
    codes = list(market.codes)
    lot_lo, lot_step = lot_params(codes)
    stamp = {d: stamp_tax_rate(d) for d in market.dates}
    close_ff = pd.DataFrame(market.close).ffill().bfill().to_numpy()
    open_ff = np.where(market.has_bar, market.open, close_ff)
    adj_close = pd.DataFrame(market.close * market.adj_factor).ffill().to_numpy()

    class Feed(bt.feeds.PandasData):
        lines = ("limit_up", "limit_down", "bar", "member", "adjclose")
        params = (("limit_up", -1), ("limit_down", -1), ("bar", -1), ("member", -1),
                  ("adjclose", -1), ("openinterest", None))

    class AshareComm(bt.CommInfoBase):
        params = (("stocklike", True), ("commtype", bt.CommInfoBase.COMM_FIXED))
        stamp_rate = 0.0

        def _getcommission(self, size, price, pseudoexec):
            v = abs(size) * price
            c = max(COSTS.commission * v, COSTS.min_commission) + COSTS.transfer_fee * v
            if size < 0:
                c += AshareComm.stamp_rate * v
            return c

    def rnd(x, held, j, sell):
        if not x > 0.0:
            return 0.0
        if sell and x + EPS >= held:
            return held
        n = math.floor(x + EPS)
        lo, st = lot_lo[j], lot_step[j]
        return 0.0 if n < lo else float(lo + ((n - lo) // st) * st)

    def cents(p):
        return math.floor(p * 100.0 + 0.5)

    slip = COSTS.slippage_bps / 1e4
    c_rate, minc, tf = COSTS.commission, COSTS.min_commission, COSTS.transfer_fee

    class TopK(bt.Strategy):
        def __init__(self):
            self.weights = None
            self.i = -1

        def next(self):                       # close of day i: decide
            self.i += 1
            i = self.i
            self.weights = None
            if i < LOOKBACK or (i - LOOKBACK) % EVERY:
                return
            score = np.full(N, -np.inf)
            ok = np.zeros(N, dtype=bool)
            for j, d in enumerate(self.datas):
                a, b = d.adjclose[0], d.adjclose[-LOOKBACK]
                if d.member[0] > 0 and d.bar[0] > 0 and a == a and b == b:
                    ok[j] = True
                    score[j] = a / b - 1.0
            order = np.argsort(-score, kind="stable")[:TOPK]
            order = order[ok[order]]
            self.weights = np.zeros(N)
            self.weights[order] = 1.0 / len(order) if len(order) else 0.0

        def next_open(self):                  # before the open of day i + 1: size and send
            if self.weights is None:
                return
            day = self.datas[0].datetime.date(0)
            AshareComm.stamp_rate = stamp[pd.Timestamp(day)]
            ds = self.datas
            q = np.array([self.getposition(d).size for d in ds], dtype=float)
            px = np.array([d.open[0] for d in ds])
            bar = np.array([d.bar[0] > 0 for d in ds])
            cash = self.broker.getcash()
            ne = cash + float(np.dot(q, px))
            w = self.weights
            tq = np.where(w > 0, w * ne / px, 0.0)
            sells, buys = [], []
            for j in range(N):
                want = q[j] - tq[j]
                if not (q[j] > 0 and want > EPS * (1 + q[j])):
                    continue
                d = ds[j]
                if not bar[j]:
                    continue
                ld = d.limit_down[0]
                if ld == ld and cents(px[j]) <= cents(ld):
                    continue
                if want + EPS >= q[j]:
                    want = q[j]
                cap = PART * d.volume[0] if d.volume[0] > 0 else 0.0
                want = min(want, cap)
                qty = rnd(want, q[j], j, True)
                if qty <= 0:
                    continue
                v = qty * px[j] * (1 - slip)
                cash += v - max(c_rate * v, minc) - AshareComm.stamp_rate * v - tf * v
                sells.append((d, qty))
            desired = {}
            for j in range(N):
                want = tq[j] - q[j]
                if not (tq[j] > 0 and want > EPS * (1 + tq[j])):
                    continue
                d = ds[j]
                if not bar[j]:
                    continue
                lu = d.limit_up[0]
                if lu == lu and cents(px[j]) >= cents(lu):
                    continue
                cap = PART * d.volume[0] if d.volume[0] > 0 else 0.0
                want = min(want, cap)
                if rnd(want, 0.0, j, False) <= 0:
                    continue
                desired[j] = want
            scale = 1.0
            if desired:
                for _ in range(60):
                    total = 0.0
                    for j, x in desired.items():
                        v = rnd(x * scale, 0.0, j, False) * px[j] * (1 + slip)
                        if v > 0:
                            total += v + max(c_rate * v, minc) + tf * v
                    if total <= cash:
                        break
                    ratio = cash / total if cash > 0 else 0.0
                    scale *= min(ratio, 1 - 1e-12)
                for j, x in desired.items():
                    fill = px[j] * (1 + slip)
                    qty = rnd(x * scale, 0.0, j, False)
                    rem = cash * (1 - 1e-12)
                    aff = min(rem / (fill * (1 + tf + c_rate)), (rem - minc) / (fill * (1 + tf)))
                    if qty > aff:
                        qty = rnd(aff, 0.0, j, False)
                    if qty <= 0:
                        continue
                    v = qty * fill
                    cash -= v + max(c_rate * v, minc) + tf * v
                    buys.append((ds[j], qty))
            for d, qty in sells:
                self.sell(data=d, size=qty)
            for d, qty in buys:
                self.buy(data=d, size=qty)

    cerebro = bt.Cerebro(stdstats=False, cheat_on_open=True)
    idx = pd.DatetimeIndex(market.dates)
    for j, code in enumerate(codes):
        df = pd.DataFrame({"open": open_ff[:, j], "high": np.maximum(open_ff[:, j], close_ff[:, j]),
                           "low": np.minimum(open_ff[:, j], close_ff[:, j]),
                           "close": close_ff[:, j],
                           "volume": np.nan_to_num(market.vol[:, j]),
                           "limit_up": market.limit_up[:, j], "limit_down": market.limit_down[:, j],
                           "bar": market.has_bar[:, j].astype(float),
                           "member": member[:, j].astype(float), "adjclose": adj_close[:, j]},
                          index=idx)
        cerebro.adddata(Feed(dataname=df), name=code)
    cerebro.addstrategy(TopK)
    cerebro.broker.setcash(INIT_CASH)
    cerebro.broker.set_checksubmit(False)
    cerebro.broker.addcommissioninfo(AshareComm())
    cerebro.broker.set_slippage_perc(slip, slip_open=True, slip_limit=True, slip_match=True,
                                     slip_out=True)
    values = []

    class Rec(bt.Analyzer):
        def next(self):
            values.append(self.strategy.broker.getvalue())

    cerebro.addanalyzer(Rec)
    t0 = time.perf_counter()
    cerebro.run(runonce=False, preload=True)
    secs = time.perf_counter() - t0
    return secs, np.array(values)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="2 years (2020-2021) instead of 2014 to the end of valid")
    ap.add_argument("--no-backtrader", action="store_true", help="only time alphamine")
    a = ap.parse_args(argv)
    # never past valid: the test split is sealed (backtest.seal), benchmarks included
    end = default_end(load_config(), False)
    start = "2020-01-01" if a.quick else "2014-01-01"
    t0 = time.perf_counter()
    market, member = load(start, end)
    print(f"data: CSI300 {start}..{end}, {market.shape[0]} days x {market.shape[1]} stocks, "
          f"loaded in {time.perf_counter() - t0:.1f} s")
    run_ours(market, member, False)                       # JIT warm-up (cached on disk)
    ours = min(run_ours(market, member, False)[0] for _ in range(3))
    _, res, targets = run_ours(market, member, False)
    ours_ca, res_ca, _ = run_ours(market, member, True)
    print(f"alphamine (signal + simulate, every rule, corporate actions off): {ours:.3f} s; "
          f"final NAV {res.nav.iloc[-1]:,.2f}; {len(res.trades)} trades, "
          f"{len(res.rejected)} rejected ({res.rejected['reason'].value_counts().to_dict()})")
    print(f"alphamine with corporate actions on: {ours_ca:.3f} s; final NAV "
          f"{res_ca.nav.iloc[-1]:,.2f}")
    if a.no_backtrader:
        return 0
    secs, values = run_backtrader(market, member)
    nav_bt = values[-1]
    rel = abs(nav_bt / res.nav.iloc[-1] - 1.0)
    n = min(len(values), len(res.nav))
    maxdev = float(np.max(np.abs(values[:n] / res.nav.to_numpy()[:n] - 1.0)))
    print(f"backtrader (same strategy, same fills): {secs:.1f} s; final NAV {nav_bt:,.2f}")
    print(f"speed-up: {secs / ours:.0f}x; final NAV relative difference {rel:.2e} "
          f"(max daily {maxdev:.2e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
