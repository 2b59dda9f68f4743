"""LightGBM return model: fit with early stopping on valid, walk-forward OOS predictions.

Models are saved in LightGBM's own text format (``Booster.save_model``, written atomically) and
loaded with ``lightgbm.Booster(model_file=...)``; nothing is pickled.

Default hyper-parameters are Qlib's benchmark LightGBM on Alpha158
(``examples/benchmarks/LightGBM/workflow_config_lightgbm_Alpha158.yaml``: loss mse,
colsample_bytree 0.8879, learning_rate 0.2, subsample 0.8789, lambda_l1 205.6999, lambda_l2
580.9768, max_depth 8, num_leaves 210, num_threads 20; ``LGBModel.fit``: 1000 rounds, early
stopping 50) with ``num_threads = 2``, ``deterministic = True`` and a seed. As in Qlib,
``subsample`` is passed without ``bagging_freq``, so LightGBM does not bag rows.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from data.io import atomic_write
from factors.errors import EvaluationError
from models.dataset import PanelDataset
from models.walkforward import Fold, assemble_oos

__all__ = ["QLIB_PARAMS", "lgbm_params", "FitResult", "fit_lgbm", "save_booster",
           "load_booster", "daily_ic", "WalkForwardResult", "run_walk_forward",
           "predict_rows"]

#: Qlib's LightGBM/Alpha158 benchmark parameters (threads reduced to 2).
QLIB_PARAMS: dict = {
    "objective": "regression", "colsample_bytree": 0.8879, "learning_rate": 0.2,
    "subsample": 0.8789, "lambda_l1": 205.6999, "lambda_l2": 580.9768, "max_depth": 8,
    "num_leaves": 210, "num_threads": 2,
}


def lgbm_params(seed: int = 42, num_threads: int = 2, **overrides) -> dict:
    """Full LightGBM parameter dict: :data:`QLIB_PARAMS` + determinism + ``overrides``."""
    p = dict(QLIB_PARAMS)
    p.update(num_threads=int(num_threads), seed=int(seed), deterministic=True,
             force_row_wise=True, verbosity=-1, metric="l2")
    p.update(overrides)
    return p


def daily_ic(pred: np.ndarray, y: np.ndarray, day: np.ndarray, n_days: int) -> np.ndarray:
    """Per-day Pearson correlation of ``pred`` and ``y`` over rows grouped by ``day``.

    Parameters
    ----------
    pred, y : ndarray (n,)
    day : ndarray int (n,)
        Day index of each row in ``[0, n_days)``.
    n_days : int

    Returns
    -------
    ndarray float64 (n_days,)
        NaN for days with fewer than 3 rows or a constant side. Vectorised with
        :func:`numpy.bincount` (no per-day loop).
    """
    p = np.asarray(pred, dtype=np.float64)
    v = np.asarray(y, dtype=np.float64)
    n = np.bincount(day, minlength=n_days).astype(np.float64)
    sp, sy = np.bincount(day, p, n_days), np.bincount(day, v, n_days)
    spp, syy = np.bincount(day, p * p, n_days), np.bincount(day, v * v, n_days)
    spy = np.bincount(day, p * v, n_days)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = spy - sp * sy / n
        vp = spp - sp * sp / n
        vy = syy - sy * sy / n
        ic = cov / np.sqrt(vp * vy)
    ok = (n >= 3) & (vp > 1e-12 * np.maximum(spp, 1e-300)) & (vy > 0)
    return np.where(ok, ic, np.nan)


@dataclass
class FitResult:
    """One fitted booster and its training record."""

    booster: object
    best_iteration: int
    valid_ic: float                    # mean daily IC on valid at the best iteration
    history: dict = field(default_factory=dict)   # {"l2": [...], "ic": [...]} on valid
    seconds: float = 0.0
    n_train: int = 0
    n_valid: int = 0


def fit_lgbm(X: np.ndarray, y: np.ndarray, Xv: np.ndarray, yv: np.ndarray, day_v: np.ndarray,
             *, params: dict | None = None, num_boost_round: int = 1000,
             early_stopping_rounds: int = 50, feature_names: list[str] | None = None,
             on_round: Callable[[int, float, float], None] | None = None) -> FitResult:
    """Fit a LightGBM regressor with early stopping on the valid l2 loss.

    Parameters
    ----------
    X, y : ndarray (n, F) float32, (n,)
        Training rows (finite labels).
    Xv, yv : ndarray (m, F), (m,)
        Validation rows; ``day_v`` (m,) their day index (for the per-round mean daily IC).
    params : dict, optional
        LightGBM parameters (default :func:`lgbm_params`).
    num_boost_round, early_stopping_rounds : int
    feature_names : list of str, optional
    on_round : callable ``(iteration, valid_l2, valid_ic)``, optional
        Progress hook called after every round.

    Returns
    -------
    FitResult

    Raises
    ------
    EvaluationError
        Empty train or valid set, or non-finite labels.
    """
    import lightgbm as lgb
    if len(y) == 0 or len(yv) == 0:
        raise EvaluationError(f"fit_lgbm: empty {'train' if len(y) == 0 else 'valid'} set")
    if not (np.isfinite(y).all() and np.isfinite(yv).all()):
        raise EvaluationError("fit_lgbm: labels must be finite (use PanelDataset.arrays)")
    params = lgbm_params() if params is None else dict(params)
    t0 = time.perf_counter()
    names = list(feature_names) if feature_names else "auto"
    dtrain = lgb.Dataset(X, label=y, feature_name=names, free_raw_data=True,
                         params={"verbosity": -1})
    dvalid = lgb.Dataset(Xv, label=yv, reference=dtrain, free_raw_data=True)
    day_v = np.asarray(day_v)
    uniq, day_idx = np.unique(day_v, return_inverse=True)
    history: dict[str, list[float]] = {"l2": [], "ic": []}

    def feval(preds, data):
        ic = float(np.nanmean(daily_ic(preds, yv, day_idx, len(uniq))))
        return "ic", ic, True

    def record(env) -> None:
        vals = {name: v for _, name, v, _ in env.evaluation_result_list}
        history["l2"].append(float(vals.get("l2", np.nan)))
        history["ic"].append(float(vals.get("ic", np.nan)))
        if on_round is not None:
            on_round(env.iteration + 1, history["l2"][-1], history["ic"][-1])

    booster = lgb.train(params, dtrain, num_boost_round=num_boost_round, valid_sets=[dvalid],
                        valid_names=["valid"], feval=feval,
                        callbacks=[record, lgb.early_stopping(early_stopping_rounds,
                                                              first_metric_only=True,
                                                              verbose=False)])
    best = int(booster.best_iteration or booster.current_iteration())
    ic = history["ic"][best - 1] if best - 1 < len(history["ic"]) else float("nan")
    return FitResult(booster, best, ic, history, time.perf_counter() - t0, len(y), len(yv))


def save_booster(booster, path: str | os.PathLike) -> Path:
    """Save in LightGBM's text format, atomically (temp file + ``os.replace``)."""
    return atomic_write(path, lambda tmp: booster.save_model(
        tmp, num_iteration=booster.best_iteration or None))


