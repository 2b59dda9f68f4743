"""Model predictions as candidates: the model("<run id>") leaf, saved panels, evaluator, gate."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest.candidates import (
    evaluate_candidate,
    load_prediction_panel,
    member_correlations,
    model_formula,
    new_run_id,
    save_predictions,
    submit_prediction,
)
from backtest.context import EvalConfig
from data.config import Config, DataConfig
from data.errors import ConfigError
from factors.errors import EvaluationError, ParseError
from factors.expr_eval import evaluate
from factors.expr_parse import parse
from factors.expr_tree import Call, Field, ModelRef, model_refs, unparse
from factors.store import FactorStore, StoreConfig
from models.distill import ShapSummary, distill_candidates, feature_signs
from models.settings import ModelConfig

RID = "lgbm-20261124T101010-ab12cd"


# ---------------------------------------------------------------- the formula leaf

@pytest.mark.parametrize("text", [f'model("{RID}")', f'cs_rank(model("{RID}")) * close',
                                  'model("a.b_c-1") - ts_mean(model("x"), 5)'])
def test_model_leaf_round_trips(text):
    e = parse(text)
    assert parse(unparse(e)) == e
    assert parse(str(e)) == e and hash(parse(str(e))) == hash(e)
    assert all(isinstance(r, str) for r in model_refs(e))


def test_model_leaf_structure():
    e = parse(f"model('{RID}') + close")
    assert e == Call("add", (ModelRef(RID), Field("close")))
    assert str(ModelRef(RID)) == f'model("{RID}")'
    assert model_refs(e) == {RID}
    with pytest.raises(ValueError):
        ModelRef("../etc")
    with pytest.raises(TypeError):
        ModelRef(5)


@pytest.mark.parametrize("text", [
    'model("a b")', 'model("../x")', 'model(".hidden")', 'model("")', 'model(close)',
    'model("a", "b")', 'model(run="a")', 'model()', 'model(5)', 'close + "x"',
    'ts_mean("x", 5)', 'cs_rank("model")', 'model("a/b")', "model(b'a')",
    'model("' + "a" * 129 + '")'])
def test_strings_are_rejected_everywhere_else(text):
    with pytest.raises(ParseError):
        parse(text)


def test_evaluate_needs_a_resolver():
    e = parse(f'model("{RID}") * 2.0')
    with pytest.raises(EvaluationError, match="resolver"):
        evaluate(e, {})
    out = evaluate(e, {}, models=lambda rid: np.ones((3, 2)))
    assert (out == 2).all()
    with pytest.raises(EvaluationError, match="shape"):
        evaluate(parse(f'model("{RID}") + close'), {"close": np.ones((4, 2))},
                 models=lambda rid: np.ones((3, 2)))
    with pytest.raises(EvaluationError, match="could not be loaded"):
        evaluate(e, {}, models=lambda rid: {}[rid])


# ---------------------------------------------------------------- saved panels

def _cfg(tmp_path, ws):
    d = ws.ctx.dates
    return Config(data=DataConfig(), store=StoreConfig(path=tmp_path / "lb.db", min_valid_rank_ic=0.01),
                  model=ModelConfig(out_dir=tmp_path / "models"),
                  evaluate=EvalConfig(train=(str(d[0].date()), str(d[150].date())),
                                      valid=(str(d[151].date()), str(d[220].date())),
                                      test=(str(d[221].date()), str(d[-1].date()))))


def test_save_load_through_workspace(make_ws, tmp_path):
    ws = make_ws(T=60, N=8)
    ws.model_dir = tmp_path / "models"
    rng = np.random.default_rng(0)
    pred = rng.normal(size=ws.ctx.shape)
    pred[:20] = np.nan
    rid = new_run_id("lgbm")
    path = save_predictions(ws.model_dir, rid, pred, ws.ctx.dates, ws.ctx.codes,
                            meta={"x": float("nan")})
    assert path.name == "pred.parquet" and (path.parent / "meta.json").is_file()
    assert not list(path.parent.glob("*.tmp"))
    frame = pd.read_parquet(path)
    assert list(frame.columns) == ["trade_date", "ts_code", "score"]
    assert len(frame) == np.isfinite(pred).sum()
    got = ws.values(parse(model_formula(rid)))
    np.testing.assert_array_equal(got, pred)
    # another grid: unknown dates/codes ignored, missing ones NaN
    sub = load_prediction_panel(ws.model_dir, rid, ws.ctx.dates[30:], ws.ctx.codes[::-1])
    np.testing.assert_array_equal(sub, pred[30:, ::-1])
    with pytest.raises(EvaluationError, match="no prediction panel"):
        ws.values(parse('model("lgbm-missing")'))
    with pytest.raises(EvaluationError):
        save_predictions(ws.model_dir, "../x", pred, ws.ctx.dates, ws.ctx.codes)
    with pytest.raises(EvaluationError, match="shape"):
        save_predictions(ws.model_dir, rid, pred[1:], ws.ctx.dates, ws.ctx.codes)


def test_prediction_panel_goes_through_evaluator_and_gate(make_ws, tmp_path):
    ws = make_ws(T=260, N=30, plant=0.8)
    cfg = _cfg(tmp_path, ws)
    ws.model_dir = cfg.model.out_dir
    # an "oracle-ish" OOS panel on the valid rows only: yesterday's candle body (the signal)
    kmid = ws.values(parse("(close - open) / open"))
    pred = np.full(ws.ctx.shape, np.nan)
    lo, hi = ws.ctx.split_bounds("valid")
    pred[lo:hi] = kmid[lo:hi]
    rid = new_run_id("lgbm")
    save_predictions(cfg.model.out_dir, rid, pred, ws.ctx.dates, ws.ctx.codes)
    with FactorStore(cfg.store.path) as store:
        ev, d = submit_prediction(ws, store, cfg, rid, name=rid, provenance={"model_run": rid})
        assert d.accepted, d.reason
        assert d.n_tried == 1 and d.adj_p < 0.05              # the panel is one trial
        assert np.isnan(ev.reports["train"].rank_ic_mean)     # no predictions on train
        assert ev.reports["valid"].rank_ic_mean > 0.2
        rec = store.get(model_formula(rid), "synth", 1)
        assert rec.source == "model" and rec.formula == f'model("{rid}")'
        # the member is re-loaded from disk by the gate for the next candidate
        cand = evaluate_candidate(ws, "(close - open) / open")
        corr = member_correlations(ws, store, cand, 1)
        assert corr[model_formula(rid)] > 0.9
        # a member whose panel is gone is skipped, not fatal
        (cfg.model.out_dir / rid / "pred.parquet").unlink()
        ws.memo.clear()
        assert model_formula(rid) not in member_correlations(ws, store, cand, 1)


def test_distill_candidates_orient_by_train_sign():
    summ = ShapSummary(importance={"A": 0.3, "B": 0.2, "C": 0.1},
                       pairs=[("A", "B", 0.05), ("A", "C", 0.01)])
    formulas = {"A": "close / open", "B": "ts_mean(vol, 5)", "C": "high - low"}
    out = distill_candidates(summ, formulas, {"A": 1.0, "B": -1.0, "C": 1.0}, n_pairs=1)
    assert [c.kind for c in out] == ["rank_product", "rank_spread"]
    assert out[0].formula == "cs_rank(close / open) * cs_rank(-ts_mean(vol, 5))"
    assert out[1].formula == "cs_rank(close / open) - cs_rank(ts_mean(vol, 5))"
    for c in out:
        assert parse(c.formula) is not None and c.features == ("A", "B")
    with pytest.raises(EvaluationError):
        distill_candidates(summ, {"A": "close"}, {}, n_pairs=1)
    X = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert feature_signs(X, np.array([1.0, 2.0, 3.0]), ["p", "q"]) == {"p": 1.0, "q": -1.0}


def test_run_lgbm_end_to_end_on_synthetic(make_ws, tmp_path):
    from models.lgbm_run import LGBMSettings, run_lgbm
    ws = make_ws(T=260, N=30, plant=0.8)
    cfg = _cfg(tmp_path, ws)
    ws.model_dir = cfg.model.out_dir
    d = ws.ctx.dates
    s = LGBMSettings(universe="synth", feature_set="library", first_test=str(d[151].date()),
                     last_test=str(d[220].date()), retrain_months=2, valid_months=2, rounds=30,
                     early_stopping=5, num_threads=1, params=dict(num_leaves=7, learning_rate=0.1,
                                                   lambda_l1=0.0, lambda_l2=0.0),
                     shap_rows=200, shap_inter_rows=20, shap_pairs=2)
    events = []
    with FactorStore(cfg.store.path) as store:
        run = run_lgbm(cfg, s, ws=ws, store=store, on_progress=events.append)
        recs = store.top(50, universe="synth")
    from models.run_common import FeatureProgress, FoldDone, ModelMessage, RoundProgress
    kinds = {type(e) for e in events}
    assert kinds == {ModelMessage, FeatureProgress, RoundProgress, FoldDone}
    assert any("prediction panel" in e.text for e in events if isinstance(e, ModelMessage))
    assert run.leaderboard[0]["formula"] == f'model("{run.run_id}")'
    assert run.leaderboard[0]["accepted"]
    assert len(run.leaderboard) >= 3 and run.shap["pairs"]
    stored = {r.formula for r in recs}
    assert f'model("{run.run_id}")' in stored
    assert all(r.source == "model" for r in recs)
    assert (cfg.model.out_dir / run.run_id / "fold0.txt").is_file()
    assert (cfg.model.out_dir / run.run_id / "run.json").is_file()
    # staged and renamed into place (issue 12): the record names the final folder, and
    # nothing hidden (a partial folder, a temporary file) is left beside it
    assert run.pred_path == str(cfg.model.out_dir / run.run_id / "pred.parquet")
    assert run.model_paths and all(Path(p).is_file() and Path(p).parent.name == run.run_id
                                   for p in run.model_paths)
    assert [p.name for p in cfg.model.out_dir.iterdir()] == [run.run_id]
    assert run.oos["eligible"]["RankIC"] > 0.2
    with pytest.raises(ConfigError, match="sealed test"):
        run_lgbm(cfg, LGBMSettings(last_test=str(d[-1].date())), ws=ws, submit=False)


def test_racing_submits_of_correlated_candidates_admit_one(make_ws, tmp_path, monkeypatch):
    """Two submitters (own connections, as two processes would have) both compute their
    correlations before either inserts: the gate inside the insert's transaction still sees
    the member the other one committed (issue 12)."""
    import threading

    import backtest.candidates as cands
    from backtest.candidates import submit
    ws = make_ws(T=260, N=30, plant=0.8)
    cfg = _cfg(tmp_path, ws)
    FactorStore(cfg.store.path).close()
    barrier = threading.Barrier(2)
    real = cands.member_correlations

    def listed_then_wait(*a, **k):                 # both have listed (no) members ...
        out = real(*a, **k)
        barrier.wait(30)                           # ... before either inserts
        return out
    monkeypatch.setattr(cands, "member_correlations", listed_then_wait)
    formulas = ["(close - open) / open", "(close - open) / open * 2"]
    evs = [evaluate_candidate(ws, f, orient=True) for f in formulas]
    got, errors = {}, []

    def worker(i):
        try:
            with FactorStore(cfg.store.path) as store:
                got[i] = submit(ws, store, evs[i], name=f"c{i}", source="manual", cfg=cfg,
                                provenance={})
        except Exception as e:  # surfaced below
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(d.accepted for d in got.values()) == [False, True], got
    loser = next(d for d in got.values() if not d.accepted)
    assert loser.kind == "correlation" and "corr" in loser.reason
    with FactorStore(cfg.store.path) as store:
        assert len(store.members()) == 1
