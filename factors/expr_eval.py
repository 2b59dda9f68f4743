"""Evaluator of the factor language: an :class:`~factors.expr_tree.Expr` tree on ``(T, N)`` panels.

Every distinct sub-expression is computed once (memoised by structural equality).

Memory layout: ``ts_*`` operators run fastest on panels stored column by column (each stock's
series contiguous, :mod:`factors._ts_driver`), ``cs_*`` operators on the usual row order.
:func:`operator_args` hands a ``ts_*`` operator column-ordered inputs (leaves converted once
and cached, other inputs converted on the fly) and an elementwise operator with a
column-ordered input column-ordered leaves, so a chain of time-series operators stays in one
layout; ``cs_*`` operators convert to row order themselves. Values never depend on layout.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from data.errors import DataError
from factors._kernels_cs import has_inf
from factors._ts_driver import is_column_layout
from factors.errors import EvaluationError
from factors.expr_tree import (
    Call,
    Const,
    Expr,
    FactorRef,
    Field,
    ModelRef,
    factor_refs,
    fields,
    model_refs,
    unparse,
)
from factors.operators import get_op

__all__ = ["evaluate", "operator_args"]

_LEAVES = (Field, Const, ModelRef, FactorRef)

# --------------------------------------------------------------------------------------------
# Evaluate
# --------------------------------------------------------------------------------------------

def _finite_or_nan(arr: np.ndarray) -> np.ndarray:
    """``arr`` itself if it has no +-inf, else a new array with +-inf replaced by NaN."""
    return np.where(np.isinf(arr), np.nan, arr) if has_inf(arr) else arr


def _load_field(data: Any, name: str) -> np.ndarray:
    if isinstance(data, Mapping):
        if name not in data:
            have = ", ".join(sorted(map(str, data))) or "none"
            raise EvaluationError(f"field {name!r} is missing from the data (have: {have})")
        raw = data[name]
    elif callable(data):
        try:
            raw = data(name)
        except (LookupError, DataError) as exc:
            raise EvaluationError(f"field {name!r} could not be loaded: {exc}") from exc
    else:
        raise TypeError("data must be a mapping or a callable name -> ndarray")
    arr = np.asarray(raw, dtype=np.float64)
    if arr.ndim != 2:
        raise EvaluationError(f"field {name!r} must be a 2-D (T, N) array, got shape "
                              f"{arr.shape}")
    return _finite_or_nan(arr)


def _load_model(models: Callable[[str], np.ndarray] | None, run_id: str) -> np.ndarray:
    text = f'model("{run_id}")'
    if models is None:
        raise EvaluationError(f"{text} needs a model resolver (evaluate it through a "
                              "Workspace, which loads saved prediction panels)")
    try:
        raw = models(run_id)
    except (LookupError, OSError, DataError) as exc:
        raise EvaluationError(f"{text} could not be loaded: {exc}") from exc
    arr = np.asarray(raw, dtype=np.float64)
    if arr.ndim != 2:
        raise EvaluationError(f"{text} must be a 2-D (T, N) panel, got shape {arr.shape}")
    return _finite_or_nan(arr)


def _load_member(factors: Callable[[str], np.ndarray] | None, name: str) -> np.ndarray:
    text = f'factor("{name}")'
    if factors is None:
        raise EvaluationError(f"{text} needs a member resolver (evaluate it through a "
                              "Workspace, which reads the leaderboard)")
    try:
        raw = factors(name)
    except EvaluationError:
        raise
    except (LookupError, OSError, DataError) as exc:
        raise EvaluationError(f"{text} could not be resolved: {exc}") from exc
    arr = np.asarray(raw, dtype=np.float64)
    if arr.ndim != 2:
        raise EvaluationError(f"{text} must be a 2-D (T, N) panel, got shape {arr.shape}")
    return _finite_or_nan(arr)


def operator_args(node: Call, args: list[np.ndarray],
                  columns: Callable[[Expr, np.ndarray], np.ndarray]) -> list[np.ndarray]:
    """``node``'s argument panels in the memory layout its operator is fastest in.

    Parameters
    ----------
    node : Call
        The operator call; an unknown operator gets ``args`` unchanged (the caller reports it).
    args : list of ndarray
        The values of ``node.args``, in order.
    columns : callable
        ``(leaf, array) -> array``: the leaf's column-ordered copy, cached by the caller (a
        field or constant is converted once per evaluation memo, not once per use).

    Returns
    -------
    list of ndarray
        For a ``ts_*`` operator every 2-D argument column-ordered (Fortran order); for an
        elementwise operator with a column-ordered argument its leaves column-ordered too;
        otherwise ``args``. Same values, only the layout differs (module docstring).
    """
    try:
        kind = get_op(node.op).kind
    except KeyError:
        return args
    if kind == "cs" or (kind != "ts" and not any(is_column_layout(a) for a in args)):
        return args
    out = []
    for sub, a in zip(node.args, args):
        if a.ndim != 2 or is_column_layout(a) or a.shape[1] == 1:
            out.append(a)
        elif isinstance(sub, _LEAVES):
            out.append(columns(sub, a))
        else:
            out.append(np.asfortranarray(a) if kind == "ts" else a)
    return out


def _apply(node: Call, args: list[np.ndarray], mask: np.ndarray | None,
           shape: tuple[int, int]) -> np.ndarray:
    try:
        op = get_op(node.op)
    except KeyError:
        raise EvaluationError(f"unknown operator {node.op!r} in {unparse(node)}") from None
    try:
        out = op.apply(args, node.windows, mask=mask)
    except ValueError as exc:
        raise EvaluationError(f"{unparse(node)}: {exc}") from exc
    if out.shape != shape:
        raise EvaluationError(f"operator {op.name} returned shape {out.shape}, expected {shape}")
    return out if op.never_inf else _finite_or_nan(out)


def _memo_leaf(memo: dict, node: Expr, load: Callable[[], np.ndarray],
               shape: tuple[int, int] | None, label: str, others: str) -> tuple[int, int]:
    """Load leaf ``node`` into ``memo`` once; return the common shape (``node``'s if first).

    Raises :class:`EvaluationError` ``"<label> has shape ..., <others> ..."`` when the leaf's
    shape differs from ``shape``.
    """
    arr = memo.get(node)
    if arr is None:
        arr = memo[node] = load()
    if shape is None:
        return arr.shape
    if arr.shape != shape:
        raise EvaluationError(f"{label} has shape {arr.shape}, {others} {shape}")
    return shape


def evaluate(expr: Expr, data: Mapping[str, np.ndarray] | Callable[[str], np.ndarray], *,
             mask: np.ndarray | None = None, cache: dict | None = None,
             models: Callable[[str], np.ndarray] | None = None,
             factors: Callable[[str], np.ndarray] | None = None,
             columns: Callable[[Expr, np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Compute ``expr`` on panels.

    Parameters
    ----------
    expr : Expr
    data : mapping or callable
        ``name -> (T, N) float64`` array (anything :func:`numpy.asarray` turns into one, e.g. a
        Panel DataFrame); all fields must share one shape. Arrays are never modified.
    mask : bool ndarray (T, N), optional
        Universe mask handed to every ``cs_*`` operator (``func(..., mask=mask)``); ``None``
        means all stocks.
    cache : dict, optional
        Memo of ``node -> array`` shared across calls: pass the same dict only for the same
        ``data`` and ``mask``. Values in it are reused as operator inputs and must not be
        modified. By default a fresh dict is used, so every distinct sub-expression is
        computed once per call.
    models : callable, optional
        ``run_id -> (T, N)`` panel for ``model("<run id>")`` leaves (the caller's loader of
        saved predictions); required only when ``expr`` has such a leaf.
    factors : callable, optional
        ``name -> (T, N)`` panel for ``factor("<name>")`` leaves (the caller's resolver of
        leaderboard members, e.g. :meth:`backtest.candidates.Workspace.member_panel`);
        required only when ``expr`` has such a leaf. The panel must be causal like any field.
    columns : callable, optional
        ``(leaf, array) -> array``: a caller-side cache of column-ordered copies of leaves
        (:func:`operator_args`), e.g. a workspace's, kept across calls; it may return None to
        leave a leaf to this call's memo. By default the copies live in the memo.

    Returns
    -------
    ndarray (T, N) float64
        A new C-ordered array (never one of the inputs or a cached array); +-inf are mapped
        to NaN.
        Constants broadcast to the data shape. Warm-up and NaN policies are the operators'.

    Raises
    ------
    EvaluationError
        A field is missing from ``data`` (the message names it), shapes disagree, an operator
        is unknown or called with the wrong arity, or an operator rejects its arguments; a
        ``model(...)`` leaf without a ``models`` resolver or whose panel cannot be loaded; a
        ``factor(...)`` leaf without a ``factors`` resolver or whose name it cannot resolve.
    """
    memo: dict = {} if cache is None else cache
    shape: tuple[int, int] | None = None

    outer = columns

    def columns(leaf: Expr, arr: np.ndarray) -> np.ndarray:
        hit = outer(leaf, arr) if outer is not None else None
        if hit is not None:
            return hit
        key = ("columns", leaf)
        hit = memo.get(key)
        if hit is None:
            hit = memo[key] = np.asfortranarray(arr)
        return hit

    for name in sorted(fields(expr)):
        shape = _memo_leaf(memo, Field(name), lambda: _load_field(data, name), shape,
                           f"field {name!r}", "other fields")
    for run_id in sorted(model_refs(expr)):
        node = ModelRef(run_id)
        shape = _memo_leaf(memo, node, lambda: _load_model(models, run_id), shape,
                           unparse(node), "fields")
    for name in sorted(factor_refs(expr)):
        ref = FactorRef(name)
        shape = _memo_leaf(memo, ref, lambda: _load_member(factors, name), shape,
                           unparse(ref), "fields")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if shape is None:
            shape = mask.shape
        if mask.shape != shape:
            raise EvaluationError(f"mask has shape {mask.shape}, data has {shape}")
    if shape is None:
        raise EvaluationError(f"{unparse(expr)} reads no field, so its shape is unknown")

    stack: list[tuple[Expr, bool]] = [(expr, False)]
    while stack:
        node, ready = stack.pop()
        if node in memo:
            continue
        if isinstance(node, Const):
            memo[node] = np.full(shape, node.value, dtype=np.float64)
        elif isinstance(node, Call):
            if ready:
                memo[node] = _apply(node, operator_args(node, [memo[a] for a in node.args],
                                                        columns), mask, shape)
            else:
                stack.append((node, True))
                stack.extend((a, False) for a in reversed(node.args) if a not in memo)
        else:
            raise TypeError(f"not an Expr: {node!r}")
    return _finite_or_nan(np.array(memo[expr], dtype=np.float64, order="C", copy=True))
