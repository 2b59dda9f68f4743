"""alphamine's own genetic-programming engine on :class:`~factors.expr_tree.Expr` trees.

Method: tree-based genetic programming (Koza 1992, "Genetic Programming: On the Programming of
Computers by Means of Natural Selection"), with gplearn 0.4's design (:mod:`mining.gp`, still
selectable with ``[gp] engine = "gplearn"``) as the reference point: ramped half-and-half
initialisation, subtree crossover, subtree / hoist / point mutation, tournament selection and
a parsimony penalty. What gplearn cannot do and this engine adds:

* warm start: ``seeds`` (e.g. leaderboard formulas) join the first generation;
* window mutation and ephemeral random constants (Koza 1992) with gaussian constant mutation
  (:mod:`mining.gp_variation`);
* NSGA-II selection (Deb et al. 2002; :mod:`mining.gp_nsga`) on (fitness, turnover, size);
  elitism in both selection modes;
* pool-aware fitness and semantic de-duplication through a :class:`DiversityHook`;
* leaves are any terminal ``Expr`` with a panel, not only fields.

Fitness of a program with values ``v`` (a ``(T, N)`` panel computed on the full context, every
operator being causal) on the rows of ``split`` only: ``|mean daily RankIC| x coverage -
parsimony x size`` (RankIC and coverage exactly as gplearn's ``_RankICFitness``), times
``1 - diversity.penalty(v)`` when a hook is given; 0 when the RankIC is undefined. The hook's
penalty and signature are taken when a program is first evaluated in the run. Turnover is
``1 - mean daily Spearman(v[t], v[t-1])`` on the split's eligible names, computed for
NSGA-II selection only (tournaments never read it: NaN).

Evaluation substitutes the terminal panels for the leaves and memoises every subtree output
by structure (``Expr`` is hashable) in a least-recently-used memo of ``cache_mb`` MiB, so
subtrees shared across the population are computed once; program scores are memoised too.
Runs are deterministic: one ``numpy.random.Generator`` seeded with ``settings.seed``.

With a hook computed by the workers (every executor but the hook of this process only), the
sample ranks of the fittest programs are kept (at most :data:`KEEP_RANKS_MB` MiB, float32, the
least fit dropped first) and returned as ``GPResult.sample_ranks`` for the oriented
candidates: the selection walk of ``mine gp`` then reads them instead of evaluating those
programs again. Workers send ranks back only for programs fitter than the least fit kept when
the generation started (worker processes and a cluster send the rest nothing).

Generation 1 is the initial population (seeds first, then ramped half-and-half); each later
generation is ``population`` offspring. Tournament mode keeps the ``elite`` best programs and
breeds the rest; NSGA-II breeds ``population`` offspring by crowded tournaments and keeps the
best ``population`` of parents + offspring by front and crowding (the ``elite`` fittest always
survive).
"""
from __future__ import annotations

import heapq
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from backtest.context import EvalContext
from factors.expr_tree import Call, Expr, size
from factors.parallel import Executor, SerialExecutor
from mining.gp import GPGeneration, GPResult, GPSettings
from mining.gp_eval import (Scorer, ScoreSpec, local_state, release_state, run_panels,
                            sample_task, score_task)
from mining.gp_nsga import crowded_tournament, nsga2_rank, nsga2_survivors
from mining.gp_variation import Primitives

__all__ = ["DiversityHook", "Program", "evolve", "KEEP_RANKS_MB"]

#: Memory for the fittest programs' sample ranks kept for the selection walk (MiB; ~1 MiB a
#: program on the whole market with 60 sample dates).
KEEP_RANKS_MB = 256


class DiversityHook(Protocol):
    """Pool awareness (implemented by :class:`mining.gp_diversity.Diversity`)."""

    def signature(self, values: np.ndarray) -> bytes:
        """Semantic key of a ``(T, N)`` panel; the same for ``x`` and ``-x``."""

    def penalty(self, values: np.ndarray) -> float:
        """In [0, 1]: max |rank corr| with the pool and the hall of fame."""

    def admit(self, expr: Expr, values: np.ndarray, fitness: float) -> None:
        """Offer a program to the hall of fame."""


