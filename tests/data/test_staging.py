"""Whole writes (issue 12, "Runs land whole"): data.io.atomic_write (umask, fsync), the staged
folders and file groups of data.staging, and the cleanup of what killed writers left.

Kills are exact: ``$ALPHAMINE_CRASH_AT`` makes :func:`data.io.crash_point` SIGKILL the process
at a named place, in a forked child (no sleeps, no polling). "Dead" owners are real processes
that have exited.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import data.io as dio
import data.staging as st
from data.errors import AlphamineError
from data.io import atomic_write, write_csv_atomic, write_json_atomic
from data.procs import HOST, PROCESS_START, process_alive
from data.staging import StagedDir, clean_stale, is_partial, write_together


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _child(fn, crash_at: str | None = None) -> int:
    """Fork; the child runs ``fn`` with ``$ALPHAMINE_CRASH_AT``; its exit status (-9 =
    SIGKILL)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            if crash_at:
                os.environ[dio.CRASH_ENV] = crash_at
            fn()
            os._exit(0)
        except BaseException:  # noqa: BLE001 - a child must never return into pytest
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _files(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


@pytest.fixture
def umask():
    old = os.umask(0o027)
    try:
        yield 0o027
    finally:
        os.umask(old)


# ------------------------------------------------------------------ one file
def test_atomic_write_uses_the_umask_not_0600(tmp_path, umask):
    want = 0o666 & ~umask
    a = atomic_write(tmp_path / "a.txt", lambda p: Path(p).write_text("x"))
    b = write_json_atomic(tmp_path / "b.json", {"x": float("nan")})
    c = write_csv_atomic(pd.DataFrame({"x": [1]}), tmp_path / "c.csv", index=False)
    d = atomic_write(tmp_path / "d.parquet",
                     lambda p: pd.DataFrame({"x": [1.0]}).to_parquet(p, index=False))
    for f in (a, b, c, d):
        assert f.stat().st_mode & 0o777 == want, (f, oct(f.stat().st_mode))
    assert json.loads(b.read_text()) == {"x": None}
    s = StagedDir(tmp_path / "run")
    assert s.path.stat().st_mode & 0o777 == 0o777 & ~umask
    atomic_write(s.path / "f", lambda p: Path(p).write_text("1"))
    s.commit()
    assert (tmp_path / "run" / "f").stat().st_mode & 0o777 == want
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json", "c.csv",
                                                          "d.parquet", "run"]


def test_atomic_write_fsyncs_the_file_before_the_rename_and_the_folder_after(tmp_path,
                                                                          monkeypatch):
    events = []
    monkeypatch.setattr(dio, "fsync_file", lambda p: events.append(("file", Path(p).name)))
    monkeypatch.setattr(dio, "fsync_dir", lambda p: events.append(("dir", Path(p).name)))
    real = os.replace
    monkeypatch.setattr(dio.os, "replace",
                        lambda a, b: (events.append(("rename", Path(b).name)), real(a, b)))
    atomic_write(tmp_path / "x.csv", lambda p: Path(p).write_text("1"))
    kinds = [e[0] for e in events]
    assert kinds == ["file", "rename", "dir"], events
    assert events[0][1].startswith(".x.csv.") and events[0][1].endswith(".tmp")
    assert events[2][1] == tmp_path.name


def test_failed_write_leaves_target_and_no_temp(tmp_path):
    (tmp_path / "t.txt").write_text("old")

    def boom(p):
        Path(p).write_text("half")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "t.txt", boom)
    assert _files(tmp_path) == {"t.txt": "old"}


def test_killed_write_leaves_target_and_a_temp_the_next_cleanup_removes(tmp_path):
    (tmp_path / "t.txt").write_text("old")
    rc = _child(lambda: atomic_write(tmp_path / "t.txt", lambda p: Path(p).write_text("new")),
                "atomic_write")
    assert rc == -signal.SIGKILL
    assert (tmp_path / "t.txt").read_text() == "old"
    left = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and left[0].startswith(".t.txt.")
    assert clean_stale(tmp_path) and _files(tmp_path) == {"t.txt": "old"}


# ------------------------------------------------------------------ cleanup rules
def test_clean_stale_keeps_live_owners_and_recent_foreign_entries(tmp_path):
    dead = _dead_pid()
    mine = f"{HOST}-{os.getpid()}-abcdef"
    entries = {f".a.{HOST}-{dead}-abcdef.tmp": "gone",        # dead owner: removed
               f".b.{mine}.tmp": "alive",                      # this process: kept
               ".c.otherhost-1-abcdef.tmp": "foreign, recent",  # another host: kept
               ".d.otherhost-1-abcdef.tmp": "foreign, old",    # ... removed when old
               "e.tmp": "not ours", ".f.tmp": "not ours"}
    for name, text in entries.items():
        (tmp_path / name).write_text(text)
    old = time.time() - st.STALE_FOREIGN_S - 60
    os.utime(tmp_path / ".d.otherhost-1-abcdef.tmp", (old, old))
    (tmp_path / f".r.partial-{HOST}-{dead}-abcdef").mkdir()
    (tmp_path / f".r.partial-{HOST}-{dead}-abcdef" / "x").write_text("1")
    (tmp_path / f".s.partial-{mine}").mkdir()
    removed = {p.name for p in clean_stale(tmp_path)}
    assert removed == {f".a.{HOST}-{dead}-abcdef.tmp", ".d.otherhost-1-abcdef.tmp",
                       f".r.partial-{HOST}-{dead}-abcdef"}
    assert {p.name for p in tmp_path.iterdir()} == {
        f".b.{mine}.tmp", ".c.otherhost-1-abcdef.tmp", "e.tmp", ".f.tmp", f".s.partial-{mine}"}


