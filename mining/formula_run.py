"""One formula through the evaluator: ``mine eval`` (:func:`evaluate_formula`) and ``mine eval
--add`` (:func:`add_formula`), with the seal, the audit, the trial ledger and the gate applied as
for the producers (:mod:`mining.gp_run`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from backtest.candidates import count_trial, evaluate_candidate, make_workspace, submit
from factors.parallel import resolve_jobs
from factors.row_threads import row_threads
from data.config import Config
from factors.store import FactorStore
from mining.gp_run import empty_splits_warning

__all__ = ["ManualAdd", "FormulaEval", "add_formula", "evaluate_formula", "split_metrics"]


def split_metrics(reports) -> dict:
    """``split -> FactorReport.to_dict()`` without the split key (``mine eval --json``)."""
    out = {}
    for split, rep in reports.items():
        d = rep.to_dict()
        d.pop("split", None)
        out[split] = d
    return out


# ------------------------------------------------------------------------------- manual
@dataclass
class ManualAdd:
    """Result of :func:`add_formula`: the oriented formula, its metrics and the gate's word."""

    run_id: str
    formula: str                      # as submitted (negated when train RankIC < 0)
    universe: str
    metrics: dict
    accepted: bool
    kind: str
    reason: str
    id: Optional[int] = None
    n_tried: Optional[int] = None     # trials counted for the universe/horizon, this one included
    adj_p: Optional[float] = None     # multiple-testing adjusted p-value ([store] haircut)

    def gate_dict(self) -> dict:
        """``{"accepted", "reason", "kind", "formula", "id", "n_tried", "adj_p"}`` (the
        ``--json`` ``gate`` object)."""
        return {"accepted": self.accepted, "reason": self.reason, "kind": self.kind,
                "formula": self.formula, "id": self.id, "n_tried": self.n_tried,
                "adj_p": self.adj_p}


def add_formula(cfg: Config, formula: str, universe: str, *, ws: Any = None,
                name: Optional[str] = None, description: str = "") -> ManualAdd:
    """Evaluate one hand-written formula, orient it on train and submit it through the gate.

    Like a GP candidate: ``evaluate_candidate(..., orient=True)`` (negated when its train
    RankIC is negative, decided on train only), then :func:`backtest.candidates.submit` with
    ``source="manual"`` under a one-candidate ``manual`` run (so the attempt is counted).
    Train and valid splits only: the test split stays sealed.

    Parameters
    ----------
    ws : Workspace, optional
        A workspace on the default train+valid window of ``universe`` (built when omitted).

    Raises
    ------
    AlphamineError
        Bad formula, unknown universe, missing data.
    """
    if ws is None:
        ws = make_workspace(cfg, universe, model_dir=cfg.model.out_dir)
    ev = evaluate_candidate(ws, formula, orient=True)
    with FactorStore(cfg.store.path) as store:
        run_id = store.start_run("manual", config={"formula": str(formula)}, seed=None,
                                 universe=universe, data_root=str(cfg.data.root))
        try:
            d = submit(ws, store, ev, name=name or ev.formula[:40], source="manual", cfg=cfg,
                       provenance={"run_id": run_id, "input": str(formula)},
                       description=description)
        except BaseException:
            store.finish_run(run_id, n_tried=1, status="failed")
            raise
        store.finish_run(run_id, n_tried=1)
    return ManualAdd(run_id, ev.formula, universe, ev.metrics(), bool(d.accepted), d.kind,
                     d.reason, d.id, d.n_tried, d.adj_p)


# ------------------------------------------------------------------------------- eval
@dataclass
class FormulaEval:
    """Result of :func:`evaluate_formula` (``mine eval``)."""

    formula: str
    universe: str
    horizon: int
    reports: dict                     # split -> backtest.evaluate.FactorReport
    test_unsealed: bool
    audit_id: Optional[int] = None    # the audit row of the unsealing (``mine audit``)
    added: Optional[ManualAdd] = None
    trial: Any = None                 # backtest.candidates.TrialCharge when not added
    warnings: list[str] = field(default_factory=list)   # e.g. every split empty
    saved: Optional[Path] = None      # the ``--save`` folder of the daily series

    def metrics(self) -> dict:
        return split_metrics(self.reports)

    def payload(self, cfg: Config) -> dict:
        """The result as ``mine eval --json`` prints it (and ``report.json`` of ``--save``)."""
        return {"config": str(cfg.source) if cfg.source else None, "store": str(cfg.store.path),
                "formula": self.formula, "universe": self.universe, "horizon": self.horizon,
                "splits": self.metrics(), "test_unsealed": self.test_unsealed,
                "windows": {"train": list(cfg.evaluate.train), "valid": list(cfg.evaluate.valid),
                            "test": list(cfg.evaluate.test)},
                "audit_id": self.audit_id, "warnings": self.warnings,
                **({"gate": self.added.gate_dict()} if self.added is not None else {}),
                **({"trial": self.trial.to_dict()} if self.trial is not None else {})}


