"""alphamine's own GP engine (mining.gp_engine, gp_variation, gp_nsga) on tiny synthetic panels."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from backtest.context import EvalContext
from backtest.evaluate import factor_corr, mean_rank_ic
from factors.expr_eval import evaluate
from factors.expr_parse import parse
from factors.expr_tree import Call, Const, Field, depth, walk
from factors.operators import get_op
from mining.gp import GPSettings
from mining.gp_engine import evolve
from mining.gp_eval import PanelMemo
from mining.gp_nsga import crowding_distance, non_dominated_fronts, nsga2_survivors
from mining.gp_variation import Primitives, nodes

T, N = 220, 40
FIELDS = ("close", "vol", "ret")


def _data(seed: int = 0):
    """ret, close, vol panels and a context whose label is ``-ts_mean(ret, 5)`` + noise."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2015-01-01", periods=T)
    codes = pd.Index([f"{600000 + i}.SH" for i in range(N)])
    ret = rng.normal(0, 0.02, (T, N))
    close = 10 * np.exp(np.cumsum(ret, axis=0))
    vol = rng.lognormal(10, 1, (T, N))
    planted = -get_op("ts_mean").apply([ret], (5,))
    mu = np.nan_to_num(np.nanmean(np.where(np.isfinite(planted), planted, 0.0), axis=1))
    sd = np.nanstd(np.where(np.isfinite(planted), planted, 0.0), axis=1) + 1e-12
    z = np.nan_to_num((planted - mu[:, None]) / sd[:, None])
    fwd = 0.01 * z + rng.normal(0, 0.01, (T, N))
    opn = np.full((T, N), 10.0)
    for t in range(T - 2):                      # label fwd[t] = open[t+2] / open[t+1] - 1
        opn[t + 2] = opn[t + 1] * (1 + fwd[t])
    ctx = EvalContext.from_arrays(dates, codes, opn, np.ones((T, N), bool), np.ones((T, N), bool),
                                  splits={"train": (dates[0], dates[149]),
                                          "valid": (dates[155], dates[-1])},
                                  horizons=(1,), horizon=1, embargo=2)
    panels = {"close": close, "vol": vol, "ret": ret}
    return ctx, panels, planted


def _terms(panels):
    return {Field(k): v for k, v in panels.items()}


def _same(a, b) -> bool:
    """Program lists equal, NaN equal to NaN (undefined RankIC / turnover)."""
    return [repr(p) for p in a] == [repr(p) for p in b]


SMALL = GPSettings(population=150, generations=5, seed=1, max_depth=3, elite=5)


@pytest.fixture(scope="module")
def data():
    return _data()


@pytest.fixture(scope="module")
def base_run(data):
    ctx, panels, _ = data
    return evolve(_terms(panels), ctx, SMALL)


def test_planted_factor_is_found(data, base_run):
    ctx, panels, planted = data
    best, fit = base_run.candidates[0]
    vals = evaluate(best, panels, mask=ctx.universe_mask)
    assert factor_corr(vals, planted, ctx, split="train") > 0.9
    assert mean_rank_ic(vals, ctx, split="train") > 0      # oriented: positive train IC
    assert base_run.engine == "alphamine" and base_run.n_programs_scored == 150 * 5
    assert len(base_run.generations) == 5


def test_fitness_is_rank_ic_times_coverage_minus_parsimony(data, base_run):
    ctx, panels, _ = data
    lo, hi = ctx.split_bounds("train")
    elig = ctx.eligible[lo:hi]
    for p in base_run.programs[:15]:
        vals = evaluate(p.expr, panels, mask=ctx.universe_mask)
        ic = mean_rank_ic(vals, ctx, split="train")
        cov = (np.isfinite(vals[lo:hi]) & elig).sum() / elig.sum()
        expected = abs(ic) * cov - SMALL.parsimony * p.size if np.isfinite(ic) else 0.0
        assert p.fitness == pytest.approx(expected, abs=1e-9)
        assert p.rank_ic == pytest.approx(ic, abs=1e-9)
        assert np.isnan(p.turnover)           # tournaments never read it: not computed
    # candidates are the programs, oriented, best first
    assert [f for _, f in base_run.candidates] == sorted(
        (f for _, f in base_run.candidates), reverse=True)


def test_every_program_respects_the_depth_limit_and_typing(base_run):
    prims = Primitives([Field(f) for f in FIELDS], SMALL.const_range, SMALL.max_depth)
    assert base_run.programs
    for p in base_run.programs:
        assert depth(p.expr) <= SMALL.max_depth and prims.valid(p.expr), str(p.expr)


