"""The ingest through the real path: the real ``tushare`` client -> the local Tushare Pro server
(``tushare_server.py``) -> ``mine data bootstrap | update``, with scripted server faults
(rate limit, HTTP 500, timeout, truncated JSON, reset, server error, an empty reply for a
trading day) and the update process SIGKILLed at random points (at the N-th HTTP request, after
a random delay, around a merge's file write) more than 20 times. A resumed update leaves a
warehouse byte-for-byte equal (sha256 of every file, job checksums) to an uninterrupted one,
with nothing duplicated or lost, and the token appears in no file and no log."""
from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from ingest_server_kill import arm, run_cli
from tushare_server import TEST_TOKEN, make_market, serve
from typer.testing import CliRunner

import data.datasets
from data.config import WORK_DIR
from mining.cli import app

pytestmark = pytest.mark.slow

# Process kills, not power loss, are under test: skip fsync to keep the test fast.
os.environ["ALPHAMINE_INGEST_NOSYNC"] = "1"
data.datasets.FSYNC = False

T0 = time.time()


def _iso(d: str) -> str:
    return f"{d[:4]}-{d[4:6]}-{d[6:]}"


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    """The server on a small market, a config pointing at it, and a reference warehouse made
    by an uninterrupted bootstrap + update through the CLI."""
    market = make_market(seed=11, n_stocks=12, n_days=30)
    url, stop = serve(market)
    tmp = tmp_path_factory.mktemp("srv")
    home = tmp / "home"
    home.mkdir()
    cfg = tmp / "mine.toml"
    cfg.write_text(f"""
[data]
root = "{tmp / 'unused'}"
cache_dir = "{tmp / 'cache'}"
[tushare]
http_url = "{url}"
indices = ["000300.SH", "000905.SH"]
timeout = 1.0
retry_wait = 0.01
rate_limit_wait = 0.02
max_retries = 5
""")
    days = market.trade_days
    start, mid, end = _iso(days[0]), _iso(days[19]), _iso(days[-1])
    env = {"TUSHARE_TOKEN": TEST_TOKEN, "HOME": str(home), "ALPHAMINE_INGEST_NOSYNC": "1"}
    ref = tmp / "ref"
    outs = []
    for args in (["bootstrap", "--start", start, "--end", mid], ["update", "--end", end]):
        r = CliRunner().invoke(app, ["--config", str(cfg), "data", args[0], "--root", str(ref),
                                     *args[1:]], env=env)
        assert r.exit_code == 0, r.output
        outs.append(r.output)
    yield {"market": market, "url": url, "stop": stop, "tmp": tmp, "home": home, "cfg": cfg,
           "env": env, "start": start, "mid": mid, "end": end, "ref": ref, "outs": outs}
    stop()


def _digest(root: Path) -> dict[str, str]:
    """sha256 of every file but the job table, plus the job table's done parts."""
    out = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
           for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith("_jobs")}
    con = sqlite3.connect(root / "_jobs.sqlite")
    out["_jobs"] = repr(con.execute("SELECT dataset, part, rows, checksum, merged FROM jobs "
                                    "WHERE status='done' ORDER BY dataset, part").fetchall())
    con.close()
    return out


def _clean(root: Path) -> None:
    """No temp file, no staged part left; no duplicated ``daily`` row; every day present."""
    assert not list(root.rglob("*.tmp")), list(root.rglob("*.tmp"))
    staging = root / "_staging"
    assert not staging.exists() or not [p for p in staging.rglob("*") if p.is_file()]
    daily = pd.read_parquet(root / "daily")
    assert not daily.duplicated(["ts_code", "trade_date"]).any()
    con = sqlite3.connect(root / "_jobs.sqlite")
    bad = con.execute("SELECT dataset, part, status FROM jobs WHERE status != 'done'").fetchall()
    con.close()
    assert bad == []


def _cli(bed, root: Path, *args: str):
    return CliRunner().invoke(app, ["--config", str(bed["cfg"]), "data", args[0], "--root",
                                    str(root), *args[1:]], env=bed["env"])


def test_reference_is_complete(bed):
    ref, m = bed["ref"], bed["market"]
    _clean(ref)
    daily = pd.read_parquet(ref / "daily")
    assert sorted(daily.trade_date.dt.strftime("%Y%m%d").unique()) == m.trade_days
    want = m.tables["daily"]
    assert len(daily) == len(want)               # nothing lost, nothing doubled
    r = _cli(bed, ref, "update", "--end", bed["end"], "--json")     # up to date: no call
    assert r.exit_code == 0, r.output
    assert '"calls": {}' in r.stdout or re.search(r'"calls": \{\s*\}', r.stdout), r.stdout


