"""GP adapter: registry-generated function set, program <-> Expr equivalence, determinism."""
import numpy as np
import pandas as pd
import pytest

from backtest.context import EvalContext
from backtest.evaluate import mean_rank_ic
from factors.expr_eval import evaluate
from factors.expr_parse import parse
from factors.operators import all_ops
from mining.gp import GPSettings, build_function_set, program_to_expr, run_gp


def _synthetic(T=160, N=40, seed=0):
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2015-01-01", periods=T)
    codes = pd.Index([f"{600000 + i}.SH" for i in range(N)])
    open_adj = 10 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0))
    fwd = np.full((T, N), np.nan)
    fwd[:-2] = open_adj[2:] / open_adj[1:-1] - 1
    close = open_adj * np.exp(rng.normal(0, 0.01, (T, N)))
    vol = rng.lognormal(10, 1, (T, N))
    signal = np.nan_to_num(fwd) + rng.normal(0, 0.02, (T, N))   # leaks the label: GP must find it
    vol[5:9, 3] = np.nan                                          # a suspension
    close[5:9, 3] = np.nan
    universe = np.ones((T, N), bool)
    tradable = np.ones((T, N), bool)
    ctx = EvalContext.from_arrays(dates, codes, open_adj, universe, tradable,
                                  splits={"train": (dates[0], dates[-1])}, horizons=(1,),
                                  horizon=1, embargo=2)
    return ctx, {"close": close, "vol": vol, "signal": signal}


def test_function_set_comes_from_registry():
    funcs, names = build_function_set((4, 3))
    gp_ops = {op.name for op in all_ops() if op.gp}
    assert {v[0] for v in names.values()} == gp_ops
    for op in all_ops():
        if op.gp and op.kind == "ts":
            assert {w for (o, w) in names.values() if o == op.name} == set(op.gp_windows)
    assert all(f.arity >= 1 for f in funcs)


def test_gp_finds_planted_signal_and_programs_match_exprs():
    ctx, panels = _synthetic()
    settings = GPSettings(population=60, generations=3, tournament_size=10, seed=7, max_depth=3)
    res = run_gp(panels, ctx, settings)
    assert len(res.generations) == 3
    assert res.n_programs_scored == 180
    best_expr, best_fit = res.candidates[0]
    assert best_fit > 0.5                      # the planted signal has RankIC ~0.7
    assert "signal" in str(best_expr)
    # every program's gplearn fitness equals the common evaluator's |mean RankIC| of its Expr
    data = dict(panels)
    for expr, fit in res.candidates[:10]:
        expr2 = parse(str(expr), fields=set(panels))
        assert expr2 == expr
        vals = evaluate(expr2, data, mask=ctx.universe_mask)
        ic = mean_rank_ic(vals, ctx, split="train")
        lo, hi = ctx.split_bounds("train")
        elig = ctx.eligible[lo:hi]
        coverage = (np.isfinite(vals[lo:hi]) & elig).sum() / elig.sum()
        expected = abs(ic) * coverage if np.isfinite(ic) else 0.0
        assert expected == pytest.approx(fit, abs=1e-9)


def test_gp_same_seed_same_result():
    ctx, panels = _synthetic(T=80, N=20, seed=1)
    s = GPSettings(population=30, generations=2, tournament_size=5, seed=3, max_depth=3)
    a = run_gp(panels, ctx, s)
    b = run_gp(panels, ctx, s)
    assert [(str(e), f) for e, f in a.candidates] == [(str(e), f) for e, f in b.candidates]
    c = run_gp(panels, ctx, GPSettings(population=30, generations=2, tournament_size=5, seed=4,
                                       max_depth=3))
    assert [str(e) for e, _ in a.candidates] != [str(e) for e, _ in c.candidates]


def test_protected_log_translates_to_log_abs():
    funcs, names = build_function_set((2, 2))
    log_fn = next(f for f in funcs if f.name == "log")
    x = np.array([-np.e, 1.0, np.e, 0.5])
    np.testing.assert_allclose(log_fn(x), np.log(np.abs(x)))
    expr = program_to_expr([log_fn, 0], names, ("close",))
    assert str(expr) == "log(abs(close))"
