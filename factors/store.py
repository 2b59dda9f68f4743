"""The factor leaderboard: a SQLite store of accepted factors, their metrics and provenance.

Every producer (named library, GP, LLM, model) hands candidates to :meth:`FactorStore.add`,
which applies the admission gates of the design's "Evaluation discipline" (see :func:`gate`)
and records the decision against the producing run. Every candidate it sees is first counted in
the trial ledger (one row per distinct formula, universe and horizon evaluated on valid, across
all runs and producers; :mod:`factors.store_ledgers`), and the gate charges it for that count
with a multiple-testing adjusted p-value (:mod:`factors.trials`). The ledger of backtested
strategies, which the deflated Sharpe ratio counts, lives here too. Test-split metrics are
sealed: they enter only through :meth:`FactorStore.record_test`, which timestamps the unsealing.

Storage: stdlib ``sqlite3`` in WAL mode (readers never wait for the writer), ``busy_timeout``,
``foreign_keys=ON``, schema version in ``PRAGMA user_version`` with upgrades
(:mod:`factors.store_schema`). Every write is one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction, rolled back on
any exception (``with conn:`` made explicit: a deferred BEGIN that later upgrades to a write
lock fails at once with ``SQLITE_BUSY`` under WAL, an immediate one waits on the busy timeout,
which also makes the duplicate check of :meth:`FactorStore.add` race-free across processes). A
killed process leaves no partial row. Metrics, provenance and run configs are JSON text (no
pickles); NaN/inf become ``null``. Threads may share a store (calls are serialised by a lock).
Records, the pure :func:`~factors.store_records.gate` and ``to_frame``: :mod:`factors.store_records`.

Runs record their process id, host and a heartbeat; killed ones are marked ``interrupted``
when the store is opened or a run started (:mod:`factors.store_runs`). The correlation gate
of :meth:`FactorStore.add` is decided inside its write transaction on the members as they are
then (``correlate`` computes the members the caller had not seen), so two processes racing
highly correlated candidates cannot both get in.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar


from data.config import WORK_DIR
from factors.errors import StoreError
from factors.store_ledgers import Ledgers
from factors.store_records import (
    _SPLIT_ORDER,
    ABS_METRICS,
    STANDARD_METRICS,
    FactorRecord,
    GateDecision,
    _clean_metrics,
    _dumps,
    _metric_rank,
    _now,
    gate,
    to_frame,
)
from factors.store_runs import sweep
from factors.store_schema import init_schema
from factors.trials import HAIRCUTS, TrialCharge, trial_key

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["FactorStore", "StoreConfig"]

@dataclass(frozen=True)
class StoreConfig:
    """``[store]``: the leaderboard file and its admission gate.

    ``haircut`` is the multiple-testing adjustment of the valid RankIC p-values over every
    trial of a universe and horizon (``"bhy"``, ``"holm"``, ``"bonferroni"`` or ``"none"``;
    :mod:`factors.trials`), ``max_adj_p`` the largest adjusted p-value admitted.
    """

    #: Accepted values of the numeric keys (checked by the config loader).
    RANGES: ClassVar[dict] = {"max_corr": (0, 1, True), "min_valid_rank_ic": (0, 1)}

    path: Path = WORK_DIR / "leaderboard.db"
    max_corr: float = 0.7
    min_valid_rank_ic: float = 0.01
    haircut: str = "bhy"
    max_adj_p: float = 0.05

    def __post_init__(self) -> None:
        if self.haircut not in HAIRCUTS:
            raise ValueError(f"haircut must be one of {', '.join(HAIRCUTS)}, "
                             f"got {self.haircut!r}")
        if not 0.0 < self.max_adj_p <= 1.0:
            raise ValueError(f"max_adj_p must be in (0, 1], got {self.max_adj_p!r}")


class FactorStore(Ledgers):
    """The factor leaderboard in one SQLite file (a context manager).

    Parameters
    ----------
    path : str or path-like
        Database file (its parent directory is created on first use), or ``":memory:"``.
    timeout : float, default 10.0
        Seconds to wait for another writer's lock (``busy_timeout``).

    Raises
    ------
    StoreError
        If the file is not an alphamine leaderboard, has a newer schema version or one with no
        migration, or cannot be opened.
    """

    def __init__(self, path: str | os.PathLike, *, timeout: float = 10.0):
        self.path = str(path) if os.fspath(path) == ":memory:" else Path(path)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._beats: dict[str, float] = {}
        try:
            if isinstance(self.path, Path):
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(os.fspath(self.path), timeout=timeout,
                                   isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open leaderboard {str(self.path)!r}: {e}") from None
        self._conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA journal_mode = WAL")
            self._init_schema()
        except BaseException as e:
            conn.close()
            self._conn = None
            if isinstance(e, sqlite3.Error):
                raise StoreError(f"cannot open leaderboard {str(self.path)!r}: {e}") from None
            raise

    # ----------------------------------------------------------------- plumbing
    def __enter__(self) -> FactorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (idempotent); later calls raise StoreError."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _require_open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"leaderboard {str(self.path)!r} is closed")
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any exception."""
        with self._lock:
            conn = self._require_open()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise StoreError(f"leaderboard {str(self.path)!r} is busy ({e}); "
                                 f"retry or raise the timeout") from None
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    raise StoreError(f"leaderboard write failed and was rolled back: {e}"
                                     ) from None
                raise

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._require_open().execute(sql, params).fetchall()
            except sqlite3.Error as e:
                raise StoreError(f"leaderboard read failed: {e}") from None

    def _init_schema(self) -> None:
        with self._write() as conn:
            init_schema(conn, str(self.path))
            sweep(conn)

    # ----------------------------------------------------------------- factors
    def add(self, record: FactorRecord, correlations: Mapping[str, float], *,
            max_corr: float = 0.7, min_valid_rank_ic: float = 0.01, haircut: str = "bhy",
            max_adj_p: float = 0.05, force: bool = False, strict: bool = False,
            correlate: Callable[[Sequence[FactorRecord]], Mapping[str, float]] | None = None
            ) -> GateDecision:
        """Count ``record`` as a trial, gate it and insert it on acceptance, in one transaction.

        The record is counted in the trial ledger (:meth:`record_trial`) and charged: its
        ``haircut``-adjusted p-value over every trial of its universe and horizon, itself
        included (``decision.charge``). A record whose (formula, universe, horizon) is stored
        already is rejected (``kind="duplicate"``, reason ``"already on the leaderboard (id
        N)"``), even with ``force``. Otherwise :func:`gate` decides on the charge and on the
        ``correlations`` with current members of ``members(record.universe, record.horizon)``;
        other keys are ignored, a member with no entry counts as NaN unless ``strict``. With
        ``force=True`` (the named library: references, always kept) a record the gate accepts
        is stored as usual; one it would reject is stored anyway with ``kind="forced"``,
        ``would_be`` = the gate's kind, and marked in its provenance (``forced=True``,
        ``forced_kind``, ``forced_reason``) so that ``mine combine`` leaves it out unless asked
        (``--include-forced``). A stored record gets ``n_tried`` = the trials counted and
        ``adj_p`` / ``haircut`` from its charge. With a ``provenance["run_id"]``, the decision
        is counted on that run.

        Parameters
        ----------
        record : FactorRecord
            ``id``, ``created_at``, ``test_unsealed_at``, ``n_tried``, ``adj_p`` and
            ``haircut`` are ignored (set by the store).
        correlations : mapping of str to float
            Member formula -> correlation (see :func:`gate`).
        max_corr, min_valid_rank_ic, haircut, max_adj_p
            Gate settings (see :class:`StoreConfig`).
        force : bool, default False
        strict : bool, default False
            Raise if a current member has no entry in ``correlations`` (guards against a
            member added by another process after the caller listed the members).
        correlate : callable, optional
            ``correlate(members) -> {formula: correlation}`` for the current members that
            have no entry in ``correlations``, called inside the write transaction (under the
            write lock) with their records: a member another process committed after the
            caller listed the members is then judged like the others, and ``strict`` only
            concerns members it leaves out. Keep it cheap (it runs only for such members).

        Returns
        -------
        GateDecision
            With ``id`` set to the new row id when accepted.

        Raises
        ------
        StoreError
            Nothing written: the record has ``"test"`` metrics, unstorable metrics/provenance
            or an unknown run id, an unknown ``haircut``, or (``strict``) a current member has
            no correlation: recompute against the members and retry.
        """
        if not isinstance(record, FactorRecord):
            raise StoreError(f"add() needs a FactorRecord, got {type(record).__name__}")
        if haircut not in HAIRCUTS:
            raise StoreError(f"haircut {haircut!r} is not one of {', '.join(HAIRCUTS)}")
        metrics = _clean_metrics(record.metrics, f"metrics of {record.formula!r}")
        if "test" in metrics:
            raise StoreError(f"{record.formula!r}: test metrics are sealed; record them with "
                             f"record_test() after the factor is on the leaderboard")
        rec = dataclasses.replace(record, metrics=metrics)
        run_id = rec.run_id
        key = trial_key(rec.formula)
        with self._write() as conn:
            if run_id is not None and conn.execute(
                    "SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                raise StoreError(f"{rec.formula!r}: unknown run id {run_id!r} in provenance "
                                 f"(start it with start_run())")
            charge = self._count_trial(conn, key, rec.formula, rec.universe, rec.horizon,
                                       metrics, rec.source, run_id, haircut)
            row = conn.execute("SELECT id FROM factors WHERE formula = ? AND universe = ? AND "
                               "horizon = ?", (rec.formula, rec.universe, rec.horizon)).fetchone()
            if row is not None:
                decision = GateDecision(False, f"already on the leaderboard (id {row[0]})",
                                        kind="duplicate", id=row[0], charge=charge)
            else:
                current = {r[0]: (int(r[1]), r[2]) for r in conn.execute(
                    "SELECT formula, id, name FROM factors WHERE universe = ? AND horizon = ? "
                    "ORDER BY id", (rec.universe, rec.horizon))}
                unseen = [m for m in current if m not in correlations]
                if unseen and correlate is not None:
                    recs = [self._record(r) for r in conn.execute(
                        f"SELECT {self._COLS} FROM factors WHERE universe = ? AND horizon = ? "
                        "ORDER BY id", (rec.universe, rec.horizon)) if r[1] in unseen]
                    correlations = {**dict(correlate(recs)), **correlations}
                missing = [m for m in current if m not in correlations] if strict else []
                if missing:
                    raise StoreError(f"{rec.formula!r}: no correlation given for current "
                                     f"member(s) {', '.join(map(repr, missing[:5]))}"
                                     f"{' ...' if len(missing) > 5 else ''}; compute against "
                                     f"members({rec.universe!r}, {rec.horizon}) and retry")
                decision = gate(rec, {m: correlations[m] for m in current if m in correlations},
                                max_corr=max_corr, min_valid_rank_ic=min_valid_rank_ic,
                                member_info=current, charge=charge, max_adj_p=max_adj_p)
                if force and not decision.accepted:
                    rec = dataclasses.replace(rec, provenance={
                        **dict(rec.provenance), "forced": True, "forced_kind": decision.kind,
                        "forced_reason": decision.reason})
                    decision = dataclasses.replace(
                        decision, accepted=True, kind="forced", would_be=decision.kind,
                        reason=f"forced (would be rejected: {decision.reason})")
            if decision.accepted:
                cur = conn.execute(
                    "INSERT INTO factors (formula, name, source, universe, horizon, metrics, "
                    "provenance, n_tried, description, run_id, created_at, trial_key, adj_p, "
                    "haircut) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (rec.formula, rec.name, rec.source, rec.universe, rec.horizon,
                     _dumps(metrics, "metrics"), _dumps(rec.provenance, "provenance"),
                     charge.n_tried, rec.description or "", run_id, _now(), key,
                     charge.adj_p, charge.method))
                decision = dataclasses.replace(decision, id=int(cur.lastrowid))
            if run_id is not None:
                self._count_decision(conn, run_id, decision)
        return decision

    _COLS = ("id, formula, name, source, universe, horizon, metrics, provenance, n_tried, "
             "description, created_at, test_unsealed_at, adj_p, haircut")

    @staticmethod
    def _record(row: tuple) -> FactorRecord:
        return FactorRecord(formula=row[1], name=row[2], source=row[3], universe=row[4],
                            horizon=row[5], metrics=json.loads(row[6]),
                            provenance=json.loads(row[7]), n_tried=row[8], description=row[9],
                            id=row[0], created_at=row[10], test_unsealed_at=row[11],
                            adj_p=row[12], haircut=row[13])

    def _select(self, universe: str | None = None, horizon: int | None = None,
                source: str | None = None) -> list[FactorRecord]:
        where, params = [], []
        for col, val in (("universe", universe), ("horizon", horizon), ("source", source)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        sql = f"SELECT {self._COLS} FROM factors" + (
            " WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        return [self._record(r) for r in self._read(sql, tuple(params))]

    def members(self, universe: str | None = None,
                horizon: int | None = None) -> list[FactorRecord]:
        """Records on the leaderboard, optionally of one universe and/or horizon, by id."""
        return self._select(universe, horizon)

    def get(self, formula: str, universe: str, horizon: int) -> FactorRecord | None:
        """The record for (formula, universe, horizon), or ``None`` if absent."""
        rows = self._read(f"SELECT {self._COLS} FROM factors WHERE formula = ? AND universe = ? "
                          f"AND horizon = ?", (formula, universe, int(horizon)))
        return self._record(rows[0]) if rows else None

    def remove(self, id: int) -> None:  # noqa: A002  (the brief's name)
        """Delete the record with row id ``id``; StoreError if there is none."""
        with self._write() as conn:
            if conn.execute("DELETE FROM factors WHERE id = ?", (int(id),)).rowcount == 0:
                raise StoreError(f"no leaderboard record with id {id}")

    def sort_keys(self) -> list[str]:
        """Valid ``sort`` keys for :meth:`top`: ``created_at``, ``name`` and ``split.metric``."""
        names: set[str] = set(STANDARD_METRICS)
        splits: set[str] = {"train", "valid"}
        for rec in self._select():
            for split, values in rec.metrics.items():
                if split != "test":
                    splits.add(split)
                    names.update(k for k, v in values.items()
                                 if v is None or isinstance(v, (int, float)))
        order = {s: i for i, s in enumerate(_SPLIT_ORDER)}
        metric_keys = [f"{s}.{m}" for s in sorted(splits, key=lambda s: (order.get(s, 9), s))
                       for m in sorted(names, key=_metric_rank)]
        return ["created_at", "name", *metric_keys]

    def top(self, n: int | None = 20, sort: str = "valid.rank_icir",
            universe: str | None = None, source: str | None = None) -> list[FactorRecord]:
        """The best ``n`` records (``None`` = all), optionally of one universe / source.

        ``sort`` is ``"split.metric"`` (any stored metric of a non-test split),
        ``"created_at"`` (newest first) or ``"name"`` (alphabetical). :data:`ABS_METRICS` sort
        by absolute value descending, other metrics by value descending; records missing the
        value come last; ties break by id.

        Raises
        ------
        StoreError
            On an unknown key (the message lists the valid ones), a ``test.*`` key (test
            metrics never select factors) or ``n < 1``.
        """
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise StoreError(f"n must be a positive integer or None, got {n!r}")
        if sort.startswith("test."):
            raise StoreError(f"cannot sort by {sort!r}: test metrics are never used to select "
                             f"factors; sort by a train/valid metric")
        valid = self.sort_keys()
        if sort not in valid:
            raise StoreError(f"unknown sort key {sort!r}; valid keys: {', '.join(valid)}")
        recs = self._select(universe=universe, source=source)
        if sort == "name":
            recs.sort(key=lambda r: (r.name, r.id))
        elif sort == "created_at":
            recs.sort(key=lambda r: (r.created_at or "", r.id), reverse=True)
        else:
            split, metric = sort.split(".", 1)
            use_abs = metric in ABS_METRICS

            def key(r: FactorRecord) -> tuple:
                v = r.metric(split, metric)
                if v is None:
                    return (1, 0.0, r.id)
                return (0, -(abs(v) if use_abs else v), r.id)

            recs.sort(key=key)
        return recs if n is None else recs[:n]

    def record_test(self, formula: str, universe: str, horizon: int,
                    test_metrics: Mapping[str, float | None]) -> FactorRecord:
        """Store test-split metrics of a member, mark its test split unsealed, return it.

        ``test_unsealed_at`` keeps the time of the *first* unsealing; later calls replace
        ``metrics["test"]`` only. StoreError if the factor is not on the leaderboard or a
        metric is not a number / None.
        """
        test = _clean_metrics({"test": dict(test_metrics)}, "test metrics")["test"]
        with self._write() as conn:
            row = conn.execute("SELECT id, metrics FROM factors WHERE formula = ? AND "
                               "universe = ? AND horizon = ?",
                               (formula, universe, int(horizon))).fetchone()
            if row is None:
                raise StoreError(f"{formula!r} ({universe}, horizon {horizon}) is not on the "
                                 f"leaderboard")
            metrics = json.loads(row[1])
            metrics["test"] = test
            conn.execute("UPDATE factors SET metrics = ?, test_unsealed_at = "
                         "COALESCE(test_unsealed_at, ?) WHERE id = ?",
                         (_dumps(metrics, "metrics"), _now(), row[0]))
        rec = self.get(formula, universe, horizon)
        assert rec is not None
        return rec

    @staticmethod
    def to_frame(records: list[FactorRecord],
                 current: Mapping[int, TrialCharge] | None = None) -> pd.DataFrame:
        """See :func:`to_frame`."""
        return to_frame(records, current)