@dataclass(frozen=True)
class Program:
    """One evaluated program (``expr`` as evolved: its RankIC may be negative)."""

    expr: Expr
    fitness: float        # the selection fitness (pool-adjusted when a hook is given)
    rank_ic: float        # mean daily RankIC on the fitness split (signed)
    coverage: float
    turnover: float       # 1 - mean daily rank autocorrelation (lag 1) on the split; NaN unless
                          # selection is nsga2 (the only reader: tournaments skip its work)
    size: int             # node count
    parents: tuple[str, ...]   # formula text of the parent(s) it was bred from ((): initial/seeded)
    generation: int


def _negate(expr: Expr) -> Expr:
    if isinstance(expr, Call) and expr.op == "neg" and len(expr.args) == 1:
        return expr.args[0]
    return Call("neg", (expr,))


def oriented(p: Program) -> Expr:
    """``p.expr``, negated when its RankIC is negative (the leaderboard stores positive IC)."""
    return _negate(p.expr) if np.isfinite(p.rank_ic) and p.rank_ic < 0 else p.expr


class _Run:
    """State of one :func:`evolve` call: the panels are shared once with the executor."""

    def __init__(self, terminals, ctx, settings, split, diversity, executor: Executor):
        self.s, self.div, self.ex = settings, diversity, executor
        self.prims = Primitives(list(terminals), settings.const_range, settings.max_depth)
        self.rng = np.random.default_rng(settings.seed)
        self.scores: dict[Expr, tuple] = {}   # expr -> (fitness, ic, cov, turnover, signature)
        self.seen: dict = {}                  # dedup key -> Program (first evaluation kept)
        self.n_scored = 0
        self.replica = hasattr(diversity, "replica_state")   # hook runs in the workers
        div_arrays, div_params = diversity.replica_state() if self.replica else ({}, None)
        panels = run_panels(terminals, ctx.universe_mask, Scorer.arrays(ctx, split), div_arrays)
        self.shared = executor.share(panels)
        in_process = isinstance(self.shared, Mapping)           # serial, threads
        self.spec = ScoreSpec(uuid.uuid4().hex, tuple(terminals), int(settings.cache_mb * 2**20),
                              float(settings.parsimony), div_params,
                              keep_ranks=self.replica,
                              turnover=settings.selection == "nsga2")
        self._kept: dict[Expr, np.ndarray] = {}   # expr -> sample ranks (the fittest)
        self._kept_heap: list[tuple[float, int, Expr]] = []
        self._kept_bytes = 0
        # the engine's own memo: the one in-process workers use (serial, threads)
        self.memo = local_state(self.spec, self.shared if in_process else panels).memo

    def score(self, exprs: Sequence[Expr]) -> None:
        """Score the distinct programs of ``exprs`` not scored yet, through the executor."""
        # in formula order: programs bred from one parent share its text up to where they
        # differ, and executors hand out contiguous runs of items, so each worker process (or
        # node) meets subtrees its own memo holds
        todo = sorted(dict.fromkeys(e for e in exprs if e not in self.scores), key=str)
        if not todo:
            return
        hall = self.div.hall_spec() if self.replica else ()
        floor = self._keep_floor()
        out = self.ex.map(score_task, [(self.spec, e, hall, floor) for e in todo], self.shared)
        for e, (fit, ic, cov, turn, sig, ranks) in zip(todo, out):
            if self.div is not None and not self.replica:    # a hook of this process only
                v = self.memo.values(e)
                sig = self.div.signature(v)
                if np.isfinite(ic):
                    fit *= 1.0 - float(self.div.penalty(v))
            self.scores[e] = (float(fit), ic, cov, turn, sig)
            if ranks is not None and np.isfinite(fit):
                self._keep(e, float(fit), ranks)

    def _keep(self, expr: Expr, fit: float, ranks: np.ndarray) -> None:
        """Keep ``ranks`` of ``expr`` while it is among the fittest that fit in
        :data:`KEEP_RANKS_MB` (ties: the earlier scored stays)."""
        heapq.heappush(self._kept_heap, (fit, -len(self.scores), expr))
        self._kept[expr] = ranks
        self._kept_bytes += ranks.nbytes
        while self._kept_bytes > KEEP_RANKS_MB * 2**20 and self._kept_heap:
            _, _, drop = heapq.heappop(self._kept_heap)
            self._kept_bytes -= self._kept.pop(drop).nbytes

    def _keep_floor(self) -> float:
        """The fitness a program must exceed for :meth:`_keep` to hold its ranks once one
        more arrives (-inf while there is room): a program scored as fit as the least fit
        kept is dropped first, being the later scored."""
        if not self._kept_heap:
            return -np.inf
        one = next(iter(self._kept.values())).nbytes
        if self._kept_bytes + one <= KEEP_RANKS_MB * 2**20:
            return -np.inf
        return float(self._kept_heap[0][0])

    def kept_ranks(self, p: Program, e: Expr) -> np.ndarray | None:
        """The kept sample ranks of candidate ``e`` (``oriented(p)``): ``p``'s, mirrored when
        ``e`` is its negation; None when not kept."""
        r = self._kept.get(p.expr)
        if r is None or e == p.expr:
            return r
        return self.div.negated_sample_ranks(r)

    def oriented_values(self, exprs: list[Expr], signs: list[float]) -> list[np.ndarray]:
        """``sign * values`` of each program for the hook's ``admit``: from this process's
        memo, or (worker processes) the hook's sample rows computed by the workers in a
        zero panel (only the sample rows are read, so only they are filled)."""
        if isinstance(self.shared, Mapping) or not self.replica:
            return [sign * self.memo.values(e) for e, sign in zip(exprs, signs)]
        rows = self.div.rows
        out = self.ex.map(sample_task, [(self.spec, e, sign) for e, sign in zip(exprs, signs)],
                          self.shared)
        panels = []
        for sample in out:
            z = np.zeros((int(rows[-1]) + 1, sample.shape[1]))
            z[rows] = sample
            panels.append(z)
        return panels

    def close(self) -> None:
        release_state(self.spec.key)
        release = getattr(self.ex, "release", None)
        if release is not None:
            release(self.shared)

    def evaluate(self, expr: Expr, parents: tuple[str, ...], gen: int) -> Program:
        """The :class:`Program` of a scored ``expr`` (recorded for de-duplication)."""
        self.n_scored += 1
        fit, ic, cov, turn, sig = self.scores[expr]
        p = Program(expr, fit, ic, cov, turn, size(expr), parents, gen)
        self._record(p, sig)
        return p

    def _record(self, p: Program, sig) -> None:
        key = sig if sig is not None else p.expr
        old = self.seen.get(key)
        if old is None or (sig is not None and (p.size, -p.fitness) < (old.size, -old.fitness)):
            self.seen[key] = p

    # ------------------------------------------------------------------ breeding
    def breed(self, pick: Callable[[], Program]) -> Program:
        s, prims, rng = self.s, self.prims, self.rng
        parent = pick()
        ops = ((s.p_crossover, "crossover"), (s.p_subtree_mutation, "subtree_mutation"),
               (s.p_hoist_mutation, "hoist_mutation"), (s.p_point_mutation, "point_mutation"),
               (s.p_window_mutation, "window_mutation"),
               (s.p_constant_mutation, "constant_mutation"))
        r, acc, kind = rng.random(), 0.0, None
        for p, name in ops:
            acc += p
            if r < acc:
                kind = name
                break
        if kind is None:                                         # reproduction
            return self._copy(parent)
        donor = pick() if kind == "crossover" else None
        for _ in range(5):                                       # retry an invalid child
            if kind == "crossover":
                child = prims.crossover(rng, parent.expr, donor.expr)
            else:
                child = getattr(prims, kind)(rng, parent.expr)
            if child != parent.expr and prims.valid(child):
                parents = ((str(parent.expr), str(donor.expr)) if donor is not None
                           else (str(parent.expr),))
                return Program(child, np.nan, np.nan, np.nan, np.nan, 0, parents, 0)
        return self._copy(parent)

    @staticmethod
    def _copy(parent: Program) -> Program:
        return Program(parent.expr, np.nan, np.nan, np.nan, np.nan, 0, (str(parent.expr),), 0)


