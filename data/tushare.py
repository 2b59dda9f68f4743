"""Tushare Pro as a data provider: rate-limited, retried, paged queries through the real client.

:class:`TushareProvider` wraps ``tushare.pro.client.DataApi`` (the client ``tushare.pro_api``
returns; built directly so that nothing reads or writes ``~/tk.csv``) with its URL set to
``[tushare] http_url``. The token comes only from the environment variable named by
``[tushare] token_env`` (or the ``token`` argument); it is never logged, written to disk or put
in an error message.

Each :meth:`TushareProvider.query`:

* waits, per endpoint, until fewer than ``calls_per_minute`` calls were made in the last 60 s
  (a sliding window on the injected ``clock``);
* retries (``tenacity``; waits ``retry_wait``, doubled, capped at 60 s, and at least
  ``rate_limit_wait`` (61 s) after a rate-limit reply so the minute's window has passed; at most
  ``max_retries`` retries) on network errors and timeouts, HTTP errors (the client answers
  those with an empty DataFrame *without columns*), malformed / truncated JSON, Tushare's
  per-minute rate-limit replies and server-side errors; then raises :class:`ProviderError`
  naming the endpoint and parameters;
* fails at once (no retry) on any other non-zero reply: an invalid token, no permission for
  the endpoint, a daily quota spent, bad parameters;
* pages with ``limit`` / ``offset``: while a reply holds exactly the endpoint's row limit
  (:data:`ROW_LIMITS`), asks for the next page; returns all rows concatenated.

A reply *with* columns and zero rows is a real empty answer and is returned as such: whether
that is plausible (e.g. no bars on a trading day) is for the caller to decide. Values come as
Tushare delivers them (dates as ``YYYYMMDD`` strings, Tushare units); converting is the
caller's job.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import requests
import tenacity

from data.datasets import OPTIONAL_DATASETS
from data.errors import ConfigError, ProviderError

__all__ = [
    "CALLS_PER_MINUTE_BY_POINTS",
    "DEFAULT_ROW_LIMIT",
    "ROW_LIMITS",
    "ProviderError",
    "TushareConfig",
    "TushareProvider",
    "calls_per_minute",
]

log = logging.getLogger(__name__)

#: Rows one reply holds at most, per endpoint ("单次最大返回 N 行" on each endpoint's page of
#: https://tushare.pro/document/2, e.g. doc_id=27 daily, 32 daily_basic, 183 stk_limit,
#: 96 index_weight, 95 index_daily as restated in developer.aliyun.com/article/1747585 and
#: /1750043). The provider sends ``limit`` = this value, so a value *below* the real limit only
#: costs extra calls; one above it would end paging early, hence the conservative default for
#: endpoints not listed and the low values where the documentation is unclear to us.
ROW_LIMITS: dict[str, int] = {
    "trade_cal": 5000,         # one reply covers ~13 years of calendar days; paged beyond
    "stock_basic": 5000,       # the whole list fits in one or two replies
    "daily": 6000,             # doc_id=27: 6000 rows (was 5000 before 2023)
    "adj_factor": 6000,        # doc_id=28: one trading day of the whole market fits
    "daily_basic": 6000,       # doc_id=32: 6000 rows
    "stk_limit": 5800,         # doc_id=183: 5800 rows
    "moneyflow": 6000,         # doc_id=170: "单次最大提取6000行记录" (2000 points)
    "suspend_d": 5000,         # doc_id=214: not stated to us; conservative
    "namechange": 5000,        # doc_id=100: not stated to us; conservative
    "index_daily": 8000,       # doc_id=95: 8000 rows
    "index_weight": 6000,      # doc_id=96: 6000 rows
    "index_member_all": 2000,  # doc_id=335: 2000 rows
    "dividend": 2000,          # doc_id=103: not stated to us; conservative
    "fina_indicator": 100,     # doc_id=79: 100 rows per request
    "income": 1000,            # doc_id=33: not stated to us; conservative
    "balancesheet": 1000,      # doc_id=36
    "cashflow": 1000,          # doc_id=44
}
#: Row limit of an endpoint not in :data:`ROW_LIMITS`.
DEFAULT_ROW_LIMIT = 1000

#: Default calls per minute per endpoint by points tier (Tushare's 积分与频次 table,
#: https://tushare.pro/document/1?doc_id=108, and the per-endpoint notes such as index_daily's
#: "2000积分200次/分钟；5000积分500次/分钟"). The provider uses the row for the largest tier
#: <= ``[tushare] points``; ``[tushare] calls_per_minute`` > 0 overrides it.
CALLS_PER_MINUTE_BY_POINTS: dict[int, int] = {
    0: 50,        # 120 points (registration): ~50 calls/min on the basic endpoints
    2000: 200,
    5000: 500,
    10000: 1000,
    15000: 1000,
}

_RATE_LIMIT_MARKERS = ("每分钟最多访问", "每小时最多访问", "访问频率", "too many requests")
_SERVER_MARKERS = ("服务器", "系统繁忙", "系统内部", "稍后重试", "server error", "timeout",
                   "超时")


def calls_per_minute(points: int) -> int:
    """The default calls/minute of a points tier (the largest tier <= ``points``)."""
    tiers = [t for t in CALLS_PER_MINUTE_BY_POINTS if t <= points]
    return CALLS_PER_MINUTE_BY_POINTS[max(tiers) if tiers else 0]


@dataclass(frozen=True)
class TushareConfig:
    """``[tushare]``: where and how fast to ask Tushare Pro (the token only from the env)."""

    http_url: str = "http://api.waditu.com/dataapi"
    token_env: str = "TUSHARE_TOKEN"
    points: int = 2000
    calls_per_minute: int = 0
    timeout: float = 30.0
    max_retries: int = 5
    retry_wait: float = 1.0
    rate_limit_wait: float = 61.0     # wait at least this long (s) after a rate-limit reply
    indices: tuple[str, ...] = ("000300.SH", "000905.SH", "000852.SH", "000001.SH",
                                "399001.SZ", "399006.SZ", "000016.SH", "000906.SH")
    #: Opt-in datasets (:data:`data.datasets.OPTIONAL_DATASETS`) bootstrap / update also fetch.
    extra_datasets: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.http_url.startswith(("http://", "https://")):
            raise ValueError(f"http_url must start with http:// or https://, got "
                             f"{self.http_url!r}")
        if not self.token_env:
            raise ValueError("token_env must name an environment variable")
        for name in ("points", "calls_per_minute", "max_retries"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("timeout", "retry_wait"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        bad = [d for d in self.extra_datasets if d not in OPTIONAL_DATASETS]
        if bad:
            raise ValueError(f"extra_datasets: unknown {', '.join(map(repr, bad))}; choose "
                             f"from {', '.join(OPTIONAL_DATASETS)}")


class _Transient(Exception):
    """A failure worth retrying (network, HTTP error, bad JSON, rate limit, server error)."""


class _RateLimited(_Transient):
    """Tushare's per-minute limit reply: retried after the window has passed."""


