"""SHAP -> candidate formulas: what a tree model learned, distilled into the factor language.

1. :func:`shap_summary`: ``shap.TreeExplainer`` on a sample of rows the model did not fit (its
   early-stopping rows, see the rule below). Global importance = mean ``|SHAP|`` per feature;
   interaction strength of a pair = mean ``|SHAP interaction|`` (``shap_interaction_values``,
   O(F^2) per row, so on a smaller sample), optionally restricted to the ``top_k`` most
   important features.
2. :func:`feature_signs`: sign of each feature's Pearson correlation with the label on the
   explanation model's TRAIN rows.
3. :func:`distill_candidates`: for each of the top interacting pairs ``(a, b)`` two formulas on
   the features' own (raw) formulas: ``cs_rank(s_a a) * cs_rank(s_b b)`` (both legs oriented by
   their train sign: high when both are favourable) and ``cs_rank(a) - cs_rank(b)`` (oriented
   later by :func:`backtest.candidates.evaluate_candidate` with ``orient=True``, on train RankIC).

The fold-clean rule
    The distilled formulas are gated on the ``[evaluate]`` valid split, so nothing that selects
    them may have seen a label of that split. The explained booster, the SHAP rows (importance
    and interaction pairs) and the leg-sign rows all lie before row ``c - embargo``, ``c`` the
    first trading day on or after ``[evaluate] valid`` start and ``embargo >= horizon + 1`` the
    run's gap: no label window ``t+1 .. t+1+h`` of a fitted, early-stopping, explained or
    signed row reaches the valid split. The explanation model is the latest walk-forward fold
    whose train and early-stopping rows satisfy this
    (:func:`models.walkforward.latest_fold_before`; with the defaults fold 0: trained on
    2010-2017, early-stopped on 2018, predicting 2019); SHAP runs on that fold's early-stopping
    rows and the signs come from its train rows. When no fold qualifies (``first_test`` after
    the valid start), a dedicated explanation booster is fitted with the run's parameters on
    the fold :func:`models.walkforward.fold_before` builds at the valid start (same
    ``train_years``, ``valid_months``, embargo); it predicts nothing and is saved as
    ``explain.txt``. Too few rows for it is a :class:`~data.errors.ConfigError`. The run
    records the explanation model and the date ranges of its fit, SHAP, interaction and sign
    rows (``LGBMRun.shap``, ``run.json``, each candidate's provenance).
    (:mod:`models.lgbm_run` applies the rule; the transformer distils nothing.)

Reference: Lundberg et al. (2020), "From local explanations to global understanding with
explainable AI for trees" (TreeSHAP and SHAP interaction values).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from factors.errors import EvaluationError
from factors.expr_parse import parse
from factors.expr_tree import Call

__all__ = ["ShapSummary", "shap_summary", "feature_signs", "DistilledCandidate",
           "distill_candidates"]


@dataclass
class ShapSummary:
    """Global SHAP statistics of one booster."""

    importance: dict[str, float]                 # feature -> mean |SHAP|, descending
    pairs: list[tuple[str, str, float]]          # (a, b, mean |interaction|), descending
    n_main: int = 0
    n_inter: int = 0
    seconds_main: float = 0.0
    seconds_inter: float = 0.0
    extra: dict = field(default_factory=dict)
    rows: np.ndarray | None = field(default=None, repr=False)   # explained rows (indices
    #                               into X); the interaction rows are ``rows[:n_inter]``

    def top(self, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` most important features."""
        return list(self.importance.items())[:k]