def _objectives(pop: Sequence[Program]) -> np.ndarray:
    return np.array([[-p.fitness, p.turnover if np.isfinite(p.turnover) else 2.0, p.size]
                     for p in pop], dtype=np.float64)


def _fittest(pop: Sequence[Program], k: int) -> list[int]:
    order = sorted(range(len(pop)), key=lambda i: (-pop[i].fitness, pop[i].size, i))
    return order[:k]


def evolve(terminals: Mapping[Expr, np.ndarray], ctx: EvalContext, settings: GPSettings, *,
           split: str = "train", seeds: Sequence[Expr] = (), diversity: DiversityHook | None = None,
           on_generation: Callable[[GPGeneration], None] | None = None,
           executor: Executor | None = None) -> GPResult:
    """Search factor formulas by genetic programming with alphamine's own engine.

    Parameters
    ----------
    terminals : mapping Expr -> ndarray (T, N)
        Leaves and their panels (``Field("close") -> close``...), aligned with ``ctx``.
        NaN = missing; panels are never modified.
    ctx : EvalContext
        Labels, eligibility and splits; fitness reads the rows of ``split`` only.
    settings : GPSettings
        ``population``, ``generations``, ``tournament_size``, ``parsimony``, ``max_depth``,
        ``seed``, the ``p_*`` probabilities, ``selection``, ``elite``, ``const_range``,
        ``cache_mb`` (``engine``, ``n_jobs`` and ``cache_min_ms`` are not read).
    split : str
        Split of the fitness (default ``"train"``).
    seeds : sequence of Expr
        Programs put in generation 1 (warm start), in order, at most ``population``; a seed
        whose leaves are not all terminals / constants, whose operators or windows GP does not
        offer, or deeper than ``max_depth`` is skipped (``GPResult.seeds_skipped``).
    diversity : DiversityHook, optional
        Pool awareness: fitness is multiplied by ``1 - penalty``, distinct programs are
        de-duplicated by ``signature`` (the smaller program of a class is kept) and after each
        generation its ``max(elite, 1)`` best distinct programs are offered to ``admit``
        (oriented, with their values). A hook with ``replica_state`` (a
        :class:`~mining.gp_diversity.Diversity`) is replicated in the workers, its hall of
        fame as of the start of the generation; any other hook is called in this process
        after each batch. Either way the penalty a program gets is the one it would get
        scored alone at that point of the run.
    on_generation : callable, optional
        Called with each generation's :class:`~mining.gp.GPGeneration`.
    executor : Executor, optional
        Where programs are scored (:mod:`factors.parallel`; default serial, in this thread).
        Each generation is bred first, then its distinct new programs are scored in one
        ``map``; results do not depend on the executor. The caller closes it. ``cache``
        counts this process's memo only (worker processes keep their own memos).

    Returns
    -------
    GPResult
        ``candidates``: every distinct program as ``(oriented Expr, fitness)``, best first
        (negated when its RankIC is negative); ``programs``: the :class:`Program` records
        (as evolved) in the same order; ``parents``: oriented formula -> parent formulas;
        ``seeds_used`` / ``seeds_skipped``; ``engine="alphamine"``. Same data, settings and
        seed give the same result.

    Raises
    ------
    ValueError
        No terminal, or a terminal panel whose shape is not ``ctx.shape``.
    EvaluationError
        Unknown ``split``.
    """
    t0 = time.perf_counter()
    for leaf, panel in terminals.items():
        if np.shape(panel) != ctx.shape:
            raise ValueError(f"terminal {leaf} has shape {np.shape(panel)}, expected {ctx.shape}")
    terminals = {k: _readonly(v) for k, v in terminals.items()}
    run = _Run(terminals, ctx, settings, split, diversity,
               executor if executor is not None else SerialExecutor())
    s, P = settings, settings.population
    used = list(dict.fromkeys(e for e in seeds if run.prims.valid(e)))[:P]
    n_skipped = len(seeds) - len(used)          # invalid, repeated or beyond the population
    exprs = used + run.prims.ramped(run.rng, P - len(used))
    generations: list[GPGeneration] = []
    pop: list[Program] = []
    try:
        for g in range(1, s.generations + 1):
            tg = time.perf_counter()
            if g == 1:
                run.score(exprs)
                gen_pop = [run.evaluate(e, (), 1) for e in exprs]
                pop = gen_pop
            else:
                pop, gen_pop = _next_generation(run, pop, g)
            generations.append(_summary(run, pop, g, time.perf_counter() - tg))
            _admit(run, gen_pop)
            if on_generation is not None:
                on_generation(generations[-1])
    finally:
        cache = {**run.memo.stats, "programs_memoised": len(run.scores)}
        run.close()
    programs = sorted(run.seen.values(), key=lambda p: (-p.fitness, p.size, str(p.expr)))
    candidates: dict[Expr, float] = {}
    parents: dict[str, tuple[str, ...]] = {}
    kept: dict[Expr, np.ndarray] = {}
    for p in programs:
        e = oriented(p)
        if e not in candidates:
            candidates[e] = p.fitness
            parents[str(e)] = p.parents
            r = run.kept_ranks(p, e)
            if r is not None:
                kept[e] = r
    run._kept.clear()
    return GPResult(candidates=list(candidates.items()), generations=generations,
                    n_programs_scored=run.n_scored, seconds=time.perf_counter() - t0,
                    fields=tuple(str(k) for k in terminals), cache=cache, programs=programs,
                    parents=parents, seeds_used=len(used), seeds_skipped=n_skipped,
                    engine="alphamine", sample_ranks=kept)


