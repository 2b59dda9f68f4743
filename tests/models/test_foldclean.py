"""The fold-clean rule (models.distill): SHAP, interaction pairs and leg signs of a LightGBM run
come only from a model fitted, and rows explained, before the [evaluate] valid start.

Synthetic workspace (tests/models/conftest.py): valid split = rows 151..220. Two layouts:
``fold`` (first_test = valid start, so walk-forward fold 0 is the explanation model) and
``dedicated`` (first_test after the valid start: no fold ends before it, a dedicated booster is
fitted at the valid start).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import models.lgbm_run as lgbm_run
from backtest.context import EvalConfig
from data.config import Config, DataConfig
from data.errors import ConfigError
from factors.store import FactorStore, StoreConfig
from models.lgbm_run import LGBMSettings, run_lgbm
from models.settings import ModelConfig

VALID = (151, 220)                 # rows of the [evaluate] valid split
FIRST_TEST = {"fold": 151, "dedicated": 190}


def _setup(make_ws, tmp_path, layout, valid=VALID):
    ws = make_ws(T=260, N=30, plant=0.8)
    d = ws.ctx.dates
    cfg = Config(data=DataConfig(),
                 store=StoreConfig(path=tmp_path / "lb.db", min_valid_rank_ic=0.01),
                 model=ModelConfig(out_dir=tmp_path / "models"),
                 evaluate=EvalConfig(train=(str(d[0].date()), str(d[valid[0] - 1].date())),
                                     valid=(str(d[valid[0]].date()), str(d[valid[1]].date())),
                                     test=(str(d[valid[1] + 1].date()), str(d[-1].date()))))
    ws.model_dir = cfg.model.out_dir
    s = LGBMSettings(universe="synth", feature_set="library",
                     first_test=str(d[FIRST_TEST[layout]].date()), last_test=str(d[220].date()),
                     retrain_months=2, valid_months=2, rounds=30, early_stopping=5,
                     num_threads=1, params=dict(num_leaves=7, learning_rate=0.1,
                                                lambda_l1=0.0, lambda_l2=0.0),
                     shap_rows=200, shap_inter_rows=20, shap_pairs=2)
    return ws, cfg, s


def _tamper(monkeypatch, how, seed=7):
    """Wrap the run's dataset: ``scramble`` permutes, within each date, the labels of every row
    whose label window (t+1 .. t+1+h) reaches the valid split; ``poison`` sets those rows'
    features to 99 (outside the +-3 clip of real features)."""
    real = lgbm_run.build_dataset

    def build(ws, *a, **k):
        ds = real(ws, *a, **k)
        c = int(ds.dates.searchsorted(pd.Timestamp(build.valid_start)))
        first = c - ds.horizon - 1
        if how == "poison":
            feats = ds.features.copy()
            feats[first:] = 99.0
            return replace(ds, features=feats)
        rng = np.random.default_rng(seed)
        label, raw = ds.label.copy(), ds.label_raw.copy()
        for t in range(first, len(ds.dates)):
            j = np.flatnonzero(ds.sample_mask[t])
            p = rng.permutation(j)
            label[t, j], raw[t, j] = label[t, p], raw[t, p]
        return replace(ds, label=label, label_raw=raw)
    monkeypatch.setattr(lgbm_run, "build_dataset", build)
    return build


def _run(cfg, s, ws, sub):
    cfg = cfg.replace(store=replace(cfg.store, path=cfg.store.path.parent / f"{sub}.db"),
                  model=replace(cfg.model, out_dir=cfg.model.out_dir / sub))
    ws.model_dir = cfg.model.out_dir
    with FactorStore(cfg.store.path) as store:
        run = run_lgbm(cfg, s, ws=ws, store=store)
        recs = {r.formula: r.provenance for r in store.top(None, universe="synth")}
    return run, recs


def _distilled(run):
    """What the run selected from the explanation: SHAP ranking, pairs, formulas (leg signs)."""
    ex = {k: v for k, v in run.shap["explained"].items() if k != "model_path"}
    return (run.shap["top_features"], run.shap["pairs"], ex,
            [r["formula"] for r in run.leaderboard[1:]])


@pytest.mark.parametrize("layout", ["fold", "dedicated"])
def test_scrambled_valid_labels_leave_shap_pairs_and_distilled_formulas_unchanged(
        make_ws, tmp_path, monkeypatch, layout):
    ws, cfg, s = _setup(make_ws, tmp_path, layout)
    clean, clean_recs = _run(cfg, s, ws, "clean")
    tamper = _tamper(monkeypatch, "scramble")
    tamper.valid_start = cfg.evaluate.valid[0]
    scrambled, scr_recs = _run(cfg, s, ws, "scrambled")
    # the scramble bites: the folds early-stopped on the valid split learned something else
    assert any(a["valid_ic"] != b["valid_ic"] for a, b in zip(clean.folds, scrambled.folds))
    assert len(clean.leaderboard) >= 3 and clean.shap["pairs"]
    assert _distilled(clean) == _distilled(scrambled)
    signs = {f: p["train_signs"] for f, p in clean_recs.items() if "train_signs" in p}
    assert signs == {f: p["train_signs"] for f, p in scr_recs.items() if "train_signs" in p}
    model = {"fold": "fold 0", "dedicated": "explanation"}[layout]
    assert clean.shap["explained"]["model"] == model
    if layout == "dedicated":
        assert clean.shap["explained"]["model_path"].endswith("explain.txt")


@pytest.mark.filterwarnings("ignore:Mean of empty slice")   # poisoned folds: constant preds
@pytest.mark.parametrize("layout", ["fold", "dedicated"])
def test_shap_and_sign_rows_lie_before_the_valid_start(make_ws, tmp_path, monkeypatch, layout):
    ws, cfg, s = _setup(make_ws, tmp_path, layout)
    tamper = _tamper(monkeypatch, "poison")
    tamper.valid_start = cfg.evaluate.valid[0]
    seen = {}

    def spy(name, fn):
        def wrapped(*a, **k):
            seen.setdefault(name, []).append(np.asarray(a[1] if name == "shap" else a[0]))
            return fn(*a, **k)
        return wrapped
    monkeypatch.setattr(lgbm_run, "shap_summary", spy("shap", lgbm_run.shap_summary))
    monkeypatch.setattr(lgbm_run, "feature_signs", spy("signs", lgbm_run.feature_signs))
    run, recs = _run(cfg, s, ws, "poisoned")
    # no row whose label window reaches the valid split was explained or signed
    assert len(seen["shap"]) == 1 and len(seen["signs"]) == 1
    for X in seen["shap"] + seen["signs"]:
        assert len(X) and np.abs(X).max() <= 3.0
    # and the run records date ranges that end before the valid start, embargo included
    ex = run.shap["explained"]
    d = ws.ctx.dates
    lim = d[VALID[0] - s.gap]                      # first row whose label reaches valid
    assert ex["valid_start"] == str(d[VALID[0]].date()) and ex["embargo_rows"] == s.gap
    for key in ("shap_rows", "interaction_rows", "sign_rows", "fit_train", "fit_valid"):
        lo, hi = (pd.Timestamp(x) for x in ex[key].split(".."))
        assert lo <= hi < lim, key
    prov = [p for p in recs.values() if p.get("kind") in ("rank_product", "rank_spread")]
    assert all(p["explained"]["shap_rows"] == ex["shap_rows"] for p in prov)


def test_no_rows_before_the_valid_start_is_a_config_error_before_training(
        make_ws, tmp_path, monkeypatch):
    ws, cfg, s = _setup(make_ws, tmp_path, "dedicated", valid=(12, 220))

    def boom(*a, **k):
        raise AssertionError("trained before the explanation model was checked")
    monkeypatch.setattr(lgbm_run, "run_walk_forward", boom)
    with FactorStore(cfg.store.path) as store, pytest.raises(ConfigError,
                                                             match="valid start .*start earlier"):
        run_lgbm(cfg, s, ws=ws, store=store)
    # without submitting there is nothing to explain: the same settings train
    monkeypatch.undo()
    assert run_lgbm(cfg, s, ws=ws, submit=False).shap == {}
