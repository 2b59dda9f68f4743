"""Killed runs are marked ``interrupted`` (factors.store_runs), and the correlation gate is decided
inside the insert's write transaction (FactorStore.add(correlate=...)): issue 12."""
from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import factors.store_runs as sr
from data.procs import HOST
from factors.store import FactorStore
from factors.store_records import FactorRecord

REPO = Path(__file__).resolve().parents[2]


def rec(formula, run_id=None, ic=0.03) -> FactorRecord:
    prov = {} if run_id is None else {"run_id": run_id}
    return FactorRecord(formula=formula, name=formula[:12], source="gp", universe="u",
                        horizon=1, metrics={"train": {"rank_ic_mean": ic},
                                            "valid": {"rank_ic_mean": ic, "rank_icir": 0.3,
                                                      "rank_ic_t": 6.0, "n_ic_days": 500}},
                        provenance=prov, n_tried=10)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _set(path, run_id, **cols) -> None:
    con = sqlite3.connect(path)
    con.execute(f"UPDATE runs SET {', '.join(f'{k} = ?' for k in cols)} WHERE run_id = ?",
                (*cols.values(), run_id))
    con.commit()
    con.close()


def _status(path) -> dict[str, str]:
    with FactorStore(path) as s:                 # opening sweeps
        return {r.run_id: r.status for r in s.runs()}


def _ago(minutes: float) -> str:
    return (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=minutes)).isoformat()


# ------------------------------------------------------------------ interrupted runs
def test_start_run_records_owner_and_heartbeat(tmp_path):
    with FactorStore(tmp_path / "lb.db") as s:
        rid = s.start_run("gp", config={}, seed=1, universe="u", data_root=None)
        r = s.runs()[0]
        assert (r.status, r.pid, r.host) == ("running", os.getpid(), HOST)
        assert r.heartbeat_at == r.started_at
        assert not s.heartbeat(rid)                    # throttled: just started
        assert s.heartbeat(rid, every=0)
        assert s.runs()[0].heartbeat_at > r.heartbeat_at
        beat = s.runs()[0].heartbeat_at
        s.add(rec("close", rid), {})                   # a gate decision is a heartbeat too
        assert s.runs()[0].heartbeat_at > beat
    assert _status(tmp_path / "lb.db") == {rid: "running"}   # this process is alive


def test_runs_of_gone_owners_are_marked_interrupted(tmp_path):
    path = tmp_path / "lb.db"
    with FactorStore(path) as s:
        ids = [s.start_run("gp", config={}, seed=None, universe="u", data_root=None)
               for _ in range(7)]
        s.finish_run(ids[6], n_tried=3)
    dead = _dead_pid()
    _set(path, ids[0], pid=dead)                                     # same host, pid gone
    _set(path, ids[1], started_at="2000-01-01T00:00:00+00:00")       # our pid, reused
    _set(path, ids[2], host="elsewhere", heartbeat_at=_ago(11))      # stale heartbeat
    _set(path, ids[3], host="elsewhere", heartbeat_at=_ago(1))       # fresh heartbeat
    _set(path, ids[4], pid=None, host=None, heartbeat_at=None,       # before schema 4
         started_at=_ago(60))
    _set(path, ids[6], pid=dead)                                     # finished: left alone
    assert _status(path) == {ids[0]: "interrupted", ids[1]: "interrupted",
                             ids[2]: "interrupted", ids[3]: "running", ids[4]: "interrupted",
                             ids[5]: "running", ids[6]: "done"}
    with FactorStore(path) as s:
        summ = {r.run_id: r.summary for r in s.runs()}
        assert f"process {dead} on {HOST} is gone" in summ[ids[0]]["interrupted"]
        assert "no heartbeat for 11 min" in summ[ids[2]]["interrupted"]
        assert s.runs()[0].finished_at is None
        # a run the sweep marked that reports again is running again
        assert s.heartbeat(ids[2], every=0)
        assert {r.run_id: r.status for r in s.runs()}[ids[2]] == "running"
        s.finish_run(ids[0], n_tried=0, status="interrupted")
        assert s.heartbeat(ids[0], every=0)            # finished by the run itself: stays
        assert {r.run_id: r.status for r in s.runs()}[ids[0]] == "interrupted"


