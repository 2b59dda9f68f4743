"""The opt-in Tushare ``moneyflow`` dataset through the real path: the real ``tushare`` client
(:class:`data.tushare.TushareProvider`) -> the local Tushare Pro server (``tushare_server.py``,
HTTP on 127.0.0.1) -> :func:`data.ingest.bootstrap` -> the warehouse -> ``DataManager`` fields
``net_mf_amount`` and ``mf_lg_net`` in yuan (x 1e4 from 10k yuan)."""
from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pandas as pd
import pytest
from tushare_server import TEST_TOKEN, Faults, make_market, serve

import data.datasets
from data import ingest
from data.config import Config, DataConfig, section_from_dict
from data.errors import ConfigError, FieldError
from data.ingest_store import status
from data.manager import DataManager
from data.tushare import ROW_LIMITS, TushareConfig, TushareProvider

os.environ["ALPHAMINE_INGEST_NOSYNC"] = "1"
data.datasets.FSYNC = False

NOW = dt.datetime(2024, 6, 3, 18, 0, tzinfo=ingest.SHANGHAI)
N_DAYS = 8


def _iso(d: str) -> str:
    return f"{d[:4]}-{d[4:6]}-{d[6:]}"


@pytest.fixture(scope="module")
def market():
    return make_market(seed=5, n_stocks=12, n_days=30)


def _cfg(root, url, extra=("moneyflow",)) -> Config:
    t = TushareConfig(http_url=url, indices=("000300.SH",), calls_per_minute=100000,
                      retry_wait=0.01, rate_limit_wait=0.02, timeout=5.0,
                      extra_datasets=tuple(extra))
    return Config(None, data=DataConfig(root=root, cache_dir=root.parent / "cache"), tushare=t)


def _fill(market, root, *, extra=("moneyflow",), faults=None):
    url, stop = serve(market, faults=faults)
    try:
        cfg = _cfg(root, url, extra)
        prov = TushareProvider(cfg.tushare, TEST_TOKEN, sleep=lambda s: None)
        days = market.trade_days
        run = ingest.bootstrap(cfg, prov, start=_iso(days[0]), end=_iso(days[N_DAYS - 1]),
                               root=root, now=lambda: NOW)
    finally:
        stop()
    return run, stop


def _expected(market, column_sum) -> pd.DataFrame:
    mf = market.tables["moneyflow"]
    mf = mf[mf["trade_date"] <= market.trade_days[N_DAYS - 1]]
    v = column_sum(mf) * 1e4
    wide = pd.DataFrame({"d": pd.to_datetime(mf["trade_date"]), "c": mf["ts_code"], "v": v}) \
        .pivot(index="d", columns="c", values="v")
    return wide


@pytest.fixture(scope="module")
def filled(market, tmp_path_factory):
    root = tmp_path_factory.mktemp("mf") / "wh"
    run, stop = _fill(market, root)
    return {"root": root, "run": run, "requests": stop.requests}


def test_row_limit_is_documented():
    assert ROW_LIMITS["moneyflow"] == 6000          # doc_id=170: 单次最大提取6000行记录


def test_moneyflow_is_fetched_once_per_open_day_and_stored(market, filled):
    run, root = filled["run"], filled["root"]
    assert run.ok, run.failed
    asked = [p["trade_date"] for api, p in filled["requests"] if api == "moneyflow"]
    assert asked == market.trade_days[:N_DAYS]          # one whole-market call per open day
    assert run.parts["moneyflow"] == {"planned": N_DAYS, "done": N_DAYS, "failed": 0}
    stored = pd.read_parquet(root / "moneyflow" / "moneyflow_2024.parquet")
    assert list(stored.columns) == list(data.datasets.DATASETS["moneyflow"].columns)
    assert not stored.duplicated(["ts_code", "trade_date"]).any()
    want = market.tables["moneyflow"]
    want = want[want["trade_date"] <= market.trade_days[N_DAYS - 1]]
    assert len(stored) == len(want) > 0
    st = {s.dataset: s for s in status(root)}["moneyflow"]
    assert st.gaps == [] and st.failed == 0 and st.done == N_DAYS


def test_fields_are_yuan_and_hand_computed(market, filled):
    dm = DataManager(filled["root"], filled["root"].parent / "cache")
    assert dm.has_dataset("moneyflow")
    assert {"net_mf_amount", "mf_lg_net"} <= set(dm.available_fields())
    days = market.trade_days
    p = dm.panels(["net_mf_amount", "mf_lg_net", "close"], _iso(days[0]),
                  _iso(days[N_DAYS - 1]))
    net = _expected(market, lambda m: m["net_mf_amount"])
    lg = _expected(market, lambda m: m["buy_lg_amount"] + m["buy_elg_amount"]
                   - m["sell_lg_amount"] - m["sell_elg_amount"])
    for name, want in (("net_mf_amount", net), ("mf_lg_net", lg)):
        got = p[name]
        w = want.reindex(index=got.index, columns=got.columns)
        assert np.isfinite(w.to_numpy()).sum() > 50
        np.testing.assert_allclose(got.to_numpy(), w.to_numpy(), rtol=1e-12, equal_nan=True)
    # NaN exactly where there is no bar (the suspended / not yet listed stocks)
    assert (np.isnan(p["net_mf_amount"].to_numpy()) == np.isnan(p["close"].to_numpy())).all()
    # one cell by hand: 10k yuan -> yuan
    row = market.tables["moneyflow"].iloc[-1]
    d, c = pd.Timestamp(row["trade_date"]), row["ts_code"]
    if d <= pd.Timestamp(days[N_DAYS - 1]):
        assert p["net_mf_amount"].at[d, c] == pytest.approx(row["net_mf_amount"] * 1e4)


