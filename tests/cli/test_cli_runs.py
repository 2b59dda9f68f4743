"""Run manifests, `mine runs` and `mine rerun` end to end (synthetic warehouse with a planted
signal, :mod:`panel_warehouse`).

The seeded GP rerun goes through the real launcher (a fresh `mine` process); the other reruns
replay in this process (the same CLI through typer's runner) to keep the suite fast.
"""
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from panel_warehouse import SPLITS, build_panel_warehouse
from typer.testing import CliRunner

from mining import cli_runs
from mining.cli import app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mining"))
from openai_stub import StubServer  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def wh(tmp_path_factory) -> Path:
    return build_panel_warehouse(tmp_path_factory.mktemp("panel_wh"))


def _config(tmp: Path, root: Path, base_url: str = "") -> Path:
    p = tmp / "mine.toml"
    p.write_text(f"""
[data]
root = "{root}"
cache_dir = "{tmp / 'cache'}"
[evaluate]
train = {json.dumps(list(SPLITS['train']))}
valid = {json.dumps(list(SPLITS['valid']))}
test = {json.dumps(list(SPLITS['test']))}
embargo = 1
min_listed_days = 0
[store]
path = "{tmp / 'work' / 'lb.db'}"
[backtest]
universe = "all"
start = "{SPLITS['valid'][0]}"
out_dir = "{tmp / 'work' / 'bt'}"
n = 4
top = 5
ic_window = 10
[model]
out_dir = "{tmp / 'work' / 'models'}"
universe = "all"
feature_set = "library"
start = "{SPLITS['train'][0]}"
first_test = "{SPLITS['valid'][0]}"
last_test = "{SPLITS['valid'][1]}"
retrain_months = 1
valid_months = 1
num_threads = 1
lgbm_rounds = 20
shap_rows = 200
shap_inter_rows = 20
[gp]
universe = "all"
start = "{SPLITS['train'][0]}"
population = 40
generations = 2
top = 3
seed = 5
n_jobs = 1
max_depth = 3
fields = ["close", "open", "vol", "ret"]
cache_mb = 0.0
[llm]
base_url = "{base_url}"
model = "stub-model"
timeout = 5.0
max_retries = 1
retry_wait = 0.01
knowledge_cutoff = "2020-06-01"
cache_path = "{tmp / 'work' / 'llm_cache.db'}"
""")
    return p


def _ok(res) -> str:
    assert res.exit_code == 0, res.output
    return res.stdout


def _runs(tmp: Path) -> Path:
    return tmp / "work" / "runs"


def _manifest(tmp: Path, run_id: str) -> dict:
    return json.loads((_runs(tmp) / run_id / "manifest.json").read_text())


