"""Backtests counted and deflated: every backtest is a trial of a strategy.

:func:`charge_backtest` records one backtest in the store's backtest-trial ledger
(``backtest_trials`` in ``[store] path``, :mod:`factors.store_ledgers`) and returns its deflated
Sharpe ratio (:func:`backtest.metrics.deflated_sharpe`) with ``N`` = the distinct strategies
backtested so far, this one included, and ``V`` = the variance of their daily Sharpe ratios.

Why the store and not the backtest folder: run folders come and go (``--out``, several
``out_dir`` roots, deleted runs), while the leaderboard file already is the one record of what
was tried; the two ledgers share its schema versioning, its transactions and its lifetime.

A strategy is identified by its name and :func:`targets_digest` (its target positions inside
the simulated window, and that window): re-running the same targets on the same window is the
same trial (its row is updated, ``N`` does not grow); new targets, another window or another
name is a new trial. ``N`` counts every universe and benchmark together (selection happens
across them). Cost settings are not part of the key.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd

from backtest.metrics import DeflatedSharpe, deflated_sharpe
from factors.store import FactorStore

__all__ = ["targets_digest", "charge_backtest"]


def targets_digest(targets: pd.DataFrame, start: str, end: str) -> str:
    """Hex SHA-256 of the ``(trade_date, ts_code, target_weight)`` rows (sorted) and the window.

    Deterministic across processes (:func:`pandas.util.hash_pandas_object` with its fixed key).
    """
    cols = [c for c in ("trade_date", "ts_code", "target_weight") if c in targets]
    frame = targets[cols].sort_values(cols[:2]).reset_index(drop=True)
    h = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    h.update(f"|{start}|{end}".encode())
    return h.hexdigest()


def charge_backtest(store_path: str | os.PathLike, nav: pd.Series, targets: pd.DataFrame, *,
                    strategy: str, start: str, end: str, universe: str | None = None,
                    run_id: str | None = None, out_dir: str | os.PathLike | None = None
                    ) -> DeflatedSharpe:
    """Count a backtest as a strategy trial and return its deflated Sharpe ratio.

    Parameters
    ----------
    store_path : path
        ``[store] path`` (the leaderboard file holding the ledger).
    nav : Series
        The account NAV (daily returns ``NAV_t / NAV_{t-1} - 1``).
    targets : DataFrame
        The simulated target positions (for :func:`targets_digest`).
    strategy, start, end : str
        Strategy name and the simulated window.
    universe, run_id, out_dir : optional
        Recorded with the trial.

    Returns
    -------
    DeflatedSharpe

    Raises
    ------
    StoreError
        The store cannot be opened or written.
    """
    v = nav.astype(np.float64).dropna().to_numpy()
    r = v[1:] / v[:-1] - 1.0 if v.size > 1 else np.array([])
    sd = float(r.std(ddof=1)) if r.size > 1 else float("nan")
    sr = float(r.mean()) / sd if sd > 0 else None
    with FactorStore(store_path) as store:
        n, sharpes = store.record_backtest(
            strategy=strategy, digest=targets_digest(targets, start, end), sharpe=sr,
            n_days=int(r.size), universe=universe, start=start, end=end, run_id=run_id,
            out_dir=None if out_dir is None else str(Path(out_dir)))
    return deflated_sharpe(r, n, sharpes)
