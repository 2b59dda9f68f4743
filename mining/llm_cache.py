"""Reply cache of the LLM producer: every request/response in SQLite, replay, run statistics.

Keys
    ``request_key(model, messages, params)`` = sha256 of the canonical JSON of the model name,
    the chat messages and the sampling parameters (``temperature``, ``max_tokens``). The API
    key and the endpoint are never part of it, and nothing secret is ever stored.
Tables
    ``responses(id, key, ...)`` one row per successful request sent to the network: the
                              request JSON, the reply text, token usage. A key may have several
                              rows (``--no-cache`` samples again); a lookup by key returns the
                              newest.
    ``calls(run_id, seq, ...)`` every call a run made, in order, with its key, outcome
                              (``ok`` or a failure kind) and the retries it needed; replays
                              follow this sequence.
    ``runs(run_id, ...)``     the run's settings and final statistics (``mine llm --stats``).
Storage
    stdlib ``sqlite3`` in WAL mode, ``busy_timeout``; every write is one ``BEGIN IMMEDIATE``
    transaction, so a killed process leaves no partial row.

A :class:`CachedChat` answers from the cache when it can (no network) and otherwise asks its
sender; a :class:`ReplayChat` never touches the network: it serves the calls recorded for a
run, in order, and raises :class:`~data.errors.LLMError` on a miss.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from mining.errors import LLMError

#: Version of the cache schema (``PRAGMA user_version``).
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, model TEXT NOT NULL,
    request TEXT NOT NULL, content TEXT, finish_reason TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS responses_key ON responses(key, id);
CREATE TABLE IF NOT EXISTS calls (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL,
    response_id INTEGER REFERENCES responses(id), outcome TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '', cached INTEGER NOT NULL DEFAULT 0,
    retries TEXT NOT NULL DEFAULT '{}', created_at TEXT NOT NULL, PRIMARY KEY (run_id, seq));
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, template TEXT NOT NULL, model TEXT NOT NULL, universe TEXT,
    status TEXT NOT NULL, replay_of TEXT, settings TEXT NOT NULL, stats TEXT,
    started_at TEXT NOT NULL, finished_at TEXT);
"""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def request_key(model: str, messages: Sequence[Mapping[str, str]],
                params: Mapping[str, Any]) -> str:
    """sha256 hex of the canonical JSON of ``(model, messages, params)``."""
    blob = json.dumps({"model": model, "messages": [dict(m) for m in messages],
                       "params": dict(params)}, sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class ChatReply:
    """What one chat call produced (a success or a counted failure)."""

    content: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failure: str | None = None        # None, "http_error" or "timeout"
    response_id: int | None = None    # row of the cached response
    error: str = ""
    cached: bool = False
    retries: dict[str, int] = field(default_factory=dict)
    key: str = ""
    drift: bool = False               # replay: recomputed key differs from the recorded one


class CallFailed(Exception):
    """A request that failed after its retries; ``kind`` is ``http_error`` or ``timeout``."""

    def __init__(self, kind: str, message: str, retries: Mapping[str, int] | None = None):
        super().__init__(message)
        self.kind = kind
        self.retries = dict(retries or {})


class LLMCache:
    """The SQLite reply cache (a context manager). ``path`` may be ``":memory:"``."""

    def __init__(self, path: str | os.PathLike, *, timeout: float = 10.0):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            (version,) = self._conn.execute("PRAGMA user_version").fetchone()
            (n_tables,) = self._conn.execute("SELECT count(*) FROM sqlite_master WHERE "
                                             "type = 'table'").fetchone()
            if n_tables and version != SCHEMA_VERSION:
                self._conn.close()
                raise LLMError(f"the LLM cache {self.path!r} has schema version {version}, this "
                               f"alphamine reads version {SCHEMA_VERSION}: move it away (it is "
                               "only a cache) and rerun")
            self._conn.executescript(_SCHEMA)
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as e:
            raise LLMError(f"cannot open the LLM cache {self.path!r}: {e}") from None
        self._lock = threading.Lock()

    def __enter__(self) -> LLMCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database (idempotent)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # ---------------------------------------------------------------- responses and calls
    def get(self, key: str) -> ChatReply | None:
        """The newest cached successful reply for ``key``, or ``None``."""
        return self._get("key = ? ORDER BY id DESC LIMIT 1", key)

    def get_id(self, response_id: int) -> ChatReply | None:
        """The cached reply stored as row ``response_id``, or ``None``."""
        return self._get("id = ?", int(response_id))

    def _get(self, where: str, value: Any) -> ChatReply | None:
        rows = self._read("SELECT id, key, content, finish_reason, prompt_tokens, "
                          f"completion_tokens FROM responses WHERE {where}", (value,))
        if not rows:
            return None
        rid, key, c, fr, pt, ct = rows[0]
        return ChatReply(content=c, finish_reason=fr, prompt_tokens=pt, completion_tokens=ct,
                         cached=True, key=key, response_id=rid)

    def put(self, key: str, model: str, messages: Sequence[Mapping[str, str]],
            params: Mapping[str, Any], reply: ChatReply) -> int:
        """Store a successful reply; return its row id (also set as ``reply.response_id``)."""
        req = json.dumps({"model": model, "messages": [dict(m) for m in messages],
                          "params": dict(params)}, ensure_ascii=False)
        with self._write() as conn:
            cur = conn.execute("INSERT INTO responses (key, model, request, content, "
                               "finish_reason, prompt_tokens, completion_tokens, created_at) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                               (key, model, req, reply.content, reply.finish_reason,
                                int(reply.prompt_tokens), int(reply.completion_tokens), _now()))
            reply.response_id = int(cur.lastrowid)
        return reply.response_id

    def record_call(self, run_id: str, seq: int, reply: ChatReply) -> None:
        """Append call ``seq`` of ``run_id`` with its outcome."""
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO calls (run_id, seq, key, response_id, "
                         "outcome, error, cached, retries, created_at) VALUES (?, ?, ?, ?, ?, "
                         "?, ?, ?, ?)",
                         (run_id, int(seq), reply.key, reply.response_id,
                          reply.failure or "ok", reply.error, int(reply.cached),
                          json.dumps(reply.retries), _now()))

    def calls(self, run_id: str) -> list[dict[str, Any]]:
        """The recorded calls of ``run_id`` in order."""
        rows = self._read("SELECT seq, key, response_id, outcome, error, cached, retries "
                          "FROM calls WHERE run_id = ? ORDER BY seq", (run_id,))
        return [{"seq": s, "key": k, "response_id": rid, "outcome": o, "error": e,
                 "cached": bool(c), "retries": json.loads(r)}
                for s, k, rid, o, e, c, r in rows]

    # ---------------------------------------------------------------- runs
    def start_run(self, run_id: str, *, template: str, model: str, universe: str,
                  settings: Mapping[str, Any], replay_of: str | None = None) -> None:
        """Register a run (status ``running``)."""
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO runs (run_id, template, model, universe, "
                         "status, replay_of, settings, started_at) VALUES (?, ?, ?, ?, "
                         "'running', ?, ?, ?)", (run_id, template, model, universe, replay_of,
                                                 json.dumps(dict(settings)), _now()))

    def finish_run(self, run_id: str, stats: Mapping[str, Any], status: str = "done") -> None:
        """Store a run's final statistics."""
        with self._write() as conn:
            conn.execute("UPDATE runs SET status = ?, stats = ?, finished_at = ? "
                         "WHERE run_id = ?", (status, json.dumps(dict(stats)), _now(), run_id))

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One run's row as a dict, or ``None``."""
        rows = self._read("SELECT run_id, template, model, universe, status, replay_of, "
                          "settings, stats, started_at, finished_at FROM runs WHERE run_id = ?",
                          (run_id,))
        return self._run_dict(rows[0]) if rows else None

    def runs(self) -> list[dict[str, Any]]:
        """All runs in the order they were started."""
        rows = self._read("SELECT run_id, template, model, universe, status, replay_of, "
                          "settings, stats, started_at, finished_at FROM runs "
                          "ORDER BY rowid")
        return [self._run_dict(r) for r in rows]

    @staticmethod
    def _run_dict(r: tuple) -> dict[str, Any]:
        return {"run_id": r[0], "template": r[1], "model": r[2], "universe": r[3],
                "status": r[4], "replay_of": r[5], "settings": json.loads(r[6]),
                "stats": None if r[7] is None else json.loads(r[7]), "started_at": r[8],
                "finished_at": r[9]}


