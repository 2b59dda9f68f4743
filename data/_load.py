"""Low-level warehouse readers: Parquet columns -> wide ``(T, N)`` float64 arrays, with a cache.

Private to :mod:`data`; :class:`data.manager.DataManager` is the public interface. Raw values
keep the warehouse's Tushare units here (lots, thousand yuan, ten-thousand shares); the manager
converts them. Rows are placed into the wide arrays by index arithmetic (``pyarrow.compute
.index_in`` for codes, ``searchsorted`` for dates), never by ``pivot_table``. Files are read
memory-mapped and only the needed columns are decoded (:func:`data.io.read_table`).
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from data.errors import DataError
from data.io import read_table

#: Columns of ``daily/daily_YYYY.parquet`` that can be loaded into panels.
DAILY_COLUMNS = ("open", "high", "low", "close", "pre_close", "vol", "amount", "adj_factor")
#: Pseudo-column name for ``daily_basic_est.total_share``.
EST_COLUMN = "est_total_share"
EST_FILE = "daily_basic_est.parquet"
#: Optional year-partitioned datasets (``<name>/<name>_YYYY.parquet``, keyed ts_code,
#: trade_date) whose columns load as ``"<name>.<column>"`` (e.g. ``"daily_basic.total_mv"``).
PARTITIONED = ("daily_basic", "stk_limit", "moneyflow")


def split_column(c: str) -> tuple[str, str]:
    """``"daily_basic.total_mv"`` -> ``("daily_basic", "total_mv")``; ``"close"`` -> daily."""
    ds, _, col = c.rpartition(".")
    return (ds or "daily"), col


def codes_key(codes: pd.Index) -> str:
    """Stable hash of an ordered code list (cache key)."""
    return hashlib.blake2b("\n".join(map(str, codes)).encode(), digest_size=16).hexdigest()


def to_ns(values) -> np.ndarray:
    """Datetime-like array (any resolution) -> int64 nanoseconds since the epoch."""
    return np.asarray(pd.DatetimeIndex(values).as_unit("ns").asi8, dtype=np.int64)


def _arrow_ns(col: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.cast(col, pa.timestamp("ns")).to_numpy(), dtype="datetime64[ns]") \
        .view(np.int64)


def _place(table: pa.Table, codes: pd.Index, dates_ns: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``table`` that fall on ``(dates_ns, codes)`` and their flat ``(T, N)`` positions.

    Returns
    -------
    rows : ndarray of int64
        Selected row numbers of ``table``.
    flat : ndarray of int64
        ``t * N + j`` for each selected row.
    """
    code_col = table.column("ts_code")
    value_set = pa.array(list(map(str, codes)), type=code_col.type)
    ci = pc.index_in(code_col, value_set=value_set)
    ci = ci.to_numpy(zero_copy_only=False)
    ci = np.where(np.isnan(ci), -1, ci).astype(np.int64) if ci.dtype.kind == "f" \
        else ci.astype(np.int64)
    d = _arrow_ns(table.column("trade_date"))
    ti = np.searchsorted(dates_ns, d)
    ok = (ci >= 0) & (ti < len(dates_ns))
    ok[ok] = dates_ns[ti[ok]] == d[ok]
    rows = np.flatnonzero(ok)
    return rows, ti[rows] * len(codes) + ci[rows]


def _scatter(values: np.ndarray, rows: np.ndarray, flat: np.ndarray, shape: tuple[int, int]
             ) -> np.ndarray:
    out = np.full(shape, np.nan)
    out.ravel()[flat] = values[rows]
    return out


def _column_values(table: pa.Table, name: str) -> np.ndarray:
    col = table.column(name)
    return np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False),
                      dtype=np.float64)


