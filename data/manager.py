"""DataManager: the one entry point from the Parquet warehouse to panels.

Warehouse layout (see the warehouse README): ``daily/daily_YYYY.parquet``, ``trade_cal``,
``stock_basic``, ``daily_basic_est``, ``index_member``, ``index_daily`` (all Parquet, long,
Tushare column names and units).

Units after load (the Tushare units are converted here, once)
------------------------------------------------------------
* prices ``raw_*``, ``pre_close``: yuan; ``open high low close vwap``: yuan x adj_factor
  (back-adjusted; only ratios meaningful);
* ``vol``: shares (Tushare lots x 100); ``amount``: yuan (Tushare thousand yuan x 1000);
* ``total_share``: shares (Tushare 10k shares x 1e4); ``total_mv``: yuan;
* ``turnover``, ``ret``: fractions; limit prices: raw yuan;
* ``index_daily``: points, ``vol`` shares, ``amount`` yuan.

See :mod:`data.fields` for each field's derivation and caveats and :mod:`data` for the panel
contract (index ``trade_date``, columns ``ts_code``, float64, NaN where there is no bar).

Price limits (:meth:`DataManager.limit_prices`)
-----------------------------------------------
Rules and their computation: :mod:`data.limits` (board, ST, ChiNext reform, new-listing days).
ST is dated (:meth:`DataManager.st_mask`: ``namechange.parquet``); on the embedded snapshot it
is ``is_st_latest``, the CURRENT status, applied to every date (:meth:`DataManager.st_source`
says which). Where ``stk_limit/`` has a row, the exchange's limit prices replace the computed
ones. Tradability (:meth:`DataManager.tradable_mask`) is decided by the day's raw open against
these limits (rule: :mod:`data.limits`, "Tradability at the open").

Optional datasets (filled by ``mine data bootstrap``; see ``docs/data.md``)
--------------------------------------------------------------------------
``namechange``, ``stk_limit/``, ``daily_basic/``, ``industry_sw``, ``fina_indicator``,
``income``, ``balancesheet``, ``cashflow``, the opt-in ``moneyflow/``: used when present
(:mod:`data.optional`); without them the snapshot behaviour applies and a one-time message is
added to :attr:`notices` (fields that need them raise :class:`data.errors.FieldError`).

Size: one facade class (about 650 lines, most of them numpydoc): each public method is a
thin, documented entry point over the topic modules that hold the logic (:mod:`data._load`
reading and caching, :mod:`data.fields` the field registry, :mod:`data.derive` derivations,
:mod:`data.optional` the optional Tushare datasets and their fallbacks, :mod:`data.limits` price limits and
tradability at the open, :mod:`data.universe` membership); splitting the class itself would split one
interface across files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from data._load import PARTITIONED, RawStore, to_ns
from data.optional import BOOTSTRAP, Optional
from data.derive import (
    REAL_MV,
    amount_and_proxy,
    dataset_fields,
    deps,
    derive,
    raw_vwap,
)
from data.config import PANEL_DTYPES
from data.errors import DataError, FieldError, UniverseError
from data.fields import CATEGORICAL_FIELDS, FIELDS
from data.fundamentals import dividend_rows, report_rows, valuation_rows
from data.io import read_parquet
from data.limits import limit_cents, listing_age, trade_flags
from data.universe import check_universe, membership_mask
from data.universe import universe_codes as _universe_codes

#: Trading days loaded before ``start`` for history-dependent fields (``ret``); a previous bar
#: further back (long suspension) is fetched exactly by a targeted look-up.
LOOKBACK_DAYS = 10
#: Rows per block of :meth:`DataManager.tradable_mask` (bounds its temporaries on the whole
#: market; the result does not depend on it).
MASK_BLOCK_ROWS = 250
_REQUIRED = ("trade_cal.parquet", "stock_basic.parquet", "daily")
_FIX = ("set [data] root in mine.toml to the warehouse folder, or fill one with "
        "`mine data bootstrap --root DIR --start YYYY-MM-DD`")


class DataManager:
    """Loads panels, calendars, universes and trading masks from a Parquet warehouse.

    Parameters
    ----------
    root : str or Path
        Warehouse folder (``daily/``, ``trade_cal.parquet``, ``stock_basic.parquet``...).
    cache_dir : Path, optional
        Reserved for an on-disk panel cache (currently unused: loads are fast enough).
    max_cache_bytes : int
        In-memory LRU budget for raw warehouse columns (default 512 MiB, ``[data] cache_mb``):
        a full-market column over 2010-2021 is ~100 MiB, a CSI300 one ~16 MiB; results never
        depend on it, only how often a file is re-read.
    dtype : {"float64", "float32"}
        The configured storage dtype of factor-input panels (``[data] dtype``), kept as
        :attr:`dtype` for the evaluation layer (:class:`backtest.candidates.Workspace`), which
        asks :meth:`panels` for it; it applies to the float32-safe quantity fields only
        (:attr:`data.fields.FieldSpec.float32`). :meth:`panels` itself returns float64 unless
        told otherwise, so the simulator, limits and tradability always see exact float64
        prices.

    Raises
    ------
    DataError
        If ``root`` or a required file is missing; the message names the path and the fix.
    """

    def __init__(self, root: str | Path, cache_dir: Path | None = None,
                 max_cache_bytes: int = 512 << 20, dtype: str = "float64"):
        if str(dtype) not in PANEL_DTYPES:
            raise DataError(f"panel dtype must be one of {', '.join(PANEL_DTYPES)}, got "
                            f"{dtype!r}")
        #: configured storage dtype of the float32-safe factor-input fields (``[data] dtype``)
        self.dtype = np.dtype(str(dtype))
        self.root = Path(root).expanduser()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        if not self.root.is_dir():
            what = "is a file, not a folder" if self.root.exists() else "does not exist"
            raise DataError(f"data root {str(self.root)!r} {what}; {_FIX}")
        for name in _REQUIRED:
            if not (self.root / name).exists():
                raise DataError(f"required warehouse file {str(self.root / name)!r} is missing; "
                                f"{_FIX}")
        years = sorted(int(p.stem.split("_")[-1]) for p in (self.root / "daily")
                       .glob("daily_*.parquet") if p.stem.split("_")[-1].isdigit())
        if not years:
            raise DataError(f"no daily_YYYY.parquet files in {str(self.root / 'daily')!r}; {_FIX}")
        cal = read_parquet(self.root / "trade_cal.parquet", columns=["cal_date", "is_open"])
        open_days = pd.DatetimeIndex(cal.loc[cal["is_open"] == 1, "cal_date"]).as_unit("ns")
        #: every open day of trade_cal (listing-age counting)
        self._all_open = open_days.sort_values().unique()
        cal = self._all_open[self._all_open.year.isin(years)]
        if len(cal) == 0:
            raise DataError(f"trade_cal.parquet has no open days in the years of the daily files "
                            f"({years[0]}-{years[-1]}); {_FIX}")
        self._cal = pd.DatetimeIndex(cal, name="trade_date")
        self._store = RawStore(self.root, to_ns(self._cal), max_cache_bytes)
        self._sb: pd.DataFrame | None = None
        self._members: pd.DataFrame | None = None
        self._index_daily: pd.DataFrame | None = None
        self._opt = Optional(self.root, self._store.has, self._all_open)

    @property
    def notices(self) -> list[str]:
        """One-time messages about snapshot fallbacks (dataset missing -> today's behaviour).

        A list of strings in the order they happened, each recorded once; the CLI may print
        them, library code never does.
        """
        return self._opt.notices

    def has_dataset(self, name: str) -> bool:
        """Whether the warehouse holds the optional dataset ``name`` (e.g. ``"daily_basic"``,
        ``"namechange"``, ``"fina_indicator"``; see ``docs/data.md``)."""
        return self._opt.has(name)

    def available_fields(self) -> list[str]:
        """Fields of :data:`data.fields.FIELDS` this warehouse can load, in display order."""
        return [f for f, s in FIELDS.items() if not s.dataset or self._opt.has(s.dataset)]

    @classmethod
    def from_config(cls, cfg) -> "DataManager":
        """Build from a :class:`data.config.Config` (``cfg.data``: ``root``, ``cache_dir``,
        ``cache_mb``, ``dtype``)."""
        d = cfg.data
        return cls(d.root, d.cache_dir, max_cache_bytes=int(d.cache_mb * 2**20), dtype=d.dtype)

    # ------------------------------------------------------------------------------ dates
    def _ts(self, d, what: str) -> pd.Timestamp:
        try:
            ts = pd.Timestamp(d)
        except (ValueError, TypeError):
            raise DataError(f"{what} date {d!r} is not a date (use 'YYYY-MM-DD')") from None
        if ts is pd.NaT:
            raise DataError(f"{what} date {d!r} is not a date (use 'YYYY-MM-DD')")
        return ts.tz_localize(None) if ts.tzinfo is not None else ts

    def _range(self, start, end, allow_empty: bool = False) -> tuple[int, int]:
        """Half-open calendar positions of the trading days in ``[start, end]``."""
        cal = self._cal
        lo, hi = cal[0], cal[-1]
        avail = f"available: {lo.date()} to {hi.date()}"
        s = lo if start is None else self._ts(start, "start")
        e = hi if end is None else self._ts(end, "end")
        # A range that overlaps the data is clipped to it (a split may start on a holiday or
        # end after the last bar); one that lies entirely outside it is an error.
        if s > hi:
            raise DataError(f"start date {s.date()} is after the last trading day in the data "
                            f"({avail})")
        if e < lo:
            raise DataError(f"end date {e.date()} is before the first trading day in the data "
                            f"({avail})")
        if s > e:
            raise DataError(f"start date {s.date()} is after end date {e.date()}")
        t0 = int(cal.searchsorted(s, side="left"))
        t1 = int(cal.searchsorted(e, side="right"))
        if t1 <= t0 and not allow_empty:
            raise DataError(f"no trading days between {s.date()} and {e.date()}")
        return t0, t1

    def calendar(self, start=None, end=None) -> pd.DatetimeIndex:
        """Trading days in ``[start, end]`` (open days of ``trade_cal`` with a daily file).

        Parameters
        ----------
        start, end : str ('YYYY-MM-DD') or Timestamp, optional
            Inclusive bounds; default the first / last trading day in the data.

        Returns
        -------
        DatetimeIndex
            Named ``trade_date``, ascending.

        Raises
        ------
        DataError
            If a bound is not a date, lies outside the data (the message gives the available
            range), or ``start > end``. (Every other method also raises it when ``[start, end]``
            holds no trading day; ``calendar`` returns an empty index then.)
        """
        t0, t1 = self._range(start, end, allow_empty=True)
        return self._cal[t0:t1]

    # ------------------------------------------------------------------------------ tables
    def _read(self, name: str, why: str) -> pd.DataFrame:
        path = self.root / name
        if not path.is_file():
            raise DataError(f"warehouse file {str(path)!r} is missing ({why}); {_FIX}")
        return read_parquet(path)

    def stock_basic(self) -> pd.DataFrame:
        """``stock_basic.parquet`` (one row per stock; cached). Dates as datetime64[ns]."""
        if self._sb is None:
            sb = self._read("stock_basic.parquet", "stock list")
            for c in ("list_date", "delist_date", "first_trade_date", "last_trade_date"):
                if c in sb:
                    sb[c] = pd.to_datetime(sb[c]).astype("datetime64[ns]")
            self._sb = sb.sort_values("ts_code").reset_index(drop=True)
        return self._sb.copy(deep=False)

    def _index_member(self) -> pd.DataFrame:
        if self._members is None:
            self._members = self._read("index_member.parquet", "needed for index universes")
        return self._members

    def index_daily(self, ts_code: str, start=None, end=None) -> pd.DataFrame:
        """Daily bars of one index in ``[start, end]``.

        Returns
        -------
        DataFrame
            Indexed by ``trade_date``; ``open high low close pre_close`` in points, ``pct_chg``
            in %, ``vol`` in shares (lots x 100), ``amount`` in yuan (thousand yuan x 1000,
            NaN for most indices).

        Raises
        ------
        DataError
            Unknown index code (the message lists the available ones) or dates outside data.
        """
        t0, t1 = self._range(start, end)
        if self._index_daily is None:
            self._index_daily = self._read("index_daily.parquet", "index bars")
        df = self._index_daily
        if ts_code not in set(df["ts_code"].unique()):
            raise DataError(f"unknown index {ts_code!r}; available: "
                            f"{', '.join(sorted(df['ts_code'].unique()))}")
        lo, hi = self._cal[t0], self._cal[t1 - 1]
        out = df.loc[(df["ts_code"] == ts_code) & (df["trade_date"] >= lo)
                     & (df["trade_date"] <= hi)].drop(columns="ts_code")
        out = out.set_index(pd.DatetimeIndex(out.pop("trade_date"), name="trade_date"))
        out = out.sort_index()
        if "vol" in out:
            out["vol"] = out["vol"] * 100.0
        if "amount" in out:
            out["amount"] = out["amount"] * 1000.0
        return out

    # ------------------------------------------------------------------------------ universes
    def universe_codes(self, universe: str, start=None, end=None) -> pd.Index:
        """Sorted codes that are members at any date in ``[start, end]`` and have prices there.

        Raises
        ------
        UniverseError
            Unknown universe (the message lists the valid names).
        DataError
            Dates outside the data.
        """
        check_universe(universe)
        t0, t1 = self._range(start, end)
        members = self._index_member() if universe != "all" else None
        return _universe_codes(members, universe, self._cal[t0], self._cal[t1 - 1],
                               self.stock_basic())

    def universe_mask(self, universe: str, dates, codes) -> np.ndarray:
        """Point-in-time membership ``(T, N)`` bool for ``dates`` x ``codes``.

        ``"all"`` is "has a bar that day"; index universes follow :mod:`data.universe`.

        Raises
        ------
        UniverseError
            Unknown universe.
        DataError
            A date that is not a trading day in the data.
        """
        check_universe(universe)
        dates = pd.DatetimeIndex(dates)
        codes = pd.Index(codes)
        if universe != "all":
            return membership_mask(self._index_member(), universe, dates, codes)
        pos = self._cal.get_indexer(dates)
        if (pos < 0).any():
            bad = dates[pos < 0][0]
            raise DataError(f"{bad.date()} is not a trading day in the data")
        if len(dates) == 0:
            return np.zeros((0, len(codes)), dtype=bool)
        lo, hi = int(pos.min()), int(pos.max()) + 1
        close = self._store.window(["close"], lo, hi, codes)["close"]
        return membership_mask(None, "all", dates, codes, bars=~np.isnan(close[pos - lo]))

    def _codes(self, codes, universe, t0: int, t1: int) -> pd.Index:
        if codes is not None:
            out = pd.Index([str(c) for c in codes], name="ts_code")
            if out.has_duplicates:
                raise DataError(f"duplicate codes requested: "
                                f"{', '.join(out[out.duplicated()].unique()[:5])}")
            return out
        return self.universe_codes(universe or "all", self._cal[t0], self._cal[t1 - 1])

    # ------------------------------------------------------------------------------ panels
    def panels(self, fields: list[str], start=None, end=None, codes=None, universe=None,
               dtype=None) -> dict[str, pd.DataFrame]:
        """Panels of ``fields`` on the trading days in ``[start, end]``.

        Parameters
        ----------
        fields : list of str
            Names from :data:`data.fields.FIELDS`.
        start, end : str or Timestamp, optional
            Inclusive; default the whole data.
        codes : sequence of str, optional
            Columns, in this order (codes without data give all-NaN columns). Takes precedence
            over ``universe``.
        universe : str, optional
            If ``codes`` is None: the universe's codes (:meth:`universe_codes`); values are NOT
            masked by membership (use :meth:`universe_mask`). Default ``"all"``.
        dtype : {None, "float64", "float32"}
            Storage dtype of the fields marked :attr:`data.fields.FieldSpec.float32`
            (volume, value, market value, turnover; default float64); every other field
            (prices, returns) stays float64. Fields are always derived in float64 from the
            float64 raw columns and rounded once at the end, so float32 halves their memory
            at a relative error of at most ``2**-24`` per value.

        Returns
        -------
        dict of str -> DataFrame
            ``(T, N)`` panels (float64; ``dtype`` for the float32-safe fields), index
            ``trade_date``, columns ``ts_code``, NaN where
            there is no bar (``industry``: a group code on every date, see
            :meth:`industry`, level 1). Units: :mod:`data.fields`. ``ret`` is exact at ``start`` (history
            before ``start`` is read as needed) and every value is causal.

        Raises
        ------
        FieldError
            Unknown field (the message lists the valid ones).
        UniverseError
            Unknown universe.
        DataError
            Dates outside the data, missing warehouse files, or a ``dtype`` other than
            float64 / float32 (checked before anything is read).
        """
        if isinstance(fields, str):
            fields = [fields]
        if dtype is not None and str(np.dtype(dtype) if isinstance(dtype, type) else dtype) \
                not in PANEL_DTYPES:
            raise DataError(f"panel dtype must be one of {', '.join(PANEL_DTYPES)}, got "
                            f"{dtype!r}")
        dt = np.dtype(dtype or np.float64)
        bad = [f for f in fields if f not in FIELDS]
        if bad:
            raise FieldError(f"unknown field(s) {', '.join(map(repr, bad))}; valid: "
                             f"{', '.join(FIELDS)}")
        missing = [f for f in fields if FIELDS[f].dataset and not self._opt.has(FIELDS[f].dataset)]
        if missing:
            ds = sorted({FIELDS[f].dataset for f in missing})
            raise FieldError(f"field(s) {', '.join(map(repr, missing))} need the warehouse "
                             f"dataset(s) {', '.join(ds)}, which {self.root} lacks (the embedded "
                             f"snapshot has none of them); fill the warehouse with "
                             f"`{BOOTSTRAP}`")
        if universe is not None:
            check_universe(universe)
        t0, t1 = self._range(start, end)
        cols = self._codes(codes, universe, t0, t1)
        fields = list(dict.fromkeys(fields))
        base = [f for f in fields if not FIELDS[f].dataset and f not in CATEGORICAL_FIELDS]
        extra = [f for f in fields if FIELDS[f].dataset]
        look = min(LOOKBACK_DAYS, t0) if "ret" in fields else 0
        need = sorted({c for f in base for c in self._deps(f)} | ({"close"} if extra else set())
                      | {f"{FIELDS[f].dataset}.{c}" for f in extra
                         if FIELDS[f].dataset in PARTITIONED for _, c in FIELDS[f].parts})
        raw = self._store.window(need, t0 - look, t1, cols)
        out = self._derive(base, raw, look, t0, cols)
        idx = self._cal[t0:t1]
        out.update(self._dataset_fields(extra, raw, look, idx, cols))
        if "industry" in fields:          # Shenwan L1 codes (dated, else static), as float64
            out["industry"] = self._opt.industry(1, idx, cols, self.stock_basic())[0].astype(
                np.float64)
        return {f: pd.DataFrame(a.astype(dt if FIELDS[f].float32 else np.float64, copy=False),
                                index=idx, columns=cols, copy=False) for f, a in out.items()}

    def panel(self, field: str, start=None, end=None, codes=None, universe=None
              ) -> pd.DataFrame:
        """One panel; see :meth:`panels`."""
        return self.panels([field], start, end, codes=codes, universe=universe)[field]

    def _deps(self, f: str) -> tuple[str, ...]:
        real = self._opt.has("daily_basic")
        if f in REAL_MV and not real:
            self._opt.notice("no daily_basic/ in the warehouse: total_share, total_mv and "
                             "turnover use the daily_basic_est ESTIMATE (quarterly snapshot "
                             f"carried forward); run `{BOOTSTRAP}` for the real daily values")
        return deps(f, real)

    def _derive(self, fields: list[str], raw: dict[str, np.ndarray], look: int, t0: int,
                codes: pd.Index) -> dict[str, np.ndarray]:
        """Compute the requested fields from raw arrays (rows ``look:`` are returned)."""
        out = derive([f for f in fields if f != "ret"], {k: v[look:] for k, v in raw.items()})
        if "ret" in fields:
            out["ret"] = self._ret(raw["close"] * raw["adj_factor"], look, t0, codes)
        return {f: out[f] for f in fields}

    def _dataset_fields(self, fields: list[str], raw: dict[str, np.ndarray], look: int,
                        idx: pd.DatetimeIndex, cols: pd.Index) -> dict[str, np.ndarray]:
        """daily_basic and point-in-time report fields (:func:`data.derive.dataset_fields`)."""
        return dataset_fields(fields, {k: v[look:] for k, v in raw.items()}, self._opt, idx,
                              cols)

    def _ret(self, adj_close: np.ndarray, look: int, t0: int, codes: pd.Index) -> np.ndarray:
        """Close-to-close return on each stock's own bars; exact at the first requested row."""
        T = adj_close.shape[0]
        valid = ~np.isnan(adj_close)
        rows = np.where(valid, np.arange(T)[:, None], -1)
        last = np.maximum.accumulate(rows, axis=0)
        prev_idx = np.vstack([np.full((1, adj_close.shape[1]), -1), last[:-1]])
        prev = np.take_along_axis(adj_close, np.maximum(prev_idx, 0), axis=0)
        prev[prev_idx < 0] = np.nan
        # Stocks with no bar in the loaded window before the requested range but with earlier
        # history (long suspension): fetch their last earlier bar exactly.
        req = slice(look, T)
        first_req = np.argmax(valid[req], axis=0)
        has_req = valid[req].any(axis=0)
        missing = has_req & (prev_idx[req][first_req, np.arange(len(codes))] < 0)
        start_ns = int(self._cal.asi8[t0 - look])
        if missing.any() and t0 - look > 0:
            sb = self.stock_basic().set_index("ts_code")
            first = sb["first_trade_date"] if "first_trade_date" in sb else sb["list_date"]
            ftd = first.reindex(codes[missing]).to_numpy("datetime64[ns]")
            maybe = np.flatnonzero(missing)[~(ftd >= np.datetime64(start_ns, "ns"))]
            if maybe.size:
                bars = self._store.last_bars_before(codes[maybe], start_ns,
                                                    ["close", "adj_factor"])
                base = bars["close"] * bars["adj_factor"]
                prev[look + first_req[maybe], maybe] = base
        return (adj_close / prev - 1.0)[look:]

    def _raw_window(self, columns: list[str], start, end, codes
                    ) -> tuple[pd.DatetimeIndex, pd.Index, dict[str, np.ndarray]]:
        """Trading days, codes and raw warehouse ``columns`` on ``[start, end]`` x ``codes``."""
        t0, t1 = self._range(start, end)
        cols = self._codes(codes, None, t0, t1)
        return self._cal[t0:t1], cols, self._store.window(columns, t0, t1, cols)

    def is_proxy_amount(self, start=None, end=None, codes=None) -> pd.DataFrame:
        """Boolean panel: True where ``amount`` is the OHLC proxy (bar present, no real amount).

        Raises
        ------
        DataError
            Dates outside the data.
        """
        idx, cols, r = self._raw_window(["amount", "close"], start, end, codes)
        return pd.DataFrame(amount_and_proxy(r)[1], index=idx, columns=cols)

    def is_proxy_vwap(self, start=None, end=None, codes=None) -> pd.DataFrame:
        """Boolean panel: True where ``vwap`` is the (O+H+L+C)/4 proxy (no amount or no volume).

        Raises
        ------
        DataError
            Dates outside the data.
        """
        idx, cols, r = self._raw_window(["amount", "close", "vol"], start, end, codes)
        flag = amount_and_proxy(r)[1] | (r["vol"] <= 0)
        return pd.DataFrame(flag, index=idx, columns=cols)

    def raw_vwap(self, start=None, end=None, codes=None) -> pd.DataFrame:
        """Unadjusted VWAP panel in yuan: ``amount / vol``, or the (O+H+L+C)/4 raw proxy.

        The same values as the ``vwap`` field before it is multiplied by ``adj_factor`` (the
        proxy cells are flagged by :meth:`is_proxy_vwap`). NaN where there is no bar.

        Raises
        ------
        DataError
            Dates outside the data.
        """
        idx, cols, r = self._raw_window(list(deps("vwap", False)), start, end, codes)
        with np.errstate(divide="ignore", invalid="ignore"):
            v = raw_vwap(r)
        return pd.DataFrame(v, index=idx, columns=cols)

    def dividends(self, start=None, end=None, codes=None) -> pd.DataFrame:
        """Implemented dividend / bonus-share events with an ex-date in ``[start, end]``.

        Rows of ``dividend.parquet`` with ``div_proc == "实施"`` (implemented) and an ex-date,
        one per (ts_code, ex_date) (duplicates of the same event are dropped, first kept).

        Returns
        -------
        DataFrame
            Columns ``ts_code``, ``ex_date`` (datetime64[ns]), ``stk_div`` (bonus + transferred
            shares per share, 0 when none), ``cash_div_tax`` (pre-tax cash per share, yuan, 0 when
            none); sorted by ex_date, ts_code. Empty when the file is missing.

        Raises
        ------
        DataError
            Dates outside the data.
        """
        t0, t1 = self._range(start, end)
        cols = ["ts_code", "ex_date", "stk_div", "cash_div_tax"]
        path = self.root / "dividend.parquet"
        if not path.is_file():
            return pd.DataFrame({c: pd.Series(dtype=float) for c in cols})
        d = read_parquet(path, columns=cols + ["div_proc"])
        d = d.loc[(d["div_proc"] == "实施") & d["ex_date"].notna(), cols].copy()
        d["ex_date"] = pd.to_datetime(d["ex_date"]).astype("datetime64[ns]")
        d = d.loc[(d["ex_date"] >= self._cal[t0]) & (d["ex_date"] <= self._cal[t1 - 1])]
        if codes is not None:
            d = d.loc[d["ts_code"].isin(set(map(str, codes)))]
        d[["stk_div", "cash_div_tax"]] = d[["stk_div", "cash_div_tax"]].fillna(0.0)
        d = d.drop_duplicates(["ts_code", "ex_date"]).sort_values(["ex_date", "ts_code"])
        return d.reset_index(drop=True)

    # ------------------------------------------------------------------------------ fundamentals
    def valuation_quarterly(self, codes=None) -> pd.DataFrame:
        """Quarter-end valuation snapshots (``valuation_quarterly.parquet``), dated.

        Returns
        -------
        DataFrame
            ``ts_code, quarter, visible_date, pe, pb, dv_ratio (%), total_mv (yuan)``; rules
            in :func:`data.fundamentals.valuation_rows`. Empty when the file is missing.
        """
        path = self.root / "valuation_quarterly.parquet"
        cols = ["ts_code", "quarter", "visible_date", "pe", "pb", "dv_ratio", "total_mv"]
        if not path.is_file():
            return pd.DataFrame({c: pd.Series(dtype=float) for c in cols})
        vq = read_parquet(path)
        if codes is not None:
            vq = vq.loc[vq["ts_code"].isin(set(map(str, codes)))]
        return valuation_rows(vq)[cols]

    def dividend_plans(self, codes=None) -> pd.DataFrame:
        """Every stage of every dividend plan (``dividend.parquet``), dated and in yuan.

        Returns
        -------
        DataFrame
            ``ts_code, end_date, ann_date, visible_date, div_proc, cash_div_tax,
            cash_total``; rules in :func:`data.fundamentals.dividend_rows`. Empty when the
            file is missing.
        """
        path = self.root / "dividend.parquet"
        if not path.is_file():
            return pd.DataFrame({c: pd.Series(dtype=float) for c in (
                "ts_code", "end_date", "ann_date", "visible_date", "div_proc", "cash_div_tax",
                "cash_total")})
        d = read_parquet(path, columns=["ts_code", "end_date", "ann_date", "div_proc",
                                        "cash_div_tax", "base_share"])
        if codes is not None:
            d = d.loc[d["ts_code"].isin(set(map(str, codes)))]
        return dividend_rows(d, self._all_open)

    def report_rows(self, dataset: str, columns: list[str], codes=None) -> pd.DataFrame:
        """Every announced version of report ``columns`` of an optional dataset, dated.

        Parameters
        ----------
        dataset : str
            ``"fina_indicator"``, ``"income"``, ``"balancesheet"`` or ``"cashflow"``.
        columns : list of str
            Columns of that dataset, units as stored (tushare: ``roe``, ``netprofit_yoy`` in
            %, ``n_income`` in yuan).

        Returns
        -------
        DataFrame
            ``ts_code, end_date, visible_date`` and ``columns``
            (:func:`data.fundamentals.report_rows`).

        Raises
        ------
        DataError
            The dataset is missing (check :meth:`has_dataset` first) or lacks a column.
        """
        if not self._opt.has(dataset):
            raise DataError(f"warehouse has no {dataset} dataset; fill it with `{BOOTSTRAP}`")
        df = self._opt.table(dataset)
        missing = [c for c in columns if c not in df]
        if missing:
            raise DataError(f"{dataset} has no column(s) {', '.join(missing)}")
        if codes is not None:
            df = df.loc[df["ts_code"].isin(set(map(str, codes)))]
        return report_rows(df, list(columns), self._all_open)

    # ------------------------------------------------------------------------------ trading
    def _listing_age(self, t0: int, t1: int, codes: pd.Index) -> tuple[np.ndarray, np.ndarray]:
        """Trading days since ``list_date`` (0 on the listing day) and list dates per code.

        Stocks listed before the first calendar day (or unknown) get a huge age.
        """
        sb = self.stock_basic().set_index("ts_code")
        ld = pd.DatetimeIndex(sb["list_date"].reindex(codes))
        return listing_age(self._all_open, ld, self._cal[t0:t1]), ld.to_numpy("datetime64[ns]")

    def limit_prices(self, start=None, end=None, codes=None
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Raw daily limit-up / limit-down prices from ``pre_close`` (rules: :mod:`data.limits`).

        Parameters
        ----------
        start, end : str or Timestamp, optional
        codes : sequence of str, optional
            Default: every code with data in the range.

        Returns
        -------
        (up, down) : tuple of DataFrame
            ``(T, N)`` float64 in yuan, rounded half-up to 0.01; NaN where there is no bar or
            no limit (a new listing's first days).

        Raises
        ------
        DataError
            Dates outside the data.
        """
        t0, t1 = self._range(start, end)
        cols = self._codes(codes, None, t0, t1)
        up, down = self._limits(t0, t1, cols)
        idx = self._cal[t0:t1]
        return (pd.DataFrame(up / 100.0, index=idx, columns=cols),
                pd.DataFrame(down / 100.0, index=idx, columns=cols))

    def _limits(self, t0: int, t1: int, cols: pd.Index) -> tuple[np.ndarray, np.ndarray]:
        """Limit prices in cents (float, NaN = none)."""
        pre = self._store.window(["pre_close"], t0, t1, cols)["pre_close"]
        st = self._opt.st(self._cal[t0:t1], cols, self.stock_basic())
        age, ld = self._listing_age(t0, t1, cols)
        up, down = limit_cents(pre, cols, st, self._cal[t0:t1], age, ld)
        ex = self._opt.exchange_limits(self._store, t0, t1, cols)
        if ex is not None:                  # the exchange's prices where stk_limit has a row
            up = np.where(np.isnan(ex[0]) | np.isnan(pre), up, ex[0])
            down = np.where(np.isnan(ex[1]) | np.isnan(pre), down, ex[1])
        return up, down

    def st_mask(self, start=None, end=None, codes=None) -> np.ndarray:
        """``(T, N)`` bool: the stock is ST (``ST`` / ``*ST`` name) on the day.

        Source: ``namechange.parquet`` (each ST name from its ``start_date`` to its
        ``end_date``, visible from ``start_date``). Fallback (embedded snapshot):
        ``stock_basic.is_st_latest``, the CURRENT status, on every date, with a notice.
        Columns follow ``codes`` (default: every code with data).

        Raises
        ------
        DataError
            Dates outside the data.
        """
        t0, t1 = self._range(start, end)
        cols = self._codes(codes, None, t0, t1)
        return self._opt.st(self._cal[t0:t1], cols, self.stock_basic())

    def st_source(self) -> tuple[str, bool]:
        """Source of :meth:`st_mask` (and so of the 5% ST limits) and whether it is dated.

        Returns
        -------
        (source, dated) : tuple of str and bool
            ``("namechange.parquet (dated ST names)", True)`` when the warehouse has the dated
            history; otherwise the snapshot column used (``stock_basic.is_st_latest``, the
            CURRENT status applied to every date) and False.
        """
        return self._opt.st_source(self.stock_basic())

    def industry(self, level: int = 1, dates=None, codes=None) -> np.ndarray:
        """``(T, N)`` int64 industry group codes, point in time.

        Parameters
        ----------
        level : {1, 2}
            Shenwan level (ignored by the static fallback).
        dates : sequence of dates, optional
            Rows (default: every trading day in the data).
        codes : sequence of str, optional
            Columns (default: every code with data).

        Returns
        -------
        ndarray of int64, shape (T, N)
            ``0..G-1`` per industry, ``G`` = unclassified (one extra group, as
            :func:`factors.processing.industry_codes`). Source ``industry_sw.parquet`` (dated
            Shenwan 2021, ``in_date <= d < out_date``; :mod:`data.industry`); fallback (with a
            notice): the static ``stock_basic.industry_ts`` on every date.

        Raises
        ------
        DataError
            ``level`` not 1 or 2.
        """
        if level not in (1, 2):
            raise DataError(f"industry level must be 1 or 2, got {level!r}")
        dates = self._cal if dates is None else pd.DatetimeIndex(dates)
        if codes is None:
            cols = self._codes(None, None, 0, len(self._cal)) if len(dates) == 0 else \
                self.universe_codes("all", dates.min(), dates.max())
        else:
            cols = pd.Index([str(c) for c in codes], name="ts_code")
        return self._opt.industry(level, dates, cols, self.stock_basic())[0]

    #: Sides of :meth:`tradable_mask`.
    SIDES = ("both", "buy", "sell", "any")

    def tradable_mask(self, start=None, end=None, codes=None, min_listed_days: int = 60,
                      side: str = "both") -> np.ndarray:
        """``(T, N)`` bool: on each day, the name can be traded at the open on ``side``.

        The rule (:mod:`data.limits`, "Tradability at the open"): the name has a bar, has been
        listed at least ``min_listed_days`` trading days (0 on the listing day; stocks listed
        before the calendar starts count as old), and its raw OPEN of that day is

        * ``side="both"``: strictly inside the limits, ``limit_down < open < limit_up``
          (the evaluator's eligibility at ``t + 1``: its long-short portfolio needs both sides);
        * ``side="buy"``: below limit-up (a stock opening at limit-down is buyable);
        * ``side="sell"``: above limit-down;
        * ``side="any"``: no price condition (bar and listing age only).

        No limit price (a new listing's first days) counts as inside the limits. The day's
        high and low play no part: a stock opening at limit-up and trading lower is not
        buyable at the open. Columns follow ``codes`` (default: every code with data).

        Parameters
        ----------
        start, end : str or Timestamp, optional
        codes : sequence of str, optional
        min_listed_days : int, default 60
        side : {"both", "buy", "sell", "any"}, default "both"

        Returns
        -------
        ndarray of bool, shape (T, N)
            Rows: the trading days of ``[start, end]``. Row ``t`` reads day ``t`` only.

        Raises
        ------
        DataError
            Dates outside the data, or an unknown ``side``.
        """
        if side not in self.SIDES:
            raise DataError(f"tradable_mask: side must be one of {', '.join(self.SIDES)}, "
                            f"got {side!r}")
        t0, t1 = self._range(start, end)
        cols = self._codes(codes, None, t0, t1)
        out = np.zeros((t1 - t0, len(cols)), dtype=bool)
        # Row t reads day t only, so blocks of rows give the same mask while the limit-price
        # temporaries (several int64/float64 arrays per cell) stay a block in size.
        for a in range(t0, t1, MASK_BLOCK_ROWS):
            b = min(a + MASK_BLOCK_ROWS, t1)
            r = self._store.window(["open", "close"], a, b, cols)
            f = trade_flags(r, *self._limits(a, b, cols))
            ok = {"both": f["buy"] & f["sell"], "buy": f["buy"], "sell": f["sell"],
                  "any": f["bar"]}[side]
            age, _ = self._listing_age(a, b, cols)
            out[a - t0:b - t0] = ok & (age >= int(min_listed_days))
        return out

    def clear_cache(self) -> None:
        """Forget every cached raw column (files are re-read on the next request)."""
        self._store.clear()


__all__ = ["DataManager", "DataError", "FieldError", "UniverseError", "LOOKBACK_DAYS"]