def shap_summary(booster, X: np.ndarray, feature_names: list[str], *, n_main: int = 2000,
                 n_inter: int = 100, top_k: int | None = 30, n_pairs: int = 10,
                 seed: int = 0) -> ShapSummary:
    """Mean |SHAP| importance and the strongest SHAP interaction pairs of a tree model.

    Parameters
    ----------
    booster : lightgbm.Booster
    X : ndarray (n, F)
        Rows to explain (rows the model did not fit, before the valid split: see the module
        docstring); sampled without replacement.
    feature_names : list of str (F,)
    n_main : int, default 2000
        Rows for ``shap_values``.
    n_inter : int, default 100
        Rows for ``shap_interaction_values`` (cost grows with F^2); 0 skips interactions.
    top_k : int or None, default 30
        Pairs are ranked among the ``top_k`` most important features only (all if None).
    n_pairs : int, default 10
    seed : int

    Returns
    -------
    ShapSummary
        With the measured seconds of each step and ``rows``, the indices into ``X`` of the
        explained rows (interactions on the first ``n_inter`` of them).

    Raises
    ------
    EvaluationError
        No rows, or ``feature_names`` of the wrong length.
    """
    import shap
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or len(X) == 0:
        raise EvaluationError(f"shap_summary: need a non-empty (n, F) array, got {X.shape}")
    if len(feature_names) != X.shape[1]:
        raise EvaluationError(f"shap_summary: {len(feature_names)} names for {X.shape[1]} "
                              "features")
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(X), size=min(n_main, len(X)), replace=False)
    explainer = shap.TreeExplainer(booster)
    t0 = time.perf_counter()
    sv = np.asarray(explainer.shap_values(X[idx]))
    t_main = time.perf_counter() - t0
    imp = np.abs(sv).mean(axis=0)
    order = np.argsort(-imp, kind="stable")
    importance = {feature_names[i]: float(imp[i]) for i in order}
    pairs: list[tuple[str, str, float]] = []
    t_inter = 0.0
    n_i = min(n_inter, len(idx))
    if n_i > 0:
        t0 = time.perf_counter()
        iv = np.asarray(explainer.shap_interaction_values(X[idx[:n_i]]))
        t_inter = time.perf_counter() - t0
        m = np.abs(iv).mean(axis=0)
        m = m + m.T                                   # phi_ij + phi_ji
        np.fill_diagonal(m, 0.0)
        keep = order if top_k is None else order[:top_k]
        cand = [(m[i, j], i, j) for a, i in enumerate(keep) for j in keep[a + 1:]]
        cand.sort(key=lambda c: -c[0])
        pairs = [(feature_names[i], feature_names[j], float(v)) for v, i, j in cand[:n_pairs]]
    return ShapSummary(importance, pairs, len(idx), n_i, t_main, t_inter, rows=idx)


def feature_signs(X: np.ndarray, y: np.ndarray, feature_names: list[str]) -> dict[str, float]:
    """Sign (+1 / -1) of each feature's Pearson correlation with ``y`` (the explanation model's
    train rows: never valid / test, see the module docstring).

    A feature with zero or undefined correlation gets +1.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    xc = X - X.mean(axis=0)
    yc = y - y.mean()
    cov = xc.T @ yc
    return {n: (-1.0 if c < 0 else 1.0) for n, c in zip(feature_names, cov)}


@dataclass(frozen=True)
class DistilledCandidate:
    """A formula distilled from a SHAP interaction pair."""

    name: str
    formula: str
    kind: str                     # "rank_product" | "rank_spread"
    features: tuple[str, str]
    interaction: float            # mean |SHAP interaction| of the pair
    importance: tuple[float, float]


def _rank(expr, sign: float = 1.0):
    return Call("cs_rank", (expr if sign > 0 else Call("neg", (expr,)),))


def distill_candidates(summary: ShapSummary, formulas: Mapping[str, str],
                       signs: Mapping[str, float], n_pairs: int = 5, prefix: str = "shap"
                       ) -> list[DistilledCandidate]:
    """Candidate formulas from the top ``n_pairs`` interaction pairs (see the module docstring).

    Parameters
    ----------
    summary : ShapSummary
    formulas : mapping feature name -> formula text
    signs : mapping feature name -> +1 / -1 (train correlation sign)
    n_pairs : int
    prefix : str
        Name prefix of the candidates.

    Returns
    -------
    list of DistilledCandidate
        Two per pair, distinct formulas only.

    Raises
    ------
    EvaluationError
        A pair names a feature without a formula.
    """
    out: list[DistilledCandidate] = []
    seen: set[str] = set()
    for k, (a, b, v) in enumerate(summary.pairs[:n_pairs]):
        if a not in formulas or b not in formulas:
            raise EvaluationError(f"distill_candidates: no formula for {a!r} or {b!r}")
        ea, eb = parse(formulas[a]), parse(formulas[b])
        imp = (summary.importance.get(a, float("nan")), summary.importance.get(b, float("nan")))
        for kind, expr in (
                ("rank_product", Call("mul", (_rank(ea, signs.get(a, 1.0)),
                                              _rank(eb, signs.get(b, 1.0))))),
                ("rank_spread", Call("sub", (_rank(ea), _rank(eb))))):
            text = str(expr)
            if text in seen:
                continue
            seen.add(text)
            out.append(DistilledCandidate(f"{prefix}_{kind}_{a}_{b}", text, kind, (a, b), v,
                                          imp))
    return out
