"""Alpha101 on the full market x 1 year: alphamine vs pandas, polars-ta and py-alpha-lib.

    python bench/alpha101_bench.py [--year 2021] [--no-alphalib] [--no-polars] [--pandas-all]
    python bench/run.py            # prints this comparison after the CSI300 benchmarks

Workload: the 101 alphas of :mod:`factors.alpha101` (Kakushadze 2016) on every A-share name
with a bar in the year (``universe all``), read in place from the warehouse. The default year
is 2021, the last year of ``[evaluate] valid``: 2022 onwards is the sealed test split
(:mod:`backtest.seal`), on which nothing here computes. Panels are loaded once, outside every
timed part, for every side. Sides, each timed per alpha and in total:

* **alphamine**: :func:`factors.expr_eval.evaluate` of each formula alone (fresh memo), and
  the whole set with the sub-expressions common to several formulas (``adv20``,
  ``cs_rank(vol)`` ...) computed once (``cache=``), each kept only until its last user; and
  each alone on a pool of ``os.cpu_count()`` threads (the kernels release the GIL; outputs
  checked bit-identical to the serial run); and all of them as ``mine eval --file`` runs a
  file of formulas (:mod:`mining.formula_batch`: one ``PanelMemo`` of ``[gp] cache_mb`` read
  by ``os.cpu_count()`` threads, outputs checked too). The process keeps freed panels
  (:func:`factors.allocator.keep_freed_memory`), as ``mine`` does. A side run on all 101
  alphas (``--pandas-all``, py-alpha-lib) is also divided by each of the four.
* **pandas**: the test oracle ``tests/factors/alpha101_pandas.py`` (the paper transcribed on
  wide DataFrames, same NaN policy as alphamine: windows over each stock's non-NaN rows) on
  the subset :data:`PANDAS_ALPHAS`, or with ``--pandas-all`` on all 101 (about 10 minutes;
  the ratio on the whole set and on the subset are both printed).
* **polars-ta** (``polars_ta.wq`` operators, long frame sorted by stock then date; ``ts_*``
  ``.over(ts_code)``, ``cs_*`` ``.over(trade_date)``, each node materialised with
  ``with_columns``) on the subset :data:`POLARS_ALPHAS`.
* **py-alpha-lib** (Rust, Python >= 3.12): ``bench/alpha101_alphalib.py`` in a separate
  interpreter (:func:`find_py312`) on the same panels written to a temporary ``.npz``; timing is
  measured inside that process (operator mapping, tie and warm-up rules in that file).

The other sides render the same formula trees (parsed from :data:`factors.alpha101.ALPHA101`)
with their own operators. Agreement: the mean over dates of the cross-sectional Spearman
correlation between alphamine and each side, on entries finite in both (warm-up differences
and NaN policies differ, see each side).
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import ZERO, Took, timed  # noqa: E402

from backtest.candidates import make_workspace  # noqa: E402
from factors._kernels_cs import rank_corr_rows  # noqa: E402
from factors.alpha101 import ALPHA101  # noqa: E402
from factors.allocator import keep_freed_memory  # noqa: E402
from factors.expr_eval import evaluate  # noqa: E402
from factors.expr_parse import parse  # noqa: E402
from factors.expr_tree import Call, Const, Field, walk  # noqa: E402
from mining.cli_app import load as load_config  # noqa: E402

FIELDS = ("open", "high", "low", "close", "vwap", "vol", "ret", "total_mv", "amount", "industry")
#: Alphas of the pandas side (one per operator family: correlation of ranks, Ts_Rank,
#: covariance, rank of an elementwise expression, pure elementwise).
PANDAS_ALPHAS = (2, 4, 13, 33, 101)
#: Alphas of the polars-ta side.
POLARS_ALPHAS = (2, 3, 4, 6, 12, 13, 14, 16, 33, 101)
#: Interpreter candidates for the py-alpha-lib side: ``$ALPHA101_PY312``, then ``python3.12``
#: .. ``python3.13`` on PATH, then pyenv's installs; the first that imports ``alpha`` is used.
PY312 = os.environ.get("ALPHA101_PY312", "")


def find_py312() -> str | None:
    """The first interpreter candidate (:data:`PY312`) that imports py-alpha-lib, or None."""
    cands = [PY312] if PY312 else []
    cands += [shutil.which(n) or "" for n in ("python3.12", "python3.13")]
    cands += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python3")))
    for c in filter(None, cands):
        try:
            if subprocess.run([c, "-c", "import alpha"], capture_output=True,
                              timeout=60).returncode == 0:
                return c
        except (OSError, subprocess.TimeoutExpired):
            continue
    return None
ROOT = Path(__file__).resolve().parents[1]


def load_panels(year: int):
    """(panels, universe mask, T, N) of the full market in ``year``; the load is timed apart."""
    cfg = load_config()
    ws = make_workspace(cfg, "all", f"{year}-01-01", f"{year}-12-31")
    ws.load(list(FIELDS))
    return {f: ws.field(f) for f in FIELDS}, ws.ctx.universe_mask


def formulas() -> dict[int, object]:
    return {int(f.name[5:]): parse(f.formula) for f in ALPHA101}


# ---------------------------------------------------------------------------- alphamine

def run_alphamine(exprs, data, mask):
    """Each alpha alone: (seconds per alpha, outputs)."""
    small = {k: v[:40] for k, v in data.items()}
    for e in exprs.values():  # JIT warm-up on 40 days of every name (the full-width kernels,
        evaluate(e, small, mask=mask[:40])      # e.g. the radix row sort, compile here)
    secs, outs = {}, {}
    for n, e in exprs.items():
        t, outs[n] = timed(lambda: evaluate(e, data, mask=mask))
        secs[n] = t
    return secs, outs


def run_alphamine_shared(exprs, data, mask) -> tuple[Took, int]:
    """All alphas, sub-expressions common to several formulas computed once.

    Only the operator outputs used by more than one formula are kept, each until the last
    formula that uses it has been evaluated (memory stays bounded: keeping every node of the
    101 formulas would hold ~1,000 full panels). Returns (time, number of shared nodes).
    """
    nodes = {n: {m for m in walk(e) if isinstance(m, Call)} for n, e in exprs.items()}
    uses = Counter(m for ns in nodes.values() for m in ns)

    def run():
        left, shared = dict(uses), {}
        for n, e in exprs.items():
            cache = {m: shared[m] for m in nodes[n] if m in shared}
            evaluate(e, data, mask=mask, cache=cache)
            for m in nodes[n]:
                left[m] -= 1
                if left[m] == 0:
                    shared.pop(m, None)
                elif m in cache:
                    shared[m] = cache[m]
    t, _ = timed(run)
    return t, sum(1 for k in uses.values() if k > 1)


def run_alphamine_threads(exprs, data, mask, workers: int) -> Took:
    """All alphas, each alone, on a pool of ``workers`` threads (the numba kernels and numpy
    sorts release the GIL); outputs equal the serial ones (checked by the caller)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        t, outs = timed(lambda: list(pool.map(lambda e: evaluate(e, data, mask=mask),
                                              exprs.values())))
    return t, dict(zip(exprs, outs))


