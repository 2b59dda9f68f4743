"""Producer runs end to end: ``mine gp`` (:func:`mine_gp`) and ``mine library --add``
(:func:`add_library`). One formula at a time (``mine eval``) is :mod:`mining.formula_run`.

Each function loads the workspace, runs its producer, sends every candidate through the common
evaluator and the gate (:mod:`backtest.candidates`), records the run in the leaderboard store
(``start_run`` / ``finish_run``) and returns a run record (a dataclass). Progress goes through
ONE optional callback ``on_progress(event)`` that receives the small event dataclasses below,
in this order; library code never prints.

``mine_gp``: :class:`GPLoaded`, :class:`~mining.gp.GPGeneration` (one per generation),
:class:`GPScored`, :class:`CandidateDecision` (one per evaluated program), :class:`GPDone`.

``add_library``: :class:`CandidateDecision` (one per library factor), :class:`LibraryDone`.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

from backtest.candidates import evaluate_candidate, make_workspace, submit
from data.config import Config
from data.errors import ConfigError
from data.io import to_jsonable
from data.manifest import RunRecorder
from factors.cluster import cluster_settings
from factors.library_sets import library_set
from factors.parallel import resolve_jobs
from factors.row_threads import row_threads
from factors.store import FactorStore
from factors.store_records import FactorRecord
from factors.expr_eval import evaluate
from mining.gp import GPGeneration, GPSettings
from mining.gp_diversity import diverse_walk
from mining.gp_search import open_executor, search, train_inputs

__all__ = ["GPLoaded", "GPScored", "CandidateDecision", "GPDone", "LibraryDone",
           "GPRunRecord", "LibraryRunRecord", "mine_gp", "add_library", "empty_splits_warning",
           "gp_budget"]

Progress = Optional[Callable[[Any], None]]


# ------------------------------------------------------------------------------- events
@dataclass(frozen=True)
class GPLoaded:
    """The train panels GP searches on are loaded."""

    universe: str
    n_stocks: int
    n_train_days: int
    first_date: str
    last_train_date: str
    fields: tuple[str, ...]
    seconds: float
    n_train_stocks: int = 0           # of them in the universe in train: the GP's columns


@dataclass(frozen=True)
class GPScored:
    """The search is over: every program scored on train."""

    n_programs_scored: int
    n_distinct: int
    seconds: float
    n_computed: int = 0               # distinct expressions computed (alphamine engine; 0: unknown)


@dataclass(frozen=True)
class CandidateDecision:
    """One candidate went through the evaluator and the gate."""

    rank: int                       # position in the producer's order (GP: train fitness)
    name: str
    formula: str                    # as stored (GP: oriented on train)
    accepted: bool
    kind: str                       # the gate's decision kind (``accepted``, ``duplicate``, ...)
    reason: str
    train_rank_ic: float | None
    valid_rank_ic: float | None
    n_tried: int | None = None      # trials of the universe/horizon counted (trial ledger)
    adj_p: float | None = None      # the candidate's multiple-testing adjusted p-value


@dataclass(frozen=True)
class GPDone:
    """The evaluation walk is over (the run is recorded as done)."""

    run_id: str
    n_evaluated: int
    n_accepted: int
    rejections: dict[str, int]
    skipped_train_corr: int = 0     # not sent to valid: |corr| on train >= [store] max_corr
    skipped_duplicate: int = 0      # not sent to valid: same signature as one sent


@dataclass(frozen=True)
class LibraryDone:
    """Every library factor was evaluated and stored."""

    run_id: str
    n: int


# ------------------------------------------------------------------------------- records
@dataclass
class GPRunRecord:
    """What one ``mine gp`` run did."""

    run_id: str
    universe: str
    seed: int
    n_stocks: int
    n_train_days: int
    n_programs_scored: int
    n_distinct: int
    n_evaluated: int
    n_accepted: int
    budget: int
    rejections: dict[str, int]
    accepted: list[CandidateDecision]
    generations: list[GPGeneration]
    seconds: float
    leaderboard: list[FactorRecord] = field(default_factory=list)  # top rows, this universe
    skipped_train_corr: int = 0       # skipped by the diverse walk (train correlation)
    skipped_duplicate: int = 0        # skipped by the diverse walk (same signature)
    engine: str = "gplearn"           # the engine that ran (mining.gp_search)
    n_seeds: int = 0                  # warm-start formulas given to the engine
    n_train_stocks: int = 0           # names in the universe in train (the GP's columns)
    n_programs_computed: int = 0      # distinct expressions whose values the search computed
    search_seconds: float = 0.0       # the search alone (n_programs_computed / it: the rate)


@dataclass
class LibraryRunRecord:
    """What one ``mine library --add`` run did."""

    run_id: str
    universe: str
    decisions: list[CandidateDecision]
    seconds: float
    warnings: list[str] = field(default_factory=list)   # e.g. every split empty


def _emit(on_progress: Progress, event: Any) -> None:
    if on_progress is not None:
        on_progress(event)


def _rank_ic(ev, split: str) -> float | None:
    rep = ev.reports.get(split)
    return None if rep is None else rep.rank_ic_mean


def gp_budget(top: int) -> int:
    """Most programs one GP run sends through the evaluator: ``max(5 * top, 50)``."""
    return max(5 * top, 50)


# ------------------------------------------------------------------------------- mine gp
def mine_gp(cfg: Config, settings: GPSettings, *, end: str | None = None,
            on_progress: Progress = None, argv: Sequence[str] | None = None) -> GPRunRecord:
    """Mine factors by genetic programming and admit the best through the gate.

    Loads ``settings.fields`` for ``settings.universe`` from ``settings.start`` to ``end``
    (default: ``settings.end``, else the end of valid; a window into the sealed test split is
    refused with SealedError), runs the engine of ``[gp] engine`` on the train rows only
    (:func:`mining.gp_search.search`: warm start, diversity hook), then walks the distinct
    programs in train-fitness order (:func:`mining.gp_diversity.diverse_walk`: a program that
    duplicates, or correlates ``>= [store] max_corr`` on the TRAIN sample with, one already
    sent or a member is skipped without a look at valid and without a trial; selection uses
    train only) through ``evaluate_candidate(orient=True)`` and
    :func:`~backtest.candidates.submit` until ``settings.top`` are accepted or
    :func:`gp_budget` programs were evaluated. A record gets ``provenance["parents"]`` when
    the engine gives the program's parents. The run is recorded in ``cfg.store.path``
    (status ``interrupted`` on KeyboardInterrupt, which is re-raised). A finished run writes
    its manifest (:mod:`data.manifest`; ``argv``: the ``mine`` command line, for ``mine
    rerun``) with the leaderboard as it was at the start and every decision in order.

    Raises
    ------
    AlphamineError
        Unknown universe, missing data, bad configuration.
    """
    t0 = time.perf_counter()
    # opened before the data loads: a cluster's workers warm up meanwhile
    with open_executor(settings, cluster_settings(cfg)) as ex:
        return _mine_gp(cfg, settings, ex, t0, end=end, on_progress=on_progress, argv=argv)


def _mine_gp(cfg: Config, g: GPSettings, executor, t0: float, *, end, on_progress,
             argv) -> GPRunRecord:
    ws = make_workspace(cfg, g.universe, g.start, end or g.end or None,
                        model_dir=cfg.model.out_dir)
    ws.load(g.fields)
    gp_ctx, panels = train_inputs(ws, cfg.evaluate.train[1], g.fields, g.pool)
    n_train = len(gp_ctx.dates)
    if n_train == 0:
        raise ConfigError(f"no trading days between the GP start {g.start} and the end of "
                          f"train {cfg.evaluate.train[1]}: GP fitness is computed on train; "
                          "move [gp] start or [evaluate] train")
    _emit(on_progress, GPLoaded(g.universe, len(ws.ctx.codes), n_train,
                                str(ws.ctx.dates[0].date()), str(gp_ctx.dates[-1].date()),
                                tuple(panels), time.perf_counter() - t0,
                                len(gp_ctx.codes)))
    run_cfg = to_jsonable({"gp": g, "evaluate": cfg.evaluate})
    manifest = RunRecorder("gp", cfg, argv=argv, settings=g, seeds={"gp": g.seed},
                           store=cfg.store.path, window=(ws.start, ws.end))
    decisions: list[CandidateDecision] = []
    with FactorStore(cfg.store.path) as store:
        run_id = store.start_run("gp", config=run_cfg, seed=g.seed, universe=g.universe,
                                 data_root=str(cfg.data.root))
        try:
            def on_generation(ev) -> None:
                store.heartbeat(run_id)         # the run is alive (factors.store_runs)
                _emit(on_progress, ev)
            found = search(ws, gp_ctx, panels, g, store, horizon=cfg.evaluate.horizon,
                           max_corr=cfg.store.max_corr, on_generation=on_generation,
                           executor=executor)
            res = found.result
            n_computed = int((res.cache or {}).get("programs_memoised", 0))
            _emit(on_progress, GPScored(res.n_programs_scored, len(res.candidates),
                                        res.seconds, n_computed))
            # The diverse selection walk (train only): distinct programs in train-fitness
            # order, skipping those that duplicate or correlate on the train sample with one
            # already sent or with a member, until `top` pass the gate or the budget is spent.
            n_acc = n_eval = 0
            rejections: dict[str, int] = {}
            accepted: list[CandidateDecision] = []
            budget = gp_budget(g.top)

            def send(rank: int, expr, fit: float) -> None:
                nonlocal n_acc, n_eval
                n_eval += 1
                ev = evaluate_candidate(ws, expr, orient=True)
                gen = next((i + 1 for i, s in enumerate(res.generations)
                            if s.best_formula == str(expr)), None)
                name = f"gp_{run_id[-6:]}_{rank:02d}"
                prov = {"run_id": run_id, "seed": g.seed, "train_fitness": fit,
                        "generation_best": gen, "rank": rank, "config": run_cfg,
                        "data_root": str(cfg.data.root), **found.lineage(expr)}
                d = submit(ws, store, ev, name=name, source="gp", cfg=cfg, provenance=prov)
                n_acc += d.accepted
                decision = CandidateDecision(rank, name, ev.formula, bool(d.accepted), d.kind,
                                             d.reason, _rank_ic(ev, "train"),
                                             _rank_ic(ev, "valid"), d.n_tried, d.adj_p)
                decisions.append(decision)
                if d.accepted:
                    accepted.append(decision)
                else:
                    rejections[d.kind] = rejections.get(d.kind, 0) + 1
                _emit(on_progress, decision)

            # one candidate at a time: its kernels' rows are split over the cores
            with row_threads(resolve_jobs(g.n_jobs)):
                walk = _walk(res, found, panels, gp_ctx, cfg, send,
                             stop=lambda: n_acc >= g.top or n_eval >= budget)
            skipped = {"skipped_train_corr": walk.skipped_train_corr,
                       "skipped_duplicate": walk.skipped_duplicate}
            search_info = found.summary(g.diversity)
            store.finish_run(run_id, n_tried=len(res.candidates), summary={
                "n_programs_scored": res.n_programs_scored, "n_accepted": n_acc,
                "n_evaluated": n_eval, "rejections": rejections, **skipped, **search_info,
                "seconds": time.perf_counter() - t0,
                "generations": [asdict(s) for s in res.generations]})
        except KeyboardInterrupt:
            store.finish_run(run_id, n_tried=0, status="interrupted")
            raise
        _emit(on_progress, GPDone(run_id, n_eval, n_acc, dict(rejections),
                                  walk.skipped_train_corr, walk.skipped_duplicate))
        recs = store.top(g.top, sort="valid.rank_icir", universe=g.universe)
    manifest.write(run_id, results={
        "decisions": [asdict(d) for d in decisions],
        "generations": [{k: v for k, v in asdict(s).items() if k != "seconds"}
                        for s in res.generations],
        "n_programs_scored": res.n_programs_scored, "n_distinct": len(res.candidates),
        "summary": {"n_evaluated": n_eval, "n_accepted": n_acc, "rejections": rejections,
                    **skipped, **search_info, "accepted": [d.formula for d in accepted]}})
    return GPRunRecord(run_id=run_id, universe=g.universe, seed=g.seed,
                       n_stocks=len(ws.ctx.codes), n_train_days=n_train,
                       n_programs_scored=res.n_programs_scored, n_distinct=len(res.candidates),
                       n_evaluated=n_eval, n_accepted=n_acc, budget=budget,
                       rejections=rejections, accepted=accepted,
                       generations=list(res.generations),
                       seconds=time.perf_counter() - t0, leaderboard=recs, **skipped,
                       engine=found.engine_used, n_seeds=len(found.seeds),
                       n_train_stocks=len(gp_ctx.codes), n_programs_computed=n_computed,
                       search_seconds=res.seconds)


def _walk(res, found, panels, gp_ctx, cfg: Config, send, *, stop):
    """The diverse selection walk of :func:`mine_gp` over the search's candidates (kept sample
    ranks read instead of evaluating again); the kept ranks are freed afterwards."""
    kept = res.sample_ranks
    try:
        return diverse_walk(
            res.candidates, lambda e: evaluate(
                e, panels, mask=gp_ctx.universe_mask,
                factors=lambda name: panels[f'factor("{name}")']),      # [gp] pool terminals
            found.diversity, cfg.store.max_corr, send, stop=stop, ranks_of=kept.get)
    finally:
        kept.clear()


# ------------------------------------------------------------------------------- library
def empty_splits_warning(ws, splits, ev_cfg) -> str | None:
    """A warning when none of ``splits`` keeps a day in the workspace's window, else None.

    Each split loses its last ``max(embargo, max horizon + 1)`` rows (labels must not reach
    into the next split; :mod:`backtest.context`): a short window, or a horizon or embargo
    long for the data, can leave nothing, and the report is then all empty -- said, never
    silent.
    """
    from backtest.context import DECAY_HORIZONS
    if any(hi > lo for lo, hi in (ws.ctx.split_bounds(s) for s in splits)):
        return None
    gap = max(ev_cfg.embargo, max(DECAY_HORIZONS + (ev_cfg.horizon,)) + 1)
    return (f"no day of {', '.join(splits)} is left to evaluate between {ws.start} and "
            f"{ws.end} ({len(ws.ctx.dates)} trading days): each split drops its last {gap} "
            f"days ([evaluate] horizon {ev_cfg.horizon}, embargo {ev_cfg.embargo}, IC decay up "
            f"to {max(DECAY_HORIZONS)} days), so every metric is empty; widen the window or "
            "the splits")


def add_library(cfg: Config, universe: str, *, factor_set: str = "default",
                on_progress: Progress = None) -> LibraryRunRecord:
    """Evaluate every factor of a library set on ``universe`` and submit it to the leaderboard.

    ``factor_set="default"``: :data:`factors.library.LIBRARY`, gate forced (library factors
    are references, always kept). ``"alpha101"``: :data:`factors.alpha101.ALPHA101`, through
    the gate like any candidate (correlation, valid RankIC, adjusted p; trials counted), as
    written in the paper (not re-oriented). Sets: :func:`factors.library.library_set`.

    Raises
    ------
    AlphamineError
        Unknown set or universe, missing data, bad configuration.
    """
    t0 = time.perf_counter()
    factors, _ = library_set(factor_set)
    force = factor_set == "default"
    ws = make_workspace(cfg, universe, model_dir=cfg.model.out_dir)
    empty = empty_splits_warning(ws, ("train", "valid"), cfg.evaluate)
    decisions: list[CandidateDecision] = []
    with FactorStore(cfg.store.path) as store:
        run_id = store.start_run("library", config={} if force else {"set": factor_set},
                                 seed=None, universe=universe, data_root=str(cfg.data.root))
        for rank, f in enumerate(factors):
            ev = evaluate_candidate(ws, f.formula)
            d = submit(ws, store, ev, name=f.name, source="library", cfg=cfg,
                       provenance={"run_id": run_id, "reference": f.reference},
                       description=f.description, force=force)
            decision = CandidateDecision(rank, f.name, ev.formula, bool(d.accepted), d.kind,
                                         d.reason, _rank_ic(ev, "train"), _rank_ic(ev, "valid"),
                                         d.n_tried, d.adj_p)
            decisions.append(decision)
            _emit(on_progress, decision)
        store.finish_run(run_id, n_tried=len(factors))
    _emit(on_progress, LibraryDone(run_id, len(factors)))
    return LibraryRunRecord(run_id, universe, decisions, time.perf_counter() - t0,
                            [empty] if empty else [])
