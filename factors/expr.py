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
from __future__ import annotations

import ast
import difflib
import math
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from data.errors import DataError, EvaluationError, ParseError
from factors.registry import Operator, all_ops, get_op

__all__ = ["Expr", "Field", "Const", "Call", "ModelRef", "model_refs", "parse", "compile_formula", "unparse", "evaluate",
           "fields", "size", "depth", "walk", "MAX_FORMULA_CHARS", "MAX_DEPTH", "MAX_WINDOW"]

#: Longest formula text :func:`parse` accepts (characters).
MAX_FORMULA_CHARS = 2000
#: Deepest tree :func:`parse` accepts (a leaf has depth 1).
MAX_DEPTH = 30
#: Largest window literal :func:`parse` accepts (about 40 years of trading days).
MAX_WINDOW = 10_000
#: Pattern of a model run id inside ``model("...")``.
MODEL_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # no leading dot: not a path


# --------------------------------------------------------------------------------------------
# Expression trees
# --------------------------------------------------------------------------------------------

class Expr:
    """Base class of the immutable expression nodes :class:`Field`, :class:`Const`, :class:`Call`.

    Equality and hash are structural. ``str(expr)`` is :func:`unparse`.
    """

    __slots__ = ()

    def _key(self) -> tuple:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if type(other) is not type(self):
            return NotImplemented
        if self._hash != other._hash:  # type: ignore[attr-defined]
            return False
        return self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return self._hash  # type: ignore[attr-defined]

    def __reduce__(self):
        # Rebuild through __init__ so the cached hash is recomputed in the receiving process
        # (str hashes are randomised per process).
        return (type(self), self._key())

    def __str__(self) -> str:
        return unparse(self)


@dataclass(frozen=True, eq=False)
class Field(Expr):
    """A leaf naming a data field (``close``, ``vol``...).

    Raises
    ------
    TypeError, ValueError
        If ``name`` is not a string / not a valid identifier.
    """

    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"Field name must be a str, got {type(self.name).__name__}")
        if not self.name.isidentifier():
            raise ValueError(f"Field name must be an identifier, got {self.name!r}")
        object.__setattr__(self, "_hash", hash(("Field", self.name)))

    def _key(self) -> tuple:
        return (self.name,)


@dataclass(frozen=True, eq=False)
class Const(Expr):
    """A numeric constant leaf, stored as a finite Python float (``-0.0`` is stored as ``0.0``).

    Raises
    ------
    TypeError
        If ``value`` is not a real number (bools are rejected).
    ValueError
        If ``value`` is NaN, infinite or too large for a float.
    """

    value: float

    def __post_init__(self) -> None:
        v = self.value
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer,
                                                                  np.floating)):
            raise TypeError(f"Const value must be a real number, got {v!r}")
        try:
            v = float(v)
        except OverflowError:
            raise ValueError(f"Const value {self.value!r} is too large for a float") from None
        if not math.isfinite(v):
            raise ValueError(f"Const value must be finite, got {v!r}")
        v = v + 0.0  # -0.0 -> 0.0
        object.__setattr__(self, "value", v)
        object.__setattr__(self, "_hash", hash(("Const", v)))

    def _key(self) -> tuple:
        return (self.value,)


@dataclass(frozen=True, eq=False)
class Call(Expr):
    """An operator application: ``op(*args, *windows)``.

    Attributes
    ----------
    op : str
        Registered operator name (``ts_mean``, ``add``...). Not checked against the registry
        here; :func:`parse` and :func:`evaluate` check it.
    args : tuple of Expr
        Panel arguments (at least one); lists are converted to tuples.
    windows : tuple of int
        Window arguments, positive Python ints (numpy integers are converted).

    Raises
    ------
    TypeError, ValueError
        On a non-string op, a non-Expr argument, no arguments, or a window that is not a
        positive integer (bools and floats are rejected).
    """

    op: str
    args: tuple[Expr, ...]
    windows: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.op, str) or not self.op.isidentifier():
            raise TypeError(f"Call op must be an identifier string, got {self.op!r}")
        args = tuple(self.args)
        if not args:
            raise ValueError(f"Call {self.op!r} needs at least one argument")
        for a in args:
            if not isinstance(a, Expr):
                raise TypeError(f"Call {self.op!r} argument must be an Expr, got {a!r}")
        windows = []
        for w in tuple(self.windows):
            if isinstance(w, (bool, np.bool_)) or not isinstance(w, (int, np.integer)) or w < 1:
                raise ValueError(f"Call {self.op!r} window must be a positive int, got {w!r}")
            windows.append(int(w))
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "windows", tuple(windows))
        object.__setattr__(self, "_hash", hash(("Call", self.op, args, self.windows)))

    def _key(self) -> tuple:
        return (self.op, self.args, self.windows)


