"""Program scoring, the task the GP engine and batch evaluation hand to an executor.

One run shares its panels once (:mod:`factors.parallel`): the terminal panels ``t0, t1, ...``,
the universe ``mask``, the fitness split's rows of eligibility, label and label orders
(``score_*``) and, with a :class:`~mining.gp_diversity.Diversity` hook, its sample (``div_*``).
:func:`score_task` then runs anywhere (this thread, a pool thread, a worker process) on
``(spec, expr, hall)``:

* the program's values through the process's :class:`PanelMemo` (subtree outputs by
  structure, LRU by bytes): one memo per run and process, shared by the threads of a process
  (a lock guards its store; two threads may compute the same node at once, with the same
  result), so worker processes each keep their own; it also keeps the column-ordered copies
  of leaves that ``ts_*`` operators take (:func:`factors.expr_eval.operator_args`);
* RankIC, coverage and turnover on the split's rows (:class:`Scorer`: one sort of the
  factor on the names ever ranked, then :func:`backtest.ic_turnover.ic_and_turnover`; without
  the turnover, one sort of its eligible entries, then :func:`backtest.ic_turnover.rank_ic`);
* with a hook, its signature and penalty from a per-thread replica of the hook whose hall of
  fame is set to ``hall`` (the engine's hall at the start of the generation; entries are
  re-ranked from their values, which the kernels compute bit-identically everywhere).

Every step is deterministic, so results do not depend on where a task ran.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from backtest.context import EvalContext
from backtest.ic_turnover import (eligible_values, ic_and_turnover, label_ranks, rank_ic,
                                  score_prep)
from backtest.metrics_ic import finite_mean
from factors._kernels_cs import has_inf
from factors.errors import EvaluationError
from factors.expr_eval import operator_args
from factors.expr_tree import Call, Const, Expr, size, unparse
from factors.operators import get_op
from factors.row_order import row_orders

__all__ = ["PanelMemo", "Scorer", "ScoreSpec", "run_panels", "score_task", "sample_task",
           "local_state", "release_state"]


_DONE = threading.Event()
_DONE.set()


class PanelMemo:
    """Subtree outputs of one run keyed by ``Expr``, least recently used evicted first.

    Parameters
    ----------
    terminals : mapping Expr -> ndarray (T, N)
        Leaf panels (never copied, never evicted, never modified).
    mask : bool ndarray (T, N) or None
        Universe mask for ``cs_*`` operators.
    budget_bytes : int
        Memo size; 0 keeps nothing but the terminals.
    strict : bool
        An operator rejecting its arguments raises EvaluationError (as
        :func:`factors.expr_eval.evaluate` does) instead of giving an all-NaN panel (GP).

    Thread-safe: the store and counters are guarded by a lock, operators run outside it. A
    node being computed by one thread is not computed again by another: the second waits for
    it (then reads it from the store, or computes it when it was not kept), so threads do the
    serial run's work and its hit / miss counts.
    """

    def __init__(self, terminals: Mapping[Expr, np.ndarray], mask: np.ndarray | None,
                 budget_bytes: int, strict: bool = False):
        self.terminals, self.strict = dict(terminals), strict
        self.mask = mask
        self.budget = int(budget_bytes)
        self.store: OrderedDict[Expr, np.ndarray] = OrderedDict()
        self.nbytes = 0
        self.stats = {"hits": 0, "misses": 0, "evictions": 0}
        self.shape = next(iter(self.terminals.values())).shape
        self._lock = threading.Lock()
        self._pending: dict[Expr, threading.Event] = {}   # nodes being computed now

    def values(self, expr: Expr) -> np.ndarray:
        """``expr`` on the panels, ``(T, N)`` float64, read-only; +-inf mapped to NaN."""
        local: dict[Expr, np.ndarray] = {}
        stack: list[tuple[Expr, bool]] = [(expr, False)]
        while stack:
            node, ready = stack.pop()
            if node in local:
                continue
            hit = self._get(node)
            if hit is not None:
                local[node] = hit
                continue
            if isinstance(node, Const):
                local[node] = np.full(self.shape, node.value)
            elif isinstance(node, Call):
                if not ready:
                    stack.append((node, True))
                    stack.extend((a, False) for a in reversed(node.args) if a not in local)
                    continue
                busy = self._claim(node)
                if busy is not None:               # another thread is computing it
                    busy.wait()
                    stack.append((node, True))     # now a hit (or computed here if not kept)
                    continue
                try:
                    args = operator_args(node, [local[a] for a in node.args], self._columns)
                    local[node] = self._put(node, self._apply(node, args))
                finally:
                    self._release(node)
            else:
                raise KeyError(f"leaf {node} has no terminal panel")
        return local[expr]

    def _get(self, node: Expr) -> np.ndarray | None:
        t = self.terminals.get(node)
        if t is not None:
            return t
        with self._lock:
            arr = self.store.get(node)
            if arr is not None:
                self.store.move_to_end(node)
                self.stats["hits"] += 1
        return arr

    def _claim(self, node: Expr) -> threading.Event | None:
        """Mark ``node`` as being computed here (None), or return the event of the thread
        already computing it (only while the store may keep it: with no budget nothing is
        shared, so there is nothing to wait for)."""
        if self.budget <= 0:
            return None
        with self._lock:
            if node in self.store:               # stored since this thread looked
                return _DONE
            ev = self._pending.get(node)
            if ev is None:
                self._pending[node] = threading.Event()
            return ev

    def _release(self, node: Expr) -> None:
        with self._lock:
            ev = self._pending.pop(node, None)
        if ev is not None:
            ev.set()

    def _columns(self, leaf: Expr, arr: np.ndarray) -> np.ndarray:
        """``leaf``'s column-ordered copy (:func:`factors.expr_eval.operator_args`), memoised."""
        key = ("columns", leaf)
        with self._lock:
            hit = self.store.get(key)
            if hit is not None:
                self.store.move_to_end(key)
                return hit
        return self._put(key, np.asfortranarray(arr))

    def _apply(self, node: Call, args: list[np.ndarray]) -> np.ndarray:
        with self._lock:
            self.stats["misses"] += 1
        op = get_op(node.op)
        with np.errstate(all="ignore"):
            try:
                out = op.apply(args, node.windows, mask=self.mask)
            except ValueError as exc:
                if self.strict:
                    raise EvaluationError(f"{unparse(node)}: {exc}") from exc
                return np.full(self.shape, np.nan)
        out = np.asarray(out, dtype=np.float64)
        if not op.never_inf and has_inf(out):     # one compiled pass, no mask in the common case
            out = np.where(np.isinf(out), np.nan, out)
        return out

    def _put(self, node: Expr, arr: np.ndarray) -> np.ndarray:
        arr.setflags(write=False)
        if self.budget <= 0 or arr.nbytes > self.budget:
            return arr
        with self._lock:
            if node in self.store:                 # another thread stored it meanwhile
                return arr
            self.store[node] = arr
            self.nbytes += arr.nbytes
            while self.nbytes > self.budget:
                _, old = self.store.popitem(last=False)
                self.nbytes -= old.nbytes
                self.stats["evictions"] += 1
        return arr

    def clear(self) -> None:
        with self._lock:
            self.store.clear()
            self.nbytes = 0


