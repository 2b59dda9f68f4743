"""The trades log: fills reported by a broker or replayed by the simulator, and reconciliations.

Two tables of the leaderboard file (:class:`factors.store.FactorStore`, schema version 7),
written by ``mine reconcile`` (:func:`backtest.reconcile_run.run_reconcile`):

``trades``
    One row per fill: ``trade_date`` (ISO day), ``ts_code``, ``side`` (buy/sell), ``volume``
    (shares), ``price`` (raw yuan), ``amount`` (yuan), ``fee`` (yuan, the broker-reported
    total when the file carries one, else NULL; the simulator's fees for ``sim`` rows),
    ``time``, ``order_id``, ``trade_id``, ``source`` (``broker`` | ``sim``), ``plan_id``
    (the orders file the fill was reconciled against), ``file`` and ``imported_at``.
    ``fill_key`` is unique: for a broker fill a digest of (trade_date, ts_code, side, time,
    order_id, trade_id, volume, price, occurrence number of identical rows in the file), so
    importing the same fills again adds nothing; for a simulated fill (``plan_id``, ts_code,
    side), so a rerun replaces the plan's replay instead of adding to it.
``reconciliations``
    One row per (``plan_id``, ``trades_digest`` = SHA-256 of the fills file): plan and
    trade dates, the summary (JSON) and the report path; reconciling the same file against
    the same plan again updates the row.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from factors.errors import StoreError
from factors.store import FactorStore
from factors.store_records import _dumps, _now

__all__ = ["SOURCES", "TradeLog", "fill_keys"]

#: Where a fill comes from.
SOURCES = ("broker", "sim")
_FIELDS = ("trade_date", "ts_code", "side", "volume", "price", "amount", "fee", "time",
           "order_id", "trade_id")


def _digest(*parts: Any) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:32]


def fill_keys(rows: list[Mapping[str, Any]], source: str, plan_id: str) -> list[str]:
    """The unique ``fill_key`` of each row (see the module docstring).

    Identical broker rows (same day, code, side, time, ids, volume and price) are told apart
    by their occurrence number in ``rows``, so two genuine identical fills are both kept and
    the same file imported twice gives the same keys.
    """
    seen: dict[tuple, int] = {}
    out = []
    for r in rows:
        if source == "sim":
            out.append(_digest("sim", plan_id, r["ts_code"], r["side"]))
            continue
        k = (r["trade_date"], r["ts_code"], r["side"], r.get("time", ""),
             r.get("order_id", ""), r.get("trade_id", ""), int(r["volume"]),
             f"{float(r['price']):.6f}")
        n = seen.get(k, 0)
        seen[k] = n + 1
        out.append(_digest("broker", *k, n))
    return out


class TradeLog:
    """Append and read the ``trades`` and ``reconciliations`` tables of an open store.

    Every write is one store transaction: a killed process leaves whole imports or none.
    """

    def __init__(self, store: FactorStore):
        self.store = store

    def add(self, rows: Iterable[Mapping[str, Any]], source: str, plan_id: str,
            file: str = "") -> tuple[int, int]:
        """Insert fills (one transaction).

        Parameters
        ----------
        rows : iterable of mapping
            Keys ``trade_date, ts_code, side, volume, price, amount`` and optionally ``fee,
            time, order_id, trade_id``.
        source : {"broker", "sim"}
            ``sim`` rows replace the plan's earlier replay of the same (ts_code, side).
        plan_id : str
            The plan the fills were reconciled against.
        file : str
            The fills file (empty for simulated fills).

        Returns
        -------
        (int, int)
            Rows added, and broker rows already present (skipped).

        Raises
        ------
        StoreError
            Unknown source or side, a row without a trade date.
        """
        if source not in SOURCES:
            raise StoreError(f"trades source {source!r}: use one of {', '.join(SOURCES)}")
        rows = [dict(r) for r in rows]
        for r in rows:
            if r.get("side") not in ("buy", "sell"):
                raise StoreError(f"trades: side {r.get('side')!r} is not buy or sell")
            if not r.get("trade_date"):
                raise StoreError(f"trades: fill of {r.get('ts_code')} has no trade date")
        keys = fill_keys(rows, source, plan_id)
        now = _now()
        verb = "INSERT OR REPLACE" if source == "sim" else "INSERT OR IGNORE"
        added = dup = 0
        with self.store._write() as conn:
            for k, r in zip(keys, rows):
                fee = r.get("fee")
                fee = None if fee is None or fee != fee else float(fee)
                cur = conn.execute(
                    f"{verb} INTO trades (fill_key, trade_date, ts_code, side, volume, price, "
                    f"amount, fee, time, order_id, trade_id, source, plan_id, file, "
                    f"imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (k, str(r["trade_date"]), str(r["ts_code"]), r["side"], int(r["volume"]),
                     float(r["price"]), float(r["amount"]), fee, str(r.get("time", "")),
                     str(r.get("order_id", "")), str(r.get("trade_id", "")), source,
                     str(plan_id), str(file), now))
                if cur.rowcount:
                    added += 1
                else:
                    dup += 1
        return added, dup

    def fills(self, *, source: str | None = None, plan_id: str | None = None,
              trade_date: str | None = None) -> list[dict]:
        """Rows as dicts (fields of the module docstring plus ``id``), by id, filtered."""
        sql = ("SELECT id, " + ", ".join(_FIELDS) + ", source, plan_id, file, imported_at "
               "FROM trades WHERE 1 = 1")
        params: list = []
        for col, v in (("source", source), ("plan_id", plan_id), ("trade_date", trade_date)):
            if v is not None:
                sql += f" AND {col} = ?"
                params.append(v)
        cols = ("id",) + _FIELDS + ("source", "plan_id", "file", "imported_at")
        return [dict(zip(cols, r)) for r in self.store._read(sql + " ORDER BY id",
                                                             tuple(params))]

    def record(self, *, plan_id: str, plan_date: str, trade_date: str, trades_file: str,
               trades_digest: str, summary: Mapping[str, Any], report: str = "") -> int:
        """Insert or update the reconciliation of one fills file against one plan.

        Returns
        -------
        int
            The row id (the same id when the pair was reconciled before).
        """
        s = _dumps(dict(summary), "reconciliation summary")
        with self.store._write() as conn:
            conn.execute(
                "INSERT INTO reconciliations (created_at, plan_id, plan_date, trade_date, "
                "trades_file, trades_digest, summary, report) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (plan_id, trades_digest) DO UPDATE SET created_at = "
                "excluded.created_at, trade_date = excluded.trade_date, trades_file = "
                "excluded.trades_file, summary = excluded.summary, report = excluded.report",
                (_now(), plan_id, plan_date, trade_date, trades_file, trades_digest, s,
                 report))
            row = conn.execute("SELECT id FROM reconciliations WHERE plan_id = ? AND "
                               "trades_digest = ?", (plan_id, trades_digest)).fetchone()
        return int(row[0])

    def reconciliations(self) -> list[dict]:
        """Every reconciliation record, newest first (``summary`` decoded)."""
        cols = ("id", "created_at", "plan_id", "plan_date", "trade_date", "trades_file",
                "trades_digest", "summary", "report")
        rows = self.store._read("SELECT " + ", ".join(cols) + " FROM reconciliations "
                                "ORDER BY id DESC")
        out = [dict(zip(cols, r)) for r in rows]
        for d in out:
            d["summary"] = json.loads(d["summary"])
        return out
