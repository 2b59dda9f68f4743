"""The ingest job table ``<root>/_jobs.sqlite`` (stdlib sqlite3, WAL, one transaction per change).

Schema::

    jobs(dataset TEXT, part TEXT, status TEXT,        -- pending | done | failed
         rows INTEGER, checksum TEXT,                  -- sha256 of the staged file's bytes
         attempts INTEGER, error TEXT,                 -- last error (never the token)
         merged INTEGER,                               -- 1 once folded into the dataset files
         updated_at TEXT, PRIMARY KEY (dataset, part))
    runs(id INTEGER PRIMARY KEY, command TEXT, started TEXT, finished TEXT,
         status TEXT, calls TEXT)                      -- calls: JSON {endpoint: n}
    meta(key TEXT PRIMARY KEY, value TEXT)             -- start: the warehouse's first date
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
from pathlib import Path

__all__ = ["JOBS_FILE", "JobTable"]

JOBS_FILE = "_jobs.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (dataset TEXT NOT NULL, part TEXT NOT NULL,
    status TEXT NOT NULL, rows INTEGER, checksum TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT, merged INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL,
    PRIMARY KEY (dataset, part));
CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY AUTOINCREMENT, command TEXT NOT NULL,
    started TEXT NOT NULL, finished TEXT, status TEXT NOT NULL, calls TEXT);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class JobTable:
    """The job table of one warehouse root.

    Parameters
    ----------
    root : Path
        Warehouse folder; the file is ``root / "_jobs.sqlite"`` (created with ``create``).
    create : bool
        Create the file when missing (else a missing file raises FileNotFoundError).
    """

    def __init__(self, root: Path, create: bool = True):
        self.path = Path(root) / JOBS_FILE
        if not create and not self.path.exists():
            raise FileNotFoundError(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self.con.execute("PRAGMA journal_mode=WAL")
        sync = "NORMAL" if os.environ.get("ALPHAMINE_INGEST_NOSYNC") == "1" else "FULL"
        self.con.execute(f"PRAGMA synchronous={sync}")
        self.con.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        self.con.close()

    def _tx(self, sql: str, args=()) -> None:
        with self.con:
            self.con.execute("BEGIN IMMEDIATE")
            self.con.execute(sql, args)

    # ------------------------------------------------------------ parts
    def done_parts(self, dataset: str) -> set[str]:
        """Parts of ``dataset`` whose status is done."""
        return {r[0] for r in self.con.execute(
            "SELECT part FROM jobs WHERE dataset=? AND status='done'", (dataset,))}

    def unmerged(self, dataset: str) -> list[tuple[str, str]]:
        """``(part, checksum)`` of done parts not yet merged, sorted by part."""
        return list(self.con.execute(
            "SELECT part, checksum FROM jobs WHERE dataset=? AND status='done' AND merged=0 "
            "ORDER BY part", (dataset,)))

    def mark_done(self, dataset: str, part: str, rows: int, checksum: str) -> None:
        """Record a staged part (one transaction)."""
        self._tx("INSERT INTO jobs(dataset, part, status, rows, checksum, attempts, error, "
                 "merged, updated_at) VALUES(?,?,'done',?,?,1,NULL,0,?) "
                 "ON CONFLICT(dataset, part) DO UPDATE SET status='done', rows=excluded.rows, "
                 "checksum=excluded.checksum, attempts=attempts+1, error=NULL, merged=0, "
                 "updated_at=excluded.updated_at", (dataset, part, rows, checksum, _now()))

    def mark_failed(self, dataset: str, part: str, error: str) -> None:
        """Record a failed attempt (one transaction)."""
        self._tx("INSERT INTO jobs(dataset, part, status, attempts, error, updated_at) "
                 "VALUES(?,?,'failed',1,?,?) ON CONFLICT(dataset, part) DO UPDATE SET "
                 "status='failed', attempts=attempts+1, error=excluded.error, "
                 "updated_at=excluded.updated_at", (dataset, part, error[:1000], _now()))

    def mark_merged(self, dataset: str, parts: list[str]) -> None:
        """Record that ``parts`` are folded into the dataset's files (one transaction)."""
        with self.con:
            self.con.execute("BEGIN IMMEDIATE")
            self.con.executemany("UPDATE jobs SET merged=1, updated_at=? WHERE dataset=? AND "
                                 "part=?", [(_now(), dataset, p) for p in parts])

    def summary(self) -> dict[str, dict]:
        """Per dataset: counts per status, the newest ``updated_at`` and failed parts."""
        out: dict[str, dict] = {}
        for ds, status, part, err, upd in self.con.execute(
                "SELECT dataset, status, part, error, updated_at FROM jobs ORDER BY part"):
            d = out.setdefault(ds, {"done": 0, "pending": 0, "failed": 0, "last": None,
                                    "failed_parts": [], "pending_parts": []})
            d[status] = d.get(status, 0) + 1
            if status == "failed":
                d["failed_parts"].append(f"{part}: {err}")
            if status == "pending":
                d["pending_parts"].append(part)
            d["last"] = max(d["last"] or "", upd)
        return out

    def done_checksums(self) -> list[tuple[str, str, int, str]]:
        """``(dataset, part, rows, checksum)`` of every done part, sorted."""
        return list(self.con.execute("SELECT dataset, part, rows, checksum FROM jobs WHERE "
                                     "status='done' ORDER BY dataset, part"))

    # ------------------------------------------------------------ runs and meta
    def start_run(self, command: str) -> int:
        """Insert a ``running`` run; returns its id."""
        with self.con:
            self.con.execute("BEGIN IMMEDIATE")
            cur = self.con.execute("INSERT INTO runs(command, started, status) "
                                   "VALUES(?,?,'running')", (command, _now()))
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, status: str, calls: dict[str, int]) -> None:
        """Close run ``run_id`` with its status and calls per endpoint."""
        self._tx("UPDATE runs SET finished=?, status=?, calls=? WHERE id=?",
                 (_now(), status, json.dumps(calls, sort_keys=True), run_id))

    def last_run(self) -> dict | None:
        """The newest run as a dict, or None."""
        r = self.con.execute("SELECT command, started, finished, status, calls FROM runs "
                             "ORDER BY id DESC LIMIT 1").fetchone()
        if r is None:
            return None
        return {"command": r[0], "started": r[1], "finished": r[2], "status": r[3],
                "calls": json.loads(r[4]) if r[4] else {}}

    def get_meta(self, key: str) -> str | None:
        """A stored setting (e.g. ``start``), or None."""
        r = self.con.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return r[0] if r else None

    def set_meta(self, key: str, value: str) -> None:
        """Store a setting (one transaction)."""
        self._tx("INSERT INTO meta(key, value) VALUES(?,?) ON CONFLICT(key) DO UPDATE SET "
                 "value=excluded.value", (key, value))
