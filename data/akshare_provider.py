"""AKShare as a free data provider for daily bars and adjustment factors.

:class:`AKShareProvider` answers the same ``query(api_name, params, fields)`` as
:class:`data.tushare.TushareProvider`, in Tushare's column names and units, for the endpoints
it can serve (:data:`ENDPOINTS`):

* ``trade_cal`` from ``ak.tool_trade_date_hist_sina()`` (one column ``trade_date`` of
  ``datetime.date``, open SSE days only; fetched once and cached). Every calendar day in
  ``[start_date, end_date]`` is returned with ``is_open`` 1/0 and ``pretrade_date``.
* ``stock_basic`` from ``ak.stock_info_a_code_name()`` (columns ``code``, ``name``: the
  A-shares listed *today*; fetched once and cached). ``list_status="L"`` gives those rows
  (``ts_code`` suffix from the code: 6/9 -> .SH, 0/2/3 -> .SZ, 4/8/920 -> .BJ; ``area``,
  ``industry``, ``list_date`` null); ``"D"`` and ``"P"`` give no rows. **AKShare has no list
  of delisted stocks: a warehouse filled from it is NOT survivorship-free.**
* ``daily`` and ``adj_factor`` from ``ak.stock_zh_a_hist(symbol, period="daily", start_date,
  end_date, adjust)`` (Eastmoney), whose reply has the columns 日期, 股票代码, 开盘, 收盘, 最高,
  最低, 成交量 (lots, 手), 成交额 (yuan), 振幅, 涨跌幅, 涨跌额, 换手率. Converted:
  open/high/low/close = 开盘/最高/最低/收盘 (yuan, unadjusted with ``adjust=""``),
  ``pre_close`` = 收盘 − 涨跌额, ``vol`` = 成交量 (already lots), ``amount`` = 成交额 / 1000
  (thousand yuan), ``adj_factor`` = hfq 收盘 / raw 收盘 on the same day (``adjust="hfq"``
  call). Tushare's adj_factor is also "hfq price / raw price" (hfq = raw × adj_factor), so
  the two agree up to the base (Eastmoney's 后复权 starts at the first listing price, rounded
  to 0.01 yuan, so the ratio carries ~1e-4 relative rounding noise); the workbench only uses
  ratios of adj_factor over time, never its level.

AKShare is per stock: there is no call for the whole market on one past day. A ``daily`` or
``adj_factor`` query with ``trade_date`` therefore fetches, for every stock of the list, the
whole *window* (the calendar year of ``trade_date``) once -- one raw and one hfq call per stock
per year, about 2 × 5,000 = 10,000 calls for the market per year -- caches each stock's reply,
and answers every later day of that year from the cache (no call). A stock whose fetch fails
after the retries fails the query; the stocks already fetched stay cached, so the next query
only asks for the missing ones.

Each AKShare call is retried (``tenacity``; ``retry_wait`` doubled, capped at 60 s, at most
``max_retries`` retries) on any exception (AKShare surfaces network errors, throttling and
malformed replies as assorted exceptions), then raises :class:`ProviderError` naming the
function and its arguments. ``min_interval`` seconds are waited before each call (Eastmoney
blocks fast scrapers). Unsupported endpoints raise :class:`ProviderError` at once.

``akshare`` is an optional extra (``pip install -e ".[akshare]"``), imported only when a
provider is built without an injected ``ak`` module.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
import tenacity

from data.errors import ConfigError, ProviderError

__all__ = ["ENDPOINTS", "AKShareProvider", "ts_code_of"]

log = logging.getLogger(__name__)

#: The Tushare endpoints this provider serves; the ingest skips datasets needing others.
ENDPOINTS = frozenset({"trade_cal", "stock_basic", "daily", "adj_factor"})

_STOCK_BASIC = ("ts_code", "symbol", "name", "area", "industry", "market", "exchange",
                "list_status", "list_date", "delist_date")
_DAILY = ("ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "vol",
          "amount")
_HIST_COLS = ("日期", "开盘", "收盘", "最高", "最低", "成交量", "成交额", "涨跌额")
_INSTALL = 'pip install -e ".[akshare]"'


def ts_code_of(code: str) -> str:
    """A 6-digit A-share code as a Tushare ``ts_code`` (exchange suffix from the prefix)."""
    code = str(code).strip().zfill(6)
    if code.startswith(("4", "8", "920")):
        return f"{code}.BJ"
    if code.startswith(("6", "9")):
        return f"{code}.SH"
    return f"{code}.SZ"


def _exchange(ts_code: str) -> str:
    return {"SH": "SSE", "SZ": "SZSE", "BJ": "BSE"}[ts_code[-2:]]


def _market(code: str) -> str:
    if code.startswith("688"):
        return "科创板"
    if code.startswith(("300", "301")):
        return "创业板"
    if code.startswith(("4", "8", "920")):
        return "北交所"
    return "主板"


def _ymd(d) -> str:
    return pd.Timestamp(d).strftime("%Y%m%d")


def _select(df: pd.DataFrame, fields: Sequence[str]) -> pd.DataFrame:
    if not fields:
        return df.reset_index(drop=True)
    return df.reindex(columns=list(fields)).reset_index(drop=True)


class AKShareProvider:
    """Serves ``trade_cal``, ``stock_basic``, ``daily`` and ``adj_factor`` from AKShare.

    Parameters
    ----------
    ak : module, optional
        The ``akshare`` module (or any object with the functions used); default: imported.
    max_retries, retry_wait : int, float
        Retries per AKShare call and the first wait (s), doubled, capped at 60 s.
    min_interval : float
        Seconds waited before each AKShare call.
    sleep : callable
        Injected for tests (``time.sleep``).

    Raises
    ------
    ConfigError
        ``ak`` not given and ``akshare`` not installed (the message names the extra).
    """

    name = "akshare"
    endpoints = ENDPOINTS

    def __init__(self, ak: Any = None, *, max_retries: int = 5, retry_wait: float = 1.0,
                 min_interval: float = 0.0, sleep: Callable[[float], Any] = time.sleep):
        if ak is None:
            try:
                import akshare as ak  # heavy, optional: only when a provider is built
            except ImportError as e:
                raise ConfigError(f"the AKShare provider needs the optional package akshare "
                                  f"({e}); install it with `{_INSTALL}`") from None
        if max_retries < 0 or retry_wait <= 0 or min_interval < 0:
            raise ValueError("max_retries >= 0, retry_wait > 0 and min_interval >= 0 required")
        self._ak = ak
        self.max_retries, self.retry_wait, self.min_interval = max_retries, retry_wait, \
            min_interval
        self._sleep = sleep
        self._calls: dict[str, int] = defaultdict(int)
        self._open_days: pd.DatetimeIndex | None = None
        self._stocks: pd.DataFrame | None = None
        # (code, year, adjust) -> one stock's converted reply for the year
        self._cache: dict[tuple[str, int, str], pd.DataFrame] = {}
        # year -> {trade_date YYYYMMDD: rows of daily + adj_factor for that day}
        self._by_day: dict[int, dict[str, pd.DataFrame]] = {}

    def __repr__(self) -> str:
        return f"AKShareProvider(max_retries={self.max_retries})"

    def calls(self) -> dict[str, int]:
        """AKShare function calls made so far, per function (retries included)."""
        return dict(self._calls)

    # -- one AKShare call --------------------------------------------------------------------

    def _call(self, func: str, **kwargs) -> pd.DataFrame:
        show = f"ak.{func}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"

        def once() -> pd.DataFrame:
            if self.min_interval:
                self._sleep(self.min_interval)
            self._calls[func] += 1
            out = getattr(self._ak, func)(**kwargs)
            if not isinstance(out, pd.DataFrame):
                raise TypeError(f"returned {type(out).__name__}, not a DataFrame")
            return out

        def before_sleep(state: tenacity.RetryCallState) -> None:
            log.warning("%s: %s; retry %d/%d in %.1f s", show, state.outcome.exception(),
                        state.attempt_number, self.max_retries, state.next_action.sleep)

        retrying = tenacity.Retrying(
            sleep=self._sleep, stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=tenacity.wait_exponential(multiplier=self.retry_wait, exp_base=2,
                                           min=self.retry_wait, max=60),
            retry=tenacity.retry_if_exception_type(Exception),
            before_sleep=before_sleep, reraise=True)
        try:
            return retrying(once)
        except Exception as e:  # noqa: BLE001 - AKShare raises anything on a bad reply
            raise ProviderError(f"akshare {show} failed after {self.max_retries} retries: "
                                f"{type(e).__name__}: {e}") from None

    # -- endpoints ---------------------------------------------------------------------------

    def query(self, api_name: str, params: Mapping[str, Any] | None = None,
              fields: Sequence[str] | str = ()) -> pd.DataFrame:
        """Rows of ``api_name`` for ``params`` in Tushare's columns and units.

        Raises
        ------
        ProviderError
            An endpoint not in :data:`ENDPOINTS` (it needs Tushare), a parameter this
            provider cannot honour, or an AKShare call failing after its retries.
        """
        params = {k: v for k, v in dict(params or {}).items() if v is not None}
        fields = [f for f in fields.split(",") if f] if isinstance(fields, str) \
            else list(fields)
        if api_name not in ENDPOINTS:
            raise ProviderError(f"akshare provider: endpoint {api_name!r} is not served "
                                f"(it serves {', '.join(sorted(ENDPOINTS))}); it needs "
                                f"Tushare (--provider tushare)")
        if api_name == "trade_cal":
            return _select(self._trade_cal(params), fields)
        if api_name == "stock_basic":
            return _select(self._stock_basic(params), fields)
        return _select(self._bars(api_name, params), fields)

    def _trade_cal(self, params: dict) -> pd.DataFrame:
        if params.get("exchange", "SSE") not in ("SSE", "SZSE", ""):
            raise ProviderError(f"akshare trade_cal: only the SSE/SZSE calendar is served, "
                                f"not {params['exchange']!r}")
        if self._open_days is None:
            df = self._call("tool_trade_date_hist_sina")
            self._open_days = pd.DatetimeIndex(
                pd.to_datetime(df["trade_date"])).normalize().unique().sort_values()
        opn = self._open_days
        start = pd.Timestamp(params.get("start_date", opn[0]))
        end = pd.Timestamp(params.get("end_date", opn[-1]))
        days = pd.date_range(start, end, freq="D")
        is_open = days.isin(opn)
        pos = opn.searchsorted(days, side="left") - 1
        pre = [_ymd(opn[p]) if p >= 0 else None for p in pos]
        return pd.DataFrame({"exchange": params.get("exchange", "SSE") or "SSE",
                             "cal_date": [_ymd(d) for d in days],
                             "is_open": is_open.astype("int64"), "pretrade_date": pre})

    def _stock_list(self) -> pd.DataFrame:
        if self._stocks is None:
            df = self._call("stock_info_a_code_name")
            codes = df["code"].astype(str).str.strip().str.zfill(6)
            ts = codes.map(ts_code_of)
            self._stocks = pd.DataFrame({
                "ts_code": ts, "symbol": codes, "name": df["name"].astype(str).values,
                "area": None, "industry": None, "market": codes.map(_market),
                "exchange": ts.map(_exchange), "list_status": "L", "list_date": None,
                "delist_date": None}).drop_duplicates("ts_code").sort_values(
                "ts_code").reset_index(drop=True)
        return self._stocks

    def _stock_basic(self, params: dict) -> pd.DataFrame:
        status = params.get("list_status", "L")
        sb = self._stock_list()
        if status != "L":  # AKShare has no list of delisted / paused stocks
            return sb.iloc[0:0].copy()
        if "ts_code" in params:
            sb = sb[sb["ts_code"].isin(str(params["ts_code"]).split(","))]
        return sb.copy()

    def _hist(self, code: str, year: int, adjust: str) -> pd.DataFrame:
        key = (code, year, adjust)
        if key not in self._cache:
            raw = self._call("stock_zh_a_hist", symbol=code, period="daily",
                             start_date=f"{year}0101", end_date=f"{year}1231", adjust=adjust)
            self._cache[key] = _convert(raw, code)
        return self._cache[key]

    def _year(self, year: int) -> dict[str, pd.DataFrame]:
        """Every stock's bars and adj_factor of ``year``, by trade date (fetched once)."""
        if year not in self._by_day:
            frames = []
            for code in self._stock_list()["symbol"]:
                raw = self._hist(code, year, "")
                if raw.empty:
                    continue
                hfq = self._hist(code, year, "hfq")
                d = raw.merge(hfq[["trade_date", "close"]].rename(columns={"close": "hfq"}),
                              on="trade_date", how="left")
                d["adj_factor"] = d["hfq"] / d["close"]
                frames.append(d.drop(columns="hfq"))
            allrows = pd.concat(frames, ignore_index=True) if frames else \
                pd.DataFrame(columns=list(_DAILY) + ["adj_factor"])
            self._by_day[year] = {k: g.reset_index(drop=True)
                                  for k, g in allrows.groupby("trade_date", sort=True)}
            for code in self._stock_list()["symbol"]:  # the per-day index now holds them
                for adj in ("", "hfq"):
                    self._cache.pop((code, year, adj), None)
        return self._by_day[year]

    def _bars(self, api_name: str, params: dict) -> pd.DataFrame:
        if set(params) - {"trade_date", "ts_code"} or "trade_date" not in params:
            raise ProviderError(f"akshare {api_name}: only trade_date (and ts_code) queries "
                                f"are served, got {sorted(params)}")
        day = _ymd(params["trade_date"])
        cols = list(_DAILY) if api_name == "daily" else ["ts_code", "trade_date",
                                                          "adj_factor"]
        rows = self._year(int(day[:4])).get(day)
        if rows is None:
            return pd.DataFrame(columns=cols)
        if "ts_code" in params:
            rows = rows[rows["ts_code"].isin(str(params["ts_code"]).split(","))]
        return rows[cols].reset_index(drop=True)


