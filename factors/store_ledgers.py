"""What was tried: the store's ledgers of runs, trials and backtests.

:class:`Ledgers` holds the methods of :class:`factors.store.FactorStore` that record runs
(``start_run`` / ``finish_run`` / ``runs``) and count and charge trials; the module-level
functions are the SQL under them. Tables:

``runs`` - one row per producer run with its gate-decision counters (schema version 1).

Added by schema version 3 (:func:`migrate_v2_to_v3`):

``trials`` - one row per distinct (trial key, universe, horizon) ever evaluated on the valid
    split, by any run of any producer (GP, LLM, models, the library, ``mine eval``): the formula
    as first seen, its source and run, first / last time seen, how often it was evaluated, and
    the oriented valid t-statistic and one-sided p-value of its latest evaluation (the p-values
    the multiple-testing adjustment runs over; :mod:`factors.trials`).
``backtest_trials`` - one row per distinct strategy backtested (strategy name + digest of its
    target positions and window, :func:`backtest.deflated.targets_digest`): daily Sharpe ratio,
    number of days, universe when known, run folder, first / last time run. The deflated Sharpe
    ratio of a backtest counts and spreads its trials from here.

The module-level functions run inside the caller's transaction (``conn`` from
``FactorStore._write``), so a trial and the gate decision that counted it commit together.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from data.procs import HOST
from factors.errors import StoreError
from factors.store_records import (
    RUN_STATUSES,
    SOURCES,
    FactorRecord,
    GateDecision,
    RunRecord,
    _clean_metrics,
    _dumps,
    _now,
)
from factors.store_runs import HEARTBEAT_EVERY_S, REVIVE, sweep
from factors.trials import (
    HAIRCUTS,
    TrialCharge,
    adjust_pvalues,
    charge_of,
    trial_key,
    trial_pvalue,
)

__all__ = ["V3_SQL", "Ledgers", "migrate_v2_to_v3", "insert_trial", "charge", "charges_for",
           "insert_backtest", "backtest_sharpes"]

#: Statements of the schema-3 upgrade (additive: new columns and tables only).
V3_SQL: tuple[str, ...] = (
    "ALTER TABLE factors ADD COLUMN trial_key TEXT",
    "ALTER TABLE factors ADD COLUMN adj_p REAL",
    "ALTER TABLE factors ADD COLUMN haircut TEXT",
    """CREATE TABLE trials (
        id INTEGER PRIMARY KEY AUTOINCREMENT, trial_key TEXT NOT NULL, universe TEXT NOT NULL,
        horizon INTEGER NOT NULL CHECK (horizon > 0), formula TEXT NOT NULL,
        source TEXT NOT NULL, run_id TEXT REFERENCES runs(run_id) ON DELETE SET NULL,
        t REAL, p REAL NOT NULL CHECK (p >= 0 AND p <= 1), n_days INTEGER,
        n_evals INTEGER NOT NULL DEFAULT 1, first_seen_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL, note TEXT, UNIQUE (trial_key, universe, horizon))""",
    "CREATE INDEX trials_run ON trials(run_id)",
    """CREATE TABLE backtest_trials (
        id INTEGER PRIMARY KEY AUTOINCREMENT, strategy TEXT NOT NULL, digest TEXT NOT NULL,
        universe TEXT, sharpe REAL, n_days INTEGER NOT NULL, start_date TEXT, end_date TEXT,
        run_id TEXT, out_dir TEXT, n_runs INTEGER NOT NULL DEFAULT 1,
        first_seen_at TEXT NOT NULL, last_seen_at TEXT NOT NULL, UNIQUE (strategy, digest))""",
)

_BACKFILL_NOTE = ("backfilled from the leaderboard at the schema-3 upgrade: rejected candidates "
                  "of earlier runs were never stored and are not counted; the t-statistic is "
                  "the one stored then (not autocorrelation-robust for horizon > 1)")


def migrate_v2_to_v3(conn: sqlite3.Connection) -> None:
    """Schema 2 -> 3: the trial ledgers, ``factors.trial_key / adj_p / haircut``.

    Every stored factor becomes a trial (first seen at its ``created_at``, its stored valid
    metrics giving t and p); earlier rejected candidates were never stored, so an upgraded
    ledger starts with a lower count than the runs' ``n_evaluated`` counters suggest.
    """
    for stmt in V3_SQL:
        conn.execute(stmt)
    rows = conn.execute("SELECT id, formula, source, universe, horizon, metrics, run_id, "
                        "created_at FROM factors ORDER BY id").fetchall()
    for fid, formula, source, universe, horizon, metrics, run_id, created in rows:
        key = trial_key(formula)
        conn.execute("UPDATE factors SET trial_key = ? WHERE id = ?", (key, fid))
        t, p, n = trial_pvalue(json.loads(metrics))
        conn.execute("INSERT OR IGNORE INTO trials (trial_key, universe, horizon, formula, "
                     "source, run_id, t, p, n_days, first_seen_at, last_seen_at, note) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (key, universe, horizon, formula, source, run_id, t, p, n, created,
                      created, _BACKFILL_NOTE))


def insert_trial(conn: sqlite3.Connection, *, key: str, universe: str, horizon: int,
                 formula: str, source: str, run_id: str | None, t: float | None, p: float,
                 n_days: int | None, now: str) -> bool:
    """Count one evaluation on valid; return True when it is a new trial.

    A key seen before keeps its first formula, source, run and time; its t, p and number of
    days become those of this evaluation (the configuration may have changed since), and
    ``n_evals`` grows by one.
    """
    cur = conn.execute(
        "INSERT INTO trials (trial_key, universe, horizon, formula, source, run_id, t, p, "
        "n_days, first_seen_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (trial_key, universe, horizon) DO NOTHING",
        (key, universe, int(horizon), formula, source, run_id, t, float(p), n_days, now, now))
    if cur.rowcount:
        return True
    conn.execute("UPDATE trials SET t = ?, p = ?, n_days = ?, n_evals = n_evals + 1, "
                 "last_seen_at = ? WHERE trial_key = ? AND universe = ? AND horizon = ?",
                 (t, float(p), n_days, now, key, universe, int(horizon)))
    return False


def _family(conn: sqlite3.Connection, universe: str, horizon: int
            ) -> tuple[list[str], np.ndarray, list[float | None]]:
    rows = conn.execute("SELECT trial_key, p, t FROM trials WHERE universe = ? AND horizon = ? "
                        "ORDER BY id", (universe, int(horizon))).fetchall()
    return ([r[0] for r in rows], np.array([r[1] for r in rows], dtype=np.float64),
            [r[2] for r in rows])


def charge(conn: sqlite3.Connection, universe: str, horizon: int, key: str, method: str
           ) -> TrialCharge | None:
    """The charge of trial ``key`` against its whole family (None when it is not recorded)."""
    keys, p, t = _family(conn, universe, horizon)
    try:
        i = keys.index(key)
    except ValueError:
        return None
    return charge_of(p, i, method=method, n_tried=len(keys), t=t[i])


def charges_for(conn: sqlite3.Connection, rows: Iterable[tuple[int, str, int, str]],
                method: str) -> dict[int, TrialCharge]:
    """``{id: charge}`` for ``(id, universe, horizon, key)`` rows, one ledger read per family."""
    by_family: dict[tuple[str, int], list[tuple[int, str]]] = {}
    for rid, universe, horizon, key in rows:
        by_family.setdefault((universe, int(horizon)), []).append((rid, key))
    out: dict[int, TrialCharge] = {}
    for (universe, horizon), members in by_family.items():
        keys, p, t = _family(conn, universe, horizon)
        if not keys:
            continue
        adj = adjust_pvalues(p, method)
        pos = {k: i for i, k in enumerate(keys)}
        for rid, key in members:
            i = pos.get(key)
            if i is not None:
                out[rid] = TrialCharge(method, len(keys), t[i], float(p[i]), float(adj[i]))
    return out


def insert_backtest(conn: sqlite3.Connection, *, strategy: str, digest: str,
                    universe: str | None, sharpe: float | None, n_days: int, start: str | None,
                    end: str | None, run_id: str | None, out_dir: str | None, now: str) -> None:
    """Count one backtest: a new (strategy, digest) adds a trial, a repeat updates it."""
    conn.execute(
        "INSERT INTO backtest_trials (strategy, digest, universe, sharpe, n_days, start_date, "
        "end_date, run_id, out_dir, first_seen_at, last_seen_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (strategy, digest) DO UPDATE SET "
        "sharpe = excluded.sharpe, n_days = excluded.n_days, run_id = excluded.run_id, "
        "out_dir = excluded.out_dir, n_runs = n_runs + 1, last_seen_at = excluded.last_seen_at",
        (strategy, digest, universe, sharpe, int(n_days), start, end, run_id, out_dir, now, now))


def backtest_sharpes(conn: sqlite3.Connection) -> np.ndarray:
    """Daily Sharpe ratio of every distinct backtested strategy (NaN where undefined)."""
    rows = conn.execute("SELECT sharpe FROM backtest_trials ORDER BY id").fetchall()
    return np.array([np.nan if r[0] is None else r[0] for r in rows], dtype=np.float64)


class Ledgers:
    """The run and trial-ledger methods of :class:`factors.store.FactorStore` (a mixin: it uses
    the store's ``_write`` / ``_read`` / ``_lock`` / ``_require_open``)."""

    def start_run(self, source: str, *, config: Mapping[str, Any], seed: int | None,
                  universe: str | None, data_root: str | os.PathLike | None) -> str:
        """Register a run (status ``"running"``); return its id ``YYYYmmddTHHMMSSZ-<6 hex>``.

        Put the id in each candidate's ``provenance["run_id"]`` so its gate decisions are
        counted. StoreError on an unknown ``source`` or a config that is not JSON-storable.
        """
        if source not in SOURCES:
            raise StoreError(f"run source {source!r} is not one of {', '.join(SOURCES)}")
        cfg = _dumps(dict(config), "run config")
        root = None if data_root is None else os.fspath(data_root)
        for _ in range(5):
            run_id = (_dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
                      + "-" + secrets.token_hex(3))
            with self._write() as conn:
                sweep(conn)
                if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                    continue
                now = _now()
                conn.execute("INSERT INTO runs (run_id, source, status, seed, universe, "
                             "data_root, config, started_at, pid, host, heartbeat_at) VALUES "
                             "(?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?)",
                             (run_id, source, None if seed is None else int(seed), universe,
                              root, cfg, now, os.getpid(), HOST, now))
                self._beats[run_id] = time.monotonic()
                return run_id
        raise StoreError("could not allocate a unique run id")  # pragma: no cover

    def finish_run(self, run_id: str, *, n_tried: int, status: str = "done",
                   summary: Mapping[str, Any] | None = None) -> None:
        """Close a run with its attempts, final status and an optional JSON summary.

        ``n_tried`` is what the producer attempted by its own measure (GP: distinct programs
        scored on train; LLM: formulas proposed; library: its factors; a model run: the panels
        and distilled formulas submitted). It is a run statistic, not the multiple-testing
        count: that is the trial ledger (:attr:`RunRecord.n_new_trials` for the trials a run
        added, :attr:`FactorRecord.n_tried` for the cumulative count at acceptance).
        StoreError on an unknown run id or status, or a negative ``n_tried``.
        """
        if status not in RUN_STATUSES:
            raise StoreError(f"run status {status!r} is not one of {', '.join(RUN_STATUSES)}")
        if isinstance(n_tried, bool) or not isinstance(n_tried, (int, np.integer)) or n_tried < 0:
            raise StoreError(f"n_tried must be an integer >= 0, got {n_tried!r}")
        summ = None if summary is None else _dumps(dict(summary), "run summary")
        with self._write() as conn:
            cur = conn.execute("UPDATE runs SET n_tried = ?, status = ?, summary = ?, "
                               "finished_at = ? WHERE run_id = ?",
                               (int(n_tried), status, summ, _now(), run_id))
            if cur.rowcount == 0:
                raise StoreError(f"unknown run id {run_id!r}")

    def runs(self, source: str | None = None) -> list[RunRecord]:
        """All runs (optionally of one ``source``), oldest first."""
        sql = ("SELECT run_id, source, status, seed, universe, data_root, config, summary, "
               "n_tried, n_evaluated, n_accepted, rejections, started_at, finished_at, "
               "(SELECT COUNT(*) FROM trials t WHERE t.run_id = runs.run_id), pid, host, "
               "heartbeat_at FROM runs")
        rows = self._read(sql + (" WHERE source = ?" if source else "")
                          + " ORDER BY started_at, run_id", (source,) if source else ())
        return [RunRecord(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]),
                          None if r[7] is None else json.loads(r[7]), r[8], r[9], r[10],
                          json.loads(r[11]), r[12], r[13], r[14], r[15], r[16], r[17])
                for r in rows]

    def heartbeat(self, run_id: str, *, every: float = HEARTBEAT_EVERY_S) -> bool:
        """Note that run ``run_id`` is alive (``heartbeat_at`` = now); cheap to call often.

        Writes at most once per ``every`` seconds per run (this store object) and never
        raises: a busy or closed store only skips the beat. Returns whether it wrote.
        """
        now = time.monotonic()
        last = self._beats.get(run_id)
        if last is not None and now - last < every:
            return False
        self._beats[run_id] = now
        try:
            with self._write() as conn:
                conn.execute(f"UPDATE runs SET heartbeat_at = ?, {REVIVE} "
                             "WHERE run_id = ?", (_now(), run_id))
        except StoreError:
            return False
        return True

    def sweep_runs(self) -> list[str]:
        """Mark ``running`` runs whose owner is gone as ``interrupted``
        (:mod:`factors.store_runs`); return their ids. Opening the store and
        :meth:`start_run` do this already."""
        with self._write() as conn:
            return sweep(conn)

    def _count_decision(self, conn: sqlite3.Connection, run_id: str,
                        decision: GateDecision) -> None:
        """Add one gate decision to the run's counters (inside the caller's transaction); it
        is also the run's heartbeat."""
        (rej,) = conn.execute("SELECT rejections FROM runs WHERE run_id = ?",
                              (run_id,)).fetchone()
        counts = json.loads(rej)
        if not decision.accepted:
            counts[decision.kind] = counts.get(decision.kind, 0) + 1
        conn.execute("UPDATE runs SET n_evaluated = n_evaluated + 1, n_accepted = n_accepted "
                     f"+ ?, rejections = ?, heartbeat_at = ?, {REVIVE} WHERE run_id = ?",
                     (int(decision.accepted), _dumps(counts, "rejections"), _now(), run_id))
        self._beats[run_id] = time.monotonic()

    # ----------------------------------------------------------------- trials
    def _count_trial(self, conn: sqlite3.Connection, key: str, formula: str, universe: str,
                     horizon: int, metrics: Mapping[str, Any], source: str,
                     run_id: str | None, haircut: str) -> TrialCharge:
        """Record one evaluation on valid in the ledger and return its charge."""
        t, p, n = trial_pvalue(metrics)
        insert_trial(conn, key=key, universe=universe, horizon=horizon, formula=formula,
                     source=source, run_id=run_id, t=t, p=p, n_days=n, now=_now())
        ch = charge(conn, universe, horizon, key, haircut)
        assert ch is not None
        return ch

    def record_trial(self, formula: str, universe: str, horizon: int,
                     metrics: Mapping[str, Any], *, source: str, run_id: str | None = None,
                     haircut: str = "bhy") -> TrialCharge:
        """Count an evaluation on valid that is not submitted (``mine eval`` without ``--add``).

        Same ledger row and charge as :meth:`add` (which counts every submitted candidate
        itself); nothing else is written. StoreError on an unknown source, run id or haircut,
        or unstorable metrics.
        """
        if source not in SOURCES:
            raise StoreError(f"trial source {source!r} is not one of {', '.join(SOURCES)}")
        if haircut not in HAIRCUTS:
            raise StoreError(f"haircut {haircut!r} is not one of {', '.join(HAIRCUTS)}")
        clean = _clean_metrics(metrics, f"metrics of {formula!r}")
        key = trial_key(formula)
        with self._write() as conn:
            if run_id is not None and conn.execute(
                    "SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                raise StoreError(f"{formula!r}: unknown run id {run_id!r}")
            return self._count_trial(conn, key, formula, universe, int(horizon), clean,
                                     source, run_id, haircut)

    def n_trials(self, universe: str, horizon: int) -> int:
        """Distinct formulas of ``universe`` and ``horizon`` evaluated on valid so far."""
        return int(self._read("SELECT COUNT(*) FROM trials WHERE universe = ? AND horizon = ?",
                              (universe, int(horizon)))[0][0])

    def trials(self, universe: str | None = None, horizon: int | None = None
               ) -> list[dict[str, Any]]:
        """Trial-ledger rows (optionally of one universe / horizon), oldest first, as dicts:
        ``trial_key, universe, horizon, formula, source, run_id, t, p, n_days, n_evals,
        first_seen_at, last_seen_at, note``."""
        cols = ("trial_key", "universe", "horizon", "formula", "source", "run_id", "t", "p",
                "n_days", "n_evals", "first_seen_at", "last_seen_at", "note")
        where, params = [], []
        for col, val in (("universe", universe), ("horizon", horizon)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        rows = self._read(f"SELECT {', '.join(cols)} FROM trials"
                          + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id",
                          tuple(params))
        return [dict(zip(cols, r)) for r in rows]

    def charges(self, records: list[FactorRecord], haircut: str = "bhy"
                ) -> dict[int, TrialCharge]:
        """Each stored record's charge against *today's* ledger: ``{record id: charge}``.

        The count and adjusted p-value as they stand now (the count only grows; the adjusted
        p-value usually does, see :mod:`factors.trials`; the values at acceptance stay on the
        record). Records whose trial is not in the ledger are left out.
        """
        if haircut not in HAIRCUTS:
            raise StoreError(f"haircut {haircut!r} is not one of {', '.join(HAIRCUTS)}")
        ids = {int(r.id) for r in records if r.id is not None}
        if not ids:
            return {}
        rows = [r for r in self._read("SELECT id, universe, horizon, trial_key, formula FROM "
                                      "factors") if r[0] in ids]
        with self._lock:
            try:
                return charges_for(
                    self._require_open(),
                    [(r[0], r[1], r[2], r[3] or trial_key(r[4])) for r in rows], haircut)
            except sqlite3.Error as e:
                raise StoreError(f"leaderboard read failed: {e}") from None

    def record_backtest(self, *, strategy: str, digest: str, sharpe: float | None,
                        n_days: int, universe: str | None = None, start: str | None = None,
                        end: str | None = None, run_id: str | None = None,
                        out_dir: str | None = None) -> tuple[int, list[float]]:
        """Count one backtest in the backtest-trial ledger.

        A (strategy, digest) seen before is the same trial (its Sharpe ratio and run are
        updated). Returns ``(N, sharpes)``: the distinct strategies tried so far, this one
        included, and the daily Sharpe ratio of each (NaN where undefined) - the inputs of the
        deflated Sharpe ratio (:func:`backtest.metrics.deflated_sharpe`).
        """
        sr = None if sharpe is None or not np.isfinite(sharpe) else float(sharpe)
        with self._write() as conn:
            insert_backtest(conn, strategy=str(strategy), digest=str(digest),
                            universe=universe, sharpe=sr, n_days=int(n_days), start=start,
                            end=end, run_id=run_id, out_dir=out_dir, now=_now())
            sharpes = backtest_sharpes(conn)
        return int(sharpes.size), [float(x) for x in sharpes]
