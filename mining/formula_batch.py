"""Many formulas through the evaluator at once: ``mine eval --file`` (:func:`evaluate_batch`).

Each formula is evaluated exactly as ``mine eval FORMULA`` does (the same leaves, operators and
:func:`backtest.evaluate.evaluate_factor` on train and valid; the window ends at the end of
valid, so the test split stays sealed), but

* the formulas are parsed first (:func:`read_formulas`): a bad line is reported with its line
  number before any data is loaded;
* their leaves (fields, ``factor(...)``, ``model(...)``) are loaded once, and every subtree is
  computed once per worker through the GP's memo (:class:`mining.gp_eval.PanelMemo`, keyed by
  structure), so sub-expressions common to several formulas are shared;
* the formulas are spread over an executor (:mod:`factors.parallel`): the panels and the
  evaluation context are shared once per run, results come back in file order, identical
  whatever the backend.

As for one formula, looking at valid metrics is a trial: each evaluated formula is counted in
the trial ledger (:func:`backtest.candidates.count_trial`).
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from backtest.candidates import Evaluated, count_trial, make_workspace
from backtest.context import EvalContext
from backtest.evaluate import evaluate_factor
from data.config import Config
from data.errors import AlphamineError, ConfigError
from factors.expr_eval import evaluate
from factors.expr_parse import parse
from factors.expr_tree import Expr, FactorRef, Field, ModelRef, walk
from mining.formula_run import split_metrics
from factors.cluster import cluster_settings, executor_for
from factors.parallel import make_executor
from mining.gp_eval import ScoreSpec, local_state, release_state

__all__ = ["BatchRow", "BatchEval", "read_formulas", "read_formula_file", "evaluate_batch",
           "batch_task"]

SPLITS = ("train", "valid")


@dataclass
class BatchRow:
    """One formula of the file: its reports per split, or the error that stopped it."""

    line: int
    formula: str
    reports: dict = field(default_factory=dict)    # split -> backtest.evaluate.FactorReport
    error: Optional[str] = None

    def metrics(self) -> dict:
        """``split -> FactorReport.to_dict()`` without the split key (``mine eval --json``)."""
        return split_metrics(self.reports)

    def to_dict(self) -> dict:
        return {"line": self.line, "formula": self.formula, "splits": self.metrics(),
                "error": self.error}


@dataclass
class BatchEval:
    """Result of :func:`evaluate_batch`: one row per formula, in file order."""

    universe: str
    horizon: int
    rows: list[BatchRow]
    executor: str
    n_workers: int
    memo: dict            # counters of this process's memo (worker processes keep their own)
    seconds: float
    warnings: list[str] = field(default_factory=list)


def read_formulas(text: str, source: str = "file") -> list[tuple[int, Expr]]:
    """Parse one formula per line; blank lines and ``#`` comments (whole or trailing) are
    skipped.

    Returns
    -------
    list of (line number, Expr)
        1-based line numbers, in file order.

    Raises
    ------
    ConfigError
        ``"<source> line <n>: <parse error>"`` for the first bad line; no formula at all.
    """
    out = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            out.append((n, parse(line)))
        except AlphamineError as e:
            raise ConfigError(f"{source} line {n}: {e}") from None
    if not out:
        raise ConfigError(f"{source} holds no formula (one per line, # starts a comment)")
    return out


def _leaves(expr: Expr) -> list[Expr]:
    return [n for n in walk(expr) if isinstance(n, (Field, FactorRef, ModelRef))]


def _ctx_arrays(ctx: EvalContext) -> dict[str, np.ndarray]:
    out = {"ctx_dates": np.asarray(ctx.dates.values, dtype="datetime64[ns]"),
           "ctx_codes": np.asarray(ctx.codes.astype(str), dtype=str),
           "ctx_universe_mask": np.asarray(ctx.universe_mask, dtype=bool),
           "ctx_eligible": np.asarray(ctx.eligible, dtype=bool)}
    out.update({f"ctx_fwd_{h}": v for h, v in ctx.fwd.items()})
    out.update({f"ctx_split_{k}": v for k, v in ctx.split_rows.items()})
    return out


def _ctx_from(panels, meta: dict) -> EvalContext:
    return EvalContext(dates=pd.DatetimeIndex(panels["ctx_dates"]),
                       codes=pd.Index(panels["ctx_codes"].astype(object)),
                       universe=meta["universe"], universe_mask=panels["ctx_universe_mask"],
                       eligible=panels["ctx_eligible"],
                       fwd={h: panels[f"ctx_fwd_{h}"] for h in meta["horizons"]},
                       split_rows={k: panels[f"ctx_split_{k}"] for k in meta["splits"]},
                       horizon=meta["horizon"], quantiles=meta["quantiles"])


def batch_task(panels, item: tuple) -> tuple[dict | None, str | None]:
    """Evaluate one formula: ``item = (spec, meta, expr)``; returns ``(reports, None)`` or
    ``(None, error message)``."""
    spec, meta, expr = item
    st = local_state(spec, panels)
    with st.lock:
        ctx = st.extra.get("ctx")
        if ctx is None:
            ctx = st.extra["ctx"] = _ctx_from(panels, meta)
    try:
        values = st.memo.values(expr)
        return evaluate_factor(values, ctx, splits=SPLITS), None
    except AlphamineError as e:
        return None, str(e)


def evaluate_batch(cfg: Config, formulas: list[tuple[int, Expr]], universe: str, *,
                   n_jobs: int = 1, executor: str = "auto", ws: Any = None,
                   count_trials: bool = True) -> BatchEval:
    """Evaluate many formulas on train and valid, sharing leaves and sub-expressions.

    Parameters
    ----------
    cfg : Config
        ``[data]``, ``[evaluate]``, ``[store]`` (trial ledger) and ``[gp] cache_mb`` (the
        memo's size per worker).
    formulas : list of (line number, Expr)
        From :func:`read_formulas`.
    universe : str
    n_jobs, executor : int, str
        Workers and backend (:func:`factors.parallel.make_executor`; 0 or -1 = all cores);
        ignored when ``cfg``'s ``[cluster] address`` is set: the formulas then go to that Ray
        cluster (:func:`factors.cluster.executor_for`).
    ws : Workspace, optional
        Default: the train+valid workspace of ``universe`` (``make_workspace``).
    count_trials : bool
        Record each evaluated formula in the trial ledger (what ``mine eval`` does).

    Returns
    -------
    BatchEval
        Rows in input order; a formula whose leaf cannot be loaded or whose operator rejects
        its input gets ``error`` (one line) and no reports. Reports equal those of
        ``mine eval`` for the same formula.

    Raises
    ------
    AlphamineError
        Unknown universe, missing data, bad ``n_jobs`` / ``executor``.
    """
    import time
    t0 = time.perf_counter()
    if ws is None:
        ws = make_workspace(cfg, universe, model_dir=cfg.model.out_dir)
    ctx = ws.ctx
    leaves: dict[Expr, np.ndarray] = {}
    bad: dict[Expr, str] = {}
    for _, expr in formulas:
        for leaf in _leaves(expr):
            if leaf in leaves or leaf in bad:
                continue
            try:
                leaves[leaf] = evaluate(leaf, ws.field, mask=ctx.universe_mask,
                                        models=ws.model_panel, factors=ws.member_panel)
            except AlphamineError as e:
                bad[leaf] = str(e)
    rows = [BatchRow(n, str(e)) for n, e in formulas]
    todo = []
    for row, (_, expr) in zip(rows, formulas):
        err = next((bad[x] for x in _leaves(expr) if x in bad), None)
        if err is not None:
            row.error = err
        elif not _leaves(expr):
            row.error = f"{row.formula} reads no field, so its shape is unknown"
        else:
            todo.append(row)
    meta = {"universe": ctx.universe, "horizons": sorted(ctx.fwd), "splits": sorted(
        ctx.split_rows), "horizon": ctx.horizon, "quantiles": ctx.quantiles}
    spec = ScoreSpec(uuid.uuid4().hex, tuple(leaves), int(cfg.gp.cache_mb * 2**20), 0.0,
                     strict=True)
    panels = {f"t{i}": v for i, v in enumerate(leaves.values())}
    panels["mask"] = np.asarray(ctx.universe_mask, dtype=bool)
    panels.update(_ctx_arrays(ctx))
    by_expr = {str(e): e for _, e in formulas}
    cluster = cluster_settings(cfg)
    with (executor_for(cluster) if cluster.address.strip()
          else make_executor(executor, n_jobs)) as ex:
        stats: dict = {}
        if todo:
            shared = ex.share(panels)
            try:
                st = local_state(spec, shared if isinstance(shared, Mapping) else panels)
                out = ex.map(batch_task, [(spec, meta, by_expr[r.formula]) for r in todo],
                             shared)
                stats = dict(st.memo.stats)
            finally:
                release_state(spec.key)
            for row, (reports, err) in zip(todo, out):
                row.reports, row.error = reports or {}, err
        kind, n_workers = ex.kind, ex.n_workers
    if count_trials:
        for row in rows:
            if row.reports:
                count_trial(cfg, universe, Evaluated(parse(row.formula), row.reports, None))
    from mining.gp_run import empty_splits_warning
    empty = empty_splits_warning(ws, SPLITS, cfg.evaluate)
    return BatchEval(universe, ctx.horizon, rows, kind, n_workers, stats,
                     time.perf_counter() - t0, [empty] if empty else [])


def read_formula_file(path: str | Path) -> list[tuple[int, Expr]]:
    """:func:`read_formulas` of a file (ConfigError when it cannot be read)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--file {path}: cannot read it ({e.__class__.__name__})") from None
    return read_formulas(text, source=str(path))
