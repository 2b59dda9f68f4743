"""``mine backtest`` as a library call: simulate ``target_positions`` and measure them.

:func:`run_backtest` simulates a targets frame (or file) in the A-share account simulator
(:mod:`backtest.simulate`), measures it against the benchmark index (:mod:`backtest.metrics`,
the test split separately), counts it as a strategy trial and deflates its Sharpe ratio for the
strategies tried (:mod:`backtest.deflated`) and writes the simulator's frames, ``yearly.csv``
and ``performance.json`` into a fresh run folder (:mod:`backtest.run_dirs`).
:func:`run_microcap` first builds the micro-cap preset's targets
(:func:`backtest.strategies.microcap_targets`), writes them into its run folder (and points
``<out_dir>/latest`` there), then does the same. Both return a :class:`BacktestRun`, whose
:meth:`BacktestRun.to_dict` is ``performance.json``; neither prints (``on_progress``).
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from backtest.combine_run import IN_SAMPLE_NOTE
from backtest.errors import BacktestError
from backtest.settings import BacktestConfig
from data.io import write_json_atomic

__all__ = ["SURVIVORSHIP_NOTE", "BacktestRunSettings", "MicrocapSettings", "BacktestRun",
           "run_backtest", "run_microcap", "normalise_codes"]

SURVIVORSHIP_NOTE = ("the sample warehouse holds only stocks still listed in 2026-05 (survivors): "
                     "delisted names are missing, so results look too good, above all for small "
                     "and micro caps")

Progress = Optional[Callable[[str], None]]


def _pick(base, overrides: dict):
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class BacktestRunSettings:
    """Window, benchmark, cash and output folder of one simulation."""
    benchmark: str
    start: str
    end: str                                   # clipped to the warehouse's last trading day
    cash: Optional[float] = None               # None: [backtest] init_cash
    out_dir: Path = BacktestConfig.out_dir     # root of the run folders
    out: Optional[Path] = None                 # explicit folder (refused when not empty)
    force: bool = False
    selected: bool = True                      # targets come from leaderboard selection

    @classmethod
    def from_config(cls, bt: BacktestConfig, **overrides: Any) -> "BacktestRunSettings":
        """``[backtest]`` defaults, replaced by every override that is not None."""
        return _pick(cls(benchmark=bt.benchmark, start=bt.start, end=bt.end,
                         out_dir=Path(bt.out_dir)), overrides)


@dataclass(frozen=True)
class MicrocapSettings:
    """The micro-cap preset (reference/microcap-strategy.md): size band, names, schedule."""
    universe: str
    mv_min: float                              # yuan
    mv_max: float                              # yuan
    hold: int
    every: int

    @classmethod
    def from_config(cls, bt: BacktestConfig, **overrides: Any) -> "MicrocapSettings":
        return _pick(cls(universe=bt.microcap_universe, mv_min=bt.microcap_mv_min,
                         mv_max=bt.microcap_mv_max, hold=bt.microcap_hold,
                         every=bt.microcap_every), overrides)


@dataclass
class BacktestRun:
    """Result of :func:`run_backtest` / :func:`run_microcap`; :meth:`to_dict` is
    ``performance.json``."""
    run_id: str
    out_dir: Path
    strategy: str
    benchmark: str
    init_cash: float
    performance: dict
    benchmark_performance: dict
    test_performance: Optional[dict]
    test_benchmark_performance: Optional[dict]
    yearly: list[dict]
    n_trades: int
    n_rejected: int
    rejected_by_reason: dict
    costs: dict
    final_nav: float
    seconds: dict
    note: str
    nav: pd.Series = field(repr=False, default=None)
    deflated_sharpe: Optional[dict] = None     # backtest.metrics.DeflatedSharpe.to_dict()

    def to_dict(self) -> dict:
        keys = ("strategy", "benchmark", "init_cash", "performance", "benchmark_performance",
                "test_performance", "test_benchmark_performance", "yearly", "n_trades",
                "n_rejected", "rejected_by_reason", "costs", "final_nav", "seconds",
                "deflated_sharpe")
        d = {k: getattr(self, k) for k in keys}
        d.update(out_dir=str(self.out_dir), note=self.note, run_id=self.run_id)
        return d


def _clip_end(dm, end: str) -> str:
    return min(end, str(dm.calendar()[-1].date()))


def run_backtest(cfg, targets: pd.DataFrame | str | os.PathLike,
                 settings: BacktestRunSettings, *, dm=None,
                 on_progress: Progress = None) -> BacktestRun:
    """Simulate ``targets`` (a frame, or a .parquet / .csv file) on ``[start, end]``.

    Results go to a fresh folder ``<out_dir>/backtest-<targets name>-<run id>`` (or the
    explicit ``settings.out``).

    Raises
    ------
    AlphamineError
        Unreadable targets, no targets in the window, an unknown benchmark, an explicit
        ``out`` that holds results.
    """
    from backtest.run_dirs import discard_if_empty, run_folder
    from backtest.strategies import read_targets

    say = on_progress or (lambda m: None)
    if isinstance(targets, pd.DataFrame):
        tg, kind = targets, "backtest-" + (str(targets["strategy_name"].iloc[0])
                                           if "strategy_name" in targets and len(targets)
                                           else "custom")
    else:
        tg = read_targets(targets)
        kind = f"backtest-{Path(targets).parent.name}_{Path(targets).stem}"
    out, run_id = run_folder(settings.out_dir, kind, settings.out, force=settings.force)
    try:
        return _simulate(cfg, tg, settings, out, run_id, dm, say)
    except BaseException:
        discard_if_empty(out)
        raise


def run_microcap(cfg, preset: MicrocapSettings, settings: BacktestRunSettings, *, dm=None,
                 on_progress: Progress = None) -> BacktestRun:
    """The micro-cap preset: targets (written to the run folder, ``latest`` pointed at it)
    then :func:`run_backtest`'s simulation. ``settings.selected`` is ignored (False)."""
    from backtest.run_dirs import discard_if_empty, run_folder, write_latest
    from backtest.strategies import microcap_targets, write_targets
    from data.manager import DataManager

    say = on_progress or (lambda m: None)
    out, run_id = run_folder(settings.out_dir, "microcap", settings.out, force=settings.force)
    try:
        dm = dm or DataManager.from_config(cfg)
        end = _clip_end(dm, settings.end)
        say("building micro-cap targets")
        tg = microcap_targets(dm, settings.start, end, mv_min=preset.mv_min,
                              mv_max=preset.mv_max, hold=preset.hold, every=preset.every,
                              universe=preset.universe)
        write_targets(tg, out / "targets")
        run = _simulate(cfg, tg, replace(settings, end=end, selected=False), out, run_id, dm,
                        say)
    except BaseException:
        discard_if_empty(out)
        raise
    write_latest(settings.out_dir, out)
    return run


