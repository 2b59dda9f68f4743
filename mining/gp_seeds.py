"""Warm start of the GP: formulas of the leaderboard and/or the named library as seeds.

The engine (:func:`mining.gp_engine.evolve`, ``seeds=``) puts them into its first population,
so the search starts from what is known to work instead of from random trees only; the
diversity hook (:mod:`mining.gp_diversity`) then pushes the offspring away from the members.
Only formulas the GP can express are kept: every field must be one of the GP's terminals
(``[gp] fields``) and no ``model("<run id>")`` leaf; the others are skipped and counted.
"""
from __future__ import annotations

from collections.abc import Iterable

from data.errors import AlphamineError
from factors.expr_parse import parse
from factors.expr_tree import Expr, fields, model_refs
from factors.library import LIBRARY
from factors.store import FactorStore

__all__ = ["SEED_SOURCES", "SeedList", "seed_formulas"]

#: Values of ``[gp] seed_from``.
SEED_SOURCES = ("leaderboard", "library", "both", "none")


class SeedList(list):
    """The seeds (a list of :class:`~factors.expr_tree.Expr`) with ``skipped``: reason ->
    count (``fields``: a field outside the GP's, ``model``: a model leaf, ``parse``: a formula
    that no longer parses)."""

    def __init__(self, items: Iterable[Expr] = (), skipped: dict[str, int] | None = None):
        super().__init__(items)
        self.skipped: dict[str, int] = dict(skipped or {})


def seed_formulas(store: FactorStore | None, universe: str, horizon: int, source: str,
                  allowed_fields: Iterable[str]) -> SeedList:
    """Parsed seed formulas for a GP run on ``universe`` / ``horizon``.

    Parameters
    ----------
    store : FactorStore or None
        The leaderboard (its members of ``universe`` and ``horizon``, by id); may be None when
        ``source`` is ``"library"`` or ``"none"``.
    universe : str
    horizon : int
    source : {"leaderboard", "library", "both", "none"}
        Where the seeds come from (``[gp] seed_from``); library factors follow the members.
    allowed_fields : iterable of str
        The GP's terminals; a formula using another field is skipped.

    Returns
    -------
    SeedList
        Distinct formulas in that order, with the skipped counts.

    Raises
    ------
    ValueError
        Unknown ``source``, or a leaderboard source without a store.
    """
    if source not in SEED_SOURCES:
        raise ValueError(f"seed_from must be one of {', '.join(SEED_SOURCES)}, got {source!r}")
    texts: list[str] = []
    if source in ("leaderboard", "both"):
        if store is None:
            raise ValueError(f"seed_from={source!r} needs the leaderboard store")
        texts += [r.formula for r in store.members(universe=universe, horizon=horizon)]
    if source in ("library", "both"):
        texts += [f.formula for f in LIBRARY]
    allowed = frozenset(allowed_fields)
    out = SeedList()
    seen: set[Expr] = set()
    for text in texts:
        try:
            expr = parse(text)
        except AlphamineError:
            out.skipped["parse"] = out.skipped.get("parse", 0) + 1
            continue
        if model_refs(expr):
            out.skipped["model"] = out.skipped.get("model", 0) + 1
        elif not fields(expr) <= allowed:
            out.skipped["fields"] = out.skipped.get("fields", 0) + 1
        elif expr not in seen:
            seen.add(expr)
            out.append(expr)
    return out
