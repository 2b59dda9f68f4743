"""The ``mine`` console script: the app of :mod:`mining.cli_app` with every command module loaded.

Each ``mining/cli_*`` module defines its commands on :data:`mining.cli_app.app` when imported;
this module imports them all (``cli_factors``: ops, fields, eval, leaderboard, library, config;
``cli_gp``: gp) and registers the modules that still expose ``register(app)``.
"""
from __future__ import annotations

from mining import cli_factors, cli_gp  # noqa: F401  (commands defined at import)
from mining.cli_app import app

# --------------------------------------------------------------------------- other producers
# Each capability registers its commands on ``app`` from its own module.
from mining import cli_backtest, cli_export, cli_llm, cli_model  # noqa: E402,F401  (commands added to app at import)

__all__ = ["app"]

if __name__ == "__main__":  # pragma: no cover
    app()
