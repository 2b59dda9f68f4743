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
    out = json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert out["store"] == str(tmp / "lb.db")
    assert out["config"] == str(cfg)
    rid = out["run_id"]
    assert rid.startswith("lgbm-") and Path(out["pred_path"]).is_file()
    assert len(out["folds"]) >= 2 and all(f["best_iteration"] >= 1 for f in out["folds"])
    assert out["leaderboard"][0]["formula"] == f'model("{rid}")'
    assert set(out["oos"]["members"]) >= {"IC", "ICIR", "RankIC", "RankICIR"}
    # SHAP / leg signs from the fold fitted before the valid split (models.distill)
    ex = out["shap"]["explained"]
    assert ex["model"] == "fold 0"
    assert ex["shap_rows"].split("..")[1] < ex["valid_start"]
    r = runner.invoke(app, ["--config", str(cfg), "leaderboard", "--source", "model", "--json"])
    assert r.exit_code == 0, r.output
    assert f'model(\\"{rid}\\")' in r.output or f'model("{rid}")' in r.output


def test_lgbm_table_output_and_errors(synthetic):
    cfg, tmp = synthetic
    r = runner.invoke(app, ["--config", str(cfg), "model", "lgbm", "--no-submit"])
    assert r.exit_code == 0, r.output
    assert "OOS test metrics" in r.output and "fold" in r.output
    assert r.output.splitlines()[0].startswith("config ")         # config line first
    r = runner.invoke(app, ["--config", str(cfg), "model", "lgbm"])
    assert r.exit_code == 0, r.output
    assert "SHAP mean |value| top (fold 0, rows " in " ".join(r.output.split())


@pytest.mark.parametrize("args,msg", [
    (["--preset", "nope"], "--preset 'nope': use one of qlib-alpha158"),
    (["--feature-set", "zzz"], "--feature-set 'zzz'"),
    (["--feature-set", "alpha158+poo"], "--feature-set 'alpha158+poo'"),
    (["--universe", "mars"], "--universe 'mars'"),
    (["--rounds", "0"], "--rounds must be > 0"),
    (["--retrain-months", "-1"], "--retrain-months must be > 0"),
    (["--end", "2020-13-01"], "--end '2020-13-01'"),
    (["--feature-norm", "x"], "--feature-norm 'x'"),
])
def test_lgbm_options_are_validated_before_any_data_loads(synthetic, monkeypatch, args, msg):
    cfg, tmp = synthetic
    import models.run
    import models.run_common

    def boom(*a, **k):
        raise AssertionError("data loaded before the options were validated")
    monkeypatch.setattr(models.run_common, "make_workspace", boom)
    monkeypatch.setattr(models.run, "run_lgbm", boom)
    r = runner.invoke(app, ["--config", str(cfg), "model", "lgbm", *args])
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error:") and msg in " ".join(r.output.split())


def test_transformer_options_are_validated_before_any_data_loads(synthetic, monkeypatch):
    cfg, tmp = synthetic
    import models.run

    def boom(*a, **k):
        raise AssertionError("ran before the options were validated")
    monkeypatch.setattr(models.run, "run_transformer", boom)
    for args, msg in ((["--epochs", "0"], "--epochs must be > 0"),
                      (["--seq-len", "-3"], "--seq-len must be > 0"),
                      (["--start", "yesterday"], "--start 'yesterday'")):
        r = runner.invoke(app, ["--config", str(cfg), "model", "transformer", *args])
        assert r.exit_code == 2 and msg in " ".join(r.output.split()), r.output
