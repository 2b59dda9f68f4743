"""Exception hierarchy shared by every alphamine layer.

All errors raised on bad user input derive from :class:`AlphamineError` so the CLI can catch
one type, print its message (which always names the offending input and how to fix it) and exit
non-zero without a traceback.
"""
from __future__ import annotations


class AlphamineError(Exception):
    """Base class of every error alphamine raises on bad input or missing data."""


class ConfigError(AlphamineError):
    """The configuration (``mine.toml`` or a CLI option) is invalid."""


class DataError(AlphamineError):
    """The warehouse is missing, incomplete, or a request falls outside it."""


class UniverseError(DataError):
    """An unknown universe name, or one the data cannot support on the requested dates."""


class FieldError(DataError):
    """An unknown field name was requested."""


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


class BacktestError(AlphamineError):
    """Targets, market data or simulator settings of a backtest are invalid."""


class LLMError(AlphamineError):
    """An LLM endpoint, prompt template or reply cache cannot serve the request."""
