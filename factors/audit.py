"""The test-split audit log: one row per access to sealed test-split dates.

The table ``test_audit`` lives in the leaderboard file (:class:`factors.store.FactorStore`,
schema version 3) so that the record of what was looked at travels with the factors it is
about. It is written by :func:`backtest.seal.unseal` and read by ``mine audit`` and the
leaderboard ("test looks" per factor). Rows are append-only except for ``metrics``, which
the unsealed computation fills in with what it showed (:meth:`AuditLog.add_metrics`).

Columns: ``at`` (UTC ISO time), ``purpose`` (``research``: test metrics shown;
``live``: targets computed on recent dates for production, no performance shown),
``command`` (the command line), ``config_digest`` and ``code_version`` (see
:mod:`data.provenance`), ``universe``, ``horizon``, ``subject`` (JSON: the formulas, run id or
targets file the access was about), ``window`` (JSON ``[start, end]`` of the computation) and
``metrics`` (JSON, test-split numbers shown).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping

from factors.errors import StoreError
from factors.store import FactorStore
from factors.store_records import _dumps, _now

__all__ = ["AUDIT_PURPOSES", "AuditRecord", "AuditLog"]

#: ``research``: test-split numbers computed and shown; ``live``: production targets on
#: recent dates (``mine combine --live``), no performance computed.
AUDIT_PURPOSES = ("research", "live")


@dataclass(frozen=True)
class AuditRecord:
    """One access to test-split dates (see the module docstring for the fields)."""

    id: int
    at: str
    purpose: str
    command: str
    config_digest: str
    code_version: dict
    universe: str | None
    horizon: int | None
    subject: dict
    window: tuple[str, str]
    metrics: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"id": self.id, "at": self.at, "purpose": self.purpose, "command": self.command,
                "config_digest": self.config_digest, "code_version": self.code_version,
                "universe": self.universe, "horizon": self.horizon, "subject": self.subject,
                "window": list(self.window), "metrics": self.metrics}


_COLUMNS = ("id, at, purpose, command, config_digest, code_version, universe, horizon, "
            "subject, window, metrics")


class AuditLog:
    """Read and append the ``test_audit`` table of an open :class:`FactorStore`.

    Uses the store's transactions (one ``BEGIN IMMEDIATE`` per write), so a killed process
    leaves either the whole row or none.
    """

    def __init__(self, store: FactorStore):
        self.store = store

    def record(self, *, purpose: str, command: str, config_digest: str,
               code_version: Mapping[str, Any], universe: str | None, horizon: int | None,
               subject: Mapping[str, Any], window: tuple[str, str]) -> AuditRecord:
        """Append one access; return it with its id and time.

        Raises
        ------
        StoreError
            Unknown ``purpose`` or a value that is not JSON-able.
        """
        if purpose not in AUDIT_PURPOSES:
            raise StoreError(f"audit purpose {purpose!r}: use one of {', '.join(AUDIT_PURPOSES)}")
        at = _now()
        row = (at, purpose, command, config_digest, _dumps(dict(code_version), "code_version"),
               universe, None if horizon is None else int(horizon),
               _dumps(dict(subject), "subject"), _dumps(list(window), "window"))
        with self.store._write() as conn:     # the store's transaction (same package)
            cur = conn.execute("INSERT INTO test_audit (at, purpose, command, config_digest, "
                               "code_version, universe, horizon, subject, window) VALUES "
                               "(?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            rid = int(cur.lastrowid)
        return self.get(rid)

    def add_metrics(self, audit_id: int, metrics: Mapping[str, Any],
                    formulas: list[str] | None = None) -> AuditRecord:
        """Merge ``metrics`` (the test numbers the access showed) into row ``audit_id``, and
        append ``formulas`` to its subject (factors known only after the computation)."""
        with self.store._write() as conn:
            row = conn.execute("SELECT metrics, subject FROM test_audit WHERE id = ?",
                               (int(audit_id),)).fetchone()
            if row is None:
                raise StoreError(f"no audit record {audit_id}")
            merged = {**json.loads(row[0]), **dict(metrics)}
            subject = json.loads(row[1])
            if formulas:
                subject["formulas"] = list(dict.fromkeys([*subject.get("formulas", []),
                                                          *formulas]))
            conn.execute("UPDATE test_audit SET metrics = ?, subject = ? WHERE id = ?",
                         (_dumps(merged, "audit metrics"), _dumps(subject, "subject"),
                          int(audit_id)))
        return self.get(audit_id)

    @staticmethod
    def _record(row: tuple) -> AuditRecord:
        return AuditRecord(id=row[0], at=row[1], purpose=row[2], command=row[3],
                           config_digest=row[4], code_version=json.loads(row[5]),
                           universe=row[6], horizon=row[7], subject=json.loads(row[8]),
                           window=tuple(json.loads(row[9])), metrics=json.loads(row[10]))

    def get(self, audit_id: int) -> AuditRecord:
        """Row ``audit_id``; StoreError when there is none."""
        rows = self.store._read(f"SELECT {_COLUMNS} FROM test_audit WHERE id = ?",
                                (int(audit_id),))
        if not rows:
            raise StoreError(f"no audit record {audit_id}")
        return self._record(rows[0])

    def entries(self, universe: str | None = None, purpose: str | None = None
                ) -> list[AuditRecord]:
        """Every row, oldest first, optionally of one universe / purpose."""
        sql, params = f"SELECT {_COLUMNS} FROM test_audit WHERE 1 = 1", []
        if universe is not None:
            sql += " AND universe = ?"
            params.append(universe)
        if purpose is not None:
            sql += " AND purpose = ?"
            params.append(purpose)
        return [self._record(r) for r in self.store._read(sql + " ORDER BY id", tuple(params))]

    def looks(self, universe: str | None = None) -> Counter:
        """How many research unsealings named each formula: ``Counter`` keyed by
        ``(formula, universe)`` (the "test looks" column of the leaderboard)."""
        out: Counter = Counter()
        for r in self.entries(universe=universe, purpose="research"):
            for f in r.subject.get("formulas", []):
                out[(f, r.universe)] += 1
        return out
