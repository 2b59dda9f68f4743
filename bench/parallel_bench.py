"""Benchmark (not a test): GP fitness on 1 vs 2 workers, threads vs processes (issue 15).

    python bench/parallel_bench.py [--population 800] [--generations 8] [--jobs 2]
                                   [--cluster HOST:PORT] [--start 2014-01-01] [--rounds 2]

With ``--cluster`` a "ray" row is added: the same run on a running Ray cluster (started as in
docs/cluster.md, e.g. a head and a worker node of one CPU each on this machine, so that the
cores are equal to the local rows'); its overhead is its wall time over the threads row's.

The ``mine gp --universe csi300`` workload, by default at its ``[gp] population`` and
``generations`` (800 x 8): the CSI300 panels of ``[gp] fields`` that ``mine gp`` builds
(:func:`mining.gp_search.train_inputs`: ``[gp] start`` to the end of train, the names in the
universe then), the default diversity hook
(``[gp] diversity`` on ``[gp] diversity_sample`` train dates, hall of fame ``[gp] hof``; an
empty pool, so that nothing is read from the leaderboard) and the engine's defaults, run
through :func:`mining.gp_engine.evolve` ``--rounds`` times per backend: serial (1 worker),
threads and processes (``--jobs`` workers), each run with a fresh memo, the backends' order
reversed every other round and the fastest run of each shown (with every run's wall time).
The first full-size run in a process page-faults its heap in (about 4 s more than the next on
this host, whichever backend it is), so a single round in a fixed order favoured every backend
but the first. Printed: wall / CPU seconds, programs
scored per second (``n_programs_scored``, duplicates included, as ``bench/run.py`` counts
them), distinct programs per second (programs actually computed), the speed-up over serial
and whether the result (every candidate and its fitness) is identical to serial's. JIT
compilation is warmed up first and not timed. Targets (issue 15): >= 1.8x on 2 cores and
>= 60 distinct programs/s on 2 cores.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import timed  # noqa: E402

from backtest.candidates import make_workspace  # noqa: E402
from factors.allocator import keep_freed_memory  # noqa: E402
from factors.expr_eval import evaluate  # noqa: E402
from factors.expr_parse import parse  # noqa: E402
from factors.parallel import make_executor  # noqa: E402
from mining.cli_app import load as load_config  # noqa: E402
from mining.gp import terminal  # noqa: E402
from mining.gp_diversity import Diversity  # noqa: E402
from mining.gp_engine import evolve  # noqa: E402
from mining.gp_search import train_inputs  # noqa: E402

WARMUP = ("ts_mean(close, 5) + ts_cov(close, vol, 5) + cs_zscore(close) + cs_demean(vol)"
          " + cs_scale(vol) + ts_rank(close, 10) + ts_corr(close, vol, 10)")


def gp_workload(cfg, universe: str = "csi300", start: str | None = None):
    """(train context, fields panels) of ``mine gp --universe`` on the real data, built as
    ``mine gp`` builds them (:func:`mining.gp_search.train_inputs`: the rows up to the end of
    train, the names in the universe then), from ``start`` instead of ``[gp] start`` when
    given."""
    ws = make_workspace(cfg, universe, start or cfg.gp.start, cfg.gp.end or None)
    ws.load(list(cfg.gp.fields))
    return train_inputs(ws, cfg.evaluate.train[1], cfg.gp.fields)


def warm_up(gp_ctx, panels) -> None:
    """Compile (or load from numba's cache) every GP operator's kernels and the scoring path
    on a small slice, so that no backend pays for JIT compilation."""
    import numpy as np

    from factors.operators import all_ops
    small = {f: v[:80] for f, v in panels.items()}
    x, mask = small[next(iter(small))], gp_ctx.universe_mask[:80]
    evaluate(parse(WARMUP), small, mask=mask)
    for op in all_ops():
        if not op.gp or (op.kind == "ts" and not op.gp_windows):
            continue
        windows = (int(op.gp_windows[0]),) if op.kind == "ts" else ()
        with np.errstate(all="ignore"):
            for v in (x, np.asfortranarray(x)):     # both layouts' drivers (the memo's is F)
                try:
                    op.apply([v] * op.n_inputs, windows, mask=mask)
                except ValueError:
                    pass


def measure(cfg, gp_ctx, panels, population: int, generations: int, jobs: int,
            kinds=("serial", "threads", "processes"), address: str | None = None,
            rounds: int = 2) -> list[dict]:
    """``rounds`` GP runs per backend, the backends' order reversed every other round; the
    fastest run of each backend as a dict of timings and counts (module docstring)."""
    settings = replace(cfg.gp, population=population, generations=generations, n_jobs=jobs)
    terms = {terminal(k): v for k, v in panels.items()}
    warm_up(gp_ctx, panels)
    short = gp_ctx.restrict(gp_ctx.dates[0], gp_ctx.dates[min(299, len(gp_ctx.dates) - 1)])
    evolve({k: v[:len(short.dates)] for k, v in terms.items()}, short,
           replace(settings, population=20, generations=2), diversity=Diversity(
               short, {}, n_dates=10, hof=3, mode=settings.diversity)
           if settings.diversity != "none" else None)   # scoring and hook paths

    def hook():
        if settings.diversity == "none":
            return None
        return Diversity(gp_ctx, {}, n_dates=settings.diversity_sample, hof=settings.hof,
                         threshold=cfg.store.max_corr, mode=settings.diversity)

    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    ref = None
    for rnd in range(rounds):                  # alternate the order: no backend always runs
        for kind in (kinds if rnd % 2 == 0 else kinds[::-1]):  # first (on a cold heap)
            n = 1 if kind == "serial" else jobs
            c0 = _cpu()
            t_all = time.perf_counter()
            with make_executor(kind, n, address) as ex:   # pool start and shutdown included
                t, res = timed(lambda: evolve(terms, gp_ctx, settings, diversity=hook(),
                                              executor=ex))
            wall = time.perf_counter() - t_all
            cpu = _cpu() - c0
            got = [(str(e), f) for e, f in res.candidates]
            ref = got if ref is None else ref
            distinct = res.cache.get("programs_memoised", 0)
            runs[kind].append({"kind": kind, "workers": n, "wall": wall, "cpu": cpu,
                               "scored": res.n_programs_scored, "distinct": distinct,
                               "scored_per_s": res.n_programs_scored / wall,
                               "distinct_per_s": distinct / wall, "identical": got == ref})
    rows = [{**min(runs[k], key=lambda r: r["wall"]),
             "identical": all(r["identical"] for r in runs[k]),
             "walls": [r["wall"] for r in runs[k]]} for k in kinds]
    base, base_cpu = rows[0]["wall"], rows[0]["cpu"]
    for r in rows:
        r["speedup"] = base / r["wall"]
        r["efficiency"] = base_cpu / r["cpu"]    # serial CPU / this backend's CPU, all workers
    return rows


def machine_scaling(jobs: int, seconds: float = 0.5) -> float:
    """Wall speed-up of ``jobs`` threads over one on a pure compute loop (no memory traffic, no
    GIL): what this machine gives right now, the ceiling of any backend's speed-up. A shared
    VM's second core is often slower than the first (measured here: 1.2x-2.0x for 2 threads
    within minutes), so the GP rows are read against it."""
    import threading

    import numpy as np
    from numba import njit

    @njit(nogil=True, cache=False)
    def spin(n):
        s = 0.0
        for i in range(n):
            s += np.sqrt(i * 1.0)
        return s

    spin(10)
    n = 1_000_000
    t = time.perf_counter()
    spin(n)
    n = max(n, int(n * seconds / max(time.perf_counter() - t, 1e-6)))

    def wall(k: int) -> float:
        threads = [threading.Thread(target=spin, args=(n,)) for _ in range(k)]
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return time.perf_counter() - t0

    one = min(wall(1) for _ in range(2))
    return jobs * one / min(wall(jobs) for _ in range(2))


def _cpu() -> float:
    """CPU seconds of this process (all threads) and of its reaped children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def print_rows(rows: list[dict], title: str) -> None:
    print(title)
    print(f"{'backend':<12}{'workers':>8}{'wall s':>9}{'cpu s':>9}{'scored/s':>10}"
          f"{'distinct/s':>11}{'speed-up':>9}{'cpu eff.':>9}{'same result':>12}")
    for r in rows:
        print(f"{r['kind']:<12}{r['workers']:>8}{r['wall']:>9.2f}{r['cpu']:>9.2f}"
              f"{r['scored_per_s']:>10.1f}{r['distinct_per_s']:>11.1f}{r['speedup']:>8.2f}x"
              f"{r['efficiency']:>9.2f}{'yes' if r['identical'] else 'NO':>12}"
              f"   runs {' / '.join(f'{w:.2f}' for w in r['walls'])} s")
    print("wall: the fastest of the runs (pool start and shutdown included); cpu s: this "
          "process and its worker processes; cpu eff.: serial cpu / cpu (1 = no parallel "
          "overhead; the wall speed-up "
          "on an idle machine is at most workers x eff.); load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores")


