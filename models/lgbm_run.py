"""One LightGBM model run, end to end: dataset -> walk-forward fits -> OOS panel -> leaderboard.

``run_lgbm`` is what ``mine model lgbm`` calls (the CLI only prints). Steps:

1. workspace (universe, ``start`` .. ``last_test``) and :func:`models.dataset.build_dataset`;
2. folds: :func:`models.walkforward.walk_forward` (default) or one fixed split (the
   ``qlib-alpha158`` preset);
3. :func:`models.lgbm.run_walk_forward`: one booster per fold (LightGBM text files under
   ``<out_dir>/<run id>/``), predictions on test rows only; with ``[cluster] address`` set,
   each fold is a task on the Ray cluster (:mod:`factors.cluster`);
4. OOS metrics (:func:`oos_ic_stats`) and the panel saved as ``pred.parquet``;
5. unless ``submit=False``: ``model("<run id>")`` through the common evaluator and gate
   (source ``model``), then SHAP of a booster fitted before the ``[evaluate]`` valid split, on
   rows before it (the fold-clean rule of :mod:`models.distill`), distilled into formulas that
   go through the same evaluator and gate. The explanation model is chosen (or found missing:
   ``ConfigError``) before any training.

Preset ``qlib-alpha158`` (Qlib's benchmark protocol, ``workflow_config_lightgbm_Alpha158.yaml``):
CSI300, train 2010-01-01..2014-12-31 (Qlib: 2008-; our data starts 2010), valid
2015-01-01..2016-12-31, test 2017-01-01..2020-08-01, label ``Ref($close,-2)/Ref($close,-1)-1``
(close t+1 -> close t+2), features normalised as Qlib's ``RobustZScoreNorm`` (one median /
MAD per feature fitted on the train period, clip +-3, NaN -> 0; ``feature_norm="global"``;
``--feature-norm cs`` for our per-date default), single fit, Qlib's LGBModel parameters;
metrics are daily Pearson IC
and Spearman RankIC against the raw label over the universe members of the day.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

from backtest.candidates import (
    PRED_FILE,
    new_run_id,
    run_dir,
    save_predictions,
    submit_prediction,
)
from data.errors import ConfigError
from data.io import write_json_atomic
from factors.cluster import cluster_settings, open_cluster
from factors.errors import EvaluationError
from models.dataset import PanelDataset, build_dataset
from models.distill import distill_candidates, feature_signs, shap_summary
from models.lgbm import (
    QLIB_PARAMS,
    fit_lgbm,
    lgbm_params,
    run_walk_forward,
    save_booster,
)
from models.run_common import (
    FoldDone,
    ModelEvent,
    RoundProgress,
    check_before_test,
    model_data_settings,
    oos_members_eligible,
    prediction_workspace,
    progress_hooks,
    staged_run_dir,
    workspace_line,
)
from models.walkforward import (
    Fold,
    fold_before,
    latest_fold_before,
    single_split,
    walk_forward,
)

if TYPE_CHECKING:  # pragma: no cover
    from backtest.candidates import Workspace
    from data.config import Config
    from factors.store import FactorStore

__all__ = ["LGBMSettings", "LGBMRun", "PRESETS", "QLIB_PUBLISHED", "run_lgbm"]

#: Qlib's published LightGBM / Alpha158 / CSI300 numbers (examples/benchmarks/README.md).
QLIB_PUBLISHED = {"IC": 0.0448, "ICIR": 0.3660, "RankIC": 0.0469, "RankICIR": 0.3877}


@dataclass(frozen=True)
class LGBMSettings:
    """Everything that determines a LightGBM run (recorded in ``meta.json``)."""

    universe: str = "csi300"
    feature_set: str = "alpha158"
    start: str = "2010-01-01"
    first_test: str = "2019-01-01"
    last_test: str = "2021-12-31"
    retrain_months: int = 12
    train_years: int = 0
    valid_months: int = 12
    embargo: int = 0
    horizon: int = 1
    label: str = "open"
    label_norm: str = "rank"
    feature_norm: str = "cs"                         # "global" = Qlib's RobustZScoreNorm
    seed: int = 42
    num_threads: int = 2
    rounds: int = 1000
    early_stopping: int = 50
    params: dict = field(default_factory=dict)      # overrides of the Qlib parameters
    shap_rows: int = 2000
    shap_inter_rows: int = 100
    shap_pairs: int = 5
    preset: str = ""
    fixed_split: tuple = ()                          # ((train), (valid), (test)) date ranges

    @classmethod
    def from_config(cls, cfg: "Config", **overrides) -> "LGBMSettings":
        """Settings from ``[model]`` (+ ``[evaluate] horizon``), then non-None ``overrides``."""
        m = cfg.model
        base = cls(**model_data_settings(cfg), start=m.start, train_years=m.train_years,
                   seed=m.seed, num_threads=m.num_threads, rounds=m.lgbm_rounds,
                   early_stopping=m.lgbm_early_stopping, shap_rows=m.shap_rows,
                   shap_inter_rows=m.shap_inter_rows, shap_pairs=m.shap_pairs)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def gap(self) -> int:
        """Embargo rows actually used (``horizon + 1`` when ``embargo`` is 0)."""
        return self.embargo or self.horizon + 1


PRESETS: dict[str, dict] = {
    "qlib-alpha158": dict(
        universe="csi300", feature_set="qlib158", start="2010-01-01", label="close",
        label_norm="rank", feature_norm="global", horizon=1, first_test="2017-01-01",
        last_test="2020-08-01",
        fixed_split=(("2010-01-01", "2014-12-31"), ("2015-01-01", "2016-12-31"),
                     ("2017-01-01", "2020-08-01")),
        rounds=1000, early_stopping=50, preset="qlib-alpha158"),
}


@dataclass
class LGBMRun:
    """Result of :func:`run_lgbm`."""

    run_id: str
    settings: LGBMSettings
    dataset: dict
    folds: list[dict]
    oos: dict                       # oos_ic_stats over all test rows
    pred_path: str
    model_paths: list[str]
    timings: dict
    leaderboard: list[dict] = field(default_factory=list)
    shap: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["settings"] = asdict(self.settings)
        return d


def run_lgbm(cfg: "Config", settings: LGBMSettings, *, ws: "Workspace | None" = None,
             store: "FactorStore | None" = None, submit: bool = True,
             on_progress: Callable[[ModelEvent], None] | None = None) -> LGBMRun:
    """Run one LightGBM model end to end (see the module docstring).

    Parameters
    ----------
    cfg : Config
    settings : LGBMSettings
    ws : Workspace, optional
        Prebuilt workspace (tests); default ``make_workspace(cfg, universe, start, end)``.
    store : FactorStore, optional
        Leaderboard; required when ``submit``.
    submit : bool
        Evaluate and submit the prediction panel and the SHAP-distilled formulas.
    on_progress : callable, optional
        Receives the progress events (:data:`models.run_common.ModelEvent`): messages,
        dataset features, boosting rounds, finished folds.

    Raises
    ------
    ConfigError
        Bad settings (test range inside the sealed test split, embargo, ...); with ``submit``,
        too few rows before the ``[evaluate]`` valid start for the explanation model.
    AlphamineError
        From the data, evaluator or store.
    """
    s = settings
    if submit and store is None:
        raise ConfigError("run_lgbm: submit=True needs a store")
    if s.feature_norm == "global" and not s.fixed_split:
        raise ConfigError("feature_norm 'global' (fitted on a train period) needs a fixed split "
                          "(--preset); walk-forward uses the per-date 'cs' normalisation")
    if not s.fixed_split:
        check_before_test(cfg, s.last_test)
    on_event, on_feature = progress_hooks(on_progress)
    on_round = on_fold = None
    if on_progress is not None:
        def on_round(k, it, l2, ic):
            on_progress(RoundProgress(k, it, s.rounds, l2, ic))

        def on_fold(k, info):
            on_progress(FoldDone(k, info["best_iteration"] + s.early_stopping, info))
    timings: dict[str, float] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    if ws is None:
        ws = prediction_workspace(cfg, s.universe, s.start, s.last_test,
                                  clip_to_valid=not s.fixed_split)
    timings["workspace_s"] = time.perf_counter() - t0
    on_event(workspace_line(ws, s.universe))
    t1 = time.perf_counter()
    fit_end = s.fixed_split[0][1] if s.fixed_split else None
    ds = build_dataset(ws, s.feature_set, s.horizon, s.label_norm, label=s.label,
                       feature_norm=s.feature_norm, fit_end=fit_end, progress=on_feature)
    timings["dataset_s"] = time.perf_counter() - t1
    if s.fixed_split:
        folds = [single_split(ds.dates, *s.fixed_split, embargo=s.gap, horizon=s.horizon)]
    else:
        folds = walk_forward(ds.dates, s.first_test, s.last_test, s.retrain_months,
                             s.train_years or None, s.valid_months, s.gap, horizon=s.horizon)
    explain = _explanation_plan(cfg, ds, folds, s) if submit else None
    run_id = new_run_id("lgbm")
    rdir = run_dir(cfg.model.out_dir, run_id)
    params = lgbm_params(seed=s.seed, num_threads=s.num_threads, **s.params)
    on_event(f"run {run_id}: {ds.shape[2]} features, {len(folds)} fold(s), "
                    f"embargo {s.gap} rows, label {s.label} t+1 -> t+{1 + s.horizon} "
                    f"({s.label_norm})")
    t2 = time.perf_counter()
    stage = staged_run_dir(rdir)      # models + predictions land whole (run_common)
    with stage:
        with open_cluster(cluster_settings(cfg)) as executor:    # [cluster] address
            wf = run_walk_forward(ds, folds, params=params, num_boost_round=s.rounds,
                                  early_stopping_rounds=s.early_stopping, model_dir=stage.path,
                                  on_fold=on_fold, on_round=on_round, executor=executor)
        timings["train_s"] = time.perf_counter() - t2
        oos, oos_eligible = oos_members_eligible(wf.pred, ds, folds)
        meta = {"run_id": run_id, "model": "lightgbm", "settings": asdict(s),
                "params": params, "features": ds.feature_names, "formulas": ds.formulas,
                "folds": wf.fold_info, "oos": oos, "oos_eligible": oos_eligible,
                "universe": s.universe, "qlib_params": QLIB_PARAMS}
        save_predictions(cfg.model.out_dir, run_id, wf.pred, ds.dates, ds.codes, meta,
                         folder=stage.path)
    run = LGBMRun(run_id=run_id, settings=s,
                  dataset={"shape": list(ds.shape), "rows": int(ds.sample_mask.sum()),
                           "feature_set": s.feature_set},
                  folds=wf.fold_info, oos={"members": oos, "eligible": oos_eligible},
                  pred_path=str(rdir / PRED_FILE),
                  model_paths=[str(rdir / Path(p).relative_to(stage.path))
                               for p in wf.model_paths],
                  timings=timings)
    if submit:
        t3 = time.perf_counter()
        _submit_all(run, ws, store, cfg, ds, wf, explain, params, rdir, on_event)
        timings["submit_s"] = time.perf_counter() - t3
    timings["total_s"] = time.perf_counter() - t0
    timings["cpu_s"] = time.process_time() - c0      # this process, all threads
    write_json_atomic(rdir / "run.json", run.to_dict())
    return run


@dataclass(frozen=True)
class _Explanation:
    """The explanation model of the fold-clean rule (:mod:`models.distill`)."""

    valid_start: str
    fold_index: int | None          # the walk-forward fold reused; None = a dedicated booster
    fold: Fold                      # its train / early-stopping rows


def _explanation_plan(cfg, ds: PanelDataset, folds: list[Fold], s: LGBMSettings
                      ) -> _Explanation:
    """The latest fold fitted before the valid start, or the fold of a dedicated booster."""
    start = str(cfg.evaluate.valid[0])
    k = latest_fold_before(folds, ds.dates, start, s.gap)
    if k is not None:
        return _Explanation(start, k, folds[k])
    try:
        return _Explanation(start, None, fold_before(ds.dates, start, s.valid_months, s.gap,
                                                     s.train_years or None, horizon=s.horizon))
    except (ConfigError, EvaluationError) as exc:
        raise ConfigError(
            f"SHAP distillation needs a model fitted on rows before the [evaluate] valid start "
            f"{start} (no walk-forward fold ends before it, and a dedicated one cannot be "
            f"built: {exc}); move [model] start earlier, shorten valid_months, or run without "
            f"submitting (--no-submit)") from None


def _span(dates, t) -> str:
    """``"first..last"`` date of row positions ``t`` ('' when empty)."""
    t = np.asarray(t)
    return f"{dates[t.min()].date()}..{dates[t.max()].date()}" if len(t) else ""


def _explain(run: LGBMRun, ds: PanelDataset, wf, explain: _Explanation, params: dict,
             model_dir) -> tuple:
    """SHAP summary, leg signs and their record (``run.shap["explained"]``), all from the
    explanation model and rows before the valid start."""
    s = run.settings
    k, fold = explain.fold_index, explain.fold
    lim = int(ds.dates.searchsorted(pd.Timestamp(explain.valid_start))) - s.gap
    if max(fold.train.stop, fold.valid.stop) > lim:       # the plan guarantees it
        raise EvaluationError(f"explanation rows reach the valid start {explain.valid_start}")
    if k is not None:
        fit = wf.fits[k]
        model, path = f"fold {k}", run.model_paths[k]
    else:
        X, y, _, _ = ds.arrays(fold.train)
        Xv, yv, tv, _ = ds.arrays(fold.valid)
        fit = fit_lgbm(X, y, Xv, yv, tv, params=params, num_boost_round=s.rounds,
                       early_stopping_rounds=s.early_stopping, feature_names=ds.feature_names)
        del X, y, Xv, yv
        model = "explanation"
        path = str(save_booster(fit.booster, Path(model_dir) / "explain.txt"))
    Xv, _, tv, _ = ds.arrays(fold.valid)
    summ = shap_summary(fit.booster, Xv, ds.feature_names, n_main=s.shap_rows,
                        n_inter=s.shap_inter_rows, n_pairs=max(s.shap_pairs, 1), seed=s.seed)
    Xt, yt, tt, _ = ds.arrays(fold.train)
    rng = np.random.default_rng(s.seed)
    sel = rng.choice(len(yt), size=min(len(yt), 200_000), replace=False)
    signs = feature_signs(Xt[sel], yt[sel], ds.feature_names)
    info = {"valid_start": explain.valid_start, "embargo_rows": s.gap,
            "model": model, "model_path": path,
            **{f"fit_{part}": span for part, span in fold.describe(ds.dates).items()
               if part != "test"},
            "best_iteration": fit.best_iteration,
            "shap_rows": _span(ds.dates, tv[summ.rows]),
            "interaction_rows": _span(ds.dates, tv[summ.rows[:summ.n_inter]]),
            "sign_rows": _span(ds.dates, tt[sel])}
    del Xt, yt, Xv
    return summ, signs, info


def _submit_all(run: LGBMRun, ws, store, cfg, ds: PanelDataset, wf, explain: _Explanation,
                params: dict, model_dir, on_event) -> None:
    s = run.settings
    store_run = store.start_run("model", config={"model_run": run.run_id, **asdict(s)},
                                seed=s.seed, universe=s.universe, data_root=str(cfg.data.root))
    prov_base = {"run_id": store_run, "model_run": run.run_id, "model": "lightgbm",
                 "pred_path": run.pred_path, "folds": run.folds}
    n_tried = 0
    ev, d = submit_prediction(ws, store, cfg, run.run_id, name=run.run_id,
                              provenance={**prov_base, "kind": "prediction"},
                              description=f"LightGBM OOS prediction ({s.feature_set}, "
                                          f"{len(run.folds)} walk-forward fold(s))")
    n_tried += 1
    run.leaderboard.append(_row(run.run_id, ev, d))
    on_event(f"prediction panel: {'accepted' if d.accepted else 'rejected'} "
                    f"({d.reason if not d.accepted else 'on the leaderboard'})")
    # SHAP and leg signs from rows before the [evaluate] valid start (models.distill)
    if explain.fold_index is None:
        parts = explain.fold.describe(ds.dates)
        on_event(f"no fold ends before the valid start {explain.valid_start}: fitting an "
                 f"explanation model (train {parts['train']}, early stopping {parts['valid']})")
    summ, signs, where = _explain(run, ds, wf, explain, params, model_dir)
    run.shap = {"top_features": summ.top(15), "pairs": summ.pairs, "n_main": summ.n_main,
                "n_inter": summ.n_inter, "seconds_main": summ.seconds_main,
                "seconds_inter": summ.seconds_inter, "explained": where}
    on_event(f"SHAP ({where['model']}, rows {where['shap_rows']}, before the valid start "
             f"{where['valid_start']}): {summ.n_main} rows in {summ.seconds_main:.1f}s, "
             f"interactions on {summ.n_inter} rows in {summ.seconds_inter:.1f}s")
    from backtest.candidates import evaluate_candidate
    from backtest.candidates import submit as submit_cand
    cands = distill_candidates(summ, dict(zip(ds.feature_names, ds.formulas)), signs,
                               n_pairs=s.shap_pairs, prefix=f"shap_{run.run_id[-6:]}")
    for c in cands:
        n_tried += 1
        try:
            cev = evaluate_candidate(ws, c.formula, orient=True)
        except EvaluationError as exc:
            run.leaderboard.append({"name": c.name, "formula": c.formula, "accepted": False,
                                    "reason": str(exc)})
            continue
        cd = submit_cand(ws, store, cev, name=c.name, source="model", cfg=cfg,
                         provenance={
                             **prov_base, "kind": c.kind, "features": list(c.features),
                             "shap_interaction": c.interaction,
                             "shap_importance": list(c.importance),
                             "train_signs": [signs[c.features[0]], signs[c.features[1]]],
                             "explained": where},
                         description=f"SHAP-distilled ({c.kind}) from {run.run_id}: "
                                     f"{c.features[0]} x {c.features[1]}")
        run.leaderboard.append(_row(c.name, cev, cd))
    store.finish_run(store_run, n_tried=n_tried, summary={
        "model_run": run.run_id, "accepted": sum(r["accepted"] for r in run.leaderboard)})


def _row(name, ev, d) -> dict:
    tr, va = ev.reports.get("train"), ev.reports.get("valid")
    return {"name": name, "formula": ev.formula, "accepted": bool(d.accepted),
            "reason": d.reason, "kind": d.kind, "train_rank_ic": None if tr is None else tr.rank_ic_mean,
            "valid_rank_ic": None if va is None else va.rank_ic_mean,
            "valid_rank_icir": None if va is None else va.rank_icir}
