"""Genetic-programming factor search with gplearn (the only module that imports gplearn).

gplearn is the search engine; everything it evaluates is our own operator set, generated from the
factor-language registry (:mod:`factors.registry`):

* each elementwise operator becomes a gplearn function of the same name and arity;
* each ``ts_*`` operator becomes one function per window in ``Operator.gp_windows``
  (``ts_mean_20`` ...); each ``cs_*`` operator one function that ranks/normalises across the
  universe members of each date;
* ``log`` is the only *protected* function: gplearn's ``log`` is ``log(abs(x))`` and it is
  translated back into exactly that formula, so a GP program and its :class:`~factors.expr_tree.Expr`
  always compute the same numbers. Division is not protected: ``x / 0`` is NaN as everywhere.

The panel is fed to gplearn date-major: ``X[t * N + i, k]`` is field ``k`` of stock ``i`` on date
``t``; every function reshapes its 1-D arguments to ``(T, N)``, applies the operator and flattens
back. NaN (suspended, not yet listed) flows through the operators as in the rest of the workbench.
Fitness is the absolute mean daily RankIC on the train split (eligible names only, no row
subsampling) times the program's coverage of eligible names; a program whose IC is undefined gets
the worst fitness, 0. Programs with a negative
IC are stored negated, so every leaderboard entry has a positive train RankIC.

Only the train rows are ever given to gplearn; valid/test rows are evaluated afterwards by the
common evaluator (:mod:`backtest.evaluate`), never used for fitness.

Memoisation: gplearn recomputes every subtree of every program, although a population shares
many (``ts_mad(turnover, 20)`` ...) and holds duplicate programs. Each function call is therefore
memoised per process by its *structure*: a node id for (gplearn function name, node ids of the
inputs), where an input is either an output this cache produced (recognised by object identity,
held through a weak reference) or a leaf (a column of X), identified by a BLAKE2b digest of its
bytes computed once per buffer. Every output is handed on read-only; it is kept (LRU bounded by
``GPSettings.cache_mb``) when it took at least ``GPSettings.cache_min_ms`` to compute or when its
node is computed a second time, since keeping a panel costs fresh, page-faulted memory. The
fitness is memoised by the node id of the program's output. The kernels are deterministic, so
results are identical with and without the cache (tested). With ``n_jobs > 1`` each worker
process has its own memo and ``GPResult.cache`` counts the parent process only.
"""
from __future__ import annotations

import hashlib
import time
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from backtest.context import EvalContext
from backtest.evaluate import mean_rank_ic
from factors.expr_tree import Call, Const, Expr, Field
from factors.operators import all_ops
from factors.registry import Operator

# gplearn imports live here only.
import gplearn._program as _gp_program
import gplearn.genetic as _gp_genetic
from gplearn.fitness import make_fitness
from gplearn.functions import _Function
from gplearn.genetic import SymbolicRegressor

__all__ = ["GPSettings", "GPGeneration", "GPResult", "build_function_set", "program_to_expr",
           "run_gp"]


@dataclass(frozen=True)
class GPSettings:
    """``[gp]`` in ``mine.toml``: the data window, the search and the admission budget.

    The defaults are the shipped ``mine.toml``'s (the one place they are defined).
    """

    universe: str = "csi300"
    start: str = "2010-01-01"           # GP data window start (fitness uses the train split only)
    end: str = "2021-12-31"
    population: int = 800
    generations: int = 8
    tournament_size: int = 10
    parsimony: float = 0.0002
    max_depth: int = 4
    seed: int = 42
    n_jobs: int = 1
    top: int = 20                       # at most this many factors added per run
    fields: tuple[str, ...] = ("open", "high", "low", "close", "vwap", "vol", "amount",
                               "turnover", "ret", "total_mv")
    p_crossover: float = 0.7
    p_subtree_mutation: float = 0.1
    p_hoist_mutation: float = 0.05
    p_point_mutation: float = 0.1
    cache_mb: float = 1536.0  # operator-output memo per process (MiB); 0 disables it
    cache_min_ms: float = 20.0  # keep an output computed once only if it took this long


