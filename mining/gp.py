"""Genetic-programming factor search with gplearn (the only module that imports gplearn).

``[gp] engine = "gplearn"`` selects this engine; the default, ``"alphamine"``, is our own
(:mod:`mining.gp_engine`). Both read :class:`GPSettings` and return a :class:`GPResult`.

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

How gplearn is driven (public API only, no patching, no process-global state):

* functions come from ``gplearn.functions.make_function(..., wrap=False)``; it probes each with
  vectors of length 10 (ones, zeros, -1) and requires finite output of that shape. While
  ``make_function`` runs, the function is in probe mode: the operator is applied to the vector
  as a one-stock panel and non-finite values are answered as 0 (the operators give NaN for
  ``x / 0``, ``log 0`` or a window longer than the data, by design); afterwards it computes
  normally and a vector of a length other than ``T * N`` is an error. Each function is a
  plain closure of the right arity (make_function reads ``__code__.co_argcount``); with
  ``n_jobs > 1`` joblib's loky backend pickles it with cloudpickle;
* the fitness is ``gplearn.fitness.make_fitness(..., wrap=False)``;
* NaN in X is accepted through scikit-learn's public ``config_context(assume_finite=True)``
  around each ``fit``: gplearn validates X and y with ``sklearn.utils.validation.validate_data``,
  whose finiteness check (``_assert_all_finite``) returns early under that setting (checked in
  scikit-learn 1.9.1 / gplearn 0.4.3); the setting is thread-local and restored on exit;
* generations are run one ``fit`` at a time with ``warm_start=True`` (public parameters);
* the one private attribute read is ``est._programs[-1]``, the population of the generation
  just fitted: gplearn has no public accessor for the population (``run_details_`` holds only
  summaries) and its own examples read ``_programs``. It is only read, never written.

Memoisation (:mod:`mining.gp_memo`, ``GPSettings.cache_mb > 0``): a population shares many
subtrees (``ts_mad(turnover, 20)`` ...) and holds duplicate programs. With the memo on, the
functions return deferred calls (:class:`~mining.gp_memo.Deferred`, array-like through
``__array__``) and the metric evaluates the program's call tree through the run's own
:class:`~mining.gp_memo.GPMemo`, keyed by structure: a duplicate program gets its stored fitness
without computing anything, shared subtrees are computed once while they stay in the memo. This
relies on gplearn's ``_Program.execute`` handing intermediate results on untouched to the next
function and the root to the metric (0.4.3; tested end to end by the identity tests), not on
changing anything in gplearn. The memo is created by :func:`run_gp`, referenced by the fitness
object only (the functions hold none), and emptied when the run ends; two runs never share one.
With ``n_jobs > 1`` each worker task gets an empty memo of its own (pickling drops the contents)
and ``GPResult.cache`` counts the parent process only. Results are identical with and without
the memo (tested).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterator

import numpy as np

# gplearn (with scikit-learn and scipy, ~2.4 s) is imported here only, and only inside the
# functions that run it: the alphamine engine and its cluster workers never load it.
from backtest.context import EvalContext
from backtest.evaluate import mean_rank_ic
from factors.expr_tree import Call, Const, Expr, FactorRef, Field
from factors.operators import all_ops
from factors.parallel import LOCAL_KINDS
from factors.registry import Operator
from mining.gp_diversity import DIVERSITY_MODES
from mining.gp_memo import Deferred, GPMemo
from mining.gp_seeds import SEED_SOURCES

#: Values of ``[gp] engine``: the project's engine (:mod:`mining.gp_engine`) or gplearn.
ENGINES = ("alphamine", "gplearn")
#: Values of ``[gp] selection`` (the alphamine engine).
SELECTIONS = ("tournament", "nsga2")

__all__ = ["ENGINES", "SELECTIONS", "GPSettings", "GPGeneration", "GPResult",
           "build_function_set", "program_to_expr", "terminal", "run_gp"]


@dataclass(frozen=True)
class GPSettings:
    """``[gp]`` in ``mine.toml``: the data window, the search and the admission budget.

    The defaults are the shipped ``mine.toml``'s (the one place they are defined).
    """

    #: Accepted values of the numeric keys (checked by the config loader).
    RANGES: ClassVar[dict] = {
        "population": (1, None), "generations": (1, None), "tournament_size": (1, None),
        "parsimony": (0, None), "max_depth": (1, None), "top": (1, None),
        "p_crossover": (0, 1), "p_subtree_mutation": (0, 1), "p_hoist_mutation": (0, 1),
        "p_point_mutation": (0, 1), "cache_mb": (0, None), "cache_min_ms": (0, None),
        "seed": (0, 2**32 - 1), "elite": (0, None), "p_window_mutation": (0, 1),
        "p_constant_mutation": (0, 1), "pool": (0, None), "diversity_sample": (1, None),
        "hof": (0, None), "n_jobs": (-1, None)}
    #: Accepted values of the choice keys (checked in ``__post_init__``).
    CHOICES: ClassVar[dict] = {"engine": ENGINES, "selection": SELECTIONS,
                               "seed_from": SEED_SOURCES, "diversity": DIVERSITY_MODES,
                               "executor": LOCAL_KINDS}

    universe: str = "csi300"
    start: str = "2010-01-01"           # GP data window start (fitness uses the train split only)
    end: str = ""                       # "": end of valid (the test split is sealed)
    population: int = 800
    generations: int = 8
    tournament_size: int = 10
    parsimony: float = 0.0002
    max_depth: int = 4
    seed: int = 42
    n_jobs: int = 0          # workers scoring programs; 0 or -1 = every core
    executor: str = "auto"   # alphamine engine: auto | serial | threads | processes
    top: int = 20                       # at most this many factors added per run
    fields: tuple[str, ...] = ("open", "high", "low", "close", "vwap", "vol", "amount",
                               "turnover", "ret", "total_mv")
    p_crossover: float = 0.7
    p_subtree_mutation: float = 0.1
    p_hoist_mutation: float = 0.05
    p_point_mutation: float = 0.1
    cache_mb: float = 1536.0  # operator-output memo per process (MiB); 0 disables it
    cache_min_ms: float = 20.0  # keep an output computed once only if it took this long
    engine: str = "alphamine"           # alphamine (mining.gp_engine) | gplearn (this module)
    selection: str = "tournament"       # alphamine engine: tournament | nsga2
    elite: int = 10                     # alphamine engine: best programs kept unchanged
    p_window_mutation: float = 0.03     # alphamine engine: ts_* window -> a neighbouring one
    p_constant_mutation: float = 0.02   # alphamine engine: gaussian step on a constant
    const_range: tuple[float, ...] = (-1.0, 1.0)  # ephemeral constants; () disables them
    pool: int = 0   # best leaderboard members (valid ICIR) added as terminals factor("name")
    seed_from: str = "leaderboard"  # warm start: leaderboard | library | both | none
    diversity: str = "max_corr"  # penalty vs pool + hall of fame: max_corr | marginal | none
    diversity_sample: int = 60  # train dates sampled for the diversity measure
    hof: int = 20               # hall-of-fame size of the diversity hook

    def __post_init__(self) -> None:
        """``n_jobs`` is a worker count, 0 or -1 meaning all cores (``RANGES``);
        the choice keys one of :attr:`CHOICES`; the variation
        probabilities sum to at most 1 (the rest is reproduction); ``const_range`` is ``()``
        or ``(lo, hi)`` with finite ``lo <= hi``. ValueError otherwise (the config loader
        names the section)."""
        for key, allowed in self.CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, key)!r}")
        total = (self.p_crossover + self.p_subtree_mutation + self.p_hoist_mutation
                 + self.p_point_mutation + self.p_window_mutation + self.p_constant_mutation)
        if total > 1 + 1e-9:
            raise ValueError(f"p_crossover + p_subtree_mutation + p_hoist_mutation + "
                             f"p_point_mutation + p_window_mutation + p_constant_mutation "
                             f"must be <= 1, got {total:.4g}")
        cr = self.const_range
        if len(cr) not in (0, 2) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
                for v in cr) or (len(cr) == 2 and cr[0] > cr[1]):
            raise ValueError(f"const_range must be [] or [lo, hi] with finite lo <= hi, got "
                             f"{list(cr)}")


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
    # alphamine engine only (mining.gp_engine): every distinct Program (as evolved, signed
    # RankIC), best first; candidate formula -> its parents' formulas; seeds used / skipped.
    programs: list = field(default_factory=list)
    parents: dict[str, tuple[str, ...]] = field(default_factory=dict)
    seeds_used: int = 0
    seeds_skipped: int = 0
    engine: str = "gplearn"
    # alphamine engine, hook in-process: candidate -> its Diversity.sample_ranks (the fittest)
    sample_ranks: dict = field(default_factory=dict)


class _PanelFunction:
    """Picklable callable applying one registry operator to date-major flattened panels."""

    def __init__(self, op: Operator, window: int | None, shape: tuple[int, int],
                 mask: np.ndarray | None, protect_log: bool = False, name: str = "",
                 defer: bool = False):
        self.op, self.window, self.shape, self.mask = op, window, shape, mask
        self.protect_log = protect_log
        self.name = name or op.name
        self.defer = defer
        self.probing = False  # True while make_function probes it (see build_function_set)

    def __call__(self, *args: np.ndarray) -> np.ndarray | Deferred:
        T, N = self.shape
        n = args[0].shape[0]
        if self.probing:  # make_function's probe: finite output of the same shape
            with np.errstate(all="ignore"):
                return np.nan_to_num(self._compute(args, n, 1), nan=0.0, posinf=0.0,
                                     neginf=0.0)
        if self.defer:  # evaluated by the run's memo in the fitness (mining.gp_memo)
            return Deferred(self, args, n)
        return self._compute(args, T, N)

    def evaluate(self, args: tuple[np.ndarray, ...]) -> np.ndarray:
        """The operator on full flattened panels (used by :class:`~mining.gp_memo.GPMemo`)."""
        T, N = self.shape
        return self._compute(args, T, N)

    def _compute(self, args: tuple[np.ndarray, ...], T: int, N: int) -> np.ndarray:
        panels = [np.ascontiguousarray(a, dtype=np.float64).reshape(T, N) for a in args]
        op = self.op
        if self.protect_log:
            panels = [np.abs(panels[0])]
        mask = self.mask if (self.mask is not None and self.mask.shape == (T, N)) else None
        windows = () if self.window is None else (self.window,)
        return op.apply(panels, windows, mask=mask).reshape(-1)


def _as_function(fn: _PanelFunction, arity: int) -> Callable[..., np.ndarray]:
    """A plain function of exactly ``arity`` arguments calling ``fn`` (make_function checks
    ``__code__.co_argcount``)."""
    if arity == 1:
        def f1(x1):
            return fn(x1)
        return f1
    if arity == 2:
        def f2(x1, x2):
            return fn(x1, x2)
        return f2
    if arity == 3:
        def f3(x1, x2, x3):
            return fn(x1, x2, x3)
        return f3
    raise ValueError(f"no GP function of arity {arity} ({fn.name})")


def build_function_set(shape: tuple[int, int], mask: np.ndarray | None = None,
                       defer: bool = False) -> tuple[list, dict[str, tuple[str, int | None]]]:
    """Generate the gplearn function set from the operator registry.

    Parameters
    ----------
    shape : (T, N)
        Panel shape the flattened gplearn vectors are reshaped to.
    mask : ndarray of bool, shape (T, N), optional
        Universe mask handed to ``cs_*`` operators.
    defer : bool
        Called on full panels, return a :class:`~mining.gp_memo.Deferred` call instead of
        computing (for evaluation through a :class:`~mining.gp_memo.GPMemo`); default False:
        return the output array.

    Returns
    -------
    functions : list of gplearn function objects (from ``make_function``)
    names : dict
        gplearn function name -> (registry operator name, window or None). The name ``log``
        maps to the protected ``log(abs(x))``.
    """
    functions: list = []
    names: dict[str, tuple[str, int | None]] = {}
    for op in all_ops():
        if not op.gp:
            continue
        if op.kind == "ts":
            for w in op.gp_windows:
                name = f"{op.name}_{w}"
                fn = _PanelFunction(op, w, shape, None, name=name, defer=defer)
                functions.append(_make_function(fn, op.n_inputs))
                names[name] = (op.name, w)
        else:
            fn = _PanelFunction(op, None, shape, mask, protect_log=(op.name == "log"),
                                name=op.name, defer=defer)
            functions.append(_make_function(fn, op.n_inputs))
            names[op.name] = (op.name, None)
    return functions, names


def _make_function(fn: _PanelFunction, arity: int):
    """gplearn's ``make_function`` for ``fn``, answering its probe calls in probe mode."""
    from gplearn.functions import make_function
    fn.probing = True
    try:
        return make_function(function=_as_function(fn, arity), name=fn.name, arity=arity,
                             wrap=False)
    finally:
        fn.probing = False