Sender = Callable[[Sequence[Mapping[str, str]]], ChatReply]


class CachedChat:
    """Chat through the cache: a hit costs nothing, a miss goes to ``sender`` and is stored.

    Every call (hit, miss or failure) is recorded under ``run_id`` so the run can be replayed.
    ``sender(messages)`` returns a :class:`ChatReply` or raises :class:`CallFailed`.
    """

    def __init__(self, sender: Sender, cache: LLMCache, run_id: str, model: str,
                 params: Mapping[str, Any], *, use_cache: bool = True):
        self.sender, self.cache, self.run_id = sender, cache, run_id
        self.model, self.params, self.use_cache = model, dict(params), use_cache
        self.seq = 0

    def complete(self, messages: Sequence[Mapping[str, str]]) -> ChatReply:
        """One chat completion (never raises for a failed request: see ``failure``)."""
        key = request_key(self.model, messages, self.params)
        reply = self.cache.get(key) if self.use_cache else None
        if reply is None:
            try:
                reply = self.sender(messages)
            except CallFailed as e:
                reply = ChatReply(failure=e.kind, error=str(e), retries=e.retries)
            reply.key = key
            if reply.failure is None:
                self.cache.put(key, self.model, messages, self.params, reply)
        self.cache.record_call(self.run_id, self.seq, reply)
        self.seq += 1
        return reply


