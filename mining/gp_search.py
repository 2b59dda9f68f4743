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

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from data.errors import AlphamineError
from factors.expr_parse import parse
from factors.cluster import executor_for
from factors.parallel import make_executor
from factors.store import FactorStore
from mining.gp import GPSettings, run_gp, terminal
from mining.gp_diversity import Diversity
from mining.gp_engine import evolve
from mining.gp_seeds import SeedList, seed_formulas

__all__ = ["SearchOutcome", "build_diversity", "parents_by_formula", "search"]


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


def build_diversity(ws, gp_ctx, store: FactorStore, settings: GPSettings, horizon: int,
                    max_corr: float) -> Diversity | None:
    """The diversity hook of a run: the members of ``ws.universe`` / ``horizon`` evaluated on
    the workspace (a member that fails to evaluate is left out), sampled on the train rows of
    ``gp_ctx``; ``None`` when ``settings.diversity == "none"`` or train keeps no row (every
    fitness is 0 then; the walk sends the candidates as they come). ``max_corr`` is the hall of
    fame's redundancy threshold (the gate's).

    Members are evaluated one at a time, outside the workspace memo: the hook keeps only
    their ranks on ``diversity_sample`` dates, so the peak holds one member's panel, not all
    of them (on the whole market a member is ~77 MB; 31 members held ~3 GB before).
    """
    lo, hi = gp_ctx.split_bounds("train")
    if settings.diversity == "none" or hi <= lo:
        return None

    def members():
        for rec in store.members(universe=ws.universe, horizon=horizon):
            try:
                yield rec.formula, ws.values(parse(rec.formula))
            except AlphamineError:
                continue
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
           cluster: Any = None) -> SearchOutcome:
    """Run the GP of ``settings.engine`` on the train panels (module docstring).

    Parameters
    ----------
    ws : Workspace
        The run's workspace (members of the pool are evaluated on it).
    gp_ctx : EvalContext
        The workspace's context restricted to the end of train (the engine never sees later
        rows).
    panels : dict of str -> ndarray (T_train, N)
        The GP's fields on the rows of ``gp_ctx``.
    settings : GPSettings
    store : FactorStore
        The leaderboard (seeds and pool).
    horizon, max_corr : int, float
        ``[evaluate] horizon`` and ``[store] max_corr``.
    on_generation : callable, optional
        Passed to the engine.
    cluster : factors.cluster.ClusterConfig, optional
        With an address, the alphamine engine scores each generation on that Ray cluster
        (:class:`factors.cluster.RayExecutor`) instead of ``[gp] executor`` / ``n_jobs`` here;
        results are the same either way.

    Returns
    -------
    SearchOutcome
    """
    div = build_diversity(ws, gp_ctx, store, settings, horizon, max_corr)
    n_pool = 0 if div is None else len(div.pool_names)
    if settings.engine == "alphamine":
        seeds = seed_formulas(store, ws.universe, horizon, settings.seed_from, settings.fields)
        terminals = {terminal(name): panel for name, panel in panels.items()}
        remote = cluster is not None and cluster.address.strip()
        with (executor_for(cluster) if remote
              else make_executor(settings.executor, settings.n_jobs)) as ex:
            res = evolve(terminals, gp_ctx, settings, split="train", seeds=list(seeds),
                         diversity=div, on_generation=on_generation, executor=ex)
        return SearchOutcome(res, "alphamine", div, seeds, n_pool, parents_by_formula(res))
    used = "gplearn"
    res = run_gp(panels, gp_ctx, settings, on_generation=on_generation)
    return SearchOutcome(res, used, div, SeedList(), n_pool, parents_by_formula(res))
