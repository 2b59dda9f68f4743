"""Member references: the factor("<name>") leaf, its resolution in the workspace, lineage, gate.

Synthetic workspaces from tests/models/conftest.py (make_ws with a planted candle-body signal, so
KMID = (close - open) / open has a strong RankIC on train and valid).
"""
from __future__ import annotations

import numpy as np
import pytest

from backtest.candidates import MAX_REF_DEPTH, evaluate_candidate, submit
from backtest.context import EvalConfig
from data.config import Config, DataConfig
from factors.errors import EvaluationError, ParseError
from factors.expr_eval import evaluate
from factors.expr_parse import parse
from factors.expr_tree import Call, FactorRef, Field, factor_refs, size, unparse
from factors.store import FactorStore, StoreConfig
from factors.store_records import FactorRecord
from models.settings import ModelConfig

KMID = "(close - open) / open"


# ---------------------------------------------------------------- the formula leaf

@pytest.mark.parametrize("text", ['factor("gp_eeb64d_57")', 'factor("a") * -1',
                                  'cs_rank(factor("llm_x.1-2")) - ts_mean(factor("b"), 5)',
                                  'factor("a") + model("lgbm-1")'])
def test_factor_leaf_round_trips(text):
    e = parse(text)
    assert parse(unparse(e)) == e and hash(parse(str(e))) == hash(e)


def test_factor_leaf_structure():
    e = parse('factor("gp_1") + close')
    assert e == Call("add", (FactorRef("gp_1"), Field("close")))
    assert str(FactorRef("gp_1")) == 'factor("gp_1")'
    assert factor_refs(e) == {"gp_1"} and size(e) == 3
    with pytest.raises(ValueError):
        FactorRef("../x")
    with pytest.raises(TypeError):
        FactorRef(5)


@pytest.mark.parametrize("text", ['factor(close)', 'factor("a", "b")', 'factor("")',
                                  'factor("../etc")', 'factor(name="a")',
                                  'ts_mean("a", 5)'])
def test_bad_factor_leaves_are_parse_errors(text):
    with pytest.raises(ParseError):
        parse(text)


def test_evaluate_needs_a_member_resolver():
    e = parse('factor("a") * 2.0')
    with pytest.raises(EvaluationError, match="member resolver"):
        evaluate(e, {})
    out = evaluate(e, {}, factors=lambda name: np.full((3, 2), 1.5))
    np.testing.assert_array_equal(out, np.full((3, 2), 3.0))

    def unknown(name):
        raise KeyError(name)
    with pytest.raises(EvaluationError, match='factor\\("a"\\) could not be resolved'):
        evaluate(e, {}, factors=unknown)


# ---------------------------------------------------------------- the workspace resolver

def _cfg(tmp_path, ws):
    d = ws.ctx.dates
    return Config(data=DataConfig(),
                  store=StoreConfig(path=tmp_path / "lb.db", min_valid_rank_ic=0.01,
                                    max_adj_p=1.0),
                  model=ModelConfig(out_dir=tmp_path / "models"),
                  evaluate=EvalConfig(train=(str(d[0].date()), str(d[150].date())),
                                      valid=(str(d[151].date()), str(d[220].date())),
                                      test=(str(d[221].date()), str(d[-1].date())),
                                      horizon=1))


def _put(store, ws, formula, name):
    """Store ``formula`` as member ``name`` without evaluating it (forced, no correlations)."""
    rec = FactorRecord(formula=formula, name=name, source="manual", universe=ws.universe,
                       horizon=1, metrics={"valid": {"rank_ic_mean": 0.05}})
    d = store.add(rec, {}, force=True)
    assert d.id is not None
    return d.id


@pytest.fixture()
def setup(make_ws, tmp_path):
    ws = make_ws(T=260, N=30, plant=0.6)
    cfg = _cfg(tmp_path, ws)
    ws.store, ws.horizon = cfg.store.path, 1
    with FactorStore(cfg.store.path) as store:
        _put(store, ws, KMID, "kmid")
        _put(store, ws, 'cs_rank(factor("kmid"))', "kmid_rank")
        _put(store, ws, 'factor("cyc_b") + close', "cyc_a")
        _put(store, ws, 'factor("cyc_a") + close', "cyc_b")
        for i in range(MAX_REF_DEPTH + 2):        # deep_0 -> deep_1 -> ... -> close
            nxt = f'factor("deep_{i + 1}")' if i < MAX_REF_DEPTH + 1 else "close"
            _put(store, ws, f"{nxt} * 1.0", f"deep_{i}")
        _put(store, ws, "vol", "twin")
        _put(store, ws, "turnover", "twin")
    return ws, cfg