def test_deterministic_and_seed_dependent(data, base_run):
    ctx, panels, _ = data
    again = evolve(_terms(panels), ctx, SMALL)
    assert [(str(e), f) for e, f in again.candidates] == \
        [(str(e), f) for e, f in base_run.candidates]
    assert _same(again.programs, base_run.programs)
    other = evolve(_terms(panels), ctx, replace(SMALL, seed=2))
    assert [str(e) for e, _ in other.candidates] != [str(e) for e, _ in base_run.candidates]


def test_memo_size_does_not_change_the_result(data):
    ctx, panels, _ = data
    s = replace(SMALL, population=60, generations=3)
    a = evolve(_terms(panels), ctx, replace(s, cache_mb=0.0))
    b = evolve(_terms(panels), ctx, replace(s, cache_mb=0.2))   # tiny: evicts
    assert _same(a.programs, b.programs)
    assert b.cache["evictions"] > 0 and b.cache["hits"] > 0 and a.cache["hits"] == 0


def test_fitness_only_reads_the_split_rows(data):
    """Causality: every terminal row after the end of train changed -> identical result."""
    ctx, panels, _ = data
    _, hi = ctx.split_bounds("train")
    rng = np.random.default_rng(9)
    changed = {}
    for k, v in panels.items():
        w = v.copy()
        w[hi:] = rng.normal(5, 3, w[hi:].shape)
        w[hi + 3, :5] = np.nan
        changed[k] = w
    s = replace(SMALL, population=60, generations=3, selection="nsga2")
    a = evolve(_terms(panels), ctx, s)
    b = evolve(_terms(changed), ctx, s)
    assert _same(a.programs, b.programs) and a.candidates == b.candidates


def test_window_mutation_moves_to_a_neighbouring_allowed_window():
    prims = Primitives([Field(f) for f in FIELDS], (-1.0, 1.0), 4)
    rng = np.random.default_rng(0)
    moved = 0
    for tree in prims.ramped(rng, 200):
        child = prims.window_mutation(rng, tree)
        for (_, a), (_, b) in zip(nodes(tree), nodes(child)):
            if isinstance(b, Call) and b.windows:
                allowed = get_op(b.op).gp_windows
                assert b.windows[0] in allowed
                if a.windows != b.windows:
                    moved += 1
                    assert abs(allowed.index(a.windows[0]) - allowed.index(b.windows[0])) == 1
                    assert (a.op, a.args) == (b.op, b.args)
    assert moved > 50


def test_constants_appear_obey_typing_and_mutate():
    prims = Primitives([Field(f) for f in FIELDS], (-2.0, 2.0), 4)
    rng = np.random.default_rng(1)
    trees = prims.ramped(rng, 300)
    with_const = [t for t in trees if any(isinstance(n, Const) for n in walk(t))]
    assert len(with_const) > 10
    for t in trees:
        assert prims.valid(t), str(t)
        for _, n in nodes(t):
            if isinstance(n, Call) and any(isinstance(a, Const) for a in n.args):
                op = get_op(n.op)
                assert op.kind == "elementwise" and op.n_inputs >= 2
                assert not all(isinstance(a, Const) for a in n.args)
    for t in with_const:
        child = prims.constant_mutation(rng, t)
        before = [n.value for n in walk(t) if isinstance(n, Const)]
        after = [n.value for n in walk(child) if isinstance(n, Const)]
        assert len(before) == len(after) and before != after
        assert sum(x != y for x, y in zip(before, after)) == 1
    none = Primitives([Field(f) for f in FIELDS], (), 4)
    assert not any(isinstance(n, Const) for t in none.ramped(rng, 100) for n in walk(t))


def test_seeds_join_generation_one(data):
    ctx, panels, _ = data
    seeds = [parse("ts_mean(close, 5) / close"), parse("ts_mean(close, 7)"),   # 7: no GP window
             Call("ts_mean", (Field("foo"),), (5,)),                             # not a terminal
             parse("cs_rank(ts_std(ret, 20))"), parse("ts_mean(close, 5) / close")]
    res = evolve(_terms(panels), ctx, replace(SMALL, population=30, generations=2),
                 seeds=seeds)
    assert res.seeds_used == 2 and res.seeds_skipped == 3
    first = {p.expr: p for p in res.programs if p.generation == 1}
    for s in (seeds[0], seeds[3]):
        assert s in first and first[s].parents == ()
    assert seeds[1] not in first


