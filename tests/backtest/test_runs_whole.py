"""Runs land whole (issue 12): ``mine combine``, ``mine backtest``, the micro-cap preset and
``mine export`` killed with SIGKILL at exact points never leave a folder that mixes old and new
files, ``latest`` never names an unfinished run, and the next run leaves no temporary file.

The kills come from ``$ALPHAMINE_CRASH_AT`` (:func:`data.io.crash_point`) in forked children
of this process (modules already imported: fast, and no timing involved). One kill goes
through a fresh interpreter to show the hook works outside a fork.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import data.io as dio
import data.staging as st
from backtest.backtest_run import BacktestRunSettings, MicrocapSettings, run_backtest, run_microcap
from backtest.combine_run import CombineSettings, run_combine
from backtest.export import ExportSettings, run_export
from backtest.run_dirs import RUN_FILES, find_latest_targets, read_latest, tidy
from factors.store import FactorStore
from factors.store_records import FactorRecord
from mining.cli_app import load as load_config

REPO = Path(__file__).resolve().parents[2]
COMBINE = {"score.parquet", "score.csv", "factor_weights.parquet", "factor_weights.csv",
           "targets.parquet", "targets.csv", "combine.json"}
BACKTEST = {"nav.parquet", "positions.parquet", "trades.parquet", "rejected.parquet",
            "costs.parquet", "corporate.parquet", "yearly.csv", "performance.json"}
MICROCAP = BACKTEST | {"targets.parquet", "targets.csv"}
KILLED = -signal.SIGKILL


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    from ashare_synth import build_warehouse
    tmp = tmp_path_factory.mktemp("whole")
    root = build_warehouse(tmp / "ashare").root
    p = tmp / "mine.toml"
    p.write_text(f"""
[data]
root = "{root}"
[evaluate]
train = ["2010-01-01", "2020-08-09"]
valid = ["2020-08-10", "2025-07-25"]
test = ["2025-07-28", "2025-08-15"]
embargo = 1
min_listed_days = 3
[store]
path = "{tmp / 'lb.db'}"
[backtest]
universe = "all"
start = "2020-08-10"
out_dir = "{tmp / 'bt'}"
n = 2
top = 2
ic_window = 5
""")
    c = load_config(p)
    with FactorStore(c.store.path) as store:
        for i, (f, ic) in enumerate({"ts_delta(close, 1)": -0.02, "-log(vol)": 0.01}.items()):
            sg = -1 if ic < 0 else 1
            store.add(FactorRecord(formula=f, name=f"f{i}", source="library", universe="all",
                                   horizon=1, metrics={"train": {"rank_ic_mean": ic},
                                                       "valid": {"rank_ic_mean": sg * 0.02,
                                                                 "rank_icir": sg * 0.2,
                                                                 "rank_ic_t": sg * 5.0,
                                                                 "n_ic_days": 500}}),
                      {}, force=True)
    return c


def _child(fn, crash_at: str, setup=None) -> int:
    """Fork; the child runs ``fn()`` with ``$ALPHAMINE_CRASH_AT=crash_at``; its exit status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.environ[dio.CRASH_ENV] = crash_at
            if setup is not None:
                setup()
            fn()
            os._exit(0)
        except BaseException:  # noqa: BLE001 - a child must never return into pytest
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _assert_whole(out: Path) -> None:
    """Every visible run folder under ``out`` is complete; ``latest`` names one of them."""
    for d in out.iterdir():
        if d.is_dir() and not d.name.startswith(".") and d.name != "export":
            assert {p.name for p in d.iterdir()} in (COMBINE, BACKTEST, MICROCAP), d
    if (out / "latest").exists():
        name = (out / "latest").read_text().strip()
        assert not Path(name).name.startswith(".")
        assert read_latest(out) is not None


def _hidden(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith("."))


def _assert_tidy(out: Path) -> None:
    assert _hidden(out) == []
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def _frames(folder: Path) -> dict:
    out = {p.name: pd.read_parquet(p) for p in folder.glob("*.parquet")}
    out["yearly.csv"] = pd.read_csv(folder / "yearly.csv")
    perf = json.loads((folder / "performance.json").read_text())
    out["performance"] = {k: perf[k] for k in ("init_cash", "final_nav", "n_trades")}
    return out


def _same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys() or a["performance"] != b["performance"]:
        return False
    return all(a[k].equals(b[k]) for k in a if k != "performance")


