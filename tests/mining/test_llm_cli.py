"""`mine llm` / `mine prompts` through typer's runner (stub server, synthetic warehouse).

The CLI builds the standard workspace (decay horizons up to 20 days), which empties the
synthetic warehouse's 20-day splits, so here every evaluated factor is rejected with
``no_valid_metrics``: these tests check the command's plumbing, exit codes and replay; the loop's
numbers are checked in test_llm.py. The real-data run is the slow test at the end.
"""
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from openai_stub import StubServer  # noqa: E402

from ashare_synth import build_warehouse  # noqa: E402
from mining.cli_app import load as load_config  # noqa: E402
from mining.cli import app  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _config(tmp: Path, root: Path, base_url: str = "", train=("2020-08-10", "2020-09-04"),
            valid=("2023-03-06", "2023-03-31"), test=("2025-07-28", "2025-08-15"),
            model: str = "stub-model") -> Path:
    p = tmp / "mine.toml"
    p.write_text(f"""
[data]
root = "{root}"
cache_dir = "{tmp / 'cache'}"
[evaluate]
train = {json.dumps(list(train))}
valid = {json.dumps(list(valid))}
test = {json.dumps(list(test))}
embargo = 1
min_listed_days = 0
[store]
path = "{tmp / 'lb.db'}"
min_valid_rank_ic = 0.0
[gp]
universe = "all"
[llm]
base_url = "{base_url}"
model = "{model}"
timeout = 5.0
max_retries = 1
retry_wait = 0.01
knowledge_cutoff = "2024-06-01"
cache_path = "{tmp / 'llm_cache.db'}"
prompts_dir = "{tmp / 'prompts'}"
""")
    return p


@pytest.fixture(scope="module")
def wh_root(tmp_path_factory):
    return build_warehouse(tmp_path_factory.mktemp("ashare_cli")).root


def test_no_endpoint_exits_2_naming_what_to_set(tmp_path, wh_root, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = _config(tmp_path, wh_root, model="")
    r = runner.invoke(app, ["--config", str(cfg), "llm", "--prompt", "liquidity"])
    assert r.exit_code == 2
    out = " ".join(r.output.split())
    assert "[llm] base_url" in out and "[llm] model" in out and "OPENAI_API_KEY" in out
    assert str(cfg) in out.replace(" ", "") or "mine.toml" in out


def test_prompts_lists_packaged_and_user_templates(tmp_path, wh_root):
    cfg = _config(tmp_path, wh_root)
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "my_idea.md").write_text("# Dropped-in template\nfind {{n}}\n")
    r = runner.invoke(app, ["--config", str(cfg), "prompts"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    for name in ("liquidity", "liquidity_en", "momentum", "volatility", "value", "reversal",
                 "volume_price", "free", "my_idea"):
        assert name in r.output
    assert "Dropped-in template" in r.output and "user" in r.output


def test_llm_run_stats_and_replay(tmp_path, wh_root, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "stub")
    with StubServer() as srv:
        cfg = _config(tmp_path, wh_root, srv.base_url)
        r = runner.invoke(app, ["--config", str(cfg), "llm", "--prompt", "liquidity_en",
                                "--rounds", "2", "--n", "4", "--json"])
        assert r.exit_code == 0, r.output
        first = json.loads(r.output)
        assert len(srv.requests) == 2
    assert first["stats"]["calls"] == 2 and first["stats"]["proposed"] == 8
    assert any("knowledge cutoff 2024-06-01" in w for w in first["warnings"])
    run_id = first["run_id"]
    monkeypatch.delenv("OPENAI_API_KEY")
    r = runner.invoke(app, ["--config", str(cfg), "llm", "--replay", run_id, "--json"])
    assert r.exit_code == 0, r.output
    again = json.loads(r.output)
    assert again["stats"]["counts"]["parse_error"] == first["stats"]["counts"]["parse_error"]
    assert [p["formula"] for p in again["proposals"]] == \
        [p["formula"] for p in first["proposals"]]
    r = runner.invoke(app, ["--config", str(cfg), "llm", "--stats"], env={"COLUMNS": "250"})
    assert r.exit_code == 0 and run_id in r.output and "liquidity_en" in r.output
    r = runner.invoke(app, ["--config", str(cfg), "llm", "--stats", "--json"])
    st = json.loads(r.output)
    assert st["templates"]["liquidity_en"]["runs"] == 1           # the replay is not counted
    assert [x["replay_of"] for x in st["runs"]] == [None, run_id]
    r = runner.invoke(app, ["--config", str(cfg), "llm", "--replay", "nope"])
    assert r.exit_code == 2 and "not in the LLM cache" in " ".join(r.output.split())
    r = runner.invoke(app, ["--config", str(cfg), "llm", "--prompt", "nope",
                            "--base-url", "http://127.0.0.1:9/v1"], env={"OPENAI_API_KEY": "k"})
    assert r.exit_code == 2 and "unknown prompt template 'nope'" in " ".join(r.output.split())


@pytest.mark.slow
def test_llm_on_real_data_against_the_stub(tmp_path, monkeypatch):
    """2 rounds x 4 demo formulas on csi300, a 2-year train / 1-year valid slice."""
    root = load_config(REPO / "mine.toml").data.root
    if not Path(root).is_dir():
        pytest.skip("real warehouse not available")
    monkeypatch.setenv("OPENAI_API_KEY", "stub")
    with StubServer() as srv:
        p = _config(tmp_path, root, srv.base_url, train=("2016-01-01", "2017-12-31"),
                    valid=("2018-01-01", "2018-12-31"), test=("2019-01-01", "2019-06-30"))
        text = p.read_text().replace("embargo = 1", "embargo = 20").replace(
            'universe = "all"', 'universe = "csi300"').replace("min_listed_days = 0",
                                                              "min_listed_days = 60")
        p.write_text(text)
        r = runner.invoke(app, ["--config", str(p), "llm", "--prompt", "liquidity",
                                "--rounds", "2", "--n", "4", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    s = out["stats"]
    assert s["proposed"] == 8 and s["counts"]["parse_error"] == 1   # ts_amihud is unknown
    assert s["evaluated"] == 7 and s["accepted"] >= 1
    for prop in out["proposals"]:
        if prop["status"] == "accepted":
            assert prop["valid"] is not None and prop["train"] is not None