class RawStore:
    """Reads warehouse columns into wide arrays over a fixed calendar, with an LRU cache.

    Cache entries are per ``(year, codes, column)`` (one ``(T_year, N)`` float64 array each) plus
    the row placement per ``(year, codes)``, so asking for more fields, or a different date range
    over the same codes, re-reads nothing already loaded.

    Parameters
    ----------
    root : Path
        Warehouse folder.
    calendar : ndarray of int64
        Trading days (ns since epoch, ascending) covered by the panels.
    max_bytes : int
        Cache budget for the value arrays; least recently used entries are evicted beyond it.
    """

    def __init__(self, root: Path, calendar: np.ndarray, max_bytes: int):
        self.root = Path(root)
        self.cal = np.asarray(calendar, dtype=np.int64)
        self.max_bytes = int(max_bytes)
        years = pd.DatetimeIndex(self.cal).year.to_numpy()
        self.years = np.unique(years)
        starts = np.searchsorted(years, self.years, side="left")
        ends = np.searchsorted(years, self.years, side="right")
        self.year_bounds = {int(y): (int(a), int(b)) for y, a, b in zip(self.years, starts, ends)}
        self._values: OrderedDict = OrderedDict()
        self._places: dict = {}
        self._bytes = 0

    # ----------------------------------------------------------------------------- cache
    def _get(self, key):
        arr = self._values.get(key)
        if arr is not None:
            self._values.move_to_end(key)
        return arr

    def _put(self, key, arr: np.ndarray) -> None:
        self._values[key] = arr
        self._bytes += arr.nbytes
        while self._bytes > self.max_bytes and len(self._values) > 1:
            _, old = self._values.popitem(last=False)
            self._bytes -= old.nbytes

    def clear(self) -> None:
        """Drop every cached array."""
        self._values.clear()
        self._places.clear()
        self._bytes = 0

    # ----------------------------------------------------------------------------- reading
    def daily_path(self, year: int, dataset: str = "daily") -> Path:
        """Path of the ``dataset`` file of ``year`` (``daily/daily_YYYY.parquet``...)."""
        return self.root / dataset / f"{dataset}_{year}.parquet"

    def has(self, dataset: str) -> bool:
        """Whether the year-partitioned ``dataset`` folder holds at least one year file."""
        d = self.root / dataset
        return d.is_dir() and any(d.glob(f"{dataset}_*.parquet"))

    def _load_daily_year(self, year: int, codes: pd.Index, ckey: str, columns: list[str],
                         dataset: str = "daily") -> dict[str, np.ndarray]:
        """Load ``columns`` of one year into the cache; also return them (a budget smaller than
        one year's columns may evict them at once)."""
        path = self.daily_path(year, dataset)
        a, b = self.year_bounds[year]
        shape = (b - a, len(codes))
        out: dict[str, np.ndarray] = {}
        if not path.is_file():
            if dataset == "daily":
                raise DataError(f"daily file {path} is missing; restore it or fill the "
                                "warehouse with `mine data bootstrap --root DIR`")
            for c in columns:       # an optional dataset without this year: all NaN
                out[c] = np.full(shape, np.nan)
                self._put((dataset, year, ckey, c), out[c])
            return out
        pkey = (dataset, year, ckey)
        place = self._places.get(pkey)
        read = list(columns) if place is not None else ["ts_code", "trade_date", *columns]
        table = read_table(path, columns=read)
        if place is None:
            place = _place(table, codes, self.cal[a:b])
            self._places[pkey] = place
        rows, flat = place
        for c in columns:
            out[c] = _scatter(_column_values(table, c), rows, flat, shape)
            self._put((dataset, year, ckey, c), out[c])
        return out

    def _load_est(self, codes: pd.Index, ckey: str) -> dict[int, np.ndarray]:
        """Load the estimated total_share of every year into the cache; also return them."""
        path = self.root / EST_FILE
        if not path.is_file():
            raise DataError(f"{path} is missing (needed for total_share / total_mv / turnover); "
                            "restore it or fill the warehouse with `mine data bootstrap --root DIR`")
        value_set = pa.array(list(map(str, codes)))
        table = read_table(path, columns=["ts_code", "trade_date", "total_share"],
                           filters=pc.field("ts_code").isin(value_set))
        rows, flat = _place(table, codes, self.cal)
        full = _scatter(_column_values(table, "total_share"), rows, flat,
                        (len(self.cal), len(codes)))
        out = {}
        for year, (a, b) in self.year_bounds.items():
            out[year] = full[a:b].copy()
            self._put(("est", year, ckey, EST_COLUMN), out[year])
        return out

    def window(self, columns: list[str], t0: int, t1: int, codes: pd.Index
               ) -> dict[str, np.ndarray]:
        """Raw wide arrays of ``columns`` for calendar rows ``[t0, t1)`` and ``codes``.

        Parameters
        ----------
        columns : list of str
            Names from :data:`DAILY_COLUMNS`, :data:`EST_COLUMN`, or ``"<dataset>.<column>"``
            for a dataset of :data:`PARTITIONED` (all NaN for years without a file).
        t0, t1 : int
            Half-open range of calendar positions.
        codes : pandas.Index
            Column order of the result.

        Returns
        -------
        dict of str -> ndarray
            Fresh float64 arrays of shape ``(t1 - t0, len(codes))`` in warehouse units; NaN
            where the warehouse has no row.

        Raises
        ------
        DataError
            If a needed file is missing.
        """
        ckey = codes_key(codes)
        n = len(codes)
        parts: dict[str, list[np.ndarray]] = {c: [] for c in columns}
        if t1 <= t0:
            return {c: np.empty((0, n)) for c in columns}
        first = pd.Timestamp(self.cal[t0]).year
        last = pd.Timestamp(self.cal[t1 - 1]).year
        for year in range(first, last + 1):
            if year not in self.year_bounds:
                continue
            a, b = self.year_bounds[year]
            lo, hi = max(t0, a) - a, min(t1, b) - a
            missing: dict[str, list[str]] = {}
            for c in columns:
                if c != EST_COLUMN:
                    ds, col = split_column(c)
                    if self._get((ds, year, ckey, col)) is None:
                        missing.setdefault(ds, []).append(col)
            for ds, cols in missing.items():
                self._load_daily_year(year, codes, ckey, cols, ds)
            if EST_COLUMN in columns and self._get(("est", year, ckey, EST_COLUMN)) is None:
                self._load_est(codes, ckey)
            for c in columns:
                src, col = ("est", c) if c == EST_COLUMN else split_column(c)
                arr = self._get((src, year, ckey, col))
                if arr is None:   # evicted while loading siblings under a tiny budget
                    if src == "est":
                        arr = self._load_est(codes, ckey)[year]
                    else:
                        arr = self._load_daily_year(year, codes, ckey, [col], src)[col]
                parts[c].append(arr[lo:hi])
        return {c: (np.concatenate(p, axis=0) if len(p) != 1 else p[0].copy())
                for c, p in parts.items()}

    def last_bars_before(self, codes: pd.Index, before_ns: int, columns: list[str]
                         ) -> dict[str, np.ndarray]:
        """Each code's last daily row strictly before ``before_ns`` (searching back by year).

        Used for look-backs that a fixed window cannot cover (long suspensions). Not cached:
        it is only called for the few codes that need it.

        Returns
        -------
        dict of str -> ndarray
            ``(len(codes),)`` float64 per column; NaN for codes without an earlier row.
        """
        out = {c: np.full(len(codes), np.nan) for c in columns}
        todo = np.ones(len(codes), dtype=bool)
        value_set = pa.array(list(map(str, codes)))
        start_year = pd.Timestamp(before_ns).year
        for year in sorted((int(y) for y in self.years if y <= start_year), reverse=True):
            if not todo.any():
                break
            path = self.daily_path(year)
            if not path.is_file():
                continue
            table = read_table(path, columns=["ts_code", "trade_date", *columns],
                               filters=pc.field("ts_code").isin(value_set))
            d = _arrow_ns(table.column("trade_date"))
            keep = np.flatnonzero(d < before_ns)
            if keep.size == 0:
                continue
            table = table.take(pa.array(keep))
            d = d[keep]
            ci = pc.index_in(table.column("ts_code"),
                             value_set=pa.array(list(map(str, codes)),
                                                type=table.column("ts_code").type))
            ci = np.asarray(ci.to_numpy(zero_copy_only=False), dtype=np.int64)
            order = np.lexsort((d, ci))           # by code, then date: last row per code wins
            ci, d = ci[order], d[order]
            last = np.r_[ci[1:] != ci[:-1], True]
            sel = order[last]
            cj = ci[last]
            new = todo[cj]
            for c in columns:
                out[c][cj[new]] = _column_values(table, c)[sel[new]]
            todo[cj[new]] = False
        return out
