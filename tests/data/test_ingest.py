"""The ingest engine and ``mine data``: layout, incremental no-op, failures, dry run, and
resuming after SIGKILL at random points with a byte-identical result."""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from fake_provider import FakeProvider
from ingest_kill import END1, END2, NOW, START, make_cfg, run_all

import data.datasets
from data import ingest
from data.errors import DataError
from data.ingest_store import status

# Process kills, not power loss, are under test: skip fsync to keep the tests fast.
os.environ["ALPHAMINE_INGEST_NOSYNC"] = "1"
data.datasets.FSYNC = False

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CODES = ["000001.SZ", "000002.SZ", "001380.SZ", "600100.SH", "600519.SH"]


def _now():
    return NOW


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ref") / "wh"
    run_all(root, 3)
    return root


def _digest(root: Path) -> dict[str, str]:
    out = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
           for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith("_jobs")}
    con = sqlite3.connect(root / "_jobs.sqlite")
    out["_jobs"] = repr(con.execute("SELECT dataset, part, rows, checksum, merged FROM jobs "
                                    "WHERE status='done' ORDER BY dataset, part").fetchall())
    con.close()
    return out


def test_layout_and_manager(reference):
    root = reference
    for rel in ("trade_cal.parquet", "stock_basic.parquet", "daily/daily_2024.parquet",
                "daily_basic/daily_basic_2024.parquet", "stk_limit/stk_limit_2024.parquet",
                "suspend_d/suspend_d_2024.parquet", "namechange.parquet", "index_daily.parquet",
                "index_weight/index_weight_2024.parquet", "index_member.parquet",
                "industry_sw.parquet", "dividend.parquet", "fina_indicator.parquet",
                "income.parquet", "balancesheet.parquet", "cashflow.parquet", "_jobs.sqlite"):
        assert (root / rel).is_file(), rel
    assert not (root / "_staging").exists()
    daily = pd.read_parquet(root / "daily/daily_2024.parquet")
    assert str(daily["trade_date"].dtype) == "datetime64[ns]"
    assert not daily.duplicated(["ts_code", "trade_date"]).any()
    assert daily.equals(daily.sort_values(["ts_code", "trade_date"]).reset_index(drop=True))
    assert daily["adj_factor"].notna().all()
    sb = pd.read_parquet(root / "stock_basic.parquet")
    assert set(sb["list_status"]) == {"L", "D"} and len(sb) == 10
    assert (pd.read_parquet(root / "namechange.parquet")["name"] == "ST星源").any()
    from data.manager import DataManager
    dm = DataManager(root)
    close = dm.panel("close", START, END2, codes=CODES)
    assert close.shape == (len(dm.calendar(START, END2)), len(CODES))
    assert close["600100.SH"].loc["2024-01-19":].isna().all()      # delisted
    assert close["000002.SZ"].loc["2024-01-16":"2024-01-18"].notna().all()
    st = {s.dataset: s for s in status(root)}
    assert st["daily"].gaps == [] and st["daily"].last == END2 and st["daily"].failed == 0


def test_update_is_noop_when_up_to_date(reference, tmp_path):
    import shutil
    root = tmp_path / "wh"
    shutil.copytree(reference, root)
    before = _digest(root)
    p = FakeProvider(3)
    run = ingest.update(make_cfg(root), p, end=END2, root=root, now=_now)
    assert run.ok and p.calls == {} and run.calls == {}
    assert _digest(root) == before


def test_empty_trading_day_fails_and_resumes(tmp_path):
    root = tmp_path / "wh"
    bad = FakeProvider(3, fail={("daily_basic", "20240118"): "empty",
                                ("stk_limit", "20240122"): RuntimeError("boom")})
    run = ingest.bootstrap(make_cfg(root), bad, start=START, end=END1, root=root, now=_now)
    assert run.status == "failed" and not run.ok
    assert any("daily_basic 20240118" in f and "2024-01-18" in f for f in run.failed)
    st = {s.dataset: s for s in status(root)}
    assert st["daily_basic"].failed == 1 and "2024-01-18" in st["daily_basic"].gaps
    good = FakeProvider(3)
    run = ingest.update(make_cfg(root), good, end=END1, root=root, now=_now)
    assert run.ok and good.calls == {"daily_basic": 1, "stk_limit": 1}
    assert status(root)[[s.dataset for s in status(root)].index("daily_basic")].gaps == []


def test_dry_run_counts_calls_without_calling(tmp_path):
    root = tmp_path / "wh"
    ingest.bootstrap(make_cfg(root), FakeProvider(3), start=START, end=END1, root=root,
                     now=_now)
    plan = ingest.update(make_cfg(root), None, end=END2, root=root, dry_run=True, now=_now)
    assert plan.dry_run and plan.calls["daily"] == 4 and plan.calls["adj_factor"] == 4
    assert plan.est_seconds == pytest.approx(60 * sum(plan.calls.values()) / 200)
    p = FakeProvider(3)
    run = ingest.update(make_cfg(root), p, end=END2, root=root, now=_now)
    assert run.calls == plan.calls == p.calls


