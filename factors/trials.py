"""The multiple-testing charge of the leaderboard gate: trial keys, p-values, adjusted p-values.

Every distinct formula evaluated on the valid split is a *trial*: the store keeps one ledger row
per (trial key, universe, horizon) across all runs and producers (:mod:`factors.store_trials`),
and a candidate is judged against the whole family of trials of its universe and horizon.

Trial key
    The canonical formula text (:func:`factors.expr_tree.unparse`) with outer negations removed:
    ``f`` and ``-f`` are one trial, because the direction is chosen on train. A text that does
    not parse (a hand-made record) is its own key.

p-value of one trial
    H0: the mean daily valid RankIC, oriented by the train direction, is ``<= 0``. With ``t``
    the Newey-West t-statistic of the daily valid RankIC (``metrics["valid"]["rank_ic_t"]``, see
    :func:`backtest.metrics_ic.newey_west_t`) over ``n = n_ic_days`` days and ``s`` the sign of
    the train mean RankIC, ``p = P(T_{n-1} >= s * t)`` (Student t with ``n - 1`` degrees of
    freedom: slightly more conservative than the normal limit for short splits). Without a
    train direction the test is two-sided, ``p = min(1, 2 P(T_{n-1} >= |t|))``. A trial without
    a finite ``t`` or with ``n < 2`` has ``p = 1``: it is counted and charges the others, but can
    never pass.

Adjusted p-values (family of ``m`` trials, ``p_(1) <= ... <= p_(m)``; :func:`adjust_pvalues`)
    * ``"bonferroni"``: ``min(1, m p)``; family-wise error control (Bonferroni inequality).
    * ``"holm"``: ``p~_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``; Holm (1979), "A simple
      sequentially rejective multiple test procedure", Scand. J. Statist. 6(2), 65-70.
    * ``"bhy"``: ``p~_(i) = min_{k >= i} min(1, m c(m) p_(k) / k)`` with
      ``c(m) = sum_{j=1}^{m} 1/j``; false discovery rate control under arbitrary dependence,
      Benjamini & Yekutieli (2001), "The control of the false discovery rate in multiple testing
      under dependency", Ann. Statist. 29(4), 1165-1188, Theorem 1.3. It is the FDR method
      Harvey, Liu & Zhu (2016), "... and the Cross-Section of Expected Returns", Rev. Financ.
      Stud. 29(1), 5-68, apply to the factor zoo (next to Bonferroni and Holm), which fits mined
      formulas: they are strongly and unknowably dependent.
    * ``"none"``: ``p~ = p`` (a single-test significance rule).

    Bonferroni and Holm never fall when a trial is added; BHY rises with every trial weaker than
    the candidate (``m c(m)`` grows, the candidate's rank stays), but a new trial *stronger* than
    the candidate moves it down one rank and can lower its BHY value.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Adjustment methods of ``[store] haircut`` (module docstring).
HAIRCUTS: tuple[str, ...] = ("bhy", "holm", "bonferroni", "none")


def trial_key(formula: Any) -> str:
    """The ledger key of a formula: canonical text without outer negations (module docstring).

    ``formula`` is an :class:`~factors.expr_tree.Expr` or formula text; text that does not parse
    is returned stripped of surrounding white space.
    """
    from factors.errors import ParseError
    from factors.expr_tree import Call, Expr, unparse

    expr = formula
    if not isinstance(formula, Expr):
        from factors.expr_parse import parse
        try:
            expr = parse(str(formula))
        except ParseError:
            return str(formula).strip()
    while isinstance(expr, Call) and expr.op == "neg" and len(expr.args) == 1 \
            and not expr.windows:
        expr = expr.args[0]
    return unparse(expr)


def _finite(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def one_sided_p(t: float, n: int) -> float:
    """``P(T_{n-1} >= t)`` for Student's t with ``n - 1`` degrees of freedom.

    NaN when ``t`` is not finite or ``n < 2``.
    """
    from scipy.stats import t as student_t

    tt = _finite(t)
    if tt is None or n is None or int(n) < 2:
        return math.nan
    return float(student_t.sf(tt, int(n) - 1))


def trial_pvalue(metrics: Mapping[str, Any]) -> tuple[float | None, float, int | None]:
    """``(oriented t, p, n)`` of a record's valid RankIC (module docstring).

    Parameters
    ----------
    metrics : mapping
        ``{split: {metric: value}}`` as stored; reads ``valid.rank_ic_t``,
        ``valid.n_ic_days`` and ``train.rank_ic_mean``.

    Returns
    -------
    t : float or None
        ``s * t`` (``|t|`` without a train direction); None when unmeasured.
    p : float
        In ``[0, 1]``; 1.0 when unmeasured.
    n : int or None
        Days of the valid RankIC series.
    """
    valid = metrics.get("valid") or {}
    t = _finite(valid.get("rank_ic_t"))
    n_raw = _finite(valid.get("n_ic_days"))
    n = None if n_raw is None else int(n_raw)
    if t is None or n is None or n < 2:
        return None, 1.0, n
    tr = _finite((metrics.get("train") or {}).get("rank_ic_mean"))
    if tr is None or tr == 0.0:
        return abs(t), min(1.0, 2.0 * one_sided_p(abs(t), n)), n
    to = t if tr > 0 else -t
    return to, one_sided_p(to, n), n


def adjust_pvalues(p, method: str = "bhy") -> np.ndarray:
    """Multiple-testing adjusted p-values of a family (module docstring for the formulas).

    Parameters
    ----------
    p : array_like of float, shape (m,)
        Raw p-values in ``[0, 1]``; NaN is treated as 1 (an unmeasured trial).
    method : {"bhy", "holm", "bonferroni", "none"}

    Returns
    -------
    ndarray of float64, shape (m,)
        Adjusted p-values in the input order, each in ``[p_i, 1]``.

    Raises
    ------
    ValueError
        On an unknown method or a p-value outside ``[0, 1]``.
    """
    if method not in HAIRCUTS:
        raise ValueError(f"haircut {method!r} is not one of {', '.join(HAIRCUTS)}")
    p = np.asarray(p, dtype=np.float64).ravel()
    p = np.where(np.isnan(p), 1.0, p)
    if ((p < 0) | (p > 1)).any():
        raise ValueError("p-values must lie in [0, 1]")
    m = p.size
    if m == 0 or method == "none":
        return p.copy()
    if method == "bonferroni":
        return np.minimum(1.0, m * p)
    order = np.argsort(p, kind="mergesort")
    ps = p[order]
    i = np.arange(1, m + 1, dtype=np.float64)
    if method == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m - i + 1.0) * ps))
    else:  # bhy
        c_m = float(np.sum(1.0 / i))
        adj = np.minimum.accumulate(np.minimum(1.0, m * c_m * ps / i)[::-1])[::-1]
    out = np.empty(m)
    out[order] = adj
    return out


@dataclass(frozen=True)
class TrialCharge:
    """What the multiple-testing rule charges one candidate.

    ``n_tried``: trials in its (universe, horizon) family, the candidate included; ``t`` and
    ``p``: its oriented valid t-statistic and raw one-sided p-value; ``adj_p``: its adjusted
    p-value under ``method`` over the family.
    """

    method: str
    n_tried: int
    t: float | None
    p: float
    adj_p: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line: ``bhy adjusted p 0.0213 over 57 trials (raw p 0.00021, t +3.52)``."""
        why = ("no valid t-statistic (valid rank_ic_t / n_ic_days missing)" if self.t is None
               else f"t {self.t:+.2f}")
        return (f"{self.method} adjusted p {self.adj_p:.4g} over {self.n_tried} trial"
                f"{'s' if self.n_tried != 1 else ''} (raw p {self.p:.2g}, {why})")


def charge_of(p_family, index: int, *, method: str, n_tried: int, t: float | None
              ) -> TrialCharge:
    """The :class:`TrialCharge` of member ``index`` of a family of raw p-values."""
    p_family = np.asarray(p_family, dtype=np.float64)
    adj = adjust_pvalues(p_family, method)
    p = float(p_family[index]) if math.isfinite(p_family[index]) else 1.0
    return TrialCharge(method, int(n_tried), t, p, float(adj[index]))


__all__ = ["HAIRCUTS", "TrialCharge", "adjust_pvalues", "charge_of", "one_sided_p",
           "trial_key", "trial_pvalue"]