def test_not_fetched_unless_configured(market, tmp_path):
    root = tmp_path / "wh"
    run, stop = _fill(market, root, extra=())
    assert run.ok and "moneyflow" not in run.parts
    assert not any(api == "moneyflow" for api, _ in stop.requests)
    assert not (root / "moneyflow").exists()
    dm = DataManager(root, tmp_path / "cache")
    assert not dm.has_dataset("moneyflow") and "net_mf_amount" not in dm.available_fields()
    with pytest.raises(FieldError, match="moneyflow"):
        dm.panels(["net_mf_amount"])


def test_an_empty_moneyflow_day_is_no_failure(market, tmp_path):
    root = tmp_path / "wh"
    # the 3rd moneyflow request (an open day with bars) answers fields and zero rows
    run, stop = _fill(market, root, faults=Faults({"moneyflow": ["ok", "ok", "empty_items"]}))
    assert run.ok and run.failed == [], run.failed
    assert run.parts["moneyflow"] == {"planned": N_DAYS, "done": N_DAYS, "failed": 0}
    empty = market.trade_days[2]
    st = {s.dataset: s for s in status(root)}["moneyflow"]
    assert st.gaps == [_iso(empty)] and st.failed == 0
    dm = DataManager(root, tmp_path / "cache")
    p = dm.panels(["net_mf_amount", "close"], _iso(market.trade_days[0]),
                  _iso(market.trade_days[N_DAYS - 1]))
    day = pd.Timestamp(empty)
    assert p["close"].loc[day].notna().any()                 # the market traded that day
    assert p["net_mf_amount"].loc[day].isna().all()          # no moneyflow rows: NaN
    other = p["net_mf_amount"].drop(index=day)
    assert other.notna().to_numpy().sum() == p["close"].drop(index=day).notna().to_numpy().sum()


def test_an_empty_daily_basic_day_still_fails(market, tmp_path):
    """moneyflow is optional, daily_basic is not: the required-endpoint rule is unchanged."""
    root = tmp_path / "wh"
    run, _ = _fill(market, root, faults=Faults({"daily_basic": ["ok", "empty_items"]}))
    assert not run.ok and any("daily_basic" in f and "no rows" in f for f in run.failed)


def test_dry_run_plans_moneyflow_only_when_configured(tmp_path):
    days = ("2024-01-02", "2024-01-12")
    on = ingest.plan_bootstrap(_cfg(tmp_path / "a", "http://127.0.0.1:9"), start=days[0],
                               end=days[1], now=lambda: NOW)
    off = ingest.plan_bootstrap(_cfg(tmp_path / "b", "http://127.0.0.1:9", extra=()),
                                start=days[0], end=days[1], now=lambda: NOW)
    assert on.calls["moneyflow"] == on.calls["daily_basic"] == 9      # weekdays 2..12 Jan
    assert "moneyflow" not in off.calls
    assert {k: v for k, v in on.calls.items() if k != "moneyflow"} == off.calls


def test_extra_datasets_config_is_validated():
    cfg = section_from_dict("tushare", TushareConfig, {"extra_datasets": ["moneyflow"]})
    assert cfg.extra_datasets == ("moneyflow",)
    assert TushareConfig().extra_datasets == ()                  # opt-in: off by default
    with pytest.raises(ConfigError, match="extra_datasets.*'daily'"):
        section_from_dict("tushare", TushareConfig, {"extra_datasets": ["daily"]})


def test_check_knows_the_moneyflow_key(filled, tmp_path):
    import shutil

    from data.check import check_warehouse
    rep = check_warehouse(filled["root"])
    assert "duplicates:moneyflow" not in rep.skipped
    assert not [f for f in rep.findings if f.check == "duplicates"]
    root = tmp_path / "wh"
    shutil.copytree(filled["root"], root)
    f = root / "moneyflow" / "moneyflow_2024.parquet"
    df = pd.read_parquet(f)
    pd.concat([df, df.iloc[[5]]]).to_parquet(f, index=False)
    dup = [x for x in check_warehouse(root).findings if x.check == "duplicates"]
    assert len(dup) == 1 and dup[0].detail.startswith("moneyflow: duplicate key")
    assert dup[0].ts_code == df["ts_code"].iloc[5]
