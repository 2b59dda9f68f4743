"""The QMT adapter against a fake xtquant: same orders as order_plan, sells first, lazy import."""
from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest import qmt_adapter as qa
from backtest.export import export_day, reference_quotes
from backtest.orders import order_plan
from backtest.rules import CostModel

REPO = Path(__file__).resolve().parents[2]
D = "2024-06-28"


class Pos:                                   # the XtPosition fields the adapter reads
    def __init__(self, stock_code, volume, can_use_volume):
        self.stock_code, self.volume, self.can_use_volume = stock_code, volume, can_use_volume


class Asset:                                 # the XtAsset field the adapter reads
    def __init__(self, cash):
        self.cash = cash


class FakeTrader:
    """Implements exactly the XtQuantTrader methods the adapter calls, and records orders."""

    def __init__(self, positions, cash, connect_rc=0, refuse=()):
        self.positions, self.cash = positions, cash
        self.connect_rc, self.refuse = connect_rc, set(refuse)
        self.orders: list[tuple] = []
        self.calls: list[str] = []

    # lifecycle (XtQuantTrader(path, session); start(); connect() -> 0; subscribe(acc) -> 0)
    def start(self):
        self.calls.append("start")

    def connect(self):
        self.calls.append("connect")
        return self.connect_rc

    def subscribe(self, account):
        self.calls.append("subscribe")
        return 0

    # queries
    def query_stock_positions(self, account):
        return [Pos(c, q, s) for c, q, s in self.positions]

    def query_stock_asset(self, account):
        return Asset(self.cash)

    # orders
    def order_stock(self, account, stock_code, order_type, order_volume, price_type, price,
                    strategy_name="", order_remark=""):
        self.orders.append((account.account_id, stock_code, order_type, order_volume,
                            price_type, price, strategy_name, order_remark))
        return -1 if stock_code in self.refuse else 1000 + len(self.orders)


class Account:
    def __init__(self, account_id, account_type="STOCK"):
        self.account_id, self.account_type = account_id, account_type


def quotes_frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["ts_code", "ref_price", "limit_up", "limit_down",
                                       "has_bar"]).set_index("ts_code")


@pytest.fixture
def book():
    targets = pd.DataFrame({"trade_date": pd.Timestamp(D), "ts_code": [
        "000001.SZ", "600000.SH", "688001.SH", "300750.SZ", "601398.SH"],
        "target_weight": [0.25, 0.25, 0.2, 0.1, 0.1], "strategy_name": "ic_top10"})
    quotes = quotes_frame([
        ("000001.SZ", 10.05, 11.06, 9.05, True),
        ("600000.SH", 8.11, 8.92, 7.30, True),
        ("688001.SH", 57.3, 68.76, 45.84, True),
        ("300750.SZ", 180.0, 180.0, 120.0, True),      # at limit-up: flagged
        ("601398.SH", 6.0, 6.6, 5.4, False),           # suspended: flagged
        ("000002.SZ", 7.77, 8.55, 6.99, True),         # held, not a target: sold whole
        ("600519.SH", 1450.0, 1595.0, 1305.0, True),   # held above target... not a target
    ])
    positions = [("000002.SZ", 1234, 1234), ("600519.SH", 100, 100), ("000001.SZ", 500, 500)]
    return targets, quotes, positions


