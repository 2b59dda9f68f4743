"""Candidates scored as one batch through an executor (:mod:`factors.parallel`, e.g. a Ray
cluster, :mod:`factors.cluster`), with the same numbers as :func:`backtest.candidates.evaluate_candidate`.

The driver shares the workspace's evaluation context (dates, codes, universe mask, eligible
names, forward returns, split rows) and the fields the formulas read, then maps one task per
formula. A task rebuilds a :class:`~backtest.candidates.Workspace` on the shared panels (no
warehouse, no leaderboard: pure computation) and calls ``evaluate_candidate``; the
:class:`~backtest.candidates.Evaluated` comes back to the driver, which alone gates and writes
rows. Formulas that need the driver's resources -- ``factor("<name>")`` leaves (the
leaderboard) and ``model("<run id>")`` leaves (saved prediction panels) -- or whose fields the
driver cannot load are evaluated on the driver, as before. The workspace never reaches the
test split unless it was unsealed (:mod:`backtest.seal`); nothing here extends it.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from backtest.candidates import Evaluated, Workspace, evaluate_candidate
from backtest.context import EvalContext
from factors.expr_tree import Expr, factor_refs, model_refs
from factors.expr_tree import fields as expr_fields

__all__ = ["evaluate_batch", "context_arrays", "workspace_from_arrays", "error_text"]

_CTX = "@"          # prefix of the context arrays among the shared panels (no field has it)
#: id(context) -> (context, its arrays): the same array objects for every batch of a run, so
#: an executor that shares by identity (factors.cluster.RayExecutor) moves them once.
_CONTEXTS: dict[int, tuple[EvalContext, dict[str, np.ndarray]]] = {}


def error_text(e: BaseException) -> str:
    """How a failed evaluation is reported: ``"<Type>: <message>"``, at most 300 characters."""
    return f"{type(e).__name__}: {e}"[:300]


def context_arrays(ws: Workspace) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The evaluation context of ``ws`` as named arrays plus a small picklable ``meta`` dict.

    Returns
    -------
    arrays : dict of str to ndarray
        ``@dates`` (T,) datetime64[ns], ``@codes`` (N,) str, ``@universe_mask`` and
        ``@eligible`` (T, N) bool, ``@fwd<h>`` (T, N) float64 per horizon, ``@split:<name>`` (T,)
        bool per split. The same array objects on every call (so an executor shares them once).
    meta : dict
        ``universe``, ``start``, ``end``, ``horizon``, ``quantiles``, ``fwd`` and ``splits``
        (the keys of the dicts above).
    """
    c = ws.ctx
    hit = _CONTEXTS.get(id(c))
    if hit is None or hit[0] is not c:
        if len(_CONTEXTS) >= 8:
            _CONTEXTS.clear()
        cache: dict[str, np.ndarray] = {}
        _CONTEXTS[id(c)] = (c, cache)
        cache["@dates"] = np.asarray(c.dates.values, dtype="datetime64[ns]")
        cache["@codes"] = np.asarray(c.codes.astype(str))
        cache["@universe_mask"] = c.universe_mask
        cache["@eligible"] = c.eligible
        for h, a in c.fwd.items():
            cache[f"@fwd{int(h)}"] = a
        for name, rows in c.split_rows.items():
            cache[f"@split:{name}"] = rows
    cache = _CONTEXTS[id(c)][1]
    meta = {"universe": ws.universe, "start": ws.start, "end": ws.end,
            "horizon": int(c.horizon), "quantiles": int(c.quantiles),
            "fwd": [int(h) for h in c.fwd], "splits": list(c.split_rows)}
    return dict(cache), meta


def workspace_from_arrays(panels, meta: dict) -> Workspace:
    """A data-less :class:`Workspace` on shared panels (the inverse of :func:`context_arrays`;
    every other panel is a field). Formulas may read only the fields present."""
    ctx = EvalContext(dates=pd.DatetimeIndex(panels["@dates"]), codes=pd.Index(panels["@codes"]),
                      universe=meta["universe"], universe_mask=panels["@universe_mask"],
                      eligible=panels["@eligible"],
                      fwd={h: panels[f"@fwd{h}"] for h in meta["fwd"]},
                      split_rows={s: panels[f"@split:{s}"] for s in meta["splits"]},
                      horizon=meta["horizon"], quantiles=meta["quantiles"])
    ws = Workspace(dm=None, ctx=ctx, universe=meta["universe"], start=meta["start"],
                   end=meta["end"])
    ws._panels.update({k: v for k, v in panels.items() if not k.startswith(_CTX)})
    return ws


def _evaluate_task(panels, item) -> tuple[bool, Any]:
    """Executor task: ``(True, Evaluated)`` or ``(False, error text)`` for one formula."""
    expr, meta, kw = item
    try:
        return True, evaluate_candidate(workspace_from_arrays(panels, meta), expr, **kw)
    except Exception as e:  # noqa: BLE001 - reported per formula, like a local evaluation
        return False, error_text(e)


def _local(ws: Workspace, expr: Expr, kw: dict) -> Evaluated | str:
    try:
        return evaluate_candidate(ws, expr, **kw)
    except Exception as e:  # noqa: BLE001 - one bad formula never stops a batch
        return error_text(e)


def evaluate_batch(ws: Workspace, exprs: Sequence[Expr], executor=None, *,
                   orient: bool = False, splits=("train", "valid")) -> list[Evaluated | str]:
    """Evaluate ``exprs`` with the common evaluator, the portable ones as executor tasks.

    Parameters
    ----------
    ws : Workspace
        The driver's workspace (its window is the evaluation window).
    exprs : sequence of Expr
        Parsed formulas.
    executor : Executor, optional
        :mod:`factors.parallel` backend; ``None``: every formula here, in order.
    orient, splits
        As :func:`backtest.candidates.evaluate_candidate`.

    Returns
    -------
    list
        One entry per formula, in order: the :class:`Evaluated` (bit-identical to
        ``evaluate_candidate(ws, expr)``), or the error text ``"<Type>: <message>"``
        (:func:`error_text`) when it cannot be evaluated. Nothing raises per formula.
    """
    kw = {"orient": orient, "splits": tuple(splits)}
    out: list[Evaluated | str | None] = [None] * len(exprs)
    remote: list[int] = []
    names: set[str] = set()
    for i, e in enumerate(exprs):
        f = sorted(expr_fields(e))
        if executor is None or factor_refs(e) or model_refs(e):
            continue
        try:
            ws.load(f)
        except Exception:  # noqa: BLE001 - evaluated here below, which reports the error
            continue
        remote.append(i)
        names.update(f)
    if remote:
        arrays, meta = context_arrays(ws)
        arrays.update({n: ws.field(n) for n in sorted(names)})
        shared = executor.share(arrays)
        res = executor.map(_evaluate_task, [(exprs[i], meta, kw) for i in remote], shared)
        for i, (_, v) in zip(remote, res):
            out[i] = v
    for i, e in enumerate(exprs):
        if out[i] is None:
            out[i] = _local(ws, e, kw)
    return out  # type: ignore[return-value]
