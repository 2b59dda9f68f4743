"""GP memo of operator outputs and fitness: identical results with and without it, and it hits."""
import gplearn._program
import numpy as np
import pytest

from mining import gp as gp_mod
from mining.gp import GPSettings, build_function_set, run_gp
from tests.mining.test_gp import _synthetic

ORIGINAL_RAW_FITNESS = gplearn._program._Program.raw_fitness


def _summary(res):
    return ([(str(e), f) for e, f in res.candidates],
            [(g.best, g.median, g.best_formula, g.n_programs) for g in res.generations])


def test_cache_on_off_identical_results_and_hits():
    ctx, panels = _synthetic(T=120, N=30, seed=2)
    base = dict(population=60, generations=3, tournament_size=10, seed=5, max_depth=3,
                cache_min_ms=0.0)
    off = run_gp(panels, ctx, GPSettings(**base, cache_mb=0))
    on = run_gp(panels, ctx, GPSettings(**base))
    assert off.cache == {}
    assert _summary(on) == _summary(off)               # same programs, same fitness, bit for bit
    st = on.cache
    assert st["op_hits"] > 0 and st["program_hits"] > 0
    # every program is scored once: fresh or a duplicate program's stored fitness
    assert st["program_hits"] + st["program_misses"] == on.n_programs_scored
    # programs not seen before are executed; their outputs' fitness is computed or memoised
    assert st["fitness_hits"] + st["fitness_misses"] == st["program_misses"]
    assert gplearn._program._Program.raw_fitness is ORIGINAL_RAW_FITNESS  # patch restored
    assert st["leaf_hashes"] <= len(panels) + 1        # X columns hashed once each (one buffer)
    assert gp_mod._ACTIVE == []                        # released after the run


def test_tiny_cache_evicts_and_stays_identical():
    ctx, panels = _synthetic(T=80, N=20, seed=3)
    base = dict(population=40, generations=2, tournament_size=5, seed=9, max_depth=3,
                cache_min_ms=0.0)
    off = run_gp(panels, ctx, GPSettings(**base, cache_mb=0))
    one_panel_mb = 80 * 20 * 8 / 2**20
    tiny = run_gp(panels, ctx, GPSettings(**base, cache_mb=3 * one_panel_mb))
    assert _summary(tiny) == _summary(off)
    assert tiny.cache["evictions"] > 0


def test_cached_outputs_read_only_and_keyed_by_structure():
    T, N = 30, 4
    rng = np.random.default_rng(0)
    X = np.asfortranarray(rng.normal(size=(T * N, 2)))
    funcs, _ = build_function_set((T, N), None, cache_token="t-struct", cache_bytes=2**24)
    by = {f.name: f for f in funcs}
    try:
        a = by["ts_mean_10"](X[:, 0])
        b = by["ts_mean_10"](X[:, 0])                  # a fresh view of the same column: a hit
        assert b is a and not a.flags.writeable
        with pytest.raises(ValueError):
            a[0] = 1.0
        c = by["ts_mean_10"](X[:, 1])                  # another column: computed
        assert c is not a
        copy = np.array(X[:, 0])                       # same bytes, other buffer: same leaf
        assert by["ts_mean_10"](copy) is a
        s1 = by["add"](a, c)
        assert by["add"](by["ts_mean_10"](X[:, 0]), c) is s1
        off, _ = build_function_set((T, N), None)
        ref = {f.name: f for f in off}
        np.testing.assert_array_equal(s1, ref["add"](ref["ts_mean_10"](X[:, 0]),
                                                     ref["ts_mean_10"](X[:, 1])))
        stats = gp_mod._ACTIVE[0].stats
        assert stats["op_hits"] == 4 and stats["op_misses"] == 3
    finally:
        gp_mod._release_cache("t-struct")


def test_cache_with_two_jobs_same_result():
    ctx, panels = _synthetic(T=60, N=15, seed=4)
    base = dict(population=30, generations=2, tournament_size=5, seed=1, max_depth=3)
    off = run_gp(panels, ctx, GPSettings(**base, cache_mb=0))
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
