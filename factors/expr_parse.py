"""Parser of the factor language: formula text -> :class:`~factors.expr_tree.Expr` tree.

A factor formula is a Python-syntax expression over *fields* (``close``, ``vol``...; see
:mod:`data.fields`) and *registered operators* (:mod:`factors.registry`)::

    cs_rank(ts_corr(cs_rank(vol), cs_rank(close), 10)) * -1
    (close / ts_delay(close, 5)) - 1.0

Grammar (everything else is rejected with :class:`~data.errors.ParseError`)::

    expr   := field | number | -expr | +expr | expr (+ | - | * | /) expr | call | model | factor
    model  := "model" "(" string literal matching [A-Za-z0-9_.-]+ ")"   # a saved model's
              out-of-sample prediction panel (see :class:`ModelRef`)
    factor := "factor" "(" string literal matching [A-Za-z0-9_.-]+ ")"  # an accepted
              leaderboard member by name (see :class:`FactorRef`); with model, the only places
              a string literal is accepted
    call   := op_name "(" expr, ... [, window] ")"      # n_inputs panels, then n_windows windows
    window := positive integer literal >= op.min_window (at most MAX_WINDOW)

``+ - * /`` map to the operators whose registry ``infix`` is that symbol (``add sub mul div``),
unary minus to ``neg`` (``-<number>`` is folded into a negative constant), unary plus is dropped.
Numbers become :class:`Const` (float). A bare integer literal in a panel position of an operator
that takes windows (``ts_mean(5, close)``) is rejected as a window in a panel slot: write ``5.0``
for a constant there. The text is parsed with :func:`ast.parse` and walked against this
whitelist; it is never evaluated by Python.

The text is read by a whitelisted walk of :func:`ast.parse` output into an
:class:`~factors.expr_tree.Expr` tree (:mod:`factors.expr_tree`: nodes, canonical text,
``parse(unparse(e)) == e``); :func:`factors.expr_eval.evaluate` computes a tree on ``(T, N)``
panels. :func:`mining.prompting.grammar_text` renders the grammar block into prompts.
"""
from __future__ import annotations

import ast
import difflib
import math
import re
import unicodedata
import warnings
from collections.abc import Iterable

from factors.errors import ParseError
from factors.expr_tree import (
    MEMBER_NAME_RE,
    MODEL_ID_RE,
    Call,
    Const,
    Expr,
    FactorRef,
    Field,
    ModelRef,
    walk,
)
from factors.operators import all_ops
from factors.registry import Operator

__all__ = ["parse", "compile_formula", "MAX_FORMULA_CHARS", "MAX_DEPTH", "MAX_WINDOW"]

#: Longest formula text :func:`parse` accepts (characters).
MAX_FORMULA_CHARS = 2000
#: Deepest tree :func:`parse` accepts (a leaf has depth 1).
MAX_DEPTH = 30
#: Largest window literal :func:`parse` accepts (about 40 years of trading days).
MAX_WINDOW = 10_000


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


# Qlib expression syntax -> this language (for the hint on a parse error).
_QLIB_OPS: dict[str, str | None] = {
    "Mean": "ts_mean", "Std": "ts_std", "Ref": "ts_delay", "Corr": "ts_corr", "Cov": "ts_cov",
    "Rank": "ts_rank", "Max": "ts_max", "Min": "ts_min", "Sum": "ts_sum", "Delta": "ts_delta",
    "WMA": "ts_decay_linear", "EMA": "ts_ema", "Med": "ts_median", "Mad": "ts_mad",
    "Skew": "ts_skew", "IdxMax": "ts_argmax", "IdxMin": "ts_argmin", "Log": "log", "Abs": "abs",
    "Sign": "sign", "Greater": "max", "Less": "min", "Power": "power", "If": "where",
    "Gt": "gt", "Lt": "lt", "Slope": None, "Quantile": None, "Rsquare": None, "Resi": None,
    "Kurt": None, "Var": None, "Count": None, "Eq": None, "Ne": None, "Ge": None, "Le": None,
    "And": None, "Or": None, "Not": None}
