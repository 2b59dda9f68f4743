"""data.manifest / data.provenance.data_fingerprint / data.rerun helpers (no producer runs)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.config import Config, DataConfig, load_config, to_toml
from data.errors import RunError
from data.manifest import (
    RunRecorder,
    canonical,
    frame_digest,
    list_manifests,
    read_manifest,
    restore_snapshot,
    results_digest,
    runs_dir,
)
from data.provenance import data_fingerprint, fingerprint_changes
from data.rerun import compare, replay_argv, rerun
from factors.store import FactorStore, StoreConfig
from factors.store_records import FactorRecord


def _wh(tmp: Path) -> Path:
    root = tmp / "wh"
    for rel in ("daily/daily_2019.parquet", "daily/daily_2020.parquet", "trade_cal.parquet",
                "index_weight_2025.parquet", "_staging/daily/x.parquet", "daily/.tmp.parquet"):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"a": [1.0, 2.0]}).to_parquet(p)
    (root / "README.md").write_text("not data")
    return root


def test_fingerprint_lists_partitions_and_names_what_changed(tmp_path):
    root = _wh(tmp_path)
    fp = data_fingerprint(root)
    assert sorted(fp["files"]) == ["daily/daily_2019.parquet", "daily/daily_2020.parquet",
                                   "index_weight_2025.parquet", "trade_cal.parquet"]
    assert fp["exists"] and fp["method"] == "size+mtime" and len(fp["digest"]) == 16
    # a run over 2020 only: the 2019 partition is not read; top-level files always count
    assert sorted(data_fingerprint(root, years=(2020, 2020))["files"]) == [
        "daily/daily_2020.parquet", "index_weight_2025.parquet", "trade_cal.parquet"]
    assert data_fingerprint(root) == fp                          # stable
    p19, p20 = root / "daily/daily_2019.parquet", root / "daily/daily_2020.parquet"
    st = p19.stat()
    os.utime(p19, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    pd.DataFrame({"a": [1.0, 2.0, 3.0]}).to_parquet(p20)
    pd.DataFrame({"a": [1.0]}).to_parquet(root / "daily/daily_2021.parquet")
    (root / "trade_cal.parquet").unlink()
    lines = fingerprint_changes(fp, data_fingerprint(root))
    assert "daily/daily_2019.parquet: mtime only (the content may be unchanged)" in lines
    assert any(x.startswith("daily/daily_2020.parquet: size ") for x in lines)
    assert "daily/daily_2021.parquet: added" in lines and "trade_cal.parquet: removed" in lines
    a, b = data_fingerprint(root, sha256=True), data_fingerprint(root, sha256=True)
    assert a["method"] == "sha256" and fingerprint_changes(a, b) == []
    st = p19.stat()
    os.utime(p19, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert fingerprint_changes(a, data_fingerprint(root, sha256=True)) == []   # same bytes
    missing = data_fingerprint(tmp_path / "nowhere")
    assert not missing["exists"] and missing["files"] == {}


def test_canonical_rounds_floats_and_hides_the_run_id():
    rid = "20261130T120000Z-abc123"
    obj = {"name": "gp_abc123_01", "reason": f"|corr| 0.9 with gp_abc123_00 of {rid}",
           "formula": "ts_mean(abc123x, 5)", "x": 0.1 + 0.2, "nan": float("nan"),
           "n": 3, "arr": np.array([1.0, np.inf])}
    c = canonical(obj, rid)
    assert c["name"] == "gp_<run>_01" and c["reason"] == "|corr| 0.9 with gp_<run>_00 of <run>"
    assert c["formula"] == "ts_mean(abc123x, 5)"                   # not after an underscore
    assert c["x"] == 0.3 and c["nan"] is None and c["n"] == 3 and c["arr"] == [1.0, None]
    a = results_digest(canonical({"v": [1.0 + 1e-15]}))
    assert a == results_digest(canonical({"v": [1.0]}))            # last-bit noise
    assert a != results_digest(canonical({"v": [1.0 + 1e-9]}))
    assert a == results_digest({"v": [1.0], "summary": {"anything": 1}, "sha256": "x"})


def test_frame_digest_is_content_and_order():
    df = pd.DataFrame({"trade_date": pd.to_datetime(["2021-01-04", "2021-01-05"]),
                       "ts_code": ["600000.SH", "600001.SH"], "w": [0.5, 1 / 3]})
    d = frame_digest(df)
    assert d["rows"] == 2 and d["columns"] == ["trade_date", "ts_code", "w"]
    noisy = df.assign(w=df.w * (1 + 1e-15))
    assert frame_digest(noisy)["sha256"] == d["sha256"]
    assert frame_digest(df.iloc[::-1])["sha256"] != d["sha256"]
    assert frame_digest(df.assign(w=[0.5, 0.34]))["sha256"] != d["sha256"]


def test_config_round_trips_through_toml(tmp_path):
    from mining.cli_app import SCHEMA, load
    from data.manifest import resolved_config
    cfg = load(None)
    p = tmp_path / "m.toml"
    p.write_text(to_toml(resolved_config(cfg)))
    again = load_config(p, SCHEMA)
    assert resolved_config(again) == resolved_config(cfg)
    assert to_toml({"s": {"a": None, "b": [1, 2.5, "x\"y"], "c": True}}) == \
        '[s]\nb = [1, 2.5, "x\\"y"]\nc = true\n'


def _cfg(tmp: Path) -> Config:
    return Config(data=DataConfig(root=_wh(tmp)), store=StoreConfig(path=tmp / "w" / "lb.db"))


def test_recorder_snapshot_manifest_listing_and_lookup(tmp_path):
    cfg = _cfg(tmp_path)
    assert runs_dir(cfg) == tmp_path / "w" / "runs"
    with FactorStore(cfg.store.path) as st:
        st.add(FactorRecord(formula="close", name="c", source="library", universe="all",
                            horizon=1, metrics={"train": {"rank_ic_mean": 0.1},
                                                "valid": {"rank_ic_mean": 0.1}}), {},
               force=True)
    rec = RunRecorder("gp", cfg, argv=["--config", "x.toml", "gp", "--seed", "3"],
                      settings={"seed": 3}, seeds={"gp": 3}, store=cfg.store.path,
                      window=("2020-01-01", "2020-06-30"))
    with FactorStore(cfg.store.path) as st:                       # changed after the start
        st.add(FactorRecord(formula="open", name="o", source="library", universe="all",
                            horizon=1, metrics={"train": {"rank_ic_mean": 0.1},
                                                "valid": {"rank_ic_mean": 0.1}}), {},
               force=True)
    rid = "20261130T120000Z-abc123"
    folder = rec.write(rid, results={"decisions": [{"name": "gp_abc123_00", "ic": 0.1}],
                                     "summary": {"n": 1}})
    m, f = read_manifest(runs_dir(cfg), "20261130T12")
    assert f == folder and m["run_id"] == rid and m["kind"] == "gp"
    assert m["command"]["line"] == "mine --config x.toml gp --seed 3"
    assert m["results"]["decisions"] == [{"name": "gp_<run>_00", "ic": 0.1}]
    assert m["results"]["sha256"] == results_digest(m["results"])
    assert sorted(m["data"]["files"]) == ["daily/daily_2019.parquet", "daily/daily_2020.parquet",
                                          "index_weight_2025.parquet", "trade_cal.parquet"]
    assert m["inputs"]["store_snapshot"] == "store.db.gz"
    assert restore_snapshot(folder, tmp_path / "copy.db")
    with FactorStore(tmp_path / "copy.db") as st:
        assert [r.formula for r in st.members()] == ["close"]     # as at the start
    lib = RunRecorder("combine", cfg)                              # a library call
    lib.write("20261130T120001-def456", results={"files": {}})
    rows = list_manifests(runs_dir(cfg))
    assert [(r["run_id"], r["kind"], r["replayable"]) for r in rows] == [
        (rid, "gp", True), ("20261130T120001-def456", "combine", False)]
    assert [r["kind"] for r in list_manifests(runs_dir(cfg), "combine")] == ["combine"]
    with pytest.raises(RunError, match="ambiguous"):
        read_manifest(runs_dir(cfg), "20261130T1200")
    with pytest.raises(RunError, match="no recorded run 'nope'.*mine runs"):
        read_manifest(runs_dir(cfg), "nope")
    with pytest.raises(RunError, match="not a run id"):
        read_manifest(runs_dir(cfg), "../w")
    with pytest.raises(RunError, match="library call"):
        rerun("20261130T120001", runs_dir(cfg), launch=lambda a, c: (0, "", ""))
    secret = RunRecorder("llm", cfg, argv=["llm", "--base-url", "https://me:sk-123@h/v1"])
    text = (secret.write("llm-run-1", results={}) / "manifest.json").read_text()
    assert "sk-123" not in text and "https://***@h/v1" in text


def test_replay_argv_redirects_outputs():
    m = {"run_id": "r1", "kind": "backtest",
         "command": {"argv": ["--config", "a.toml", "backtest", "--targets", "latest",
                              "--out", "x", "--force"]},
         "inputs": {"targets": {"path": "/abs/targets.parquet"}}}
    argv = replay_argv(m, Path("/s/mine.toml"), Path("/s"))
    assert argv == ["--config", "/s/mine.toml", "backtest", "--targets", "/abs/targets.parquet",
                    "--out", "/s/out", "--force", "--json"]
    m = {"run_id": "r2", "kind": "llm", "inputs": {},
         "command": {"argv": ["llm", "--prompt", "momentum", "--base-url", "http://x", "--json"]}}
    assert replay_argv(m, Path("/s/m.toml"), Path("/s")) == [
        "--config", "/s/m.toml", "llm", "--replay", "r2", "--json"]


def test_compare_names_decisions_files_and_explanations():
    base = {"config": {"resolved": {"gp": {"seed": 1}, "store": {"path": "/a"}}},
            "code_version": {"package": "0.1.0", "commit": "aaa", "changes": None},
            "data": {"root": "/wh", "files": {"d.parquet": {"size": 1, "mtime_ns": 1}}},
            "settings": {"seed": 1, "out_dir": "/a"}}
    res = {"decisions": [{"formula": "a", "kind": "accepted"}, {"formula": "b", "kind": "x"}],
           "files": {"nav": {"sha256": "1", "rows": 3}}}
    rec = {**base, "results": {**res, "sha256": results_digest(res)}}
    same = json.loads(json.dumps(rec))
    same["config"]["resolved"]["store"]["path"] = "/scratch"      # redirected: not a warning
    same["settings"]["out_dir"] = "/scratch"
    assert compare(rec, same) == (True, [], [])
    res2 = {"decisions": [{"formula": "a", "kind": "accepted"}, {"formula": "c", "kind": "x"}],
            "files": {"nav": {"sha256": "2", "rows": 3}}}
    other = {**json.loads(json.dumps(base)), "results": {**res2, "sha256": results_digest(res2)}}
    other["code_version"] = {"package": "0.1.0", "commit": "bbb", "changes": "f00"}
    other["data"]["files"]["d.parquet"]["size"] = 2
    other["config"]["resolved"]["gp"]["seed"] = 2
    identical, diffs, warns = compare(rec, other)
    assert not identical
    assert diffs == ["decisions[1] (first difference): formula 'b' -> 'c'",
                     "file nav: content differs (rows 3 recorded, 3 in the replay)"]
    text = "\n".join(warns)
    assert "the run used aaa" in text and "uncommitted changes" in text
    assert "data: d.parquet: size 1 -> 2 bytes" in text and "config [gp] seed: 1" in text
