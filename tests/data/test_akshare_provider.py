"""The AKShare provider at its function boundary, with recorded replies.

No network and no ``akshare`` package: a fake module (``types.SimpleNamespace``) stands in for
``akshare``, its functions returning DataFrames in the exact shape AKShare returns
(``stock_zh_a_hist``: 日期 (datetime.date), 股票代码, 开盘, 收盘, 最高, 最低, 成交量 (手), 成交额 (元),
振幅, 涨跌幅, 涨跌额, 换手率 -- akshare/stock_feature/stock_hist_em.py;
``tool_trade_date_hist_sina``: trade_date (datetime.date); ``stock_info_a_code_name``: code,
name).
"""
from __future__ import annotations

import datetime as dt
import os
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import data.datasets
from data import ingest
from data.akshare_provider import AKShareProvider, ts_code_of
from data.config import Config, DataConfig
from data.errors import ConfigError, ProviderError

os.environ["ALPHAMINE_INGEST_NOSYNC"] = "1"
data.datasets.FSYNC = False

HIST_COLUMNS = ["日期", "股票代码", "开盘", "收盘", "最高", "最低", "成交量", "成交额", "振幅",
                "涨跌幅", "涨跌额", "换手率"]
#: The recorded market: 5 stocks, January 2024 (2024-01-01 a holiday).
STOCKS = {"000001": "平安银行", "000002": "万科A", "300750": "宁德时代", "600519": "贵州茅台",
          "688981": "中芯国际"}
OPEN = [d.date() for d in pd.bdate_range("2023-12-25", "2024-02-09")
        if d != pd.Timestamp("2024-01-01")]
#: hfq factor per stock; 000002 has an ex-dividend day on 2024-01-15 (factor 2.0 -> 2.1).
FACTOR = {"000001": 10.0, "000002": 2.0, "300750": 1.5, "600519": 8.0, "688981": 1.0}
EX_DAY, EX_CODE, EX_FACTOR = dt.date(2024, 1, 15), "000002", 2.1


def _raw_close(code: str, i: int) -> float:
    return round(10.0 + int(code) % 97 + 0.1 * i, 2)


def _factor(code: str, day: dt.date) -> float:
    return EX_FACTOR if code == EX_CODE and day >= EX_DAY else FACTOR[code]


def _hist_reply(symbol: str, start_date: str, end_date: str, adjust: str) -> pd.DataFrame:
    """A recorded ``stock_zh_a_hist`` reply (prices rounded to 0.01 like Eastmoney's)."""
    s, e = pd.Timestamp(start_date).date(), pd.Timestamp(end_date).date()
    rows, prev = [], None
    for i, day in enumerate(OPEN):
        f = _factor(symbol, day) if adjust == "hfq" else 1.0
        c = round(_raw_close(symbol, i) * f, 2)
        if s <= day <= e:
            o, h, lo = round(c * 0.99, 2), round(c * 1.02, 2), round(c * 0.98, 2)
            vol = 1000 + 10 * i
            amt = round(vol * 100 * _raw_close(symbol, i), 2)
            chg = round(c - prev, 2) if prev is not None else 0.0
            rows.append([day, symbol, o, c, h, lo, vol, amt, 4.0, 1.0, chg, 0.5])
        prev = c
    if not rows:
        return pd.DataFrame()          # what AKShare returns for no klines
    return pd.DataFrame(rows, columns=HIST_COLUMNS)


def fake_ak(calls: list | None = None, flaky: int = 0) -> types.SimpleNamespace:
    """A stand-in ``akshare`` module; ``calls`` records (function, kwargs); the first ``flaky``
    ``stock_zh_a_hist`` calls raise ConnectionError."""
    calls = calls if calls is not None else []
    state = {"flaky": flaky}

    def stock_zh_a_hist(symbol="000001", period="daily", start_date="19700101",
                        end_date="20500101", adjust="", timeout=None):
        calls.append(("stock_zh_a_hist", {"symbol": symbol, "start_date": start_date,
                                              "end_date": end_date, "adjust": adjust}))
        if state["flaky"]:
            state["flaky"] -= 1
            raise ConnectionError("Remote end closed connection without response")
        assert period == "daily"
        return _hist_reply(symbol, start_date, end_date, adjust)

    def tool_trade_date_hist_sina():
        calls.append(("tool_trade_date_hist_sina", {}))
        return pd.DataFrame({"trade_date": OPEN})

    def stock_info_a_code_name():
        calls.append(("stock_info_a_code_name", {}))
        return pd.DataFrame({"code": list(STOCKS), "name": list(STOCKS.values())})

    return types.SimpleNamespace(stock_zh_a_hist=stock_zh_a_hist,
                                 tool_trade_date_hist_sina=tool_trade_date_hist_sina,
                                 stock_info_a_code_name=stock_info_a_code_name, calls=calls)


