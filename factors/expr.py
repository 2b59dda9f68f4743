"""The factor language front end: expression trees, parser, unparser and evaluator.

A factor formula is a Python-syntax expression over *fields* (``close``, ``vol``...; see
:mod:`data.fields`) and *registered operators* (:mod:`factors.registry`)::

    cs_rank(ts_corr(cs_rank(vol), cs_rank(close), 10)) * -1
    (close / ts_delay(close, 5)) - 1.0

Grammar (everything else is rejected with :class:`~data.errors.ParseError`)::

    expr   := field | number | -expr | +expr | expr (+ | - | * | /) expr | call | model
    model  := "model" "(" string literal matching [A-Za-z0-9_.-]+ ")"   # a saved model's
              out-of-sample prediction panel (see :class:`ModelRef`); the only place a string
              literal is accepted
    call   := op_name "(" expr, ... [, window] ")"      # n_inputs panels, then n_windows windows
    window := positive integer literal >= op.min_window (at most MAX_WINDOW)

``+ - * /`` map to the operators whose registry ``infix`` is that symbol (``add sub mul div``),
unary minus to ``neg`` (``-<number>`` is folded into a negative constant), unary plus is dropped.
Numbers become :class:`Const` (float). A bare integer literal in a panel position of an operator
that takes windows (``ts_mean(5, close)``) is rejected as a window in a panel slot: write ``5.0``
for a constant there. The text is parsed with :func:`ast.parse` and walked against this
whitelist; it is never evaluated by Python.

Trees are immutable and compare/hash structurally (a node caches its hash; pickling recomputes
it), so they can key dicts and sets. ``str(expr)`` is the canonical text (:func:`unparse`) and
``parse(unparse(e)) == e`` holds for every well-formed tree.

:func:`evaluate` computes a tree on ``(T, N)`` float64 panels (see the data contracts in
:mod:`data`), evaluating every distinct sub-expression once.
"""
# The implementation lives in three modules; this one is the public import path (and the home of
# the grammar above, which mining.prompting renders into prompts).
from factors.expr_eval import evaluate
from factors.expr_parse import MAX_DEPTH, MAX_FORMULA_CHARS, MAX_WINDOW, compile_formula, parse
from factors.expr_tree import (MODEL_ID_RE, Call, Const, Expr, Field, ModelRef, depth, fields,
                               model_refs, size, unparse, walk)

__all__ = ["Expr", "Field", "Const", "Call", "ModelRef", "model_refs", "parse", "compile_formula",
           "unparse", "evaluate", "fields", "size", "depth", "walk", "MAX_FORMULA_CHARS",
           "MAX_DEPTH", "MAX_WINDOW"]