def test_reference_evaluates_the_members_formula(setup):
    ws, _ = setup
    base = ws.values(parse(KMID))
    np.testing.assert_array_equal(ws.values(parse('factor("kmid") * -1')), -base)
    # recursive: kmid_rank = cs_rank(factor("kmid"))
    direct = ws.values(parse(f"cs_rank({KMID}) + close"))
    np.testing.assert_array_equal(ws.values(parse('factor("kmid_rank") + close')), direct)


def test_unknown_ambiguous_cycle_and_depth_are_one_clear_error(setup):
    ws, _ = setup
    with pytest.raises(EvaluationError, match="no leaderboard member named 'nope' in universe "
                                              "synth"):
        ws.values(parse('factor("nope")'))
    with pytest.raises(EvaluationError, match="ambiguous in universe synth.*members"):
        ws.values(parse('factor("twin")'))
    with pytest.raises(EvaluationError, match="reference cycle cyc_a -> cyc_b -> cyc_a"):
        ws.values(parse('factor("cyc_a")'))
    with pytest.raises(EvaluationError, match=f"nested deeper than {MAX_REF_DEPTH}"):
        ws.values(parse('factor("deep_0")'))
    assert ws._resolving == []            # the guard unwinds after an error
    ws.store = None
    ws._members.clear()
    with pytest.raises(EvaluationError, match="no leaderboard store"):
        ws.values(parse('factor("kmid")'))


def test_member_names_lists_unique_referencable_names(setup):
    ws, _ = setup
    names = ws.member_names()
    assert "kmid" in names and "kmid_rank" in names and "twin" not in names


def test_reference_is_causal(setup, truncate):
    ws, _ = setup
    full = ws.values(parse('ts_mean(factor("kmid_rank"), 5) - factor("kmid")'))
    k = 150
    short = truncate(ws, k)
    short.store, short.horizon = ws.store, 1
    part = short.values(parse('ts_mean(factor("kmid_rank"), 5) - factor("kmid")'))
    np.testing.assert_array_equal(part, full[:k])


def test_submit_records_lineage_and_gate_rejects_a_bare_reference(make_ws, tmp_path):
    ws = make_ws(T=260, N=30, plant=0.6)
    cfg = _cfg(tmp_path, ws)
    ws.store, ws.horizon = cfg.store.path, 1
    with FactorStore(cfg.store.path) as store:
        d0 = submit(ws, store, evaluate_candidate(ws, KMID, orient=True), name="kmid",
                    source="manual", cfg=cfg, provenance={})
        assert d0.accepted, d0.reason
        # factor("kmid") alone is kmid itself: |corr| = 1 with it
        d1 = submit(ws, store, evaluate_candidate(ws, 'factor("kmid")', orient=True),
                    name="bare", source="manual", cfg=cfg, provenance={})
        assert not d1.accepted and d1.kind == "correlation" and d1.member_name == "kmid"
        assert d1.max_abs_corr == pytest.approx(1.0)
        # a reference combined with something else is stored with its lineage (forced: the
        # lineage is under test, not this combination's merit)
        ev = evaluate_candidate(ws, 'factor("kmid") + cs_rank(ts_std(ret, 10))', orient=True)
        r1 = store.start_run("manual", config={}, seed=None, universe=ws.universe,
                             data_root=None)
        d2 = submit(ws, store, ev, name="child", source="manual", cfg=cfg,
                    provenance={"run_id": r1}, force=True)
        rec = next(r for r in store.members() if r.name == "child")
        assert rec.provenance["run_id"] == r1
        assert rec.provenance["references"] == [
            {"name": "kmid", "id": d0.id, "formula": store.members()[0].formula}]
        assert d2.id == rec.id
        # a member with a reference can be referenced in turn
        np.testing.assert_array_equal(ws.values(parse('factor("child")')),
                                      ws.values(parse(rec.formula)))


# ---------------------------------------------------------------- model panels in the combination

