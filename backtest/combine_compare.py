"""``mine combine --compare``: every combination method on the same members, one table on valid.

:func:`compare_panels` builds the composite of each method (:func:`backtest.combine.combine_panels`)
from one set of members and scores it with the one evaluator
(:func:`backtest.evaluate.evaluate_factor`) on the *valid* split: composite RankIC mean, ICIR,
top-quantile turnover, long-short annual return and the number of days. :func:`run_compare`
does it on the warehouse: the leaderboard selection of ``mine combine`` (:func:`load_members`),
a workspace from the warm-up before ``start`` to the end of valid. The test split is never
touched: the window always ends at the end of valid (sealed; ``--unseal-test`` / ``--live``
are refused by the CLI and ignored here), and only ``"valid"`` is evaluated.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from backtest.combine import METHODS, MemberPanels, combine_panels
from backtest.context import EvalContext
from factors.errors import EvaluationError

__all__ = ["CompareRow", "CompareResult", "compare_panels", "run_compare"]


@dataclass
class CompareRow:
    """One method's composite on the valid split (units: RankIC per day, returns per year)."""

    method: str
    rank_ic_mean: float
    rank_icir: float
    turnover: float                 # mean daily share of new names in the top quantile
    ls_ann_return: float            # top minus bottom quantile, annualised (252 days)
    n_days: int
    seconds: float


@dataclass
class CompareResult:
    """Result of :func:`run_compare`; :meth:`to_dict` is the ``--json`` output."""

    universe: str
    split: str
    start: str
    end: str
    horizon: int
    members: list[dict]
    dropped: list[dict]
    rows: list[CompareRow] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"universe": self.universe, "split": self.split, "start": self.start,
                "end": self.end, "horizon": self.horizon, "members": self.members,
                "dropped": self.dropped, "rows": [dict(r.__dict__) for r in self.rows]}


def compare_panels(raw: Mapping[str, np.ndarray], signs: Mapping[str, float], ctx: EvalContext,
                   methods: Sequence[str] = METHODS, *, split: str = "valid", window: int = 60,
                   neutral: Sequence[str] = (), industry=None, size=None, **learn
                   ) -> list[CompareRow]:
    """Composite of every method on the same members, evaluated on one split.

    Parameters
    ----------
    raw, signs, ctx, window, neutral, industry, size, **learn
        As in :func:`backtest.combine.combine_panels` (``learn``: ``refit``, ``min_train``,
        ``ridge_alpha``, ``num_threads``).
    methods : sequence of str, default every method (:data:`backtest.combine.METHODS`)
    split : str, default "valid"
        Never ``"test"``.

    Returns
    -------
    list of CompareRow
        In the order of ``methods``; NaN metrics where the split has no usable day.

    Raises
    ------
    EvaluationError
        ``split == "test"``, an unknown method, no member.
    """
    from backtest.evaluate import evaluate_factor

    if split == "test":
        raise EvaluationError("the comparison must not look at the test split")
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise EvaluationError(f"unknown combination method(s) {bad}; use {METHODS}")
    rows = []
    for m in methods:
        t0 = time.perf_counter()
        score, _, _ = combine_panels(raw, signs, ctx, method=m, window=window, neutral=neutral,
                                     industry=industry, size=size, use_test_labels=False,
                                     **learn)
        rep = evaluate_factor(score, ctx, splits=(split,))[split]
        rows.append(CompareRow(m, float(rep.rank_ic_mean), float(rep.rank_icir),
                               float(rep.turnover), float(rep.ls_ann_return), int(rep.n_days),
                               round(time.perf_counter() - t0, 2)))
    return rows


def run_compare(cfg, settings, methods: Sequence[str] = METHODS, *, model_dir=None,
                on_progress=None) -> CompareResult:
    """The comparison table of ``mine combine --compare`` on the warehouse (module docstring).

    Parameters
    ----------
    cfg : Config
        ``data``, ``evaluate``, ``store``.
    settings : CombineSettings
        Universe, selection (``top``, ``max_corr``, ``include_forced``), ``neutral``,
        ``window``, ``start`` and the learned-combiner options; ``end``, ``unseal_test`` and
        ``live`` are not used (the window ends at the end of valid).
    methods : sequence of str
    model_dir : Path, optional
        ``[model] out_dir`` for ``model:`` members.
    on_progress : callable(str), optional

    Returns
    -------
    CompareResult

    Raises
    ------
    AlphamineError
        Empty leaderboard, unknown universe / method, data errors.
    """
    from backtest.candidates import make_workspace
    from backtest.combine import load_members, warmup_start
    from data.manager import DataManager
    from factors.store import FactorStore

    say = on_progress or (lambda m: None)
    s = settings
    dm = DataManager.from_config(cfg)
    end = cfg.evaluate.valid[1]                                   # sealed: never test
    say(f"loading {s.universe} data and the leaderboard")
    ws = make_workspace(cfg, s.universe, warmup_start(dm, s.start), end, dm=dm,
                        model_dir=model_dir)
    with FactorStore(cfg.store.path) as store:
        mp: MemberPanels = load_members(ws, store, top=s.top, max_corr=s.max_corr,
                                        neutral=s.neutral,
                                        min_valid_rank_ic=cfg.store.min_valid_rank_ic,
                                        include_forced=s.include_forced)
    ctx = ws.ctx
    rows = []
    for m in methods:
        say(f"method {m}")
        rows += compare_panels(mp.raw, mp.signs, ctx, (m,), window=s.window, neutral=s.neutral,
                               industry=mp.industry, size=mp.size, refit=s.refit,
                               min_train=s.min_train, ridge_alpha=s.ridge_alpha,
                               num_threads=s.num_threads)
    vr = np.flatnonzero(ctx.split_rows["valid"])
    span = (str(ctx.dates[vr[0]].date()), str(ctx.dates[vr[-1]].date())) if vr.size else ("", "")
    return CompareResult(universe=s.universe, split="valid", start=span[0], end=span[1],
                         horizon=ctx.horizon, members=[m.to_dict() for m in mp.members],
                         dropped=[{"name": a, "reason": b} for a, b in mp.dropped], rows=rows)
