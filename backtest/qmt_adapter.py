"""QMT adapter: place one day's ``target_positions`` through xtquant (runs inside QMT's Python).

Research stays outside QMT; this module only reads the targets, asks the account for its
holdings and cash, computes the order plan with :func:`backtest.orders.order_plan` -- the very
code ``mine export`` uses -- and places the plan's ``ok`` orders, **sells first, then buys**.
Flagged orders (limit-up buy, limit-down sell, suspended, T+1, no price, below one lot,
insufficient cash) are reported, never sent.

``xtquant`` is imported lazily inside the functions that need it, so this module imports (and
is tested) without it. The xtquant calls used (names and argument order as in xtquant's
``xttrader.py`` / ``xttype.py``; https://dict.thinktrader.net/nativeApi/xttrader.html):

* ``XtQuantTrader(path, session_id)``, ``.start()``, ``.connect()`` (0 = connected),
  ``.subscribe(account)``;
* ``StockAccount(account_id, account_type="STOCK")``;
* ``.query_stock_positions(account)`` -> list of ``XtPosition`` (``stock_code``, ``volume``,
  ``can_use_volume``, shares);
* ``.query_stock_asset(account)`` -> ``XtAsset`` (``cash`` = available cash, yuan);
* ``.order_stock(account, stock_code, order_type, order_volume, price_type, price,
  strategy_name, order_remark)`` -> order id (-1 = failed);
* ``xtconstant.STOCK_BUY = 23``, ``STOCK_SELL = 24``, ``FIX_PRICE = 11`` (limit order at
  ``price``), ``LATEST_PRICE = 5`` (at the latest price; ``price`` ignored);
* ``.query_stock_trades(account)`` -> list of ``XtTrade`` (the day's fills: ``stock_code``,
  ``order_type``, ``traded_volume``, ``traded_price``, ``traded_amount``, ``traded_time``,
  ``order_id``, ``traded_id``, ...), written by :func:`trades_frame` / ``--trades-out`` for
  ``mine reconcile``;
* quotes (only without ``--quotes``): ``xtdata.get_full_tick(codes)`` (``lastPrice``,
  ``lastClose``) and ``xtdata.get_instrument_detail(code)`` (``UpStopPrice``,
  ``DownStopPrice``).

``ts_code`` (``600000.SH``) is QMT's stock-code format, so codes pass through unchanged.

Usage inside QMT's Python (with alphamine installed)::

    python -m backtest.qmt_adapter --targets targets_20240628.csv --account 123456 \\
        --qmt-path "D:/QMT/userdata_mini" --dry-run

See ``docs/export.md``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from backtest.errors import BacktestError
from backtest.export import QUOTE_COLUMNS, plan_from_quotes, read_quotes, targets_for
from backtest.orders import plan_summary
from backtest.rules import CostModel
from backtest.targets import read_targets
from data.errors import AlphamineError
from data.staging import clean_stale

# xtconstant values (xtquant/xtconstant.py); checked against the installed xtquant on connect.
STOCK_BUY = 23
STOCK_SELL = 24
FIX_PRICE = 11
LATEST_PRICE = 5
PRICE_TYPES = {"fix": FIX_PRICE, "latest": LATEST_PRICE}


class QmtError(BacktestError):
    """xtquant is missing, the connection or subscription failed, or QMT returned no data."""


@dataclass
class AccountState:
    """Holdings and cash as QMT reports them.

    Attributes
    ----------
    positions : DataFrame
        Index ``ts_code``; int columns ``quantity`` (``XtPosition.volume``) and ``sellable``
        (``XtPosition.can_use_volume``), shares; zero holdings dropped.
    cash : float
        ``XtAsset.cash``: available cash, yuan.
    """

    positions: pd.DataFrame
    cash: float


def _xt():
    """Import xtquant's trader pieces (only inside a QMT environment)."""
    try:
        from xtquant import xtconstant
        from xtquant.xttrader import XtQuantTrader
        from xtquant.xttype import StockAccount
    except ImportError as e:
        raise QmtError(f"xtquant is not importable ({e}); run the adapter in QMT's Python or "
                       f"copy xtquant into this environment's site-packages") from None
    for name, v in (("STOCK_BUY", STOCK_BUY), ("STOCK_SELL", STOCK_SELL),
                    ("FIX_PRICE", FIX_PRICE), ("LATEST_PRICE", LATEST_PRICE)):
        if getattr(xtconstant, name, v) != v:
            raise QmtError(f"xtconstant.{name} = {getattr(xtconstant, name)!r}, expected {v}: "
                           f"unsupported xtquant version")
    return XtQuantTrader, StockAccount