# ------------------------------------------------------------------ conversion
def test_units_against_hand_computed_values():
    reply = {"": pd.DataFrame([[dt.date(2024, 1, 2), "000001", 10.0, 10.5, 10.8, 9.9, 12345,
                                12962250.0, 8.91, 2.94, 0.3, 0.06]], columns=HIST_COLUMNS),
             "hfq": pd.DataFrame([[dt.date(2024, 1, 2), "000001", 100.0, 105.0, 108.0, 99.0,
                                   12345, 12962250.0, 8.91, 2.94, 3.0, 0.06]],
                                 columns=HIST_COLUMNS)}
    ak = types.SimpleNamespace(
        stock_zh_a_hist=lambda symbol, period, start_date, end_date, adjust: reply[adjust],
        stock_info_a_code_name=lambda: pd.DataFrame({"code": ["000001"], "name": ["平安银行"]}))
    p = AKShareProvider(ak=ak)
    d = p.query("daily", {"trade_date": "20240102"},
                ["ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "vol",
                 "amount"])
    assert d.to_dict("records") == [{
        "ts_code": "000001.SZ", "trade_date": "20240102", "open": 10.0, "high": 10.8,
        "low": 9.9, "close": 10.5, "pre_close": 10.2,      # 收盘 − 涨跌额
        "vol": 12345.0,                                     # 成交量 is already lots (手)
        "amount": 12962.25}]                                # 成交额 yuan -> thousand yuan
    a = p.query("adj_factor", {"trade_date": "20240102"}, ["ts_code", "trade_date",
                                                           "adj_factor"])
    assert a["adj_factor"].tolist() == [pytest.approx(10.0)]   # hfq 105.0 / raw 10.5
    assert p.query("daily", {"trade_date": "20240103"}, ["ts_code"]).empty


def test_ts_code_suffixes():
    assert [ts_code_of(c) for c in ("600519", "688981", "000001", "300750", "830799",
                                    "920118", "2")] == \
        ["600519.SH", "688981.SH", "000001.SZ", "300750.SZ", "830799.BJ", "920118.BJ",
         "000002.SZ"]


def test_adj_factor_is_hfq_over_raw_and_steps_on_the_ex_day():
    p = AKShareProvider(ak=fake_ak())
    for day, want in (("20240112", FACTOR[EX_CODE]), ("20240115", EX_FACTOR)):
        a = p.query("adj_factor", {"trade_date": day}).set_index("ts_code")["adj_factor"]
        assert a["000002.SZ"] == pytest.approx(want, rel=1e-3)
        assert a["000001.SZ"] == pytest.approx(FACTOR["000001"], rel=1e-3)
        assert set(a.index) == {ts_code_of(c) for c in STOCKS}


# ------------------------------------------------------------------ caching and calls
def test_per_stock_caching_one_call_per_stock_per_window():
    calls: list = []
    p = AKShareProvider(ak=fake_ak(calls))
    days = [d for d in OPEN if d.year == 2024]
    for d in days:
        s = d.strftime("%Y%m%d")
        assert len(p.query("daily", {"trade_date": s})) == len(STOCKS)
        assert len(p.query("adj_factor", {"trade_date": s})) == len(STOCKS)
    hist = [kw for f, kw in calls if f == "stock_zh_a_hist"]
    # N stocks -> N raw + N hfq calls for the 2024 window, not N x days
    assert len(hist) == 2 * len(STOCKS) and len(days) > 20
    assert {(kw["start_date"], kw["end_date"]) for kw in hist} == {("20240101", "20241231")}
    assert sorted(kw["adjust"] for kw in hist) == [""] * 5 + ["hfq"] * 5
    assert p.calls() == {"stock_info_a_code_name": 1, "stock_zh_a_hist": 10}
    p.query("daily", {"trade_date": "20231227"})           # another window: N x 2 more
    assert p.calls()["stock_zh_a_hist"] == 20


def test_trade_cal_and_stock_basic():
    p = AKShareProvider(ak=fake_ak())
    cal = p.query("trade_cal", {"exchange": "SSE", "start_date": "20231230",
                                "end_date": "20240103"})
    assert cal["cal_date"].tolist() == ["20231230", "20231231", "20240101", "20240102",
                                        "20240103"]
    assert cal["is_open"].tolist() == [0, 0, 0, 1, 1]
    assert cal["pretrade_date"].tolist()[-2:] == ["20231229", "20240102"]
    sb = p.query("stock_basic", {"list_status": "L"}, ["ts_code", "name", "exchange",
                                                      "list_status"])
    assert sb["ts_code"].tolist() == ["000001.SZ", "000002.SZ", "300750.SZ", "600519.SH",
                                      "688981.SH"]
    assert set(sb["exchange"]) == {"SZSE", "SSE"} and set(sb["list_status"]) == {"L"}
    # no delisted list in AKShare: empty, with the columns asked for
    d = p.query("stock_basic", {"list_status": "D"}, ["ts_code", "list_status"])
    assert d.empty and list(d.columns) == ["ts_code", "list_status"]


