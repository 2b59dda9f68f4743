"""The search step of ``mine gp``: engine choice, warm start, diversity hook, lineage.

:func:`search` runs the engine of ``[gp] engine`` on the train rows: ``"alphamine"`` is
:func:`mining.gp_engine.evolve` with the seeds of :func:`mining.gp_seeds.seed_formulas`
(``[gp] seed_from``) and a :class:`mining.gp_diversity.Diversity` hook (``[gp] diversity``,
``diversity_sample``, ``hof``) whose pool is the leaderboard's members of the universe and
horizon, evaluated on the workspace; ``"gplearn"`` is :func:`mining.gp.run_gp` (no seeds, no
hook). Terminals are the given panels: fields and, with ``[gp] pool``, leaderboard members
as ``factor("name")`` leaves (:func:`mining.gp.terminal`). The :class:`~mining.gp_diversity.Diversity` object is
returned either way (``None`` with ``diversity = "none"``): :func:`mining.gp_run.mine_gp`
uses it for the diverse selection walk.
"""
from __future__ import annotations

import itertools
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from data.errors import AlphamineError
from factors.expr_parse import parse
from factors.expr_tree import Call
from factors.cluster import executor_for
from factors.parallel import make_executor
from factors.store import FactorStore
from mining.gp import GPSettings, run_gp, terminal
from mining.gp_diversity import Diversity
from mining.gp_engine import evolve
from mining.gp_seeds import SeedList, seed_formulas
from mining.pool_gaps import pool_terminals

__all__ = ["SearchOutcome", "build_diversity", "parents_by_formula", "search", "train_inputs",
           "warm_up"]


@dataclass
class SearchOutcome:
    """The engine's result and what the search was given."""

    result: Any                          # mining.gp.GPResult or the engine's GPResult
    engine_used: str                     # "alphamine" or "gplearn"
    diversity: Diversity | None
    seeds: SeedList = field(default_factory=SeedList)
    n_pool: int = 0                      # members in the diversity pool
    parents: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def lineage(self, expr) -> dict:
        """``{"parents": [formula, ...]}`` for a program whose parents are known, else ``{}``."""
        parents = self.parents.get(str(expr))
        return {"parents": list(parents)} if parents else {}

    def summary(self, diversity: str) -> dict:
        """What the run summary records of the search."""
        return {"engine": self.engine_used, "n_seeds": len(self.seeds),
                "seeds_skipped": dict(self.seeds.skipped), "n_pool": self.n_pool,
                "diversity": diversity}


def train_inputs(ws, train_end, fields, pool: int = 0
                 ) -> tuple[Any, dict[str, np.ndarray]]:
    """What the GP searches on: the workspace's rows up to ``train_end`` and its names in the
    universe on at least one of them (``(gp_ctx, panels)``).

    The other names (members only after train, e.g. a CSI300 constituent added in 2020) are
    never eligible on those rows and are NaN in every ``cs_*`` output there, so no fitness,
    turnover or diversity measure reads them: dropping their columns changes no score, bit
    for bit, and spares every operator and the scorer their share of the work (CSI300
    2010-2018 with the valid split's names: 686 -> 580 columns; the whole market: 4,428 ->
    3,349, the search 450 -> 290 s, docs/bench.md "sixth stop").

    Parameters
    ----------
    ws : Workspace
    train_end : str or Timestamp
        Last train date (``[evaluate] train[1]``).
    fields : sequence of str
        Terminal fields (``[gp] fields``).
    pool : int
        ``[gp] pool``: the best members added as ``factor("name")`` terminals
        (:func:`mining.pool_gaps.pool_terminals`).

    Returns
    -------
    gp_ctx : EvalContext
        ``(T_train, N_train)``.
    panels : dict of str -> ndarray (T_train, N_train)
    """
    gp_ctx = ws.ctx.restrict(ws.ctx.dates[0], train_end)
    n = len(gp_ctx.dates)
    cols = gp_ctx.in_universe()
    sub = gp_ctx.select_names(cols)
    full = sub is gp_ctx                           # every name stays: views, no copy
    gp_ctx = sub
    panels = {f: ws.field(f)[:n] if full else ws.field(f)[:n, cols] for f in fields}
    if pool and n:
        terms = pool_terminals(ws, pool, n)
        panels.update(terms if full else {k: v[:, cols] for k, v in terms.items()})
    return gp_ctx, panels


