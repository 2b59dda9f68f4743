"""The root of alphamine's exceptions and the data layer's own.

All errors raised on bad user input derive from :class:`AlphamineError` so the CLI can catch
one type, print its message (which always names the offending input and how to fix it) and exit
non-zero without a traceback. Each layer defines its errors next to its code:
:mod:`factors.errors` (ParseError, EvaluationError, StoreError), :mod:`backtest.errors`
(BacktestError), :mod:`mining.errors` (LLMError).
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


class ProviderError(DataError):
    """A data provider request failed after its retries, or the provider refused it.

    The message names the provider, the endpoint and its parameters, never the credentials.
    """


class RunError(AlphamineError):
    """A recorded run (``mine runs`` / ``mine rerun``) is unknown, unreadable or cannot be
    replayed."""