def test_module_imports_without_xtquant():
    # xtquant blocked (an import of it would raise): the adapter module still imports
    code = ("import sys; sys.modules['xtquant'] = None; import backtest.qmt_adapter as qa; "
            "assert sys.modules['xtquant'] is None; print(qa.STOCK_BUY, qa.STOCK_SELL)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["23", "24"]


def test_empty_account_buys_only(book):
    targets, quotes, _ = book
    trader = FakeTrader([], 100_000.0)
    plan, state = qa.rebalance(trader, Account("1"), targets, quotes, D, dry_run=False)
    assert state.positions.empty and (plan["side"] == "buy").all()
    assert [o[1] for o in trader.orders] == plan.loc[plan["status"] == "ok", "ts_code"].tolist()


def test_adapter_places_exactly_the_order_plan_sells_first(book):
    targets, quotes, positions = book
    trader, acct = FakeTrader(positions, 300_000.0), Account("8881")
    cm = CostModel(slippage_bps=5.0)
    plan, state = qa.rebalance(trader, acct, targets, quotes, D, cm, dry_run=False,
                               price_type="fix")
    # the same plan order_plan computes from the same account state and quotes
    pos = pd.DataFrame(positions, columns=["ts_code", "quantity", "sellable"])
    expect = order_plan(targets, pos, 300_000.0, quotes["ref_price"],
                        (quotes["limit_up"], quotes["limit_down"]), D, cm,
                        has_bar=quotes["has_bar"])
    pd.testing.assert_frame_equal(plan[expect.columns], expect)
    ok = expect[expect["status"] == "ok"]
    assert [o[1:4] for o in trader.orders] == [
        (r.ts_code, 24 if r.side == "sell" else 23, r.quantity) for r in ok.itertuples()]
    assert [o[2] for o in trader.orders] == sorted(o[2] for o in trader.orders)[::-1]  # 24s first
    assert all(o[0] == "8881" and o[4] == qa.FIX_PRICE and o[6] == "ic_top10"
               and o[7] == "alphamine 20240628" for o in trader.orders)
    # FIX_PRICE at the reference price (buffer 0)
    assert [o[5] for o in trader.orders] == ok["ref_price"].tolist()
    flagged = expect[expect["status"] == "flagged"].set_index("ts_code")["reason"].to_dict()
    assert flagged == {"300750.SZ": "limit_up_buy", "601398.SH": "suspended"}
    assert not {o[1] for o in trader.orders} & set(flagged)
    sold = {o[1]: o[3] for o in trader.orders if o[2] == 24}
    assert sold == {"000002.SZ": 1234, "600519.SH": 100}            # odd lot sold whole
    assert plan.loc[plan["status"] == "ok", "order_id"].tolist() == list(
        range(1001, 1001 + len(ok)))
    assert plan.loc[plan["status"] == "flagged", "order_id"].isna().all()
    assert state.cash == 300_000.0 and state.positions.loc["000002.SZ", "quantity"] == 1234


def test_dry_run_places_nothing_and_refusals_are_recorded(book):
    targets, quotes, positions = book
    trader = FakeTrader(positions, 300_000.0, refuse={"600000.SH"})
    plan, _ = qa.rebalance(trader, Account("1"), targets, quotes, D, dry_run=True)
    assert trader.orders == [] and plan["order_id"].isna().all()
    plan, _ = qa.rebalance(trader, Account("1"), targets, quotes, D, dry_run=False,
                           price_type="latest")
    assert plan.set_index("ts_code").loc["600000.SH", "order_id"] == -1
    assert all(o[4] == qa.LATEST_PRICE and o[5] == 0.0 for o in trader.orders)


def test_skipped_orders_are_not_sent(book):
    targets, quotes, positions = book
    trader = FakeTrader(positions, 300_000.0)
    plan, _ = qa.rebalance(trader, Account("1"), targets, quotes, D, dry_run=False,
                           min_order_value=100_000.0)
    skipped = set(plan.loc[plan["status"] == "skipped", "ts_code"])
    assert skipped and not skipped & {o[1] for o in trader.orders}
    assert {o[1] for o in trader.orders} == set(plan.loc[plan["status"] == "ok", "ts_code"])


def test_buys_wait_for_sell_proceeds(book):
    targets, quotes, positions = book
    trader = FakeTrader(positions, 10_000.0)          # buys need the sale proceeds
    log = []

    def order_stock(account, code, otype, vol, ptype, price, sname="", remark=""):
        log.append(("order", code, otype, trader.cash))
        if otype == qa.STOCK_SELL:                    # proceeds arrive after 2 polls
            trader.pending = getattr(trader, "pending", 0.0) + vol * quotes.loc[code, "ref_price"]
        return 1

    def sleep(s):
        log.append(("sleep", s))
        if sum(x[0] == "sleep" for x in log) == 2:
            trader.cash += trader.pending
    trader.order_stock = order_stock
    plan, _ = qa.rebalance(trader, Account("1"), targets, quotes, D, dry_run=False,
                           wait_sells=10.0, poll=0.5, sleep=sleep)
    kinds = [x[0] for x in log]
    n_sell = int(((plan["side"] == "sell") & (plan["status"] == "ok")).sum())
    assert kinds == ["order"] * n_sell + ["sleep", "sleep"] + ["order"] * (len(kinds) - n_sell - 2)
    assert all(x[2] == qa.STOCK_BUY and x[3] > 10_000.0 for x in log[n_sell + 2:])
    # the proceeds never arrive: waiting stops at the timeout (1 s / 0.5 s polls)
    log.clear()
    trader.cash = 0.0
    trader.pending = 0.0
    qa.rebalance(trader, Account("1"), targets, quotes, D, dry_run=False, wait_sells=1.0,
                 poll=0.5, sleep=lambda s: log.append(("sleep", s)))
    assert [x[0] for x in log].count("sleep") == 2


def test_fix_price_buffer_stays_inside_limits_and_reserves_cash(book):
    targets, quotes, positions = book
    trader = FakeTrader(positions, 300_000.0)
    plan, state = qa.rebalance(trader, Account("1"), targets, quotes, D, dry_run=False,
                               buffer_bps=50.0)
    for o in trader.orders:
        q = quotes.loc[o[1]]
        assert q.limit_down <= o[5] <= q.limit_up
        if o[2] == qa.STOCK_BUY:
            assert o[5] == pytest.approx(np.floor(q.ref_price * 1.005 * 100 + 1e-6) / 100)
    # buys at the buffered limit price still fit the cash (reserve >= buffer)
    buys = sum(o[3] * o[5] for o in trader.orders if o[2] == qa.STOCK_BUY)
    sells = plan.loc[(plan["side"] == "sell") & (plan["status"] == "ok"), "est_value"].sum()
    assert buys + plan.loc[plan["status"] == "ok", "est_fees"].sum() <= state.cash + sells
    assert qa.order_price("buy", 10.0, 10.02, 9.0, 50) == 10.02
    assert qa.order_price("sell", 10.0, 11.0, 9.98, 50) == 9.98
    assert qa.order_price("sell", 10.01, np.nan, np.nan, 10) == 10.0     # 10.00 (ceil)


def test_missing_quote_is_an_error(book):
    targets, quotes, positions = book
    with pytest.raises(qa.QmtError, match="000002.SZ"):
        qa.rebalance(FakeTrader(positions, 1.0), Account("1"), targets,
                     quotes.drop("000002.SZ"), D)


def _fake_xtquant(monkeypatch, trader, ticks=None, details=None):
    """Install fake xtquant modules (xttrader, xttype, xtconstant, xtdata)."""
    pkg = types.ModuleType("xtquant")
    xttrader = types.ModuleType("xtquant.xttrader")
    xttype = types.ModuleType("xtquant.xttype")
    xtconstant = types.ModuleType("xtquant.xtconstant")
    xtdata = types.ModuleType("xtquant.xtdata")
    made = {}

    def XtQuantTrader(path, session):
        made.update(path=path, session=session)
        return trader
    xttrader.XtQuantTrader = XtQuantTrader
    xttype.StockAccount = Account
    xtconstant.STOCK_BUY, xtconstant.STOCK_SELL = 23, 24
    xtconstant.FIX_PRICE, xtconstant.LATEST_PRICE = 11, 5
    xtdata.get_full_tick = lambda codes: {c: ticks[c] for c in codes if c in (ticks or {})}
    xtdata.get_instrument_detail = lambda c: (details or {}).get(c)
    pkg.xttrader, pkg.xttype, pkg.xtconstant, pkg.xtdata = xttrader, xttype, xtconstant, xtdata
    for name, m in (("xtquant", pkg), ("xtquant.xttrader", xttrader),
                    ("xtquant.xttype", xttype), ("xtquant.xtconstant", xtconstant),
                    ("xtquant.xtdata", xtdata)):
        monkeypatch.setitem(sys.modules, name, m)
    return made


def test_cli_main_with_fake_xtquant_and_export_quotes(book, tmp_path, monkeypatch, capsys):
    targets, quotes, positions = book
    tfile, qfile = tmp_path / "targets.csv", tmp_path / "quotes.csv"
    targets.assign(trade_date=D).to_csv(tfile, index=False)
    quotes.reset_index().to_csv(qfile, index=False)
    trader = FakeTrader(positions, 300_000.0)
    made = _fake_xtquant(monkeypatch, trader)
    rc = qa.main(["--targets", str(tfile), "--account", "8881", "--qmt-path", "C:/qmt/ud",
                  "--quotes", str(qfile), "--out", str(tmp_path / "placed.csv")])
    assert rc == 0, capsys.readouterr().err
    assert trader.calls == ["start", "connect", "subscribe"] and made["path"] == "C:/qmt/ud"
    expect = order_plan(targets, pd.DataFrame(positions, columns=["ts_code", "quantity",
                                                                  "sellable"]),
                        300_000.0, quotes["ref_price"], (quotes["limit_up"],
                                                         quotes["limit_down"]), D,
                        CostModel(), has_bar=quotes["has_bar"])
    ok = expect[expect["status"] == "ok"]
    assert [(o[1], o[3]) for o in trader.orders] == list(zip(ok["ts_code"], ok["quantity"]))
    assert "sent %d, refused by QMT 0" % len(ok) in capsys.readouterr().out
    placed = pd.read_csv(tmp_path / "placed.csv")
    assert placed["order_id"].notna().sum() == len(ok)


def test_connect_failure_and_missing_xtquant(monkeypatch, tmp_path, book, capsys):
    targets, quotes, positions = book
    tfile = tmp_path / "t.csv"
    targets.to_csv(tfile, index=False)
    _fake_xtquant(monkeypatch, FakeTrader(positions, 1.0, connect_rc=-1))
    assert qa.main(["--targets", str(tfile), "--account", "1", "--qmt-path", "x"]) == 2
    assert "connect() returned -1" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "xtquant", None)         # import fails
    for k in ("xtquant.xttrader", "xtquant.xttype", "xtquant.xtconstant"):
        monkeypatch.delitem(sys.modules, k, raising=False)
    with pytest.raises(qa.QmtError, match="xtquant is not importable"):
        qa.connect("x", "1")


