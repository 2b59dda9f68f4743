"""The sealed test split, enforced in the library.

Rule
    No computation of returns, IC or performance on a date of the test split
    (``[evaluate] test``) happens without an :class:`Access`, and the only way to get one is
    :func:`unseal`, which first appends a row to the audit log in the leaderboard file
    (:class:`factors.audit.AuditLog`: time, command line, config digest, code version, universe,
    the formulas / run / targets concerned and the window). Computations that show numbers then
    add them to the same row (:meth:`Access.seen`). ``mine audit`` lists the log.
Who checks
    Every window that can reach the test split goes through :func:`check_window`: the evaluation
    workspace (:func:`backtest.candidates.make_workspace`, hence eval, GP, LLM feedback, model
    candidates, combine weights), the backtest and micro-cap simulations
    (:mod:`backtest.backtest_run`). Model out-of-sample ranges are refused by
    :mod:`models.run_common`. Default windows end at the end of valid (:func:`default_end`).
Purposes
    ``research``: test-split numbers are computed and shown (``--unseal-test``). ``live``:
    production targets on the latest dates (``mine combine --live``, then ``mine export``): the
    trailing IC weights use recent returns but no performance is computed or shown; still logged.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from backtest.errors import SealedError
from data.provenance import code_version, command_line, config_digest

__all__ = ["Access", "unseal", "check_window", "default_end", "test_start", "in_test"]


@dataclass(frozen=True)
class Access:
    """Permission to compute on test-split dates; made by :func:`unseal` (which logged it)."""

    audit_id: int
    purpose: str
    store_path: Path

    def seen(self, metrics: Mapping[str, Any], formulas: list[str] | None = None) -> None:
        """Add the test-split numbers this access showed (and the factors they were about,
        when only known afterwards, e.g. combine members) to its audit row."""
        from factors.audit import AuditLog
        from factors.store import FactorStore
        with FactorStore(self.store_path) as store:
            AuditLog(store).add_metrics(self.audit_id, metrics, formulas=formulas)


def test_start(cfg) -> pd.Timestamp:
    """First date of the test split (``[evaluate] test[0]``)."""
    return pd.Timestamp(cfg.evaluate.test[0])


def in_test(cfg, end) -> bool:
    """True when a window ending on ``end`` reaches the test split."""
    return pd.Timestamp(end) >= test_start(cfg)


def unseal_ignored(cfg, end) -> str:
    """The warning for ``--unseal-test`` on a window that ends before the test split (nothing
    is unsealed, nothing logged, no test metrics: said, never silent)."""
    return (f"--unseal-test has no effect: the window ends {pd.Timestamp(end).date()}, before "
            f"the test split ({' to '.join(cfg.evaluate.test)}); nothing was unsealed or "
            "logged, and no test metrics are shown")


def default_end(cfg, unsealed: bool) -> str:
    """Where a window ends when the user gives no end: the end of valid while sealed, the end
    of test once unsealed (callers clip it to the data's last day)."""
    return cfg.evaluate.test[1] if unsealed else cfg.evaluate.valid[1]


def check_window(cfg, end, access: Access | None, what: str) -> None:
    """Refuse a computation whose window ends on or after the test start without an access.

    Raises
    ------
    SealedError
        ``end >= [evaluate] test[0]`` and ``access is None``; the message names the
        computation, the split and the flag.
    """
    if access is None and in_test(cfg, end):
        t0 = cfg.evaluate.test[0]
        raise SealedError(f"{what} up to {pd.Timestamp(end).date()} reaches the sealed test "
                          f"split (from {t0}); end it before {t0} (valid ends "
                          f"{cfg.evaluate.valid[1]}) or pass --unseal-test (recorded, see "
                          "`mine audit`)")


def unseal(cfg, *, purpose: str, universe: str | None, subject: Mapping[str, Any],
           window: tuple[str, str], command: str | None = None) -> Access:
    """Log an access to test-split dates in the leaderboard file and return it.

    Parameters
    ----------
    cfg : Config
        Needs ``store`` (the file) and ``evaluate`` (horizon); hashed into ``config_digest``.
    purpose : {"research", "live"}
    universe : str or None
    subject : mapping
        What the access is about, JSON-able: ``{"formulas": [...]}`` (counted per factor on
        the leaderboard), ``{"targets": path}``, ``{"run_id": ...}``.
    window : (str, str)
        Dates of the computation.
    command : str, optional
        Default: this process's command line (:func:`data.provenance.command_line`).

    Raises
    ------
    StoreError
        The leaderboard file cannot be written.
    """
    from factors.audit import AuditLog
    from factors.store import FactorStore
    with FactorStore(cfg.store.path) as store:
        rec = AuditLog(store).record(
            purpose=purpose, command=command or command_line(), config_digest=config_digest(cfg),
            code_version=code_version(), universe=universe, horizon=cfg.evaluate.horizon,
            subject=subject, window=(str(window[0]), str(window[1])))
    return Access(audit_id=rec.id, purpose=purpose, store_path=Path(cfg.store.path))