def _readonly(a) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.flags.writeable:
        arr = arr.copy()
        arr.setflags(write=False)
    return arr


def _next_generation(run: _Run, pop: list[Program], g: int) -> tuple[list[Program],
                                                                     list[Program]]:
    """(next population, the programs evaluated this generation)."""
    s, P, rng = run.s, run.s.population, run.rng
    elite = [pop[i] for i in _fittest(pop, min(s.elite, P))]
    if s.selection == "nsga2":
        front, crowd = nsga2_rank(_objectives(pop))

        def pick() -> Program:
            return pop[crowded_tournament(rng, front, crowd, 2)]
        n_child = P
    else:
        fits = np.array([p.fitness for p in pop])
        k = min(s.tournament_size, len(pop))

        def pick() -> Program:
            entrants = rng.integers(len(pop), size=k)
            return pop[int(entrants[np.argmax(fits[entrants])])]
        n_child = P - len(elite)
    bred = [run.breed(pick) for _ in range(n_child)]     # the rng draws of a serial run
    run.score([c.expr for c in bred])
    children = [run.evaluate(c.expr, c.parents, g) for c in bred]
    if s.selection == "nsga2":
        union = pop + children
        uniq = list({p.expr: i for i, p in reversed(list(enumerate(union)))}.values())
        uniq.sort()                          # one copy of each program competes (first kept);
        keep = [uniq[int(i)] for i in nsga2_survivors(_objectives([union[i] for i in uniq]), P)]
        taken = set(uniq)                    # copies only fill a population of few programs
        keep += [i for i in range(len(union)) if i not in taken][:P - len(keep)]
        best = [uniq[i] for i in _fittest([union[i] for i in uniq], min(s.elite, P))]
        keep = list(dict.fromkeys(best + keep))[:P]
        return [union[i] for i in keep], children
    run.n_scored += len(elite)           # carried over unchanged: counted, not recomputed
    return elite + children, elite + children


