"""data.tushare against the local Tushare Pro server (tests/data/tushare_server.py).

The real ``tushare`` client does the HTTP; sleeping is injected (a fake clock), so retries and
the rate limiter cost no wall time.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
from tushare_server import TEST_TOKEN, Faults, answer, make_market, serve

from data.config import section_from_dict
from data.errors import ConfigError, DataError, ProviderError
from data.tushare import (
    CALLS_PER_MINUTE_BY_POINTS,
    ROW_LIMITS,
    TushareConfig,
    TushareProvider,
    calls_per_minute,
)


class FakeClock:
    def __init__(self):
        self.t = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


@pytest.fixture(scope="module")
def market():
    return make_market(seed=0)


@pytest.fixture
def server(market):
    """Start a server; ``server(faults=..., row_limits=...)`` -> (url, handle)."""
    stops = []

    def start(**kw):
        url, stop = serve(market, **kw)
        stops.append(stop)
        return url, stop

    yield start
    for stop in stops:
        stop()


def provider(url, clock=None, token=TEST_TOKEN, row_limits=None, **cfg):
    clock = clock or FakeClock()
    cfg = {"max_retries": 3, "retry_wait": 1.0, "timeout": 5.0, **cfg}
    return TushareProvider(TushareConfig(http_url=url, **cfg), token, sleep=clock.sleep,
                           clock=clock, row_limits=row_limits)


def _same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    want = want.reset_index(drop=True).astype(object).where(want.notna().to_numpy(), None)
    got = got.reset_index(drop=True).astype(object).where(got.notna().to_numpy(), None)
    assert list(got.columns) == list(want.columns)
    assert got.to_dict("records") == want.to_dict("records")


# -- every endpoint ----------------------------------------------------------------------------

def _cases(m):
    d = m.trade_days
    return [
        ("trade_cal", {"exchange": "SSE", "start_date": d[0], "end_date": d[-1]}),
        ("stock_basic", {"list_status": "L"}),
        ("stock_basic", {"list_status": "D"}),
        ("stock_basic", {"list_status": "P"}),
        ("daily", {"trade_date": d[11]}),
        ("daily", {"ts_code": m.codes[0], "start_date": d[5], "end_date": d[40]}),
        ("adj_factor", {"trade_date": d[30]}),
        ("daily_basic", {"trade_date": d[3]}),
        ("stk_limit", {"trade_date": d[3]}),
        ("moneyflow", {"trade_date": d[7]}),
        ("moneyflow", {"ts_code": m.codes[0], "start_date": d[5], "end_date": d[9]}),
        ("suspend_d", {"start_date": d[0], "end_date": d[-1]}),
        ("namechange", {"ts_code": m.st_stock}),
        ("index_daily", {"ts_code": "000300.SH", "start_date": d[0], "end_date": d[-1]}),
        ("index_weight", {"index_code": "000905.SH", "start_date": d[0], "end_date": d[-1]}),
        ("index_member_all", {}),
        ("dividend", {"ts_code": m.div_stock}),
        ("fina_indicator", {"ts_code": m.codes[3]}),
        ("income", {"ts_code": m.codes[3], "start_date": "20230101", "end_date": "20241231"}),
        ("balancesheet", {"ts_code": m.codes[3]}),
        ("cashflow", {"ts_code": m.codes[3], "period": "20231231"}),
    ]


def test_every_endpoint_returns_the_expected_frame(market, server):
    url, _ = server()
    p = provider(url)
    for api, params in _cases(market):
        got = p.query(api, params)
        assert len(got) > 0, (api, params)
        _same(got, answer(market, api, params))
    assert p.calls()["stock_basic"] == 3


def test_endpoint_semantics(market, server):
    url, _ = server()
    p = provider(url)
    d = market.trade_days
    dl = p.query("stock_basic", {"list_status": "D"})
    assert dl.ts_code.tolist() == [market.delisted] and dl.delist_date[0] == market.delist_date
    bars = p.query("daily", {"ts_code": market.delisted, "start_date": d[0], "end_date": d[-1]})
    assert bars.trade_date.max() < market.delist_date
    day = market.suspended_days[1]
    assert market.suspended not in set(p.query("daily", {"trade_date": day}).ts_code)
    s = p.query("suspend_d", {"ts_code": market.suspended})
    assert sorted(s.suspend_type) == ["R", "S", "S", "S"]
    # fields honoured (list or string), in the order asked
    f = p.query("daily", {"trade_date": d[0]}, fields=["ts_code", "close"])
    assert list(f.columns) == ["ts_code", "close"]
    assert list(p.query("daily", {"trade_date": d[0]}, fields="close,ts_code").columns) == \
        ["close", "ts_code"]
    # prices within the day's limits; ST names get 5 %
    bars = p.query("daily", {"trade_date": market.st_start})
    lim = p.query("stk_limit", {"trade_date": market.st_start}).set_index("ts_code")
    j = bars.set_index("ts_code").join(lim[["up_limit", "down_limit"]])
    assert (j.close <= j.up_limit).all() and (j.close >= j.down_limit).all()
    row = lim.loc[market.st_stock]
    assert row.up_limit == round(row.pre_close * 1.05, 2)
    nc = p.query("namechange", {"ts_code": market.st_stock})
    assert nc.name.str.startswith("ST").sum() == 1
    # dividend ex_date in range with an adj_factor step
    div = p.query("dividend", {"ts_code": market.div_stock})
    ex = div.ex_date.dropna().iloc[0]
    af = p.query("adj_factor", {"ts_code": market.div_stock}).set_index("trade_date")
    i = d.index(ex)
    assert af.adj_factor[d[i]] > af.adj_factor[d[i - 1]]
    sw = p.query("index_member_all", {"ts_code": market.industry_changer})
    assert len(sw) == 2 and sw.l1_code.nunique() == 2
    inc = p.query("income", {"ts_code": market.codes[0]})
    assert (inc.ann_date > inc.end_date).all()


def test_market_is_deterministic():
    a, b, c = make_market(seed=3), make_market(seed=3), make_market(seed=4)
    pd.testing.assert_frame_equal(a.tables["daily"], b.tables["daily"])
    assert not a.tables["daily"]["close"].equals(c.tables["daily"]["close"])


def test_real_pro_api_against_the_server(market, server):
    import tushare as ts
    url, _ = server()
    pro = ts.pro_api(TEST_TOKEN)
    pro._DataApi__http_url = url
    df = pro.daily(trade_date=market.trade_days[0])
    assert len(df) == len(answer(market, "daily", {"trade_date": market.trade_days[0]}))


# -- paging ------------------------------------------------------------------------------------

@pytest.mark.parametrize("page", [7, 5])
def test_paging_returns_every_row_once(market, server, page):
    url, stop = server(row_limits={"daily": page})
    p = provider(url, row_limits={"daily": page})
    params = {"ts_code": ",".join(market.codes[:2]), "start_date": market.trade_days[0],
              "end_date": market.trade_days[-1]}
    want = answer(market, "daily", params)
    got = p.query("daily", params)
    _same(got, want)
    assert not got.duplicated(["ts_code", "trade_date"]).any()
    assert stop.counts["daily"] == len(want) // page + 1 == p.calls()["daily"]
    offsets = [r["offset"] for a, r in stop.requests if a == "daily"]
    assert offsets == [i * page for i in range(len(want) // page + 1)]


def test_server_smaller_than_the_provider_page_is_the_one_risk(market, server):
    """Documented: the provider trusts ROW_LIMITS; a server capping lower ends paging early."""
    url, _ = server(row_limits={"daily": 4})
    p = provider(url, row_limits={"daily": 10})
    assert len(p.query("daily", {"trade_date": market.trade_days[0]})) == 4


# -- retries -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["rate_limit", "http500", "timeout", "truncated", "reset",
                                  "server"])
def test_each_fault_is_retried_then_succeeds(market, server, kind):
    url, stop = server(faults=Faults({"daily": [kind, kind]}, delay=1.0))
    clock = FakeClock()
    p = provider(url, clock, timeout=0.25)
    day = market.trade_days[4]
    _same(p.query("daily", {"trade_date": day}), answer(market, "daily", {"trade_date": day}))
    assert stop.counts["daily"] == 3 == p.calls()["daily"]
    # a rate-limit reply waits the minute out ([tushare] rate_limit_wait), others back off
    assert clock.sleeps == ([61.0, 61.0] if kind == "rate_limit" else [1.0, 2.0])


def test_backoff_doubles_and_caps_at_60s(market, server):
    url, _ = server(faults=Faults({"trade_cal": ["http500"] * 4}))
    clock = FakeClock()
    p = provider(url, clock, retry_wait=20.0, max_retries=4)
    assert len(p.query("trade_cal", {})) > 0
    assert clock.sleeps == [20.0, 40.0, 60.0, 60.0]


@pytest.mark.parametrize("kind", ["rate_limit", "http500", "truncated"])
def test_persistent_fault_ends_in_provider_error(market, server, kind):
    url, stop = server(faults=Faults({"daily": [kind] * 10}))
    p = provider(url, max_retries=2)
    with pytest.raises(ProviderError) as e:
        p.query("daily", {"trade_date": "20240105"})
    msg = str(e.value)
    assert "daily" in msg and "20240105" in msg and "2 retries" in msg
    assert TEST_TOKEN not in msg and TEST_TOKEN not in repr(e.value.__cause__)
    assert stop.counts["daily"] == 3
    assert isinstance(e.value, DataError)


@pytest.mark.parametrize("kind,words", [("token", "token"), ("permission", "权限"),
                                        ("daily_cap", "每天")])
def test_refusals_fail_at_once(market, server, kind, words):
    url, stop = server(faults=Faults({"daily": [kind]}))
    clock = FakeClock()
    p = provider(url, clock)
    with pytest.raises(ProviderError, match=words) as e:
        p.query("daily", {"trade_date": "20240105"})
    assert "not retried" in str(e.value) and stop.counts["daily"] == 1 and clock.sleeps == []


def test_wrong_token_and_unknown_endpoint_fail_at_once(server):
    url, stop = server()
    bad = "not-the-token-xyz"
    with pytest.raises(ProviderError, match="token") as e:
        provider(url, token=bad).query("daily", {"trade_date": "20240105"})
    assert bad not in str(e.value)
    with pytest.raises(ProviderError, match="no_such_api"):
        provider(url).query("no_such_api", {})
    assert stop.counts["daily"] == 1 and stop.counts["no_such_api"] == 1


def test_empty_items_is_a_real_empty_answer(market, server):
    """Zero rows WITH columns is returned as such: the caller decides whether it is plausible."""
    url, _ = server(faults=Faults({"daily": ["empty_items"]}))
    df = provider(url).query("daily", {"trade_date": market.trade_days[2]})
    assert df.empty and "close" in df.columns


def test_random_faults_still_give_every_row(market, server):
    url, stop = server(faults=Faults(prob=0.4, seed=5, kinds=("rate_limit", "http500",
                                                              "truncated", "server")),
                       row_limits={"daily": 6})
    p = provider(url, max_retries=8, row_limits={"daily": 6})
    params = {"ts_code": market.codes[8], "start_date": market.trade_days[0],
              "end_date": market.trade_days[-1]}
    _same(p.query("daily", params), answer(market, "daily", params))
    assert sum(stop.faults.injected.values()) > 0


# -- rate limiting -----------------------------------------------------------------------------

def test_rate_limiter_never_exceeds_n_calls_per_minute(market, server):
    url, _ = server()
    clock = FakeClock()
    p = provider(url, clock, calls_per_minute=5)
    stamps = []
    real = p._api.query

    def spy(*a, **k):
        stamps.append(clock())
        return real(*a, **k)

    p._api.query = spy
    for _ in range(23):
        p.query("trade_cal", {"start_date": "20240101", "end_date": "20240110"})
    p.query("daily", {"trade_date": market.trade_days[0]})  # another endpoint: own window
    assert len(stamps) == 24
    tc = stamps[:23]
    for t in tc:
        assert sum(t <= s < t + 60 for s in tc) <= 5
    assert tc[-1] - tc[0] == pytest.approx(4 * 60)
    assert stamps[-1] == tc[-1]


def test_points_tiers():
    assert calls_per_minute(120) == CALLS_PER_MINUTE_BY_POINTS[0]
    assert calls_per_minute(2000) == 200 and calls_per_minute(4999) == 200
    assert calls_per_minute(5000) == 500
    assert ROW_LIMITS["daily"] == 6000 and ROW_LIMITS["stk_limit"] == 5800
    p = TushareProvider(TushareConfig(points=5000), "x")
    assert p._cpm == 500 and p.row_limit("unknown_api") <= 1000


# -- the token stays secret --------------------------------------------------------------------

def test_token_never_written_logged_or_shown(market, server, tmp_path, monkeypatch, caplog):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TUSHARE_TOKEN", TEST_TOKEN)
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.DEBUG)
    url, _ = server(faults=Faults({"daily": ["http500", "rate_limit"],
                                   "adj_factor": ["http500"] * 5}))
    clock = FakeClock()
    p = TushareProvider(TushareConfig(http_url=url, max_retries=2), sleep=clock.sleep,
                        clock=clock)
    wh = tmp_path / "wh"
    wh.mkdir()
    df = p.query("daily", {"trade_date": market.trade_days[1]})
    df.to_parquet(wh / "daily.parquet")
    messages = [repr(p)]
    with pytest.raises(ProviderError) as e:
        p.query("adj_factor", {"trade_date": market.trade_days[1]})
    messages += [str(e.value), repr(e.value)]
    messages += [r.getMessage() for r in caplog.records]
    assert any("retry" in m for m in messages)
    for m in messages:
        assert TEST_TOKEN not in m
    assert not (home / "tk.csv").exists()
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert files
    for f in files:
        assert TEST_TOKEN.encode() not in f.read_bytes(), f


def test_missing_token_is_a_config_error(monkeypatch):
    monkeypatch.delenv("MY_TS", raising=False)
    with pytest.raises(ConfigError, match=r"\$MY_TS"):
        TushareProvider(TushareConfig(token_env="MY_TS"))


# -- configuration -----------------------------------------------------------------------------

def test_tushare_section_loads():
    cfg = section_from_dict("tushare", TushareConfig,
                            {"http_url": "http://127.0.0.1:8766/dataapi", "points": 5000,
                             "retry_wait": 2, "indices": ["000300.SH"]})
    assert cfg.points == 5000 and cfg.retry_wait == 2.0 and cfg.indices == ("000300.SH",)
    with pytest.raises(ConfigError, match="tokn"):
        section_from_dict("tushare", TushareConfig, {"tokn": "x"})
    with pytest.raises(ConfigError, match="http_url"):
        section_from_dict("tushare", TushareConfig, {"http_url": "ftp://x"})
    import tomllib
    shipped = Path(__file__).resolve().parents[2] / "mine.toml"
    raw = tomllib.loads(shipped.read_text(encoding="utf-8"))["tushare"]
    assert section_from_dict("tushare", TushareConfig, raw) == TushareConfig()
    cli = (Path(__file__).resolve().parents[2] / "mining" / "cli_app.py").read_text()
    assert '"tushare": TushareConfig' in cli  # SCHEMA (importing the CLI here costs ~10 s)
