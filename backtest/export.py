"""Export files for execution: targets and positions I/O, warehouse reference quotes and the
one-day export of ``mine export`` (:func:`run_export`).

The order plan itself is :func:`backtest.orders.order_plan` (module docstring there: plan
construction, flags, fees). Timing: targets dated ``D`` are computed from data up to the close
of ``D`` and traded on the next session. ``mine export`` therefore uses the close of ``D`` as
the reference price and ``D``'s limit prices / bar to flag names that closed locked at a limit
or were suspended on ``D`` -- a heuristic for the next open; the exchange decides at order
time.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from backtest.errors import BacktestError
from backtest.orders import order_plan, plan_summary, positions_frame
from backtest.rules import CostModel
from backtest.settings import BacktestConfig
from backtest.targets import read_frame
from data.errors import DataError
from data.io import atomic_write
from data.staging import clean_stale, write_together

#: Columns of a quotes table (index ``ts_code``) as used by :func:`order_plan`.
QUOTE_COLUMNS = ["ref_price", "limit_up", "limit_down", "has_bar"]


# ----------------------------------------------------------------------------- reading
def targets_for(targets: pd.DataFrame, date) -> pd.DataFrame:
    """The rows of ``targets`` dated ``date`` (a trading day present in the file).

    Raises
    ------
    BacktestError
        If ``date`` is not a date or has no rows; the message lists the nearest dates
        available (up to 3 before and 3 after).
    """
    try:
        d = pd.Timestamp(date)
    except (ValueError, TypeError):
        raise BacktestError(f"date {date!r} is not a date (use YYYY-MM-DD)") from None
    if d is pd.NaT:
        raise BacktestError(f"date {date!r} is not a date (use YYYY-MM-DD)")
    day = targets.loc[targets["trade_date"] == d]
    if len(day):
        return day.reset_index(drop=True)
    dates = pd.DatetimeIndex(targets["trade_date"].unique()).sort_values()
    if len(dates) == 0:
        raise BacktestError("the targets are empty")
    i = int(dates.searchsorted(d))
    near = dates[max(0, i - 3):i + 3]
    raise BacktestError(f"no targets on {d.date()}; nearest dates available: "
                        f"{', '.join(str(x.date()) for x in near)} "
                        f"({len(dates)} dates from {dates[0].date()} to {dates[-1].date()})")


def read_positions(path: str | os.PathLike | None) -> pd.DataFrame:
    """Read current holdings: CSV/Parquet with ``ts_code``, ``quantity`` [, ``sellable``].

    ``None`` means an empty account. ``sellable`` defaults to ``quantity`` (nothing bought
    today). Rows with quantity 0 are dropped.

    Returns
    -------
    DataFrame
        Index ``ts_code``; int64 columns ``quantity`` and ``sellable`` (shares).

    Raises
    ------
    BacktestError
        Missing columns, duplicated codes, non-integer or negative quantities, or
        ``sellable > quantity``.
    """
    if path is None:
        return positions_frame(None)
    return positions_frame(read_frame(path, "positions"), source=f"positions file {str(path)!r}")



# ----------------------------------------------------------------------------- quotes
def reference_quotes(dm, date, codes, lookback: int = 250) -> pd.DataFrame:
    """Reference prices and limits from the warehouse for an export dated ``date``.

    ``ref_price`` is the raw close of ``date``, or for a stock without a bar that day
    (suspended) its last raw close within ``lookback`` trading days before; ``has_bar`` says
    whether it traded on ``date``; ``limit_up`` / ``limit_down`` are ``date``'s limit prices
    (:meth:`data.manager.DataManager.limit_prices`; NaN = no limit or no bar).

    Parameters
    ----------
    dm : DataManager
    date : str or Timestamp
        A trading day in the warehouse.
    codes : sequence of str
    lookback : int
        Trading days searched back for the last close of a suspended stock.

    Returns
    -------
    DataFrame
        Index ``ts_code`` (in ``codes`` order), columns :data:`QUOTE_COLUMNS` plus
        ``price_date`` (the day of ``ref_price``; NaT when none was found).

    Raises
    ------
    DataError
        ``date`` is not a trading day of the warehouse.
    """
    d = pd.Timestamp(date)
    cal = dm.calendar()
    if d not in cal:
        i = int(cal.searchsorted(d))
        near = cal[max(0, i - 2):i + 2]
        raise DataError(f"{d.date()} is not a trading day of the warehouse "
                        f"({cal[0].date()} to {cal[-1].date()}); nearest: "
                        f"{', '.join(str(x.date()) for x in near)}")
    codes = pd.Index([str(c) for c in codes], name="ts_code")
    if len(codes) == 0:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in QUOTE_COLUMNS}
                            | {"price_date": pd.Series(dtype="datetime64[ns]")},
                            index=codes)
    i = int(cal.get_loc(d))
    start = cal[max(0, i - int(lookback))]
    close = dm.panel("raw_close", start, d, codes=codes)
    last = close.ffill().iloc[-1]
    price_date = pd.Series([close[c].last_valid_index() for c in close.columns],
                           index=codes, dtype="datetime64[ns]")
    up, down = dm.limit_prices(d, d, codes=codes)
    return pd.DataFrame({"ref_price": last.to_numpy(np.float64),
                         "limit_up": up.iloc[0].to_numpy(np.float64),
                         "limit_down": down.iloc[0].to_numpy(np.float64),
                         "has_bar": close.iloc[-1].notna().to_numpy(bool),
                         "price_date": price_date.to_numpy()}, index=codes)


def read_quotes(path: str | os.PathLike) -> pd.DataFrame:
    """Read a quotes CSV written by ``mine export`` (index ts_code, :data:`QUOTE_COLUMNS`).

    Raises
    ------
    BacktestError
        Missing file or columns.
    """
    df = read_frame(path, "quotes")
    missing = [c for c in ["ts_code"] + QUOTE_COLUMNS if c not in df.columns]
    if missing:
        raise BacktestError(f"quotes file {str(path)!r}: missing column(s) {', '.join(missing)}")
    df["ts_code"] = df["ts_code"].astype(str)
    df["has_bar"] = df["has_bar"].astype(str).str.lower().isin(["true", "1", "1.0"])
    return df.set_index("ts_code")


def plan_from_quotes(targets_day, positions, cash: float, quotes: pd.DataFrame, date,
                     cost_model: CostModel | None = None, cash_reserve: float = 0.0,
                     min_order_value: float = 0.0) -> pd.DataFrame:
    """:func:`order_plan` with prices, limits and bars taken from one quotes table."""
    return order_plan(targets_day, positions, cash, quotes["ref_price"],
                      (quotes["limit_up"], quotes["limit_down"]), date, cost_model,
                      has_bar=quotes["has_bar"].astype(bool), cash_reserve=cash_reserve,
                      min_order_value=min_order_value)


# ----------------------------------------------------------------------------- files
def atomic_write_csv(df: pd.DataFrame, path: str | os.PathLike, index: bool = False) -> Path:
    """Write ``df`` as CSV atomically (temporary file in the same folder + ``os.replace``)."""
    p = Path(path)
    return atomic_write(p, lambda tmp: df.to_csv(tmp, index=index))


def export_day(targets: pd.DataFrame, date, positions: pd.DataFrame, cash: float,
               quotes: pd.DataFrame, out_dir: str | os.PathLike,
               cost_model: CostModel | None = None, cash_reserve: float = 0.0,
               min_order_value: float = 0.0) -> dict:
    """Compute one day's plan and write the export files, as one group.

    Files written in ``out_dir`` (``YYYYMMDD`` = ``date``), together
    (:func:`data.staging.write_together`: a process killed while writing them leaves the
    day's old files or, once the folder is tidied, the new ones, never a mix):

    * ``targets_YYYYMMDD.csv``: the day's rows of ``target_positions``;
    * ``quotes_YYYYMMDD.csv``: the reference prices, limits and bars used
      (``ts_code`` + :data:`QUOTE_COLUMNS` + ``price_date``), so the QMT adapter can
      rebuild exactly this plan offline (``--quotes``);
    * ``orders_YYYYMMDD.csv``: the plan (:data:`PLAN_COLUMNS`).

    Returns
    -------
    dict
        ``plan`` (DataFrame), ``summary`` (:func:`plan_summary`), ``files`` (name -> Path).
    """
    day = targets_for(targets, date)
    d = pd.Timestamp(date)
    plan = plan_from_quotes(day, positions, cash, quotes, d, cost_model, cash_reserve,
                            min_order_value)
    tag = d.strftime("%Y%m%d")
    out = Path(out_dir)
    tday = day.copy()
    tday["trade_date"] = tday["trade_date"].dt.strftime("%Y-%m-%d")
    q = quotes.copy()
    if "price_date" in q.columns:
        q["price_date"] = pd.to_datetime(q["price_date"]).dt.strftime("%Y-%m-%d")
    frames = {"targets": tday, "quotes": q.rename_axis("ts_code").reset_index(),
              "orders": plan.round({"est_fees": 4, "target_value": 4})}
    writers = {f"{k}_{tag}.csv": (lambda tmp, df=df: df.to_csv(tmp, index=False))
               for k, df in frames.items()}
    written = write_together(out, writers, label=f"export_{tag}")
    files = {k: written[f"{k}_{tag}.csv"] for k in frames}
    return {"plan": plan, "summary": plan_summary(plan, cash), "files": files}


# ----------------------------------------------------------------------------- mine export
@dataclass(frozen=True)
class ExportSettings:
    """What ``mine export`` exports: cash, the day, holdings, targets and output folder."""
    cash: float                                # yuan
    date: Optional[str] = None                 # None: the latest date in the targets
    positions: Optional[Path] = None           # None: empty account
    targets: Optional[Path] = None             # None: find_latest_targets(out_dir)
    out_dir: Path = BacktestConfig.out_dir     # [backtest] out_dir
    out: Optional[Path] = None                 # None: <out_dir>/export
    cash_reserve: float = 0.0
    min_order_value: float = 0.0
    force: bool = False                        # replace the day's files when they exist


@dataclass
class ExportRun:
    """Result of :func:`run_export`; :meth:`to_dict` is what ``mine export --json`` prints."""
    targets_path: Path
    date: pd.Timestamp
    n_names: int
    plan: pd.DataFrame = field(repr=False)
    summary: dict
    files: dict[str, Path]

    def to_dict(self) -> dict:
        return {"targets": str(self.targets_path), "date": str(self.date.date()),
                "n_names": self.n_names, "summary": self.summary,
                "files": {k: str(v) for k, v in self.files.items()},
                "orders": self.plan.to_dict(orient="records")}


def run_export(cfg, settings: ExportSettings, *,
               on_progress: Optional[Callable[[str], None]] = None) -> ExportRun:
    """One day's targets, quotes and order plan written for QMT (:func:`export_day`).

    ``cfg`` needs ``data`` and ``backtest`` (costs). Files of the same day already in the
    output folder are refused unless ``settings.force``. What a killed export left in the
    folder is tidied first (:func:`data.staging.clean_stale`: its day files completed or its
    temporary files removed).

    Raises
    ------
    AlphamineError
        No targets file, a date without targets, unreadable positions, a day that is not in
        the warehouse, existing files without ``force``.
    """
    from backtest.run_dirs import check_finished, find_latest_targets
    from backtest.targets import read_targets
    from data.manager import DataManager

    say = on_progress or (lambda m: None)
    s = settings
    out = Path(s.out) if s.out is not None else Path(s.out_dir) / "export"
    if any(q.exists() and not q.is_dir() for q in (out, *out.parents)):
        raise BacktestError(f"output folder {str(out)!r}: it, or a folder above it, is a file")
    tpath = (check_finished(s.targets) if s.targets is not None
             else find_latest_targets(s.out_dir))
    tg = read_targets(tpath)
    day = targets_for(tg, tg["trade_date"].max() if s.date is None else s.date)
    d = day["trade_date"].iloc[0]
    clean_stale(out)                  # finish / drop what a killed export left
    tag = d.strftime("%Y%m%d")
    there = [n for n in (f"targets_{tag}.csv", f"quotes_{tag}.csv", f"orders_{tag}.csv")
             if (out / n).exists()]
    if there and not s.force:
        raise BacktestError(f"{str(out)!r} already holds {', '.join(there)}; pass --force to "
                            f"replace them or --out for another folder")
    pos = read_positions(s.positions)
    say(f"reading reference quotes of {d.date()}")
    dm = DataManager.from_config(cfg)
    quotes = reference_quotes(dm, d, sorted(set(day["ts_code"]) | set(pos.index)))
    res = export_day(tg, d, pos, s.cash, quotes, out, CostModel.from_config(cfg.backtest),
                     s.cash_reserve, s.min_order_value)
    return ExportRun(targets_path=tpath, date=d, n_names=len(day), plan=res["plan"],
                     summary=res["summary"], files=res["files"])


__all__ = ["QUOTE_COLUMNS", "targets_for", "read_positions", "reference_quotes", "read_quotes",
           "plan_from_quotes", "atomic_write_csv", "export_day", "ExportSettings", "ExportRun",
           "run_export"]
