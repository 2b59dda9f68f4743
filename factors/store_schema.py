"""The leaderboard file's schema: tables, version (``PRAGMA user_version``) and upgrades.

Version 1: ``runs`` and ``factors``. Version 2: ``source = 'manual'`` allowed. Version 3: the
trial ledgers (``trials``, ``backtest_trials``; ``factors.trial_key / adj_p / haircut``;
:mod:`factors.store_ledgers`). Version 4: ``test_audit``, the log of accesses to the sealed
test split (:mod:`factors.audit`). Version 5: ``runs.pid``, ``runs.host`` and
``runs.heartbeat_at`` (who runs a ``running`` run and when it last reported, so a killed run
can be marked ``interrupted``). Version 6: ``alerts_log``, the stable layer's alerts and
their notification state (:mod:`factors.alerts`). Version 7: ``trades`` (fills reported by
a broker or replayed by the simulator) and ``reconciliations`` (one record per plan x fills
file), owned by :mod:`factors.trades`, and ``signals``, the attack layer's scored signals per
stock and day (:mod:`factors.signal_log`). A new file is created at version 2 (:data:`_SCHEMA`) and
upgraded by :data:`MIGRATIONS`, so new and upgraded files are alike. A file of an older
version is upgraded in place, inside the opening transaction of
:class:`factors.store.FactorStore`, so a failed upgrade leaves it as it was.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable

from factors.errors import StoreError
from factors.store_ledgers import migrate_v2_to_v3

__all__ = ["SCHEMA_VERSION", "MIGRATIONS", "init_schema"]

#: The unsealing log owned by :mod:`factors.audit` (one row per access to test-split dates).
_AUDIT_TABLE = """CREATE TABLE test_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, purpose TEXT NOT NULL,
    command TEXT NOT NULL, config_digest TEXT NOT NULL, code_version TEXT NOT NULL,
    universe TEXT, horizon INTEGER, subject TEXT NOT NULL, window TEXT NOT NULL,
    metrics TEXT NOT NULL DEFAULT '{}')"""

#: The stable layer's alerts and their notifications, owned by :mod:`factors.alerts`.
_ALERTS_TABLE = """CREATE TABLE alerts_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL, date TEXT NOT NULL,
    ts_code TEXT NOT NULL, rule TEXT NOT NULL, period TEXT NOT NULL,
    trigger_values TEXT NOT NULL DEFAULT '{}', severity TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '', acknowledged INTEGER NOT NULL DEFAULT 0,
    acked_at TEXT, notify_pending TEXT NOT NULL DEFAULT '[]',
    notify_sent TEXT NOT NULL DEFAULT '[]', notify_attempts INTEGER NOT NULL DEFAULT 0,
    notify_error TEXT, notified_at TEXT, UNIQUE (ts_code, rule, period))"""

#: Fills (broker-reported or simulated) and reconciliation records, owned by
#: :mod:`factors.trades`. ``fill_key`` makes re-importing the same fills a no-op.
_TRADES_TABLES = ("""CREATE TABLE trades (
    id INTEGER PRIMARY KEY AUTOINCREMENT, fill_key TEXT NOT NULL UNIQUE,
    trade_date TEXT NOT NULL, ts_code TEXT NOT NULL,
    side TEXT NOT NULL CHECK (side IN ('buy', 'sell')), volume INTEGER NOT NULL,
    price REAL NOT NULL, amount REAL NOT NULL, fee REAL, time TEXT NOT NULL DEFAULT '',
    order_id TEXT NOT NULL DEFAULT '', trade_id TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL CHECK (source IN ('broker', 'sim')), plan_id TEXT NOT NULL,
    file TEXT NOT NULL DEFAULT '', imported_at TEXT NOT NULL)""",
                  "CREATE INDEX trades_date_code ON trades(trade_date, ts_code)",
                  """CREATE TABLE reconciliations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL, plan_id TEXT NOT NULL,
    plan_date TEXT NOT NULL, trade_date TEXT NOT NULL, trades_file TEXT NOT NULL,
    trades_digest TEXT NOT NULL, summary TEXT NOT NULL DEFAULT '{}',
    report TEXT NOT NULL DEFAULT '', UNIQUE (plan_id, trades_digest))""")

#: The attack layer's signals, owned by :mod:`factors.signal_log`.
_SIGNALS_TABLE = """CREATE TABLE signals (
    trade_date TEXT NOT NULL, ts_code TEXT NOT NULL, universe TEXT NOT NULL,
    composite REAL, factor_score REAL, valuation_score REAL, technical_score REAL,
    industry_score REAL, flag TEXT NOT NULL CHECK (flag IN ('buy', 'sell', 'hold')),
    held INTEGER NOT NULL DEFAULT 0, entry REAL, stop REAL, take_profit REAL, atr REAL,
    reason TEXT NOT NULL DEFAULT '', run_id TEXT NOT NULL, created_at TEXT NOT NULL,
    PRIMARY KEY (trade_date, ts_code))"""

_SCHEMA = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, source TEXT NOT NULL, status TEXT NOT NULL, seed INTEGER,
    universe TEXT, data_root TEXT, config TEXT NOT NULL, summary TEXT,
    n_tried INTEGER NOT NULL DEFAULT 0, n_evaluated INTEGER NOT NULL DEFAULT 0,
    n_accepted INTEGER NOT NULL DEFAULT 0, rejections TEXT NOT NULL DEFAULT '{}',
    started_at TEXT NOT NULL, finished_at TEXT);
CREATE TABLE factors (
    id INTEGER PRIMARY KEY AUTOINCREMENT, formula TEXT NOT NULL, name TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('library', 'gp', 'llm', 'model', 'manual')),
    universe TEXT NOT NULL, horizon INTEGER NOT NULL CHECK (horizon > 0),
    metrics TEXT NOT NULL, provenance TEXT NOT NULL,
    n_tried INTEGER NOT NULL CHECK (n_tried >= 0), description TEXT NOT NULL DEFAULT '',
    run_id TEXT REFERENCES runs(run_id) ON DELETE SET NULL, created_at TEXT NOT NULL,
    test_unsealed_at TEXT, UNIQUE (formula, universe, horizon));
CREATE INDEX factors_universe_horizon ON factors(universe, horizon);
"""


