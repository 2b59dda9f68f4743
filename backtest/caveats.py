"""The caveats attached to every backtest and combine record (its ``note``), in one place.

:func:`backtest.combine_run.run_combine`, :func:`backtest.backtest_run.run_backtest` and
:func:`backtest.backtest_run.run_microcap` put them in ``combine.json`` / ``performance.json``;
the CLI prints the note under its tables.
"""
from __future__ import annotations

__all__ = ["IN_SAMPLE_NOTE", "SURVIVORSHIP_NOTE", "st_caveat", "join_notes"]

#: Targets built from leaderboard members: the valid split is in-sample for the selection.
IN_SAMPLE_NOTE = ("leaderboard members are selected on valid metrics and the backtest window "
                  "overlaps valid ({valid}): that part is in-sample for the selection; the test "
                  "split ({test}) stays sealed unless --unseal-test (logged, `mine audit`)")

#: The sample warehouse's price data holds survivors only (its README, caveat 1).
SURVIVORSHIP_NOTE = ("the sample warehouse holds only stocks still listed in 2026-05 (survivors): "
                     "delisted names are missing, so results look too good, above all for small "
                     "and micro caps")


def st_caveat(dm) -> str:
    """The look-ahead caveat of an undated ST status, or ``""`` when the ST history is dated.

    Parameters
    ----------
    dm : DataManager
        Its :meth:`data.manager.DataManager.st_source` names the ST source.

    Returns
    -------
    str
        Empty with a dated history (``namechange.parquet``); otherwise a sentence naming the
        source used (e.g. ``stock_basic.is_st_latest``): today's ST status applied to every
        past date, which sets the 5% ST price limits (tradability at the open, the simulator's
        limit checks) and the ST exclusion of the micro-cap preset.
    """
    src, dated = dm.st_source()
    if dated:
        return ""
    return (f"ST status is {src}: today's ST names get the 5% ST price limits (tradability, "
            "fills) and the ST exclusion on every past date, names ST in the past but not "
            "today do not; a dated ST history (namechange.parquet, `mine data bootstrap`) "
            "removes this")


def join_notes(*notes: str) -> str:
    """The non-empty notes joined with ``"; "``."""
    return "; ".join(n for n in notes if n)
