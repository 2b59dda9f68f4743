"""Errors of the factor layer: formulas that do not parse or evaluate, and the leaderboard."""
from __future__ import annotations

from data.errors import AlphamineError

__all__ = ["ParseError", "EvaluationError", "StoreError"]


class ParseError(AlphamineError):
    """A factor formula is malformed.

    Attributes
    ----------
    token : str
        The offending token (source text of the bad node), or ``""`` if not applicable.
    col : int
        1-based column of the offending token in the formula, or 0 if unknown.
    formula : str
        The full formula text.
    """

    def __init__(self, message: str, *, token: str = "", col: int = 0, formula: str = ""):
        self.token = token
        self.col = col
        self.formula = formula
        where = f" at column {col}" if col else ""
        tok = f" (token {token!r})" if token else ""
        super().__init__(f"{message}{tok}{where}" + (f" in formula {formula!r}" if formula else ""))


class EvaluationError(AlphamineError):
    """A parsed expression cannot be evaluated (e.g. a field missing from the data)."""


class StoreError(AlphamineError):
    """The factor leaderboard cannot accept or return the requested record."""