def load_booster(path: str | os.PathLike):
    """Load a booster saved by :func:`save_booster` (``lightgbm.Booster(model_file=...)``).

    Raises
    ------
    EvaluationError
        If the file does not exist.
    """
    import lightgbm as lgb
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"model file {str(path)!r} not found")
    return lgb.Booster(model_file=str(path))


def predict_rows(booster, ds: PanelDataset, rows: slice, num_iteration: int | None = None
                 ) -> np.ndarray:
    """Predict every universe member on ``rows`` (labels are NOT required: whether a label
    exists depends on the future). Returns ``(len(rows), N)`` float64, NaN for non-members."""
    umask = ds.universe_mask if ds.universe_mask is not None else ds.sample_mask
    sub = umask[rows]
    t, j = np.nonzero(sub)
    out = np.full(sub.shape, np.nan)
    if len(t):
        X = ds.features[rows][t, j]
        out[t, j] = booster.predict(X, num_iteration=num_iteration)
    return out


@dataclass
class WalkForwardResult:
    """OOS predictions of a walk-forward run and what produced them."""

    pred: np.ndarray                                   # (T, N) float64, NaN outside test rows
    folds: list[Fold]
    fits: list[FitResult]
    model_paths: list[Path]
    fold_info: list[dict]
    seconds: float