def test_scripted_faults_are_retried_and_an_empty_day_resumes(bed):
    root = bed["tmp"] / "faults"
    f = bed["stop"].faults
    f.delay = 2.5                               # > [tushare] timeout: the client times out
    scripted = {"daily": ["rate_limit", "http500", "timeout"],
                "adj_factor": ["truncated", "reset"],
                "stk_limit": ["server", "rate_limit", "truncated"],
                "stock_basic": ["http500", "truncated"],
                "index_weight": ["timeout"],
                "suspend_d": ["reset", "server"],
                # the 3rd daily_basic request (an open day with data) answers zero rows
                "daily_basic": ["ok", "ok", "empty_items"]}
    for api, kinds in scripted.items():
        f.add(api, *kinds)
    before = dict(f.injected)
    r = _cli(bed, root, "bootstrap", "--start", bed["start"], "--end", bed["mid"])
    assert all(not f.queues.get(api) for api in scripted), f.queues   # every fault was served
    got = {k: v - before.get(k, 0) for k, v in f.injected.items()}
    for kind in ("rate_limit", "http500", "timeout", "truncated", "reset", "server",
                 "empty_items"):
        assert got.get(kind, 0) >= 1, got
    assert r.exit_code == 1, r.output           # the empty day's part failed, named with its day
    day = _iso(bed["market"].trade_days[2])
    assert re.search(rf"daily_basic \S*: .*no rows for open day {day}", r.output), r.output
    assert r.output.count("failed:") == 1, r.output         # transient faults were retried
    con = sqlite3.connect(root / "_jobs.sqlite")
    failed = con.execute("SELECT dataset FROM jobs WHERE status='failed'").fetchall()
    con.close()
    assert failed == [("daily_basic",)]
    r2 = _cli(bed, root, "update", "--end", bed["end"])     # no fault now: completes the part
    assert r2.exit_code == 0, r2.output
    for out in (r.output, r2.output):
        assert TEST_TOKEN not in out
    _clean(root)
    assert _digest(root) == _digest(bed["ref"])


# ------------------------------------------------------------------ SIGKILL resume
def _child(bed, root: Path, log: Path, *, request: int = 0, merge: int = 0,
           mode: str = "after", delay: float | None = None) -> int:
    """Fork; the child runs `mine data bootstrap` + `update` (killing itself at the given
    request/merge write, or killed by us after ``delay`` s); its exit status (-9: killed)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 3
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout = sys.stderr = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
            os.environ.update(bed["env"])
            arm(request, merge, mode)
            code = run_cli(bed["cfg"], root, bed["start"], bed["mid"], bed["end"])
        except BaseException:  # noqa: BLE001 - a child must never return into pytest
            import traceback
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            os._exit(code)
    if delay is not None:
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.005)
        else:
            os.kill(pid, signal.SIGKILL)
            _, st = os.waitpid(pid, 0)
    else:
        _, st = os.waitpid(pid, 0)
    return -os.WTERMSIG(st) if os.WIFSIGNALED(st) else os.WEXITSTATUS(st)


def test_sigkill_at_random_points_resumes_byte_identical(bed):
    root = bed["tmp"] / "killed"
    log = bed["home"] / "children.log"
    rnd = random.Random(10)
    f = bed["stop"].faults
    f.queues.clear()
    # random transient faults (no timeouts: they only cost time) while the kills go on
    f.prob, f.kinds = 0.05, ("rate_limit", "http500", "truncated", "reset", "server")
    rcs, kills = [], 0
    try:
        for i in range(40):
            how = ("request", "delay", "merge")[i % 3]
            mode = rnd.choice(["before", "after"])
            if how == "request":
                rc = _child(bed, root, log, request=rnd.randint(1, 8), mode=mode)
            elif how == "merge":
                rc = _child(bed, root, log, merge=rnd.randint(1, 3), mode=mode)
            else:
                rc = _child(bed, root, log, delay=rnd.uniform(0.05, 0.6))
            rcs.append((how, rc))
            kills += rc == -signal.SIGKILL
            assert rc in (0, -signal.SIGKILL), (rcs, log.read_text()[-3000:])
            if rc == 0 or kills >= 24:
                break
    finally:
        f.prob = 0.0
    assert kills >= 20, rcs
    con = sqlite3.connect(root / "_jobs.sqlite")
    n_daily = con.execute("SELECT count(*) FROM jobs WHERE dataset='daily' AND status='done'")
    n_daily = n_daily.fetchone()[0]
    con.close()
    assert n_daily > 20, n_daily        # the kills reached the update (bootstrap: 20 days)
    assert _child(bed, root, log) == 0, log.read_text()[-3000:]      # resume, no fault
    _clean(root)
    assert _digest(root) == _digest(bed["ref"])
    assert TEST_TOKEN not in log.read_text()


def test_token_in_no_file(bed):
    """After every run: no file under the warehouses, the children's HOME and logs, or the
    ``.alphamine`` work folder (files written during this module) holds the token."""
    tok = TEST_TOKEN.encode()
    for out in bed["outs"]:
        assert TEST_TOKEN not in out
    checked = 0
    for p in bed["tmp"].rglob("*"):
        if p.is_file():
            assert tok not in p.read_bytes(), p
            checked += 1
    assert checked > 30
    if WORK_DIR.exists():
        for p in WORK_DIR.rglob("*"):
            if p.is_file() and p.stat().st_mtime >= T0 - 1:
                assert tok not in p.read_bytes(), p