def terminal(name: str) -> Expr:
    """The leaf of a GP terminal name: a field, or ``factor("<name>")`` (a pool member)."""
    if name.startswith('factor("') and name.endswith('")'):
        return FactorRef(name[8:-2])
    return Field(name)


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
        if isinstance(node, (int, np.integer)):
            return terminal(feature_names[int(node)])
        if isinstance(node, (float, np.floating)):
            return Const(float(node))
        op_name, window = names[node.name]  # a function node (name, arity)
        args = tuple(build() for _ in range(node.arity))
        if op_name == "log":
            return Call("log", (Call("abs", args),))
        return Call(op_name, args, (window,) if window is not None else ())

    expr = build()
    if next(it, None) is not None:
        raise ValueError("gplearn program has trailing nodes")
    return expr


class _RankICFitness:
    """|mean daily RankIC| x coverage of a flattened prediction on the ``split`` rows of ``ctx``.

    Coverage (share of eligible name-days with a finite value) multiplies the IC so that a
    program cannot score by turning most names into NaN (``sqrt`` of a signed quantity, say) and
    ranking a self-selected subset.
    """

    def __init__(self, ctx: EvalContext, split: str, memo: GPMemo | None = None):
        self.ctx, self.split, self.memo = ctx, split, memo
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
        if self.memo is None:  # the functions computed: y_pred is an array
            return self._score(y_pred, T, N)
        return self.memo.fitness(y_pred, lambda values: self._score(values, T, N))

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
    from gplearn.fitness import make_fitness
    from gplearn.genetic import SymbolicRegressor

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
    memo = (GPMemo(int(settings.cache_mb * 2**20), settings.cache_min_ms / 1000.0)
            if settings.cache_mb > 0 else None)  # this run's own; emptied when it ends
    functions, names = build_function_set((T, N), ctx.universe_mask, defer=memo is not None)
    fitness = _RankICFitness(ctx, split, memo)

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
        n_jobs=settings.n_jobs or -1, verbose=0, random_state=settings.seed)

    generations: list[GPGeneration] = []
    seen: dict[Expr, float] = {}
    try:
        _run_generations(est, X, y, settings, names, feature_names, generations, seen,
                         on_generation)
    finally:
        cache_stats = dict(memo.stats) if memo is not None else {}
        if memo is not None:
            memo.clear()
    n_scored = sum(gen.n_programs for gen in generations)
    candidates = sorted(seen.items(), key=lambda kv: (-kv[1], str(kv[0])))
    return GPResult(candidates=candidates, generations=generations, n_programs_scored=n_scored,
                    seconds=time.perf_counter() - t0, fields=feature_names, cache=cache_stats)


def _run_generations(est, X, y, settings, names, feature_names, generations, seen,
                     on_generation) -> None:
    from sklearn import config_context
    for g in range(settings.generations):
        tg = time.perf_counter()
        est.set_params(generations=g + 1)
        with config_context(assume_finite=True):  # NaN is our missing-data marker
            est.fit(X, y)
        pop = est._programs[-1]  # read only: no public accessor for the population
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