@dataclass(frozen=True, eq=False)
class ModelRef(Expr):
    """A leaf naming a saved model's out-of-sample prediction panel: ``model("<run id>")``.

    The factor language knows nothing about models: :func:`evaluate` asks its ``models``
    resolver (supplied by the caller, e.g. :class:`mining.pipeline.Workspace`) for the
    ``(T, N)`` panel of ``run_id``.

    Raises
    ------
    TypeError, ValueError
        If ``run_id`` is not a string matching ``[A-Za-z0-9_.-]{1,128}``.
    """

    run_id: str

    def __post_init__(self) -> None:
        if not isinstance(self.run_id, str):
            raise TypeError(f"model run id must be a str, got {type(self.run_id).__name__}")
        if not MODEL_ID_RE.fullmatch(self.run_id):
            raise ValueError(f"model run id must match [A-Za-z0-9_.-]+ (at most 128 "
                             f"characters), got {self.run_id!r}")
        object.__setattr__(self, "_hash", hash(("ModelRef", self.run_id)))

    def _key(self) -> tuple:
        return (self.run_id,)


def walk(expr: Expr) -> Iterator[Expr]:
    """Iterate over ``expr`` and its sub-expressions in pre-order (node, then args in order).

    A sub-expression that occurs twice is yielded twice.
    """
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, Call):
            stack.extend(reversed(node.args))


def fields(expr: Expr) -> frozenset[str]:
    """Names of the fields ``expr`` reads."""
    return frozenset(n.name for n in walk(expr) if isinstance(n, Field))


def model_refs(expr: Expr) -> frozenset[str]:
    """Run ids of the ``model("...")`` leaves of ``expr``."""
    return frozenset(n.run_id for n in walk(expr) if isinstance(n, ModelRef))


def size(expr: Expr) -> int:
    """Number of nodes of ``expr`` (leaves and calls; window arguments are not nodes)."""
    return sum(1 for _ in walk(expr))


def depth(expr: Expr) -> int:
    """Depth of ``expr``: 1 for a leaf, 1 + the deepest argument for a call."""
    best = 0
    stack = [(expr, 1)]
    while stack:
        node, d = stack.pop()
        best = max(best, d)
        if isinstance(node, Call):
            stack.extend((a, d + 1) for a in node.args)
    return best


# --------------------------------------------------------------------------------------------
# Unparse
# --------------------------------------------------------------------------------------------

def _infix(op_name: str) -> str | None:
    try:
        return get_op(op_name).infix
    except KeyError:
        return None


def _is_infix_call(e: Expr) -> bool:
    return (isinstance(e, Call) and len(e.args) == 2 and not e.windows
            and _infix(e.op) is not None)


def _is_neg_call(e: Expr) -> bool:
    return isinstance(e, Call) and e.op == "neg" and len(e.args) == 1 and not e.windows


def _unparse(e: Expr, operand: bool) -> str:
    if isinstance(e, Field):
        return e.name
    if isinstance(e, ModelRef):
        return f'model("{e.run_id}")'
    if isinstance(e, Const):
        text = repr(e.value)
        return f"({text})" if operand and e.value < 0 else text
    if not isinstance(e, Call):
        raise TypeError(f"not an Expr: {e!r}")
    if _is_infix_call(e):
        text = f"{_unparse(e.args[0], True)} {_infix(e.op)} {_unparse(e.args[1], True)}"
        return f"({text})" if operand else text
    if _is_neg_call(e):
        arg = e.args[0]
        if isinstance(arg, Const):
            # "-1.5" would read back as Const(-1.5); spell the call out.
            return f"neg({_unparse(arg, False)})"
        inner = _unparse(arg, False)
        text = f"-({inner})" if _is_infix_call(arg) or _is_neg_call(arg) else f"-{inner}"
        return f"({text})" if operand else text
    parts = [_unparse(a, False) for a in e.args] + [str(w) for w in e.windows]
    return f"{e.op}({', '.join(parts)})"