@pytest.mark.parametrize("kind, n_parents", [("p_crossover", 2), ("p_subtree_mutation", 1),
                                             ("p_hoist_mutation", 1), ("p_point_mutation", 1),
                                             ("p_window_mutation", 1)])
def test_parents_are_recorded(data, kind, n_parents):
    ctx, panels, _ = data
    probs = dict(p_crossover=0.0, p_subtree_mutation=0.0, p_hoist_mutation=0.0,
                 p_point_mutation=0.0, p_window_mutation=0.0, p_constant_mutation=0.0)
    probs[kind] = 1.0
    res = evolve(_terms(panels), ctx, replace(SMALL, population=40, generations=2, elite=0,
                                              **probs))
    gen1 = [p for p in res.programs if p.generation == 1]
    gen2 = [p for p in res.programs if p.generation == 2]
    assert gen1 and gen2 and all(p.parents == () for p in gen1)
    assert all(len(p.parents) == n_parents for p in gen2)
    texts = {str(p.expr) for p in gen1}
    assert all(set(p.parents) <= texts for p in gen2)
    assert res.parents and all(isinstance(v, tuple) for v in res.parents.values())


def test_nsga2_fronts_and_crowding():
    # minimised objectives; front 0: a, b, c (mutually non-dominated); d dominated by b;
    # e dominated by d; f equal to b (neither dominates)
    objs = np.array([[0.0, 3.0], [1.0, 1.0], [3.0, 0.0], [2.0, 2.0], [3.0, 3.0], [1.0, 1.0]])
    fronts = non_dominated_fronts(objs)
    assert [f.tolist() for f in fronts] == [[0, 1, 2, 5], [3], [4]]
    objs = np.array([[0.0, 4.0], [1.0, 2.0], [2.0, 1.5], [4.0, 0.0], [3.0, 3.0]])
    cd = crowding_distance(objs[:4])
    assert np.isinf(cd[0]) and np.isinf(cd[3])
    assert cd[1] == pytest.approx(2 / 4 + 2.5 / 4) and cd[2] == pytest.approx(3 / 4 + 2 / 4)
    assert nsga2_survivors(objs, 3).tolist() == [0, 3, 2]      # extremes, then most crowded
    assert nsga2_survivors(objs, 5).tolist() == [0, 3, 2, 1, 4]


def test_nsga2_run_keeps_the_planted_factor(data):
    ctx, panels, planted = data
    res = evolve(_terms(panels), ctx, replace(SMALL, selection="nsga2"))
    vals = evaluate(res.candidates[0][0], panels, mask=ctx.universe_mask)
    assert factor_corr(vals, planted, ctx, split="train") > 0.9
    bests = [g.best for g in res.generations]
    assert bests == sorted(bests)                 # elitism: the best never gets lost
    # NSGA-II reads turnover, so it is computed: 1 - mean daily Spearman(v[t], v[t-1]) over
    # the day's eligible names with both values (pandas ranks as the independent reference)
    lo, hi = ctx.split_bounds("train")
    elig = ctx.eligible[lo:hi]
    for p in res.programs[:6]:
        v = evaluate(p.expr, panels, mask=ctx.universe_mask)[lo:hi]
        autos = []
        for t in range(1, v.shape[0]):
            keep = elig[t] & np.isfinite(v[t]) & np.isfinite(v[t - 1])
            if keep.sum() >= 3:
                a, b = pd.Series(v[t][keep]).rank(), pd.Series(v[t - 1][keep]).rank()
                if a.std() > 0 and b.std() > 0:
                    autos.append(np.corrcoef(a, b)[0, 1])
        assert p.turnover == pytest.approx(1.0 - np.mean(autos), abs=1e-9)


class _PoolHook:
    """Fake DiversityHook: penalise rank correlation with a planted pool panel."""

    def __init__(self, pool, ctx):
        self.pool, self.ctx, self.admitted = pool, ctx, []

    def signature(self, values):
        return np.round(np.abs(np.nan_to_num(values)), 8).tobytes()

    def penalty(self, values):
        c = factor_corr(values, self.pool, self.ctx, split="train")
        return float(min(abs(c), 1.0)) if np.isfinite(c) else 0.0

    def admit(self, expr, values, fitness):
        self.admitted.append((expr, fitness))


