"""Optional warehouse datasets (filled by the Tushare ingest) and their snapshot fallbacks.

Private to :mod:`data`; :class:`data.manager.DataManager` exposes the results (``st_mask``,
``industry``, ``limit_prices``, the market-value and fundamental fields of ``panels``). Each
reader uses its dataset when the warehouse has it and otherwise falls back to the embedded
snapshot's behaviour, recording a one-time notice (:attr:`Optional.notices`, a list of
strings the CLI may print; nothing here prints).

===========================  =====================================  ===========================
dataset                      used for                               fallback
===========================  =====================================  ===========================
``namechange.parquet``       dated ST (:mod:`data.pit`)             ``is_st_latest`` every day
``stk_limit/``               exchange limit prices                  computed (:mod:`data.limits`)
``daily_basic/``             total_share, total_mv, valuation       ``daily_basic_est`` estimate
``moneyflow/``               fund-flow fields (net_mf_amount...)    none (FieldError)
``industry_sw.parquet``      dated Shenwan L1 / L2                  static ``industry_ts``
``fina_indicator`` ...       point-in-time fundamentals             none (FieldError)
===========================  =====================================  ===========================
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from data._load import PARTITIONED
from data.industry import static_panel, sw_panel
from data.io import read_parquet
from data.pit import interval_mask, pit_panels, st_intervals

__all__ = ["Optional", "BOOTSTRAP"]

#: The command that fills a warehouse with the optional datasets.
BOOTSTRAP = "mine data bootstrap"
_DATE_COLS = ("start_date", "end_date", "ann_date", "f_ann_date", "in_date", "out_date",
              "list_date", "delist_date")


log = logging.getLogger(__name__)


class Optional:
    """Presence checks, cached single-file tables and notices for the optional datasets.

    Parameters
    ----------
    root : Path
        Warehouse folder.
    has_partitioned : callable
        ``name -> bool`` for the year-partitioned datasets (:data:`data._load.PARTITIONED`:
        ``daily_basic``, ``stk_limit``, ``moneyflow``), from :meth:`data._load.RawStore.has`.
    all_open : DatetimeIndex
        Every open day of ``trade_cal`` (the "next open day" of announcements).
    """

    def __init__(self, root: Path, has_partitioned, all_open: pd.DatetimeIndex):
        self.root = Path(root)
        self._has_part = has_partitioned
        self.all_open = all_open
        self._tables: dict[str, pd.DataFrame] = {}
        #: One-time notices about fallbacks, in the order they happened.
        self.notices: list[str] = []

    def notice(self, msg: str) -> None:
        """Record ``msg`` once."""
        if msg not in self.notices:
            self.notices.append(msg)
            log.info(msg)

    def has(self, name: str) -> bool:
        """Whether the warehouse holds dataset ``name`` (``namechange``, ``daily_basic``...)."""
        if name in PARTITIONED:
            return bool(self._has_part(name))
        return (self.root / f"{name}.parquet").is_file()

    def table(self, name: str) -> pd.DataFrame:
        """``<name>.parquet`` with its date columns as datetime64[ns] (cached)."""
        if name not in self._tables:
            df = read_parquet(self.root / f"{name}.parquet")
            for c in _DATE_COLS:
                if c in df:
                    df[c] = pd.to_datetime(df[c]).astype("datetime64[ns]")
            self._tables[name] = df
        return self._tables[name]

    # ------------------------------------------------------------------------------ ST
    def st_source(self, stock_basic: pd.DataFrame) -> tuple[str, bool]:
        """Where the ST status comes from and whether it is dated (point in time)."""
        if self.has("namechange"):
            return "namechange.parquet (dated ST names)", True
        if "is_st_latest" in stock_basic:
            return "stock_basic.is_st_latest (the CURRENT status, applied to every date)", False
        return "the current stock_basic.name (applied to every date)", False

    def st(self, dates: pd.DatetimeIndex, codes: pd.Index, stock_basic: pd.DataFrame
           ) -> np.ndarray:
        """``(T, N)`` bool ST status (dated from namechange, else ``is_st_latest``)."""
        src, dated = self.st_source(stock_basic)
        if dated:
            iv = st_intervals(self.table("namechange"))
            return interval_mask(iv["ts_code"], iv["start_date"], iv["end_date"], dates, codes)
        sb = stock_basic.set_index("ts_code")
        if "is_st_latest" in sb:
            st = sb["is_st_latest"].reindex(codes).fillna(False).to_numpy(bool)
        else:
            st = (sb["name"].reindex(codes).astype("string").str.match(r"^S?\*?ST")
                  .fillna(False).to_numpy(bool))
        self.notice(f"no namechange.parquet: ST status is {src}; run `{BOOTSTRAP}` for the "
                    "dated ST history")
        return np.broadcast_to(st, (len(dates), len(codes))).copy()

    # ------------------------------------------------------------------------------ limits
    def exchange_limits(self, store, t0: int, t1: int, codes: pd.Index
                        ) -> tuple[np.ndarray, np.ndarray] | None:
        """Exchange limit prices in cents from ``stk_limit`` (NaN where no row), or None."""
        if not self.has("stk_limit"):
            self.notice("no stk_limit/ in the warehouse: limit prices are computed from "
                        f"pre_close and the board rules; run `{BOOTSTRAP}` for the exchange's")
            return None
        r = store.window(["stk_limit.up_limit", "stk_limit.down_limit"], t0, t1, codes)
        return (np.round(r["stk_limit.up_limit"] * 100.0),
                np.round(r["stk_limit.down_limit"] * 100.0))

    # ------------------------------------------------------------------------------ industry
    def industry(self, level: int, dates: pd.DatetimeIndex, codes: pd.Index,
                 stock_basic: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
        """``(T, N)`` int64 industry codes and their labels (:mod:`data.industry`)."""
        if self.has("industry_sw"):
            return sw_panel(self.table("industry_sw"), level, dates, codes)
        sb = stock_basic.set_index("ts_code")
        col = "industry_ts" if "industry_ts" in sb else "industry"
        self.notice(f"no industry_sw.parquet: industries are the static stock_basic.{col} "
                    f"(today's label on every date, not Shenwan); run `{BOOTSTRAP}` for dated "
                    "Shenwan industries")
        labels = sb[col].reindex(codes) if col in sb else pd.Series([None] * len(codes))
        return static_panel(labels.reset_index(drop=True), dates)

    # ------------------------------------------------------------------------------ fundamentals
    def fundamentals(self, dataset: str, columns: list[str], dates: pd.DatetimeIndex,
                     codes: pd.Index) -> dict[str, np.ndarray]:
        """Point-in-time panels of report ``columns`` of ``dataset`` (:mod:`data.pit`)."""
        df = self.table(dataset)
        keep = [c for c in ("ts_code", "end_date", "ann_date", "f_ann_date") if c in df]
        return pit_panels(df[keep + list(columns)], list(columns), self.all_open, dates, codes)
