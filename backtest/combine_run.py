"""``mine combine`` as a library call: leaderboard -> composite score -> ``target_positions``.

:func:`run_combine` takes a :class:`CombineSettings` (built from ``[backtest]`` plus
overrides by :meth:`CombineSettings.from_config`), writes ``score``, ``factor_weights``,
``targets`` (.parquet + .csv) and ``combine.json`` into a fresh run folder
(:mod:`backtest.run_dirs`: written whole, a killed run leaves none), points
``<out_dir>/latest`` at it once it is complete and returns a
:class:`CombineRun`, whose :meth:`CombineRun.to_dict` is the content of ``combine.json``.
It never prints: progress goes through ``on_progress(message)``.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from backtest.caveats import IN_SAMPLE_NOTE, join_notes, st_caveat
from backtest.combine import METHODS
from backtest.errors import BacktestError
from backtest.settings import BacktestConfig
from data.io import write_json_atomic
from data.manifest import RunRecorder, file_digest

__all__ = ["STRATEGIES", "NEUTRALIZERS", "CombineSettings",
           "CombineRun", "run_combine"]

STRATEGIES = ("topn", "topk")
NEUTRALIZERS = ("industry", "size")

Progress = Optional[Callable[[str], None]]


@dataclass(frozen=True)
class CombineSettings:
    """What ``mine combine`` runs: members, weighting, strategy, window and output folder."""
    universe: str
    method: str
    top: int
    max_corr: float
    neutral: tuple[str, ...]
    window: int
    strategy: str
    n: int
    n_drop: int
    rebalance: str
    start: str
    end: Optional[str]                         # None: end of valid (sealed) / test / latest
    max_weight: float = 0.0
    max_industry_weight: float = 0.0
    turnover_budget: float = 10.0              # topk: annual one-way turnover (x NAV); 0 = none
    refit: int = 250                           # ridge / lgbm: days between refits
    min_train: int = 250                       # ridge / lgbm: label days before the first fit
    ridge_alpha: float = 0.1
    num_threads: int = 1
    out_dir: Path = BacktestConfig.out_dir     # root of the run folders
    out: Optional[Path] = None                 # explicit folder (refused when not empty)
    force: bool = False
    include_forced: bool = False               # also use forced (past-the-gate) entries
    unseal_test: bool = False                  # research window may reach the test split
    live: bool = False                         # production: through the latest day (end ignored)

    @classmethod
    def from_config(cls, bt: BacktestConfig, **overrides: Any) -> "CombineSettings":
        """``[backtest]`` defaults, replaced by every override that is not None."""
        base = cls(universe=bt.universe, method=bt.method, top=bt.top, max_corr=bt.max_corr,
                   neutral=(), window=bt.ic_window, strategy=bt.strategy, n=bt.n,
                   n_drop=bt.n_drop, rebalance=str(bt.rebalance), start=bt.start,
                   end=bt.end or None, turnover_budget=bt.turnover_budget, refit=bt.refit,
                   min_train=bt.min_train, ridge_alpha=bt.ridge_alpha,
                   num_threads=bt.num_threads,
                   out_dir=Path(bt.out_dir))
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def effective_n_drop(self) -> int:
        """TopK-dropout replacements per rebalance: ``n_drop`` capped by the turnover budget
        (:func:`backtest.strategies.budget_n_drop`)."""
        from backtest.strategies import budget_n_drop
        return budget_n_drop(self.turnover_budget, self.n, self.rebalance, self.n_drop)

    def learn_kwargs(self, use_test_labels: bool = False) -> dict:
        """Options of the ridge / lgbm combiners (:func:`backtest.combine.combine_panels`)."""
        return dict(refit=self.refit, min_train=self.min_train, ridge_alpha=self.ridge_alpha,
                    num_threads=self.num_threads, use_test_labels=use_test_labels)


@dataclass
class CombineRun:
    """Result of :func:`run_combine`; :meth:`to_dict` is ``combine.json``."""
    run_id: str
    out_dir: Path
    settings: CombineSettings
    horizon: int
    start: str
    end: str
    members: list[dict]
    dropped: list[dict]
    rebalance_days: int
    target_days: int
    mean_names: float
    files: dict[str, str]
    seconds: float
    note: str
    audit_id: Optional[int] = None             # the test-split access, when there was one
    targets: pd.DataFrame = field(repr=False, default=None)

    def to_dict(self) -> dict:
        s = self.settings
        return {"universe": s.universe, "method": s.method, "window": s.window,
                "horizon": self.horizon, "neutralize": list(s.neutral),
                "include_forced": s.include_forced,
                "strategy": s.strategy, "n": s.n, "rebalance": str(s.rebalance),
                "turnover_budget": s.turnover_budget,
                "n_drop": s.effective_n_drop() if s.strategy == "topk" else None,
                "start": self.start, "end": self.end, "members": self.members,
                "dropped": self.dropped, "rebalance_days": self.rebalance_days,
                "target_days": self.target_days, "mean_names": self.mean_names,
                "files": self.files, "seconds": self.seconds, "note": self.note,
                "run_id": self.run_id, "out_dir": str(self.out_dir), "live": s.live,
                "test_unsealed": self.audit_id is not None, "audit_id": self.audit_id}


def _check(s: CombineSettings) -> None:
    if s.method not in METHODS:
        raise BacktestError(f"unknown method {s.method!r}; use one of {', '.join(METHODS)}")
    if s.strategy not in STRATEGIES:
        raise BacktestError(f"unknown strategy {s.strategy!r}; use topn or topk")
    if s.turnover_budget < 0 or s.refit < 1 or s.min_train < 1 or s.ridge_alpha < 0:
        raise BacktestError("need turnover_budget >= 0, refit >= 1, min_train >= 1, "
                            "ridge_alpha >= 0")
    bad = [x for x in s.neutral if x not in NEUTRALIZERS]
    if bad:
        raise BacktestError(f"unknown neutralization {', '.join(bad)}; use industry, size")
    if s.live and s.unseal_test:
        raise BacktestError("--live and --unseal-test: a live run computes targets, not test "
                            "performance; choose one")


def run_combine(cfg, settings: CombineSettings, *, model_dir: Optional[Path] = None,
                on_progress: Progress = None, argv: Optional[Sequence[str]] = None
                ) -> CombineRun:
    """Composite score + targets in a fresh run folder (module docstring).

    Parameters
    ----------
    cfg : Config
        Needs ``data``, ``evaluate`` and ``store`` (``[backtest]`` enters via ``settings``).
    settings : CombineSettings
    model_dir : Path, optional
        Where model predictions live (``[model] out_dir``), for ``model:`` members.
    on_progress : callable(str), optional
        Called with a short message at each stage.
    argv : sequence of str, optional
        The ``mine`` command line, recorded in the run's manifest (:mod:`data.manifest`: the
        leaderboard as it was at the start, digests of targets, score and weights) for
        ``mine rerun``.

    The window ends on ``settings.end``, by default at the end of valid; a window reaching
    the test split needs ``settings.unseal_test`` (research: logged with the members and their
    mean weights, :mod:`backtest.seal`) or ``settings.live`` (production targets through the
    latest trading day for ``mine export``: logged, no performance computed).

    Raises
    ------
    SealedError
        A window into the test split without ``unseal_test`` / ``live``.
    AlphamineError
        Empty leaderboard, unknown universe / option, an explicit ``out`` that holds results.
    """
    from backtest.run_dirs import run_folder, write_latest

    say = on_progress or (lambda m: None)
    s = settings
    _check(s)
    manifest = RunRecorder("combine", cfg, argv=argv, settings=s, store=cfg.store.path,
                           window=(s.start, s.end))
    folder = run_folder(s.out_dir, f"combine-{s.method}-{s.universe}", s.out, force=s.force)
    out, run_id = folder.final, folder.run_id
    try:
        run = _combine(cfg, s, folder.path, out, run_id, model_dir, say)
        folder.commit()
    except BaseException:
        folder.discard()
        raise
    write_latest(s.out_dir, out)
    manifest.write(run_id, results={
        "members": run.members, "dropped": run.dropped,
        "files": {n: file_digest(out / f"{n}.parquet")
                  for n in ("targets", "score", "factor_weights")},
        "summary": {"members": [m["name"] for m in run.members],
                    "target_days": run.target_days, "mean_names": run.mean_names}},
        outputs={"out_dir": out})
    return run


def _combine(cfg, s: CombineSettings, stage: Path, out: Path, run_id: str, model_dir,
             say) -> CombineRun:
    """The combination; files go to ``stage``, the record names them in ``out``."""
    from backtest.candidates import make_workspace
    from backtest.combine import combine_from_store, warmup_start
    from backtest.strategies import (
        apply_caps,
        eligible_mask,
        rebalance_mask,
        to_targets,
        topk_dropout_weights,
        topn_weights,
    )
    from backtest.targets import write_frame, write_targets
    from data.manager import DataManager
    from factors.store import FactorStore

    from backtest.seal import check_window, default_end, unseal

    dm = DataManager.from_config(cfg)
    t0 = time.perf_counter()
    last = str(dm.calendar()[-1].date())
    if s.live:
        end = last
    else:
        end = s.end or default_end(cfg, s.unseal_test)
        if not s.unseal_test:
            check_window(cfg, min(end, last), None, "mine combine")
    end = min(end, last)
    access = None
    if pd.Timestamp(end) >= pd.Timestamp(cfg.evaluate.test[0]):
        access = unseal(cfg, purpose="live" if s.live else "research", universe=s.universe,
                        subject={"run_id": run_id, "command": "combine"}, window=(s.start, end))
    say(f"loading {s.universe} data and the leaderboard")
    ws = make_workspace(cfg, s.universe, warmup_start(dm, s.start), end, dm=dm, access=access,
                        model_dir=model_dir)
    with FactorStore(cfg.store.path) as store:
        say("combining members")
        res = combine_from_store(ws, store, top=s.top, method=s.method, max_corr=s.max_corr,
                                 neutral=s.neutral, window=s.window, start=s.start,
                                 min_valid_rank_ic=cfg.store.min_valid_rank_ic,
                                 include_forced=s.include_forced,
                                 **s.learn_kwargs(use_test_labels=access is not None))
    say("building targets")
    dates, codes = res.score.index, res.score.columns
    elig = eligible_mask(dm, s.universe, dates, codes,          # entries: buyable at t+1
                         min_listed_days=cfg.evaluate.min_listed_days)
    rb = rebalance_mask(dates, s.rebalance)
    score = res.score.to_numpy()
    if s.strategy == "topn":                                     # holdings stay while members
        W = topn_weights(score, elig, s.n, rb, keep=dm.universe_mask(s.universe, dates, codes))
        name = f"{s.method}_top{s.n}"
    else:
        n_drop = s.effective_n_drop()                            # within turnover_budget
        W = topk_dropout_weights(score, elig, s.n, n_drop, rb)
        name = f"{s.method}_top{s.n}_drop{n_drop}"
    if s.max_weight or s.max_industry_weight:
        ind = dm.industry(1, dates, codes)       # dated Shenwan L1, else static industry_ts
        W = apply_caps(W, max_weight=s.max_weight or None, industry=ind,
                       max_industry_weight=s.max_industry_weight or None)
    targets = to_targets(W, dates, codes, f"combine_{name}_{s.universe}")
    sc = res.score.stack().rename("score").reset_index()
    sc.columns = ["trade_date", "ts_code", "score"]
    write_frame(sc, stage / "score")
    write_frame(res.weights.reset_index(names="trade_date"), stage / "factor_weights")
    write_targets(targets, stage / "targets")
    pq, csv = out / "targets.parquet", out / "targets.csv"
    held = targets.groupby("trade_date").size()
    run = CombineRun(
        run_id=run_id, out_dir=out, settings=s, horizon=res.horizon,
        start=str(dates[0].date()), end=str(dates[-1].date()),
        members=[dict(m.to_dict(), mean_weight=float(res.weights[m.name].mean()))
                 for m in res.members],
        dropped=[{"name": a, "reason": b} for a, b in res.dropped],
        rebalance_days=int(rb.sum()), target_days=int(held.size),
        mean_names=float(held.mean()) if held.size else 0.0,
        files={"targets_parquet": str(pq), "targets_csv": str(csv),
               "score": str(out / "score.parquet"),
               "factor_weights": str(out / "factor_weights.parquet")},
        seconds=round(time.perf_counter() - t0, 1),
        note=join_notes(IN_SAMPLE_NOTE.format(valid=" to ".join(cfg.evaluate.valid),
                                              test=" to ".join(cfg.evaluate.test)),
                        st_caveat(dm)),
        audit_id=None if access is None else access.audit_id, targets=targets)
    if access is not None:
        access.seen({"members": {m["formula"]: m["mean_weight"] for m in run.members}},
                    formulas=[m["formula"] for m in run.members])
    write_json_atomic(stage / "combine.json", run.to_dict())
    return run