def _state(tmp: Path) -> dict:
    """Bytes + mtime of everything the user owns under work/ except the runs folder."""
    out = {}
    for p in sorted((tmp / "work").rglob("*")):
        if p.is_file() and "runs" not in p.relative_to(tmp / "work").parts:
            out[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


def _in_process(argv, cwd):
    """A launcher that replays through typer's runner in this process (fast)."""
    r = CliRunner().invoke(app, argv)
    return r.exit_code, r.stdout, r.output


def _rerun(cfg: Path, run_id: str, *extra: str):
    res = runner.invoke(app, ["--config", str(cfg), "rerun", run_id, "--json", *extra])
    return res, (json.loads(res.stdout) if res.stdout.strip().startswith("{") else None)


def test_seeded_gp_rerun_is_identical_and_leaves_the_store_alone(tmp_path, wh):
    cfg = _config(tmp_path, wh)
    first = json.loads(_ok(runner.invoke(app, ["--config", str(cfg), "gp", "--json"])))
    assert first["n_accepted"] >= 1                 # the planted signal is found
    rec = json.loads(_ok(runner.invoke(app, ["--config", str(cfg), "gp", "--seed", "6",
                                             "--top", "2", "--json"])))
    m = _manifest(tmp_path, rec["run_id"])
    assert m["schema"] == 1 and m["kind"] == "gp" and m["run_id"] == rec["run_id"]
    assert m["command"]["argv"] == ["--config", str(cfg), "gp", "--seed", "6", "--top", "2",
                                    "--json"]
    assert m["command"]["line"].startswith("mine --config ")
    assert m["seeds"] == {"gp": 6} and m["settings"]["seed"] == 6 and m["settings"]["top"] == 2
    assert m["config"]["resolved"]["gp"]["seed"] == 5           # mine.toml; argv overrides
    assert len(m["config"]["digest"]) == 16 and m["code_version"]["package"]
    assert m["data"]["root"] == str(wh) and "daily/daily_2021.parquet" in m["data"]["files"]
    assert set(m["data"]["files"]["daily/daily_2021.parquet"]) == {"size", "mtime_ns"}
    # the first run started on an empty leaderboard: no snapshot; the second on its members
    assert _manifest(tmp_path, first["run_id"])["inputs"]["store_snapshot"] is None
    assert m["inputs"]["store_snapshot"] == "store.db.gz"
    assert (_runs(tmp_path) / rec["run_id"] / "store.db.gz").is_file()
    res = m["results"]
    assert len(res["decisions"]) == rec["n_evaluated"] and len(res["sha256"]) == 64
    assert [d["formula"] for d in res["decisions"] if d["accepted"]] == \
        [d["formula"] for d in rec["accepted"]]
    assert all("<run>" in d["name"] and rec["run_id"][-6:] not in json.dumps(d)
               for d in res["decisions"])
    assert [g["best_formula"] for g in res["generations"]] == \
        [g["best_formula"] for g in rec["generations"]]
    listed = json.loads(_ok(runner.invoke(app, ["--config", str(cfg), "runs", "--json"])))
    assert [r["run_id"] for r in listed["runs"]] == [first["run_id"], rec["run_id"]]
    assert listed["runs"][1]["kind"] == "gp" and listed["runs"][1]["replayable"]

    before = _state(tmp_path)
    t0 = time.perf_counter()
    out, report = _rerun(cfg, rec["run_id"][:20])          # a unique prefix is enough
    seconds = time.perf_counter() - t0
    assert out.exit_code == 0, out.output
    assert report["identical"] and report["differences"] == []
    assert report["run_id"] == rec["run_id"] and report["replay_run_id"] != rec["run_id"]
    assert report["replay_sha256"] == m["results"]["sha256"]
    assert not any("config" in w or "data:" in w or "settings" in w
                   for w in report["warnings"]), report["warnings"]
    assert any("snapshot" in n for n in report["notes"])
    assert report["replay_argv"][:3] == ["mine", "--config", report["replay_argv"][2]]
    assert report["replay_argv"][2] != str(cfg) and "--seed" in report["replay_argv"]
    assert _state(tmp_path) == before                     # leaderboard etc. untouched
    assert sorted(p.name for p in _runs(tmp_path).iterdir()) == sorted(
        [first["run_id"], rec["run_id"]])                  # the replay's manifest went away
    print(f"\nGP rerun (fresh process) took {seconds:.1f}s")
    # the human rendering (in process, for speed)
    cli_runs_launch = cli_runs.launch_mine
    try:
        cli_runs.launch_mine = _in_process
        res = runner.invoke(app, ["--config", str(cfg), "rerun", rec["run_id"]])
    finally:
        cli_runs.launch_mine = cli_runs_launch
    assert res.exit_code == 0 and "identical" in res.stdout and rec["run_id"] in res.stdout


def test_rerun_reports_a_tampered_result_or_a_changed_seed(tmp_path, wh, monkeypatch):
    monkeypatch.setattr(cli_runs, "launch_mine", _in_process)
    cfg = _config(tmp_path, wh)
    rec = json.loads(_ok(runner.invoke(app, ["--config", str(cfg), "gp", "--json"])))
    path = _runs(tmp_path) / rec["run_id"] / "manifest.json"
    original = path.read_text()
    m = json.loads(original)
    m["results"]["decisions"][1]["formula"] = "close"
    path.write_text(json.dumps(m))
    before = _state(tmp_path)
    out, report = _rerun(cfg, rec["run_id"])
    assert out.exit_code == 1, out.output
    assert not report["identical"]
    assert report["differences"][0].startswith("decisions[1] (first difference): formula 'close'")
    assert any("edited after the run" in w for w in report["warnings"])
    # a different seed in the recorded command line: other programs, other decisions
    m = json.loads(original)
    m["command"]["argv"] += ["--seed", "9"]
    path.write_text(json.dumps(m))
    out, report = _rerun(cfg, rec["run_id"])
    assert out.exit_code == 1 and not report["identical"]
    assert any(d.startswith(("decisions", "generations")) for d in report["differences"])
    assert "settings seed: 5 recorded, 9 in the replay" in report["warnings"]
    res = runner.invoke(app, ["--config", str(cfg), "rerun", rec["run_id"]])
    assert res.exit_code == 1 and "different" in res.stdout and "first difference" in res.stdout
    assert _state(tmp_path) == before


def test_unknown_run_id_is_a_one_line_error(tmp_path, wh):
    cfg = _config(tmp_path, wh)
    res = runner.invoke(app, ["--config", str(cfg), "rerun", "20990101T000000Z-abcdef"])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no recorded run" in lines[0] and "mine runs" in lines[0]
    res = runner.invoke(app, ["--config", str(cfg), "runs"])
    assert res.exit_code == 0 and "no recorded runs" in res.output


def test_combine_and_backtest_manifests_and_reruns(tmp_path, wh, monkeypatch):
    monkeypatch.setattr(cli_runs, "launch_mine", _in_process)
    cfg = _config(tmp_path, wh)
    _ok(runner.invoke(app, ["--config", str(cfg), "gp", "--json"]))
    comb = json.loads(_ok(runner.invoke(app, ["--config", str(cfg), "combine", "--json"])))
    bt = json.loads(_ok(runner.invoke(app, ["--config", str(cfg), "backtest", "--targets",
                                            "latest", "--json"])))
    mc = json.loads(_ok(runner.invoke(app, ["--config", str(cfg), "backtest", "--preset",
                                            "microcap", "--mv-min", "0", "--mv-max", "1e13",
                                            "--hold", "2", "--json"])))
    assert comb["peak_rss_mb"] > 0 and "peak_rss_mb" not in bt     # issue 15: gp/eval/combine
    c = _manifest(tmp_path, comb["run_id"])
    assert c["kind"] == "combine" and c["inputs"]["store_snapshot"] == "store.db.gz"
    assert set(c["results"]["files"]) == {"targets", "score", "factor_weights"}
    assert c["results"]["files"]["targets"]["rows"] > 0
    assert c["outputs"]["out_dir"] == comb["out_dir"] and c["seeds"] == {}
    b = _manifest(tmp_path, bt["run_id"])
    assert b["kind"] == "backtest" and b["inputs"]["store_snapshot"] is None
    assert b["inputs"]["targets"]["path"] == str(Path(comb["out_dir"]) / "targets.parquet")
    assert b["results"]["files"]["nav"]["rows"] > 0
    assert {"nav", "trades", "positions"} <= set(b["results"]["files"])
    assert b["results"]["summary"]["final_nav"] == pytest.approx(bt["final_nav"])
    assert "targets" in _manifest(tmp_path, mc["run_id"])["results"]["files"]
    latest = (tmp_path / "work" / "bt" / "latest").read_text()
    before = _state(tmp_path)
    for run_id in (comb["run_id"], bt["run_id"], mc["run_id"]):
        out, report = _rerun(cfg, run_id)
        assert out.exit_code == 0 and report["identical"], (out.output, report)
    assert (tmp_path / "work" / "bt" / "latest").read_text() == latest
    assert _state(tmp_path) == before
    # the targets file changed since: the backtest replay uses it and says why it differs
    tg = Path(b["inputs"]["targets"]["path"])
    import pandas as pd
    df = pd.read_parquet(tg)
    df.loc[df.index[: len(df) // 2], "target_weight"] *= 0.5
    df.to_parquet(tg, index=False)
    out, report = _rerun(cfg, bt["run_id"])
    assert out.exit_code == 1 and any(d.startswith("file nav.parquet") or
                                      d.startswith("file nav") for d in report["differences"])
    assert any("targets file" in w and "changed" in w for w in report["warnings"])


def test_llm_run_manifest_and_rerun_from_the_cache(tmp_path, wh, monkeypatch):
    monkeypatch.setattr(cli_runs, "launch_mine", _in_process)
    monkeypatch.setenv("OPENAI_API_KEY", "stub")
    with StubServer() as srv:
        cfg = _config(tmp_path, wh, srv.base_url)
        rec = json.loads(_ok(runner.invoke(app, ["--config", str(cfg), "llm", "--prompt",
                                                 "liquidity_en", "--rounds", "2", "--n", "4",
                                                 "--json"])))
    m = _manifest(tmp_path, rec["run_id"])
    assert m["kind"] == "llm" and m["settings"]["template"] == "liquidity_en"
    assert [p["formula"] for p in m["results"]["proposals"]] == \
        [p["formula"] for p in rec["proposals"]]
    monkeypatch.delenv("OPENAI_API_KEY")                  # the server is gone, no key: cache only
    before = _state(tmp_path)
    out, report = _rerun(cfg, rec["run_id"])
    assert out.exit_code == 0 and report["identical"], (out.output, report)
    assert any("no network" in n for n in report["notes"])
    assert report["replay_argv"][3:6] == ["llm", "--replay", rec["run_id"]]
    assert _state(tmp_path) == before
    (tmp_path / "work" / "llm_cache.db").unlink()
    res = runner.invoke(app, ["--config", str(cfg), "rerun", rec["run_id"]])
    assert res.exit_code == 2 and "LLM cache" in res.output


@pytest.mark.filterwarnings("ignore:Mean of empty slice")     # tiny folds: days without IC
def test_model_run_manifest_and_rerun(tmp_path, wh, monkeypatch):
    monkeypatch.setattr(cli_runs, "launch_mine", _in_process)
    cfg = _config(tmp_path, wh)
    rec = json.loads(_ok(runner.invoke(app, ["--config", str(cfg), "model", "lgbm",
                                             "--seed", "3", "--json"])))
    m = _manifest(tmp_path, rec["run_id"])
    assert m["kind"] == "model" and m["seeds"] == {"model": 3}
    assert m["inputs"]["store_snapshot"] is None            # the leaderboard was empty
    assert m["results"]["files"]["predictions"]["rows"] > 0
    assert m["outputs"]["pred_path"] == rec["pred_path"]
    assert m["results"]["leaderboard"][0]["formula"] == 'model("<run>")'
    before = _state(tmp_path)
    out, report = _rerun(cfg, rec["run_id"])
    assert out.exit_code == 0 and report["identical"], (out.output, report)
    assert _state(tmp_path) == before


# ------------------------------------------------------------------ store runs (issue 12)
def test_runs_lists_store_runs_without_manifest_with_their_status(tmp_path):
    import sqlite3

    from factors.store import FactorStore
    cfg = tmp_path / "mine.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "lb.db"}"\n')
    with FactorStore(tmp_path / "lb.db") as s:
        done = s.start_run("library", config={}, seed=None, universe="u", data_root=None)
        s.finish_run(done, n_tried=15)
        killed = s.start_run("gp", config={}, seed=1, universe="u", data_root=None)
        live = s.start_run("llm", config={}, seed=None, universe="u", data_root=None)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    con = sqlite3.connect(tmp_path / "lb.db")             # its process is gone
    con.execute("UPDATE runs SET pid = ? WHERE run_id = ?", (dead.pid, killed))
    con.commit()
    con.close()
    r = runner.invoke(app, ["--config", str(cfg), "runs", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["runs"]
    assert [(x["run_id"], x["kind"], x["status"], x["manifest"]) for x in rows] == [
        (done, "library", "done", False), (killed, "gp", "interrupted", False),
        (live, "llm", "running", False)]
    assert {"run_id", "kind", "created_at", "command", "commit", "dirty", "results_sha256",
            "summary", "replayable", "status", "manifest"} == set(rows[0])
    assert "interrupted" in rows[1]["summary"]
    r = runner.invoke(app, ["--config", str(cfg), "runs", "--kind", "gp"])
    assert r.exit_code == 0 and killed in r.output and "interrupted" in r.output
    assert done not in r.output
    r = runner.invoke(app, ["--config", str(cfg), "runs", "--kind", "bogus"])
    assert r.exit_code == 2


def test_listing_without_a_store_creates_none(tmp_path):
    cfg = tmp_path / "mine.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "none.db"}"\n')
    r = runner.invoke(app, ["--config", str(cfg), "runs", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["runs"] == []
    assert not (tmp_path / "none.db").exists()
