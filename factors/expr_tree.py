"""Expression trees of the factor language: nodes, traversal helpers and the unparser.

:class:`Field`, :class:`Const`, :class:`Call` and :class:`ModelRef` are immutable and compare /
hash structurally; ``str(expr)`` is :func:`unparse`. :mod:`factors.expr_parse` documents the
grammar and parses text into these trees.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from factors.operators import get_op

__all__ = ["Expr", "Field", "Const", "Call", "ModelRef", "FactorRef", "MODEL_ID_RE",
           "MEMBER_NAME_RE", "walk", "fields", "model_refs", "factor_refs", "size", "depth",
           "unparse"]

#: Pattern of a model run id inside ``model("...")``.
MODEL_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # no leading dot: not a path
#: Pattern of a leaderboard member name inside ``factor("...")`` (the names producers give:
#: ``gp_eeb64d_57``, ``llm_a1b2c3_r1_02``, a model run id, a library name).
MEMBER_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


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
    resolver (supplied by the caller, e.g. :class:`backtest.candidates.Workspace`) for the
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


@dataclass(frozen=True, eq=False)
class FactorRef(Expr):
    """A leaf naming an accepted leaderboard member: ``factor("<name>")``.

    The factor language knows nothing about the leaderboard: :func:`evaluate` asks its
    ``factors`` resolver (supplied by the caller, e.g. :class:`backtest.candidates.Workspace`,
    which evaluates the member's own formula) for the ``(T, N)`` panel of ``name``. Producers
    use it to build on mined factors; the lineage is recorded at acceptance
    (``provenance["references"]``).

    Raises
    ------
    TypeError, ValueError
        If ``name`` is not a string matching :data:`MEMBER_NAME_RE`.
    """

    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"factor name must be a str, got {type(self.name).__name__}")
        if not MEMBER_NAME_RE.fullmatch(self.name):
            raise ValueError(f"factor name must match [A-Za-z0-9_.-]+ (at most 128 "
                             f"characters, not starting with '.'), got {self.name!r}")
        object.__setattr__(self, "_hash", hash(("FactorRef", self.name)))

    def _key(self) -> tuple:
        return (self.name,)


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


def factor_refs(expr: Expr) -> frozenset[str]:
    """Member names of the ``factor("...")`` leaves of ``expr`` (not the members' own refs)."""
    return frozenset(n.name for n in walk(expr) if isinstance(n, FactorRef))


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
    if isinstance(e, FactorRef):
        return f'factor("{e.name}")'
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