class ReplayChat:
    """Serve the calls recorded for ``source_run`` in order, without any network.

    A recomputed request key that differs from the recorded one (the leaderboard examples or
    an evaluation changed since) is served anyway and flagged ``drift``.
    """

    def __init__(self, cache: LLMCache, source_run: str, run_id: str, model: str,
                 params: Mapping[str, Any]):
        self.cache, self.source_run, self.run_id = cache, source_run, run_id
        self.model, self.params = model, dict(params)
        self.recorded = cache.calls(source_run)
        if not self.recorded:
            raise LLMError(f"replay: the LLM cache {cache.path!r} has no recorded calls for run "
                           f"{source_run!r} (see `mine llm --stats` for the runs it holds)")
        self.seq = 0

    def complete(self, messages: Sequence[Mapping[str, str]]) -> ChatReply:
        """The recorded reply of the next call; :class:`LLMError` on a cache miss."""
        if self.seq >= len(self.recorded):
            raise LLMError(f"replay cache miss: run {self.source_run!r} recorded "
                           f"{len(self.recorded)} calls, the replay needs call "
                           f"#{self.seq + 1} (use the run's own --rounds/--n)")
        rec = self.recorded[self.seq]
        key = request_key(self.model, messages, self.params)
        if rec["outcome"] == "ok":
            rid = rec["response_id"]
            reply = self.cache.get_id(rid) if rid is not None else None
            if reply is None:
                raise LLMError(f"replay cache miss: the response of call #{self.seq + 1} of run "
                               f"{self.source_run!r} (key {rec['key'][:12]}...) is not in "
                               f"{self.cache.path!r}")
        else:
            reply = ChatReply(failure=rec["outcome"], error=rec["error"])
        reply.retries = dict(rec["retries"])
        reply.cached = True
        reply.key = rec["key"]
        reply.drift = key != rec["key"]
        self.cache.record_call(self.run_id, self.seq, reply)
        self.seq += 1
        return reply
