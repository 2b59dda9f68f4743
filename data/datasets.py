"""The warehouse's datasets: endpoints, fields, keys, partitioning and canonical Parquet form.

One :class:`Dataset` per file family of the warehouse layout (README "Warehouse"; the Issue 10
contract). ``unit`` says how the ingest splits the work into parts, each fetched and staged on
its own:

* ``"day"``: one open trade date per part (``YYYYMMDD``), the whole market in one call per
  endpoint (``daily`` + ``adj_factor``, ``daily_basic``, ``stk_limit``, ``suspend_d``, the
  opt-in ``moneyflow``; also ``dividend`` by announcement date).
* ``"year"``: one calendar year per part (``trade_cal``).
* ``"snapshot"``: the whole table as of the run's end date (``stock_basic``, ``namechange``,
  ``industry_sw``); part ``asof=YYYYMMDD``.
* ``"code_year"``: per index code and year over a date range (``index_daily``).
* ``"code_month"``: per index code and month (``index_weight``).
* ``"period"``: per report period (quarter end) through the VIP endpoint (fundamentals).

A part of a period not yet over at the run's end date is named ``<part>@<end>`` so that a later
run fetches it again (the upsert keeps the newest rows).

Canonical form (:func:`canonical_table`): the dataset's columns in order, dates as
``timestamp[ns]``, strings as ``string``, ints as ``int64``, everything else ``float64``, rows
sorted by the key, no schema metadata; written by :func:`write_parquet` with fixed settings, so
the same rows always give the same bytes.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "DATASETS",
    "DAY_REQUIRED",
    "OPTIONAL_DATASETS",
    "SNAPSHOT_ORDER",
    "Dataset",
    "canonical_table",
    "file_sha256",
    "to_datetime",
    "write_parquet",
]

_DATE_NAMES = {"trade_date", "cal_date", "pretrade_date", "list_date", "delist_date",
               "ann_date", "f_ann_date", "end_date", "in_date", "out_date", "start_date",
               "ex_date", "record_date", "pay_date", "div_listdate", "imp_ann_date",
               "base_date"}

#: ``ALPHAMINE_INGEST_NOSYNC=1`` skips fsync (tests of process kills; never for real data).
FSYNC = os.environ.get("ALPHAMINE_INGEST_NOSYNC") != "1"

_DAILY = ("ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "vol",
          "amount")
_FINA_KEYS = ("ts_code", "ann_date", "f_ann_date", "end_date")
#: Tushare ``moneyflow`` (doc_id=170): per order size (sm < 50k yuan <= md < 200k <= lg < 1M
#: <= elg), active buy / sell volume (lots) and value (10k yuan), then the net inflow, which
#: Tushare computes from L2 orders (not the sum of the size buckets).
_MONEYFLOW = ("ts_code", "trade_date") + tuple(
    f"{side}_{size}_{what}" for size in ("sm", "md", "lg", "elg") for side in ("buy", "sell")
    for what in ("vol", "amount")) + ("net_mf_vol", "net_mf_amount")


@dataclass(frozen=True)
class Dataset:
    """One dataset of the warehouse.

    Attributes
    ----------
    name : str
        Dataset name (also the staging folder and the job table's ``dataset``).
    path : str
        File relative to the root; ``{year}`` for one file per year of ``year_col``.
    endpoints : tuple of str
        Tushare endpoints called per part (the first gives the rows; ``daily`` also merges
        ``adj_factor`` on the key).
    columns : tuple of str
        Columns written, in order (also the ``fields`` requested).
    key : tuple of str
        Upsert key; rows are sorted by it.
    unit : str
        Partitioning of the work (module docstring).
    strings : tuple of str
        String columns (dates are recognised by name; the rest is numeric).
    ints : tuple of str
        Integer columns.
    year_col : str
        Column whose year picks the file when ``path`` has ``{year}``.
    """

    name: str
    path: str
    endpoints: tuple[str, ...]
    columns: tuple[str, ...]
    key: tuple[str, ...]
    unit: str
    strings: tuple[str, ...] = ("ts_code",)
    ints: tuple[str, ...] = ()
    year_col: str = "trade_date"
    extra_fields: dict = field(default_factory=dict)

    @property
    def dates(self) -> tuple[str, ...]:
        """The date columns (by name)."""
        return tuple(c for c in self.columns if c in _DATE_NAMES)

    def schema(self) -> pa.Schema:
        """The canonical Arrow schema of the written files."""
        def typ(c):
            if c in _DATE_NAMES:
                return pa.timestamp("ns")
            if c in self.strings:
                return pa.string()
            if c in self.ints:
                return pa.int64()
            return pa.float64()
        return pa.schema([(c, typ(c)) for c in self.columns])


_FIN_COLS = {
    "fina_indicator": ("eps", "dt_eps", "bps", "ocfps", "roe", "roe_dt", "roa", "grossprofit_margin",
                       "netprofit_margin", "debt_to_assets", "netprofit_yoy", "or_yoy"),
    "income": ("revenue", "total_revenue", "operate_profit", "total_profit", "n_income",
               "n_income_attr_p", "basic_eps"),
    "balancesheet": ("total_assets", "total_liab", "total_hldr_eqy_exc_min_int",
                     "total_cur_assets", "total_cur_liab", "money_cap"),
    "cashflow": ("n_cashflow_act", "n_cashflow_inv_act", "n_cash_flows_fnc_act",
                 "free_cashflow", "c_pay_acq_const_fiolta"),
}


def _fina(name: str) -> Dataset:
    keys = ("ts_code", "ann_date", "end_date") if name == "fina_indicator" else _FINA_KEYS
    key = ("ts_code", "end_date", "f_ann_date" if "f_ann_date" in keys else "ann_date")
    return Dataset(name, f"{name}.parquet", (f"{name}_vip",), keys + _FIN_COLS[name], key,
                   "period")


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("trade_cal", "trade_cal.parquet", ("trade_cal",),
            ("exchange", "cal_date", "is_open", "pretrade_date"), ("cal_date",), "year",
            strings=("exchange",), ints=("is_open",), year_col="cal_date"),
    Dataset("stock_basic", "stock_basic.parquet", ("stock_basic",),
            ("ts_code", "symbol", "name", "area", "industry", "market", "exchange",
             "list_status", "list_date", "delist_date"), ("ts_code",), "snapshot",
            strings=("ts_code", "symbol", "name", "area", "industry", "market", "exchange",
                     "list_status")),
    Dataset("namechange", "namechange.parquet", ("namechange",),
            ("ts_code", "name", "start_date", "end_date", "ann_date", "change_reason"),
            ("ts_code", "start_date"), "snapshot",
            strings=("ts_code", "name", "change_reason")),
    Dataset("industry_sw", "industry_sw.parquet", ("index_member_all",),
            ("ts_code", "l1_code", "l1_name", "l2_code", "l2_name", "in_date", "out_date"),
            ("ts_code", "in_date"), "snapshot",
            strings=("ts_code", "l1_code", "l1_name", "l2_code", "l2_name")),
    Dataset("daily", "daily/daily_{year}.parquet", ("daily", "adj_factor"),
            _DAILY + ("adj_factor",), ("ts_code", "trade_date"), "day"),
    Dataset("daily_basic", "daily_basic/daily_basic_{year}.parquet", ("daily_basic",),
            ("ts_code", "trade_date", "turnover_rate", "turnover_rate_f", "volume_ratio", "pe",
             "pe_ttm", "pb", "ps", "ps_ttm", "dv_ratio", "dv_ttm", "total_share",
             "float_share", "free_share", "total_mv", "circ_mv"),
            ("ts_code", "trade_date"), "day"),
    Dataset("moneyflow", "moneyflow/moneyflow_{year}.parquet", ("moneyflow",), _MONEYFLOW,
            ("ts_code", "trade_date"), "day"),
    Dataset("stk_limit", "stk_limit/stk_limit_{year}.parquet", ("stk_limit",),
            ("ts_code", "trade_date", "pre_close", "up_limit", "down_limit"),
            ("ts_code", "trade_date"), "day"),
    Dataset("suspend_d", "suspend_d/suspend_d_{year}.parquet", ("suspend_d",),
            ("ts_code", "trade_date", "suspend_timing", "suspend_type"),
            ("ts_code", "trade_date"), "day",
            strings=("ts_code", "suspend_timing", "suspend_type")),
    Dataset("dividend", "dividend.parquet", ("dividend",),
            ("ts_code", "end_date", "ann_date", "div_proc", "stk_div", "stk_bo_rate",
             "stk_co_rate", "cash_div", "cash_div_tax", "record_date", "ex_date", "pay_date",
             "div_listdate", "imp_ann_date", "base_date", "base_share"),
            ("ts_code", "end_date", "ann_date", "div_proc"), "day",
            strings=("ts_code", "div_proc")),
    Dataset("index_daily", "index_daily.parquet", ("index_daily",),
            ("ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "pct_chg",
             "vol", "amount"), ("ts_code", "trade_date"), "code_year"),
    Dataset("index_weight", "index_weight/index_weight_{year}.parquet", ("index_weight",),
            ("index_code", "con_code", "trade_date", "weight"),
            ("index_code", "con_code", "trade_date"), "code_month",
            strings=("index_code", "con_code")),
    _fina("fina_indicator"), _fina("income"), _fina("balancesheet"), _fina("cashflow"),
)}

#: Slowly changing tables, fetched first (bootstrap and update), in this order.
SNAPSHOT_ORDER = ("trade_cal", "stock_basic", "namechange", "industry_sw")
#: Endpoints that must answer with rows on an open day of a listed market.
DAY_REQUIRED = frozenset({"daily", "adj_factor", "daily_basic", "stk_limit"})
#: Opt-in datasets: fetched by bootstrap / update only when named in ``[tushare]
#: extra_datasets`` (they cost calls and points a warehouse may not want); an empty reply on an
#: open day is stored as no rows, never a failure (``moneyflow`` needs 2000 points).
OPTIONAL_DATASETS = ("moneyflow",)


def to_datetime(values) -> pd.Series:
    """Tushare dates (``YYYYMMDD`` strings, dates, None) -> datetime64[ns]."""
    s = pd.Series(values)
    if s.dtype.kind == "M":
        return s.astype("datetime64[ns]")
    s = s.astype(object).where(s.notna(), None)
    try:
        out = pd.to_datetime(s, format="%Y%m%d")
    except (ValueError, TypeError):
        out = pd.to_datetime(s, format="mixed", errors="coerce")
    return out.astype("datetime64[ns]")


def canonical_table(ds: Dataset, df: pd.DataFrame) -> pa.Table:
    """``df`` in the canonical form of ``ds`` (module docstring); missing columns are null."""
    n = len(df)
    cols = {}
    for c in ds.columns:
        v = df[c] if c in df.columns else pd.Series([None] * n, dtype=object)
        v = v.reset_index(drop=True)
        if c in _DATE_NAMES:
            v = to_datetime(v)
        elif c in ds.strings:
            v = v.astype(object).where(v.notna(), None).map(
                lambda x: x if x is None else str(x))
        elif c in ds.ints:
            v = pd.to_numeric(v, errors="coerce").fillna(0).astype("int64")
        else:
            v = pd.to_numeric(v, errors="coerce").astype("float64")
        cols[c] = v
    out = pd.DataFrame(cols, columns=list(ds.columns))
    if n:
        out = out.sort_values(list(ds.key), kind="mergesort", na_position="first")
        out = out.reset_index(drop=True)
    return pa.Table.from_pandas(out, schema=ds.schema(), preserve_index=False) \
        .replace_schema_metadata(None)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_parquet(path: Path, table: pa.Table) -> Path:
    """Write ``table`` to ``path`` atomically and durably (deterministic bytes).

    A temporary file in the same folder is written (zstd, no statistics-dependent options),
    flushed and fsynced, renamed over ``path`` with :func:`os.replace`, then the folder is
    fsynced. A crash leaves either the old file or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh, compression="zstd", use_dictionary=True,
                           write_statistics=True, store_schema=False)
            fh.flush()
            if FSYNC:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    if FSYNC:
        _fsync_dir(path.parent)
    return path


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