def normalise_codes(targets: pd.DataFrame, known, say=None) -> pd.DataFrame:
    """``targets`` with every ``ts_code`` a code of the warehouse (``known``).

    A lower-case exchange suffix (``600000.sh``) and a bare six-digit code (``600000``) are
    mapped to the one known code they can mean, and ``say`` is told how many were; anything
    else is an error naming the codes (before, unknown codes were simulated as "suspended"
    every day, giving a flat NAV without a word).

    Raises
    ------
    BacktestError
        Codes that match no known code, or a bare code that matches several.
    """
    known = pd.Index(pd.Series(known, dtype=str).unique())
    codes = pd.Series(targets["ts_code"].astype(str).unique())
    if codes.isin(known).all():
        return targets
    by_symbol: dict[str, list[str]] = {}
    for k in known:
        by_symbol.setdefault(k.split(".")[0], []).append(k)
    upper = {k.upper(): k for k in known}
    mapping, unknown, ambiguous = {}, [], []
    for c in codes[~codes.isin(known)]:
        c2 = c.strip()
        if c2.upper() in upper:
            mapping[c] = upper[c2.upper()]
        elif c2.isdigit() and len(by_symbol.get(c2.zfill(6), [])) == 1:
            mapping[c] = by_symbol[c2.zfill(6)][0]
        elif c2.isdigit() and by_symbol.get(c2.zfill(6)):
            ambiguous.append(c)
        else:
            unknown.append(c)
    if unknown or ambiguous:
        parts = []
        if unknown:
            parts.append(f"{len(unknown)} unknown ts_code(s): {', '.join(sorted(unknown)[:10])}")
        if ambiguous:
            parts.append(f"ambiguous without exchange suffix: {', '.join(sorted(ambiguous)[:10])}")
        raise BacktestError("targets: " + "; ".join(parts) + " (use codes such as 600000.SH "
                            "that are in the warehouse's stock_basic)")
    if say is not None:
        say(f"targets: {len(mapping)} code(s) normalised, e.g. {next(iter(mapping))} -> "
            f"{next(iter(mapping.values()))}")
    out = targets.copy()
    out["ts_code"] = out["ts_code"].astype(str).replace(mapping)
    dup = out.duplicated(["trade_date", "ts_code"])
    if dup.any():
        r = out[dup].iloc[0]
        raise BacktestError(f"targets: after normalising codes, {r.ts_code} appears twice on "
                            f"{pd.Timestamp(r.trade_date).date()}")
    return out