def _names_of(ws, gp_ctx):
    """Column indices of ``gp_ctx``'s names in the workspace (None: the same names)."""
    if len(gp_ctx.codes) == len(ws.ctx.codes) and gp_ctx.codes.equals(ws.ctx.codes):
        return None
    return ws.ctx.codes.get_indexer(gp_ctx.codes)


def build_diversity(ws, gp_ctx, store: FactorStore, settings: GPSettings, horizon: int,
                    max_corr: float) -> Diversity | None:
    """The diversity hook of a run: the members of ``ws.universe`` / ``horizon`` evaluated on
    the workspace (a member that fails to evaluate is left out), sampled on the train rows and
    names of ``gp_ctx`` (:func:`train_inputs`); ``None`` when ``settings.diversity ==
    "none"`` or train keeps no row (every fitness is 0 then; the walk sends the candidates as
    they come). ``max_corr`` is the hall of fame's redundancy threshold (the gate's).

    Members are evaluated one at a time, outside the workspace memo: the hook keeps only
    their ranks on ``diversity_sample`` dates, so the peak holds one member's panel, not all
    of them (on the whole market a member is ~77 MB; 31 members held ~3 GB before).
    """
    lo, hi = gp_ctx.split_bounds("train")
    if settings.diversity == "none" or hi <= lo:
        return None
    cols = _names_of(ws, gp_ctx)

    def members():
        for rec in store.members(universe=ws.universe, horizon=horizon):
            try:
                v = ws.values(parse(rec.formula))
            except AlphamineError:
                continue
            yield rec.formula, v if cols is None else v[:, cols]
    return Diversity(gp_ctx, members(), split="train", n_dates=settings.diversity_sample,
                     hof=settings.hof, threshold=max_corr, mode=settings.diversity)


def parents_by_formula(result: Any) -> dict[str, tuple[str, ...]]:
    """Formula text -> parent formula texts, from ``result.programs`` when the engine gives
    them (each with ``.parents`` and its tree as ``.expr`` or text as ``.formula``)."""
    out: dict[str, tuple[str, ...]] = {}
    for p in getattr(result, "programs", None) or ():
        expr = getattr(p, "expr", None)
        text = str(expr) if expr is not None else getattr(p, "formula", None)
        parents = getattr(p, "parents", None)
        if text and parents:
            out.setdefault(str(text), tuple(str(x) for x in parents))
    return out


def search(ws, gp_ctx, panels: dict[str, np.ndarray], settings: GPSettings,
           store: FactorStore, *, horizon: int, max_corr: float,
           on_generation: Callable[[Any], None] | None = None,
           executor: Any = None) -> SearchOutcome:
    """Run the GP of ``settings.engine`` on the train panels (module docstring).

    Parameters
    ----------
    ws : Workspace
        The run's workspace (members of the pool are evaluated on it).
    gp_ctx : EvalContext
        The workspace's context restricted to the end of train (the engine never sees later
        rows) and to the names in the universe then (:func:`train_inputs`).
    panels : dict of str -> ndarray (T_train, N_train)
        The GP's fields on the rows of ``gp_ctx``.
    settings : GPSettings
    store : FactorStore
        The leaderboard (seeds and pool).
    horizon, max_corr : int, float
        ``[evaluate] horizon`` and ``[store] max_corr``.
    on_generation : callable, optional
        Passed to the engine.
    executor : factors.parallel.Executor, optional
        Where the alphamine engine scores each generation (:func:`open_executor`); default
        serial here. Results are the same whichever it is.

    Returns
    -------
    SearchOutcome
    """
    div = build_diversity(ws, gp_ctx, store, settings, horizon, max_corr)
    n_pool = 0 if div is None else len(div.pool_names)
    if settings.engine == "alphamine":
        seeds = seed_formulas(store, ws.universe, horizon, settings.seed_from, settings.fields)
        terminals = {terminal(name): panel for name, panel in panels.items()}
        res = evolve(terminals, gp_ctx, settings, split="train", seeds=list(seeds),
                     diversity=div, on_generation=on_generation, executor=executor)
        return SearchOutcome(res, "alphamine", div, seeds, n_pool, parents_by_formula(res))
    used = "gplearn"
    res = run_gp(panels, gp_ctx, settings, on_generation=on_generation)
    return SearchOutcome(res, used, div, SeedList(), n_pool, parents_by_formula(res))