def connect(qmt_path: str, account_id: str, session_id: int | None = None,
            account_type: str = "STOCK"):
    """Start an ``XtQuantTrader`` on the mini-QMT ``userdata_mini`` folder and subscribe.

    Parameters
    ----------
    qmt_path : str
        Path of the running mini-QMT client's ``userdata_mini`` folder.
    account_id : str
        Fund account id.
    session_id : int, optional
        Unique per concurrently running script; default from the clock.
    account_type : str
        ``"STOCK"`` (cash account) or ``"CREDIT"``.

    Returns
    -------
    (trader, account)

    Raises
    ------
    QmtError
        xtquant missing, connect() != 0 or subscribe() != 0.
    """
    XtQuantTrader, StockAccount = _xt()
    sid = int(session_id) if session_id is not None else int(time.time() * 1000) % 2_000_000_000
    trader = XtQuantTrader(str(qmt_path), sid)
    trader.start()
    rc = trader.connect()
    if rc != 0:
        raise QmtError(f"XtQuantTrader.connect() returned {rc} for path {qmt_path!r}: is "
                       f"mini-QMT running and logged in?")
    account = StockAccount(str(account_id), account_type)
    rc = trader.subscribe(account)
    if rc != 0:
        raise QmtError(f"subscribe({account_id!r}) returned {rc}")
    return trader, account


def query_account(trader, account) -> AccountState:
    """Holdings (``query_stock_positions``) and available cash (``query_stock_asset``).

    Raises
    ------
    QmtError
        The asset query returned nothing.
    """
    asset = trader.query_stock_asset(account)
    if asset is None:
        raise QmtError("query_stock_asset returned nothing: account not subscribed or not "
                       "logged in")
    rows = [(str(p.stock_code), int(p.volume), int(p.can_use_volume))
            for p in (trader.query_stock_positions(account) or []) if int(p.volume) > 0]
    pos = pd.DataFrame(rows, columns=["ts_code", "quantity", "sellable"])
    pos = pos.groupby("ts_code", sort=True).sum()      # one row per code
    return AccountState(pos.astype(np.int64), float(asset.cash))


#: ``XtTrade`` attributes written by :func:`trades_frame` (the ``query_stock_trades`` export
#: that ``mine reconcile`` reads; ``commission`` only where xtquant reports it).
TRADE_FIELDS = ("account_id", "stock_code", "order_type", "traded_id", "traded_time",
                "traded_price", "traded_volume", "traded_amount", "order_id", "order_sysid",
                "strategy_name", "order_remark", "commission")


def trades_frame(trader, account) -> pd.DataFrame:
    """The account's fills of the day (``query_stock_trades``), one row per ``XtTrade``.

    Returns
    -------
    DataFrame
        Columns :data:`TRADE_FIELDS` that at least one fill carries (``traded_time`` as
        xtquant gives it: Unix seconds), in xtquant's order.
    """
    rows = [{f: getattr(t, f) for f in TRADE_FIELDS if hasattr(t, f)}
            for t in (trader.query_stock_trades(account) or [])]
    cols = [f for f in TRADE_FIELDS if any(f in r for r in rows)] or list(TRADE_FIELDS[:-1])
    return pd.DataFrame(rows, columns=cols)