class _Fatal(Exception):
    """A Tushare reply that retrying cannot fix (token, permission, quota, parameters)."""


class TushareProvider:
    """Queries Tushare Pro endpoints (see the module docstring).

    Parameters
    ----------
    cfg : TushareConfig
        The ``[tushare]`` section.
    token : str, optional
        The token; default ``os.environ[cfg.token_env]``.
    sleep, clock : callables
        Injected for tests (``time.sleep`` / ``time.monotonic``).
    row_limits : mapping of str to int, optional
        Overrides of :data:`ROW_LIMITS` (tests use small values to exercise paging).

    Raises
    ------
    ConfigError
        When no token is given and the environment variable is unset or empty.
    """

    name = "tushare"

    def __init__(self, cfg: TushareConfig, token: str | None = None, *,
                 sleep: Callable[[float], Any] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 row_limits: Mapping[str, int] | None = None):
        token = token if token is not None else os.environ.get(cfg.token_env, "")
        if not token:
            raise ConfigError(f"no Tushare token: set the environment variable "
                              f"${cfg.token_env} ([tushare] token_env); it is never read "
                              f"from mine.toml")
        # heavy import (~1.5 s): only when a provider is built
        from tushare.pro.client import DataApi
        self.cfg = cfg
        self._api = DataApi(token=token, timeout=cfg.timeout)
        self._api._DataApi__http_url = cfg.http_url.rstrip("/")
        self._secret = token
        self._sleep, self._clock = sleep, clock
        self._row_limits = {**ROW_LIMITS, **(row_limits or {})}
        self._cpm = cfg.calls_per_minute or calls_per_minute(cfg.points)
        self._window: dict[str, deque] = defaultdict(deque)
        self._calls: dict[str, int] = defaultdict(int)

    def __repr__(self) -> str:
        return f"TushareProvider(http_url={self.cfg.http_url!r}, calls_per_minute={self._cpm})"

    def calls(self) -> dict[str, int]:
        """Requests sent per endpoint so far (retries and pages included)."""
        return dict(self._calls)

    def row_limit(self, api_name: str) -> int:
        """Rows one reply of ``api_name`` holds at most (the page size used)."""
        return int(self._row_limits.get(api_name, DEFAULT_ROW_LIMIT))

    # -- one request ---------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _throttle(self, api_name: str) -> None:
        window = self._window[api_name]
        while True:
            now = self._clock()
            while window and window[0] <= now - 60.0:
                window.popleft()
            if len(window) < self._cpm:
                break
            wait = window[0] + 60.0 - now
            log.debug("tushare %s: %d calls in the last minute; waiting %.1f s",
                      api_name, len(window), wait)
            self._sleep(max(wait, 0.001))
        window.append(self._clock())

    def _once(self, api_name: str, params: dict, fields: str) -> pd.DataFrame:
        self._throttle(api_name)
        self._calls[api_name] += 1
        try:
            df = self._api.query(api_name, fields=fields, **params)
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as e:
            raise _Transient(f"{type(e).__name__}: {self._scrub(str(e))}") from None
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise _Transient(f"malformed reply ({type(e).__name__}: "
                             f"{self._scrub(str(e))[:200]})") from None
        except Exception as e:  # noqa: BLE001 - the client raises Exception(msg) on code != 0
            msg = self._scrub(str(e))
            low = msg.lower()
            if any(m in low for m in _RATE_LIMIT_MARKERS):
                raise _RateLimited(f"rate limited: {msg}") from None
            if any(m in low for m in _SERVER_MARKERS):
                raise _Transient(f"server error: {msg}") from None
            raise _Fatal(msg) from None
        if df.columns.empty:
            raise _Transient("HTTP error (the client returned an empty frame without columns)")
        return df

    def _retrying(self, api_name: str, params: dict, fields: str) -> pd.DataFrame:
        def before_sleep(state: tenacity.RetryCallState) -> None:
            log.warning("tushare %s %s: %s; retry %d/%d in %.1f s", api_name, _show(params),
                        state.outcome.exception(), state.attempt_number,
                        self.cfg.max_retries, state.next_action.sleep)

        expo = tenacity.wait_exponential(multiplier=self.cfg.retry_wait, exp_base=2,
                                         min=self.cfg.retry_wait, max=60)

        def wait(state: tenacity.RetryCallState) -> float:
            # a rate-limit reply means "this minute is used up": wait the window out
            w = expo(state)
            if isinstance(state.outcome.exception(), _RateLimited):
                w = max(w, self.cfg.rate_limit_wait)
            return w

        retrying = tenacity.Retrying(
            sleep=self._sleep,
            stop=tenacity.stop_after_attempt(self.cfg.max_retries + 1),
            wait=wait,
            retry=tenacity.retry_if_exception_type(_Transient),
            before_sleep=before_sleep, reraise=True)
        try:
            return retrying(self._once, api_name, params, fields)
        except _Transient as e:
            raise ProviderError(f"tushare {api_name} {_show(params)} failed after "
                                f"{self.cfg.max_retries} retries: {e}") from None
        except _Fatal as e:
            raise ProviderError(f"tushare {api_name} {_show(params)} refused (not retried): "
                                f"{e}") from None

    # -- the public query ----------------------------------------------------------------------

    def query(self, api_name: str, params: Mapping[str, Any] | None = None,
              fields: Sequence[str] | str = ()) -> pd.DataFrame:
        """All rows of ``api_name`` for ``params`` (paged), with ``fields`` (empty = all).

        Returns
        -------
        pandas.DataFrame
            Tushare's columns and values as delivered; zero rows when Tushare answered none.

        Raises
        ------
        ProviderError
            When a request still fails after the retries, or Tushare refuses it (token,
            permission, quota, parameters). The message names the endpoint and parameters,
            never the token.
        """
        params = {k: v for k, v in dict(params or {}).items() if v is not None}
        for k in ("limit", "offset", "fields", "api_name"):
            if k in params:
                raise ValueError(f"query params may not set {k!r}: the provider does")
        fields = fields if isinstance(fields, str) else ",".join(fields)
        limit = self.row_limit(api_name)
        pages: list[pd.DataFrame] = []
        offset = 0
        while True:
            page = self._retrying(api_name, {**params, "limit": limit, "offset": offset},
                                  fields)
            if pages and len(page) and page.equals(pages[-1]):
                raise ProviderError(f"tushare {api_name} {_show(params)}: the server ignores "
                                    f"offset (page at offset {offset} repeats the last)")
            pages.append(page)
            if len(page) < limit:
                break
            offset += limit
        log.debug("tushare %s %s: %d rows in %d page(s)", api_name, _show(params),
                  sum(map(len, pages)), len(pages))
        if len(pages) == 1:
            return pages[0]
        return pd.concat(pages, ignore_index=True)


def _show(params: Mapping[str, Any]) -> str:
    """Parameters for messages (never contains the token: it is not a parameter)."""
    return "{" + ", ".join(f"{k}={v!r}" for k, v in params.items()) + "}"
