"""Tests for factors/store.py: the SQLite factor leaderboard and its admission gates."""
from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import factors.store_schema as fs
from data.errors import AlphamineError
from factors.errors import StoreError
from factors.store import FactorStore
from factors.store_records import FactorRecord, GateDecision, gate, to_frame

REPO = Path(__file__).resolve().parents[2]


def rec(formula="ts_mean(close, 5)", *, ic=0.03, icir=0.3, universe="csi300", horizon=1,
        source="gp", run_id=None, name=None, extra_valid=None, **kw) -> FactorRecord:
    valid = {"rank_ic_mean": ic, "rank_icir": icir, "turnover": 0.2,
             "rank_ic_t": math.copysign(8.0, ic), "n_ic_days": 700}
    valid.update(extra_valid or {})
    prov = {"seed": 7, "generation": 2}
    if run_id is not None:
        prov["run_id"] = run_id
    return FactorRecord(formula=formula, name=name or formula[:12], source=source,
                        universe=universe, horizon=horizon,
                        metrics={"train": {"rank_ic_mean": ic * 1.5, "rank_icir": icir * 1.2},
                                 "valid": valid},
                        provenance=prov, n_tried=100, **kw)


@pytest.fixture
def store(tmp_path):
    with FactorStore(tmp_path / "lb.db") as s:
        yield s


def corr_all(store, r, value=0.0):
    return {m.formula: value for m in store.members(r.universe, r.horizon)}


def count_rows(path) -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT COUNT(*) FROM factors").fetchone()[0]
    finally:
        con.close()


# ------------------------------------------------------------------ schema
def test_schema_created_in_new_dir_and_reopened(tmp_path):
    path = tmp_path / "a" / "b" / "lb.db"
    with FactorStore(path) as s:
        d = s.add(rec(), {})
        assert d.accepted and isinstance(d.id, int)
    assert path.is_file()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == fs.SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    with FactorStore(path) as s:
        assert s._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert s._conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
        got = s.get("ts_mean(close, 5)", "csi300", 1)
        assert got is not None and got.id == d.id
        assert got.metrics == rec().metrics and got.provenance == rec().provenance
        # n_tried is the store's count of trials (the record's 100 is replaced)
        assert got.n_tried == 1 and got.source == "gp" and got.test_unsealed_at is None
        assert got.haircut == "bhy" and 0 <= got.adj_p < 1e-9
        created = dt.datetime.fromisoformat(got.created_at)
        assert created.utcoffset() == dt.timedelta(0)
        assert abs((dt.datetime.now(dt.timezone.utc) - created).total_seconds()) < 60