def xt_quotes(codes) -> pd.DataFrame:
    """Live quotes from xtdata: last price, today's limit prices, tradable flag.

    ``ref_price`` = ``lastPrice`` when > 0 else ``lastClose``; ``has_bar`` is False when the
    tick is missing or has no positive price (treated as suspended); limits from
    ``get_instrument_detail`` (``UpStopPrice`` / ``DownStopPrice``; NaN when absent or 0).

    Returns
    -------
    DataFrame
        Index ``ts_code``, columns :data:`backtest.export.QUOTE_COLUMNS`.
    """
    try:
        from xtquant import xtdata
    except ImportError as e:
        raise QmtError(f"xtquant.xtdata is not importable ({e}); pass --quotes FILE") from None
    codes = [str(c) for c in codes]
    ticks = xtdata.get_full_tick(codes) or {}
    out = []
    for c in codes:
        t = ticks.get(c) or {}
        last, prev = float(t.get("lastPrice") or 0.0), float(t.get("lastClose") or 0.0)
        px = last if last > 0 else prev
        det = xtdata.get_instrument_detail(c) or {}
        up = float(det.get("UpStopPrice") or 0.0) or np.nan
        down = float(det.get("DownStopPrice") or 0.0) or np.nan
        out.append((c, px if px > 0 else np.nan, up, down, bool(t) and px > 0))
    return pd.DataFrame(out, columns=["ts_code"] + QUOTE_COLUMNS).set_index("ts_code")


def order_price(side: str, ref: float, limit_up: float, limit_down: float,
                buffer_bps: float) -> float:
    """Limit price for a ``FIX_PRICE`` order: ``ref x (1 +- buffer)`` kept inside the limits.

    Rounded to the cent (down for buys, up for sells, so the buffer never exceeds the ask).
    """
    b = float(buffer_bps) / 1e4
    if side == "buy":
        p = math.floor(ref * (1.0 + b) * 100.0 + 1e-6) / 100.0
        return min(p, limit_up) if np.isfinite(limit_up) else p
    p = math.ceil(ref * (1.0 - b) * 100.0 - 1e-6) / 100.0
    return max(p, limit_down) if np.isfinite(limit_down) else p


