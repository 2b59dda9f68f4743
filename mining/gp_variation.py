"""Tree creation and variation operators of the alphamine GP engine (:mod:`mining.gp_engine`).

Programs are :class:`~factors.expr_tree.Expr` trees. The primitive set (:class:`Primitives`)
is generated from the operator registry like gplearn's function set in :mod:`mining.gp`:
every operator with ``gp=True``; a ``ts_*`` call carries one window drawn from the operator's
``gp_windows``; ``cs_*`` and ``ts_*`` calls take panels. Leaves are the run's terminals (any
leaf :class:`~factors.expr_tree.Expr` with a panel: fields, later ``factor("...")``) and
ephemeral random constants (Koza 1992): a :class:`~factors.expr_tree.Const` drawn once,
uniformly from ``const_range`` (rounded to 3 decimals), when the leaf is created.

Typing rule ("typed enough"): a constant is a leaf only under an elementwise operator of two
or more inputs whose other inputs are not all constants, so no call is computed on constants
alone (``ts_mean(0.5, 5)``, ``cs_rank(0.5)`` and ``0.5 + 0.2`` cannot arise). The root is a
call. :meth:`Primitives.valid` checks the rule and the depth limit on every offspring;
an offspring that breaks it is not used (the variation is retried, then the parent is copied).

Operators (Koza 1992; gplearn 0.4's set as the reference point, plus two of our own):

* subtree crossover: a random subtree of the parent is replaced by a random subtree of a
  second parent (the donor);
* subtree mutation: a random subtree is replaced by a new random (grow) tree;
* hoist mutation: a random subtree is replaced by a random subtree of itself;
* point mutation: one node is swapped for one of the same arity and kind (operator) or for
  another terminal (leaf); a ``ts_*`` swap keeps the window when the new operator offers it;
* window mutation: a ``ts_*`` call's window moves to a neighbouring value of its
  ``gp_windows`` (``ts_mean(x, 10)`` -> ``ts_mean(x, 5)`` or ``ts_mean(x, 20)``);
* constant mutation: a gaussian step (sigma = 10 % of ``const_range``'s width) on one constant.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from factors.expr_tree import Call, Const, Expr, depth
from factors.operators import all_ops
from factors.registry import Operator

__all__ = ["Primitives", "nodes", "replace_at"]

Path = tuple[int, ...]


def nodes(expr: Expr) -> list[tuple[Path, Expr]]:
    """Every node of ``expr`` with its path (argument indices from the root), pre-order."""
    out: list[tuple[Path, Expr]] = []
    stack: list[tuple[Path, Expr]] = [((), expr)]
    while stack:
        path, node = stack.pop()
        out.append((path, node))
        if isinstance(node, Call):
            stack.extend((path + (i,), a) for i, a in reversed(list(enumerate(node.args))))
    return out


def replace_at(expr: Expr, path: Path, new: Expr) -> Expr:
    """``expr`` with the node at ``path`` replaced by ``new`` (a new tree; ``expr`` is kept)."""
    if not path:
        return new
    assert isinstance(expr, Call)
    i = path[0]
    args = list(expr.args)
    args[i] = replace_at(args[i], path[1:], new)
    return Call(expr.op, tuple(args), expr.windows)


class Primitives:
    """The GP function and terminal sets and the variation operators on them.

    Parameters
    ----------
    terminals : sequence of Expr
        Leaf expressions with a panel (order matters for reproducibility).
    const_range : () or (lo, hi)
        Range of ephemeral random constants; ``()``: no constants.
    max_depth : int
        Depth limit of every program created or bred (a leaf has depth 1).
    """

    def __init__(self, terminals: Sequence[Expr], const_range: Sequence[float], max_depth: int):
        self.terminals = tuple(terminals)
        if not self.terminals:
            raise ValueError("GP needs at least one terminal")
        self.const_range = tuple(float(v) for v in const_range)
        self.max_depth = int(max_depth)
        self.ops: tuple[Operator, ...] = tuple(o for o in all_ops() if o.gp and (
            o.kind != "ts" or o.gp_windows))
        self.by_name = {o.name: o for o in self.ops}
        self._valid: dict[Expr, bool] = {}

    # ------------------------------------------------------------------ creation
    def constant(self, rng: np.random.Generator) -> Const:
        lo, hi = self.const_range
        return Const(round(float(rng.uniform(lo, hi)), 3))

    def _leaf(self, rng: np.random.Generator, const_ok: bool) -> Expr:
        n = len(self.terminals)
        if const_ok and self.const_range and rng.integers(n + 1) == n:
            return self.constant(rng)
        return self.terminals[int(rng.integers(n))]

    def _call(self, op: Operator, rng: np.random.Generator, make_arg) -> Call:
        const_ok = op.kind == "elementwise" and op.n_inputs >= 2
        args = [make_arg(const_ok) for _ in range(op.n_inputs)]
        if all(isinstance(a, Const) for a in args):  # never a call on constants alone
            args[-1] = self.terminals[int(rng.integers(len(self.terminals)))]
        windows = ((int(op.gp_windows[int(rng.integers(len(op.gp_windows)))]),)
                   if op.kind == "ts" else ())
        return Call(op.name, tuple(args), windows)

    def random_tree(self, rng: np.random.Generator, max_depth: int, method: str,
                    const_ok: bool = False, root: bool = True) -> Expr:
        """A random tree of depth <= ``max_depth`` (``"full"``: exactly, ``"grow"``: at most).

        A root (``root=True``) of ``max_depth >= 2`` is always a call.
        """
        if max_depth <= 1:
            return self._leaf(rng, const_ok)
        n_f, n_t = len(self.ops), len(self.terminals)
        if not root and method == "grow" and rng.integers(n_f + n_t) >= n_f:
            return self._leaf(rng, const_ok)
        op = self.ops[int(rng.integers(n_f))]
        return self._call(op, rng, lambda ok: self.random_tree(rng, max_depth - 1, method, ok,
                                                               False))

    def ramped(self, rng: np.random.Generator, n: int, min_depth: int = 2) -> list[Expr]:
        """Ramped half-and-half (Koza 1992): ``n`` trees, depth drawn in
        ``min_depth..max_depth``, alternately full and grow."""
        hi = max(self.max_depth, min_depth)
        return [self.random_tree(rng, int(rng.integers(min_depth, hi + 1)),
                                 "full" if k % 2 == 0 else "grow") for k in range(n)]

    # ------------------------------------------------------------------ checks
    def valid(self, expr: Expr) -> bool:
        """Root is a call, depth <= ``max_depth``, every call is a GP operator with the right
        arity and an offered window, every leaf a terminal or (under the typing rule) a
        constant."""
        hit = self._valid.get(expr)
        if hit is None:
            hit = self._valid[expr] = (isinstance(expr, Call) and depth(expr) <= self.max_depth
                                       and self._ok(expr))
        return hit

    def _ok(self, e: Expr) -> bool:
        if isinstance(e, Const):
            return False  # constants are checked by their parent
        if not isinstance(e, Call):
            return e in self.terminal_set
        op = self.by_name.get(e.op)
        if op is None or len(e.args) != op.n_inputs:
            return False
        if op.kind == "ts" and (len(e.windows) != 1 or e.windows[0] not in op.gp_windows):
            return False
        if op.kind != "ts" and e.windows:
            return False
        consts = [isinstance(a, Const) for a in e.args]
        if any(consts) and not (op.kind == "elementwise" and op.n_inputs >= 2
                                and not all(consts)):
            return False
        return all(c or self._ok(a) for a, c in zip(e.args, consts))

    @property
    def terminal_set(self) -> frozenset:
        ts = getattr(self, "_terminal_set", None)
        if ts is None:
            ts = self._terminal_set = frozenset(self.terminals)
        return ts

    # ------------------------------------------------------------------ variation
    def crossover(self, rng, a: Expr, donor: Expr) -> Expr:
        pa = nodes(a)
        path, _ = pa[int(rng.integers(len(pa)))]
        pd_ = nodes(donor)
        _, sub = pd_[int(rng.integers(len(pd_)))]
        return replace_at(a, path, sub)

    def subtree_mutation(self, rng, a: Expr) -> Expr:
        pa = nodes(a)
        path, _ = pa[int(rng.integers(len(pa)))]
        room = max(self.max_depth - len(path), 1)
        return replace_at(a, path, self.random_tree(rng, int(rng.integers(1, room + 1)), "grow",
                                                    root=not path))

    def hoist_mutation(self, rng, a: Expr) -> Expr:
        pa = nodes(a)
        path, sub = pa[int(rng.integers(len(pa)))]
        inner = nodes(sub)
        _, hoisted = inner[int(rng.integers(len(inner)))]
        return replace_at(a, path, hoisted)

    def point_mutation(self, rng, a: Expr) -> Expr:
        pa = [(p, n) for p, n in nodes(a) if not isinstance(n, Const)]
        path, node = pa[int(rng.integers(len(pa)))]
        if isinstance(node, Call):
            op = self.by_name.get(node.op)
            same = [o for o in self.ops if op is not None and o.kind == op.kind
                    and o.n_inputs == op.n_inputs and o.name != op.name]
            if not same:
                return a
            new = same[int(rng.integers(len(same)))]
            windows = ()
            if new.kind == "ts":
                w = node.windows[0] if node.windows else new.gp_windows[0]
                windows = (w if w in new.gp_windows else min(
                    new.gp_windows, key=lambda v: (abs(v - w), v)),)
            return replace_at(a, path, Call(new.name, node.args, windows))
        others = [t for t in self.terminals if t != node]
        if not others:
            return a
        return replace_at(a, path, others[int(rng.integers(len(others)))])

    def window_mutation(self, rng, a: Expr) -> Expr:
        pa = [(p, n) for p, n in nodes(a) if isinstance(n, Call) and n.windows
              and n.op in self.by_name and len(self.by_name[n.op].gp_windows) > 1]
        if not pa:
            return a
        path, node = pa[int(rng.integers(len(pa)))]
        allowed = self.by_name[node.op].gp_windows
        w = node.windows[0]
        i = allowed.index(w) if w in allowed else 0
        step = -1 if rng.random() < 0.5 else 1
        j = i + step if 0 <= i + step < len(allowed) else i - step
        return replace_at(a, path, Call(node.op, node.args, (allowed[j],)))

    def constant_mutation(self, rng, a: Expr) -> Expr:
        pa = [(p, n) for p, n in nodes(a) if isinstance(n, Const)]
        if not pa or not self.const_range:
            return a
        path, node = pa[int(rng.integers(len(pa)))]
        sigma = 0.1 * max(self.const_range[1] - self.const_range[0], 1e-3)
        value = round(node.value + float(rng.normal(0.0, sigma)), 3)
        if value == node.value:
            value = round(node.value + sigma, 3)
        return replace_at(a, path, Const(value))