def test_live_quotes_from_fake_xtdata(monkeypatch):
    ticks = {"600000.SH": {"lastPrice": 8.2, "lastClose": 8.11},
             "000001.SZ": {"lastPrice": 0.0, "lastClose": 10.05}}        # pre-open
    details = {"600000.SH": {"UpStopPrice": 8.92, "DownStopPrice": 7.30},
               "000001.SZ": {"UpStopPrice": 11.06, "DownStopPrice": 9.05}}
    _fake_xtquant(monkeypatch, None, ticks, details)
    q = qa.xt_quotes(["600000.SH", "000001.SZ", "601398.SH"])
    assert q.loc["600000.SH"].tolist() == [8.2, 8.92, 7.30, True]
    assert q.loc["000001.SZ", "ref_price"] == 10.05
    assert not q.loc["601398.SH", "has_bar"] and np.isnan(q.loc["601398.SH", "ref_price"])


def test_export_files_drive_the_adapter_to_the_same_orders(tmp_path):
    """`mine export`'s quotes file + the account's holdings -> the adapter sends the export's
    orders file, row for row (synthetic warehouse)."""
    from ashare_synth import build_warehouse

    from data.manager import DataManager
    dm = DataManager(build_warehouse(tmp_path / "wh").root)
    d = "2020-08-26"
    targets = pd.DataFrame({"trade_date": pd.Timestamp(d), "ts_code": [
        "000002.SZ", "600000.SH", "300001.SZ"], "target_weight": [0.3, 0.3, 0.3]})
    held = [("688001.SH", 333, 333), ("600000.SH", 2000, 2000)]
    pos = pd.DataFrame(held, columns=["ts_code", "quantity", "sellable"])
    codes = sorted(set(targets["ts_code"]) | set(pos["ts_code"]))
    res = export_day(targets, d, pos, 50_000.0,
                     reference_quotes(dm, d, codes), tmp_path / "out", CostModel())
    tfile = res["files"]["targets"]
    trader = FakeTrader(held, 50_000.0)
    plan, _ = qa.run(str(tfile), quotes_path=str(res["files"]["quotes"]), dry_run=False,
                     cost_model=CostModel(), trader=trader, account=Account("1"))
    orders = pd.read_csv(res["files"]["orders"], dtype={"ts_code": str}, keep_default_na=False)
    ok = orders[orders["status"] == "ok"]
    assert len(ok) > 0 and (orders["status"] == "flagged").any()
    assert [(o[1], o[2], o[3]) for o in trader.orders] == [
        (r.ts_code, 24 if r.side == "sell" else 23, r.quantity) for r in ok.itertuples()]


