"""alerts_log (factors.alerts): the schema 5 -> 6 upgrade, one row per (ts_code, rule,
period), acknowledgement, the notification queue."""
from __future__ import annotations

import sqlite3

import pytest

import factors.store_schema as fs
from factors.alerts import AlertLog
from factors.errors import StoreError
from factors.store import FactorStore


def alert(code="600519.SH", rule="low_yield", period="2024-03-31", **kw):
    return {"date": "2024-03-29", "ts_code": code, "rule": rule, "period": period,
            "values": {"dv_ratio": 0.5, "x": float("nan")}, "severity": "low",
            "message": "dividend yield 0.50% < 1% for 2 quarters", **kw}


def test_v5_store_gains_alerts_log(tmp_path):
    p = tmp_path / "v5.db"
    con = sqlite3.connect(p)
    con.executescript(fs._SCHEMA)                        # version 2 ...
    for v in (2, 3, 4):                                  # ... upgraded to 5: no alerts_log
        fs.MIGRATIONS[v](con)
    con.execute("INSERT INTO runs (run_id, source, status, config, started_at) VALUES "
                "('old', 'gp', 'finished', '{}', '2024-01-01T00:00:00+00:00')")
    con.execute("PRAGMA user_version = 5")
    con.commit()
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "alerts_log" not in tables
    con.close()
    with FactorStore(p) as s:
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == fs.SCHEMA_VERSION >= 6
        cols = {r[1] for r in s._conn.execute("PRAGMA table_info(alerts_log)")}
        assert {"date", "ts_code", "rule", "trigger_values", "severity", "acknowledged",
                "notify_pending", "notify_sent", "notify_attempts", "notify_error"} <= cols
        assert [r.run_id for r in s.runs()] == ["old"]
        (rec,), dup = AlertLog(s).add([alert()])
        assert dup == 0 and rec.values == {"dv_ratio": 0.5, "x": None}


def test_new_and_upgraded_files_have_the_same_alerts_table(tmp_path):
    with FactorStore(tmp_path / "new.db") as s:
        new = s._conn.execute("SELECT sql FROM sqlite_master WHERE name='alerts_log'").fetchone()
    assert new is not None and "UNIQUE (ts_code, rule, period)" in new[0]


def test_add_is_idempotent_per_ts_code_rule_period(tmp_path):
    with FactorStore(tmp_path / "lb.db") as s:
        log = AlertLog(s)
        added, dup = log.add([alert(), alert(rule="pe_jump", severity="medium")], ["webhook"])
        assert [a.rule for a in added] == ["low_yield", "pe_jump"] and dup == 0
        again, dup = log.add([alert(), alert(period="2024-06-30")], ["webhook"])
        assert [a.period for a in again] == ["2024-06-30"] and dup == 1
        assert len(log.entries()) == 3
        assert [r.id for r in log.pending("webhook")] == [a.id for a in added + again]
        assert log.pending("email") == []
        with pytest.raises(StoreError, match="severity"):
            log.add([alert(severity="urgent")])


def test_ack(tmp_path):
    with FactorStore(tmp_path / "lb.db") as s:
        log = AlertLog(s)
        log.add([alert(), alert(code="000001.SZ")])
        r = log.ack(1)
        assert r.acknowledged and r.acked_at
        assert log.ack(1).acked_at == r.acked_at                 # idempotent
        assert [x.id for x in log.entries(acknowledged=False)] == [2]
        assert [x.id for x in log.entries(acknowledged=True)] == [1]
        with pytest.raises(StoreError, match="no alert with id 9"):
            log.ack(9)