@dataclass(frozen=True)
class GPGeneration:
    """Summary of one generation (fitness = |mean train RankIC| x coverage)."""

    generation: int
    best: float
    median: float
    best_formula: str
    seconds: float
    n_programs: int


@dataclass
class GPResult:
    """All distinct programs found, best first, with their train fitness."""

    candidates: list[tuple[Expr, float]]
    generations: list[GPGeneration]
    n_programs_scored: int
    seconds: float
    fields: tuple[str, ...] = field(default_factory=tuple)
    cache: dict[str, int] = field(default_factory=dict)  # memo counters (this process only)


class _OpCache:
    """Per-process memo of operator outputs (LRU by bytes) and fitness values for one GP run.

    Node ids are small ints interned from structural keys ``(function name, input node ids)`` or
    ``("leaf", digest, shape)``; two calls with the same node id compute the same numbers.
    """

    _MAX_LEAVES = 32  # leaf buffers whose digest is remembered (held alive so ids stay valid)

    def __init__(self, token: str, max_bytes: int, min_seconds: float = 0.0):
        self.token, self.max_bytes, self.min_seconds = token, max_bytes, min_seconds
        self._computed: set[int] = set()
        self._out: OrderedDict[int, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._nodes: dict[tuple, int] = {}
        self._by_id: dict[int, tuple[weakref.ref, int]] = {}
        self._leaves: dict[tuple, tuple[np.ndarray, int]] = {}
        self._fitness: dict[int, float] = {}
        self.stats = {"op_hits": 0, "op_misses": 0, "fitness_hits": 0, "fitness_misses": 0,
                      "leaf_hashes": 0, "evictions": 0}

    def _intern(self, key: tuple) -> int:
        nid = self._nodes.get(key)
        if nid is None:
            nid = self._nodes[key] = len(self._nodes)
        return nid

    def node_of(self, a: np.ndarray) -> int:
        """Node id of an input: a cached output by identity, else a leaf by content digest."""
        entry = self._by_id.get(id(a))
        if entry is not None and entry[0]() is a:
            return entry[1]
        a = np.asarray(a)
        lk = (a.__array_interface__["data"][0], a.shape, a.strides, a.dtype.str)
        leaf = self._leaves.get(lk)
        if leaf is not None:
            return leaf[1]
        c = np.ascontiguousarray(a)
        digest = hashlib.blake2b(c.view(np.uint8), digest_size=16).digest()
        self.stats["leaf_hashes"] += 1
        nid = self._intern(("leaf", a.dtype.str, a.shape, digest))
        if a.base is not None:  # a view (an X column): remember its buffer, held alive
            if len(self._leaves) >= self._MAX_LEAVES:
                self._leaves.clear()
            self._leaves[lk] = (a, nid)
        return nid

    def call_node(self, name: str, args: tuple[np.ndarray, ...]) -> int:
        return self._intern((name,) + tuple(self.node_of(a) for a in args))

    def get(self, nid: int) -> np.ndarray | None:
        out = self._out.get(nid)
        if out is None:
            self.stats["op_misses"] += 1
            return None
        self._out.move_to_end(nid)
        self.stats["op_hits"] += 1
        return out

    def put(self, nid: int, out: np.ndarray, seconds: float) -> np.ndarray:
        """Register ``out`` (read-only) as node ``nid``; keep it if worth it; return it.

        Keeping an output costs fresh memory (page faults: about 5-9 ms per 6 MB panel on the
        dev VM), so an output is kept only when it took at least ``min_seconds`` to compute or
        when this node is computed for the second time (it recurs); LRU eviction by bytes.
        """
        out.flags.writeable = False
        i = id(out)
        self._by_id[i] = (weakref.ref(out, lambda ref, i=i: self._forget(i, ref)), nid)
        keep = seconds >= self.min_seconds or nid in self._computed
        self._computed.add(nid)
        if keep and out.nbytes <= self.max_bytes:
            self._out[nid] = out
            self._bytes += out.nbytes
            while self._bytes > self.max_bytes:
                _, old = self._out.popitem(last=False)
                self._bytes -= old.nbytes
                self.stats["evictions"] += 1
        return out

    def _forget(self, i: int, ref: weakref.ref) -> None:
        entry = self._by_id.get(i)
        if entry is not None and entry[0] is ref:
            del self._by_id[i]

    def fitness(self, y_pred: np.ndarray, compute: Callable[[], float]) -> float:
        nid = self.node_of(y_pred)
        fit = self._fitness.get(nid)
        if fit is None:
            self.stats["fitness_misses"] += 1
            fit = self._fitness[nid] = compute()
        else:
            self.stats["fitness_hits"] += 1
        return fit


_ACTIVE: list[_OpCache] = []  # this process's cache (at most one run's)


def _cache_for(token: str | None, max_bytes: int, min_seconds: float = 0.0
               ) -> _OpCache | None:
    """The memo of run ``token`` in this process (created on first use); None if disabled."""
    if token is None or max_bytes <= 0:
        return None
    if _ACTIVE and _ACTIVE[0].token == token:
        return _ACTIVE[0]
    _ACTIVE[:] = [_OpCache(token, max_bytes, min_seconds)]
    return _ACTIVE[0]


def _release_cache(token: str) -> dict[str, int]:
    """Drop this process's memo of run ``token``; return its counters."""
    if _ACTIVE and _ACTIVE[0].token == token:
        stats = dict(_ACTIVE[0].stats)
        _ACTIVE.clear()
        return stats
    return {}


class _PanelFunction:
    """Picklable callable applying one registry operator to date-major flattened panels."""

    def __init__(self, op: Operator, window: int | None, shape: tuple[int, int],
                 mask: np.ndarray | None, protect_log: bool = False, name: str = "",
                 cache_token: str | None = None, cache_bytes: int = 0,
                 cache_min_seconds: float = 0.0):
        self.op, self.window, self.shape, self.mask = op, window, shape, mask
        self.protect_log = protect_log
        self.name = name or op.name
        self.cache_token, self.cache_bytes = cache_token, cache_bytes
        self.cache_min_seconds = cache_min_seconds

    def __call__(self, *args: np.ndarray) -> np.ndarray:
        T, N = self.shape
        n = args[0].shape[0]
        if n != T * N:  # gplearn's own sanity calls with short vectors
            return self._compute(args, n, 1)
        cache = _cache_for(self.cache_token, self.cache_bytes, self.cache_min_seconds)
        if cache is None:
            return self._compute(args, T, N)
        nid = cache.call_node(self.name, args)
        out = cache.get(nid)
        if out is None:
            t0 = time.perf_counter()
            out = self._compute(args, T, N)
            out = cache.put(nid, out, time.perf_counter() - t0)
        return out

    def _compute(self, args: tuple[np.ndarray, ...], T: int, N: int) -> np.ndarray:
        panels = [np.ascontiguousarray(a, dtype=np.float64).reshape(T, N) for a in args]
        op = self.op
        if self.protect_log:
            panels = [np.abs(panels[0])]
        mask = self.mask if (self.mask is not None and self.mask.shape == (T, N)) else None
        windows = () if self.window is None else (self.window,)
        return op.apply(panels, windows, mask=mask).reshape(-1)


def build_function_set(shape: tuple[int, int], mask: np.ndarray | None = None,
                       cache_token: str | None = None, cache_bytes: int = 0,
                       cache_min_seconds: float = 0.0,
                       ) -> tuple[list[_Function], dict[str, tuple[str, int | None]]]:
    """Generate the gplearn function set from the operator registry.

    Parameters
    ----------
    shape : (T, N)
        Panel shape the flattened gplearn vectors are reshaped to.
    mask : ndarray of bool, shape (T, N), optional
        Universe mask handed to ``cs_*`` operators.
    cache_token, cache_bytes, cache_min_seconds : str, int and float, optional
        Memoise outputs (read-only arrays) in this process's cache of run ``cache_token``, at
        most ``cache_bytes`` bytes, keeping an output seen once only if it took at least
        ``cache_min_seconds``; no memo when the token is None or the size 0 (default).

    Returns
    -------
    functions : list of gplearn ``_Function``
    names : dict
        gplearn function name -> (registry operator name, window or None). The name ``log``
        maps to the protected ``log(abs(x))``.
    """
    functions: list[_Function] = []
    names: dict[str, tuple[str, int | None]] = {}
    for op in all_ops():
        if not op.gp:
            continue
        if op.kind == "ts":
            for w in op.gp_windows:
                name = f"{op.name}_{w}"
                fn = _PanelFunction(op, w, shape, None, name=name, cache_token=cache_token,
                                    cache_bytes=cache_bytes, cache_min_seconds=cache_min_seconds)
                functions.append(_Function(fn, name, op.n_inputs))
                names[name] = (op.name, w)
        else:
            fn = _PanelFunction(op, None, shape, mask, protect_log=(op.name == "log"),
                                name=op.name, cache_token=cache_token, cache_bytes=cache_bytes,
                                cache_min_seconds=cache_min_seconds)
            functions.append(_Function(fn, op.name, op.n_inputs))
            names[op.name] = (op.name, None)
    return functions, names


def program_to_expr(program: list, names: dict[str, tuple[str, int | None]],
                    feature_names: tuple[str, ...]) -> Expr:
    """Convert a gplearn program (prefix list of functions, feature indices, constants) to Expr.

    Raises
    ------
    ValueError
        If the program is malformed or uses an unknown function.
    """
    it: Iterator = iter(program)

    def build() -> Expr:
        node = next(it)
        if isinstance(node, _Function):
            op_name, window = names[node.name]
            args = tuple(build() for _ in range(node.arity))
            if op_name == "log":
                return Call("log", (Call("abs", args),))
            return Call(op_name, args, (window,) if window is not None else ())
        if isinstance(node, (int, np.integer)):
            return Field(feature_names[int(node)])
        return Const(float(node))

    expr = build()
    if next(it, None) is not None:
        raise ValueError("gplearn program has trailing nodes")
    return expr


class _AllowNaN:
    """Let gplearn accept NaN in X/y: NaN is the workbench's missing-data marker.

    gplearn 0.4.3 validates X with scikit-learn's ``validate_data`` (finite values only); the
    operators here are NaN-aware and the fitness ignores NaN, so validation is relaxed while a
    GP fit runs (restored afterwards, even on error).
    """

    def __enter__(self):
        self._orig = _gp_genetic.validate_data

        def validate(*args, **kwargs):
            kwargs["ensure_all_finite"] = False
            return self._orig(*args, **kwargs)

        _gp_genetic.validate_data = validate
        return self

    def __exit__(self, *exc):
        _gp_genetic.validate_data = self._orig
        return False


class _ProgramMemo:
    """Score each distinct program once: duplicates in a population reuse the stored fitness.

    Patches gplearn's ``_Program.raw_fitness`` in this process while a fit runs (restored
    afterwards, even on error); only calls on the run's own ``X`` buffer are memoised, keyed by
    the program's prefix list (function names, feature indices, constants). The fitness is a
    deterministic function of the program, so the scores are unchanged. Worker processes
    (``n_jobs > 1``) are not patched and rely on the per-process operator/fitness memo.
    """

    def __init__(self, X: np.ndarray, stats: dict[str, int]):
        self._ptr, self._shape = X.__array_interface__["data"][0], X.shape
        self._fit: dict[tuple, float] = {}
        self.stats = stats
        stats.setdefault("program_hits", 0)
        stats.setdefault("program_misses", 0)

    def __enter__(self):
        self._orig = orig = _gp_program._Program.raw_fitness
        memo = self

        def raw_fitness(program, X, y, sample_weight):
            if X.shape != memo._shape or X.__array_interface__["data"][0] != memo._ptr:
                return orig(program, X, y, sample_weight)
            key = tuple(n.name if isinstance(n, _Function) else n for n in program.program)
            fit = memo._fit.get(key)
            if fit is None:
                fit = memo._fit[key] = orig(program, X, y, sample_weight)
                memo.stats["program_misses"] += 1
            else:
                memo.stats["program_hits"] += 1
            return fit

        _gp_program._Program.raw_fitness = raw_fitness
        return self

    def __exit__(self, *exc):
        _gp_program._Program.raw_fitness = self._orig
        return False


class _RankICFitness:
    """|mean daily RankIC| x coverage of a flattened prediction on the ``split`` rows of ``ctx``.

    Coverage (share of eligible name-days with a finite value) multiplies the IC so that a
    program cannot score by turning most names into NaN (``sqrt`` of a signed quantity, say) and
    ranking a self-selected subset.
    """

    def __init__(self, ctx: EvalContext, split: str, cache_token: str | None = None,
                 cache_bytes: int = 0, cache_min_seconds: float = 0.0):
        self.ctx, self.split = ctx, split
        self.cache_token, self.cache_bytes = cache_token, cache_bytes
        self.cache_min_seconds = cache_min_seconds
        lo, hi = ctx.split_bounds(split)
        self._rows = slice(lo, hi)
        self._eligible = ctx.eligible[lo:hi]
        self._n_eligible = max(int(self._eligible.sum()), 1)

    def coverage(self, panel: np.ndarray) -> float:
        vals = panel[self._rows]
        return float(np.count_nonzero(np.isfinite(vals) & self._eligible)) / self._n_eligible

    def __call__(self, y: np.ndarray, y_pred: np.ndarray, w: np.ndarray) -> float:
        T, N = len(self.ctx.dates), len(self.ctx.codes)
        if y_pred.shape[0] != T * N:
            return 0.0
        cache = _cache_for(self.cache_token, self.cache_bytes, self.cache_min_seconds)
        if cache is None:
            return self._score(y_pred, T, N)
        return cache.fitness(y_pred, lambda: self._score(y_pred, T, N))

    def _score(self, y_pred: np.ndarray, T: int, N: int) -> float:
        panel = y_pred.reshape(T, N)
        ic = mean_rank_ic(panel, self.ctx, split=self.split)
        if not np.isfinite(ic):
            return 0.0
        return float(abs(ic)) * self.coverage(panel)


def run_gp(panels: dict[str, np.ndarray], ctx: EvalContext, settings: GPSettings,
           split: str = "train",
           on_generation: Callable[[GPGeneration], None] | None = None) -> GPResult:
    """Search factor formulas by genetic programming, fitness = |mean train RankIC| x coverage.

    Parameters
    ----------
    panels : dict of str -> ndarray (T, N)
        The fields GP may use (terminals), aligned with ``ctx.dates`` / ``ctx.codes``. Only rows
        of ``ctx`` are given to gplearn; pass a context that ends with the train split so no
        later data is ever seen.
    ctx : EvalContext
        Dates, codes, eligibility and forward returns; fitness uses ``ctx.split_rows[split]``.
    settings : GPSettings
    split : str
        Split whose mean RankIC is the fitness (default ``"train"``).
    on_generation : callable, optional
        Called after every generation with its :class:`GPGeneration` summary (progress bars).

    Returns
    -------
    GPResult
        Every distinct program of every generation as an ``Expr`` with its fitness, best first.
        Same data and seed give the same result.
    """
    t0 = time.perf_counter()
    feature_names = tuple(panels)
    T, N = len(ctx.dates), len(ctx.codes)
    X = np.empty((T * N, len(feature_names)), dtype=np.float64, order="F")
    for k, name in enumerate(feature_names):
        arr = np.asarray(panels[name], dtype=np.float64)
        if arr.shape != (T, N):
            raise ValueError(f"panel {name!r} has shape {arr.shape}, expected {(T, N)}")
        X[:, k] = arr.reshape(-1)
    y = np.zeros(T * N)  # the target lives in ctx; gplearn only needs a vector of the right size
    token = uuid.uuid4().hex if settings.cache_mb > 0 else None  # identity only, not results
    cache_bytes = int(settings.cache_mb * 2**20)
    functions, names = build_function_set((T, N), ctx.universe_mask, token, cache_bytes,
                                          settings.cache_min_ms / 1000.0)
    fitness = _RankICFitness(ctx, split, token, cache_bytes, settings.cache_min_ms / 1000.0)

    def rank_ic_fitness(y, y_pred, w):  # gplearn inspects the argument count of a function
        return fitness(y, y_pred, w)

    metric = make_fitness(function=rank_ic_fitness, greater_is_better=True, wrap=False)
    est = SymbolicRegressor(
        population_size=settings.population, generations=0, tournament_size=min(
            settings.tournament_size, settings.population),
        stopping_criteria=np.inf, const_range=None, init_depth=(2, settings.max_depth),
        init_method="half and half", function_set=functions, metric=metric,
        parsimony_coefficient=settings.parsimony, p_crossover=settings.p_crossover,
        p_subtree_mutation=settings.p_subtree_mutation,
        p_hoist_mutation=settings.p_hoist_mutation, p_point_mutation=settings.p_point_mutation,
        max_samples=1.0, feature_names=list(feature_names), warm_start=True,
        n_jobs=settings.n_jobs, verbose=0, random_state=settings.seed)

    generations: list[GPGeneration] = []
    seen: dict[Expr, float] = {}
    program_stats: dict[str, int] = {}
    try:
        if token is None:
            _run_generations(est, X, y, settings, names, feature_names, generations, seen,
                             on_generation)
        else:
            with _ProgramMemo(X, program_stats):
                _run_generations(est, X, y, settings, names, feature_names, generations, seen,
                                 on_generation)
    finally:
        cache_stats = _release_cache(token) if token is not None else {}
        cache_stats.update(program_stats)
    n_scored = sum(gen.n_programs for gen in generations)
    candidates = sorted(seen.items(), key=lambda kv: (-kv[1], str(kv[0])))
    return GPResult(candidates=candidates, generations=generations, n_programs_scored=n_scored,
                    seconds=time.perf_counter() - t0, fields=feature_names, cache=cache_stats)


def _run_generations(est, X, y, settings, names, feature_names, generations, seen,
                     on_generation) -> None:
    with _AllowNaN():
        for g in range(settings.generations):
            tg = time.perf_counter()
            est.set_params(generations=g + 1)
            est.fit(X, y)
            pop = est._programs[-1]
            # gplearn prunes non-ancestors of older generations: collect this one now.
            for p in pop:
                expr = program_to_expr(p.program, names, feature_names)
                fit = float(p.raw_fitness_)
                if expr not in seen or fit > seen[expr]:
                    seen[expr] = fit
            fits = np.array([p.raw_fitness_ for p in pop], dtype=float)
            best = pop[int(np.argmax(fits))]
            summary = GPGeneration(
                generation=g + 1, best=float(np.max(fits)), median=float(np.median(fits)),
                best_formula=str(program_to_expr(best.program, names, feature_names)),
                seconds=time.perf_counter() - tg, n_programs=len(pop))
            generations.append(summary)
            if on_generation is not None:
                on_generation(summary)
