"""The alerts log: the stable layer's alerts and the state of their notifications.

The table ``alerts_log`` lives in the leaderboard file (:class:`factors.store.FactorStore`,
schema version 6). It is written by ``mine monitor`` (:func:`backtest.monitor.run_monitor`
finds the alerts, :meth:`AlertLog.add` stores them) and read by ``mine alerts`` and the
dashboard's Alerts page. The stable layer never trades: a row is a prompt for a person.

Columns: ``date`` (ISO day the triggering numbers became visible), ``ts_code``, ``rule``
(:data:`backtest.monitor.RULES`), ``period`` (the quarter end / report period / fiscal year
end that triggered it), ``trigger_values`` (JSON: the numbers behind the alert),
``severity`` (``low`` / ``medium`` / ``high``), ``message``, ``acknowledged`` (0/1) and
``acked_at``; notifications: ``notify_pending`` (JSON list of channels still to deliver),
``notify_sent`` (channels delivered), ``notify_attempts`` (failed delivery attempts),
``notify_error`` (last failure, never a secret) and ``notified_at``. One row per
``(ts_code, rule, period)``: running the monitor again never duplicates an alert.

Durability: an alert and its pending channels are written in one transaction before any
send is tried, so a crash after the insert leaves the notification pending; the next
``mine alerts --send`` or ``mine monitor`` run delivers it (:func:`backtest.notify.send_pending`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from factors.errors import StoreError
from factors.store import FactorStore
from factors.store_records import _dumps, _now

__all__ = ["SEVERITIES", "AlertRecord", "AlertLog"]

#: Severity levels, least to most urgent.
SEVERITIES = ("low", "medium", "high")


@dataclass(frozen=True)
class AlertRecord:
    """One row of ``alerts_log`` (see the module docstring for the fields)."""

    id: int
    created_at: str
    date: str
    ts_code: str
    rule: str
    period: str
    values: dict
    severity: str
    message: str
    acknowledged: bool
    acked_at: str | None
    notify_pending: list = field(default_factory=list)
    notify_sent: list = field(default_factory=list)
    notify_attempts: int = 0
    notify_error: str | None = None
    notified_at: str | None = None

    def to_dict(self) -> dict:
        return {"id": self.id, "created_at": self.created_at, "date": self.date,
                "ts_code": self.ts_code, "rule": self.rule, "period": self.period,
                "values": self.values, "severity": self.severity, "message": self.message,
                "acknowledged": self.acknowledged, "acked_at": self.acked_at,
                "notify_pending": self.notify_pending, "notify_sent": self.notify_sent,
                "notify_attempts": self.notify_attempts, "notify_error": self.notify_error,
                "notified_at": self.notified_at}


_COLUMNS = ("id, created_at, date, ts_code, rule, period, trigger_values, severity, message, "
            "acknowledged, acked_at, notify_pending, notify_sent, notify_attempts, "
            "notify_error, notified_at")


class AlertLog:
    """Read, append and acknowledge the ``alerts_log`` table of an open :class:`FactorStore`.

    Every write is one store transaction (``BEGIN IMMEDIATE``), so a killed process leaves
    whole rows or none.
    """

    def __init__(self, store: FactorStore):
        self.store = store

    @staticmethod
    def _record(r: tuple) -> AlertRecord:
        return AlertRecord(id=r[0], created_at=r[1], date=r[2], ts_code=r[3], rule=r[4],
                           period=r[5], values=json.loads(r[6]), severity=r[7], message=r[8],
                           acknowledged=bool(r[9]), acked_at=r[10],
                           notify_pending=json.loads(r[11]), notify_sent=json.loads(r[12]),
                           notify_attempts=int(r[13]), notify_error=r[14], notified_at=r[15])

    def add(self, alerts: Iterable[Mapping[str, Any]], channels: Iterable[str] = ()
            ) -> tuple[list[AlertRecord], int]:
        """Insert new alerts (one transaction), each with ``channels`` pending.

        Parameters
        ----------
        alerts : iterable of mapping
            Keys ``date, ts_code, rule, period, values, severity, message`` (``values`` a
            JSON-able dict; NaN becomes null).
        channels : iterable of str
            Notification channels to queue for each new alert (``email``, ``webhook``).

        Returns
        -------
        (list of AlertRecord, int)
            The rows inserted, and how many alerts were already logged (same ``ts_code,
            rule, period``) and skipped.

        Raises
        ------
        StoreError
            Unknown severity or a value that is not JSON-able.
        """
        now = _now()
        pending = _dumps(list(dict.fromkeys(channels)), "channels")
        rows = []
        for a in alerts:
            if a["severity"] not in SEVERITIES:
                raise StoreError(f"alert severity {a['severity']!r}: use one of "
                                 f"{', '.join(SEVERITIES)}")
            rows.append((now, str(a["date"]), str(a["ts_code"]), str(a["rule"]),
                         str(a["period"]), _dumps(dict(a.get("values", {})), "alert values"),
                         a["severity"], str(a.get("message", "")), pending))
        ids, dup = [], 0
        with self.store._write() as conn:
            for row in rows:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO alerts_log (created_at, date, ts_code, rule, period, "
                    "trigger_values, severity, message, notify_pending) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
                if cur.rowcount:
                    ids.append(int(cur.lastrowid))
                else:
                    dup += 1
        return self._get_many(ids), dup

    def _get_many(self, ids: list[int]) -> list[AlertRecord]:
        out = []
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            q = ",".join("?" * len(chunk))
            out += [self._record(r) for r in self.store._read(
                f"SELECT {_COLUMNS} FROM alerts_log WHERE id IN ({q}) ORDER BY id",
                tuple(chunk))]
        return out

    def get(self, alert_id: int) -> AlertRecord:
        """Row ``alert_id``; StoreError when there is none."""
        rows = self._get_many([int(alert_id)])
        if not rows:
            raise StoreError(f"no alert with id {alert_id} (see `mine alerts --all`)")
        return rows[0]

    def entries(self, *, acknowledged: bool | None = None, rule: str | None = None,
                ts_code: str | None = None) -> list[AlertRecord]:
        """Rows, newest date first (then id), optionally filtered."""
        sql, params = f"SELECT {_COLUMNS} FROM alerts_log WHERE 1 = 1", []
        if acknowledged is not None:
            sql += " AND acknowledged = ?"
            params.append(int(acknowledged))
        if rule is not None:
            sql += " AND rule = ?"
            params.append(rule)
        if ts_code is not None:
            sql += " AND ts_code = ?"
            params.append(ts_code)
        rows = self.store._read(sql + " ORDER BY date DESC, id DESC", tuple(params))
        return [self._record(r) for r in rows]

    def ack(self, alert_id: int) -> AlertRecord:
        """Mark ``alert_id`` acknowledged (idempotent: the first time is kept).

        Raises
        ------
        StoreError
            No such alert.
        """
        with self.store._write() as conn:
            cur = conn.execute("UPDATE alerts_log SET acknowledged = 1, acked_at = "
                               "COALESCE(acked_at, ?) WHERE id = ?", (_now(), int(alert_id)))
            if cur.rowcount == 0:
                raise StoreError(f"no alert with id {alert_id} (see `mine alerts --all`)")
        return self.get(alert_id)

    # ------------------------------------------------------------------ notifications
    def pending(self, channel: str) -> list[AlertRecord]:
        """Rows with ``channel`` still to deliver, oldest first."""
        rows = self.store._read(
            f"SELECT {_COLUMNS} FROM alerts_log WHERE notify_pending LIKE ? ORDER BY id",
            (f'%"{channel}"%',))
        return [r for r in map(self._record, rows) if channel in r.notify_pending]

    def mark_sent(self, ids: Iterable[int], channel: str) -> None:
        """Move ``channel`` from pending to sent for ``ids`` (one transaction)."""
        now = _now()
        with self.store._write() as conn:
            for i in ids:
                row = conn.execute("SELECT notify_pending, notify_sent FROM alerts_log "
                                   "WHERE id = ?", (int(i),)).fetchone()
                if row is None:
                    continue
                pend = [c for c in json.loads(row[0]) if c != channel]
                sent = list(dict.fromkeys([*json.loads(row[1]), channel]))
                conn.execute("UPDATE alerts_log SET notify_pending = ?, notify_sent = ?, "
                             "notified_at = ? WHERE id = ?",
                             (json.dumps(pend), json.dumps(sent), now, int(i)))

    def mark_failed(self, ids: Iterable[int], channel: str, error: str) -> None:
        """Record a failed delivery of ``channel`` for ``ids``: the channel stays pending,
        ``notify_attempts`` grows by one, ``notify_error`` holds ``"<channel>: <error>"``."""
        with self.store._write() as conn:
            for i in ids:
                conn.execute("UPDATE alerts_log SET notify_attempts = notify_attempts + 1, "
                             "notify_error = ? WHERE id = ?",
                             (f"{channel}: {error}"[:500], int(i)))