def evaluate_formula(cfg: Config, formula: str, universe: str, start: Optional[str] = None,
                     end: Optional[str] = None, *, unseal_test: bool = False,
                     add: bool = False, save: Optional[str | Path] = None,
                     force: bool = False) -> FormulaEval:
    """Evaluate one formula per split; optionally unseal the test split or submit it.

    Train and valid by default (the window ends at the end of valid). With
    ``unseal_test`` and a window that reaches the test split, the access is logged first
    (:func:`backtest.seal.unseal`, subject: the formula), the test split is evaluated, its
    metrics are added to the audit row and, when the formula is a leaderboard member, stored
    on it (:meth:`factors.store.FactorStore.record_test`). With ``add`` the formula goes
    through :func:`add_formula` (gate metrics on the default window, the one GP uses);
    without it, looking at the valid metrics is still counted in the trial ledger
    (:func:`backtest.candidates.count_trial`).

    With ``save`` the daily series of every evaluated split (train and valid; test only
    when unsealed), the alphalens ``factor_data`` export and ``report.json``
    (:meth:`FormulaEval.payload`) are written to that folder, whole, at the end
    (:func:`backtest.factor_series.save_series`; a non-empty folder needs ``force``, checked
    before any data is loaded).

    Raises
    ------
    ConfigError
        ``add`` with ``unseal_test`` (admission never follows a look at test).
    SealedError
        ``end`` inside the test split without ``unseal_test``.
    AlphamineError
        Bad formula, unknown universe, missing data.
    """
    from backtest.factor_series import check_save_dir, save_series
    from backtest.seal import in_test, unseal, unseal_ignored
    from data.errors import ConfigError
    from factors.expr_parse import parse

    if add and unseal_test:
        raise ConfigError("--add cannot be combined with --unseal-test: a formula is "
                          "admitted on train/valid only, never after looking at test")
    expr = parse(formula)
    if save is not None:
        check_save_dir(save, force)
    ev_cfg = cfg.evaluate
    warnings = []
    if unseal_test and not in_test(cfg, end or ev_cfg.test[1]):
        warnings.append(unseal_ignored(cfg, end))
    access = None
    if unseal_test and not warnings:
        access = unseal(cfg, purpose="research", universe=universe,
                        subject={"formulas": [str(expr)], "command": "eval"},
                        window=(start or ev_cfg.train[0], end or ev_cfg.test[1]))
    splits = ("train", "valid", "test") if access is not None else ("train", "valid")
    ws = make_workspace(cfg, universe, start, end, access=access, model_dir=cfg.model.out_dir)
    with row_threads(resolve_jobs(cfg.gp.n_jobs)):      # one formula: its rows on every core
        ev = evaluate_candidate(ws, expr, splits=splits, keep_series=save is not None)
    empty = empty_splits_warning(ws, splits, ev_cfg)
    out = FormulaEval(str(expr), universe, ev_cfg.horizon, ev.reports,
                      test_unsealed=access is not None,
                      audit_id=None if access is None else access.audit_id,
                      warnings=warnings + ([empty] if empty else []))
    if access is not None:
        test = ev.metrics()["test"]
        access.seen({"test": test})
        with FactorStore(cfg.store.path) as store:
            if store.get(str(expr), universe, ev_cfg.horizon) is not None:
                store.record_test(str(expr), universe, ev_cfg.horizon, test)
    if add:
        out.added = add_formula(cfg, str(expr), universe,
                                ws=ws if start is None and end is None else None)
    else:
        out.trial = count_trial(cfg, universe, ev)
    if save is not None:
        out.saved = save_series(save, ev.reports, ev.values, ws.ctx, out.payload(cfg),
                                force=force)
    return out
