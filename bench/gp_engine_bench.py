"""Benchmark (not a test): alphamine's GP engine against the gplearn engine, same work.

    python bench/gp_engine_bench.py [--T 1000] [--N 300] [--population 300] [--generations 4]

Both engines search the same synthetic panels (random-walk close, lognormal vol, returns; the
label is ``-ts_mean(ret, 5)`` plus noise, so there is something to find) with the same
operator registry, population, generations, seed, parsimony and memo budget
(``cache_mb``); fitness is |mean train RankIC| x coverage in both. Printed side by side:
wall and CPU seconds per 1000 programs scored, and the best train fitness found. JIT
compilation is warmed up first and not timed.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import timed  # noqa: E402

from backtest.context import EvalContext  # noqa: E402
from factors.expr_tree import Field  # noqa: E402
from factors.operators import get_op  # noqa: E402
from mining.gp import GPSettings, run_gp  # noqa: E402
from mining.gp_engine import evolve  # noqa: E402


def synthetic(T: int, N: int, seed: int = 0):
    """(context, panels): a train split on the first 80 % of ``T`` days."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2012-01-02", periods=T)
    codes = pd.Index([f"{600000 + i}.SH" for i in range(N)])
    ret = rng.normal(0, 0.02, (T, N))
    close = 10 * np.exp(np.cumsum(ret, axis=0))
    vol = rng.lognormal(10, 1, (T, N))
    planted = np.nan_to_num(-get_op("ts_mean").apply([ret], (5,)))
    z = (planted - planted.mean(axis=1, keepdims=True)) / (planted.std(axis=1, keepdims=True)
                                                            + 1e-12)
    fwd = 0.005 * z + rng.normal(0, 0.02, (T, N))
    opn = np.full((T, N), 10.0)
    for t in range(T - 2):
        opn[t + 2] = opn[t + 1] * (1 + fwd[t])
    cut = int(T * 0.8)
    ctx = EvalContext.from_arrays(dates, codes, opn, np.ones((T, N), bool),
                                  np.ones((T, N), bool), {"train": (dates[0], dates[cut])},
                                  horizons=(1,), horizon=1, embargo=2)
    return ctx, {"close": close, "vol": vol, "ret": ret}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, default=1000)
    ap.add_argument("--N", type=int, default=300)
    ap.add_argument("--population", type=int, default=300)
    ap.add_argument("--generations", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    ctx, panels = synthetic(args.T, args.N)
    s = GPSettings(population=args.population, generations=args.generations, seed=args.seed,
                   n_jobs=1)
    warm = replace(s, population=20, generations=1)       # JIT warm-up of every kernel
    run_gp(panels, ctx, replace(warm, engine="gplearn"))
    evolve({Field(k): v for k, v in panels.items()}, ctx, warm)
    t_gl, r_gl = timed(lambda: run_gp(panels, ctx, replace(s, engine="gplearn")))
    t_am, r_am = timed(lambda: evolve({Field(k): v for k, v in panels.items()}, ctx, s))
    print(f"synthetic T={args.T} x N={args.N}, population {args.population} x "
          f"{args.generations} generations, seed {args.seed}, cache_mb {s.cache_mb:g}")
    print(f"{'engine':<12}{'programs':>10}{'wall s/1000':>14}{'cpu s/1000':>13}"
          f"{'best fitness':>15}")
    for name, t, r in (("gplearn", t_gl, r_gl), ("alphamine", t_am, r_am)):
        k = max(r.n_programs_scored, 1) / 1000
        best = r.candidates[0][1] if r.candidates else float("nan")
        print(f"{name:<12}{r.n_programs_scored:>10}{t.wall / k:>14.2f}{t.cpu / k:>13.2f}"
              f"{best:>15.4f}")
    per_gl = t_gl.wall / max(r_gl.n_programs_scored, 1)
    per_am = t_am.wall / max(r_am.n_programs_scored, 1)
    print(f"speed-up (wall per program): {per_gl / per_am:.2f}x")


if __name__ == "__main__":
    main()
