"""trades / reconciliations (factors.trades): the schema 6 -> 7 upgrade and idempotent imports."""
from __future__ import annotations

import sqlite3

import pytest

import factors.store_schema as fs
from factors.errors import StoreError
from factors.store import FactorStore
from factors.trades import TradeLog


def fill(code="600000.SH", side="buy", volume=100, price=10.0, time="09:30:00", **kw):
    return {"trade_date": "2024-07-01", "ts_code": code, "side": side, "volume": volume,
            "price": price, "amount": volume * price, "time": time, **kw}


def test_v6_store_gains_trades(tmp_path):
    p = tmp_path / "v6.db"
    con = sqlite3.connect(p)
    con.executescript(fs._SCHEMA)
    for v in (2, 3, 4, 5):
        fs.MIGRATIONS[v](con)
    con.execute("PRAGMA user_version = 6")
    con.commit()
    con.close()
    with FactorStore(p) as s:
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == fs.SCHEMA_VERSION >= 7
        cols = {r[1] for r in s._conn.execute("PRAGMA table_info(trades)")}
        assert {"trade_date", "ts_code", "side", "volume", "price", "amount", "fee", "time",
                "order_id", "source", "plan_id", "fill_key"} <= cols
        assert TradeLog(s).add([fill()], "broker", "plan") == (1, 0)


def test_reimport_is_idempotent_and_identical_fills_are_kept(tmp_path):
    rows = [fill(), fill(), fill(price=10.01, order_id="7", fee=5.0)]   # two identical fills
    with FactorStore(tmp_path / "lb.db") as s:
        log = TradeLog(s)
        assert log.add(rows, "broker", "plan-a", file="f.csv") == (3, 0)
        assert log.add(rows, "broker", "plan-a", file="f.csv") == (0, 3)
        assert log.add(rows, "broker", "plan-b") == (0, 3)     # facts, whatever the plan
        got = log.fills(source="broker")
        assert len(got) == 3 and got[2]["fee"] == 5.0 and got[0]["fee"] is None
        # the replay of a plan is replaced, not appended
        assert log.add([fill(price=9.9)], "sim", "plan-a")[0] == 1
        log.add([fill(price=9.8)], "sim", "plan-a")
        sim = log.fills(source="sim", plan_id="plan-a")
        assert [r["price"] for r in sim] == [9.8]
        rid = log.record(plan_id="plan-a", plan_date="2024-06-28", trade_date="2024-07-01",
                         trades_file="f.csv", trades_digest="abc", summary={"x": 1})
        assert log.record(plan_id="plan-a", plan_date="2024-06-28", trade_date="2024-07-01",
                          trades_file="f.csv", trades_digest="abc", summary={"x": 2}) == rid
        assert [r["summary"] for r in log.reconciliations()] == [{"x": 2}]
        with pytest.raises(StoreError, match="side 'hold'"):
            log.add([fill(side="hold")], "broker", "plan-a")
        with pytest.raises(StoreError, match="source 'paper'"):
            log.add([fill()], "paper", "plan-a")
        assert len(log.fills()) == 4                           # failed adds left nothing
