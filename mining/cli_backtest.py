"""CLI commands: `mine combine`, `mine backtest`, `mine export` (issue 3)."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``mine`` app."""