#: Current schema version (``PRAGMA user_version``).
SCHEMA_VERSION = 7


def _v1_to_v2(conn: sqlite3.Connection) -> None:
    """Version 2 allows ``source = 'manual'`` (``mine eval --add``): rebuild ``factors``."""
    table = _SCHEMA[_SCHEMA.index("CREATE TABLE factors"):_SCHEMA.index(";\nCREATE INDEX")]
    conn.execute(table.replace("CREATE TABLE factors", "CREATE TABLE factors_v2"))
    conn.execute("INSERT INTO factors_v2 SELECT * FROM factors")
    conn.execute("DROP TABLE factors")
    conn.execute("ALTER TABLE factors_v2 RENAME TO factors")
    conn.execute("CREATE INDEX factors_universe_horizon ON factors(universe, horizon)")


def _v3_to_v4(conn: sqlite3.Connection) -> None:
    """Version 4 adds ``test_audit``, the log of test-split unsealings (:mod:`factors.audit`)."""
    conn.execute(_AUDIT_TABLE)


def _v4_to_v5(conn: sqlite3.Connection) -> None:
    """Version 5 records who runs a run: ``runs.pid``, ``runs.host``, ``runs.heartbeat_at``."""
    have = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    for col in ("pid INTEGER", "host TEXT", "heartbeat_at TEXT"):
        if col.split()[0] not in have:
            conn.execute(f"ALTER TABLE runs ADD COLUMN {col}")


def _v5_to_v6(conn: sqlite3.Connection) -> None:
    """Version 6 adds ``alerts_log``, the stable layer's alerts (:mod:`factors.alerts`)."""
    conn.execute(_ALERTS_TABLE)
    conn.execute("CREATE INDEX alerts_log_date ON alerts_log(date)")


def _v6_to_v7(conn: sqlite3.Connection) -> None:
    """Version 7 adds ``trades`` and ``reconciliations`` (:mod:`factors.trades`) and
    ``signals``, the attack layer's scored signals (:mod:`factors.signal_log`)."""
    for stmt in _TRADES_TABLES:
        conn.execute(stmt)
    conn.execute(_SIGNALS_TABLE)
    conn.execute("CREATE INDEX signals_flag ON signals(trade_date, flag)")


#: Upgrade hook: ``MIGRATIONS[v](conn)`` turns a version-``v`` database into version ``v + 1``.
#: It runs inside the opening transaction; add an entry and bump :data:`SCHEMA_VERSION`.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _v1_to_v2, 2: migrate_v2_to_v3, 3: _v3_to_v4, 4: _v4_to_v5, 5: _v5_to_v6, 6: _v6_to_v7}


def init_schema(conn: sqlite3.Connection, path: str) -> None:
    """Create the tables in an empty file, or upgrade an older one through :data:`MIGRATIONS`
    (inside the caller's write transaction), then stamp :data:`SCHEMA_VERSION`.

    Raises
    ------
    StoreError
        A file with foreign tables, a newer schema version, or a version with no migration.
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        tables = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables - {"sqlite_sequence"}:
            raise StoreError(f"{path!r} is an SQLite file but not an alphamine "
                             f"leaderboard (tables: {', '.join(sorted(tables))})")
        for stmt in _SCHEMA.split(";"):
            if stmt.strip():
                conn.execute(stmt)
        version = 2                           # _SCHEMA is version 2; MIGRATIONS do the rest
    if version > SCHEMA_VERSION:
        raise StoreError(f"leaderboard {path!r} has schema version {version}, "
                         f"newer than this alphamine ({SCHEMA_VERSION}); upgrade alphamine")
    else:
        for v in range(version, SCHEMA_VERSION):
            if v not in MIGRATIONS:
                raise StoreError(f"no migration from leaderboard schema version {v} "
                                 f"to {v + 1}")
            MIGRATIONS[v](conn)
    conn.execute(f"PRAGMA user_version = {int(SCHEMA_VERSION)}")