def _simulate(cfg, targets: pd.DataFrame, s: BacktestRunSettings, out: Path, run_id: str,
              dm, say) -> BacktestRun:
    from backtest.metrics import benchmark_nav, performance, yearly_table
    from backtest.simulate import MarketData, SimConfig, simulate
    from data.manager import DataManager

    dm = dm or DataManager.from_config(cfg)
    start, end, benchmark = s.start, _clip_end(dm, s.end), s.benchmark
    dm.index_daily(benchmark, start, end)            # unknown code -> DataError listing them
    tg = targets[(targets.trade_date >= pd.Timestamp(start))
                 & (targets.trade_date <= pd.Timestamp(end))]
    if tg.empty:
        raise BacktestError(f"no targets dated between {start} and {end}")
    tg = normalise_codes(tg, dm.stock_basic()["ts_code"], say)
    t0 = time.perf_counter()
    codes = sorted(tg.ts_code.unique())
    first = str(tg.trade_date.min().date())
    say(f"loading market data for {len(codes)} stocks")
    market = MarketData.from_dm(dm, codes, first, end)
    t1 = time.perf_counter()
    sim_cfg = SimConfig.from_config(cfg.backtest)
    if s.cash:
        sim_cfg = replace(sim_cfg, init_cash=float(s.cash))
    say("simulating")
    res = simulate(tg, market, sim_cfg)
    t2 = time.perf_counter()
    res.save(out)
    bench = benchmark_nav(dm, benchmark, res.nav.index)
    perf = performance(res.nav, trades=res.trades, benchmark=bench, benchmark_name=benchmark)
    bperf = performance(bench)
    ev = cfg.evaluate
    splits = {"train": ev.train, "valid": ev.valid, "test": ev.test}
    test = res.nav[res.nav.index >= pd.Timestamp(ev.test[0])]
    test_perf = test_bench = None
    if len(test) > 2 and res.nav.index[0] < pd.Timestamp(ev.test[0]):
        prev = res.nav[res.nav.index < pd.Timestamp(ev.test[0])]
        base = pd.concat([prev.iloc[-1:], test]) if len(prev) else test
        bb = benchmark_nav(dm, benchmark, base.index)
        test_perf = performance(base, benchmark=bb, benchmark_name=benchmark).to_dict()
        test_bench = performance(bb).to_dict()
    yt = yearly_table(res.nav, bench, splits=splits)
    yt.to_csv(out / "yearly.csv")
    costs = res.costs.sum()
    run = BacktestRun(
        run_id=run_id, out_dir=out,
        strategy=str(tg["strategy_name"].iloc[0]) if "strategy_name" in tg else "custom",
        benchmark=benchmark, init_cash=sim_cfg.init_cash,
        performance=perf.to_dict(), benchmark_performance=bperf.to_dict(),
        test_performance=test_perf, test_benchmark_performance=test_bench,
        yearly=json.loads(yt.reset_index().to_json(orient="records")),
        n_trades=int(len(res.trades)), n_rejected=int(len(res.rejected)),
        rejected_by_reason={str(k): int(v) for k, v in
                            res.rejected["reason"].value_counts().items()}
        if len(res.rejected) else {},
        costs={k: float(v) for k, v in costs.items()},
        final_nav=float(res.nav.iloc[-1]),
        seconds={"load": round(t1 - t0, 2), "simulate": round(t2 - t1, 2)},
        note=((IN_SAMPLE_NOTE.format(valid=" to ".join(ev.valid), test=" to ".join(ev.test))
               + "; ") if s.selected else "") + SURVIVORSHIP_NOTE,
        nav=res.nav)
    if getattr(cfg, "store", None) is not None:     # count the trial, deflate its Sharpe
        from backtest.deflated import charge_backtest
        run.deflated_sharpe = charge_backtest(
            cfg.store.path, res.nav, tg, strategy=run.strategy, start=start, end=end,
            universe=str(tg["universe"].iloc[0]) if "universe" in tg else None,
            run_id=run_id, out_dir=out).to_dict()
    write_json_atomic(out / "performance.json", run.to_dict())
    return run
