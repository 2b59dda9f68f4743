"""The path every candidate takes: data context -> common evaluator -> gate -> leaderboard.

Producers (GP, LLM, models, the named library) only propose formulas; this module evaluates them
with :func:`backtest.evaluate.evaluate_factor` on train/valid, computes the correlation with the
current leaderboard members on valid, and submits them to :class:`factors.store.FactorStore`,
whose gate decides. Test-split metrics are never computed here unless explicitly unsealed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from backtest.evaluate import EvalContext, FactorReport, evaluate_factor, factor_corr
from data.config import Config
from data.errors import AlphamineError, EvaluationError
from data.manager import DataManager
from factors.expr import Call, Expr, evaluate, fields as expr_fields, parse
from factors.store import FactorRecord, FactorStore, GateDecision


@dataclass
class Workspace:
    """Panels and evaluation context for one universe and date range, shared by many candidates.

    Fields are loaded lazily and kept; ``memo`` keeps the values of whole formulas evaluated
    with ``memo=True`` (leaderboard members, compared against every candidate by the gate).
    """

    dm: DataManager
    ctx: EvalContext
    universe: str
    start: str
    end: str
    _panels: dict[str, np.ndarray] = field(default_factory=dict)
    memo: dict = field(default_factory=dict)
    model_dir: Path | None = None     # where ``model("<run id>")`` prediction panels are saved

    def model_panel(self, run_id: str) -> np.ndarray:
        """The saved OOS prediction panel of model run ``run_id`` on this workspace's grid.

        Resolver of ``model("<run id>")`` leaves (see :class:`factors.expr.ModelRef`); NaN where
        the model made no prediction. Raises EvaluationError when no panel is saved.
        """
        from models.candidates import load_prediction_panel
        if self.model_dir is None:
            raise EvaluationError(f'model("{run_id}"): this workspace has no model directory')
        return load_prediction_panel(self.model_dir, run_id, self.ctx.dates, self.ctx.codes)

    def field(self, name: str) -> np.ndarray:
        """Return field ``name`` as a (T, N) float64 array aligned with ``ctx``."""
        if name not in self._panels:
            self.load([name])
        return self._panels[name]

    def load(self, names: Iterable[str]) -> None:
        """Load several fields in one pass over the warehouse."""
        missing = [n for n in names if n not in self._panels]
        if not missing:
            return
        frames = self.dm.panels(missing, self.start, self.end, codes=self.ctx.codes)
        for n in missing:
            arr = frames[n].to_numpy(dtype=np.float64)
            arr.setflags(write=False)
            self._panels[n] = arr

    def values(self, expr: Expr, *, memo: bool = False, cache: dict | None = None) -> np.ndarray:
        """Evaluate ``expr`` on this workspace (universe mask passed to ``cs_*`` operators).

        ``cache`` is a sub-expression memo shared across calls on this workspace (see
        :func:`factors.expr.evaluate`), e.g. by a feature-set build; the caller drops it.
        """
        if memo and expr in self.memo:
            return self.memo[expr]
        self.load(sorted(expr_fields(expr)))
        out = evaluate(expr, self.field, mask=self.ctx.universe_mask, cache=cache,
                       models=self.model_panel)
        if memo:
            out.setflags(write=False)
            self.memo[expr] = out
        return out


def make_workspace(cfg: Config, universe: str, start: str | None = None,
                   end: str | None = None, *, include_test: bool = False,
                   dm: DataManager | None = None) -> Workspace:
    """Build the workspace for ``universe`` from ``start`` (default: train start) to ``end``.

    ``end`` defaults to the end of valid, or of test when ``include_test`` is set, so that the
    test period is not even loaded unless unsealed.
    """
    dm = dm or DataManager.from_config(cfg)
    ev = cfg.evaluate
    start = start or ev.train[0]
    end = end or (ev.test[1] if include_test else ev.valid[1])
    cal = dm.calendar()
    end = min(end, str(cal[-1].date()))
    ctx = EvalContext.from_data(dm, universe, start, end, ev)
    return Workspace(dm=dm, ctx=ctx, universe=universe, start=start, end=end,
                     model_dir=cfg.model.out_dir)


@dataclass
class Evaluated:
    """A candidate after the common evaluator."""

    expr: Expr
    reports: dict[str, FactorReport]
    values: np.ndarray = field(repr=False)
    oriented: bool = False                    # True when negated so that train RankIC > 0

    @property
    def formula(self) -> str:
        return str(self.expr)

    def metrics(self) -> dict[str, dict]:
        out = {}
        for split, rep in self.reports.items():
            d = rep.to_dict()
            d.pop("split", None)
            out[split] = d
        return out


def evaluate_candidate(ws: Workspace, expr: Expr | str, *, splits=("train", "valid"),
                       orient: bool = False) -> Evaluated:
    """Evaluate one formula with the common evaluator.

    With ``orient=True`` a factor whose *train* mean RankIC is negative is replaced by its
    negation (decided on train only, never on valid/test).
    """
    if isinstance(expr, str):
        expr = parse(expr)
    values = ws.values(expr)
    reports = evaluate_factor(values, ws.ctx, splits=tuple(splits))
    train_ic = reports["train"].rank_ic_mean if "train" in reports else np.nan
    if orient and np.isfinite(train_ic) and train_ic < 0:
        expr = _negate(expr)
        values = -values
        reports = evaluate_factor(values, ws.ctx, splits=tuple(splits))
        return Evaluated(expr, reports, values, oriented=True)
    return Evaluated(expr, reports, values)


def _negate(expr: Expr) -> Expr:
    if isinstance(expr, Call) and expr.op == "neg":
        return expr.args[0]
    return Call("neg", (expr,))


def member_correlations(ws: Workspace, store: FactorStore, candidate: Evaluated,
                        horizon: int) -> dict[str, float]:
    """|corr| inputs for the gate: mean daily rank correlation on valid with every member."""
    out: dict[str, float] = {}
    for rec in store.members(universe=ws.universe, horizon=horizon):
        try:
            member_values = ws.values(parse(rec.formula), memo=True)
        except AlphamineError:
            continue  # e.g. a model leaf this workspace cannot load; gate ignores it
        out[rec.formula] = factor_corr(candidate.values, member_values, ws.ctx, split="valid")
    return out


def submit(ws: Workspace, store: FactorStore, cand: Evaluated, *, name: str, source: str,
           cfg: Config, provenance: dict, n_tried: int, description: str = "",
           force: bool = False) -> GateDecision:
    """Gate ``cand`` against the leaderboard and store it if accepted."""
    horizon = cfg.evaluate.horizon
    corrs = member_correlations(ws, store, cand, horizon)
    rec = FactorRecord(formula=cand.formula, name=name, source=source, universe=ws.universe,
                       horizon=horizon, metrics=cand.metrics(), provenance=provenance,
                       n_tried=n_tried, description=description)
    return store.add(rec, corrs, max_corr=cfg.store.max_corr,
                     min_valid_rank_ic=cfg.store.min_valid_rank_ic, force=force)


def safe_evaluate(ws: Workspace, expr: Expr, **kw) -> Evaluated | None:
    """Like :func:`evaluate_candidate` but returns ``None`` on an evaluation error."""
    try:
        return evaluate_candidate(ws, expr, **kw)
    except EvaluationError:
        return None


ProgressFn = Callable[[str], None]