def unparse(expr: Expr) -> str:
    """Canonical formula text of ``expr``; ``parse(unparse(e)) == e``.

    Infix operators (registry ``infix``) are printed with full parentheses except at the top
    level (``(close / ts_delay(close, 5)) - 1.0``); ``neg`` prints as a prefix minus
    (``-ts_mean(close, 5)``, ``-(a + b)``), except on a constant (``neg(1.5)``, since ``-1.5``
    reads back as a negative constant). Constants print as ``repr(float)`` (exact round trip);
    a negative constant that is an infix operand is parenthesised: ``close * (-1.5)``.

    Parameters
    ----------
    expr : Expr

    Returns
    -------
    str

    Raises
    ------
    TypeError
        If ``expr`` contains something that is not an :class:`Expr` node.
    """
    return _unparse(expr, False)


# --------------------------------------------------------------------------------------------
# Parse
# --------------------------------------------------------------------------------------------

_BINOPS: dict[type, str] = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_NODE_NAMES: dict[type, str] = {
    ast.Attribute: "attribute access", ast.Subscript: "subscripts", ast.Lambda: "lambda",
    ast.Compare: "comparisons (use gt(x, y) / lt(x, y))", ast.BoolOp: "boolean operators",
    ast.IfExp: "conditional expressions (use where(cond, x, y))", ast.List: "lists",
    ast.Tuple: "tuples", ast.Dict: "dicts", ast.Set: "sets", ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions", ast.DictComp: "comprehensions",
    ast.GeneratorExp: "generator expressions", ast.JoinedStr: "f-strings",
    ast.NamedExpr: "assignment expressions", ast.Starred: "starred arguments",
    ast.Slice: "slices", ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield",
}


def _default_fields() -> frozenset[str]:
    from data.fields import field_names
    return frozenset(field_names())


