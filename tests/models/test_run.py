"""models.run.run_model: the one entry point of the model producers (synthetic workspace)."""
from __future__ import annotations

import numpy as np
import pytest

from backtest.context import EvalConfig
from data.config import Config, DataConfig
from data.errors import ConfigError
from factors.store import StoreConfig
from models.lgbm_run import LGBMSettings, run_lgbm
from models.run import model_settings, run_model
from models.settings import ModelConfig


def _setup(make_ws, tmp_path):
    ws = make_ws(T=260, N=30, plant=0.8)
    d = ws.ctx.dates
    cfg = Config(data=DataConfig(), store=StoreConfig(path=tmp_path / "lb.db"),
                 model=ModelConfig(out_dir=tmp_path / "models", universe="synth",
                                   feature_set="library", first_test=str(d[151].date()),
                                   last_test=str(d[220].date()), retrain_months=2,
                                   valid_months=2, num_threads=1, lgbm_rounds=30,
                                   lgbm_early_stopping=5),
                 evaluate=EvalConfig(train=(str(d[0].date()), str(d[150].date())),
                                     valid=(str(d[151].date()), str(d[220].date())),
                                     test=(str(d[221].date()), str(d[-1].date()))))
    ws.model_dir = cfg.model.out_dir
    return ws, cfg


def _strip(folds):
    return [{k: v for k, v in f.items() if k != "seconds"} for f in folds]


def test_run_model_gives_the_numbers_of_run_lgbm(make_ws, tmp_path):
    ws, cfg = _setup(make_ws, tmp_path)
    s = LGBMSettings.from_config(cfg)
    direct = run_lgbm(cfg, s, ws=ws, submit=False)
    events = []
    via = run_model(cfg, "lgbm", {}, submit=False, ws=ws, on_progress=events.append)
    assert via.settings == direct.settings and via.run_id != direct.run_id
    assert via.oos == direct.oos and _strip(via.folds) == _strip(direct.folds)
    assert via.dataset == direct.dataset and via.leaderboard == [] and events
    a = np.asarray(__import__("pandas").read_parquet(direct.pred_path)["score"])
    b = np.asarray(__import__("pandas").read_parquet(via.pred_path)["score"])
    np.testing.assert_array_equal(a, b)


def test_run_model_submits_by_default_and_opens_the_store(make_ws, tmp_path):
    from factors.store import FactorStore
    ws, cfg = _setup(make_ws, tmp_path)
    run = run_model(cfg, "lgbm", {"rounds": 10}, ws=ws)
    assert run.settings.rounds == 10
    assert run.leaderboard and run.leaderboard[0]["formula"] == f'model("{run.run_id}")'
    with FactorStore(cfg.store.path) as st:
        assert any(r.formula == f'model("{run.run_id}")' for r in st.top(50, universe="synth"))


def test_model_settings_presets_and_errors(tmp_path):
    cfg = Config(data=DataConfig(), model=ModelConfig(out_dir=tmp_path), evaluate=EvalConfig())
    s = model_settings(cfg, "lgbm", preset="qlib-alpha158", seed=7, universe="csi500")
    assert s.preset == "qlib-alpha158" and s.seed == 7 and s.universe == "csi300"
    with pytest.raises(ConfigError, match="unknown preset"):
        model_settings(cfg, "lgbm", preset="nope")
    with pytest.raises(ConfigError, match="unknown model kind"):
        model_settings(cfg, "xgb")
    with pytest.raises(ConfigError, match="LightGBM only"):
        model_settings(cfg, "transformer", preset="qlib-alpha158")
    with pytest.raises(ConfigError, match="does not match"):
        run_model(cfg, "transformer", LGBMSettings())