class Trade:                                 # the XtTrade fields written by trades_frame
    def __init__(self, code, order_type, volume, price, t, oid, tid):
        self.account_id, self.stock_code, self.order_type = "8881", code, order_type
        self.traded_volume, self.traded_price, self.traded_amount = volume, price, volume * price
        self.traded_time, self.order_id, self.traded_id = t, oid, tid
        self.order_sysid, self.strategy_name, self.order_remark = "s", "alphamine", "r"


class FillingTrader(FakeTrader):
    """A fake trader whose every order fills at once at its limit price (query_stock_trades)."""

    def query_stock_trades(self, account):
        t0 = 1719797405                                       # 2024-07-01 09:30:05 Shanghai
        return [Trade(o[1], o[2], o[3], o[5], t0 + i, 1001 + i, f"t{i}")
                for i, o in enumerate(self.orders)]


def test_trades_out_is_read_by_reconcile(book, tmp_path, monkeypatch, capsys):
    from backtest.reconcile import read_fills
    targets, quotes, positions = book
    tfile, qfile = tmp_path / "targets.csv", tmp_path / "quotes.csv"
    targets.assign(trade_date=D).to_csv(tfile, index=False)
    quotes.reset_index().to_csv(qfile, index=False)
    trader = FillingTrader(positions, 300_000.0)
    _fake_xtquant(monkeypatch, trader)
    out = tmp_path / "fills.csv"
    rc = qa.main(["--targets", str(tfile), "--account", "8881", "--qmt-path", "C:/qmt/ud",
                  "--quotes", str(qfile), "--buffer-bps", "20", "--trades-out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert trader.calls.count("connect") == 1                  # one session for both
    fills, fmt = read_fills(out)
    assert fmt == "qmt" and len(fills) == len(trader.orders) > 0
    assert list(fills["ts_code"]) == [o[1] for o in trader.orders]
    assert list(fills["side"]) == ["sell" if o[2] == qa.STOCK_SELL else "buy"
                                   for o in trader.orders]
    assert list(fills["volume"]) == [o[3] for o in trader.orders]
    assert fills["price"].tolist() == pytest.approx([o[5] for o in trader.orders])
    assert set(fills["trade_date"]) == {"2024-07-01"}
    assert fills["time"].iloc[0] == "2024-07-01 09:30:05"