def _int_literal(node: ast.AST) -> bool:
    """True for ``5``, ``-5``, ``+5`` written as integer literals (not bools)."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    return isinstance(node, ast.Constant) and type(node.value) is int


class _Parser:
    """One parse of one formula text (holds positions for error messages)."""

    def __init__(self, text: str, allowed: frozenset[str]):
        self.text = text
        self.allowed = allowed
        self.ops: dict[str, Operator] = {op.name: op for op in all_ops()}
        self.infix: dict[str, str] = {op.infix: op.name for op in self.ops.values() if op.infix}
        self.lead = len(text) - len(text.lstrip())
        self.body = text[self.lead:]
        self.lines = self.body.split("\n")
        self.starts = [0]
        for line in self.lines[:-1]:
            self.starts.append(self.starts[-1] + len(line) + 1)

    # ---- positions and errors
    def _abs(self, lineno: int, byte_col: int) -> int:
        """Absolute char index in ``text`` of an ast (1-based line, utf-8 byte col) position."""
        line = self.lines[lineno - 1]
        char_col = len(line.encode("utf-8")[:byte_col].decode("utf-8", errors="replace"))
        return self.lead + self.starts[lineno - 1] + char_col

    def _error(self, message: str, token: str, index: int) -> ParseError:
        col = index - self.text.rfind("\n", 0, index)  # 1-based within its line
        line = self.text.count("\n", 0, index) + 1
        if line > 1:
            message = f"{message} (line {line})"
        return ParseError(message, token=token, col=col, formula=self.text)

    def _node_error(self, message: str, node: ast.AST) -> ParseError:
        token = ast.get_source_segment(self.body, node) or ""
        return self._error(message, token, self._abs(node.lineno, node.col_offset))

    def _between_error(self, message: str, left: ast.AST, right: ast.AST,
                       fallback: ast.AST) -> ParseError:
        """Error pointing at the operator written between ``left`` and ``right``."""
        a = self._abs(left.end_lineno, left.end_col_offset)
        b = self._abs(right.lineno, right.col_offset)
        m = re.search(r"[^\s()]+(?:\s+[^\s()]+)*", self.text[a:b])
        if m is None:
            return self._node_error(message, fallback)
        return self._error(message, m.group(0), a + m.start())

    def _syntax_error(self, exc: SyntaxError) -> ParseError:
        lineno = min(max(exc.lineno or 1, 1), len(self.lines))
        line = self.lines[lineno - 1]
        offset = exc.offset if exc.offset and exc.offset > 0 else len(line.rstrip()) + 1
        offset = min(offset, len(line) + 1)
        end = getattr(exc, "end_offset", None) or 0
        end_line = getattr(exc, "end_lineno", None) or lineno
        if end_line == lineno and end > offset:
            token = line[offset - 1:end - 1]
        else:
            m = re.match(r"\w+|\S", line[offset - 1:])
            token = m.group(0) if m else ""
        index = self.lead + self.starts[lineno - 1] + offset - 1
        return self._error(f"syntax error: {exc.msg}", token, index)

    # ---- entry point
    def run(self) -> Expr:
        if "\x00" in self.text:
            raise self._error("formula contains a NUL character", "\\x00",
                              self.text.index("\x00"))
        try:
            with warnings.catch_warnings():  # e.g. SyntaxWarning for "5(close)": never print
                warnings.simplefilter("ignore")
                tree = ast.parse(self.body.replace("\r", " "), mode="eval")
            expr = self._visit(tree.body, 1)
        except SyntaxError as exc:
            raise self._syntax_error(exc) from None
        except (RecursionError, MemoryError):  # e.g. 1,000 unary pluses (they add no depth)
            raise ParseError(f"formula is nested deeper than {MAX_DEPTH} levels",
                             formula=self.text) from None
        if not any(isinstance(n, (Field, ModelRef)) for n in walk(expr)):
            raise self._error("formula has no field: it is a constant", self.body.rstrip(),
                              self.lead)
        return expr

    # ---- the whitelist walk
    def _visit(self, node: ast.AST, level: int) -> Expr:
        if level > MAX_DEPTH:
            raise self._node_error(f"formula is nested deeper than {MAX_DEPTH} levels", node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.Constant):
            return self._constant(node, negate=False)
        if isinstance(node, ast.UnaryOp):
            return self._unary(node, level)
        if isinstance(node, ast.BinOp):
            return self._binop(node, level)
        if isinstance(node, ast.Call):
            return self._call(node, level)
        if isinstance(node, ast.Compare):
            raise self._between_error("comparisons are not allowed (use gt(x, y) / lt(x, y))",
                                      node.left, node.comparators[0], node)
        if isinstance(node, ast.BoolOp):
            raise self._between_error("boolean operators are not allowed", node.values[0],
                                      node.values[1], node)
        what = _NODE_NAMES.get(type(node), f"{type(node).__name__} syntax")
        raise self._node_error(f"{what} not allowed in a formula", node)

    def _name(self, node: ast.Name) -> Expr:
        name = node.id
        if name in self.allowed:
            return Field(name)
        if name in self.ops:
            raise self._node_error(f"operator {name!r} must be called: "
                                   f"{self.ops[name].signature}", node)
        close = difflib.get_close_matches(name, sorted(self.allowed | set(self.ops)), n=3)
        hint = (f"did you mean {', '.join(close)}?" if close
                else f"known fields: {', '.join(sorted(self.allowed))}")
        raise self._node_error(f"unknown name {name!r}; {hint}", node)

    def _constant(self, node: ast.Constant, negate: bool) -> Const:
        v = node.value
        if isinstance(v, bool) or v is None or v is Ellipsis:
            raise self._node_error(f"{v!r} is not allowed in a formula", node)
        if isinstance(v, (str, bytes)):
            raise self._node_error("string literals are not allowed in a formula", node)
        if not isinstance(v, (int, float)):
            raise self._node_error(f"{type(v).__name__} literals are not allowed", node)
        try:
            f = float(v)
        except OverflowError:
            raise self._node_error("numeric literal is too large", node) from None
        if not math.isfinite(f):
            raise self._node_error("numeric literal is not finite", node)
        return Const(-f if negate else f)

    def _unary(self, node: ast.UnaryOp, level: int) -> Expr:
        if isinstance(node.op, ast.UAdd):
            return self._visit(node.operand, level)
        if isinstance(node.op, ast.USub):
            if isinstance(node.operand, ast.Constant) and not isinstance(node.operand.value,
                                                                         bool):
                return self._constant(node.operand, negate=True)
            if "neg" not in self.ops:
                raise self._node_error("unary minus needs the unregistered 'neg' operator", node)
            return Call("neg", (self._visit(node.operand, level + 1),))
        symbol = "~" if isinstance(node.op, ast.Invert) else "not"
        raise self._error(f"unary operator {symbol!r} is not allowed", symbol,
                          self._abs(node.lineno, node.col_offset))

    def _binop(self, node: ast.BinOp, level: int) -> Expr:
        symbol = _BINOPS.get(type(node.op))
        if symbol is None or symbol not in self.infix:
            hint = "use power(x, y)" if isinstance(node.op, ast.Pow) else ""
            allowed = " ".join(sorted(self.infix))
            raise self._between_error(
                f"operator not allowed; the infix operators are {allowed}"
                + (f" ({hint})" if hint else ""), node.left, node.right, node)
        name = self.infix[symbol]
        return Call(name, (self._visit(node.left, level + 1), self._visit(node.right, level + 1)))

    def _call(self, node: ast.Call, level: int) -> Expr:
        func = node.func
        if not isinstance(func, ast.Name):
            what = "attribute access" if isinstance(func, ast.Attribute) else "this call"
            raise self._node_error(f"{what} not allowed: only registered operators can be "
                                   "called by plain name", func)
        name = func.id
        op = self.ops.get(name)
        if op is None and name == "model" and name not in self.allowed:
            return self._model(node)
        if op is None:
            if name in self.allowed:
                raise self._node_error(f"field {name!r} is not an operator", func)
            close = difflib.get_close_matches(name, sorted(self.ops), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise self._node_error(f"unknown operator {name!r}{hint}", func)
        if node.keywords:
            raise self._node_error(f"keyword arguments are not allowed; call {op.signature} "
                                   "with positional arguments", node.keywords[0])
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise self._node_error("starred arguments are not allowed", a)
        expected = op.n_inputs + op.n_windows
        if len(node.args) != expected:
            raise self._node_error(f"{name} takes {expected} argument(s), {op.signature}, "
                                   f"got {len(node.args)}", node)
        args = []
        for i, a in enumerate(node.args[:op.n_inputs]):
            if op.n_windows and _int_literal(a):
                raise self._node_error(
                    f"argument {i + 1} of {op.signature} must be a panel, got a window-like "
                    "integer (write a float such as 5.0 for a constant)", a)
            args.append(self._visit(a, level + 1))
        windows = tuple(self._window(a, op, op.n_inputs + i + 1)
                        for i, a in enumerate(node.args[op.n_inputs:]))
        return Call(name, tuple(args), windows)

    def _model(self, node: ast.Call) -> ModelRef:
        """``model("<run id>")``: the one place a string literal is allowed."""
        if node.keywords or len(node.args) != 1:
            raise self._node_error('model takes exactly one argument: model("<run id>")', node)
        arg = node.args[0]
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            raise self._node_error('model() needs a string literal run id: model("<run id>")',
                                   arg)
        if not MODEL_ID_RE.fullmatch(arg.value):
            raise self._node_error("model run id must match [A-Za-z0-9_.-]+ (at most 128 "
                                   "characters, not starting with '.')", arg)
        return ModelRef(arg.value)

    def _window(self, node: ast.AST, op: Operator, position: int) -> int:
        where = f"argument {position} of {op.signature}"
        if isinstance(node, ast.Constant) and type(node.value) is int:
            w = node.value
            if w < 1:
                raise self._node_error(f"{where} must be a positive window, got {w}", node)
            if w < op.min_window:
                raise self._node_error(f"{op.name} needs a window >= {op.min_window}, got {w}",
                                       node)
            if w > MAX_WINDOW:
                raise self._node_error(f"window {w} exceeds the limit {MAX_WINDOW}", node)
            return w
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            raise self._node_error(f"{where} must be an integer window literal, "
                                   f"got {node.value!r}", node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant):
            raise self._node_error(f"{where} must be a positive window", node)
        raise self._node_error(f"{where} must be a window (positive integer literal), "
                               "got a panel expression", node)


def parse(text: str, *, fields: Iterable[str] | None = None) -> Expr:
    """Parse formula text into an :class:`Expr` (whitelisted ``ast`` walk, never ``eval``).

    Parameters
    ----------
    text : str
        The formula, at most :data:`MAX_FORMULA_CHARS` characters, nesting depth at most
        :data:`MAX_DEPTH`. See the module docstring for the grammar.
    fields : iterable of str, optional
        Allowed field names; default :func:`data.fields.field_names`.

    Returns
    -------
    Expr
        The canonical tree (numbers as float :class:`Const`; infix and unary minus as calls of
        their registered operators).

    Raises
    ------
    ParseError
        On anything outside the grammar: syntax errors, empty or over-long text, unknown names
        (with close matches) or operators, wrong arity, bad windows, keyword/starred arguments,
        attribute access, subscripts, strings, comparisons, boolean operators, lambdas, too deep
        nesting, or a formula without any field. ``token`` is the offending source text and
        ``col`` its 1-based column (on its line).
    """
    if not isinstance(text, str):
        raise ParseError(f"formula must be a str, got {type(text).__name__}")
    if not text.strip():
        raise ParseError("empty formula", formula=text)
    if len(text) > MAX_FORMULA_CHARS:
        raise ParseError(f"formula is {len(text)} characters long; the limit is "
                         f"{MAX_FORMULA_CHARS}", col=MAX_FORMULA_CHARS + 1,
                         formula=text[:80] + "...")
    allowed = _default_fields() if fields is None else frozenset(fields)
    return _Parser(text, allowed).run()


def compile_formula(text: str, *, fields: Iterable[str] | None = None) -> Expr:
    """Parse ``text`` into its canonical tree (same as :func:`parse`; kept as the public verb).

    ``compile_formula(a) == compile_formula(b)`` exactly when the two texts denote the same tree
    (spacing, redundant parentheses, unary plus and ``2`` vs ``2.0`` do not matter).
    """
    return parse(text, fields=fields)


# --------------------------------------------------------------------------------------------
# Evaluate
# --------------------------------------------------------------------------------------------

def _finite_or_nan(arr: np.ndarray) -> np.ndarray:
    """``arr`` itself if it has no +-inf, else a new array with +-inf replaced by NaN."""
    inf = np.isinf(arr)
    return np.where(inf, np.nan, arr) if inf.any() else arr


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


def _apply(node: Call, args: list[np.ndarray], mask: np.ndarray | None,
           shape: tuple[int, int]) -> np.ndarray:
    try:
        op = get_op(node.op)
    except KeyError:
        raise EvaluationError(f"unknown operator {node.op!r} in {unparse(node)}") from None
    if len(node.args) != op.n_inputs or len(node.windows) != op.n_windows:
        raise EvaluationError(f"{unparse(node)}: {op.name} takes {op.n_inputs} panel(s) and "
                              f"{op.n_windows} window(s), as in {op.signature}")
    try:
        if op.kind == "ts":
            out = op.func(*args, *node.windows)
        elif op.kind == "cs":
            out = op.func(*args, mask=mask)
        else:
            out = op.func(*args)
    except ValueError as exc:
        raise EvaluationError(f"{unparse(node)}: {exc}") from exc
    out = np.asarray(out, dtype=np.float64)
    if out.shape != shape:
        raise EvaluationError(f"operator {op.name} returned shape {out.shape}, expected {shape}")
    return _finite_or_nan(out)


def evaluate(expr: Expr, data: Mapping[str, np.ndarray] | Callable[[str], np.ndarray], *,
             mask: np.ndarray | None = None, cache: dict | None = None,
             models: Callable[[str], np.ndarray] | None = None) -> np.ndarray:
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

    Returns
    -------
    ndarray (T, N) float64
        A new array (never one of the inputs or a cached array); +-inf are mapped to NaN.
        Constants broadcast to the data shape. Warm-up and NaN policies are the operators'.

    Raises
    ------
    EvaluationError
        A field is missing from ``data`` (the message names it), shapes disagree, an operator
        is unknown or called with the wrong arity, or an operator rejects its arguments; a
        ``model(...)`` leaf without a ``models`` resolver or whose panel cannot be loaded.
    """
    memo: dict = {} if cache is None else cache
    shape: tuple[int, int] | None = None
    for name in sorted(fields(expr)):
        node = Field(name)
        arr = memo.get(node)
        if arr is None:
            arr = memo[node] = _load_field(data, name)
        if shape is None:
            shape = arr.shape
        elif arr.shape != shape:
            raise EvaluationError(f"field {name!r} has shape {arr.shape}, other fields {shape}")
    for run_id in sorted(model_refs(expr)):
        node = ModelRef(run_id)
        arr = memo.get(node)
        if arr is None:
            arr = memo[node] = _load_model(models, run_id)
        if shape is None:
            shape = arr.shape
        elif arr.shape != shape:
            raise EvaluationError(f"{unparse(node)} has shape {arr.shape}, fields {shape}")
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
                memo[node] = _apply(node, [memo[a] for a in node.args], mask, shape)
            else:
                stack.append((node, True))
                stack.extend((a, False) for a in reversed(node.args) if a not in memo)
        else:
            raise TypeError(f"not an Expr: {node!r}")
    return _finite_or_nan(np.array(memo[expr], dtype=np.float64, copy=True))