def run_alphamine_memo(exprs, data, mask, workers: int, budget_bytes: int):
    """All alphas as ``mine eval --file`` evaluates a file of formulas
    (:mod:`mining.formula_batch`): one :class:`mining.gp_eval.PanelMemo` per run (``[gp]
    cache_mb``, every subtree computed once while it is kept) read by ``workers`` threads.
    Returns (time, outputs); the caller checks the outputs against the serial ones."""
    from concurrent.futures import ThreadPoolExecutor

    from mining.gp_eval import PanelMemo

    leaves = {m for e in exprs.values() for m in walk(e) if isinstance(m, Field)}
    memo = PanelMemo({f: data[f.name] for f in leaves}, mask, budget_bytes, strict=True)
    with ThreadPoolExecutor(workers) as pool:
        t, outs = timed(lambda: list(pool.map(memo.values, exprs.values())))
    return t, dict(zip(exprs, outs))


# ---------------------------------------------------------------------------- pandas

def _oracle():
    path = ROOT / "tests" / "factors" / "alpha101_pandas.py"
    spec = importlib.util.spec_from_file_location("alpha101_pandas_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_pandas(numbers, data, mask):
    mod = _oracle()
    masked = {k: np.where(mask, v, np.nan) if k != "industry" else v for k, v in data.items()}
    secs, outs = {}, {}
    for n in numbers:
        t, outs[n] = timed(lambda: mod.paper_alpha(n, masked))
        secs[n] = t
    return secs, outs


# ---------------------------------------------------------------------------- polars-ta

def run_polars(numbers, exprs, data, mask):
    import polars as pl
    import polars_ta.wq as wq

    T, N = mask.shape
    cols = {k: (np.where(mask, v, np.nan) if k != "industry" else v).T.reshape(-1)
            for k, v in data.items()}
    base = pl.DataFrame({"ts_code": np.repeat(np.arange(N), T),
                         "trade_date": np.tile(np.arange(T), N), **cols})
    base = base.with_columns([pl.col(k).fill_nan(None) for k in data])
    ts = {"ts_sum": wq.ts_sum, "ts_mean": wq.ts_mean, "ts_min": wq.ts_min, "ts_max": wq.ts_max,
          "ts_std": lambda x, d: wq.ts_std_dev(x, d, ddof=1), "ts_rank": wq.ts_rank,
          "ts_delay": wq.ts_delay, "ts_delta": wq.ts_delta, "ts_product": wq.ts_product,
          "ts_decay_linear": wq.ts_decay_linear, "ts_corr": wq.ts_corr,
          "ts_cov": wq.ts_covariance, "ts_argmax": wq.ts_arg_max, "ts_argmin": wq.ts_arg_min}
    cs = {"cs_rank": wq.cs_rank, "cs_scale": wq.cs_scale}
    ew = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
          "div": lambda a, b: a / b, "neg": lambda a: -a, "abs": wq.abs_, "sign": wq.sign,
          "log": wq.log, "power": wq.power, "signed_power": wq.signed_power,
          "max": wq.max_, "min": wq.min_,
          "lt": lambda a, b: (a < b).cast(pl.Float64), "gt": lambda a, b: (a > b).cast(pl.Float64),
          "where": lambda c, a, b: pl.when(c > 0).then(a).otherwise(b)}

    def one(expr):
        df, names = base, {}

        def col(node):
            if isinstance(node, Field):
                return pl.col(node.name)
            if isinstance(node, Const):
                return pl.lit(node.value)
            return pl.col(names[node])

        def ev(node):
            if isinstance(node, (Field, Const)) or node in names:
                return
            for a in node.args:
                ev(a)
            args = [col(a) for a in node.args]
            if node.op in ts:
                e = ts[node.op](*args, *node.windows).over("ts_code")
            elif node.op in cs:
                e = cs[node.op](*args).over("trade_date")
            elif node.op in ew:
                e = ew[node.op](*args)
            else:
                raise KeyError(node.op)
            nonlocal df
            names[node] = f"n{len(names)}"
            df = df.with_columns(e.alias(names[node]))
        ev(expr)
        return df[names[expr]].to_numpy().reshape(N, T).T

    one(exprs[101])  # warm-up
    secs, outs = {}, {}
    for n in numbers:
        t, outs[n] = timed(lambda: one(exprs[n]))
        secs[n] = t
    return secs, outs