def open_executor(settings: GPSettings, cluster: Any = None):
    """The executor a ``mine gp`` run scores on, opened before its data loads.

    Parameters
    ----------
    settings : GPSettings
        ``[gp] engine``, ``executor`` and ``n_jobs``.
    cluster : factors.cluster.ClusterConfig, optional
        With an address, a :class:`factors.cluster.RayExecutor` on that cluster (its workers
        start :func:`warm_up` at once, while this process loads the data) instead of
        ``[gp] executor`` / ``n_jobs`` here.

    Returns
    -------
    context manager
        Yielding the executor; ``None`` for the gplearn engine (it runs its own way).

    Raises
    ------
    ConfigError, ClusterError
        As :class:`factors.cluster.RayExecutor`.
    """
    if settings.engine != "alphamine":
        return nullcontext(None)
    if cluster is not None and cluster.address.strip():
        ex = executor_for(cluster)
        ex.warm(warm_up)
        return ex
    return make_executor(settings.executor, settings.n_jobs)


def warm_up() -> None:
    """Load, in this process, what scoring a GP population loads on first use: the modules
    and every GP operator's numba kernels (from numba's on-disk cache; compiled if absent).

    Scores every operator of the function set on leaves and on computed subtrees, with a
    diversity hook, on a tiny synthetic panel (40 days x 12 names) through the same path as
    a run (:func:`evolve`, one generation, serial). A cluster worker runs it while the driver loads its data
    (:meth:`factors.cluster.RayExecutor.warm`): ~1 s instead of seconds of the first
    generation. Deterministic and side-effect free apart from those loads.
    """
    import pandas as pd

    from backtest.context import EvalContext
    from mining.gp_variation import Primitives

    T, N = 40, 12
    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2001-01-01", periods=T)
    px = 10 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0))
    ctx = EvalContext.from_arrays(dates, [f"{600000 + i}.SH" for i in range(N)], px,
                                  np.ones((T, N), bool), np.ones((T, N), bool),
                                  {"train": (str(dates[0].date()), str(dates[-1].date()))},
                                  horizons=(1,), horizon=1, embargo=2)
    panels = {"close": px, "vol": rng.lognormal(10, 1, (T, N))}
    leaves = [terminal(k) for k in panels]
    prims = Primitives(leaves, (), 3)
    # numba specialises on each input's layout and write flag, which differ between a leaf,
    # an elementwise output and a ts_* output: every operator runs on each kind of input (in
    # every combination for two inputs)
    def call(op, args):
        return Call(op.name, args, (int(op.gp_windows[0]),) if op.kind == "ts" else ())
    kinds = [tuple(leaves)]
    for kind in ("elementwise", "ts"):
        op = next(o for o in prims.ops if o.kind == kind and o.n_inputs == 1)
        kinds.append(tuple(call(op, (leaf,)) for leaf in leaves))
    seeds = []
    for op in prims.ops:
        n = op.n_inputs
        combos = itertools.product(range(len(kinds)), repeat=n) if n <= 2 else (
            (k,) * n for k in range(len(kinds)))
        seeds += [call(op, tuple(kinds[k][i % 2] for i, k in enumerate(ks))) for ks in combos]
    seeds = list(dict.fromkeys(seeds))
    settings = GPSettings(population=len(seeds), generations=1, max_depth=3, hof=2,
                          fields=tuple(panels))
    hook = Diversity(ctx, {"close": px}, n_dates=10, hof=2)
    evolve({terminal(k): v for k, v in panels.items()}, ctx, settings, split="train",
           seeds=seeds, diversity=hook)