def test_stale_threshold_is_a_constant(tmp_path, monkeypatch):
    path = tmp_path / "lb.db"
    with FactorStore(path) as s:
        rid = s.start_run("llm", config={}, seed=None, universe="u", data_root=None)
    _set(path, rid, host="elsewhere", heartbeat_at=_ago(3))
    assert _status(path) == {rid: "running"}
    monkeypatch.setattr(sr, "HEARTBEAT_STALE_S", 60.0)
    assert _status(path) == {rid: "interrupted"}


def test_a_killed_run_is_interrupted_on_the_next_start(tmp_path):
    path = tmp_path / "lb.db"
    code = (f"import os, signal; from factors.store import FactorStore; "
            f"s = FactorStore({str(path)!r}); "
            f"print(s.start_run('gp', config={{}}, seed=1, universe='u', data_root=None), "
            f"flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       check=False)
    assert p.returncode == -9, p.stderr
    rid = p.stdout.strip()
    con = sqlite3.connect(path)                        # as the kill left it
    assert con.execute("SELECT status FROM runs").fetchall() == [("running",)]
    con.close()
    with FactorStore(path) as s:                       # the next process
        other = s.start_run("gp", config={}, seed=2, universe="u", data_root=None)
        assert {r.run_id: r.status for r in s.runs()} == {rid: "interrupted",
                                                          other: "running"}


def test_v4_store_gains_the_owner_columns(tmp_path):
    import factors.store_schema as fs
    p = tmp_path / "v4.db"
    con = sqlite3.connect(p)
    con.executescript(fs._SCHEMA)                        # version 2 ...
    for v in (2, 3):                                     # ... upgraded to 4: no owner columns
        fs.MIGRATIONS[v](con)
    con.execute("INSERT INTO runs (run_id, source, status, config, started_at) VALUES "
                "('old', 'gp', 'running', '{}', ?)", (_ago(30),))
    con.execute("PRAGMA user_version = 4")
    con.commit()
    con.close()
    with FactorStore(p) as s:
        cols = {r[1] for r in s._conn.execute("PRAGMA table_info(runs)")}
        assert {"pid", "host", "heartbeat_at"} <= cols
        assert [(r.run_id, r.status, r.pid) for r in s.runs()] == [("old", "interrupted", None)]


# ------------------------------------------------------------------ the gate in the transaction
def test_gate_sees_a_member_committed_after_the_caller_listed_them(tmp_path):
    path = tmp_path / "lb.db"
    a, b = FactorStore(path), FactorStore(path)
    corr_a = {m.formula: 0.0 for m in a.members("u", 1)}     # both list the (no) members ...
    corr_b = {m.formula: 0.0 for m in b.members("u", 1)}
    asked = []

    def correlate(members):                                  # ... then b's member arrives
        asked.append([m.formula for m in members])
        return {m.formula: 0.95 for m in members}
    assert a.add(rec("ts_mean(close, 5)"), corr_a, correlate=correlate).accepted
    d = b.add(rec("ts_mean(close, 5) * 2"), corr_b, correlate=correlate)
    assert (d.accepted, d.kind) == (False, "correlation") and "ts_mean(close, 5)" in d.reason
    assert asked == [["ts_mean(close, 5)"]]                  # only the member it had not seen
    # without the callback the late member is ignored, as before (or refused with strict)
    assert b.add(rec("ts_mean(close, 5) * 3"), corr_b).accepted
    a.close()
    b.close()


def _racer(path, formula, barrier, queue):
    s = FactorStore(path)
    barrier.wait(30)
    d = s.add(rec(formula), {}, correlate=lambda ms: {m.formula: 0.99 for m in ms})
    queue.put((formula, d.accepted, d.kind))
    s.close()


def test_two_processes_racing_correlated_candidates_admit_one(tmp_path):
    path = tmp_path / "lb.db"
    FactorStore(path).close()
    ctx = multiprocessing.get_context("fork")
    n = 4
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(path, f"ts_mean(close, 5) * {i + 1}", barrier,
                                              queue)) for i in range(n)]
    for p in procs:
        p.start()
    out = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert sum(acc for _, acc, _ in out) == 1, out
    assert sorted(k for _, acc, k in out if not acc) == ["correlation"] * (n - 1)
    with FactorStore(path) as s:
        assert len(s.members()) == 1
