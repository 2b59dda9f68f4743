"""``mine backtest`` as a library call: simulate ``target_positions`` and measure them.

:func:`run_backtest` simulates a targets frame (or file) in the A-share account simulator
(:mod:`backtest.simulate`), measures it against the benchmark index (:mod:`backtest.metrics`,
the test split separately), counts it as a strategy trial and deflates its Sharpe ratio for the
strategies tried (:mod:`backtest.deflated`) and writes the simulator's frames, ``yearly.csv``
and ``performance.json`` into a fresh run folder (:mod:`backtest.run_dirs`: written whole, a
killed run leaves none).
:func:`run_microcap` first builds the micro-cap preset's targets
(:func:`backtest.strategies.microcap_targets`), writes them into its run folder (and points
``<out_dir>/latest`` there), then does the same. Both return a :class:`BacktestRun`, whose
:meth:`BacktestRun.to_dict` is ``performance.json``; neither prints (``on_progress``).
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from backtest.caveats import IN_SAMPLE_NOTE, SURVIVORSHIP_NOTE, join_notes, st_caveat
from backtest.errors import BacktestError
from backtest.settings import BacktestConfig
from data.io import write_csv_atomic, write_json_atomic
from data.manifest import RunRecorder, file_digest, frame_digest

__all__ = ["BacktestRunSettings", "MicrocapSettings", "BacktestRun",
           "run_backtest", "run_microcap", "normalise_codes", "measure",
           "write_run_manifest"]

Progress = Optional[Callable[[str], None]]


def _pick(base, overrides: dict):
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class BacktestRunSettings:
    """Window, benchmark, cash and output folder of one simulation."""
    benchmark: str
    start: str
    end: Optional[str]                         # None: end of valid (sealed) / of test; clipped
    cash: Optional[float] = None               # None: [backtest] init_cash
    out_dir: Path = BacktestConfig.out_dir     # root of the run folders
    out: Optional[Path] = None                 # explicit folder (refused when not empty)
    force: bool = False
    selected: bool = True                      # targets come from leaderboard selection
    unseal_test: bool = False                  # the window may reach the test split (logged)

    @classmethod
    def from_config(cls, bt: BacktestConfig, **overrides: Any) -> "BacktestRunSettings":
        """``[backtest]`` defaults, replaced by every override that is not None."""
        return _pick(cls(benchmark=bt.benchmark, start=bt.start, end=bt.end or None,
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
    audit_id: Optional[int] = None             # the test-split access, when there was one
    nav: pd.Series = field(repr=False, default=None)
    deflated_sharpe: Optional[dict] = None     # backtest.metrics.DeflatedSharpe.to_dict()

    def to_dict(self) -> dict:
        keys = ("strategy", "benchmark", "init_cash", "performance", "benchmark_performance",
                "test_performance", "test_benchmark_performance", "yearly", "n_trades",
                "n_rejected", "rejected_by_reason", "costs", "final_nav", "seconds",
                "audit_id", "deflated_sharpe")
        d = {k: getattr(self, k) for k in keys}
        d["test_unsealed"] = self.audit_id is not None
        d.update(out_dir=str(self.out_dir), note=self.note, run_id=self.run_id)
        return d


def _window_end(cfg, dm, s: "BacktestRunSettings") -> str:
    """The window's last day: ``s.end`` or the default (:func:`backtest.seal.default_end`),
    clipped to the data; SealedError when it reaches the test split without the flag."""
    from backtest.seal import check_window, default_end
    end = min(s.end or default_end(cfg, s.unseal_test), str(dm.calendar()[-1].date()))
    if not s.unseal_test:
        check_window(cfg, end, None, "mine backtest")
    return end


def _subject(targets) -> dict:
    """What a backtest's audit row is about: the targets file and, for a ``mine combine`` run
    folder, its member formulas (so the leaderboard counts the look per factor)."""
    if isinstance(targets, pd.DataFrame):
        return {"targets": "in-memory"}
    p = Path(targets)
    out: dict = {"targets": str(p)}
    meta = p.parent / "combine.json"
    if meta.is_file():
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
            out["formulas"] = [m["formula"] for m in info.get("members", []) if "formula" in m]
            out["universe"] = str(info["universe"])
        except (OSError, ValueError, TypeError, KeyError):
            pass                              # the audit still names the file
    return out


def run_backtest(cfg, targets: pd.DataFrame | str | os.PathLike,
                 settings: BacktestRunSettings, *, dm=None,
                 on_progress: Progress = None,
                 argv: Optional[Sequence[str]] = None) -> BacktestRun:
    """Simulate ``targets`` (a frame, or a .parquet / .csv file) on ``[start, end]``.

    Results go to a fresh folder ``<out_dir>/backtest-<targets name>-<run id>`` (or the
    explicit ``settings.out``). The window ends at the end of valid by default; one that
    reaches the test split needs ``settings.unseal_test`` and is logged
    (:mod:`backtest.seal`) with the test performance it showed. The run's manifest
    (:mod:`data.manifest`; ``argv``: the ``mine`` command line, for ``mine rerun``) records
    the targets file and its digest and the digests of NAV, trades, rejections, costs and
    positions.

    Raises
    ------
    SealedError
        A window into the test split without ``unseal_test`` (checked before any file is
        read or written).
    AlphamineError
        Unreadable targets, no targets in the window, an unknown benchmark, an explicit
        ``out`` that holds results.
    """
    from backtest.run_dirs import check_finished, run_folder
    from backtest.targets import read_targets

    from data.manager import DataManager

    say = on_progress or (lambda m: None)
    dm = dm or DataManager.from_config(cfg)
    settings = replace(settings, end=_window_end(cfg, dm, settings))
    manifest = RunRecorder("backtest", cfg, argv=argv, settings=settings,
                           window=(settings.start, settings.end))
    if isinstance(targets, pd.DataFrame):
        tg, kind = targets, "backtest-" + (str(targets["strategy_name"].iloc[0])
                                           if "strategy_name" in targets and len(targets)
                                           else "custom")
        source = {"path": None, **frame_digest(tg)}
    else:
        tg = read_targets(check_finished(targets))
        kind = f"backtest-{Path(targets).parent.name}_{Path(targets).stem}"
        source = {"path": str(Path(targets).resolve()), **file_digest(targets)}
    folder = run_folder(settings.out_dir, kind, settings.out, force=settings.force)
    try:
        run = _simulate(cfg, tg, settings, folder.path, folder.final, folder.run_id, dm, say,
                        _subject(targets))
        folder.commit()
    except BaseException:
        folder.discard()
        raise
    write_run_manifest(manifest, run, inputs={"targets": source})
    return run


def write_run_manifest(manifest: RunRecorder, run: "BacktestRun", inputs=None,
                    files: tuple[str, ...] = ()) -> None:
    """Write the run's manifest: digests of the simulator's frames (and ``files``) in its folder."""
    names = (*files, "nav", "trades", "rejected", "costs", "positions", "corporate")
    manifest.write(run.run_id, inputs=inputs, outputs={"out_dir": run.out_dir}, results={
        "files": {n: file_digest(run.out_dir / f"{n}.parquet") for n in names},
        "performance": run.performance, "final_nav": run.final_nav,
        "summary": {"final_nav": run.final_nav, "n_trades": run.n_trades,
                    "n_rejected": run.n_rejected}})


def run_microcap(cfg, preset: MicrocapSettings, settings: BacktestRunSettings, *, dm=None,
                 on_progress: Progress = None,
                 argv: Optional[Sequence[str]] = None) -> BacktestRun:
    """The micro-cap preset: targets (written to the run folder, ``latest`` pointed at it)
    then :func:`run_backtest`'s simulation. ``settings.selected`` is ignored (False). The
    manifest (``argv``: the command line) also digests the targets."""
    from backtest.run_dirs import run_folder, write_latest
    from backtest.strategies import microcap_targets
    from backtest.targets import write_targets
    from data.manager import DataManager

    say = on_progress or (lambda m: None)
    dm = dm or DataManager.from_config(cfg)
    end = _window_end(cfg, dm, settings)
    manifest = RunRecorder("backtest", cfg, argv=argv, settings={
        "preset": asdict(preset), **asdict(settings)}, window=(settings.start, end))
    folder = run_folder(settings.out_dir, "microcap", settings.out, force=settings.force)
    try:
        say("building micro-cap targets")
        tg = microcap_targets(dm, settings.start, end, mv_min=preset.mv_min,
                              mv_max=preset.mv_max, hold=preset.hold, every=preset.every,
                              universe=preset.universe)
        write_targets(tg, folder.path / "targets")
        run = _simulate(cfg, tg, replace(settings, end=end, selected=False), folder.path,
                        folder.final, folder.run_id, dm, say,
                        {"preset": "microcap", "universe": preset.universe})
        folder.commit()
    except BaseException:
        folder.discard()
        raise
    write_latest(settings.out_dir, folder.final)
    write_run_manifest(manifest, run, files=("targets",))
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


def _simulate(cfg, targets: pd.DataFrame, s: BacktestRunSettings, stage: Path, out: Path,
              run_id: str, dm, say, subject: dict) -> BacktestRun:
    """The simulation and its measures; files go to ``stage``, the record names ``out``."""
    from backtest.seal import in_test, unseal
    from backtest.simulate import MarketData, SimConfig, simulate

    start, end, benchmark = s.start, s.end, s.benchmark
    dm.index_daily(benchmark, start, end)            # unknown code -> DataError listing them
    tg = targets[(targets.trade_date >= pd.Timestamp(start))
                 & (targets.trade_date <= pd.Timestamp(end))]
    if tg.empty:
        raise BacktestError(f"no targets dated between {start} and {end}")
    tg = normalise_codes(tg, dm.stock_basic()["ts_code"], say)
    access = None
    if in_test(cfg, end):                 # s.unseal_test is set (checked by _window_end)
        access = unseal(cfg, purpose="research", universe=subject.get("universe"),
                        subject={**subject, "run_id": run_id, "command": "backtest"},
                        window=(start, end))
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
    return measure(cfg, dm, res, tg, s, stage, out, run_id,
                   strategy=str(tg["strategy_name"].iloc[0]) if "strategy_name" in tg
                   else "custom", init_cash=sim_cfg.init_cash,
                   seconds={"load": round(t1 - t0, 2), "simulate": round(t2 - t1, 2)},
                   access=access)


def measure(cfg, dm, res, tg: pd.DataFrame, s: BacktestRunSettings, stage: Path, out: Path,
            run_id: str, *, strategy: str, init_cash: float | None = None,
            seconds: dict | None = None, access=None, extra_notes: Sequence[str] = ()
            ) -> BacktestRun:
    """Measure a simulation (:class:`backtest.simulate.SimResult`) as ``mine backtest`` does
    and write its files into ``stage``: the simulator's frames, ``yearly.csv`` and
    ``performance.json``; count it as a strategy trial (deflated Sharpe).

    Parameters
    ----------
    res : SimResult
    tg : DataFrame
        The simulated positions as ``trade_date, ts_code, target_weight`` (the trial's
        digest; ``universe`` column optional).
    s : BacktestRunSettings
        Window (``start``, ``end``), benchmark, ``selected``.
    access : backtest.seal.Access, optional
        Needed when the NAV reaches the test split.

    Returns
    -------
    BacktestRun
    """
    from backtest.metrics import benchmark_nav, performance, yearly_table
    start, end, benchmark = s.start, s.end, s.benchmark
    if init_cash is None:
        init_cash = float(res.nav_exec.iloc[0]) if len(res.nav_exec) else 0.0
    bench = benchmark_nav(dm, benchmark, res.nav.index)
    res.save(stage, benchmark=bench)
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
    write_csv_atomic(yt, stage / "yearly.csv")
    costs = res.costs.sum()
    run = BacktestRun(
        run_id=run_id, out_dir=out,
        strategy=strategy, benchmark=benchmark, init_cash=float(init_cash),
        performance=perf.to_dict(), benchmark_performance=bperf.to_dict(),
        test_performance=test_perf, test_benchmark_performance=test_bench,
        yearly=json.loads(yt.reset_index().to_json(orient="records")),
        n_trades=int(len(res.trades)), n_rejected=int(len(res.rejected)),
        rejected_by_reason={str(k): int(v) for k, v in
                            res.rejected["reason"].value_counts().items()}
        if len(res.rejected) else {},
        costs={k: float(v) for k, v in costs.items()},
        final_nav=float(res.nav.iloc[-1]),
        seconds=dict(seconds or {}),
        note=join_notes(IN_SAMPLE_NOTE.format(valid=" to ".join(ev.valid),
                                              test=" to ".join(ev.test)) if s.selected else "",
                        SURVIVORSHIP_NOTE, st_caveat(dm), *extra_notes),
        audit_id=None if access is None else access.audit_id, nav=res.nav)
    if access is not None:
        access.seen({"performance": run.performance, "test_performance": test_perf,
                     "test_benchmark_performance": test_bench,
                     "yearly_test": [r for r in run.yearly if r.get("period") == "test"]})
    if getattr(cfg, "store", None) is not None:     # count the trial, deflate its Sharpe
        from backtest.deflated import charge_backtest
        run.deflated_sharpe = charge_backtest(
            cfg.store.path, res.nav, tg, strategy=run.strategy, start=start, end=end,
            universe=str(tg["universe"].iloc[0]) if "universe" in tg else None,
            run_id=run_id, out_dir=out).to_dict()
    write_json_atomic(stage / "performance.json", run.to_dict())
    return run
