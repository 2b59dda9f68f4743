"""Factor combination: leaderboard members -> processed panels -> one composite score.

Steps (:func:`combine_from_store` runs them all on the warehouse):

1. **Selection** (:func:`rank_records`, then :func:`select_members`): the leaderboard's top ``K``
   by a train/valid metric *oriented* on train (default ``valid.rank_icir`` x sign of the train
   RankIC, never its absolute value; test metrics never select). Records that fail the gate's
   RankIC rules (:func:`factors.store_records.ic_check`: sign flip, below the floor, no valid
   metrics) are never selected; forced entries (library factors stored past the gate) only
   with ``include_forced``. The ranked members are walked in order and kept only if
   the mean daily rank correlation on the *valid* split with every member already kept stays
   below ``max_corr`` in absolute value (:func:`backtest.evaluate.factor_corr`).
2. **Processing** (:func:`factors.processing.process_factor`): winsorize (MAD), z-score, direction
   alignment with the sign of the member's *train* mean RankIC (stored on the leaderboard), and
   optional industry (:meth:`DataManager.industry`: dated Shenwan L1, else the static
   ``stock_basic.industry_ts``) and size (``log total_mv``) neutralisation.
3. **Weights** (:func:`factor_weights`): ``"equal"``, ``"ic"`` (trailing mean daily RankIC) or
   ``"icir"`` (trailing mean / std). The RankIC of day ``s`` at horizon ``h`` is the correlation
   with ``open[s+1+h] / open[s+1] - 1`` (:func:`backtest.evaluate.rank_ic_series`), known at the
   open of ``s+1+h``. The weight of day ``t`` therefore averages ``IC[s]`` over
   ``s in [t-h-1-window+1, t-h-1]`` (a lag of ``h + 1`` rows): it reads prices up to the open of
   ``t`` and the factors up to the close of ``t-h-1``, never anything after ``t``. Issue 14
   adds ``"shrink"`` (IC weights shrunk toward equal), ``"gs"`` / ``"sym"`` (members
   orthogonalised per date, then IC-weighted) and the walk-forward combiners ``"ridge"`` /
   ``"lgbm"``, all under the same lag rule (:mod:`backtest.combine_methods`).
4. **Composite** (:func:`composite`): ``S[t, i] = sum_k w[t, k] F_k[t, i] / sum_k |w[t, k]|`` over
   the factors finite for name ``i``, then z-scored across names.

Outputs are (T, N) panels on the evaluation context's dates x codes (:mod:`backtest.evaluate`).

Size: selection, weights, composite and the store pipeline share the Member / result types and
the lag rule; the issue-14 estimators themselves live in :mod:`backtest.combine_methods`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from backtest.candidates import Workspace
from backtest.context import EvalContext
from backtest.combine_methods import (
    AUTO,
    LEARNED,
    ORTHO,
    orthogonalise,
    pick_trailing,
    shrink_weights,
    walk_forward_scores,
)
from backtest.evaluate import factor_corr, rank_ic_series
from data.errors import AlphamineError
from factors.errors import EvaluationError, StoreError
from factors.processing import process_factor, zscore
from factors.store import FactorStore
from factors.store_records import ABS_METRICS, FactorRecord, ic_check, train_sign

#: Weight methods of :func:`factor_weights`.
WEIGHT_METHODS = ("ic", "icir", "equal", "shrink")
#: Every ``mine combine --method`` (:func:`combine_panels`; issue 14 methods in
#: :mod:`backtest.combine_methods`).
METHODS = WEIGHT_METHODS + ORTHO + LEARNED + AUTO


@dataclass
class Member:
    """One factor of a combination."""

    name: str
    formula: str
    sign: float                      # direction from the train mean RankIC (+1 / -1)
    train_rank_ic: float | None
    valid_rank_ic: float | None
    valid_rank_icir: float | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class CombineResult:
    """Composite score and its ingredients.

    Attributes
    ----------
    score : DataFrame (T, N)
        Composite score (higher = better), z-scored per date; NaN outside the universe.
    weights : DataFrame (T, K)
        Factor weights per date (rows sum to 1 in absolute value), columns = member names.
    ic : DataFrame (T, K)
        Daily RankIC of each processed member (the input of the weights).
    members : list of Member
    dropped : list of (name, reason)
        Leaderboard factors not used and why (correlation pruning, evaluation failure).
    method : str
    horizon : int
    """

    score: pd.DataFrame
    weights: pd.DataFrame
    ic: pd.DataFrame
    members: list[Member]
    dropped: list[tuple[str, str]] = field(default_factory=list)
    method: str = "ic"
    horizon: int = 1
    window: int = 60


def select_members(names: Sequence[str], panels: Mapping[str, np.ndarray], ctx: EvalContext,
                   max_corr: float = 0.7, split: str = "valid"
                   ) -> tuple[list[str], list[tuple[str, str]]]:
    """Greedy correlation pruning in the given (leaderboard) order.

    Parameters
    ----------
    names : sequence of str
        Candidates, best first.
    panels : mapping of str to ndarray (T, N)
        Raw factor values on ``ctx``.
    ctx : EvalContext
    max_corr : float, default 0.7
        A candidate is kept iff ``|factor_corr(candidate, kept, split)| < max_corr`` for every
        factor kept before it (NaN correlations do not block).
    split : str, default "valid"
        The split the correlation is measured on (never ``"test"``).

    Returns
    -------
    kept : list of str
    dropped : list of (name, reason)

    Raises
    ------
    EvaluationError
        If ``split`` is ``"test"`` or ``max_corr`` is not in (0, 1].
    """
    if split == "test":
        raise EvaluationError("correlation pruning must not look at the test split")
    if not 0.0 < max_corr <= 1.0:
        raise EvaluationError(f"max_corr must be in (0, 1], got {max_corr}")
    kept: list[str] = []
    dropped: list[tuple[str, str]] = []
    for n in names:
        worst, with_ = 0.0, None
        for k in kept:
            c = factor_corr(panels[n], panels[k], ctx, split=split)
            if np.isfinite(c) and abs(c) > worst:
                worst, with_ = abs(c), k
        if with_ is not None and worst >= max_corr:
            dropped.append((n, f"|corr| {worst:.2f} with {with_} on {split} >= {max_corr}"))
        else:
            kept.append(n)
    return kept, dropped


def factor_weights(ic: np.ndarray, method: str = "ic", *, window: int = 60, horizon: int = 1,
                   min_periods: int | None = None, clip_negative: bool = True) -> np.ndarray:
    """Per-date factor weights from the daily RankIC matrix, using only known ICs.

    Parameters
    ----------
    ic : ndarray, shape (T, K)
        Daily RankIC of each (direction-aligned) factor at ``horizon``
        (:func:`backtest.evaluate.rank_ic_series`); NaN = undefined that day.
    method : {"ic", "icir", "equal", "shrink"}
        ``"ic"``: ``w = mean(IC)``; ``"icir"``: ``w = mean(IC) / std(IC)`` (ddof=1), both over the
        trailing ``window`` rows ending ``horizon + 1`` rows before ``t``; ``"equal"``: ``1/K``;
        ``"shrink"``: IC weights shrunk toward ``1/K``
        (:func:`backtest.combine_methods.shrink_weights`).
    window : int, default 60
        Trailing window length in trading days.
    horizon : int, default 1
        Label horizon; the lag is ``horizon + 1`` rows (module docstring).
    min_periods : int, optional
        Finite ICs needed in the window (default ``window // 2``); fewer -> weight NaN.
    clip_negative : bool, default True
        Negative trailing IC(IR) gives weight 0 (factors are already direction-aligned on train;
        a factor is not flipped on recent IC).

    Returns
    -------
    ndarray, shape (T, K)
        Weights with ``sum_k |w[t, k]| = 1``. A row with no usable (all NaN or all zero)
        weights falls back to equal weights ``1/K``.

    Raises
    ------
    EvaluationError
        Unknown method or bad window/horizon.

    Notes
    -----
    Causal: row ``t`` reads ``ic[: t - horizon]`` only (asserted by the tests).
    """
    ic = np.asarray(ic, dtype=np.float64)
    if ic.ndim != 2:
        raise EvaluationError(f"ic must be (T, K), got shape {ic.shape}")
    if method not in WEIGHT_METHODS:
        raise EvaluationError(f"unknown combination method {method!r} for factor_weights; use "
                              f"one of {WEIGHT_METHODS}")
    if window < 2 or horizon < 1:
        raise EvaluationError(f"window must be >= 2 and horizon >= 1, got {window}, {horizon}")
    if method == "shrink":
        return shrink_weights(ic, window=window, horizon=horizon, min_periods=min_periods,
                              clip_negative=clip_negative)[0]
    T, K = ic.shape
    w = np.full((T, K), np.nan)
    if method != "equal":
        lagged = pd.DataFrame(ic).shift(horizon + 1)
        roll = lagged.rolling(window, min_periods=min_periods or max(2, window // 2))
        mean = roll.mean().to_numpy()
        if method == "ic":
            w = mean
        else:
            sd = roll.std(ddof=1).to_numpy()
            with np.errstate(all="ignore"):
                w = np.where(sd > 0, mean / sd, np.nan)
        if clip_negative:
            w = np.where(w < 0, 0.0, w)
    tot = np.nansum(np.abs(w), axis=1, keepdims=True)
    eq = np.full((T, K), 1.0 / K)
    with np.errstate(all="ignore"):
        out = np.where(tot > 0, np.nan_to_num(w) / np.where(tot > 0, tot, 1.0), eq)
    return out


def composite(panels: Sequence[np.ndarray], weights: np.ndarray, mask=None) -> np.ndarray:
    """Weighted average of processed factor panels, renormalised over the finite factors.

    Parameters
    ----------
    panels : sequence of K ndarrays, each (T, N)
        Processed (z-scored, direction-aligned) factors.
    weights : ndarray, shape (T, K)
    mask : ndarray of bool, shape (T, N), optional
        Universe; the result is z-scored across the names in it.

    Returns
    -------
    ndarray, shape (T, N)
        ``z(sum_k w_k F_k / sum_k |w_k| [F_k finite])``; NaN where no factor is finite or the
        denominator is zero.
    """
    F = np.stack([np.asarray(p, dtype=np.float64) for p in panels], axis=2)   # (T, N, K)
    W = np.asarray(weights, dtype=np.float64)[:, None, :]
    fin = np.isfinite(F)
    num = np.where(fin, F, 0.0) * W
    den = (fin * np.abs(W)).sum(axis=2)
    with np.errstate(all="ignore"):
        s = np.where(den > 0, num.sum(axis=2) / np.where(den > 0, den, 1.0), np.nan)
    return zscore(s, mask)


def combine_panels(raw: Mapping[str, np.ndarray], signs: Mapping[str, float], ctx: EvalContext,
                   *, method: str = "ic", window: int = 60, neutral: Sequence[str] = (),
                   industry=None, size=None, clip_negative: bool = True, refit: int = 250,
                   min_train: int = 250, ridge_alpha: float = 0.1, num_threads: int = 1,
                   use_test_labels: bool = False
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Process every member, compute its daily RankIC, the weights and the composite.

    Parameters
    ----------
    raw : mapping of name to ndarray (T, N)
        Raw factor panels on ``ctx``.
    signs : mapping of name to float
        Direction per member (sign of its train mean RankIC).
    ctx : EvalContext
        Supplies the universe mask, eligible names, labels and horizon.
    method : str
        One of :data:`METHODS`: ``ic`` / ``icir`` / ``equal`` / ``shrink`` weight the processed
        members (:func:`factor_weights`); ``gs`` / ``sym`` first orthogonalise them per date
        (:func:`backtest.combine_methods.orthogonalise`), then use ``ic`` weights of the
        orthogonalised members; ``ridge`` / ``lgbm`` fit a walk-forward combiner
        (:func:`backtest.combine_methods.walk_forward_scores`); ``auto`` builds every other
        method's composite and takes, date by date, the one with the best trailing RankIC
        (:func:`backtest.combine_methods.pick_trailing`).
    window, clip_negative
        See :func:`factor_weights`.
    neutral, industry, size
        See :func:`factors.processing.process_factor`.
    refit, min_train, ridge_alpha, num_threads, use_test_labels
        ``ridge`` / ``lgbm`` only, see :func:`backtest.combine_methods.walk_forward_scores`.

    Returns
    -------
    score : ndarray (T, N)
    weights : ndarray (T, K)
        For ``auto``, the weights of the method chosen on each row.
    ic : ndarray (T, K)
        Daily RankIC of the members the weights apply to (orthogonalised for gs / sym),
        columns in the order of ``raw``.

    Raises
    ------
    EvaluationError
        No member or an unknown method.
    """
    names = list(raw)
    if not names:
        raise EvaluationError("nothing to combine: no member factors")
    if method not in METHODS:
        raise EvaluationError(f"unknown combination method {method!r}; use one of {METHODS}")
    if method in AUTO:
        kw = dict(window=window, neutral=neutral, industry=industry, size=size,
                  clip_negative=clip_negative, refit=refit, min_train=min_train,
                  ridge_alpha=ridge_alpha, num_threads=num_threads,
                  use_test_labels=use_test_labels)
        built = [combine_panels(raw, signs, ctx, method=m, **kw)
                 for m in METHODS if m not in AUTO]
        scores = [zscore(b[0], ctx.universe_mask) for b in built]
        choice = pick_trailing(np.column_stack([rank_ic_series(sc, ctx) for sc in scores]),
                               window=window, horizon=ctx.horizon)
        score, w = np.empty_like(scores[0]), np.empty_like(built[0][1])
        for m, (sc, b) in enumerate(zip(scores, built)):
            score[choice == m], w[choice == m] = sc[choice == m], b[1][choice == m]
        return score, w, built[0][2]
    proc = [process_factor(raw[n], ctx.universe_mask, sign=signs.get(n, 1.0), neutral=neutral,
                           industry=industry, size=size) for n in names]
    if method in LEARNED:
        score, w, _ = walk_forward_scores(proc, ctx, method, refit=refit, min_train=min_train,
                                          alpha=ridge_alpha, num_threads=num_threads,
                                          use_test_labels=use_test_labels)
        ic = np.column_stack([rank_ic_series(p, ctx) for p in proc])
        return score, w, ic
    if method in ORTHO:
        proc = orthogonalise(proc, method, ctx.universe_mask)
    ic = np.column_stack([rank_ic_series(p, ctx) for p in proc])
    w = factor_weights(ic, "ic" if method in ORTHO else method, window=window,
                       horizon=ctx.horizon, clip_negative=clip_negative)
    return composite(proc, w, ctx.universe_mask), w, ic


def _sign(rec) -> float:
    return train_sign(rec)


def is_forced(rec: FactorRecord) -> bool:
    """A leaderboard entry stored past the gate (``provenance["forced"]``)."""
    return bool((rec.provenance or {}).get("forced"))


def rank_records(recs: Sequence[FactorRecord], top: int | None = 10,
                 sort: str = "valid.rank_icir", *, min_valid_rank_ic: float = 0.01,
                 include_forced: bool = False
                 ) -> tuple[list[FactorRecord], list[tuple[str, str]]]:
    """Eligible leaderboard records, best first by the oriented ``sort`` metric.

    A record is eligible iff it passes the gate's RankIC rules (:func:`ic_check`: the valid
    RankIC agrees in sign with train and the oriented value reaches ``min_valid_rank_ic``) and
    is not a forced entry; with ``include_forced``, forced entries are eligible whatever their
    metrics (the caller asked for them). ``sort`` metrics of :data:`ABS_METRICS` are ranked by
    ``value x sign(train rank_ic_mean)`` descending (a large ``|valid ICIR|`` of the wrong sign
    ranks last, never first); other metrics by value; missing values come last, ties by id.

    Returns
    -------
    ranked : list of FactorRecord
        At most ``top`` (``None`` = all).
    dropped : list of (name, reason)
        Ineligible records and why.
    """
    dropped: list[tuple[str, str]] = []
    ok: list[FactorRecord] = []
    for r in recs:
        forced = is_forced(r)
        if forced and not include_forced:
            kind = (r.provenance or {}).get("forced_kind", "?")
            dropped.append((r.name, f"forced entry (gate would reject: {kind}); use "
                                    f"--include-forced to use it"))
            continue
        kind, why = ic_check(r, min_valid_rank_ic)
        if kind is not None and not forced:
            dropped.append((r.name, f"{kind}: {why}"))
            continue
        ok.append(r)
    if sort in ("name", "created_at"):
        key_fn = (lambda r: (r.name, r.id or 0)) if sort == "name" else None
        if key_fn is None:
            ok.sort(key=lambda r: (r.created_at or "", r.id or 0), reverse=True)
        else:
            ok.sort(key=key_fn)
    else:
        split, metric = sort.split(".", 1)
        orient = metric in ABS_METRICS

        def key(r: FactorRecord) -> tuple:
            v = r.metric(split, metric)
            if v is None or not np.isfinite(v):
                return (1, 0.0, r.id or 0)
            return (0, -(v * train_sign(r) if orient else v), r.id or 0)

        ok.sort(key=key)
    return (ok if top is None else ok[:top]), dropped


def warmup_start(dm, start, warmup: int = 300) -> str:
    """The trading day ``warmup`` rows before ``start`` (clipped to the data), 'YYYY-MM-DD'.

    Build the workspace from there so that rolling factor windows and the trailing IC weights
    are defined on the first output day.
    """
    cal = dm.calendar()
    i0 = max(0, int(cal.searchsorted(pd.Timestamp(start))) - int(warmup))
    return str(cal[i0].date())


@dataclass
class MemberPanels:
    """The selected members of :func:`load_members`: raw panels (on ``ws.ctx``), directions,
    records, what was left out, and the neutralisation inputs."""

    raw: dict[str, np.ndarray]
    signs: dict[str, float]
    members: list[Member]
    dropped: list[tuple[str, str]]
    industry: np.ndarray | None = None
    size: np.ndarray | None = None


def load_members(ws: Workspace, store: FactorStore, *, top: int = 10, max_corr: float = 0.7,
                 neutral: Sequence[str] = (), sort: str = "valid.rank_icir",
                 min_valid_rank_ic: float = 0.01, include_forced: bool = False
                 ) -> MemberPanels:
    """Rank, evaluate and prune the leaderboard of the workspace's universe (steps 1-2 of the
    module docstring; parameters as in :func:`combine_from_store`).

    Raises
    ------
    StoreError
        Empty leaderboard / nothing eligible (the message says how to fill it).
    EvaluationError
        No member can be evaluated on the workspace.
    """
    from factors.expr_parse import parse

    universe = ws.universe
    allrecs = store.top(None, sort=sort, universe=universe)
    if not allrecs:
        raise StoreError(f"the leaderboard has no factors for universe {universe!r}; "
                         f"run `mine gp` or `mine library --add` first")
    recs, dropped = rank_records(allrecs, top, sort, min_valid_rank_ic=min_valid_rank_ic,
                                 include_forced=include_forced)
    if not recs:
        raise StoreError(f"no leaderboard factor of universe {universe!r} is eligible for "
                         f"combination (sign flip / below the floor / forced: "
                         f"{len(dropped)} left out); use --include-forced for forced entries")
    ctx = ws.ctx
    raw: dict[str, np.ndarray] = {}
    by_name = {}
    for r in recs:
        name = r.name if r.name not in raw else f"{r.name}#{r.id}"
        try:
            raw[name] = ws.values(parse(r.formula))
        except AlphamineError as e:  # a member this workspace cannot evaluate
            dropped.append((name, f"cannot evaluate: {e}"))
            continue
        by_name[name] = r
    kept, pruned = select_members(list(raw), raw, ctx, max_corr=max_corr)
    dropped += pruned
    if not kept:
        raise EvaluationError("no leaderboard factor could be evaluated on this workspace")
    industry = size = None
    if "industry" in neutral:
        industry = ws.dm.industry(1, ctx.dates, ctx.codes)   # dated Shenwan L1, else static
    if "size" in neutral:
        with np.errstate(all="ignore"):
            mv = ws.field("total_mv")
            size = np.where(mv > 0, np.log(np.where(mv > 0, mv, 1.0)), np.nan)
    signs = {n: _sign(by_name[n]) for n in kept}
    members = [Member(n, by_name[n].formula, signs[n],
                      by_name[n].metric("train", "rank_ic_mean"),
                      by_name[n].metric("valid", "rank_ic_mean"),
                      by_name[n].metric("valid", "rank_icir")) for n in kept]
    return MemberPanels({n: raw[n] for n in kept}, signs, members, dropped, industry, size)


def combine_from_store(ws: Workspace, store: FactorStore, *, top: int = 10, method: str = "ic",
                       max_corr: float = 0.7, neutral: Sequence[str] = (), window: int = 60,
                       sort: str = "valid.rank_icir", start: str | None = None,
                       min_valid_rank_ic: float = 0.01, include_forced: bool = False,
                       members: MemberPanels | None = None, **learn) -> CombineResult:
    """Run the whole combination for the leaderboard of the workspace's universe.

    Parameters
    ----------
    ws : Workspace
        Panels + evaluation context (:func:`backtest.candidates.make_workspace` from
        :func:`warmup_start` to the backtest end).
    store : FactorStore
    top, max_corr, neutral, sort, min_valid_rank_ic, include_forced
        Selection (:func:`rank_records`: best ``top`` eligible by the oriented ``sort``, train /
        valid metrics only; :func:`select_members`); ``include_forced`` = ``mine combine
        --include-forced``.
    method, window
        See :func:`combine_panels`.
    start : str, optional
        First output day (rows before it are warm-up); default the workspace start.
    members : MemberPanels, optional
        Already selected members (:func:`load_members`); the selection options are then unused.
    **learn
        ``refit``, ``min_train``, ``ridge_alpha``, ``num_threads``, ``use_test_labels`` of
        :func:`combine_panels`.

    Returns
    -------
    CombineResult
        Panels restricted to ``[start, ws end]``.

    Raises
    ------
    StoreError
        Empty leaderboard for the universe (the message says how to fill it).
    EvaluationError, DataError
        From the evaluator / data layer.
    """
    mp = members or load_members(ws, store, top=top, max_corr=max_corr, neutral=neutral,
                                 sort=sort, min_valid_rank_ic=min_valid_rank_ic,
                                 include_forced=include_forced)
    ctx = ws.ctx
    kept = list(mp.raw)
    score, w, ic = combine_panels(mp.raw, mp.signs, ctx, method=method, window=window,
                                  neutral=neutral, industry=mp.industry, size=mp.size, **learn)
    sel = np.asarray(ctx.dates >= pd.Timestamp(start or ctx.dates[0]))
    dates = ctx.dates[sel]
    return CombineResult(
        score=pd.DataFrame(score[sel], index=dates, columns=ctx.codes),
        weights=pd.DataFrame(w[sel], index=dates, columns=kept),
        ic=pd.DataFrame(ic[sel], index=dates, columns=kept),
        members=list(mp.members), dropped=list(mp.dropped), method=method,
        horizon=ctx.horizon, window=window)


__all__ = ["METHODS", "WEIGHT_METHODS", "Member", "MemberPanels", "load_members", "CombineResult", "rank_records", "is_forced",
           "select_members", "factor_weights",
           "composite", "combine_panels", "warmup_start", "combine_from_store"]
