"""One transformer model run, end to end: dataset -> walk-forward fits -> OOS panel -> leaderboard.

``run_transformer`` is what ``mine model transformer`` calls (the CLI only prints). Steps:

1. workspace (universe, ``start`` .. ``last_test`` + a few days for the last label) and
   :func:`models.dataset.build_dataset` (the same features and label as LightGBM);
2. folds: :func:`models.walkforward.walk_forward` (test blocks of ``retrain_months`` from
   ``first_test`` to ``last_test``; valid = the ``valid_months`` before each block; train = the
   ``train_years`` before valid; embargo ``horizon + 1`` rows between the parts);
3. :func:`models.transformer.walk_forward_predict`: one network per fold, early-stopped on its
   valid RankIC, saved as ``state_dict`` + ``config.json`` under ``<out_dir>/<run id>/fold<k>/``;
   predictions on test rows only;
4. OOS metrics (:func:`models.run_common.oos_ic_stats`, as for LightGBM) and the panel saved as
   ``pred.parquet`` through :func:`backtest.candidates.save_predictions`;
5. unless ``submit=False``: ``model("<run id>")`` through the common evaluator and gate
   (source ``model``) with :func:`backtest.candidates.submit_prediction`. Only the OOS panel is
   submitted: the transformer computes no feature importance and distils no formulas, so the
   fold-clean rule of :mod:`models.distill` has nothing to apply to here.

Defaults are sized to finish well inside 20 minutes on 2 CPU cores (docs/transformer.md):
CSI300, a rolling 3-year training window, 10 epochs of 200 random training dates each.
The OOS range must stay inside train/valid of ``[evaluate]`` (the test split stays sealed).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from backtest.candidates import (
    PRED_FILE,
    new_run_id,
    run_dir,
    save_predictions,
    submit_prediction,
)
from data.errors import ConfigError
from data.io import write_json_atomic
from models.dataset import build_dataset
from models.run_common import (
    EpochDone,
    ModelEvent,
    check_before_test,
    model_data_settings,
    oos_members_eligible,
    prediction_workspace,
    progress_hooks,
    staged_run_dir,
    workspace_line,
)
from models.transformer import walk_forward_predict
from models.transformer_net import TransformerConfig
from models.walkforward import walk_forward

if TYPE_CHECKING:  # pragma: no cover
    from backtest.candidates import Workspace
    from data.config import Config
    from factors.store import FactorStore

__all__ = ["TransformerSettings", "TransformerRun", "run_transformer"]


@dataclass(frozen=True)
class TransformerSettings:
    """Everything that determines a transformer run (recorded in ``meta.json``).

    ``start`` and ``train_years`` are transformer defaults (a short rolling window keeps the
    default run inside 20 minutes on 2 cores); the other data settings come from ``[model]``.
    """

    universe: str = "csi300"
    feature_set: str = "alpha158"
    start: str = "2014-06-01"
    first_test: str = "2019-01-01"
    last_test: str = "2021-12-31"
    retrain_months: int = 12
    train_years: int = 3
    valid_months: int = 12
    embargo: int = 0
    horizon: int = 1
    label_norm: str = "rank"
    net: TransformerConfig = field(default_factory=TransformerConfig)

    @classmethod
    def from_config(cls, cfg: "Config", **overrides) -> "TransformerSettings":
        """Settings from ``[model]`` / ``[evaluate]``, then non-None ``overrides``.

        Overrides named like :class:`TransformerConfig` fields (``epochs``, ``seq_len``,
        ``d_model``, ``multitask``, ``threads``, ``seed``...) go to the network config.
        """
        m = cfg.model
        net = TransformerConfig(seed=m.seed, threads=m.num_threads)
        net_keys = set(TransformerConfig.__dataclass_fields__)
        net_over = {k: v for k, v in overrides.items() if k in net_keys and v is not None}
        if net_over:
            net = replace(net, **net_over)
        base = cls(**model_data_settings(cfg), net=net)
        rest = {k: v for k, v in overrides.items() if k not in net_keys and v is not None}
        return replace(base, **rest)

    @property
    def gap(self) -> int:
        """Embargo rows actually used (``horizon + 1`` when ``embargo`` is 0)."""
        return self.embargo or self.horizon + 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["net"] = self.net.to_dict()
        return d


@dataclass
class TransformerRun:
    """Result of :func:`run_transformer`."""

    run_id: str
    settings: TransformerSettings
    dataset: dict
    folds: list[dict]
    oos: dict                       # {"members": oos_ic_stats, "eligible": oos_ic_stats}
    pred_path: str
    model_paths: list[str]
    timings: dict
    leaderboard: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["settings"] = self.settings.to_dict()
        return d


def run_transformer(cfg: "Config", settings: TransformerSettings, *,
                    ws: "Workspace | None" = None, store: "FactorStore | None" = None,
                    submit: bool = True,
                    on_progress: Callable[[ModelEvent], None] | None = None) -> TransformerRun:
    """Run the transformer end to end (see the module docstring).

    Parameters
    ----------
    cfg : Config
    settings : TransformerSettings
    ws : Workspace, optional
        Prebuilt workspace (tests); default ``make_workspace(cfg, universe, start, end)``.
    store : FactorStore, optional
        Leaderboard; required when ``submit``.
    submit : bool
        Evaluate the prediction panel with the common evaluator and submit it to the gate.
    on_progress : callable, optional
        Receives the progress events (:data:`models.run_common.ModelEvent`): messages,
        dataset features, finished epochs (:class:`~models.run_common.EpochDone`).

    Returns
    -------
    TransformerRun

    Raises
    ------
    ConfigError
        Bad settings (OOS range inside the sealed test split, embargo, ...).
    AlphamineError
        From the data, evaluator or store.
    ImportError
        When torch is not installed (message says how to install it).
    """
    s = settings
    if submit and store is None:
        raise ConfigError("run_transformer: submit=True needs a store")
    check_before_test(cfg, s.last_test)
    on_event, on_feature = progress_hooks(on_progress)
    on_epoch = None
    if on_progress is not None:
        def on_epoch(rec):
            on_progress(EpochDone(rec["fold"], rec["n_folds"], rec["epoch"], s.net.epochs,
                                  rec["loss"], rec["valid_ic"], rec["seconds"]))
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if ws is None:
        ws = prediction_workspace(cfg, s.universe, s.start, s.last_test)
    timings["workspace_s"] = time.perf_counter() - t0
    on_event(workspace_line(ws, s.universe))
    t1 = time.perf_counter()
    ds = build_dataset(ws, s.feature_set, s.horizon, s.label_norm, progress=on_feature)
    timings["dataset_s"] = time.perf_counter() - t1
    folds = walk_forward(ds.dates, s.first_test, s.last_test, s.retrain_months,
                         s.train_years or None, s.valid_months, s.gap, horizon=s.horizon)
    run_id = new_run_id("transformer")
    rdir = run_dir(cfg.model.out_dir, run_id)
    n = s.net
    on_event(f"run {run_id}: {ds.shape[2]} features x {n.seq_len} days, "
                    f"{len(folds)} fold(s), embargo {s.gap} rows, d_model {n.d_model}, "
                    f"{n.n_layers} layers, {n.epochs} epochs x {n.dates_per_epoch} dates, "
                    f"multitask {'on' if n.multitask else 'off'}, {n.threads} thread(s)")
    open_adj = ws.field("open") if n.multitask else None
    t2 = time.perf_counter()
    stage = staged_run_dir(rdir)      # models + predictions land whole (run_common)
    with stage:
        wf = walk_forward_predict(ds, folds, n, open_adj=open_adj, save_dir=stage.path,
                                  progress=on_epoch)
        timings["train_s"] = time.perf_counter() - t2
        for f in wf.folds:            # where the fold models will be once the folder lands
            if "path" in f:
                f["path"] = str(rdir / Path(f["path"]).relative_to(stage.path))
        members, eligible = oos_members_eligible(wf.oos, ds, folds)
        oos = {"members": members, "eligible": eligible}
        meta = {"run_id": run_id, "model": "transformer", "settings": s.to_dict(),
                "features": ds.feature_names, "formulas": ds.formulas, "folds": wf.folds,
                "oos": oos["members"], "oos_eligible": oos["eligible"],
                "universe": s.universe}
        save_predictions(cfg.model.out_dir, run_id, wf.oos, ds.dates, ds.codes, meta,
                         folder=stage.path)
    run = TransformerRun(run_id=run_id, settings=s,
                         dataset={"shape": list(ds.shape), "rows": int(ds.sample_mask.sum()),
                                  "feature_set": s.feature_set},
                         folds=wf.folds, oos=oos, pred_path=str(rdir / PRED_FILE),
                         model_paths=[f["path"] for f in wf.folds], timings=timings)
    if submit:
        t3 = time.perf_counter()
        _submit(run, ws, store, cfg, len(folds), on_event)
        timings["submit_s"] = time.perf_counter() - t3
    timings["total_s"] = time.perf_counter() - t0
    write_json_atomic(rdir / "run.json", run.to_dict())
    return run


def _submit(run: TransformerRun, ws, store, cfg, n_folds: int, on_event) -> None:
    s = run.settings
    store_run = store.start_run("model", config={"model_run": run.run_id, **s.to_dict()},
                                seed=s.net.seed, universe=s.universe,
                                data_root=str(cfg.data.root))
    ev, d = submit_prediction(ws, store, cfg, run.run_id, name=run.run_id,
                              provenance={"run_id": store_run, "model_run": run.run_id,
                                          "model": "transformer", "kind": "prediction",
                                          "pred_path": run.pred_path, "folds": run.folds},
                              description=f"Transformer OOS prediction ({s.feature_set}, "
                                          f"{s.net.seq_len}-day sequences, {n_folds} "
                                          f"walk-forward fold(s))")
    tr, va = ev.reports.get("train"), ev.reports.get("valid")
    run.leaderboard.append({
        "name": run.run_id, "formula": ev.formula, "accepted": bool(d.accepted),
        "reason": d.reason, "train_rank_ic": None if tr is None else tr.rank_ic_mean,
        "valid_rank_ic": None if va is None else va.rank_ic_mean,
        "valid_rank_icir": None if va is None else va.rank_icir})
    on_event(f"prediction panel: {'accepted' if d.accepted else 'rejected'} "
                    f"({d.reason if not d.accepted else 'on the leaderboard'})")
    store.finish_run(store_run, n_tried=1, summary={"model_run": run.run_id,
                                                    "accepted": int(d.accepted)})
