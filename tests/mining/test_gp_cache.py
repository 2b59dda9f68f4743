"""GP memo of operator outputs and fitness: identical results with and without it, and it hits;
owned by the run (no process-global state) and gplearn is never patched."""
import pickle

import gplearn._program
import gplearn.fitness
import gplearn.functions
import gplearn.genetic
import numpy as np
import pytest
import sklearn

from mining import gp as gp_mod
from mining.gp import GPSettings, build_function_set, run_gp
from mining.gp_memo import Deferred, GPMemo
from tests.mining.test_gp import _synthetic

ORIGINAL_RAW_FITNESS = gplearn._program._Program.raw_fitness


def _summary(res):
    return ([(str(e), f) for e, f in res.candidates],
            [(g.best, g.median, g.best_formula, g.n_programs) for g in res.generations])


def test_cache_on_off_identical_results_and_hits():
    ctx, panels = _synthetic(T=120, N=30, seed=2)
    base = dict(population=60, generations=3, tournament_size=10, seed=5, max_depth=3,
                cache_min_ms=0.0, n_jobs=1)  # in-process: the memo counters are this process's
    off = run_gp(panels, ctx, GPSettings(**base, cache_mb=0))
    on = run_gp(panels, ctx, GPSettings(**base))
    assert off.cache == {}
    assert _summary(on) == _summary(off)               # same programs, same fitness, bit for bit
    st = on.cache
    assert st["op_hits"] > 0 and st["program_hits"] > 0
    # every program is scored once: fresh or a duplicate program's stored fitness
    assert st["program_hits"] + st["program_misses"] == on.n_programs_scored
    assert st["op_misses"] > 0
    assert st["leaf_hashes"] <= len(panels) + 1        # X columns hashed once each (one buffer)


def test_tiny_cache_evicts_and_stays_identical():
    ctx, panels = _synthetic(T=80, N=20, seed=3)
    base = dict(population=40, generations=2, tournament_size=5, seed=9, max_depth=3,
                cache_min_ms=0.0, n_jobs=1)
    off = run_gp(panels, ctx, GPSettings(**base, cache_mb=0))
    one_panel_mb = 80 * 20 * 8 / 2**20
    tiny = run_gp(panels, ctx, GPSettings(**base, cache_mb=3 * one_panel_mb))
    assert _summary(tiny) == _summary(off)
    assert tiny.cache["evictions"] > 0


def test_memo_outputs_read_only_and_keyed_by_structure():
    T, N = 30, 4
    rng = np.random.default_rng(0)
    X = np.asfortranarray(rng.normal(size=(T * N, 2)))
    funcs, _ = build_function_set((T, N), None, defer=True)
    by = {f.name: f for f in funcs}
    memo = GPMemo(2**24)
    d = by["ts_mean_10"](X[:, 0])
    assert isinstance(d, Deferred) and d.shape == (T * N,)
    a = memo.value(d)
    b = memo.value(by["ts_mean_10"](X[:, 0]))         # a fresh view of the same column: a hit
    assert b is a and not a.flags.writeable
    with pytest.raises(ValueError):
        a[0] = 1.0
    c = memo.value(by["ts_mean_10"](X[:, 1]))         # another column: computed
    assert c is not a
    copy = np.array(X[:, 0])                          # same bytes, other buffer: same leaf
    assert memo.value(by["ts_mean_10"](copy)) is a
    s1 = memo.value(by["add"](by["ts_mean_10"](X[:, 0]), by["ts_mean_10"](X[:, 1])))
    assert memo.stats["op_hits"] == 4 and memo.stats["op_misses"] == 3
    assert memo.node(by["add"](by["ts_mean_10"](copy), by["ts_mean_10"](X[:, 1]))) == \
        memo.node(by["add"](by["ts_mean_10"](X[:, 0]), by["ts_mean_10"](X[:, 1])))
    off, _ = build_function_set((T, N), None)
    ref = {f.name: f for f in off}
    expect = ref["add"](ref["ts_mean_10"](X[:, 0]), ref["ts_mean_10"](X[:, 1]))
    np.testing.assert_array_equal(s1, expect)
    # without a memo a deferred call is still an array-like of the promised values
    np.testing.assert_array_equal(
        np.asarray(by["add"](by["ts_mean_10"](X[:, 0]), by["ts_mean_10"](X[:, 1]))), expect)
    # fitness: scored once per structure
    calls = []
    fit = memo.fitness(by["neg"](by["ts_mean_10"](X[:, 0])), lambda v: calls.append(1) or 0.5)
    assert memo.fitness(by["neg"](by["ts_mean_10"](copy)), lambda v: 1 / 0) == fit == 0.5
    assert calls == [1] and memo.stats["program_hits"] == 1
    memo.clear()
    assert memo.stats["op_misses"] == 0 and memo.value(by["ts_mean_10"](X[:, 0])) is not a