def test_process_alive():
    assert process_alive(os.getpid())
    assert not process_alive(_dead_pid())
    assert not process_alive(None) and not process_alive(0)
    # the id of a process younger than the owner's last sign of life was reused
    assert not process_alive(os.getpid(), not_after=PROCESS_START - 3600)
    assert process_alive(os.getpid(), not_after=time.time())


def test_is_partial():
    assert is_partial(f"/x/.run.partial-{HOST}-12-abcdef/targets.parquet")
    assert is_partial(f".run.old-{HOST}-12-abcdef")
    assert not is_partial("/x/combine-ic-all-20260101T000000-abcdef/targets.parquet")


# ------------------------------------------------------------------ staged folders
def test_staged_folder_lands_whole_or_not_at_all(tmp_path):
    with StagedDir(tmp_path / "run") as s:
        (s.path / "a").write_text("1")
        assert not (tmp_path / "run").exists()           # nothing visible before the commit
    assert _files(tmp_path / "run") == {"a": "1"} and os.listdir(tmp_path) == ["run"]
    with pytest.raises(RuntimeError):
        with StagedDir(tmp_path / "run2") as s:
            (s.path / "a").write_text("1")
            raise RuntimeError
    assert os.listdir(tmp_path) == ["run"]                # discarded
    s = StagedDir(tmp_path / "run")                       # exists, no replace: refused
    (s.path / "b").write_text("2")
    with pytest.raises(AlphamineError, match="already holds files"):
        s.commit()
    s.discard()
    assert _files(tmp_path / "run") == {"a": "1"} and os.listdir(tmp_path) == ["run"]
    (tmp_path / "empty").mkdir()                          # an empty folder is simply replaced
    with StagedDir(tmp_path / "empty") as s:
        (s.path / "c").write_text("3")
    assert _files(tmp_path / "empty") == {"c": "3"}


@pytest.mark.parametrize("exchange", [True, False])
def test_replace_swaps_the_whole_folder(tmp_path, monkeypatch, exchange):
    monkeypatch.setattr(st, "EXCHANGE", exchange)
    (tmp_path / "run").mkdir()
    for n in ("a", "b", "stale"):
        (tmp_path / "run" / n).write_text("old")
    with StagedDir(tmp_path / "run", replace=True) as s:
        (s.path / "a").write_text("new")
        (s.path / "b").write_text("new")
    assert _files(tmp_path / "run") == {"a": "new", "b": "new"}
    assert os.listdir(tmp_path) == ["run"]


def _replace_run(tmp_path, exchange: bool):
    def run():
        st.EXCHANGE = exchange
        with StagedDir(tmp_path / "run", replace=True) as s:
            for n in ("a", "b"):
                atomic_write(s.path / n, lambda p: Path(p).write_text("new"))
    return run


@pytest.mark.parametrize("exchange,crash,after", [
    (True, "atomic_write#2", "old"), (True, "stage.commit", "old"),
    (True, "stage.exchanged", "new"),
    (False, "stage.commit", "old"), (False, "stage.moved_aside", "old")])
def test_killed_replace_leaves_all_old_or_all_new(tmp_path, exchange, crash, after):
    (tmp_path / "run").mkdir()
    for n in ("a", "b"):
        (tmp_path / "run" / n).write_text("old")
    assert _child(_replace_run(tmp_path, exchange), crash) == -signal.SIGKILL
    if crash == "stage.moved_aside":                      # between the two renames
        assert not (tmp_path / "run").exists()
    else:
        assert _files(tmp_path / "run") == {"a": after, "b": after}
    assert len(os.listdir(tmp_path)) > 1                  # the killed run's leftovers ...
    clean_stale(tmp_path)                                 # ... tidied by the next run
    assert os.listdir(tmp_path) == ["run"]
    assert _files(tmp_path / "run") == {"a": after, "b": after}


# ------------------------------------------------------------------ file groups
def _group(folder: Path, text: str):
    return lambda: write_together(folder, {n: (lambda p: Path(p).write_text(text))
                                           for n in ("t.csv", "q.csv", "o.csv")}, label="day")


@pytest.mark.parametrize("crash,after", [
    ("write_together.file#2", "old"), ("write_together.journal", "new"),
    ("write_together.rename#1", "new"), ("write_together.rename#2", "new")])
def test_killed_group_write_ends_all_old_or_all_new(tmp_path, crash, after):
    _group(tmp_path, "old")()
    assert _files(tmp_path) == {"o.csv": "old", "q.csv": "old", "t.csv": "old"}
    assert _child(_group(tmp_path, "new"), crash) == -signal.SIGKILL
    clean_stale(tmp_path)
    assert _files(tmp_path) == {"o.csv": after, "q.csv": after, "t.csv": after}