# ------------------------------------------------------------------ combine
def test_killed_combine_never_leaves_a_mix_and_latest_is_never_partial(cfg, tmp_path):
    out = tmp_path / "bt"
    s = CombineSettings.from_config(cfg.backtest, out_dir=out)

    def combine():
        return run_combine(cfg, s)
    first = combine()
    runs = cfg.store.path.parent / "runs"
    # kills: inside the staged folder (files 2 and 5 of 7), before the folder's rename,
    # after it (before `latest`), while writing `latest`; then, with `latest` written, while
    # writing the manifest's snapshot and manifest.json (its folder is staged too)
    points = ["atomic_write#2", "atomic_write#5", "stage.commit", "run.committed",
              "atomic_write#8", "atomic_write#9", "atomic_write#10"]
    for crash in points:
        seen = {d for d in out.iterdir() if not d.name.startswith(".")}
        assert _child(combine, crash) == KILLED, crash
        _assert_whole(out)
        new = {d for d in out.iterdir() if not d.name.startswith(".")} - seen
        if crash in ("atomic_write#9", "atomic_write#10"):
            assert read_latest(out) in new                # complete, and pointed at
            assert _hidden(runs)                          # the manifest's staged folder
        else:
            assert read_latest(out) == first.out_dir, crash
        if crash != "run.committed":                      # each run tidies the last one's
            assert _hidden(out) or _hidden(runs), crash   # leftovers: these are this one's
    visible = [d for d in out.iterdir() if d.is_dir() and not d.name.startswith(".")]
    assert len(visible) == 1 + 4                         # the first + four that committed
    last = combine()                                     # the next run tidies
    _assert_whole(out)
    _assert_tidy(out)
    assert read_latest(out) == last.out_dir
    assert find_latest_targets(out) == last.out_dir / "targets.parquet"
    assert _hidden(runs) == []


def test_killed_in_a_fresh_interpreter(cfg, tmp_path):
    out = tmp_path / "bt"
    code = ("import sys; from mining.cli_app import load; "
            "from backtest.combine_run import CombineSettings, run_combine; "
            f"c = load({str(cfg.source)!r}); "
            f"run_combine(c, CombineSettings.from_config(c.backtest, out_dir={str(out)!r}))")
    env = {**os.environ, dio.CRASH_ENV: "atomic_write#3",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, check=False,
                       capture_output=True)
    assert p.returncode == KILLED, p.stderr.decode()[-2000:]
    assert [d.name for d in out.iterdir() if not d.name.startswith(".")] == []
    assert len(_hidden(out)) == 1 and ".partial-" in _hidden(out)[0]
    tidy(out)                                            # what the next run does first
    _assert_tidy(out)


# ------------------------------------------------------------------ backtest and --force
def test_killed_backtest_and_forced_out_are_all_old_or_all_new(cfg, tmp_path):
    out = tmp_path / "bt"
    tg = run_combine(cfg, CombineSettings.from_config(cfg.backtest, out_dir=out)).out_dir \
        / "targets.parquet"

    def bt(cash, where=None, force=False):
        return run_backtest(cfg, tg, BacktestRunSettings.from_config(
            cfg.backtest, out_dir=out, cash=cash, out=where, force=force))
    ref = {1e6: _frames(bt(1e6).out_dir), 2e6: _frames(bt(2e6).out_dir)}
    before = {d.name for d in out.iterdir()}
    for crash in ("atomic_write#3", "stage.commit"):
        assert _child(lambda: bt(3e6), crash) == KILLED
        _assert_whole(out)
        assert {d.name for d in out.iterdir() if not d.name.startswith(".")} == before
    x = tmp_path / "mine"
    bt(1e6, x)
    assert _same(_frames(x), ref[1e6])
    # killed before the swap: all old; after the swap: all new
    assert _child(lambda: bt(2e6, x, True), "stage.commit") == KILLED
    assert _same(_frames(x), ref[1e6])
    assert _child(lambda: bt(2e6, x, True), "stage.exchanged") == KILLED
    assert _same(_frames(x), ref[2e6])
    # without renameat2: killed between moving the old folder aside and renaming the new one
    assert _child(lambda: bt(1e6, x, True), "stage.moved_aside",
                  setup=lambda: setattr(st, "EXCHANGE", False)) == KILLED
    assert not x.exists()
    tidy(tmp_path)                                       # the next run puts the old one back
    assert _same(_frames(x), ref[2e6])
    bt(1e6, x, True)                                     # a forced run that completes
    assert _same(_frames(x), ref[1e6])
    _assert_tidy(tmp_path)
    tidy(out)
    _assert_tidy(out)