class Scorer:
    """RankIC, coverage and turnover of a panel on one split's rows (one row sort).

    Parameters
    ----------
    lo, hi : int
        The split's rows ``[lo, hi)`` of the full ``(T, N)`` panels.
    e : bool ndarray (hi - lo, N)
        Eligibility on those rows.
    oy, ny : ndarray (hi - lo, N), (hi - lo,)
        The label's :func:`~factors.row_order.row_orders` on eligible names.
    ry, ly : ndarray (hi - lo, N), (hi - lo,)
        The label's :func:`~backtest.metrics_ic.label_ranks` on eligible names.
    prep : tuple, optional
        :func:`~backtest.ic_turnover.score_prep` of ``e, ry, ly`` (computed when None).
    turnover : bool, default True
        Compute the turnover; False returns NaN for it and scores the factor on the compact
        rows of the eligible names (:func:`~backtest.ic_turnover.rank_ic`): for selections
        that never read it.
    label_order : tuple, optional
        ``row_orders(prep[2], ties=True)`` (computed when None).
    """

    def __init__(self, lo: int, hi: int, e, oy, ny, ry, ly, prep=None, turnover: bool = True,
                 label_order=None):
        self.lo, self.hi = int(lo), int(hi)
        self.e, self.oy, self.ny, self.ry, self.ly = e, oy, ny, ry, ly
        self.prep = score_prep(e, ry, ly) if prep is None else prep
        self.n_e = max(int(np.count_nonzero(e)), 1)
        self.turnover = bool(turnover)
        if self.turnover:
            # names a row's ranks are ever needed on: eligible that day (RankIC, the day's
            # side of the autocorrelation) or the next (its lagged side): the sort skips the rest
            self.sorted_names = e.copy()
            self.sorted_names[:-1] |= e[1:]
        else:
            self.label_order = (row_orders(self.prep[2], ties=True) if label_order is None
                                else label_order)

    @staticmethod
    def arrays(ctx: EvalContext, split: str) -> dict[str, np.ndarray]:
        """The ``score_*`` arrays of ``split`` (rows, eligibility, the label's orders and
        ranks, :func:`~backtest.ic_turnover.score_prep`)."""
        lo, hi = ctx.split_bounds(split)
        oy, ny = ctx.label_order(ctx.horizon)
        e = np.ascontiguousarray(ctx.eligible[lo:hi])
        y = np.ascontiguousarray(ctx.fwd[ctx.horizon][lo:hi])
        oy, ny = np.ascontiguousarray(oy[lo:hi]), np.ascontiguousarray(ny[lo:hi])
        ry, ly = label_ranks(y, oy, ny, e)
        cols, ncols, lab, syy = score_prep(e, ry, ly)
        lo_, nl, lt = row_orders(lab, ties=True)
        return {"score_rows": np.array([lo, hi], dtype=np.int64), "score_e": e, "score_oy": oy,
                "score_ny": ny, "score_ry": ry, "score_ly": ly,
                "score_cols": cols, "score_ncols": ncols, "score_lab": lab, "score_syy": syy,
                "score_lorder": lo_, "score_nl": nl, "score_ltied": lt}

    @classmethod
    def from_arrays(cls, a: Mapping[str, np.ndarray], turnover: bool = True) -> Scorer:
        lo, hi = a["score_rows"]
        return cls(lo, hi, a["score_e"], a["score_oy"], a["score_ny"],
                   a["score_ry"], a["score_ly"],
                   (a["score_cols"], a["score_ncols"], a["score_lab"], a["score_syy"]),
                   turnover, (a["score_lorder"], a["score_nl"], a["score_ltied"]))

    def __call__(self, v: np.ndarray) -> tuple[float, float, float]:
        """``(mean daily RankIC, coverage, turnover)`` of ``v`` (T, N) on the split."""
        if self.hi <= self.lo:
            return np.nan, 0.0, np.nan
        turn = np.nan
        if self.turnover:
            fs = np.ascontiguousarray(v[self.lo:self.hi])
            of, nf, tf = row_orders(fs, self.sorted_names, ties=True)
            daily, auto, covered = ic_and_turnover(fs, of, nf, self.oy, self.ny, self.e,
                                                   self.ry, self.ly, self.prep, tf)
            if fs.shape[0] > 1:
                turn = 1.0 - finite_mean(auto[1:])
        else:                                   # the eligible names only, in compact rows
            fc = eligible_values(v, self.lo, self.prep[0], self.prep[1])
            daily, covered = rank_ic(fc, self.prep, self.label_order)
        cov = float(covered) / self.n_e
        return float(finite_mean(daily)), cov, float(turn)