def test_open_rejects_foreign_and_newer_files(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        FactorStore(junk)
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE prices (x)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not an alphamine leaderboard"):
        FactorStore(other)
    newer = tmp_path / "newer.db"
    FactorStore(newer).close()
    con = sqlite3.connect(newer)
    con.execute(f"PRAGMA user_version = {fs.SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(StoreError, match="newer"):
        FactorStore(newer)
    assert issubclass(StoreError, AlphamineError)


def test_migration_hook_upgrades_old_schema(tmp_path, monkeypatch):
    path = tmp_path / "lb.db"
    with FactorStore(path) as s:
        s.add(rec(), {})
    v = fs.SCHEMA_VERSION
    monkeypatch.setattr(fs, "SCHEMA_VERSION", v + 1)
    monkeypatch.setattr(fs, "MIGRATIONS", {})
    with pytest.raises(StoreError, match=f"no migration from leaderboard schema version {v}"):
        FactorStore(path)
    monkeypatch.setattr(fs, "MIGRATIONS", {
        v: lambda conn: conn.execute("ALTER TABLE factors ADD COLUMN note TEXT")})
    with FactorStore(path) as s:
        cols = [r[1] for r in s._conn.execute("PRAGMA table_info(factors)")]
        assert "note" in cols
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == v + 1
        assert len(s.members()) == 1


# ------------------------------------------------------------------ add and gates
def test_add_accepts_and_lists_member(store):
    d = store.add(rec(), {})
    assert isinstance(d, GateDecision) and d.accepted and d.kind == "accepted"
    assert d.max_abs_corr is None and d.most_correlated is None
    (m,) = store.members("csi300", 1)
    assert m.id == d.id and m.formula == "ts_mean(close, 5)"
    assert store.members("csi500") == [] and store.members(horizon=5) == []
    assert store.get("nope", "csi300", 1) is None


def test_duplicate_rejected_even_when_forced(store):
    first = store.add(rec(), {})
    for force in (False, True):
        d = store.add(rec(name="other name", ic=0.2), {rec().formula: 0.0}, force=force)
        assert not d.accepted and d.kind == "duplicate" and d.id == first.id
        assert d.reason == f"already on the leaderboard (id {first.id})"
    assert len(store.members()) == 1
    # same formula on another horizon / universe is a different entry
    assert store.add(rec(horizon=5), {}).accepted
    assert store.add(rec(universe="csi500"), {}).accepted
    assert len(store.members()) == 3


@pytest.mark.parametrize("ic,ok", [(0.03, True), (-0.05, True), (0.01, True), (0.005, False),
                                   (-0.009, False)])
def test_min_valid_rank_ic_gate_both_signs(ic, ok):
    d = gate(rec(ic=ic), {}, max_corr=0.7, min_valid_rank_ic=0.01)
    assert d.accepted is ok
    if not ok:
        assert d.kind == "below_floor"
        assert f"{ic:+.4f}" in d.reason and "0.01" in d.reason


@pytest.mark.parametrize("valid", [None, {}, {"rank_ic_mean": None}, {"rank_ic_mean": math.nan},
                                   {"rank_icir": 0.5}])
def test_gate_requires_valid_metrics(valid):
    r = rec()
    r.metrics = {"train": {"rank_ic_mean": 0.05}} | ({} if valid is None else {"valid": valid})
    d = gate(r, {"x": 0.99})
    assert not d.accepted and d.kind == "no_valid_metrics"
    assert d.reason.startswith("no valid metrics")


def test_correlation_gate_threshold_names_member(store):
    a, b = "ts_mean(close, 5)", "ts_std(vol, 20)"
    store.add(rec(a), {})
    store.add(rec(b), {a: 0.1})
    cand = rec("ts_mean(close, 10)")
    for c in (0.7, -0.7, 0.95):
        d = store.add(cand, {a: 0.2, b: c}, max_corr=0.7)
        assert not d.accepted and d.kind == "correlation"
        assert b in d.reason and f"{abs(c):.4f}" in d.reason and "0.7" in d.reason
        assert d.most_correlated == b and d.max_abs_corr == pytest.approx(abs(c))
    assert store.get(cand.formula, "csi300", 1) is None
    d = store.add(cand, {a: 0.2, b: -0.69}, max_corr=0.7)
    assert d.accepted and d.most_correlated == b and d.max_abs_corr == pytest.approx(0.69)
    assert store.get(cand.formula, "csi300", 1).id == d.id


def test_nan_correlations_ignored_and_bad_ones_raise():
    d = gate(rec(), {"m1": math.nan, "m2": np.float64("nan"), "m3": None, "m4": 0.3})
    assert d.accepted and d.most_correlated == "m4" and d.max_abs_corr == pytest.approx(0.3)
    d = gate(rec(), {"m1": math.nan})
    assert d.accepted and d.max_abs_corr is None
    with pytest.raises(StoreError, match="m1"):
        gate(rec(), {"m1": "high"})
    with pytest.raises(StoreError, match="m1"):
        gate(rec(), {"m1": math.inf})
    with pytest.raises(StoreError, match="m2"):
        gate(rec(), {"m2": 1.7})
    with pytest.raises(StoreError, match="max_corr"):
        gate(rec(), {}, max_corr=1.5)


def test_add_uses_current_members_and_strict_requires_all(store):
    store.add(rec("a_member"), {})
    with pytest.raises(StoreError, match="a_member"):
        store.add(rec("cand"), {}, strict=True)
    assert store.get("cand", "csi300", 1) is None
    # keys that are not current members (e.g. removed since) are ignored by add()
    d = store.add(rec("cand"), {"a_member": 0.1, "removed_formula": 0.99}, strict=True)
    assert d.accepted and d.most_correlated == "a_member"
    # non-strict: a member without a correlation counts as NaN; other horizons not compared
    d = store.add(rec("cand3"), {"a_member": 0.2})
    assert d.accepted and d.max_abs_corr == pytest.approx(0.2)
    assert store.add(rec("cand4"), {}).accepted
    assert store.add(rec("cand2", horizon=5), {}, strict=True).accepted


def test_force_bypasses_gates_but_not_duplicates(store):
    store.add(rec("m"), {})
    weak = rec("weak", ic=0.0001)
    weak.metrics = {}
    d = store.add(weak, {}, force=True)
    assert d.accepted and d.kind == "forced" and d.id is not None
    assert d.would_be == "no_valid_metrics"
    assert store.get(weak.formula, "csi300", 1).provenance["forced"] is True
    assert store.add(rec("weak"), {"m": 0.0}, force=True).kind == "duplicate"
    assert len(store.members()) == 2


def _signed(formula, train, valid, *, icir=0.3, source="gp"):
    return FactorRecord(formula=formula, name=formula[:12], source=source, universe="csi300",
                        horizon=1, metrics={"train": {"rank_ic_mean": train},
                                            "valid": {"rank_ic_mean": valid,
                                                      "rank_icir": icir,
                                                      "rank_ic_t": math.copysign(8.0, valid),
                                                      "n_ic_days": 700}})


def test_gate_rejects_sign_flip():
    d = gate(_signed("f", -0.0014, 0.0119), {})
    assert not d.accepted and d.kind == "sign_flip"
    assert "-0.0014" in d.reason and "+0.0119" in d.reason


@pytest.mark.parametrize("train,valid,kind", [
    (0.02, 0.0119, "accepted"), (-0.02, -0.0119, "accepted"),      # oriented agreement
    (0.02, 0.005, "below_floor"), (-0.02, -0.005, "below_floor"),
    (0.02, -0.005, "below_floor"),                                 # small opposite sign
    (0.02, -0.03, "sign_flip"), (None, -0.03, "accepted"), (None, 0.005, "below_floor")])
def test_gate_oriented_on_train(train, valid, kind):
    r = _signed("f", train, valid)
    if train is None:
        r.metrics.pop("train")
    assert gate(r, {}).kind == kind


def test_correlation_rejection_names_member(store):
    m = store.add(rec("ts_mean(close, 5)", name="mom5"), {})
    d = store.add(rec("ts_mean(close, 6)"), {"ts_mean(close, 5)": 0.95})
    assert not d.accepted and d.kind == "correlation"
    assert d.member == "ts_mean(close, 5)" and d.member_id == m.id and d.member_name == "mom5"
    assert d.member_name == "mom5" and "member id 1" in d.reason


def test_force_marks_only_entries_the_gate_would_reject(store):
    ok = store.add(_signed("good", -0.03, -0.02, source="library"), {}, force=True)
    assert ok.kind == "accepted" and ok.would_be is None
    assert "forced" not in store.get("good", "csi300", 1).provenance
    weak = store.add(_signed("weak", 0.03, 0.002, source="library"), {}, force=True)
    assert weak.accepted and weak.kind == "forced" and weak.would_be == "below_floor"
    prov = store.get("weak", "csi300", 1).provenance
    assert prov["forced"] is True and prov["forced_kind"] == "below_floor"


def test_add_validates_records(store):
    with pytest.raises(StoreError, match="source"):
        rec(source="magic")
    with pytest.raises(StoreError, match="horizon"):
        rec(horizon=0)
    r = rec()
    r.metrics["test"] = {"rank_ic_mean": 0.1}
    with pytest.raises(StoreError, match="sealed"):
        store.add(r, {})
    r = rec()
    r.metrics["valid"]["rank_icir"] = "big"
    with pytest.raises(StoreError, match="rank_icir"):
        store.add(r, {})
    r = rec()
    r.provenance["model"] = object()
    with pytest.raises(StoreError, match="provenance.model"):
        store.add(r, {})
    assert store.members() == []


def test_json_storage_converts_nan_numpy_and_paths(store, tmp_path):
    r = rec(extra_valid={"ls_sharpe": np.float32(1.5), "coverage": math.nan,
                         "ls_ann_return": np.inf, "n_days": np.int64(250)})
    r.provenance.update(data_root=tmp_path, windows=np.array([5, 10]), seed=np.int64(3),
                        config={"pop": 300, "when": dt.date(2024, 1, 2)})
    d = store.add(r, {})
    raw_m, raw_p = store._conn.execute("SELECT metrics, provenance FROM factors WHERE id = ?",
                                       (d.id,)).fetchone()
    assert "NaN" not in raw_m and "Infinity" not in raw_m
    assert json.loads(raw_m)["valid"]["coverage"] is None
    got = store.get(r.formula, r.universe, r.horizon)
    v = got.metrics["valid"]
    assert v["ls_sharpe"] == 1.5 and v["coverage"] is None and v["ls_ann_return"] is None
    assert v["n_days"] == 250.0
    assert got.provenance["data_root"] == str(tmp_path)
    assert got.provenance["windows"] == [5, 10] and got.provenance["seed"] == 3
    assert got.provenance["config"]["when"] == "2024-01-02"


# ------------------------------------------------------------------ runs
def test_run_accounting(store):
    run = store.start_run("gp", config={"population": 50, "root": Path("/x")}, seed=42,
                          universe="csi300", data_root="/data")
    ts, hexpart = run.split("-")
    assert dt.datetime.strptime(ts, "%Y%m%dT%H%M%SZ") and len(hexpart) == 6
    int(hexpart, 16)
    (r0,) = store.runs()
    assert r0.status == "running" and r0.seed == 42 and r0.config["root"] == "/x"
    store.add(rec("f1", run_id=run), {})                          # accepted
    store.add(rec("f1", run_id=run), {"f1": 0.0})                 # duplicate
    store.add(rec("f2", ic=0.001, run_id=run), {"f1": 0.0})       # below_floor
    store.add(rec("f3", run_id=run), {"f1": 0.9})                 # correlation
    store.add(rec("f4", ic=-0.04, run_id=run), {"f1": 0.5})       # accepted
    store.add(rec("lib", run_id=None), {"f1": 0.0, "f4": 0.0})    # no run: not counted
    store.finish_run(run, n_tried=500, summary={"best": "f4", "score": math.nan})
    (r,) = store.runs()
    assert (r.n_tried, r.n_evaluated, r.n_accepted) == (500, 5, 2)
    assert r.rejections == {"duplicate": 1, "below_floor": 1, "correlation": 1}
    assert r.status == "done" and r.finished_at is not None
    assert r.summary == {"best": "f4", "score": None}
    assert [m.run_id for m in store.members()] == [run, run, None]
    assert store.runs(source="llm") == []
    with pytest.raises(StoreError, match="unknown run id"):
        store.finish_run("nope", n_tried=1)
    with pytest.raises(StoreError, match="status"):
        store.finish_run(run, n_tried=1, status="weird")
    with pytest.raises(StoreError, match="unknown run id 'ghost'"):
        store.add(rec("f9", run_id="ghost"), {"f1": 0.0, "f4": 0.0, "lib": 0.0})
    assert store.get("f9", "csi300", 1) is None
    with pytest.raises(StoreError, match="source"):
        store.start_run("oracle", config={}, seed=None, universe=None, data_root=None)


# ------------------------------------------------------------------ top / record_test / frame
def _board(store):
    specs = [("a", 0.02, 0.5, -0.30, "gp"), ("b", -0.08, -0.9, -0.10, "llm"),
             ("c", 0.05, 0.2, None, "gp"), ("d", -0.01, None, -0.20, "library")]
    for i, (f, ic, icir, dd, src) in enumerate(specs):
        r = rec(f, ic=ic, icir=icir or 0.0, source=src, name=f"n{3 - i}",
                extra_valid={} if dd is None else {"max_drawdown": dd})
        if icir is None:
            del r.metrics["valid"]["rank_icir"]
        assert store.add(r, corr_all(store, r), min_valid_rank_ic=0.0).accepted


def test_top_sorts_by_abs_for_ic_metrics_and_signed_otherwise(store):
    _board(store)
    assert [r.formula for r in store.top(sort="valid.rank_ic_mean")] == ["b", "c", "a", "d"]
    # rank_icir: |−0.9| first; d lacks the metric -> last
    assert [r.formula for r in store.top(sort="valid.rank_icir")] == ["b", "a", "c", "d"]
    assert [r.formula for r in store.top()] == ["b", "a", "c", "d"]
    # max_drawdown is not IC-type: signed descending, missing last
    assert [r.formula for r in store.top(sort="valid.max_drawdown")] == ["b", "d", "a", "c"]
    assert [r.formula for r in store.top(sort="name")] == ["d", "c", "b", "a"]
    assert [r.formula for r in store.top(sort="created_at")] == ["d", "c", "b", "a"]
    assert [r.formula for r in store.top(2, sort="valid.rank_ic_mean")] == ["b", "c"]
    assert [r.formula for r in store.top(sort="valid.rank_ic_mean", source="gp")] == ["c", "a"]
    assert store.top(universe="csi500") == []


def test_top_rejects_bad_keys(store):
    _board(store)
    with pytest.raises(StoreError) as e:
        store.top(sort="valid.magic")
    msg = str(e.value)
    assert "valid.magic" in msg and "valid.rank_icir" in msg and "created_at" in msg
    assert "valid.max_drawdown" in msg
    with pytest.raises(StoreError, match="test metrics"):
        store.top(sort="test.rank_ic_mean")
    with pytest.raises(StoreError, match="positive"):
        store.top(0)


def test_record_test_unseals_with_timestamp(store):
    store.add(rec(), {})
    assert store.get(rec().formula, "csi300", 1).test_unsealed_at is None
    before = dt.datetime.now(dt.timezone.utc)
    out = store.record_test(rec().formula, "csi300", 1, {"rank_ic_mean": 0.02, "icir": math.nan})
    assert out.metrics["test"] == {"rank_ic_mean": 0.02, "icir": None}
    assert out.metrics["valid"] == rec().metrics["valid"]
    t1 = dt.datetime.fromisoformat(out.test_unsealed_at)
    assert t1 >= before - dt.timedelta(seconds=1)
    again = store.record_test(rec().formula, "csi300", 1, {"rank_ic_mean": 0.01})
    assert again.test_unsealed_at == out.test_unsealed_at        # first unsealing is kept
    assert again.metrics["test"] == {"rank_ic_mean": 0.01}
    with pytest.raises(StoreError, match="not on the leaderboard"):
        store.record_test("other", "csi300", 1, {"rank_ic_mean": 0.0})


def test_remove(store):
    d = store.add(rec(), {})
    store.remove(d.id)
    assert store.members() == []
    with pytest.raises(StoreError, match=str(d.id)):
        store.remove(d.id)


def test_to_frame_flat_columns(store):
    _board(store)
    store.record_test("b", "csi300", 1, {"rank_ic_mean": -0.03})
    recs = store.top(sort="valid.rank_ic_mean")
    df = to_frame(recs)
    head = ["id", "name", "source", "formula", "universe", "horizon", "train_rank_ic_mean",
            "train_rank_icir", "valid_rank_ic_mean", "valid_rank_icir", "valid_turnover",
            "valid_ls_sharpe"]
    assert list(df.columns[:len(head)]) == head
    assert list(df.columns[-5:]) == ["n_tried", "created_at", "run_id", "test_unsealed_at",
                                     "description"]
    assert "valid_max_drawdown" in df.columns and "test_rank_ic_mean" in df.columns
    assert list(df["formula"]) == [r.formula for r in recs]
    assert df["valid_rank_ic_mean"].tolist() == [r.metric("valid", "rank_ic_mean") for r in recs]
    assert np.isnan(df.loc[df.formula == "d", "valid_rank_icir"].iloc[0])
    assert np.isnan(df["valid_ls_sharpe"]).all()
    assert df.loc[df.formula == "b", "test_rank_ic_mean"].iloc[0] == -0.03
    assert df["id"].tolist() == [r.id for r in recs]
    json.loads(df.to_json(orient="records"))                      # serialisable for --json
    empty = FactorStore.to_frame([])
    assert empty.empty and list(empty.columns[:len(head)]) == head


def test_closed_store_raises(tmp_path):
    s = FactorStore(tmp_path / "lb.db")
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.members()


# ------------------------------------------------------------------ atomicity and concurrency
def test_failure_inside_transaction_leaves_no_partial_row(tmp_path, monkeypatch):
    path = tmp_path / "lb.db"
    store = FactorStore(path)
    run = store.start_run("llm", config={}, seed=1, universe="csi300", data_root="/d")

    def boom(self, conn, run_id, decision):
        raise RuntimeError("killed after the factor INSERT, before the run update")

    monkeypatch.setattr(FactorStore, "_count_decision", boom)
    with pytest.raises(RuntimeError, match="killed"):
        store.add(rec(run_id=run), {})
    assert count_rows(path) == 0
    monkeypatch.undo()
    (r,) = store.runs()
    assert (r.n_evaluated, r.n_accepted, r.rejections) == (0, 0, {})
    assert store.add(rec(run_id=run), {}).accepted              # same store still usable
    store.close()
    with FactorStore(path) as again:
        assert len(again.members()) == 1
        assert again._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_killed_process_mid_transaction_leaves_no_partial_row(tmp_path):
    path = tmp_path / "lb.db"
    with FactorStore(path) as s:
        run = s.start_run("gp", config={}, seed=1, universe="csi300", data_root="/d")
    script = textwrap.dedent(f"""
        import os
        from factors.store import FactorRecord, FactorStore
        FactorStore._count_decision = lambda *a: os._exit(3)
        s = FactorStore({str(path)!r})
        s.add(FactorRecord("ts_rank(vol, 10)", "x", "gp", "csi300", 1,
                           {{"valid": {{"rank_ic_mean": 0.05}}}}, {{"run_id": {run!r}}}, 5), {{}})
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          timeout=60)
    assert proc.returncode == 3, proc.stderr.decode()
    assert count_rows(path) == 0
    with FactorStore(path) as s:
        assert s.members() == [] and s.runs()[0].n_evaluated == 0
        assert s._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert s.add(rec("ts_rank(vol, 10)", run_id=run), {}).accepted


def test_wal_reader_not_blocked_by_open_write(tmp_path, monkeypatch):
    path = tmp_path / "lb.db"
    writer, reader = FactorStore(path), FactorStore(path)
    run = writer.start_run("gp", config={}, seed=0, universe="csi300", data_root="/d")
    inside, release = threading.Event(), threading.Event()
    orig = FactorStore._count_decision

    def slow(self, conn, run_id, decision):
        orig(self, conn, run_id, decision)
        inside.set()
        assert release.wait(10)

    monkeypatch.setattr(FactorStore, "_count_decision", slow)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("d", writer.add(rec(run_id=run), {})))
    t.start()
    try:
        assert inside.wait(10)
        # the writer holds an open write transaction with the row inserted: the reader sees
        # the last committed snapshot, without waiting
        assert reader.members() == [] and reader.runs()[0].n_evaluated == 0
        assert reader._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        release.set()
        t.join(10)
    assert out["d"].accepted
    assert [m.id for m in reader.members()] == [out["d"].id]
    writer.close()
    reader.close()


def test_concurrent_inserts_of_same_formula_give_one_row(tmp_path):
    path = tmp_path / "lb.db"
    FactorStore(path).close()
    shared = FactorStore(path)
    n = 8
    barrier = threading.Barrier(n)
    results, errors = [], []

    def worker(i):
        try:
            s = shared if i % 2 else FactorStore(path)
            barrier.wait(10)
            results.append(s.add(rec("cs_rank(ts_delta(close, 5))"), {}, force=bool(i % 3)))
            if s is not shared:
                s.close()
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    shared.close()
    assert errors == []
    assert sum(d.accepted for d in results) == 1 and len(results) == n
    winner = next(d for d in results if d.accepted)
    assert all(d.kind == "duplicate" and d.id == winner.id for d in results if not d.accepted)
    assert count_rows(path) == 1


def test_v1_store_migrates_to_allow_manual(tmp_path):
    import sqlite3
    import factors.store_schema as fs
    p = tmp_path / "old.db"
    con = sqlite3.connect(p)
    con.executescript(fs._SCHEMA.replace("'model', 'manual'", "'model'"))
    con.execute("INSERT INTO factors (formula, name, source, universe, horizon, metrics, "
                "provenance, n_tried, created_at) VALUES ('close', 'c', 'gp', 'csi300', 1, "
                "'{}', '{}', 0, 'x')")
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()
    with FactorStore(p) as s:
        assert [m.formula for m in s.members()] == ["close"]
        assert s.add(_signed("ts_mean(close, 3)", 0.03, 0.02, source="manual"), {}).accepted


def test_v2_store_migrates_up_to_the_test_audit(tmp_path):
    import sqlite3

    from factors.audit import AuditLog
    p = tmp_path / "v2.db"
    con = sqlite3.connect(p)
    con.executescript(fs._SCHEMA)
    con.execute("PRAGMA user_version = 2")
    con.commit()
    con.close()
    with FactorStore(p) as s:
        assert AuditLog(s).entries() == []
        r = AuditLog(s).record(purpose="research", command="mine eval x", config_digest="d",
                               code_version={"package": "0"}, universe="all", horizon=1,
                               subject={"formulas": ["close"]}, window=("2020-01-01", "2026-01-01"))
        assert r.id == 1 and AuditLog(s).looks()[("close", "all")] == 1
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == fs.SCHEMA_VERSION