# ---------------------------------------------------------------------------- py-alpha-lib

def tree(node) -> list:
    """Operator tree as JSON lists for the py-alpha-lib process."""
    if isinstance(node, Field):
        return ["f", node.name]
    if isinstance(node, Const):
        return ["c", node.value]
    assert isinstance(node, Call), node
    return ["op", node.op, list(node.windows), [tree(a) for a in node.args]]


def run_alphalib(exprs, data, mask, ours):
    """(seconds per alpha, Spearman agreement per alpha with ``ours``), or (None, reason) when
    python3.12 or py-alpha-lib is missing; outputs are read back one alpha at a time."""
    py = find_py312()
    if py is None:
        return None, "no Python >= 3.12 with py-alpha-lib (pip install py-alpha-lib; " \
                     "or set ALPHA101_PY312)"
    with tempfile.TemporaryDirectory(prefix="a101_") as tmp:
        src, trees, dst = (str(Path(tmp) / n) for n in ("in.npz", "trees.json", "out"))
        os.mkdir(dst)
        np.savez(src, **{k: (np.where(mask, v, np.nan) if k != "industry" else v)
                         for k, v in data.items()})
        with open(trees, "w") as fh:
            json.dump([[f"{n}", tree(e)] for n, e in exprs.items()], fh)
        try:
            p = subprocess.run([py, str(ROOT / "bench" / "alpha101_alphalib.py"), src, trees,
                                dst], capture_output=True, text=True, timeout=3600)
        except OSError as exc:
            return None, str(exc)
        if p.returncode != 0:
            return None, (p.stderr.strip().splitlines() or ["failed"])[-1]
        secs = {int(k): Took(*v) for k, v in json.loads(p.stdout.splitlines()[-1]).items()}
        rc = {n: agreement(ours[n], np.load(Path(dst) / f"{n}.npy")) for n in secs}
    return secs, rc