def test_diversity_hook_steers_away_from_the_pool(data):
    ctx, panels, planted = data
    hook = _PoolHook(planted, ctx)
    res = evolve(_terms(panels), ctx, SMALL, diversity=hook)
    vals = evaluate(res.candidates[0][0], panels, mask=ctx.universe_mask)
    assert abs(factor_corr(vals, planted, ctx, split="train")) < 0.9
    assert hook.admitted and len(hook.admitted) <= SMALL.elite * SMALL.generations
    sigs = [hook.signature(evaluate(p.expr, panels, mask=ctx.universe_mask))
            for p in res.programs[:30]]
    assert len(set(sigs)) == len(sigs)             # semantically de-duplicated


def test_panel_memo_evaluates_like_the_evaluator(data):
    ctx, panels, _ = data
    memo = PanelMemo(_terms(panels), ctx.universe_mask, 2**20)
    for text in ("cs_rank(ts_corr(close, vol, 10)) * 0.5", "log(abs(ret)) - ts_delay(ret, 5)"):
        e = parse(text)
        np.testing.assert_allclose(memo.values(e), evaluate(e, panels, mask=ctx.universe_mask),
                                   equal_nan=True)


class _SlowMemo(PanelMemo):
    def _apply(self, node, args):
        time.sleep(0.2)                    # both threads reach the node while it computes
        return super()._apply(node, args)


def test_panel_memo_computes_a_node_once_across_threads(data):
    ctx, panels, _ = data
    e = parse("ts_mean(close, 5)")

    def both(memo):
        barrier = threading.Barrier(2)

        def run(_):
            barrier.wait()
            return memo.values(e)
        with ThreadPoolExecutor(2) as pool:
            return list(pool.map(run, range(2)))
    memo = _SlowMemo(_terms(panels), ctx.universe_mask, 2**26)
    a, b = both(memo)
    assert a is b                          # the waiting thread read the stored panel
    assert memo.stats["misses"] == 1 and memo.stats["hits"] == 1 and not memo._pending
    memo = _SlowMemo(_terms(panels), ctx.universe_mask, 0)   # nothing kept: each computes
    a, b = both(memo)
    np.testing.assert_array_equal(a, b)
    assert memo.stats["misses"] == 2


def test_settings_validate_engine_selection_probabilities_and_constants():
    with pytest.raises(ValueError, match="engine"):
        GPSettings(engine="deap")
    with pytest.raises(ValueError, match="selection"):
        GPSettings(selection="roulette")
    with pytest.raises(ValueError, match="must be <= 1"):
        GPSettings(p_window_mutation=0.5)
    with pytest.raises(ValueError, match="const_range"):
        GPSettings(const_range=(1.0, -1.0))
    assert GPSettings().engine == "alphamine"


def test_names_outside_the_universe_in_train_change_nothing():
    """``mine gp`` drops the names never in the universe on a train row (train_inputs):
    the run on the remaining columns has the same programs, fitness, RankIC, turnover and
    de-duplication classes as the run on every name (the signature's orientation does not
    depend on columns missing on every sample date)."""
    ctx, panels, _ = _data(3)
    rng = np.random.default_rng(7)
    umask = np.ones((T, N), bool)
    out = rng.choice(N, 12, replace=False)
    umask[:, out] = False
    umask[200:, out[:6]] = True                 # members only after the end of train
    opn = np.full((T, N), 10.0)
    opn[1:] = 10 * np.exp(np.cumsum(rng.normal(0, 0.01, (T - 1, N)), axis=0))
    full = EvalContext.from_arrays(ctx.dates, ctx.codes, opn, umask, np.ones((T, N), bool),
                                   splits={"train": (ctx.dates[0], ctx.dates[149]),
                                           "valid": (ctx.dates[155], ctx.dates[-1])},
                                   horizons=(1,), horizon=1, embargo=2)
    gp_ctx = full.restrict(full.dates[0], full.dates[152])
    cols = gp_ctx.in_universe()
    assert len(cols) == N - 12 and not np.isin(out, cols).any()
    small = gp_ctx.select_names(cols)
    assert small.codes.equals(gp_ctx.codes[cols]) and small.shape == (153, N - 12)
    assert gp_ctx.select_names(np.arange(N)) is gp_ctx
    n = len(gp_ctx.dates)
    s = replace(SMALL, population=120, generations=3)
    from mining.gp_diversity import Diversity
    runs = [evolve(_terms({k: v[:n][:, c] for k, v in panels.items()}), c_ctx, s,
                   diversity=Diversity(c_ctx, {}, n_dates=20, hof=5))
            for c_ctx, c in ((gp_ctx, slice(None)), (small, cols))]
    a, b = runs
    assert [(str(e), f) for e, f in a.candidates] == [(str(e), f) for e, f in b.candidates]
    assert _same(a.programs, b.programs)        # NaN RankIC / turnover included