def rebalance(trader, account, targets_day: pd.DataFrame, quotes: pd.DataFrame, date,
              cost_model: CostModel | None = None, *, dry_run: bool = True,
              price_type: str = "fix", buffer_bps: float = 0.0, cash_reserve: float = 0.0,
              min_order_value: float = 0.0, strategy_name: str | None = None,
              wait_sells: float = 0.0, poll: float = 1.0,
              sleep: Callable[[float], None] = time.sleep
              ) -> tuple[pd.DataFrame, AccountState]:
    """Compute the plan for the account's holdings and (unless ``dry_run``) place it.

    Parameters
    ----------
    trader, account
        An ``XtQuantTrader`` (or any object with the same ``query_stock_positions``,
        ``query_stock_asset`` and ``order_stock`` methods) and its ``StockAccount``.
    targets_day : DataFrame
        One day of ``target_positions``.
    quotes : DataFrame
        Index ts_code, :data:`backtest.export.QUOTE_COLUMNS` (from :func:`xt_quotes` or a
        ``quotes_YYYYMMDD.csv`` written by ``mine export``); must cover every target and held
        code.
    date : str or Timestamp
        Trading date of the orders (stamp-tax rate of the fee estimates).
    cost_model : CostModel, optional
    dry_run : bool
        Only compute and return the plan.
    price_type : {"fix", "latest"}
        ``fix``: ``FIX_PRICE`` at :func:`order_price` (ref +- ``buffer_bps``, within limits);
        ``latest``: ``LATEST_PRICE`` (price argument 0).
    buffer_bps : float
        Limit-price buffer for ``fix`` orders, basis points.
    cash_reserve : float
        Fraction of equity left in cash (see :func:`backtest.orders.order_plan`); for ``fix``
        orders at least ``buffer_bps / 1e4``, so buys priced above the reference still fit.
    min_order_value : float
        Smaller orders are skipped (see :func:`backtest.orders.order_plan`).
    strategy_name : str, optional
        Passed to ``order_stock`` (default: the targets' ``strategy_name`` or "alphamine").
    wait_sells : float
        Seconds to wait after the sells, polling ``query_stock_asset`` every ``poll`` seconds,
        until the available cash covers the planned buys (value + estimated fees). Cash from
        a sale is usable only once it fills, so with 0 (no wait) buys funded by unfilled
        sells are refused by QMT (``order_id`` -1 or an order error). Buys are sent after the
        wait whether or not the cash arrived.

    Returns
    -------
    (plan, state)
        The :func:`backtest.orders.order_plan` frame plus ``order_price`` and ``order_id``
        (xtquant's id; -1 = refused by QMT; <NA> = not sent: dry run or flagged), and the
        account state it was computed from.

    Raises
    ------
    QmtError
        A target or holding has no quote; or the account query failed.
    """
    if price_type not in PRICE_TYPES:
        raise BacktestError(f"price_type must be one of {', '.join(PRICE_TYPES)}, "
                            f"got {price_type!r}")
    state = query_account(trader, account)
    need = sorted(set(targets_day["ts_code"].astype(str)) | set(state.positions.index))
    missing = [c for c in need if c not in quotes.index]
    if missing:
        raise QmtError(f"no quote for {len(missing)} code(s), e.g. {', '.join(missing[:5])}")
    d = pd.Timestamp(date)
    ptype = PRICE_TYPES[price_type]
    if ptype == FIX_PRICE:           # buys priced up to ref x (1 + buffer) must still fit cash
        cash_reserve = max(cash_reserve, float(buffer_bps) / 1e4)
    plan = plan_from_quotes(targets_day, state.positions, state.cash, quotes.loc[need], d,
                            cost_model, cash_reserve, min_order_value)
    q = quotes.reindex(plan["ts_code"])
    plan["order_price"] = [
        order_price(s, r, u, dn, buffer_bps) if ptype == FIX_PRICE and r > 0 else 0.0
        for s, r, u, dn in zip(plan["side"], plan["ref_price"], q["limit_up"], q["limit_down"])]
    plan["order_id"] = pd.array([pd.NA] * len(plan), dtype="Int64")
    if dry_run:
        return plan, state
    if strategy_name is None:
        sn = targets_day["strategy_name"] if "strategy_name" in targets_day.columns else None
        strategy_name = str(sn.iloc[0]) if sn is not None and len(sn) else "alphamine"
    remark = f"alphamine {d.strftime('%Y%m%d')}"
    ok = plan["status"] == "ok"
    buys = ok & (plan["side"] == "buy")
    for side in ("sell", "buy"):                        # plan order: sells, then buys
        if side == "buy" and wait_sells > 0 and (ok & (plan["side"] == "sell")).any():
            need_cash = float((plan.loc[buys, "est_value"] + plan.loc[buys, "est_fees"]).sum())
            waited = 0.0
            while waited < wait_sells:
                asset = trader.query_stock_asset(account)
                if asset is not None and float(asset.cash) >= need_cash:
                    break
                sleep(poll)
                waited += poll
        for i in plan.index[ok & (plan["side"] == side)]:
            r = plan.loc[i]
            oid = trader.order_stock(account, r["ts_code"],
                                     STOCK_SELL if side == "sell" else STOCK_BUY,
                                     int(r["quantity"]), ptype, float(r["order_price"]),
                                     strategy_name, remark)
            plan.loc[i, "order_id"] = int(oid) if oid is not None else -1
    return plan, state


def run(targets_path: str, *, account_id: str | None = None, qmt_path: str | None = None,
        date=None, quotes_path: str | None = None, dry_run: bool = True,
        price_type: str = "fix", buffer_bps: float = 0.0, cash_reserve: float = 0.0,
        min_order_value: float = 0.0, wait_sells: float = 0.0,
        cost_model: CostModel | None = None, trader=None, account=None,
        quote_fn: Callable[[list], pd.DataFrame] | None = None):
    """Read targets, connect (unless ``trader``/``account`` are given) and :func:`rebalance`.

    ``date`` defaults to the latest date in the targets file; quotes come from
    ``quotes_path`` (a ``mine export`` quotes file) or else ``quote_fn`` (default
    :func:`xt_quotes`).

    The folders of the two files are tidied first (:func:`data.staging.clean_stale`): an
    export that was killed while replacing its day files is completed, so the targets and
    quotes read belong to one export.

    Returns
    -------
    (plan, state) as :func:`rebalance`.
    """
    for f in {Path(targets_path).parent, *([Path(quotes_path).parent] if quotes_path else [])}:
        clean_stale(f)
    tg = read_targets(targets_path)
    day = targets_for(tg, tg["trade_date"].max() if date is None else date)
    d = day["trade_date"].iloc[0]
    if trader is None or account is None:
        if not account_id or not qmt_path:
            raise BacktestError("pass --account and --qmt-path (or a trader and account)")
        trader, account = connect(qmt_path, account_id)
    if quotes_path is not None:
        quotes = read_quotes(quotes_path)
    else:
        held = query_account(trader, account).positions.index
        codes = sorted(set(day["ts_code"]) | set(held))
        quotes = (quote_fn or xt_quotes)(codes)
    return rebalance(trader, account, day, quotes, d, cost_model, dry_run=dry_run,
                     price_type=price_type, buffer_bps=buffer_bps, cash_reserve=cash_reserve,
                     min_order_value=min_order_value, wait_sells=wait_sells)


