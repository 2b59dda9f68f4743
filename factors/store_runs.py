"""Who runs a leaderboard run, and which ``running`` runs were killed (``interrupted``).

:meth:`factors.store.FactorStore.start_run` records the process id and host
(:mod:`data.procs`) and a heartbeat time, refreshed by :meth:`~factors.store.FactorStore.
heartbeat` (producers call it on their progress events; it writes at most every
:data:`HEARTBEAT_EVERY_S`) and by every gate decision counted on the run. :func:`sweep` runs
inside the write transaction that opens a store and the one that starts a run: a ``running``
run whose owner is gone becomes ``interrupted``, with the reason in its summary:

* on this host, with a process id: the process no longer runs, or its id now belongs to a
  process younger than the run (reused). A live process is never marked, however long it
  stays silent (a long GP generation sends no event);
* on another host, or with no process id (runs recorded before schema 4): the last
  heartbeat (else the start) is older than :data:`HEARTBEAT_STALE_S`.

A run the sweep marked that reports again (a heartbeat, a gate decision) is ``running``
again (:data:`REVIVE`); ``finish_run`` sets the final status either way.
"""
from __future__ import annotations

import datetime as _dt
import json
import sqlite3

from data.procs import HOST, process_alive

__all__ = ["HEARTBEAT_STALE_S", "HEARTBEAT_EVERY_S", "REVIVE", "sweep"]

#: A ``running`` run whose owner cannot be asked (another host, or no process id recorded)
#: is ``interrupted`` once its last heartbeat is older than this (seconds).
HEARTBEAT_STALE_S = 600.0
#: :meth:`factors.store.FactorStore.heartbeat` writes at most this often per run (seconds).
HEARTBEAT_EVERY_S = 30.0
#: SQL assignment for a run that reports: ``running`` again if only :func:`sweep` had marked
#: it ``interrupted`` (``finish_run`` sets ``finished_at``; the sweep does not).
REVIVE = ("status = CASE WHEN status = 'interrupted' AND finished_at IS NULL "
          "THEN 'running' ELSE status END")


def sweep(conn: sqlite3.Connection) -> list[str]:
    """Mark the ``running`` runs whose owner is gone ``interrupted`` (module docstring),
    inside the caller's write transaction; return their ids."""
    rows = conn.execute("SELECT run_id, pid, host, heartbeat_at, started_at "
                        "FROM runs WHERE status = 'running'").fetchall()
    gone = []
    now = _dt.datetime.now(_dt.timezone.utc)
    for run_id, pid, host, beat, started in rows:
        try:
            t_start = _dt.datetime.fromisoformat(started)
            t_beat = _dt.datetime.fromisoformat(beat) if beat else t_start
        except (TypeError, ValueError):
            continue
        if t_start.tzinfo is None:
            t_start = t_start.replace(tzinfo=_dt.timezone.utc)
        if t_beat.tzinfo is None:
            t_beat = t_beat.replace(tzinfo=_dt.timezone.utc)
        if host == HOST and pid is not None:
            if process_alive(pid, not_after=t_start.timestamp()):
                continue
            why = f"process {pid} on {host} is gone"
        else:
            age = (now - t_beat).total_seconds()
            if age <= HEARTBEAT_STALE_S:
                continue
            why = f"no heartbeat for {age / 60:.0f} min" + (
                f" (process {pid} on {host})" if pid is not None else "")
        conn.execute("UPDATE runs SET status = 'interrupted', summary = COALESCE(summary, ?) "
                     "WHERE run_id = ? AND status = 'running'",
                     (json.dumps({"interrupted": why}), run_id))
        gone.append(run_id)
    return gone
