"""The ``mine`` console script: the app of :mod:`mining.cli_app` with every command module loaded.

Each ``mining/cli_*`` module defines its commands on :data:`mining.cli_app.app` when imported:
``cli_factors`` (ops, fields, eval, leaderboard, library, config show), ``cli_gp`` (gp),
``cli_llm`` (llm, prompts), ``cli_model`` (model lgbm | transformer), ``cli_backtest``
(combine, backtest), ``cli_data`` (data bootstrap | update | status) and
``cli_export`` (export), ``cli_runs`` (runs, rerun), ``cli_report`` (report factor), ``cli_monitor`` (monitor,
alerts), ``cli_reconcile`` (reconcile). A new command module is one file plus its
name here.
"""
from __future__ import annotations

from mining import (  # noqa: F401
    cli_backtest,
    cli_data,
    cli_export,
    cli_factors,
    cli_gp,
    cli_llm,
    cli_model,
    cli_monitor,
    cli_reconcile,
    cli_report,
    cli_runs,
    cli_signals,
)
from mining.cli_app import app

__all__ = ["app"]

if __name__ == "__main__":  # pragma: no cover
    app()