# ------------------------------------------------------------------ errors and retries
def test_unsupported_endpoint_names_it_and_tushare():
    p = AKShareProvider(ak=fake_ak())
    with pytest.raises(ProviderError, match=r"'daily_basic'.*Tushare"):
        p.query("daily_basic", {"trade_date": "20240102"})
    with pytest.raises(ProviderError, match="trade_date"):
        p.query("daily", {"start_date": "20240102"})


def test_retries_a_transient_error_then_succeeds():
    slept: list = []
    calls: list = []
    p = AKShareProvider(ak=fake_ak(calls, flaky=2), sleep=slept.append, retry_wait=0.5)
    d = p.query("daily", {"trade_date": "20240102"})
    assert len(d) == len(STOCKS)
    assert slept == [0.5, 1.0]                  # two retries, exponential wait
    assert p.calls()["stock_zh_a_hist"] == 2 * len(STOCKS) + 2


def test_gives_up_after_max_retries_and_keeps_what_it_fetched():
    calls: list = []
    ak = fake_ak(calls, flaky=10)
    p = AKShareProvider(ak=ak, sleep=lambda s: None, max_retries=2)
    with pytest.raises(ProviderError, match=r"stock_zh_a_hist.*after 2 retries.*Connection"):
        p.query("daily", {"trade_date": "20240102"})
    assert p.calls()["stock_zh_a_hist"] == 3


def test_missing_akshare_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "akshare", None)     # import akshare -> ImportError
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[akshare\]"'):
        AKShareProvider()
    cfg = Config(None, data=DataConfig(root=Path(".")))
    with pytest.raises(ConfigError, match="akshare"):
        ingest.make_provider(cfg, name="akshare")
    with pytest.raises(ConfigError, match="unknown provider"):
        ingest.make_provider(cfg, name="wind")


# ------------------------------------------------------------------ ingest end to end
def test_cli_bootstrap_with_akshare_fills_daily(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from data.manager import DataManager
    from mining.cli import app
    calls: list = []
    fake = types.ModuleType("akshare")
    for k, v in vars(fake_ak(calls)).items():
        setattr(fake, k, v)
    monkeypatch.setitem(sys.modules, "akshare", fake)
    monkeypatch.delenv("TUSHARE_TOKEN", raising=False)    # AKShare needs no token
    root = tmp_path / "wh"
    r = CliRunner()
    res = r.invoke(app, ["data", "bootstrap", "--root", str(root), "--start", "2024-01-02",
                         "--end", "2024-01-31", "--provider", "nope"])
    assert res.exit_code == 2 and "--provider" in res.output and not root.exists()
    res = r.invoke(app, ["data", "bootstrap", "--root", str(root), "--start", "2024-01-02",
                         "--end", "2024-01-31", "--provider", "akshare"])
    assert res.exit_code == 0, res.output
    assert "skipped" in res.output and "daily_basic" in res.output
    hist = [kw for f, kw in calls if f == "stock_zh_a_hist"]
    assert len(hist) == 2 * len(STOCKS)                   # one window, raw + hfq per stock
    daily = pd.read_parquet(root / "daily/daily_2024.parquet")
    days = [d for d in OPEN if dt.date(2024, 1, 2) <= d <= dt.date(2024, 1, 31)]
    assert len(daily) == len(STOCKS) * len(days)
    assert daily["adj_factor"].notna().all()
    assert not (root / "daily_basic").exists()
    dm = DataManager(root)
    codes = [ts_code_of(c) for c in STOCKS]
    # no list dates from AKShare: every listed stock is in "all"
    assert list(dm.universe_codes("all", "2024-01-02", "2024-01-31")) == sorted(codes)
    close = dm.panel("close", "2024-01-02", "2024-01-31", codes=codes)
    assert close.shape == (len(days), len(STOCKS))
    i = OPEN.index(dt.date(2024, 1, 10))
    raw = daily.set_index(["ts_code", "trade_date"])["close"]
    assert raw[("600519.SH", pd.Timestamp("2024-01-10"))] == _raw_close("600519", i)
    # the manager's close is back-adjusted: raw x adj_factor = Eastmoney's hfq close
    assert close.loc["2024-01-10", "600519.SH"] == pytest.approx(
        round(_raw_close("600519", i) * FACTOR["600519"], 2), rel=1e-9)
    # an update with nothing new makes no bar calls
    res = r.invoke(app, ["data", "update", "--root", str(root), "--end", "2024-01-31",
                         "--provider", "akshare"])
    assert res.exit_code == 0, res.output
    assert len([1 for f, _ in calls if f == "stock_zh_a_hist"]) == 2 * len(STOCKS)
    assert np.isfinite(dm.panel("adj_factor", "2024-01-02", "2024-01-31", codes=codes)
                       .to_numpy()).all()