def _summary(run: _Run, gen_pop: list[Program], g: int, seconds: float) -> GPGeneration:
    fits = np.array([p.fitness for p in gen_pop])
    best = gen_pop[int(np.argmax(fits))]
    return GPGeneration(generation=g, best=float(fits.max()), median=float(np.median(fits)),
                        best_formula=str(oriented(best)), seconds=seconds,
                        n_programs=len(gen_pop))


def _admit(run: _Run, gen_pop: list[Program]) -> None:
    if run.div is None:
        return
    k, done, picks = max(run.s.elite, 1), set(), []
    for i in _fittest(gen_pop, len(gen_pop)):
        p = gen_pop[i]
        sig = run.scores[p.expr][4]
        if sig in done or not np.isfinite(p.rank_ic):
            continue
        done.add(sig)
        picks.append(p)
        if len(picks) >= k:
            break
    for p in picks:                      # in order: each admission changes the hall
        e = oriented(p)
        kept = run.kept_ranks(p, e)      # the workers' sample ranks: no panel, no ranking
        if kept is not None:
            run.div.admit_ranked(e, run.div.from_sample_ranks(kept), p.fitness)
            continue
        v = run.oriented_values([p.expr], [-1.0 if p.rank_ic < 0 else 1.0])[0]
        run.div.admit(e, v, p.fitness)