def section(cfg, population: int | None = None, generations: int | None = None, jobs: int = 2,
            address: str | None = None, start: str | None = None, rounds: int = 2) -> None:
    """The ``bench/run.py`` section (population and generations: ``[gp]``'s by default)."""
    population = population or cfg.gp.population
    generations = generations or cfg.gp.generations
    gp_ctx, panels = gp_workload(cfg, start=start)
    T, N = gp_ctx.shape
    kinds = ("serial", "threads", "processes") + (("ray",) if address else ())
    before = machine_scaling(jobs)
    rows = measure(cfg, gp_ctx, panels, population, generations, jobs, kinds, address, rounds)
    after = machine_scaling(jobs)
    print_rows(rows, f"GP fitness, 1 vs {jobs} workers (csi300 train "
                     f"{gp_ctx.dates[0].date()}..{gp_ctx.dates[-1].date()} T={T} x N={N}, "
                     f"population {population} x {generations} generations, diversity "
                     f"{cfg.gp.diversity})")
    print(f"this machine: {jobs} threads on a pure compute loop {before:.2f}x one thread "
          f"before the rows, {after:.2f}x after (the ceiling of the speed-up column)")


def main() -> None:
    keep_freed_memory()                        # as `mine` does (ALPHAMINE_MALLOC=default: off)
    ap = argparse.ArgumentParser()
    ap.add_argument("--population", type=int, default=None,
                    help="programs per generation (default [gp] population, as mine gp)")
    ap.add_argument("--generations", type=int, default=None,
                    help="generations (default [gp] generations, as mine gp)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cluster", default=None, help="Ray head HOST:PORT: add a ray row")
    ap.add_argument("--start", default=None,
                    help="first date of the GP window (default [gp] start; 2014-01-01 is the "
                         "window of bench/run.py's GP line, where the issue's 22/s was measured)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="runs per backend, the order reversed each round; the fastest is shown")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    for opt in ("population", "generations"):
        if getattr(args, opt) is not None and getattr(args, opt) < 1:
            ap.error(f"--{opt} must be >= 1")
    section(load_config(), args.population, args.generations, args.jobs, args.cluster,
            args.start, args.rounds)


if __name__ == "__main__":
    main()
