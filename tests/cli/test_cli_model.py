"""`mine model lgbm` through typer's runner, on a synthetic workspace (no warehouse needed)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mining.cli import app

runner = CliRunner()


def _make_ws():
    """tests/models/conftest.py's synthetic workspace builder, loaded by path."""
    import importlib.util
    path = Path(__file__).resolve().parents[1] / "models" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_models_synth_conftest", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_ws


@pytest.fixture
def synthetic(tmp_path, monkeypatch):
    ws = _make_ws()(T=260, N=30, plant=0.8)
    d = ws.ctx.dates
    text = f"""
[evaluate]
train = ["{d[0].date()}", "{d[150].date()}"]
valid = ["{d[151].date()}", "{d[220].date()}"]
test = ["{d[221].date()}", "{d[-1].date()}"]
[store]
path = "{tmp_path / 'lb.db'}"
[model]
universe = "synth"
feature_set = "library"
out_dir = "{tmp_path / 'models'}"
start = "{d[0].date()}"
first_test = "{d[151].date()}"
last_test = "{d[220].date()}"
retrain_months = 2
valid_months = 2
num_threads = 1
lgbm_rounds = 40
lgbm_early_stopping = 5
shap_rows = 200
shap_inter_rows = 20
shap_pairs = 1
"""
    cfg = tmp_path / "mine.toml"
    cfg.write_text(text)
    ws.model_dir = tmp_path / "models"
    import models.run_common
    monkeypatch.setattr(models.run_common, "make_workspace", lambda *a, **k: ws)
    return cfg, tmp_path


def test_model_sub_app_is_importable_and_listed():
    from mining.cli_model import model_app
    assert "lgbm" in {c.name for c in model_app.registered_commands}
    r = runner.invoke(app, ["model", "--help"])
    assert r.exit_code == 0 and "lgbm" in r.output


def test_lgbm_json_writes_predictions_and_leaderboard(synthetic):
    cfg, tmp = synthetic
    r = runner.invoke(app, ["--config", str(cfg), "model", "lgbm", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    rid = out["run_id"]
    assert rid.startswith("lgbm-") and Path(out["pred_path"]).is_file()
    assert len(out["folds"]) >= 2 and all(f["best_iteration"] >= 1 for f in out["folds"])
    assert out["leaderboard"][0]["formula"] == f'model("{rid}")'
    assert set(out["oos"]["members"]) >= {"IC", "ICIR", "RankIC", "RankICIR"}
    r = runner.invoke(app, ["--config", str(cfg), "leaderboard", "--source", "model", "--json"])
    assert r.exit_code == 0, r.output
    assert f'model(\\"{rid}\\")' in r.output or f'model("{rid}")' in r.output


def test_lgbm_table_output_and_errors(synthetic):
    cfg, tmp = synthetic
    r = runner.invoke(app, ["--config", str(cfg), "model", "lgbm", "--no-submit"])
    assert r.exit_code == 0, r.output
    assert "OOS test metrics" in r.output and "fold" in r.output
    r = runner.invoke(app, ["--config", str(cfg), "model", "lgbm", "--preset", "nope"])
    assert r.exit_code == 2 and "unknown preset" in r.output
    r = runner.invoke(app, ["--config", str(cfg), "model", "lgbm", "--feature-set", "zzz"])
    assert r.exit_code == 2 and "unknown feature set" in r.output