@pytest.mark.parametrize("defer", [False, True])
def test_make_function_probe_only_while_probing(defer):
    """make_function probes with length-10 vectors; afterwards a 10-cell panel is a panel."""
    funcs, _ = build_function_set((2, 5), np.ones((2, 5), bool), defer=defer)  # T * N == 10
    by = {f.name: f for f in funcs}
    out = np.asarray(by["div"](np.ones(10), np.zeros(10)))
    assert np.isnan(out).all()                         # x / 0: computed, not a probe answer
    with pytest.raises(ValueError):
        np.asarray(by["ts_mean_10"](np.ones(7)))       # not a panel


def _gplearn_state():
    mods = (gplearn.genetic, gplearn._program, gplearn.functions, gplearn.fitness)
    state = {(m.__name__, k): v for m in mods for k, v in vars(m).items()}
    state.update({("_Program", k): v for k, v in vars(gplearn._program._Program).items()})
    return state


def _same_objects(a, b):
    return a.keys() == b.keys() and all(a[k] is b[k] for k in a)


@pytest.mark.parametrize("cache_mb", [0.0, 64.0])
def test_gplearn_not_patched_during_or_after_run(monkeypatch, cache_mb):
    ctx, panels = _synthetic(T=60, N=15, seed=6)
    before = _gplearn_state()
    validate = gplearn.genetic.validate_data
    seen = []
    score = gp_mod._RankICFitness._score

    def spy(self, *args):
        seen.append((_same_objects(_gplearn_state(), before),
                     gplearn.genetic.validate_data is validate,
                     gplearn._program._Program.raw_fitness is ORIGINAL_RAW_FITNESS,
                     sklearn.get_config()["assume_finite"]))
        return score(self, *args)

    monkeypatch.setattr(gp_mod._RankICFitness, "_score", spy)
    run_gp(panels, ctx, GPSettings(population=20, generations=2, tournament_size=5, seed=2,
                                   max_depth=3, cache_mb=cache_mb, n_jobs=1))
    assert seen and all(s == (True, True, True, True) for s in seen)
    assert _same_objects(_gplearn_state(), before)
    assert not sklearn.get_config()["assume_finite"]  # scikit-learn's setting restored


def test_two_runs_do_not_share_a_memo():
    ctx, panels = _synthetic(T=80, N=20, seed=7)
    s = GPSettings(population=40, generations=2, tournament_size=5, seed=3, max_depth=3,
                   cache_min_ms=0.0, n_jobs=1)
    first = run_gp(panels, ctx, s)
    second = run_gp(panels, ctx, s)                   # a fresh memo: the same misses again
    assert second.cache == first.cache and first.cache["program_misses"] > 0
    assert _summary(second) == _summary(first)
    inner = []                                        # a run nested inside another's callback

    def on_gen(_):
        inner.append(run_gp(panels, ctx, s))

    outer = run_gp(panels, ctx, s, on_generation=on_gen)
    assert outer.cache == first.cache and _summary(outer) == _summary(first)
    assert all(r.cache == first.cache and _summary(r) == _summary(first) for r in inner)


def test_pickling_drops_memo_contents():
    """Functions hold no memo; the fitness pickles its memo's settings, not its contents."""
    ctx, _ = _synthetic(T=40, N=10, seed=8)
    T, N = 40, 10
    funcs, _ = build_function_set((T, N), ctx.universe_mask, defer=True)
    by = {f.name: f for f in funcs}
    memo = GPMemo(2**26, 0.0)
    fitness = gp_mod._RankICFitness(ctx, "train", memo)
    x = np.random.default_rng(0).normal(size=(T * N, 2))
    fitness(None, by["ts_mean_10"](x[:, 0]), None)
    assert memo.stats["program_misses"] == 1 and memo._out
    empty = len(pickle.dumps(gp_mod._RankICFitness(ctx, "train", GPMemo(2**26, 0.0))))
    copy = pickle.loads(pickle.dumps(fitness))
    assert len(pickle.dumps(fitness)) == empty
    assert copy.memo is not memo and not copy.memo._out and not copy.memo._fitness
    assert (copy.memo.max_bytes, copy.memo.min_seconds) == (2**26, 0.0)
    assert memo._out                                   # the original keeps its contents


def test_cache_with_two_jobs_same_result():
    ctx, panels = _synthetic(T=60, N=15, seed=4)
    base = dict(population=30, generations=2, tournament_size=5, seed=1, max_depth=3)
    off = run_gp(panels, ctx, GPSettings(**base, cache_mb=0, n_jobs=1))
    par = run_gp(panels, ctx, GPSettings(**base, n_jobs=2))
    assert _summary(par) == _summary(off)
    assert par.cache["program_misses"] == 0      # programs are scored in the worker processes


def test_every_function_accepts_read_only_inputs():
    """Cached outputs are handed on read-only: no operator may write into its inputs."""
    T, N = 40, 6
    rng = np.random.default_rng(1)
    cols = []
    for _ in range(3):
        a = rng.normal(1.0, 0.5, T * N)
        a[::7] = np.nan
        a.flags.writeable = False
        cols.append(a)
    mask = np.ones((T, N), bool)
    funcs, _ = build_function_set((T, N), mask)
    for f in funcs:
        out = f(*cols[:f.arity])
        assert out.shape == (T * N,), f.name