_QLIB_FIELDS = {"volume": "vol", "change": "ret", "factor": "adj_factor"}
_QLIB_CALL = re.compile(r"\b(" + "|".join(_QLIB_OPS) + r")\s*\(")
_QLIB_FIELD = re.compile(r"\$([A-Za-z_]\w*)")


def _qlib_hint(text: str, allowed: frozenset[str]) -> str:
    """A hint naming the equivalent formula when ``text`` is written in Qlib syntax, else ''."""
    ops = _QLIB_CALL.findall(text)
    if not ops and not _QLIB_FIELD.search(text):
        return ""
    missing = sorted({o for o in ops if _QLIB_OPS[o] is None})
    if missing:
        return (f"this looks like Qlib syntax; {', '.join(missing)} has no equivalent here "
                "(see `mine ops`; fields are written without '$', e.g. close)")
    out = _QLIB_FIELD.sub(lambda m: _QLIB_FIELDS.get(m.group(1), m.group(1)), text)
    out = _QLIB_CALL.sub(lambda m: _QLIB_OPS[m.group(1)] + "(", out)
    try:
        _Parser(out, allowed, hint=False).run()
    except ParseError:
        return ("this looks like Qlib syntax; write fields without '$' and use this "
                "language's operators (ts_mean, ts_std, ts_delay, ts_corr...; see `mine ops`)")
    return f"this looks like Qlib syntax; the equivalent here is {out.strip()}"


class _Parser:
    """One parse of one formula text (holds positions for error messages)."""

    def __init__(self, text: str, allowed: frozenset[str], hint: bool = True):
        self.text = text
        self.hint = hint
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
        hint = _qlib_hint(self.text, self.allowed) if self.hint else ""
        if hint:
            message = f"{message}; {hint}"
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
        bad = next((i for i, ch in enumerate(self.text) if not ch.isascii() and (
            0xD800 <= ord(ch) <= 0xDFFF or unicodedata.normalize("NFKC", ch) != ch)), None)
        if bad is not None:    # ast would NFKC-fold 'ｃｌｏｓｅ' into close; surrogates crash it
            ch = self.text[bad]
            surrogate = 0xD800 <= ord(ch) <= 0xDFFF
            raise self._error(f"character U+{ord(ch):04X} is not allowed in a formula ("
                              + ("a lone surrogate" if surrogate else "a compatibility form of "
                                 f"{unicodedata.normalize('NFKC', ch)!r}; type it in ASCII")
                              + ")", ascii(ch)[1:-1] if surrogate else ch, bad)
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
        if not any(isinstance(n, (Field, ModelRef, FactorRef)) for n in walk(expr)):
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
        if op is None and name == "factor" and name not in self.allowed:
            return self._factor(node)
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

    def _factor(self, node: ast.Call) -> FactorRef:
        """``factor("<name>")``: a leaderboard member by name (string literal only)."""
        if node.keywords or len(node.args) != 1:
            raise self._node_error('factor takes exactly one argument: factor("<name>")', node)
        arg = node.args[0]
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            raise self._node_error('factor() needs a string literal member name: '
                                   'factor("<name>")', arg)
        if not MEMBER_NAME_RE.fullmatch(arg.value):
            raise self._node_error("factor name must match [A-Za-z0-9_.-]+ (at most 128 "
                                   "characters, not starting with '.')", arg)
        return FactorRef(arg.value)

    def _window(self, node: ast.AST, op: Operator, position: int) -> int:
        where = f"argument {position} of {op.signature}"
        if isinstance(node, ast.Constant) and type(node.value) is int:
            w = node.value
            token = ast.get_source_segment(self.body, node) or ""
            if not token.isdigit():     # 0x10, 1_0, 1e1 are ints to Python, not windows
                raise self._node_error(f"{where} must be a plain decimal window such as 10, "
                                       f"got {token!r}", node)
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
            sign = "-" if isinstance(node.op, ast.USub) else "+"
            if sign == "-":
                raise self._node_error(f"{where} must be a positive window, got "
                                       f"-{node.operand.value!r}", node)
            raise self._node_error(f"{where}: write the window without a sign, e.g. "
                                   f"{node.operand.value!r}", node)
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

