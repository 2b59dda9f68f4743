"""`mine model lgbm --cluster ADDRESS` end to end (CLI -> run_model -> run_lgbm -> the folds as
Ray tasks): the same predictions and fold summaries as the local run, strict JSON on stdout."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mining.cli import app

#: ~20 s on top of the cluster's start (the executor tests stay in the quick suite; CI runs
#: every test, slow ones included).
pytestmark = pytest.mark.slow

runner = CliRunner()


def _make_ws():
    path = Path(__file__).resolve().parents[1] / "models" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_models_synth_conftest_cluster", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_ws


@pytest.fixture
def synthetic(tmp_path, monkeypatch):
    ws = _make_ws()(T=260, N=30, plant=0.8)
    d = ws.ctx.dates
    cfg = tmp_path / "mine.toml"
    cfg.write_text(f"""
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
""")
    ws.model_dir = tmp_path / "models"
    import models.run_common
    monkeypatch.setattr(models.run_common, "make_workspace", lambda *a, **k: ws)
    return cfg


def test_lgbm_on_the_cluster_matches_the_local_run(ray_cluster, ray_executor, synthetic):
    runs = {}
    for where, extra in (("here", []), ("ray", ["--cluster", ray_cluster.address])):
        r = runner.invoke(app, ["--config", str(synthetic), "model", "lgbm", "--no-submit",
                                "--json", *extra])
        assert r.exit_code == 0, r.output
        runs[where] = json.loads(r.stdout)
    here, ray = runs["here"], runs["ray"]
    assert len(here["folds"]) >= 2
    strip = [{k: v for k, v in f.items() if k != "seconds"} for f in here["folds"]]
    assert strip == [{k: v for k, v in f.items() if k != "seconds"} for f in ray["folds"]]
    assert here["oos"] == ray["oos"]
    pd.testing.assert_frame_equal(pd.read_parquet(here["pred_path"]),
                                  pd.read_parquet(ray["pred_path"]), check_exact=True)