def _convert(df: pd.DataFrame, code: str) -> pd.DataFrame:
    """One ``stock_zh_a_hist`` reply in Tushare's ``daily`` columns and units."""
    if df is None or df.empty:
        return pd.DataFrame(columns=list(_DAILY))
    missing = [c for c in _HIST_COLS if c not in df.columns]
    if missing:
        raise ProviderError(f"akshare stock_zh_a_hist({code!r}): reply lacks columns "
                            f"{missing} (has {list(df.columns)}); AKShare changed its format?")
    close = pd.to_numeric(df["收盘"], errors="coerce")
    out = pd.DataFrame({
        "ts_code": ts_code_of(code),
        "trade_date": [_ymd(d) for d in df["日期"]],
        "open": pd.to_numeric(df["开盘"], errors="coerce"),
        "high": pd.to_numeric(df["最高"], errors="coerce"),
        "low": pd.to_numeric(df["最低"], errors="coerce"),
        "close": close,
        "pre_close": (close - pd.to_numeric(df["涨跌额"], errors="coerce")).round(4),
        "vol": pd.to_numeric(df["成交量"], errors="coerce").astype("float64"),   # lots (手)
        "amount": pd.to_numeric(df["成交额"], errors="coerce") / 1000.0,  # yuan -> k yuan
    })
    return out.reset_index(drop=True)