# ---------------------------------------------------------------------------- report

def agreement(ours: np.ndarray, other: np.ndarray) -> float:
    """Mean over dates of the cross-sectional Spearman correlation (entries finite in both)."""
    with np.errstate(all="ignore"):
        rc = rank_corr_rows(ours, other)
    return float(np.nanmean(rc)) if np.isfinite(rc).any() else float("nan")


def main(argv: list[str] | None = None) -> None:
    keep_freed_memory()                        # as `mine` does (ALPHAMINE_MALLOC=default: off)
    ap = argparse.ArgumentParser()
    ap.add_argument("--year", type=int, default=2021, help="a year before the test split")
    ap.add_argument("--no-alphalib", action="store_true", help="skip the py-alpha-lib side")
    ap.add_argument("--no-polars", action="store_true", help="skip the polars-ta side")
    ap.add_argument("--no-pandas", action="store_true", help="skip the pandas side")
    ap.add_argument("--pandas-all", action="store_true",
                    help="the pandas side on all 101 alphas (about 10 minutes on 2021) instead "
                         "of PANDAS_ALPHAS; both ratios are printed")
    args = ap.parse_args(argv)
    test_start = int(load_config().evaluate.test[0][:4])
    if args.year >= test_start:
        ap.error(f"--year {args.year} is in the sealed test split (from {test_start})")
    t_load, (data, mask) = timed(lambda: load_panels(args.year))
    T, N = mask.shape
    print(f"Alpha101, full market (universe all) {args.year}: T={T} days x N={N} names; "
          f"data load {t_load.wall:.2f}s (not timed below)")
    exprs = formulas()
    secs, ours = run_alphamine(exprs, data, mask)
    t_shared, n_shared = run_alphamine_shared(exprs, data, mask)
    workers = os.cpu_count() or 1
    t_pool, pooled = run_alphamine_threads(exprs, data, mask, workers)
    same = all(np.array_equal(pooled[n], ours[n], equal_nan=True) for n in exprs)
    del pooled
    budget = int(load_config().gp.cache_mb * 2**20)
    t_memo, memoed = run_alphamine_memo(exprs, data, mask, workers, budget)
    same_memo = all(np.array_equal(memoed[n], ours[n], equal_nan=True) for n in exprs)
    del memoed
    sides = [("alphamine, each alpha alone", secs, None)]

    def agree(s, outs):
        return {n: agreement(ours[n], outs[n]) for n in s}
    if not args.no_pandas:
        s, o = run_pandas(tuple(exprs) if args.pandas_all else PANDAS_ALPHAS, data, mask)
        sides.append(("pandas transcription (test oracle)", s, agree(s, o)))
        if args.pandas_all:
            sub = {n: s[n] for n in PANDAS_ALPHAS}
            sides.append((f"  the same, alphas {','.join(map(str, PANDAS_ALPHAS))}", sub,
                          agree(sub, o)))
        del o
    if not args.no_polars:
        s, o = run_polars(POLARS_ALPHAS, exprs, data, mask)
        sides.append(("polars-ta", s, agree(s, o)))
    if not args.no_alphalib:
        s, o = run_alphalib(exprs, data, mask, ours)
        if s is None:
            print(f"py-alpha-lib side skipped: {o}")
        else:
            sides.append(("py-alpha-lib (python3.12, own process)", s, o))
    total = sum(secs.values(), ZERO)
    print(f"{'side':42s} {'alphas':>6s} {'wall s':>8s} {'cpu s':>8s} {'am wall':>8s} "
          f"{'am cpu':>8s} {'ratio':>7s} {'cpu ratio':>9s} {'Spearman':>17s}")

    def row(name, k, t, base, extra=""):
        print(f"{name:42s} {k:6d} {t.wall:8.2f} {t.cpu:8.2f} {base.wall:8.2f} {base.cpu:8.2f} "
              f"{t.wall / base.wall:7.2f} {t.cpu / base.cpu:9.2f} {extra:>17s}")
    row("alphamine, common sub-expressions shared", len(exprs), t_shared, total,
        f"{n_shared} shared nodes")
    row(f"alphamine, alphas on {workers} threads", len(exprs), t_pool, total,
        "bit-identical" if same else "DIFFERENT")
    row(f"alphamine as mine eval --file: memo, {workers} thr", len(exprs), t_memo, total,
        "bit-identical" if same_memo else "DIFFERENT")
    for name, s, rcs in sides:
        tot = sum(s.values(), ZERO)
        base = sum((secs[n] for n in s), ZERO)
        text = ""
        if rcs is not None:
            rc = np.array([rcs[n] for n in s])
            ok = rc[np.isfinite(rc)]
            text = (f"med {np.median(ok):.3f} min {ok.min():.2f}" if len(ok) else "n/a")
        row(name, len(s), tot, base, text)
        if rcs is not None:
            low = [f"{n}:{r:.2f}" for n, r in zip(s, rc) if not r >= 0.99]
            if low:
                print("    Spearman < 0.99 (alpha:value, nan = no common finite entries): "
                      + " ".join(low))
    full = [(name, s) for name, s, _ in sides[1:] if len(s) == len(exprs)]
    for name, s in full:                        # a side on all 101: against every mode
        tot = sum(s.values(), ZERO).wall
        print(f"{name.strip()} / alphamine on all {len(exprs)} (wall): each alone "
              f"{tot / total.wall:.1f}x, shared {tot / t_shared.wall:.1f}x, {workers} threads "
              f"{tot / t_pool.wall:.1f}x, mine eval --file (memo, {workers} threads) "
              f"{tot / t_memo.wall:.1f}x")
    slow = sorted(secs.items(), key=lambda kv: -kv[1].wall)[:5]
    print("alphamine slowest alphas (wall s): "
          + ", ".join(f"{n} {t.wall:.2f}" for n, t in slow))
    print("am wall / am cpu: alphamine, each alpha alone, on the same alphas; ratio = side / "
          "alphamine (wall; cpu = process CPU time, all threads). Spearman: mean daily rank "
          "correlation with alphamine (median and min over the alphas). Load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