def test_model_member_competes_in_the_combination(make_ws, tmp_path):
    """A model("<run id>") member is ranked, pruned and weighted by mine combine's library
    function like GP/LLM members; a member built on another by factor() is evaluated too."""
    from backtest.candidates import model_formula, save_predictions
    from backtest.combine import combine_from_store
    ws = make_ws(T=260, N=30, plant=0.6)
    cfg = _cfg(tmp_path, ws)
    ws.store, ws.horizon, ws.model_dir = cfg.store.path, 1, cfg.model.out_dir
    rid = "lgbm-20261130T000000-abcdef"
    rng = np.random.default_rng(1)
    kmid = ws.values(parse(KMID))
    save_predictions(cfg.model.out_dir, rid, kmid + rng.normal(0, 0.01, kmid.shape),
                     ws.ctx.dates, ws.ctx.codes)
    with FactorStore(cfg.store.path) as store:
        def add(formula, name, source, icir):
            rec = FactorRecord(formula=formula, name=name, source=source, universe="synth",
                               horizon=1, metrics={"train": {"rank_ic_mean": 0.05},
                                                   "valid": {"rank_ic_mean": 0.05,
                                                             "rank_icir": icir}})
            assert store.add(rec, {}, force=False, min_valid_rank_ic=0.0, max_adj_p=1.0,
                             max_corr=1.0).accepted
        add(model_formula(rid), rid, "model", 0.9)                   # the best by valid ICIR
        add(KMID, "gp_kmid", "gp", 0.8)                             # ~ the model: pruned
        add("-ts_std(ret, 10)", "llm_vol", "llm", 0.3)
        add('cs_rank(factor("llm_vol")) - 2.0 * cs_rank(vol)', "gp_child", "gp", 0.2)
        res = combine_from_store(ws, store, top=10, method="ic", max_corr=0.7, window=20,
                                 min_valid_rank_ic=0.0)
    kept = [m.name for m in res.members]
    assert kept[0] == rid and "gp_kmid" not in kept                  # the model wins its pair
    assert "llm_vol" in kept
    why = dict(res.dropped).get("gp_child", "kept")                 # evaluated through factor()
    assert "cannot evaluate" not in why, why
    assert any(n == "gp_kmid" and "corr" in why for n, why in res.dropped)
    w = res.weights[rid].to_numpy()
    assert np.nanmax(w) > 0                                          # weighted, not ignored


# ---------------------------------------------------------------- the pool as model features

def _pool_ws(make_ws, tmp_path, T=260):
    ws = make_ws(T=T, N=30, plant=0.6)
    cfg = _cfg(tmp_path, ws)
    ws.store, ws.horizon = cfg.store.path, 1
    with FactorStore(cfg.store.path) as store:
        _put(store, ws, KMID, "kmid")
        _put(store, ws, 'cs_rank(factor("kmid")) * -ts_mean(turnover, 5)', "kmid_liq")
        _put(store, ws, 'model("lgbm-x")', "lgbm-x")                 # a model panel: left out
        _put(store, ws, 'factor("lgbm-x") + close', "on_model")      # reads it: left out
    return ws


def test_pool_feature_set_adds_the_members_as_references(make_ws, tmp_path):
    from models.dataset import build_dataset, pool_features, robust_zscore
    ws = _pool_ws(make_ws, tmp_path)
    assert [f.name for f in pool_features(ws)] == ["pool_kmid", "pool_kmid_liq"]
    base = build_dataset(ws, "library")
    ds = build_dataset(ws, "library+pool")
    assert ds.feature_names == base.feature_names + ["pool_kmid", "pool_kmid_liq"]
    assert ds.formulas[-2:] == ['factor("kmid")', 'factor("kmid_liq")']
    np.testing.assert_array_equal(ds.features[:, :, :-2], base.features)
    umask = np.asarray(ws.ctx.universe_mask, dtype=bool)
    want = np.nan_to_num(robust_zscore(ws.values(parse(KMID)), umask, 3.0), nan=0.0)
    np.testing.assert_allclose(ds.features[:, :, -2], want.astype(np.float32))
    # without a store the pool is empty and the base set is what remains
    ws.store = None
    assert build_dataset(ws, "library+pool").feature_names == base.feature_names


def test_pool_features_are_causal(make_ws, tmp_path, truncate):
    from models.dataset import build_dataset
    ws = _pool_ws(make_ws, tmp_path)
    full = build_dataset(ws, "library+pool")
    k = 170
    short = truncate(ws, k)
    short.store, short.horizon = ws.store, 1
    part = build_dataset(short, "library+pool")
    np.testing.assert_array_equal(part.features[:, :, -2:], full.features[:k, :, -2:])


def test_distilling_a_pool_feature_yields_a_reference():
    from models.distill import ShapSummary, distill_candidates
    summ = ShapSummary(importance={"pool_kmid": 0.3, "KMID": 0.2},
                       pairs=[("pool_kmid", "KMID", 0.05)])
    out = distill_candidates(summ, {"pool_kmid": 'factor("kmid")', "KMID": KMID},
                             {"pool_kmid": 1.0, "KMID": -1.0}, n_pairs=1)
    assert out[0].formula == 'cs_rank(factor("kmid")) * cs_rank(-((close - open) / open))'
    assert all(factor_refs(parse(c.formula)) == {"kmid"} for c in out)
