"""Benchmarks (not tests): alphamine against the pandas implementations a user would write.

    python bench/run.py [--quick]

Prints seconds and ratios side by side: the formula ``-ts_corr(cs_rank(vol), cs_rank(close), 10)``
on CSI300 (alphamine vs pandas wide frames vs pandas long format + groupby), the full
FactorReport vs alphalens-reloaded on the same factor, labels and names (with a RankIC
agreement check), GP programs scored per second vs plain gplearn (built-in functions, long
frame, pandas groupby Spearman fitness), GP fitness on 1 vs 2 workers, threads vs
processes (:mod:`parallel_bench`, issue 15), and (not with ``--quick``) the 101 WorldQuant
alphas on the full market x 1 year vs pandas, polars-ta and py-alpha-lib
(:mod:`alpha101_bench`). Data loading is timed separately.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from alphalens_bench import (  # noqa: E402
    alphalens_end_to_end,
    alphalens_inputs,
    common_mask,
    ic_agreement,
    run_alphalens,
)
from alpha101_bench import main as alpha101_main  # noqa: E402
from gplearn_plain import long_frame, run_plain_gplearn  # noqa: E402
from parallel_bench import section as parallel_section  # noqa: E402
from timing import ZERO, best_of, timed  # noqa: E402

from backtest.candidates import make_workspace  # noqa: E402
from backtest.evaluate import evaluate_factor, rank_ic_series  # noqa: E402
from backtest.seal import default_end  # noqa: E402
from factors.expr_eval import evaluate  # noqa: E402
from factors.expr_parse import parse  # noqa: E402
from mining.cli_app import load as load_config  # noqa: E402
from mining.gp import GPSettings, run_gp  # noqa: E402

FORMULA = "-ts_corr(cs_rank(vol), cs_rank(close), 10)"
WARMUP = ("ts_mean(close, 5) + ts_cov(close, vol, 5) + cs_zscore(close) + cs_demean(vol)"
          " + cs_scale(vol)")


def pandas_wide(vol: pd.DataFrame, close: pd.DataFrame, mask: pd.DataFrame) -> pd.DataFrame:
    rv = vol.where(mask).rank(axis=1, pct=True)
    rc = close.where(mask).rank(axis=1, pct=True)
    return -rv.rolling(10).corr(rc)


def pandas_long(vol: pd.DataFrame, close: pd.DataFrame, mask: pd.DataFrame) -> pd.Series:
    df = pd.DataFrame({"vol": vol.where(mask).stack(), "close": close.where(mask).stack()})
    df.index.names = ["trade_date", "ts_code"]
    g = df.groupby(level="trade_date")
    ranks = pd.DataFrame({"rv": g["vol"].rank(pct=True), "rc": g["close"].rank(pct=True)})
    ranks = ranks.sort_index(level=["ts_code", "trade_date"])
    out = (ranks.groupby(level="ts_code", group_keys=False)
           .apply(lambda d: d["rv"].rolling(10).corr(d["rc"])))
    return -out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true",
                    help="2 years (2016-2017) instead of 2014 to the end of valid, no Alpha101 "
                         "benchmark")
    ap.add_argument("--no-alpha101", action="store_true",
                    help="skip the Alpha101 full-market benchmark (bench/alpha101_bench.py)")
    args = ap.parse_args()
    cfg = load_config()
    # never past valid: the test split is sealed (backtest.seal), benchmarks included
    start, end = ("2016-01-01", "2017-12-31") if args.quick else ("2014-01-01",
                                                                   default_end(cfg, False))
    t_load, ws = timed(lambda: make_workspace(cfg, "csi300", start, end))
    t_vc, _ = timed(lambda: ws.load(["vol", "close"]))
    T, N = ws.ctx.shape
    print(f"CSI300 {start}..{end}: T={T} days x N={N} stocks; data load "
          f"{(t_load + t_vc).wall:.2f}s")
    dates, codes = ws.ctx.dates, ws.ctx.codes
    vol = pd.DataFrame(ws.field("vol"), index=dates, columns=codes)
    close = pd.DataFrame(ws.field("close"), index=dates, columns=codes)
    mask = pd.DataFrame(ws.ctx.universe_mask, index=dates, columns=codes)
    expr = parse(FORMULA)
    data = {"vol": ws.field("vol"), "close": ws.field("close")}
    evaluate(expr, data, mask=ws.ctx.universe_mask)  # JIT warm-up
    t_am, ours = best_of(lambda: evaluate(expr, data, mask=ws.ctx.universe_mask))
    t_wide, wide = best_of(lambda: pandas_wide(vol, close, mask))
    t_long, _ = best_of(lambda: pandas_long(vol, close, mask), n=1)
    # correctness on complete windows (pandas counts NaN inside a window, alphamine skips it)
    complete = (mask.where(mask).rolling(10).count().to_numpy() == 10) & np.isfinite(
        wide.to_numpy())
    diff = np.nanmax(np.abs(ours[complete] - wide.to_numpy()[complete]))
    rows = [("formula: alphamine evaluate", t_am, t_am),
            ("formula: pandas wide", t_wide, t_am),
            ("formula: pandas long groupby", t_long, t_am)]
    evaluate_factor(ours, ws.ctx)  # warm-up (label orders)
    t_rep, _ = best_of(lambda: evaluate_factor(ours, ws.ctx, splits=("train", "valid")))
    splits = [s for s in ("train", "valid") if np.diff(ws.ctx.split_bounds(s))[0] > 0]
    rows.append((f"FactorReport {'+'.join(splits)} (h=1,5,10,20)", t_rep, t_rep))
    t_al, steps, checks = bench_alphalens(ours, ws, splits)
    rows.append(("alphalens-reloaded, same statistics", t_al, t_rep))
    ws.load(["open"])
    t_e2e = sum((alphalens_end_to_end(ours, ws.field("open"), ws.ctx, s)
                 for s in splits), ZERO)
    t_own = t_al - steps["get_clean_factor"] + t_e2e
    rows.append(("alphalens, its own fwd returns from open prices", t_own, t_rep))
    gp_ctx = ws.ctx.restrict(dates[0], cfg.evaluate.train[1])
    n = len(gp_ctx.dates)
    ws.load(list(cfg.gp.fields))
    panels = {f: ws.field(f)[:n] for f in cfg.gp.fields}
    pop, gens = (50, 1) if args.quick else (100, 2)
    small = {f: v[:60] for f, v in panels.items()}  # JIT warm-up of the ts/cs kernels
    evaluate(parse(WARMUP), small, mask=gp_ctx.universe_mask[:60])
    # one core, as plain gplearn below (n_jobs = 0 would score in worker processes: their
    # CPU and memo counters are not this process's); 2 cores: the parallel section
    t_gp, res = timed(lambda: run_gp(panels, gp_ctx, GPSettings(
        population=pop, generations=gens, seed=1, tournament_size=20, parsimony=0.001,
        n_jobs=1)))
    X, y, day = long_frame(panels, gp_ctx)
    t_plain, n_plain, _ = run_plain_gplearn(X, y, day, pop, gens)
    print(f"{'benchmark':48s} {'wall s':>8s} {'cpu s':>8s} {'ratio':>7s} {'cpu ratio':>9s}")
    for name, t, base in rows:
        print(f"{name:48s} {t.wall:8.3f} {t.cpu:8.3f} {t.wall / base.wall:7.1f} "
              f"{t.cpu / base.cpu:9.1f}")
    print(f"{'':48s} {'wall s':>8s} {'cpu s':>8s} {'prog/s':>7s} {'prog/cpu-s':>9s}")
    for name, t, k in ((f"GP programs scored, alphamine ({pop}x{gens})", t_gp,
                        res.n_programs_scored),
                       (f"GP programs scored, plain gplearn ({pop}x{gens})", t_plain, n_plain)):
        print(f"{name:48s} {t.wall:8.3f} {t.cpu:8.3f} {k / t.wall:7.1f} {k / t.cpu:9.1f}")
    n_gp = res.n_programs_scored
    print(f"GP speed-up vs plain gplearn: {t_plain.wall / n_plain / (t_gp.wall / n_gp):.1f}x "
          f"(cpu {t_plain.cpu / n_plain / (t_gp.cpu / n_gp):.1f}x); plain gplearn on "
          f"{len(y)} long rows x {X.shape[1]} fields")
    c = res.cache
    if c:
        n_ops = c["op_hits"] + c["op_misses"]
        print(f"GP memo (alphamine): duplicate programs {c['program_hits']}/{n_gp} "
              f"({c['program_hits'] / max(n_gp, 1):.0%}, stored fitness reused; "
              f"{c['program_misses'] / t_gp.wall:.1f} distinct programs/s), operator outputs "
              f"{c['op_hits']}/{n_ops} hits ({c['op_hits'] / max(n_ops, 1):.0%})")
    print(f"max |alphamine - pandas wide| on complete windows: {diff:.2e}")
    print("alphalens steps (wall s): " + ", ".join(f"{k} {v.wall:.2f}" for k, v in steps.items())
          + f"; get_clean_factor_and_forward_returns {t_e2e.wall:.2f}")
    for s, (dmax, dmean, m_ours, m_al) in checks.items():
        print(f"RankIC {s} (h=1,5,10,20, same names): max |diff| {dmax:.1e}, mean |diff| "
              f"{dmean:.1e}; mean RankIC h=1 alphamine {m_ours:.5f}, alphalens {m_al:.5f}")
    print("ratio: time / alphamine time (wall, and process CPU time); load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print()
    parallel_section(cfg, *((60, 2) if args.quick else (None, None)))  # None: [gp] defaults
    if not (args.quick or args.no_alpha101):
        print()
        alpha101_main([])


def bench_alphalens(factor: np.ndarray, ws, splits: list[str]):
    """alphalens on each split: total time, time per step, RankIC agreement per split."""
    ctx = ws.ctx
    total, steps, checks = ZERO, {}, {}
    masked = np.where(common_mask(factor, ctx), factor, np.nan)
    for s in splits:
        fac, fwd = alphalens_inputs(factor, ctx, s)
        secs, out = run_alphalens(fac, fwd)
        for k, v in secs.items():
            total = total + v
            steps[k] = steps.get(k, ZERO) + v
        lo, hi = ctx.split_bounds(s)
        ours = {h: rank_ic_series(masked, ctx, h)[lo:hi] for h in (1, 5, 10, 20)}
        checks[s] = ic_agreement(ours, out["factor_information_coefficient"], ctx.dates[lo:hi])
    return total, steps, checks


if __name__ == "__main__":
    main()
