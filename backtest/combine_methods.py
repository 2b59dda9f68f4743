"""Combination methods beyond trailing IC/ICIR weights (issue 14), all causal.

Used by :func:`backtest.combine.combine_panels` (``method`` = ``"shrink"``, ``"gs"``,
``"sym"``, ``"ridge"``, ``"lgbm"``); the ``"ic"`` / ``"icir"`` / ``"equal"`` weights and their
lag rule live in :func:`backtest.combine.factor_weights`.

Lag rule (shared by every method)
    The RankIC and the forward-return label of day ``s`` at horizon ``h`` read the open of
    ``s + 1 + h``: they are known at the open of ``s + 1 + h``. A weight or model used for the
    score of day ``t`` (close of ``t``) may therefore read labels / ICs of rows
    ``s <= t - h - 1`` only.

shrink
    IC weights shrunk toward equal weights, ``w = (1 - d) w_ic + d / K``, with a
    James-Stein / Ledoit-Wolf style intensity estimated on the same trailing window as the IC
    weights: ``d = clip(mean_k var(IC_k) / n_k  /  var_k(mean IC_k), 0, 1)``, the mean sampling
    variance of the members' mean ICs over the cross-sectional (between-member) dispersion of
    those means (ddof=1). Well separated, long-sampled ICs give ``d -> 0`` (plain IC weights);
    pure noise gives ``d -> 1`` (equal weights). (James & Stein 1961; Ledoit & Wolf 2004,
    "Honey, I shrunk the sample covariance matrix".)
gs / sym
    Members orthogonalised per date, cross-sectionally, before IC weighting
    (:func:`orthogonalise`): on date ``t`` missing member values are set to 0 (the z-score
    mean) on names where at least one member is finite, ``S_t = F_t' F_t / n_t`` is the
    members' correlation *that date* (uses date ``t`` only: causal), then ``"gs"`` (Gram-Schmidt
    in member order: each member's residual on the previous ones, z-scored; equals
    ``F L'^{-1}`` with ``S = L L'`` the Cholesky factor) or ``"sym"`` (Loewdin symmetric
    orthogonalisation ``F S^{-1/2}``, Klein & Chow 2013, "Orthogonalized factors and systematic
    risk decomposition", QREF 53(2)). A ridge of ``1e-6`` on the diagonal keeps ``S``
    invertible for collinear members.
ridge / lgbm
    Walk-forward learned combiners (:func:`walk_forward_scores`): features = cross-sectional
    ranks of the processed members (in ``[-0.5, 0.5]``, missing -> 0), label = cross-sectional
    rank of ``fwd_h`` among eligible names. Expanding window; refit on rows ``r0, r0 + refit,
    ...`` where ``r0`` is the first row with ``min_train`` label rows known (``s <= r0 - h - 1``);
    the model fitted at ``r`` scores rows ``r .. r + refit - 1``; rows before ``r0`` get the
    equal-weight composite. Labels realised on a test-split row are never trained on unless
    the caller holds an unsealed access (``use_test_labels``).
auto
    The method is itself chosen causally, date by date (:func:`pick_trailing`): every other
    method's composite is built, and the score of day ``t`` is the composite of the method whose
    own daily RankIC had the highest trailing mean over ``window`` rows ending at ``t - h - 1``
    (the same lag rule); the first method (``ic``) until one has ``window // 2`` known ICs.
    This is how a method is chosen without looking at the split being reported: the members'
    strongest panel, the model's out-of-sample predictions, exists on valid only, so the
    choice cannot be made on train folds; it is made from the past of each date instead.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd

from backtest.context import EvalContext
from factors.errors import EvaluationError
from factors.processing import zscore

__all__ = ["shrink_weights", "orthogonalise", "xs_rank", "walk_forward_scores", "pick_trailing",
           "ORTHO", "LEARNED", "AUTO", "LGBM_PARAMS"]

ORTHO = ("gs", "sym")
LEARNED = ("ridge", "lgbm")
AUTO = ("auto",)
#: Small fixed LightGBM parameters of the ``lgbm`` combiner (deterministic, one seed).
LGBM_PARAMS = {"objective": "regression", "learning_rate": 0.05, "num_leaves": 15,
               "min_data_in_leaf": 200, "feature_fraction": 1.0, "bagging_fraction": 1.0,
               "lambda_l2": 1.0, "seed": 0, "deterministic": True, "force_row_wise": True,
               "verbose": -1}
LGBM_ROUNDS = 100


def _trailing(ic: np.ndarray, window: int, horizon: int, min_periods: int):
    lagged = pd.DataFrame(ic).shift(horizon + 1)
    roll = lagged.rolling(window, min_periods=min_periods)
    return (roll.mean().to_numpy(), roll.var(ddof=1).to_numpy(), roll.count().to_numpy())


def pick_trailing(ic: np.ndarray, *, window: int = 60, horizon: int = 1,
                  min_periods: int | None = None) -> np.ndarray:
    """Per date, the candidate with the highest trailing mean daily RankIC (module docstring).

    Parameters
    ----------
    ic : ndarray, shape (T, M)
        Daily RankIC of M candidate composites; NaN = undefined (e.g. label not yet known).
    window, horizon : int
        Trailing rows, and the lag: row ``t`` reads ``ic[: t - horizon]`` only.
    min_periods : int, optional
        Known ICs a candidate needs to be eligible (default ``max(2, window // 2)``).

    Returns
    -------
    ndarray of int, shape (T,)
        Column chosen for each row; 0 where no candidate is eligible. Ties go to the lower
        column.
    """
    ic = np.asarray(ic, dtype=np.float64)
    mean, _, cnt = _trailing(ic, window, horizon, min_periods or max(2, window // 2))
    ok = np.isfinite(mean) & (cnt >= (min_periods or max(2, window // 2)))
    m = np.where(ok, mean, -np.inf)
    return np.where(ok.any(axis=1), np.argmax(m, axis=1), 0).astype(np.int64)


def shrink_weights(ic: np.ndarray, *, window: int = 60, horizon: int = 1,
                   min_periods: int | None = None, clip_negative: bool = True
                   ) -> tuple[np.ndarray, np.ndarray]:
    """IC weights shrunk toward equal weights with a causal intensity (module docstring).

    Parameters
    ----------
    ic : ndarray, shape (T, K)
        Daily RankIC of the direction-aligned members; NaN = undefined.
    window, horizon, min_periods, clip_negative
        As in :func:`backtest.combine.factor_weights` (lag ``horizon + 1`` rows).

    Returns
    -------
    w : ndarray, shape (T, K)
        ``(1 - d) w_ic + d / K`` with ``sum_k |w| = 1``; rows without usable IC -> ``1/K``.
    d : ndarray, shape (T,)
        Shrinkage intensity in ``[0, 1]`` (1 where undefined, e.g. ``K < 2``).

    Notes
    -----
    Row ``t`` reads ``ic[: t - horizon]`` only.
    """
    ic = np.asarray(ic, dtype=np.float64)
    T, K = ic.shape
    mean, var, cnt = _trailing(ic, window, horizon, min_periods or max(2, window // 2))
    ok = np.isfinite(mean) & (cnt >= 2)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)        # rows without usable IC
        samp = np.where(ok, var / np.where(cnt > 0, cnt, 1.0), np.nan)     # var of the mean
        m = np.where(ok, mean, np.nan)
        n_ok = ok.sum(axis=1)
        noise = np.nanmean(samp, axis=1)
        disp = np.nanvar(m, axis=1, ddof=1) if K > 1 else np.full(T, np.nan)
        d = np.where((n_ok >= 2) & (disp > 0), noise / disp, 1.0)
    d = np.clip(np.nan_to_num(d, nan=1.0), 0.0, 1.0)
    w = np.where(ok, mean, np.nan)
    if clip_negative:
        w = np.where(w < 0, 0.0, w)
    tot = np.nansum(np.abs(w), axis=1, keepdims=True)
    eq = np.full((T, K), 1.0 / K)
    with np.errstate(all="ignore"):
        w_ic = np.where(tot > 0, np.nan_to_num(w) / np.where(tot > 0, tot, 1.0), eq)
    out = (1.0 - d[:, None]) * w_ic + d[:, None] * eq
    return out / np.abs(out).sum(axis=1, keepdims=True), d


def orthogonalise(panels: Sequence[np.ndarray], how: str = "gs", mask=None) -> list[np.ndarray]:
    """Per-date cross-sectional orthogonalisation of K member panels (module docstring).

    Parameters
    ----------
    panels : sequence of K ndarrays, each (T, N)
        Processed (z-scored) members, in rank order (Gram-Schmidt keeps the first as is).
    how : {"gs", "sym"}
        Gram-Schmidt or symmetric (Loewdin) orthogonalisation.
    mask : ndarray of bool (T, N), optional
        Universe; the outputs are z-scored across it.

    Returns
    -------
    list of K ndarrays (T, N)
        Members whose pairwise cross-sectional correlation each date is ~0, z-scored; NaN on
        names where every member is NaN.

    Raises
    ------
    EvaluationError
        Unknown ``how``.
    """
    if how not in ORTHO:
        raise EvaluationError(f"unknown orthogonalisation {how!r}; use one of {ORTHO}")
    F = np.stack([np.asarray(p, dtype=np.float64) for p in panels], axis=2)   # (T, N, K)
    T, N, K = F.shape
    any_ = np.isfinite(F).any(axis=2)
    if mask is not None:
        any_ &= np.asarray(mask, dtype=bool)
    X = np.where(np.isfinite(F) & any_[:, :, None], F, 0.0)
    n = np.maximum(any_.sum(axis=1), 1).astype(np.float64)
    S = np.einsum("tnk,tnl->tkl", X, X) / n[:, None, None] + 1e-6 * np.eye(K)
    S = np.where(any_.sum(axis=1)[:, None, None] >= 3, S, np.eye(K))
    if how == "gs":
        L = np.linalg.cholesky(S)                                    # S = L L'
        Linv = np.linalg.inv(L)                                      # G = X L'^{-1}
        G = np.einsum("tnk,tlk->tnl", X, Linv)
    else:
        ev, V = np.linalg.eigh(S)
        root = np.einsum("tkj,tj,tlj->tkl", V, 1.0 / np.sqrt(np.maximum(ev, 1e-12)), V)
        G = np.einsum("tnk,tkl->tnl", X, root)
    G = np.where(any_[:, :, None], G, np.nan)
    return [zscore(G[:, :, k], any_) for k in range(K)]


def xs_rank(a: np.ndarray, ok: np.ndarray | None = None) -> np.ndarray:
    """Cross-sectional rank per row scaled to ``[-0.5, 0.5]`` (ordinal ranks, ties by column).

    ``a`` (T, N); ``ok`` (T, N) bool restricts the names ranked. NaN where not ranked; a row
    with a single name gets 0.
    """
    a = np.asarray(a, dtype=np.float64)
    ok = np.isfinite(a) if ok is None else (np.asarray(ok, bool) & np.isfinite(a))
    s = np.where(ok, a, np.inf)
    r = np.argsort(np.argsort(s, axis=1, kind="stable"), axis=1, kind="stable").astype(float)
    n = ok.sum(axis=1, keepdims=True).astype(float)
    with np.errstate(all="ignore"):
        out = np.where(n > 1, r / np.maximum(n - 1, 1.0) - 0.5, 0.0)
    return np.where(ok, out, np.nan)


def _fit(how: str, X: np.ndarray, y: np.ndarray, alpha: float, num_threads: int):
    if how == "ridge":
        C = X.T @ X / len(y)
        lam = alpha * np.trace(C) / C.shape[0]
        beta = np.linalg.solve(C + lam * np.eye(C.shape[0]), X.T @ y / len(y))
        return beta, beta
    import lightgbm as lgb
    params = dict(LGBM_PARAMS, num_threads=int(num_threads))
    booster = lgb.train(params, lgb.Dataset(X, y, free_raw_data=True), LGBM_ROUNDS)
    imp = booster.feature_importance("gain").astype(float)
    return booster, imp


def walk_forward_scores(panels: Sequence[np.ndarray], ctx: EvalContext, how: str = "ridge", *,
                        refit: int = 250, min_train: int = 250, alpha: float = 0.1,
                        num_threads: int = 1, use_test_labels: bool = False
                        ) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Walk-forward learned combination of processed members (module docstring).

    Parameters
    ----------
    panels : sequence of K ndarrays (T, N)
        Processed, direction-aligned members on ``ctx``.
    ctx : EvalContext
        Labels ``fwd[ctx.horizon]``, eligible names, universe and the test rows.
    how : {"ridge", "lgbm"}
        ``"ridge"``: closed form ``beta = (C + lam I)^{-1} X'y / n``, ``C = X'X / n``,
        ``lam = alpha * trace(C) / K`` (scale-free: ``alpha`` is a share of the mean feature
        variance). ``"lgbm"``: LightGBM regression, :data:`LGBM_PARAMS`, ``LGBM_ROUNDS``
        rounds, deterministic.
    refit : int, default 250
        Trading days between refits (>= 1).
    min_train : int, default 250
        Label days needed before the first fit (>= 1); before it: equal weights.
    alpha : float, default 0.1
        Ridge penalty (>= 0).
    num_threads : int, default 1
        LightGBM threads.
    use_test_labels : bool, default False
        Train on labels realised on test-split rows (only with an unsealed access).

    Returns
    -------
    score : ndarray (T, N)
        z-scored across the universe.
    weights : ndarray (T, K)
        The model in force each row, as member weights (ridge: ``beta / sum|beta|``; lgbm:
        gain importances normalised); ``1/K`` before the first fit.
    fits : list of dict
        ``{"row", "train_rows", "coef"}`` per refit.

    Raises
    ------
    EvaluationError
        Unknown ``how`` or bad ``refit`` / ``min_train`` / ``alpha``.

    Notes
    -----
    Causal: the model used on row ``t`` was fitted on label rows ``s <= t - h - 1``.
    """
    if how not in LEARNED:
        raise EvaluationError(f"unknown learned combiner {how!r}; use one of {LEARNED}")
    if refit < 1 or min_train < 1 or alpha < 0:
        raise EvaluationError(f"need refit >= 1, min_train >= 1, alpha >= 0; got {refit}, "
                              f"{min_train}, {alpha}")
    h = ctx.horizon
    T, N = ctx.shape
    K = len(panels)
    um = ctx.universe_mask
    Xr = np.stack([np.nan_to_num(xs_rank(p, um)) for p in panels], axis=2)      # (T, N, K)
    feat_ok = np.stack([np.isfinite(p) & um for p in panels], axis=2).any(axis=2)
    y = xs_rank(ctx.fwd[h], ctx.eligible)
    lab_ok = np.isfinite(y) & feat_ok
    if not use_test_labels and "test" in ctx.split_rows:           # label realised at s+1+h
        test_rows = np.flatnonzero(ctx.split_rows["test"])
        if test_rows.size:
            lab_ok[max(0, test_rows[0] - 1 - h):] = False
    day_ok = lab_ok.any(axis=1)
    known = np.concatenate([[0], np.cumsum(day_ok)])   # known[t - h] = label days s <= t-h-1
    eq = np.full(K, 1.0 / K)
    W = np.tile(eq, (T, 1))
    score = np.einsum("tnk,k->tn", Xr, eq)
    fits: list[dict] = []
    avail = np.array([known[max(0, t - h)] for t in range(T)])
    first = np.flatnonzero(avail >= min_train)
    if first.size and K:
        for r in range(int(first[0]), T, int(refit)):
            rows = lab_ok[: max(0, r - h)]                   # label rows s <= r - h - 1
            Xs, ys = Xr[: rows.shape[0]][rows], y[: rows.shape[0]][rows]
            model, coef = _fit(how, Xs, ys, alpha, num_threads)
            stop = min(T, r + int(refit))
            blk = Xr[r:stop]
            if how == "ridge":
                score[r:stop] = np.einsum("tnk,k->tn", blk, model)
            else:
                score[r:stop] = model.predict(blk.reshape(-1, K),
                                              num_threads=int(num_threads)).reshape(blk.shape[:2])
            tot = np.abs(coef).sum()
            W[r:stop] = coef / tot if tot > 0 else eq
            fits.append({"row": r, "train_rows": int(len(ys)), "coef": coef.tolist()})
    score = np.where(feat_ok, score, np.nan)
    return zscore(score, um), W, fits