def _fit_fold(ds: PanelDataset, f: Fold, params: dict | None, num_boost_round: int,
              early_stopping_rounds: int, on_round=None) -> tuple[FitResult, np.ndarray]:
    """One fold: fit on ``f.train``, early-stop on ``f.valid``, predict ``f.test``."""
    X, y, _, _ = ds.arrays(f.train)
    Xv, yv, tv, _ = ds.arrays(f.valid)
    fit = fit_lgbm(X, y, Xv, yv, tv, params=params, num_boost_round=num_boost_round,
                   early_stopping_rounds=early_stopping_rounds,
                   feature_names=ds.feature_names, on_round=on_round)
    del X, y, Xv, yv
    return fit, predict_rows(fit.booster, ds, f.test, num_iteration=fit.best_iteration)


def _fold_task(panels, item) -> tuple[FitResult, np.ndarray]:
    """Executor task (:mod:`factors.parallel`): one fold on the shared dataset panels."""
    fold, params, num_boost_round, early_stopping_rounds, names = item
    feats = panels["features"]
    T, N = feats.shape[:2]
    ds = PanelDataset(dates=pd.RangeIndex(T), codes=pd.RangeIndex(N), features=feats,
                      feature_names=list(names), label=panels["label"],
                      sample_mask=panels["sample_mask"], horizon=0,
                      universe_mask=panels.get("universe_mask"))
    return _fit_fold(ds, fold, params, num_boost_round, early_stopping_rounds)


def run_walk_forward(ds: PanelDataset, folds: list[Fold], *, params: dict | None = None,
                     num_boost_round: int = 1000, early_stopping_rounds: int = 50,
                     model_dir: str | os.PathLike | None = None,
                     on_fold: Callable[[int, dict], None] | None = None,
                     on_round: Callable[[int, int, float, float], None] | None = None,
                     executor=None) -> WalkForwardResult:
    """Fit one booster per fold (train / early-stop on valid) and predict its test block.

    Parameters
    ----------
    ds : PanelDataset
    folds : list of Fold
        From :func:`models.walkforward.walk_forward` (or one :func:`single_split` fold).
    params, num_boost_round, early_stopping_rounds
        See :func:`fit_lgbm`.
    model_dir : path, optional
        Boosters are saved there as ``fold<k>.txt`` (LightGBM text format).
    on_fold : callable ``(k, info)``, optional
        Called after each fold with its summary (dates, best iteration, valid IC, seconds).
    on_round : callable ``(k, iteration, valid_l2, valid_ic)``, optional
        Not called with an ``executor`` (the rounds run elsewhere).
    executor : Executor, optional
        :mod:`factors.parallel` backend (e.g. :class:`factors.cluster.RayExecutor`): the
        dataset panels (features, label, sample and universe masks) are shared once and each
        fold is one task; the boosters come back to this process, which saves them and calls
        ``on_fold`` in fold order. Predictions are bit-identical to a run without one (the same
        deterministic LightGBM parameters). Default: the folds one after another, here.

    Returns
    -------
    WalkForwardResult

    Raises
    ------
    EvaluationError
        A fold has no usable train or valid rows.
    """
    t0 = time.perf_counter()
    preds, fits, paths, infos = [], [], [], []
    if not folds:
        raise EvaluationError("run_walk_forward: no folds")

    def fitted():
        if executor is None:
            for k, f in enumerate(folds):
                cb = None if on_round is None else (
                    lambda it, l2, ic, _k=k: on_round(_k, it, l2, ic))
                yield k, f, _fit_fold(ds, f, params, num_boost_round, early_stopping_rounds, cb)
            return
        arrays = {"features": ds.features, "label": ds.label, "sample_mask": ds.sample_mask}
        if ds.universe_mask is not None:
            arrays["universe_mask"] = ds.universe_mask
        shared = executor.share(arrays)
        items = [(f, params, num_boost_round, early_stopping_rounds, list(ds.feature_names))
                 for f in folds]
        yield from ((k, f, out) for k, (f, out) in
                    enumerate(zip(folds, executor.map(_fold_task, items, shared))))

    for k, f, (fit, p) in fitted():
        preds.append((f, p))
        fits.append(fit)
        if model_dir is not None:
            paths.append(save_booster(fit.booster, Path(model_dir) / f"fold{k}.txt"))
        info = {"fold": k, **f.describe(ds.dates), "best_iteration": fit.best_iteration,
                "valid_ic": fit.valid_ic, "n_train": fit.n_train, "n_valid": fit.n_valid,
                "seconds": round(fit.seconds, 2)}
        infos.append(info)
        if on_fold is not None:
            on_fold(k, info)
    pred = assemble_oos(preds, T=len(ds.dates))
    return WalkForwardResult(pred, list(folds), fits, paths, infos, time.perf_counter() - t0)
