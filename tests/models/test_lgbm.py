"""LightGBM: daily IC, fit with early stopping, text-format save/load, OOS walk-forward, causality."""
from __future__ import annotations

import numpy as np
import pytest

from factors.errors import EvaluationError
from models.dataset import build_dataset
from models.lgbm import (
    daily_ic,
    fit_lgbm,
    lgbm_params,
    load_booster,
    predict_rows,
    run_walk_forward,
    save_booster,
)
from models.run_common import oos_ic_stats
from models.walkforward import walk_forward

SMALL = dict(num_leaves=15, learning_rate=0.1, lambda_l1=0.0, lambda_l2=0.0, num_threads=1)


def _small_params(seed=1):
    return lgbm_params(seed=seed, **SMALL)




def _ds(make_ws, T=300, N=30, seed=0):
    ws = make_ws(T=T, N=N, seed=seed, plant=0.8)
    return ws, build_dataset(ws, "library")


def test_daily_ic_matches_numpy():
    rng = np.random.default_rng(0)
    day = np.repeat(np.arange(4), 10)
    p, y = rng.normal(size=40), rng.normal(size=40)
    ic = daily_ic(p, y, day, 5)
    for d in range(4):
        sel = day == d
        assert ic[d] == pytest.approx(np.corrcoef(p[sel], y[sel])[0, 1])
    assert np.isnan(ic[4])                            # no rows
    assert np.isnan(daily_ic(np.ones(10), y[:10], np.zeros(10, int), 1)[0])   # constant


def test_fit_is_deterministic_learns_the_signal_and_round_trips(make_ws, tmp_path):
    ws, ds = _ds(make_ws)
    X, y, _, _ = ds.arrays(slice(0, 200))
    Xv, yv, tv, _ = ds.arrays(slice(203, 260))
    seen = []
    a = fit_lgbm(X, y, Xv, yv, tv, params=_small_params(), num_boost_round=80,
                 early_stopping_rounds=10, feature_names=ds.feature_names,
                 on_round=lambda it, l2, ic: seen.append(it))
    b = fit_lgbm(X, y, Xv, yv, tv, params=_small_params(), num_boost_round=80,
                 early_stopping_rounds=10, feature_names=ds.feature_names)
    assert a.valid_ic > 0.3                           # the planted KMID signal
    assert seen[:3] == [1, 2, 3] and len(a.history["ic"]) == len(seen)
    assert a.best_iteration == b.best_iteration
    pa = a.booster.predict(Xv, num_iteration=a.best_iteration)
    np.testing.assert_array_equal(pa, b.booster.predict(Xv, num_iteration=b.best_iteration))
    path = save_booster(a.booster, tmp_path / "m" / "fold0.txt")
    assert path.read_text()[:4] == "tree"            # LightGBM's text format, not a pickle
    assert not [p for p in path.parent.iterdir() if p.suffix == ".tmp"]
    loaded = load_booster(path)
    np.testing.assert_allclose(loaded.predict(Xv), pa, rtol=1e-12)
    with pytest.raises(EvaluationError, match="not found"):
        load_booster(tmp_path / "nope.txt")
    with pytest.raises(EvaluationError, match="empty"):
        fit_lgbm(X[:0], y[:0], Xv, yv, tv)


def test_predict_rows_covers_members_without_needing_labels(make_ws):
    ws, ds = _ds(make_ws, T=120, N=12)
    X, y, _, _ = ds.arrays(slice(0, 80))
    Xv, yv, tv, _ = ds.arrays(slice(83, 100))
    fit = fit_lgbm(X, y, Xv, yv, tv, params=_small_params(), num_boost_round=10,
                   early_stopping_rounds=5)
    p = predict_rows(fit.booster, ds, slice(100, 120))
    members = ds.universe_mask[100:120]
    assert np.isfinite(p[members]).all() and np.isnan(p[~members]).all()
    # the last rows have no label (beyond the data) but members are still predicted
    assert not ds.sample_mask[-1].any() and np.isfinite(p[-1][members[-1]]).all()


def test_walk_forward_predictions_are_out_of_sample_and_causal(make_ws, truncate, tmp_path):
    ws, ds = _ds(make_ws, T=300, N=25, seed=3)
    folds = walk_forward(ds.dates, "2015-09-01", "2016-02-29", retrain_months=3,
                         valid_months=2, embargo=2, horizon=1)
    res = run_walk_forward(ds, folds, params=_small_params(), num_boost_round=40,
                           early_stopping_rounds=5, model_dir=tmp_path)
    test = np.zeros(len(ds.dates), bool)
    for f in folds:
        test[f.test] = True
    assert np.isnan(res.pred[~test]).all()
    assert np.isfinite(res.pred[test][ds.universe_mask[test]]).all()
    assert [p.name for p in res.model_paths] == [f"fold{k}.txt" for k in range(len(folds))]
    assert oos_ic_stats(res.pred, ds.label_raw, ds.sample_mask)["RankIC"] > 0.3
    # cutting every date after fold 0's test block changes nothing in fold 0's predictions
    k = folds[0].test.stop
    ds_cut = build_dataset(truncate(ws, k), "library")
    cut = run_walk_forward(ds_cut, folds[:1], params=_small_params(), num_boost_round=40,
                           early_stopping_rounds=5)
    np.testing.assert_array_equal(cut.pred[folds[0].test], res.pred[folds[0].test])


def test_oos_ic_stats_matches_manual():
    rng = np.random.default_rng(1)
    T, N = 30, 20
    y = rng.normal(size=(T, N))
    p = y + rng.normal(size=(T, N))
    mask = np.ones((T, N), bool)
    mask[:, 0] = False
    s = oos_ic_stats(p, y, mask)
    ic = [np.corrcoef(p[t, 1:], y[t, 1:])[0, 1] for t in range(T)]
    from scipy.stats import spearmanr
    ric = [spearmanr(p[t, 1:], y[t, 1:])[0] for t in range(T)]
    assert s["IC"] == pytest.approx(np.mean(ic))
    assert s["ICIR"] == pytest.approx(np.mean(ic) / np.std(ic, ddof=1))
    assert s["RankIC"] == pytest.approx(np.mean(ric))
    assert s["RankICIR"] == pytest.approx(np.mean(ric) / np.std(ric, ddof=1))
    assert s["days"] == T and s["names_per_day"] == N - 1


def test_walk_forward_through_an_executor_is_bit_identical(make_ws, tmp_path):
    """Each fold as an executor task (factors.parallel): same predictions, boosters and fold
    summaries as the folds fitted here one after another (the Ray version: tests/cluster)."""
    from factors.parallel import SerialExecutor
    ws, ds = _ds(make_ws, T=260, N=20, seed=4)
    folds = walk_forward(ds.dates, "2015-08-03", "2015-12-31", retrain_months=2,
                         valid_months=2, embargo=2, horizon=1)
    kw = dict(params=_small_params(), num_boost_round=30, early_stopping_rounds=5)
    here = run_walk_forward(ds, folds, model_dir=tmp_path / "a", **kw)
    seen = []
    via = run_walk_forward(ds, folds, model_dir=tmp_path / "b", executor=SerialExecutor(),
                           on_fold=lambda k, info: seen.append(k), **kw)
    assert len(folds) >= 2 and seen == list(range(len(folds)))
    assert here.pred.tobytes() == via.pred.tobytes()
    assert [i["best_iteration"] for i in here.fold_info] == \
        [i["best_iteration"] for i in via.fold_info]
    for a, b in zip(here.model_paths, via.model_paths):
        assert a.read_text() == b.read_text()
