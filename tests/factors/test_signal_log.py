"""The ``signals`` table (schema version 7): created new and by the v6 -> v7 migration; a
day's rows are replaced whole; bad rows are refused."""
from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

from factors.errors import StoreError
from factors.signal_log import COLUMNS, SignalLog
from factors.store import FactorStore


def _rows(day: str, flags) -> pd.DataFrame:
    n = len(flags)
    df = pd.DataFrame({c: np.nan for c in COLUMNS}, index=range(n))
    df["trade_date"] = day
    df["ts_code"] = [f"60000{i}.SH" for i in range(n)]
    df["universe"] = "csi300"
    df["flag"] = flags
    df["held"] = 0
    df["reason"] = ""
    df["composite"] = np.arange(n, dtype=float) * 10
    return df


def test_write_replaces_the_day_and_reads_back(tmp_path):
    with FactorStore(tmp_path / "lb.db") as s:
        log = SignalLog(s)
        assert log.write(_rows("2024-01-02", ["buy", "hold", "sell"]), "r1") == 3
        assert log.write(_rows("2024-01-03", ["hold"]), "r1") == 1
        assert log.write(_rows("2024-01-02", ["hold", "buy"]), "r2") == 2
        got = log.entries(date="2024-01-02")
        assert list(got.flag) == ["buy", "hold"] and set(got.run_id) == {"r2"}
        assert got.factor_score.isna().all()                  # NaN stored as NULL
        assert len(log.entries()) == 3 and log.last_date() == "2024-01-03"
        assert len(log.entries(flag="buy")) == 1
        with pytest.raises(StoreError, match="signal flag"):
            log.write(_rows("2024-01-04", ["short"]), "r3")
        with pytest.raises(StoreError, match="lack column"):
            log.write(_rows("2024-01-04", ["buy"]).drop(columns="stop"), "r3")
        assert log.last_date() == "2024-01-03"


def test_v6_file_is_upgraded(tmp_path):
    p = tmp_path / "lb.db"
    FactorStore(p).close()
    con = sqlite3.connect(p)
    for table in ("signals", "trades", "reconciliations"):      # the v7 tables
        con.execute(f"DROP TABLE {table}")
    con.execute("PRAGMA user_version = 6")
    con.commit()
    con.close()
    with FactorStore(p) as s:
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == 7
        assert SignalLog(s).write(_rows("2024-01-02", ["buy"]), "r") == 1
