"""Errors of the backtest layer."""
from __future__ import annotations

from data.errors import AlphamineError

__all__ = ["BacktestError", "SealedError"]


class BacktestError(AlphamineError):
    """Targets, market data or simulator settings of a backtest are invalid."""


class SealedError(BacktestError):
    """A computation would reach the sealed test split without ``--unseal-test``."""