def main(argv: list[str] | None = None, trader=None, account=None) -> int:
    """``python -m backtest.qmt_adapter``: print the plan; place it unless ``--dry-run``."""
    ap = argparse.ArgumentParser(prog="python -m backtest.qmt_adapter",
                                 description="Place one day of alphamine target_positions "
                                             "through xtquant (sells first, then buys).")
    ap.add_argument("--targets", required=True, help="target_positions CSV/Parquet")
    ap.add_argument("--account", help="fund account id")
    ap.add_argument("--qmt-path", help="mini-QMT userdata_mini folder")
    ap.add_argument("--date", help="targets date (default: the latest in the file)")
    ap.add_argument("--quotes", help="quotes CSV from `mine export` (default: live xtdata)")
    ap.add_argument("--dry-run", action="store_true", help="only print the plan")
    ap.add_argument("--price-type", choices=sorted(PRICE_TYPES), default="fix")
    ap.add_argument("--buffer-bps", type=float, default=0.0,
                    help="limit-price buffer for --price-type fix (basis points)")
    ap.add_argument("--cash-reserve", type=float, default=0.0,
                    help="fraction of equity kept as cash")
    ap.add_argument("--min-order-value", type=float, default=0.0,
                    help="skip orders below this value in yuan (whole-holding sells excepted)")
    ap.add_argument("--wait-sells", type=float, default=0.0,
                    help="seconds to wait for sell proceeds before sending the buys")
    ap.add_argument("--commission", type=float, default=0.0003)
    ap.add_argument("--min-commission", type=float, default=5.0)
    ap.add_argument("--out", help="write the plan (with order ids) to this CSV")
    ap.add_argument("--trades-out", help="after the run, write the day's fills "
                    "(query_stock_trades) to this CSV, for `mine reconcile --trades`")
    a = ap.parse_args(argv)
    try:
        cost = CostModel(commission=a.commission, min_commission=a.min_commission)
        if a.trades_out and (trader is None or account is None) and a.account and a.qmt_path:
            trader, account = connect(a.qmt_path, a.account)     # one session for both
        plan, state = run(a.targets, account_id=a.account, qmt_path=a.qmt_path, date=a.date,
                          quotes_path=a.quotes, dry_run=a.dry_run, price_type=a.price_type,
                          buffer_bps=a.buffer_bps, cash_reserve=a.cash_reserve,
                          min_order_value=a.min_order_value, wait_sells=a.wait_sells,
                          cost_model=cost, trader=trader, account=account)
        if a.trades_out:               # the fills so far (rerun later for the whole day)
            fills = trades_frame(trader, account)
    except AlphamineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from backtest.export import atomic_write_csv
    if a.out:
        atomic_write_csv(plan, a.out)
    if a.trades_out:
        atomic_write_csv(fills, a.trades_out)
    s = plan_summary(plan, state.cash)
    with pd.option_context("display.width", 160, "display.max_rows", 500):
        print(plan.to_string(index=False))
    sent = int(plan["order_id"].notna().sum())
    refused = int((plan["order_id"] == -1).sum())
    print(f"cash {state.cash:,.2f}, {len(state.positions)} holdings; {s['n_orders']} orders "
          f"({s['n_sell']} sell, {s['n_buy']} buy), {s['n_flagged']} flagged, "
          f"{s['n_skipped']} skipped; "
          + ("dry run: nothing sent" if a.dry_run else f"sent {sent}, refused by QMT {refused}"))
    return 0


__all__ = ["STOCK_BUY", "STOCK_SELL", "FIX_PRICE", "LATEST_PRICE", "QmtError", "AccountState",
           "TRADE_FIELDS", "trades_frame", "connect", "query_account", "xt_quotes", "order_price", "rebalance", "run", "main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