@dataclass(frozen=True)
class ScoreSpec:
    """What :func:`score_task` needs besides the panels (small, picklable).

    ``leaves[i]`` is the terminal whose panel is ``t{i}``; ``div`` the replica parameters of
    a :class:`~mining.gp_diversity.Diversity` hook (None: no hook in the workers).
    """

    key: str
    leaves: tuple
    budget_bytes: int
    parsimony: float
    div: dict | None = None
    strict: bool = False
    keep_ranks: bool = False     # score_task also returns the hook's sample ranks
    turnover: bool = True        # the scorer computes turnover (False: NaN, less work)


def run_panels(terminals: Mapping[Expr, np.ndarray], mask: np.ndarray | None,
               scorer_arrays: Mapping[str, np.ndarray],
               div_arrays: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The panels of one run, named as :func:`score_task` reads them (to ``share``)."""
    out = {f"t{i}": v for i, v in enumerate(terminals.values())}
    if mask is not None:
        out["mask"] = np.asarray(mask, dtype=bool)
    out.update(scorer_arrays)
    out.update(div_arrays or {})
    return out


class _State:
    """One run's memo, scorer and hook replicas in one process."""

    def __init__(self, spec: ScoreSpec, panels: Mapping[str, np.ndarray]):
        terms = {leaf: panels[f"t{i}"] for i, leaf in enumerate(spec.leaves)}
        self.memo = PanelMemo(terms, panels.get("mask"), spec.budget_bytes, spec.strict)
        self.scorer = (Scorer.from_arrays(panels, spec.turnover) if "score_rows" in panels
                       else None)
        self.spec, self.panels, self.pid = spec, panels, os.getpid()
        self._tl = threading.local()
        self.extra: dict = {}            # per-run objects of other task functions
        self.lock = threading.Lock()

    def replica(self, hall: tuple):
        """This thread's hook replica with its hall of fame set to ``hall``."""
        from mining.gp_diversity import Diversity
        rep = getattr(self._tl, "rep", None)
        if rep is None:
            rep = self._tl.rep = Diversity.from_replica_state(self.panels, self.spec.div)
        if getattr(self._tl, "hall", None) != hall:
            cache = getattr(self._tl, "ranked", {})
            ranked = {e: cache.get(e) or rep.rank_values(self.memo.values(e)) for e, _, _ in hall}
            rep.set_hall([(e, fit, sig, ranked[e]) for e, fit, sig in hall])
            self._tl.hall, self._tl.ranked = hall, ranked
        return rep


_STATES: dict[str, _State] = {}
_STATES_LOCK = threading.Lock()


def local_state(spec: ScoreSpec, panels: Mapping[str, np.ndarray]) -> _State:
    """The run's state in this process (made on first use; a state inherited from a parent
    process through ``fork`` is rebuilt on this process's panels)."""
    st = _STATES.get(spec.key)
    if st is not None and st.pid == os.getpid():
        return st
    with _STATES_LOCK:
        st = _STATES.get(spec.key)
        if st is None or st.pid != os.getpid():
            for k in [k for k in _STATES if k != spec.key]:   # one run at a time per process
                del _STATES[k]
            st = _STATES[spec.key] = _State(spec, panels)
    return st


def release_state(key: str) -> None:
    """Drop the run's state in this process (the memo's panels are freed)."""
    with _STATES_LOCK:
        st = _STATES.pop(key, None)
    if st is not None:
        st.memo.clear()


def score_task(panels: Mapping[str, np.ndarray], item: tuple) -> tuple:
    """Score one program: ``item = (spec, expr, hall, keep_above)``.

    Returns
    -------
    tuple
        ``(fitness, rank_ic, coverage, turnover, signature, ranks)``: fitness ``|ic| x
        coverage - parsimony x size`` (0 when the RankIC is undefined), times ``1 - penalty``
        with a hook (``spec.div``); signature None without one; ranks the hook's
        :meth:`~mining.gp_diversity.Diversity.sample_ranks` of the program's values when
        ``spec.keep_ranks`` and the fitness is above ``keep_above`` (the least fitness the
        engine still keeps: ranks of a less fit program would be dropped on arrival, so they
        are neither computed nor sent back), else None.
    """
    spec, expr, hall, keep_above = item
    st = local_state(spec, panels)
    v = st.memo.values(expr)
    ic, cov, turn = st.scorer(v)
    fit = abs(ic) * cov - spec.parsimony * size(expr) if np.isfinite(ic) else 0.0
    sig = ranks = None
    if spec.div is not None:
        rep = st.replica(hall)
        sig = rep.signature(v)
        if np.isfinite(ic):
            fit *= 1.0 - float(rep.penalty(v))
        if spec.keep_ranks and np.isfinite(fit) and fit > keep_above:
            ranks = rep.sample_ranks(v)
    return float(fit), ic, cov, turn, sig, ranks


def sample_task(panels: Mapping[str, np.ndarray], item: tuple) -> np.ndarray:
    """``sign * values`` of a program on the hook's sample rows: ``item = (spec, expr,
    sign)``; ``(S, N)`` (what the engine's hook ``admit`` reads of a panel)."""
    spec, expr, sign = item
    return sign * local_state(spec, panels).memo.values(expr)[panels["div_rows"]]
