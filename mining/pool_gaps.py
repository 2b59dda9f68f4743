"""What the leaderboard pool lacks: members per theme, missing themes, names to build on.

Also the pool as GP building blocks (:func:`pool_terminals`, ``[gp] pool``).

Shown to the LLM producer (the ``{{pool_gaps}}`` placeholder of :func:`mining.prompting.render`)
so that it proposes what is missing rather than variants of what the pool already holds, and
references good members as building blocks (``factor("<name>")``,
:class:`factors.expr_tree.FactorRef`).

Classification rule (multi-label, from the formula text only; no data is loaded)
    A member belongs to every theme whose *fields* its formula reads, plus the themes of the
    members it references with ``factor("<name>")`` (followed through the pool, at most
    :data:`MAX_REF_DEPTH` levels):

    * ``volatility`` - a dispersion operator (``ts_std``, ``ts_mad``, ``ts_skew``,
      ``ts_zscore``) applied to a price field, or both ``high`` and ``low`` (the day's range);
    * ``price trend (reversal/momentum)`` - reads a price field (:data:`PRICE_FIELDS`) and is
      not ``volatility`` (returns, deltas, moving-average gaps, candle shapes);
    * ``volume/liquidity`` - reads ``vol``, ``amount``, ``turnover`` or ``turnover_rate``;
    * ``size/value`` - reads market value, share count or a valuation ratio (``total_mv``,
      ``circ_mv``, ``total_share``, ``pe_ttm``, ``pb``, ``ps_ttm``, ``dv_ttm``);
    * ``fundamentals`` - reads a financial-statement field (``roe``, ``eps``, ``revenue``...);
    * ``model`` - a ``model("<run id>")`` prediction panel (counted, never reported missing).

    A theme with no member is *missing*; the *most crowded* theme is the one with the most
    members (ties: the first in :data:`THEMES` order). Only train and valid metrics are read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from data.errors import AlphamineError
from factors.errors import ParseError
from factors.expr_parse import parse
from factors.expr_tree import (
    MEMBER_NAME_RE,
    Call,
    Expr,
    ModelRef,
    factor_refs,
    fields,
    walk,
)

if TYPE_CHECKING:  # pragma: no cover
    from backtest.candidates import Workspace

__all__ = ["THEMES", "PRICE_FIELDS", "PoolGaps", "classify", "pool_gaps", "gaps_from_records",
           "pool_terminals"]

#: Price fields (back-adjusted and raw prices, returns).
PRICE_FIELDS = frozenset({"open", "high", "low", "close", "vwap", "raw_open", "raw_high",
                          "raw_low", "raw_close", "pre_close", "ret", "adj_factor"})
_VOLUME = frozenset({"vol", "amount", "turnover", "turnover_rate"})
_SIZE_VALUE = frozenset({"total_mv", "circ_mv", "total_share", "pe_ttm", "pb", "ps_ttm",
                         "dv_ttm"})
_FUNDAMENTALS = frozenset({"roe", "roa", "eps", "bps", "grossprofit_margin", "netprofit_yoy",
                           "debt_to_assets", "revenue", "n_income", "total_assets",
                           "total_liab", "n_cashflow_act"})
_DISPERSION = frozenset({"ts_std", "ts_mad", "ts_skew", "ts_zscore"})
#: Themes in display order, with the fields that suggest them (shown for a missing theme).
THEMES: dict[str, str] = {
    "price trend (reversal/momentum)": "close, open, vwap, ret, ts_delta, ts_pct_change",
    "volatility": "ts_std / ts_mad / ts_skew of ret or close, (high - low) / close",
    "volume/liquidity": "vol, amount, turnover, turnover_rate",
    "size/value": "total_mv, circ_mv, pe_ttm, pb, ps_ttm, dv_ttm",
    "fundamentals": "roe, roa, eps, bps, grossprofit_margin, netprofit_yoy, debt_to_assets",
}
_MODEL = "model"
#: Deepest chain of ``factor("...")`` references followed when classifying.
MAX_REF_DEPTH = 8


def _own_themes(expr: Expr) -> set[str]:
    names = fields(expr)
    out: set[str] = set()
    price = names & PRICE_FIELDS
    vol_op = any(isinstance(n, Call) and n.op in _DISPERSION
                 and fields(n) & PRICE_FIELDS for n in walk(expr))
    if vol_op or {"high", "low"} <= names or {"raw_high", "raw_low"} <= names:
        out.add("volatility")
    elif price:
        out.add("price trend (reversal/momentum)")
    if names & _VOLUME:
        out.add("volume/liquidity")
    if names & _SIZE_VALUE:
        out.add("size/value")
    if names & _FUNDAMENTALS:
        out.add("fundamentals")
    if any(isinstance(n, ModelRef) for n in walk(expr)):
        out.add(_MODEL)
    return out


def classify(formula: str | Expr, pool: dict[str, str] | None = None) -> frozenset[str]:
    """Themes of one formula (see the module docstring for the rule).

    Parameters
    ----------
    formula : str or Expr
    pool : dict of str to str, optional
        Member name -> formula, to follow ``factor("<name>")`` references (unknown names add
        no theme).

    Returns
    -------
    frozenset of str
        Keys of :data:`THEMES`, plus ``"model"``; empty for a formula that does not parse.
    """
    pool = pool or {}
    out: set[str] = set()
    todo = [(formula, 0)]
    seen: set[str] = set()
    while todo:
        f, d = todo.pop()
        try:
            expr = parse(f) if isinstance(f, str) else f
        except ParseError:
            continue
        out |= _own_themes(expr)
        if d < MAX_REF_DEPTH:
            for name in factor_refs(expr):
                if name in pool and name not in seen:
                    seen.add(name)
                    todo.append((pool[name], d + 1))
    return frozenset(out)


@dataclass(frozen=True)
class PoolGaps:
    """The pool of one universe and horizon by theme.

    Attributes
    ----------
    universe : str
    horizon : int
    n_members : int
    counts : dict of str to int
        Members per theme (every key of :data:`THEMES`, plus ``"model"`` when present); a
        member counts in each of its themes.
    missing : list of str
        Themes of :data:`THEMES` with no member, in display order.
    crowded : str or None
        The theme with the most members (``None`` for an empty pool).
    referable : list of (str, float or None)
        Names that ``factor("<name>")`` can reference (unique, valid names), with their valid
        mean RankIC, best ``|valid RankIC|`` first, at most ``max_refs``.
    """

    universe: str
    horizon: int
    n_members: int
    counts: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    crowded: str | None = None
    referable: list[tuple[str, float | None]] = field(default_factory=list)

    def text(self) -> str:
        """Markdown block for the prompt (``{{pool_gaps}}``)."""
        if self.n_members == 0:
            return (f"The leaderboard for {self.universe} (horizon {self.horizon}) is empty: "
                    "every theme is open and there is no member to reference yet.")
        lines = [f"The leaderboard for {self.universe} (horizon {self.horizon}) has "
                 f"{self.n_members} members. Members per theme (a member counts in each theme "
                 "whose fields it reads):", ""]
        lines += [f"- {t}: {self.counts.get(t, 0)}" for t in THEMES]
        if self.counts.get(_MODEL):
            lines.append(f"- model predictions: {self.counts[_MODEL]}")
        lines.append("")
        if self.missing:
            lines.append("Missing (no member yet; prefer these): "
                         + "; ".join(f"{t} missing (e.g. {THEMES[t]})" for t in self.missing)
                         + ".")
        else:
            lines.append("No theme is missing.")
        if self.crowded:
            lines.append(f"Most crowded: {self.crowded} ({self.counts[self.crowded]} members); "
                         "avoid more of the same.")
        if self.referable:
            refs = ", ".join(f'`factor("{n}")` (valid RankIC {_fmt(ic)})'
                             for n, ic in self.referable)
            lines += ["", "You may build on members by name: " + refs + ". A reference "
                      "evaluates that member's formula (e.g. `cs_rank(factor(\"name\")) * "
                      "cs_rank(-turnover)` conditions it on liquidity); a bare reference or a "
                      "close variant of a member is rejected as too correlated."]
        return "\n".join(lines)

    def summary(self) -> str:
        """One line for the per-round feedback message."""
        if self.n_members == 0:
            return "Pool: empty."
        miss = ", ".join(self.missing) if self.missing else "none"
        crowded = f"; most crowded: {self.crowded}" if self.crowded else ""
        return f"Pool: {self.n_members} members; missing themes: {miss}{crowded}."


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:+.4f}"


def gaps_from_records(records: Sequence[Any], universe: str, horizon: int, *,
                      max_refs: int = 10) -> PoolGaps:
    """:class:`PoolGaps` of ``records`` (leaderboard members of one universe and horizon).

    ``records`` need ``name``, ``formula`` and ``metric(split, name)``
    (:class:`factors.store_records.FactorRecord`); only the valid RankIC is read.
    """
    names: dict[str, int] = {}
    for r in records:
        names[r.name] = names.get(r.name, 0) + 1
    pool = {r.name: r.formula for r in records if names[r.name] == 1}
    counts = {t: 0 for t in THEMES}
    for r in records:
        for t in classify(r.formula, pool):
            counts[t] = counts.get(t, 0) + 1
    missing = [t for t in THEMES if counts[t] == 0] if records else list(THEMES)
    crowded = max(counts, key=lambda t: (counts[t], -list(counts).index(t))) if records else None
    if crowded is not None and counts[crowded] == 0:
        crowded = None
    ref = [(r.name, r.metric("valid", "rank_ic_mean")) for r in records
           if names[r.name] == 1 and MEMBER_NAME_RE.fullmatch(r.name)]
    ref.sort(key=lambda x: -(abs(x[1]) if x[1] is not None else -1.0))
    return PoolGaps(universe=universe, horizon=int(horizon), n_members=len(records),
                    counts=counts, missing=missing, crowded=crowded, referable=ref[:max_refs])


def pool_gaps(store: Any, universe: str, horizon: int, *, max_refs: int = 10) -> PoolGaps:
    """The pool gaps of ``universe`` at ``horizon`` in ``store`` (a
    :class:`factors.store.FactorStore`): reads its members, loads no data.

    Parameters
    ----------
    store : FactorStore
    universe : str
    horizon : int
    max_refs : int, default 10
        How many referable names to list.

    Returns
    -------
    PoolGaps
    """
    return gaps_from_records(store.members(universe=universe, horizon=horizon), universe,
                             horizon, max_refs=max_refs)


def pool_terminals(ws: "Workspace", k: int, n_rows: int) -> dict[str, np.ndarray]:
    """GP terminals from the leaderboard: the best ``k`` members by ``|valid rank_icir|``.

    ``[gp] pool``. Keys are ``factor("<name>")`` (:func:`mining.gp.terminal` maps them back to
    :class:`factors.expr_tree.FactorRef` leaves, so a program built on a member prints as a
    reference); values are the members' ``(n_rows, N)`` panels on the workspace's first
    ``n_rows`` dates (the train rows: GP fitness sees nothing later). Members that cannot be
    evaluated here or have no finite value on those rows (a model panel before its first test
    date) are skipped; names that ``factor()`` cannot reference (duplicates) too.
    """
    names = set(ws.member_names())
    recs = [r for r in ws.pool() if r.name in names]
    recs.sort(key=lambda r: -abs(r.metric("valid", "rank_icir") or 0.0))
    out: dict[str, np.ndarray] = {}
    for r in recs:
        if len(out) >= k:
            break
        try:
            panel = ws.member_panel(r.name)[:n_rows]
        except AlphamineError:
            continue
        if np.isfinite(panel).any():
            out[f'factor("{r.name}")'] = panel
    return out
