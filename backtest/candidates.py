"""The candidate layer: the path every factor candidate takes, whoever produced it.

Producers (the named library, GP, the LLM loop, return models) only propose formulas. This
module owns what they share:

* :class:`Workspace` - panels and the evaluation context (:mod:`backtest.context`) for one
  universe and date range, loaded lazily and shared by many candidates;
* :func:`evaluate_candidate` - the common evaluator (:func:`backtest.evaluate.evaluate_factor`)
  on train / valid, with the sign decided on train only;
* :func:`member_correlations` and :func:`submit` - the gate against the current leaderboard
  members (:class:`factors.store.FactorStore`), which decides and records. The store counts
  every submitted candidate in its trial ledger (distinct formulas evaluated on valid, per
  universe and horizon, across runs and producers) and charges it for the count
  (``[store] haircut`` / ``max_adj_p``); :func:`count_trial` counts an evaluation on valid
  that is not submitted (``mine eval`` without ``--add``). Every producer evaluates on valid
  only to submit, so every evaluation on valid is counted once;
* prediction-panel I/O - a model run's out-of-sample scores saved as
  ``<model dir>/<run id>/pred.parquet`` (long format ``trade_date, ts_code, score``; finite
  values only; atomic writes) and read back for the formula leaf ``model("<run id>")``
  (:class:`factors.expr_tree.ModelRef`), so a prediction panel goes through the same
  evaluator, gate and leaderboard as a formula (:func:`submit_prediction`);
* member references - the formula leaf ``factor("<name>")`` (:class:`factors.expr_tree.FactorRef`)
  resolved by :meth:`Workspace.member_panel`: the accepted member of that name (this
  workspace's universe, ``[evaluate] horizon``) is looked up in the leaderboard and its own
  formula evaluated on this workspace (memoised, recursively; cycle and depth guarded), so
  producers build on mined factors; :func:`submit` records the lineage as
  ``provenance["references"]``.

Why here, in ``backtest/``: a candidate is judged by the evaluator, which lives in this layer,
and :mod:`backtest.combine` builds its composite from the same workspace; producers in
``mining/`` and ``models/`` sit above and import this module, never each other. Test-split
metrics are never computed here without an :class:`backtest.seal.Access` (the workspace refuses
test dates otherwise).

Size: about 530 lines, one topic (a candidate's path from formula to gate); the Workspace and
the gate's inputs it caches (member panels, members' valid rows) belong together.
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import secrets
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd

from backtest.context import EvalContext
from backtest.evaluate import FactorReport, evaluate_factor
from backtest.metrics_ic import finite_mean, spearman_from_orders
from backtest.seal import Access, check_window, default_end
from data.config import Config
from data.errors import AlphamineError
from data.io import atomic_write, read_parquet, write_json_atomic
from data.manager import DataManager
from factors.errors import EvaluationError
from factors.expr_eval import evaluate
from factors.expr_parse import parse
from factors.expr_tree import MEMBER_NAME_RE, MODEL_ID_RE, Call, Expr, Field, ModelRef, unparse
from factors.expr_tree import factor_refs
from factors.expr_tree import fields as expr_fields
from factors.row_order import row_orders
from factors.store import FactorStore
from factors.store_records import FactorRecord, GateDecision
from factors.trials import TrialCharge

__all__ = ["Workspace", "make_workspace", "Evaluated", "evaluate_candidate", "safe_evaluate",
           "member_correlations", "correlations_with", "submit", "count_trial", "new_run_id",
           "MAX_REF_DEPTH",
           "run_dir",
           "model_formula", "save_predictions", "load_prediction_panel", "submit_prediction"]


#: Deepest chain of ``factor("...")`` references :meth:`Workspace.member_panel` follows.
MAX_REF_DEPTH = 8


@dataclass
class Workspace:
    """Panels and evaluation context for one universe and date range, shared by many candidates.

    Fields are loaded lazily and kept; ``memo`` keeps the values of whole formulas evaluated
    with ``memo=True`` (leaderboard members, compared against every candidate by the gate).
    ``store`` (a :class:`FactorStore` or the path of one, ``[store] path``) and ``horizon``
    (``[evaluate] horizon``) are where ``factor("<name>")`` leaves are resolved
    (:meth:`member_panel`); without a store such leaves raise EvaluationError.
    """

    dm: DataManager
    ctx: EvalContext
    universe: str
    start: str
    end: str
    _panels: dict[str, np.ndarray] = field(default_factory=dict)
    memo: dict = field(default_factory=dict)
    model_dir: Path | None = None     # where ``model("<run id>")`` prediction panels are saved
    store: FactorStore | Path | str | None = None   # leaderboard for ``factor("<name>")``
    horizon: int | None = None        # horizon of the members ``factor("<name>")`` may name
    _members: dict = field(default_factory=dict, repr=False)     # name -> FactorRecord
    _columns: dict = field(default_factory=dict, repr=False)     # field -> column-ordered f8
    _resolving: list = field(default_factory=list, repr=False)   # names being resolved now

    def pool(self) -> list[FactorRecord]:
        """The leaderboard members of this universe and ``horizon``, read now (by id; [] without
        a store or before the leaderboard file exists)."""
        if self.store is None or isinstance(self.store, FactorStore):
            return [] if self.store is None else self.store.members(self.universe, self.horizon)
        if not Path(self.store).is_file():
            return []
        with FactorStore(self.store) as st:
            return st.members(universe=self.universe, horizon=self.horizon)

    def member(self, name: str) -> FactorRecord:
        """The accepted member named ``name`` (this universe, ``horizon``).

        Raises EvaluationError without a store, for no member of that name or several (the
        message names the universe).
        """
        if self.store is None:
            raise EvaluationError(f'factor("{name}"): this workspace has no leaderboard store')
        if name in self._members:
            return self._members[name]
        hits = [r for r in self.pool() if r.name == name]
        where = f"universe {self.universe}, horizon {self.horizon}"
        if not hits:
            raise EvaluationError(f'factor("{name}"): no leaderboard member named {name!r} in '
                                  f"{where} (`mine leaderboard` lists them)")
        if len(hits) > 1:
            raise EvaluationError(f'factor("{name}"): the name is ambiguous in {where} (members '
                                  f"{', '.join(str(r.id) for r in hits)}); rename or remove one")
        self._members[name] = hits[0]
        return hits[0]

    def member_names(self) -> list[str]:
        """Names that ``factor("<name>")`` can reference here: unique, valid names, by id."""
        recs = self.pool()
        counts: dict[str, int] = {}
        for r in recs:
            counts[r.name] = counts.get(r.name, 0) + 1
        return [r.name for r in recs
                if counts[r.name] == 1 and MEMBER_NAME_RE.fullmatch(r.name)]

    def member_panel(self, name: str) -> np.ndarray:
        """The ``(T, N)`` values of member ``name``: its formula evaluated on this workspace.

        Resolver of ``factor("<name>")`` leaves (see :class:`factors.expr_tree.FactorRef`).
        Memoised like every member (``values(..., memo=True)``); a member may reference
        members itself (followed up to :data:`MAX_REF_DEPTH` levels). As causal as the
        member's formula. Raises EvaluationError for an unknown or ambiguous name, a cycle
        or a chain deeper than :data:`MAX_REF_DEPTH`.
        """
        if name in self._resolving:
            chain = " -> ".join([*self._resolving, name])
            raise EvaluationError(f'factor("{name}"): reference cycle {chain}')
        if len(self._resolving) >= MAX_REF_DEPTH:
            raise EvaluationError(f'factor("{name}"): references nested deeper than '
                                  f"{MAX_REF_DEPTH} levels ({' -> '.join(self._resolving)})")
        rec = self.member(name)
        self._resolving.append(name)
        try:
            return self.values(parse(rec.formula), memo=True)
        finally:
            self._resolving.pop()

    @contextmanager
    def using_store(self, store: FactorStore, horizon: int) -> Iterator["Workspace"]:
        """Resolve ``factor("<name>")`` in ``store`` at ``horizon`` inside the block (a producer
        that writes to ``store`` reads its references from the same leaderboard)."""
        saved = (self.store, self.horizon, self._members)
        self.store, self.horizon, self._members = store, int(horizon), {}
        try:
            yield self
        finally:
            self.store, self.horizon, self._members = saved

    def references(self, expr: Expr) -> list[dict]:
        """Lineage of ``expr``: ``[{"name", "id", "formula"}]`` of the members it references
        directly (sorted by name; resolved now). Raises EvaluationError like :meth:`member`."""
        out = []
        for name in sorted(factor_refs(expr)):
            rec = self.member(name)
            out.append({"name": rec.name, "id": rec.id, "formula": rec.formula})
        return out

    def model_panel(self, run_id: str) -> np.ndarray:
        """The saved OOS prediction panel of model run ``run_id`` on this workspace's grid.

        Resolver of ``model("<run id>")`` leaves (see :class:`factors.expr_tree.ModelRef`); NaN where
        the model made no prediction. Raises EvaluationError when no panel is saved.
        """
        if self.model_dir is None:
            raise EvaluationError(f'model("{run_id}"): this workspace has no model directory')
        return load_prediction_panel(self.model_dir, run_id, self.ctx.dates, self.ctx.codes)

    def field(self, name: str) -> np.ndarray:
        """Return field ``name`` as a read-only (T, N) array aligned with ``ctx``: float64, or
        float32 for the quantity fields under ``[data] dtype = "float32"``
        (:attr:`data.fields.FieldSpec.float32`; the evaluator upcasts before computing)."""
        if name not in self._panels:
            self.load([name])
        return self._panels[name]

    def load(self, names: Iterable[str]) -> None:
        """Load several fields in one pass over the warehouse."""
        missing = [n for n in names if n not in self._panels]
        if not missing:
            return
        dtype = np.dtype(getattr(self.dm, "dtype", np.float64))
        frames = self.dm.panels(missing, self.start, self.end, codes=self.ctx.codes,
                                dtype=dtype.name)
        for n in missing:
            arr = frames[n].to_numpy()              # float64, or float32 where the field allows
            arr.setflags(write=False)
            self._panels[n] = arr

    def _field_columns(self, leaf: Expr, arr: np.ndarray) -> np.ndarray | None:
        """A field's column-ordered float64 copy, kept for the workspace's life (the ``ts_*``
        operators' layout, :func:`factors.expr_eval.operator_args`): made once, not once per
        formula (83 ms per field on the whole market x 2,187 days). None for other leaves."""
        if not isinstance(leaf, Field):
            return None
        hit = self._columns.get(leaf.name)
        if hit is None:
            hit = np.asfortranarray(arr, dtype=np.float64)
            hit.setflags(write=False)
            self._columns[leaf.name] = hit
        return hit

    def values(self, expr: Expr, *, memo: bool = False, cache: dict | None = None) -> np.ndarray:
        """Evaluate ``expr`` on this workspace (universe mask passed to ``cs_*`` operators).

        ``cache`` is a sub-expression memo shared across calls on this workspace (see
        :func:`factors.expr_eval.evaluate`), e.g. by a feature-set build; the caller drops it.
        """
        if memo and expr in self.memo:
            return self.memo[expr]
        self.load(sorted(expr_fields(expr)))
        out = evaluate(expr, self.field, mask=self.ctx.universe_mask, cache=cache,
                       models=self.model_panel, factors=self.member_panel,
                       columns=self._field_columns)
        if memo:
            out.setflags(write=False)
            self.memo[expr] = out
        return out


def make_workspace(cfg: Config, universe: str, start: str | None = None,
                   end: str | None = None, *, access: Access | None = None,
                   dm: DataManager | None = None, model_dir: Path | None = None) -> Workspace:
    """Build the workspace for ``universe`` from ``start`` (default: train start) to ``end``.

    ``cfg`` supplies ``[data]`` and ``[evaluate]``. ``end`` defaults to the end of valid, or of
    test with an ``access`` (:func:`backtest.seal.unseal`); a window that reaches the test
    split without one is refused (:func:`backtest.seal.check_window`), so the test period is
    not even loaded while sealed. ``model_dir`` is where ``model("<run id>")`` prediction
    panels are read from (``[model] out_dir``; without it such leaves raise EvaluationError).
    ``factor("<name>")`` leaves are resolved in the leaderboard ``[store] path`` at
    ``[evaluate] horizon`` (:meth:`Workspace.member_panel`).

    Raises
    ------
    SealedError
        ``end`` on or after the test start without ``access``.
    """
    dm = dm or DataManager.from_config(cfg)
    ev = cfg.evaluate
    start = start or ev.train[0]
    end = end or default_end(cfg, access is not None)
    check_window(cfg, end, access, f"evaluation on {universe}")
    cal = dm.calendar()
    end = min(end, str(cal[-1].date()))
    ctx = EvalContext.from_data(dm, universe, start, end, ev)
    return Workspace(dm=dm, ctx=ctx, universe=universe, start=start, end=end,
                     model_dir=model_dir, store=cfg.store.path, horizon=ev.horizon)


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
                       orient: bool = False, keep_series: bool = False) -> Evaluated:
    """Evaluate one formula with the common evaluator.

    With ``orient=True`` a factor whose *train* mean RankIC is negative is replaced by its
    negation (decided on train only, never on valid/test). ``keep_series`` keeps the daily
    series on the reports (:func:`backtest.evaluate.evaluate_factor`; ``mine eval --save``).
    """
    if isinstance(expr, str):
        expr = parse(expr)
    values = ws.values(expr)
    reports = evaluate_factor(values, ws.ctx, splits=tuple(splits), keep_series=keep_series)
    train_ic = reports["train"].rank_ic_mean if "train" in reports else np.nan
    if orient and np.isfinite(train_ic) and train_ic < 0:
        expr = _negate(expr)
        values = -values
        reports = evaluate_factor(values, ws.ctx, splits=tuple(splits),
                                  keep_series=keep_series)
        return Evaluated(expr, reports, values, oriented=True)
    return Evaluated(expr, reports, values)


def _negate(expr: Expr) -> Expr:
    if isinstance(expr, Call) and expr.op == "neg":
        return expr.args[0]
    return Call("neg", (expr,))


def correlations_with(ws: Workspace, candidate: Evaluated,
                      members: Iterable[FactorRecord], *, sides: dict | None = None
                      ) -> dict[str, float]:
    """Mean daily rank correlation on valid of ``candidate`` with each of ``members``
    (a member this workspace cannot evaluate, e.g. a model leaf it cannot load, is left out:
    the gate ignores it). ``sides``: the candidate's valid side, once computed, is left there
    under ``"candidate"`` (:func:`submit` keeps it for an accepted candidate)."""
    out: dict[str, float] = {}
    lo, hi = ws.ctx.split_bounds("valid")
    e = ws.ctx.eligible[lo:hi]
    side = sides.get("candidate") if sides is not None else None
    for rec in members:
        try:
            xb, ob, nb = _valid_side(ws, rec.formula)
        except AlphamineError:
            continue
        if hi <= lo:
            out[rec.formula] = math.nan
            continue
        if side is None:                     # the candidate's valid rows, sorted once
            side = _side(ws, candidate.values)
            if sides is not None:
                sides["candidate"] = side
        out[rec.formula] = finite_mean(spearman_from_orders(*side, xb, ob, nb, e))
    return out


def _side(ws: Workspace, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A panel's valid rows and their row orders on eligible names."""
    lo, hi = ws.ctx.split_bounds("valid")
    x = np.ascontiguousarray(values[lo:hi], dtype=np.float64)
    return (x, *row_orders(x, ws.ctx.eligible[lo:hi]))


def _valid_side(ws: Workspace, formula: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A member's valid rows and their row orders on eligible names, cached on ``ws``.

    What :func:`backtest.evaluate.factor_corr` computes for its second argument, kept per
    member in ``ws.memo`` under ``("valid_side", formula)`` (cleared with it): only the valid
    split's rows (about a quarter of the default window) instead of the whole panel, so on
    the whole market 20 members hold ~0.8 GB, not 2 GB (README "Full market"), and each
    member is sorted once per workspace, not once per candidate. Same numbers as
    ``factor_corr(candidate, member, ctx, "valid")``.
    """
    key = ("valid_side", formula)           # in ``ws.memo``: cleared with it
    hit = ws.memo.get(key)
    if hit is None:
        expr = parse(formula)
        hit = _side(ws, ws.memo[expr] if expr in ws.memo else ws.values(expr))
        ws.memo[key] = hit
    return hit


def member_correlations(ws: Workspace, store: FactorStore, candidate: Evaluated,
                        horizon: int, *, sides: dict | None = None) -> dict[str, float]:
    """|corr| inputs for the gate: mean daily rank correlation on valid with every member
    (``sides`` as in :func:`correlations_with`)."""
    return correlations_with(ws, candidate, store.members(universe=ws.universe,
                                                          horizon=horizon), sides=sides)


def submit(ws: Workspace, store: FactorStore, cand: Evaluated, *, name: str, source: str,
           cfg: Config, provenance: dict, description: str = "",
           force: bool = False) -> GateDecision:
    """Count ``cand`` as a trial, gate it against the leaderboard and store it if accepted.

    :meth:`factors.store.FactorStore.add` with the ``[store]`` settings: the decision carries
    the trial count and adjusted p-value (``decision.charge``), and a stored record gets
    ``n_tried`` = the cumulative number of trials of its universe and horizon. The
    correlations with the members are computed first (outside the write lock); inside the
    insert's write transaction :meth:`FactorStore.add` lists the members again and has the
    ones committed meanwhile (by another process) correlated too, so the gate always judges
    against the members as they are at the insert. A candidate with ``factor("<name>")``
    leaves gets ``provenance["references"]`` = :meth:`Workspace.references` (name, id and
    formula of each referenced member at acceptance time).
    """
    horizon = cfg.evaluate.horizon
    if factor_refs(cand.expr):
        with ws.using_store(store, horizon):
            provenance = {**provenance, "references": ws.references(cand.expr)}
    sides: dict = {}
    corrs = member_correlations(ws, store, cand, horizon, sides=sides)
    rec = FactorRecord(formula=cand.formula, name=name, source=source, universe=ws.universe,
                       horizon=horizon, metrics=cand.metrics(), provenance=provenance,
                       description=description)
    st = cfg.store
    d = store.add(rec, corrs, max_corr=st.max_corr, min_valid_rank_ic=st.min_valid_rank_ic,
                  haircut=st.haircut, max_adj_p=st.max_adj_p, force=force,
                  correlate=lambda members: correlations_with(ws, cand, members, sides=sides))
    if d.accepted and cand.values.shape[0] == len(ws.ctx.dates):
        # the new member's valid side, as _valid_side would compute it from its formula
        # (the formula evaluates to these values), without evaluating it again
        ws.memo.setdefault(("valid_side", cand.formula),
                           sides.get("candidate") or _side(ws, cand.values))
    return d


def count_trial(cfg: Config, universe: str, cand: Evaluated, *, source: str = "manual"
                ) -> TrialCharge | None:
    """Count an evaluation of ``cand`` on valid that is not submitted; return its charge.

    For ``mine eval`` without ``--add``: looking at a formula's valid metrics is a trial even
    when it is not admitted. ``None`` (nothing written) when ``cand`` has no valid report.
    """
    if "valid" not in cand.reports:
        return None
    metrics = {k: v for k, v in cand.metrics().items() if k in ("train", "valid")}
    with FactorStore(cfg.store.path) as store:
        return store.record_trial(cand.formula, universe, cfg.evaluate.horizon, metrics,
                                  source=source, haircut=cfg.store.haircut)


def safe_evaluate(ws: Workspace, expr: Expr, **kw) -> Evaluated | None:
    """Like :func:`evaluate_candidate` but returns ``None`` on an evaluation error."""
    try:
        return evaluate_candidate(ws, expr, **kw)
    except EvaluationError:
        return None


# ----------------------------------------------------------------------- prediction panels

PRED_FILE = "pred.parquet"
META_FILE = "meta.json"


def new_run_id(kind: str = "lgbm") -> str:
    """A fresh model run id ``<kind>-YYYYmmddTHHMMSS-<6 hex>`` (UTC)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    rid = f"{kind}-{stamp}-{secrets.token_hex(3)}"
    _check_id(rid)
    return rid


def _check_id(run_id: str) -> None:
    if not isinstance(run_id, str) or not MODEL_ID_RE.fullmatch(run_id):
        raise EvaluationError(f"model run id {run_id!r} must match [A-Za-z0-9_.-]+ "
                              "(not starting with '.')")


def run_dir(out_dir: str | os.PathLike, run_id: str) -> Path:
    """``<out_dir>/<run_id>`` after validating ``run_id`` (no path separators or leading dot)."""
    _check_id(run_id)
    return Path(out_dir) / run_id


def model_formula(run_id: str) -> str:
    """The formula text of a model's prediction panel: ``model("<run id>")``."""
    return unparse(ModelRef(run_id))


def save_predictions(out_dir: str | os.PathLike, run_id: str, pred: np.ndarray,
                     dates, codes, meta: dict | None = None, *,
                     folder: str | os.PathLike | None = None) -> Path:
    """Save a ``(T, N)`` prediction panel as ``<out_dir>/<run_id>/pred.parquet``.

    Parameters
    ----------
    out_dir : path
        ``[model] out_dir``.
    run_id : str
        Model run id (``[A-Za-z0-9_.-]+``).
    pred : ndarray (T, N)
        Scores; non-finite entries (no prediction) are not written.
    dates, codes : DatetimeIndex (T,), Index (N,)
    meta : dict, optional
        Written to ``meta.json`` beside it (JSON; NaN -> null).
    folder : path, optional
        Write into this folder instead of ``<out_dir>/<run_id>`` (the run's staged folder,
        :class:`data.staging.StagedDir`, renamed into place by the caller).

    Returns
    -------
    Path of the parquet file.

    Raises
    ------
    EvaluationError
        Bad run id or a shape mismatch.
    """
    d = run_dir(out_dir, run_id) if folder is None else Path(folder)
    pred = np.asarray(pred, dtype=np.float64)
    dates, codes = pd.DatetimeIndex(dates), pd.Index(codes)
    if pred.shape != (len(dates), len(codes)):
        raise EvaluationError(f"save_predictions: panel shape {pred.shape} != "
                              f"({len(dates)}, {len(codes)})")
    t, j = np.nonzero(np.isfinite(pred))
    frame = pd.DataFrame({"trade_date": dates[t], "ts_code": codes[j].astype(str),
                          "score": pred[t, j]})
    path = atomic_write(d / PRED_FILE, lambda tmp: frame.to_parquet(tmp, index=False))
    if meta is not None:
        write_json_atomic(d / META_FILE, meta)
    return path


def load_prediction_panel(out_dir: str | os.PathLike, run_id: str, dates, codes) -> np.ndarray:
    """Load a saved prediction panel onto a ``dates x codes`` grid.

    Returns
    -------
    ndarray float64 (T, N)
        NaN where the model made no prediction (other dates or codes are ignored).

    Raises
    ------
    EvaluationError
        Bad run id, or no saved panel (the message names the path).
    """
    path = run_dir(out_dir, run_id) / PRED_FILE
    if not path.is_file():
        raise EvaluationError(f'model("{run_id}"): no prediction panel at {str(path)!r}')
    frame = read_parquet(path, columns=["trade_date", "ts_code", "score"],
                         repair=f"train the model again (`mine model lgbm|transformer`) and "
                         f"use its new run id instead of {run_id}")
    dates, codes = pd.DatetimeIndex(dates), pd.Index(codes)
    ti = dates.get_indexer(pd.DatetimeIndex(frame["trade_date"]))
    ji = codes.get_indexer(frame["ts_code"].astype(str))
    ok = (ti >= 0) & (ji >= 0)
    out = np.full((len(dates), len(codes)), np.nan)
    out[ti[ok], ji[ok]] = frame["score"].to_numpy(dtype=np.float64)[ok]
    return out


def submit_prediction(ws: Workspace, store: FactorStore, cfg: Config, run_id: str, *,
                      name: str, provenance: dict, description: str = ""
                      ) -> tuple[Evaluated, GateDecision]:
    """Evaluate ``model("<run id>")`` with the common evaluator and submit it (source ``model``).

    The panel must have been saved under ``ws.model_dir`` first. Not oriented: a return
    model's score is used as predicted.
    """
    ev = evaluate_candidate(ws, model_formula(run_id), orient=False)
    decision = submit(ws, store, ev, name=name, source="model", cfg=cfg, provenance=provenance,
                      description=description)
    return ev, decision