def test_force_never_replaces_a_folder_with_other_files(cfg, tmp_path):
    from backtest.errors import BacktestError
    x = tmp_path / "mine"
    x.mkdir()
    (x / "notes.txt").write_text("mine")
    (x / "nav.parquet").write_text("old run")
    with pytest.raises(BacktestError, match="holds files no run wrote.*notes.txt"):
        run_microcap(cfg, MicrocapSettings.from_config(cfg.backtest),
                     BacktestRunSettings.from_config(cfg.backtest, out=x, force=True))
    assert sorted(p.name for p in x.iterdir()) == ["nav.parquet", "notes.txt"]
    assert RUN_FILES >= MICROCAP | COMBINE


# ------------------------------------------------------------------ micro-cap preset
def test_killed_microcap_leaves_latest_on_the_last_complete_run(cfg, tmp_path):
    out = tmp_path / "bt"
    pre = MicrocapSettings.from_config(cfg.backtest, mv_min=0.0, mv_max=1e12, hold=2)
    s = BacktestRunSettings.from_config(cfg.backtest, out_dir=out, end="2020-09-04")

    def micro():
        return run_microcap(cfg, pre, s)
    first = micro()
    for crash in ("atomic_write#2", "atomic_write#9", "stage.commit"):
        assert _child(micro, crash) == KILLED
        _assert_whole(out)
        assert read_latest(out) == first.out_dir
    last = micro()
    assert read_latest(out) == last.out_dir
    _assert_whole(out)
    _assert_tidy(out)


# ------------------------------------------------------------------ export day files
def test_killed_export_day_files_end_all_old_or_all_new(cfg, tmp_path):
    out = tmp_path / "bt"
    run_combine(cfg, CombineSettings.from_config(cfg.backtest, out_dir=out))
    exp = out / "export"

    def export(cash, where=exp, force=True):
        return run_export(cfg, ExportSettings(cash=cash, out_dir=out, out=where, force=force))

    def day(folder: Path) -> dict:
        return {p.name: p.read_text() for p in sorted(folder.iterdir())}
    export(1e6)
    old = day(exp)
    export(5e6, tmp_path / "ref")
    new = day(tmp_path / "ref")
    assert old != new and old.keys() == new.keys() and len(old) == 3
    assert _child(lambda: export(5e6), "write_together.file#2") == KILLED
    assert {k: v for k, v in day(exp).items() if not k.startswith(".")} == old
    assert _child(lambda: export(5e6), "write_together.rename#1") == KILLED
    assert [k for k in day(exp) if k.endswith(".pending")]   # killed mid-renames: a journal
    st.clean_stale(exp)                                  # the next export (or the adapter)
    assert day(exp) == new
    export(1e6)
    assert day(exp) == old
    _assert_tidy(exp)


def test_targets_inside_an_unfinished_run_are_refused(cfg, tmp_path):
    from backtest.errors import BacktestError
    part = tmp_path / f".combine-x.partial-{st.HOST}-1-abcdef"
    part.mkdir()
    pd.DataFrame({"trade_date": [pd.Timestamp("2020-08-12")], "ts_code": ["600000.SH"],
                  "target_weight": [0.5]}).to_parquet(part / "targets.parquet")
    s = BacktestRunSettings.from_config(cfg.backtest, out_dir=tmp_path / "bt")
    with pytest.raises(BacktestError, match="unfinished run"):
        run_backtest(cfg, part / "targets.parquet", s)
    with pytest.raises(BacktestError, match="unfinished run"):
        run_export(cfg, ExportSettings(cash=1e6, targets=part / "targets.parquet",
                                       out_dir=tmp_path / "bt"))
    # the fallback search of `latest` skips hidden folders too
    (tmp_path / "bt").mkdir(exist_ok=True)
    os.rename(part, tmp_path / "bt" / part.name)
    with pytest.raises(BacktestError, match="no targets file"):
        find_latest_targets(tmp_path / "bt")


def test_tidy_removes_old_style_temp_files_only_in_run_folders(tmp_path):
    run = tmp_path / "combine-ic-all-20260101T000000-abcdef"
    other = tmp_path / "my-notes"
    for d in (run, other, tmp_path / "export"):
        d.mkdir()
        (d / "targets.parquet.k3j9x_2a.tmp").write_text("left by mkstemp")
    (run / "new.parquet.k3j9x_2b.tmp").write_text("written after this process started")
    old = 1_000_000_000
    for f in tmp_path.rglob("*k3j9x_2a.tmp"):
        os.utime(f, (old, old))
    removed = {p.relative_to(tmp_path).as_posix() for p in tidy(tmp_path)}
    assert removed == {f"{run.name}/targets.parquet.k3j9x_2a.tmp",
                       "export/targets.parquet.k3j9x_2a.tmp"}