def test_refuses_foreign_root(tmp_path):
    (tmp_path / "snap").mkdir()
    (tmp_path / "snap" / "daily").mkdir()
    with pytest.raises(DataError, match="refusing to write"):
        ingest.bootstrap(make_cfg(tmp_path / "snap"), FakeProvider(), start=START, end=END1,
                         now=_now)
    with pytest.raises(DataError, match="bootstrap"):
        ingest.update(make_cfg(tmp_path / "snap"), FakeProvider(), root=tmp_path / "snap")
    assert not (tmp_path / "snap" / "_jobs.sqlite").exists()


def test_expected_end_cutoff():
    days = pd.bdate_range("2024-01-01", "2024-01-31")
    sh = ingest.SHANGHAI
    assert ingest.expected_end(days, dt.datetime(2024, 1, 10, 16, 59, tzinfo=sh)) == \
        pd.Timestamp("2024-01-09")
    assert ingest.expected_end(days, dt.datetime(2024, 1, 10, 17, 0, tzinfo=sh)) == \
        pd.Timestamp("2024-01-10")
    assert ingest.expected_end(days, dt.datetime(2024, 1, 14, 12, tzinfo=sh)) == \
        pd.Timestamp("2024-01-12")


# ------------------------------------------------------------------ CLI
def test_cli(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mining.cli import app
    r = CliRunner()
    root = tmp_path / "wh"
    monkeypatch.delenv("TUSHARE_TOKEN", raising=False)
    res = r.invoke(app, ["data", "bootstrap", "--root", str(root), "--start", START])
    assert res.exit_code == 2 and "TUSHARE_TOKEN" in res.output
    res = r.invoke(app, ["data", "bootstrap", "--root", str(root), "--start", "2024-13-01"])
    assert res.exit_code == 2 and "--start" in res.output
    monkeypatch.setenv("TUSHARE_TOKEN", "secret-token-123")
    fake = FakeProvider(3, fail={("daily", "20240117"): "empty"})
    monkeypatch.setattr(ingest, "make_provider", lambda cfg: fake)
    res = r.invoke(app, ["data", "bootstrap", "--root", str(root), "--start", START,
                         "--end", END1])
    assert res.exit_code == 1 and "2024-01-17" in res.output
    fake.fail.clear()
    res = r.invoke(app, ["data", "update", "--root", str(root), "--end", END2, "--dry-run",
                         "--json"])
    assert res.exit_code == 0 and '"dry_run": true' in res.output
    res = r.invoke(app, ["data", "update", "--root", str(root), "--end", END2])
    assert res.exit_code == 0, res.output
    res = r.invoke(app, ["data", "status", "--root", str(root), "--json"])
    assert res.exit_code == 0 and '"daily_basic"' in res.output
    assert "secret-token" not in (root / "_jobs.sqlite").read_bytes().decode("latin-1")


# ------------------------------------------------------------------ SIGKILL resume
def _killed_child(root: Path, env: dict[str, str]) -> int:
    """Fork; the child runs bootstrap + update with the faults in ``env``; its exit status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.environ.update(env)
            import ingest_kill
            ingest_kill._arm_merge_kill()
            run_all(root, 3)
            os._exit(0)
        except BaseException:  # noqa: BLE001 - a child must never return into pytest
            os._exit(3)
    _, st = os.waitpid(pid, 0)
    return -os.WTERMSIG(st) if os.WIFSIGNALED(st) else os.WEXITSTATUS(st)


def test_sigkill_resume_is_byte_identical(reference, tmp_path):
    root = tmp_path / "wh"
    rnd = random.Random(10)
    env0 = {"ALPHAMINE_INGEST_NOSYNC": "1", "PYTHONPATH": str(REPO)}
    # Two kills through the script in a real interpreter ...
    kills = 0
    for n in (3, 9):
        p = subprocess.run([sys.executable, str(HERE / "ingest_kill.py"), str(root), "3"], check=False,
                           env={**os.environ, **env0, "FAKE_KILL_AT_CALL": str(n)}, cwd=REPO)
        assert p.returncode == -signal.SIGKILL
        kills += 1
    # ... then 20+ more in forked children: after N calls, or around a merge's file write.
    rcs = []
    for i in range(22):
        if i % 2:
            env = {"FAKE_KILL_AT_CALL": str(rnd.randint(1, 5))}
        else:
            env = {"KILL_AT_MERGE_WRITE": str(rnd.randint(1, 3)),
                   "KILL_MODE": rnd.choice(["before", "after"])}
        rc = _killed_child(root, {**env0, **env})
        rcs.append(rc)
        kills += rc == -signal.SIGKILL
        if rc == 0:
            break
    assert kills >= 20, rcs
    assert _killed_child(root, env0) == 0
    assert _digest(root) == _digest(reference)
    assert not list(root.rglob("*.tmp"))
