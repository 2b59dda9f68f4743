"""The signals table: the attack layer's scored signals per stock and day.

The table ``signals`` lives in the leaderboard file (:class:`factors.store.FactorStore`,
schema version 7), written by ``mine signals`` (:func:`backtest.signals_run.signals`) and read
by ``mine signals --show`` and the dashboard's Signals page. One row per ``(trade_date,
ts_code)``: running ``mine signals`` again for a day replaces that day's rows (``run_id``
says which run wrote them).

Columns: ``trade_date`` (ISO day the scores are computed at the close), ``ts_code``,
``universe``, ``composite`` and the sub-scores ``factor_score, valuation_score,
technical_score, industry_score`` (``0..100``, NULL = not scored), ``flag`` (``buy`` /
``sell`` / ``hold``; ``hold`` = no action, whether held or not), ``held`` (0/1: in the paper
book at the close, a name with a sell signal included), ``entry, stop,
take_profit`` (raw yuan: a buy's reference close and its ATR stop / take-profit; a held
name's entry and stops), ``atr`` (raw yuan), ``reason`` (``score``, ``exit_score``,
``no_score``, ``stop_loss``, ``take_profit``, ``held``, or empty), ``run_id``,
``created_at``.
"""
from __future__ import annotations

import math

import pandas as pd

from factors.errors import StoreError
from factors.store import FactorStore
from factors.store_records import _now

__all__ = ["FLAGS", "COLUMNS", "SignalLog"]

#: Allowed flags.
FLAGS = ("buy", "sell", "hold")
#: Columns written by :meth:`SignalLog.write` (besides ``run_id`` and ``created_at``).
COLUMNS = ("trade_date", "ts_code", "universe", "composite", "factor_score", "valuation_score",
           "technical_score", "industry_score", "flag", "held", "entry", "stop", "take_profit",
           "atr", "reason")


def _val(v):
    if v is None:
        return None
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
    return v


class SignalLog:
    """Read and write the ``signals`` table of a :class:`FactorStore` (module docstring).

    Every write is one store transaction, so a killed process leaves a day's rows whole.
    """

    def __init__(self, store: FactorStore):
        self.store = store

    def write(self, rows: pd.DataFrame, run_id: str) -> int:
        """Replace the rows of the days in ``rows`` by ``rows`` (one transaction).

        Parameters
        ----------
        rows : DataFrame
            Columns :data:`COLUMNS` (``trade_date`` ISO strings or timestamps).
        run_id : str

        Returns
        -------
        int
            Rows written.

        Raises
        ------
        StoreError
            A missing column or an unknown flag.
        """
        miss = [c for c in COLUMNS if c not in rows]
        if miss:
            raise StoreError(f"signals rows lack column(s) {', '.join(miss)}")
        bad = set(rows["flag"]) - set(FLAGS)
        if bad:
            raise StoreError(f"signal flag(s) {', '.join(sorted(map(str, bad)))}: use "
                             f"{', '.join(FLAGS)}")
        df = rows[list(COLUMNS)].copy()
        df["trade_date"] = pd.to_datetime(df["trade_date"]).dt.strftime("%Y-%m-%d")
        now = _now()
        data = [tuple(_val(v) for v in r) + (run_id, now)
                for r in df.itertuples(index=False, name=None)]
        cols = ", ".join(COLUMNS) + ", run_id, created_at"
        marks = ", ".join("?" * (len(COLUMNS) + 2))
        with self.store._write() as conn:
            for day in sorted(set(df["trade_date"])):
                conn.execute("DELETE FROM signals WHERE trade_date = ?", (day,))
            conn.executemany(f"INSERT INTO signals ({cols}) VALUES ({marks})", data)
        return len(data)

    def entries(self, *, date: str | None = None, flag: str | None = None,
                ts_code: str | None = None) -> pd.DataFrame:
        """Rows, newest day first then by composite (highest first), optionally filtered;
        ``date=None`` with no filter gives every row."""
        names = [*COLUMNS, "run_id", "created_at"]
        sql, params = f"SELECT {', '.join(names)} FROM signals WHERE 1 = 1", []
        for col, v in (("trade_date", date), ("flag", flag), ("ts_code", ts_code)):
            if v is not None:
                sql += f" AND {col} = ?"
                params.append(v)
        rows = self.store._read(sql + " ORDER BY trade_date DESC, composite DESC",
                                tuple(params))
        return pd.DataFrame(rows, columns=names)

    def last_date(self) -> str | None:
        """The latest ``trade_date`` with rows, or None."""
        r = self.store._read("SELECT MAX(trade_date) FROM signals")
        return r[0][0] if r else None
