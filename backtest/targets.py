"""``target_positions``: the contract between strategies, the simulator and the export, its
files, and the reading of the user's own tables (targets, positions, quotes).

target_positions (long frame, one row per held name per rebalance day)
    ``trade_date`` (datetime64, the decision day ``t``: the scores use data up to the close of
    ``t``, the entry filter the open auction of ``t + 1`` (:mod:`backtest.strategies`), and
    the simulator executes at the open of ``t + 1``), ``ts_code``,
    ``target_weight`` (fraction of the account NAV, >= 0, row sum <= 1, the rest is cash) and
    ``strategy_name``. Only rebalance days appear; between them the account holds. A rebalance
    day on which nothing qualifies has no row (the account keeps what it holds).
    Written as Parquet and CSV side by side, each atomically (:func:`write_targets`).

Reading a file (:func:`read_targets`, :func:`read_frame`)
    A file a user hands in is checked before anything runs on it: an unreadable, empty or
    header-only file, a missing column, a missing or unparseable date (``YYYY-MM-DD`` or
    ``YYYYMMDD``), a missing code, a weight that is text, negative, NaN or infinite, duplicate
    ``(trade_date, ts_code)`` rows or a day summing above 1 is one :class:`BacktestError`
    naming the file and the first offending row -- never a pandas / pyarrow traceback.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from backtest.errors import BacktestError
from data.io import atomic_write, reason

__all__ = ["TARGET_COLUMNS", "write_frame", "write_targets", "validate_targets", "read_frame",
           "read_targets"]

#: Columns of ``target_positions``, in order.
TARGET_COLUMNS = ("trade_date", "ts_code", "target_weight", "strategy_name")


def write_frame(df: pd.DataFrame, stem) -> tuple[Path, Path]:
    """Write ``df`` as ``stem.parquet`` and ``stem.csv``, each atomically (temp + os.replace)."""
    stem = Path(stem)
    pq, csv = stem.with_suffix(".parquet"), stem.with_suffix(".csv")
    atomic_write(pq, lambda p: df.to_parquet(p, index=False))
    atomic_write(csv, lambda p: df.to_csv(p, index=False))
    return pq, csv


def write_targets(df: pd.DataFrame, stem) -> tuple[Path, Path]:
    """Validate and write ``target_positions`` (Parquet + CSV); returns both paths."""
    return write_frame(validate_targets(df), stem)


def _row(df: pd.DataFrame, i: int) -> str:
    """``row k``: the ``i``-th data row (0-based) as a 1-based row number after the header."""
    return f"row {i + 1}"


def _show(v) -> str:
    """A cell for a message: text quoted, numbers plain (``-0.1``, not ``np.float64(-0.1)``)."""
    return repr(v) if isinstance(v, str) else str(v)


def _parse_dates(col: pd.Series, where: str) -> pd.Series:
    """``trade_date`` as datetime64[ns]: datetimes kept, strings/ints read as ISO dates
    (``YYYY-MM-DD`` or ``YYYYMMDD``); a missing or unparseable date is a BacktestError naming
    its row."""
    if pd.api.types.is_datetime64_any_dtype(col):
        out = pd.to_datetime(col)
        if getattr(out.dt, "tz", None) is not None:
            out = out.dt.tz_localize(None)
    else:
        raw = col.astype("string") if pd.api.types.is_integer_dtype(col) else col
        out = pd.to_datetime(raw, errors="coerce", format="ISO8601")
    bad = np.flatnonzero(out.isna().to_numpy())
    if bad.size:
        i = int(bad[0])
        v = col.iloc[i]
        what = "missing" if pd.isna(v) else f"not a date: {v!r}"
        raise BacktestError(f"{where}: trade_date {what} on {_row(col, i)} ({bad.size} bad "
                            f"row(s); use YYYY-MM-DD)")
    return out.astype("datetime64[ns]")


def validate_targets(df: pd.DataFrame, where: str = "targets") -> pd.DataFrame:
    """Check the ``target_positions`` schema and normalise dtypes.

    Raises
    ------
    BacktestError
        Missing columns, a missing or unparseable date, a missing code, a weight that is not
        a number, negative or not finite, a day whose weights sum above 1, or duplicate
        (trade_date, ts_code) rows; the message names the first offending row.
    """
    missing = [c for c in TARGET_COLUMNS[:3] if c not in df.columns]
    if missing:
        raise BacktestError(f"{where}: missing column(s) {', '.join(missing)}; need "
                            f"{', '.join(TARGET_COLUMNS)} (strategy_name optional)")
    out = df.reset_index(drop=True)
    if "strategy_name" not in out:
        out = out.assign(strategy_name="custom")
    out = out.assign(trade_date=_parse_dates(out["trade_date"], where))
    code = out["ts_code"]
    blank = np.flatnonzero((code.isna() | (code.astype(str).str.strip() == "")).to_numpy())
    if blank.size:
        raise BacktestError(f"{where}: ts_code missing on {_row(out, int(blank[0]))}")
    out["ts_code"] = code.astype(str).str.strip()
    raw_w = out["target_weight"]
    w = pd.to_numeric(raw_w, errors="coerce").to_numpy(np.float64) \
        if not pd.api.types.is_bool_dtype(raw_w) else np.full(len(out), np.nan)
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if bad.size:
        i = int(bad[0])
        raise BacktestError(f"{where}: target_weight must be a finite number >= 0, got "
                            f"{_show(raw_w.iloc[i])} on {_row(out, i)} ({out['ts_code'].iloc[i]}, "
                            f"{out['trade_date'].iloc[i].date()}; {bad.size} bad row(s))")
    out["target_weight"] = w
    dup = out.duplicated(["trade_date", "ts_code"])
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise BacktestError(f"{where}: duplicate (trade_date, ts_code) rows, e.g. "
                            f"{out['trade_date'].iloc[i].date()} {out['ts_code'].iloc[i]} "
                            f"({int(dup.sum())} duplicate(s)); one row per name and day")
    day = out.groupby("trade_date")["target_weight"].sum()
    if (day > 1 + 1e-9).any():
        raise BacktestError(f"{where}: weights of {day.idxmax().date()} sum to {day.max():.4f} > 1")
    return out[list(TARGET_COLUMNS)].sort_values(["trade_date", "ts_code"]).reset_index(drop=True)


#: File suffixes :func:`read_frame` reads.
PARQUET_SUFFIXES, CSV_SUFFIXES = (".parquet", ".pq"), (".csv", ".txt")


def read_frame(path, what: str, *, must_exist: str = "") -> pd.DataFrame:
    """Read a user's ``.parquet`` / ``.csv`` table (targets, positions, quotes).

    ``ts_code`` is read as text from CSV. Every failure is one :class:`BacktestError` naming
    ``what``, the file and the problem (missing file, unknown suffix, an empty file, a damaged
    Parquet file, a CSV that does not parse), never a pyarrow/pandas traceback.

    Parameters
    ----------
    path : str or PathLike
    what : str
        ``"targets"``, ``"positions"``... (used in messages).
    must_exist : str
        Appended to the missing-file message (e.g. how to make one).
    """
    import pyarrow as pa

    p = Path(path).expanduser()
    if not p.is_file():
        raise BacktestError(f"{what} file {str(p)!r} not found{must_exist}")
    suf = p.suffix.lower()
    if suf not in PARQUET_SUFFIXES + CSV_SUFFIXES:
        raise BacktestError(f"{what} file {str(p)!r}: unsupported format {suf or '(none)'!r} "
                            f"(use .parquet or .csv)")
    if p.stat().st_size == 0:
        raise BacktestError(f"{what} file {str(p)!r} is empty (0 bytes)")
    kind = "Parquet" if suf in PARQUET_SUFFIXES else "CSV"
    try:
        if kind == "Parquet":
            return pd.read_parquet(p)
        return pd.read_csv(p, dtype={"ts_code": str})
    except (pa.ArrowException, OSError, ValueError, KeyError, TypeError) as e:
        raise BacktestError(f"{what} file {str(p)!r}: not a readable {kind} file "
                            f"({reason(e)})") from None


def read_targets(path) -> pd.DataFrame:
    """Read ``target_positions`` from Parquet or CSV and validate it (:func:`validate_targets`).

    Raises
    ------
    BacktestError
        Missing, empty or unreadable file, unknown extension, no rows, or bad content (the
        message names the file and the first bad row).
    """
    p = Path(path).expanduser()
    df = read_frame(p, "targets", must_exist=" (write one with `mine combine`)")
    where = f"targets file {str(p)!r}"
    out = validate_targets(df, where=where)
    if len(out) == 0:
        raise BacktestError(f"{where} has no rows (columns {', '.join(map(str, df.columns))})")
    return out
