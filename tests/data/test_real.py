"""Checks against the real warehouse in /work/shared/data/ashare (read-only; slow-marked)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.manager import DataManager
from data.universe import membership_mask

ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "ashare"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (ROOT / "trade_cal.parquet").is_file(),
                                 reason=f"real warehouse not found at {ROOT}")]


@pytest.fixture(scope="module")
def dm():
    return DataManager(ROOT)


def test_famous_closes(dm):
    p = dm.panels(["raw_close", "close", "adj_factor"], "2020-12-31", "2020-12-31",
                  codes=["600519.SH", "000001.SZ"])
    assert p["raw_close"].loc["2020-12-31", "600519.SH"] == 1998.00
    assert p["raw_close"].loc["2020-12-31", "000001.SZ"] == 19.34
    np.testing.assert_allclose(p["close"], p["raw_close"] * p["adj_factor"], rtol=1e-14)
    idx = dm.index_daily("000300.SH", "2020-12-31", "2020-12-31")
    assert idx["close"].iloc[0] == pytest.approx(5211.29, abs=0.01)


def test_calendar_range(dm):
    cal = dm.calendar()
    assert len(cal) == 3966 and cal[0] == pd.Timestamp("2010-01-04")
    assert cal[-1] == pd.Timestamp("2026-05-08")


def test_csi300_membership_2020_06_30(dm):
    day = pd.DatetimeIndex(["2020-06-30"])
    members = pd.read_parquet(ROOT / "index_member.parquet")
    allcodes = pd.Index(members["con_code"].unique())
    assert membership_mask(members, "csi300", day, allcodes).sum() == 300
    with_data = dm.universe_codes("csi300", "2020-06-30", "2020-06-30")
    assert 285 <= len(with_data) <= 300                       # README: 292 with prices
    mask = dm.universe_mask("csi300", day, with_data)
    assert mask.sum() == len(with_data)
    bars = dm.panel("raw_close", "2020-06-30", "2020-06-30", codes=with_data).notna()
    assert bars.to_numpy().sum() >= 280                       # a few members are suspended


def test_vanke_limit_ups_and_suspension(dm):
    up, down = dm.limit_prices("2015-12-16", "2015-12-18", ["000002.SZ"])
    close = dm.panel("raw_close", "2015-12-16", "2015-12-18", codes=["000002.SZ"])
    for d in ("2015-12-17", "2015-12-18"):
        assert close.loc[d, "000002.SZ"] == up.loc[d, "000002.SZ"]
    assert close.loc["2015-12-16", "000002.SZ"] < up.loc["2015-12-16", "000002.SZ"]
    # first bar after the half-year suspension: ret is measured from 2015-12-18,
    # exact even when the request starts on the resumption day
    r = dm.panel("ret", "2016-07-04", "2016-07-05", codes=["000002.SZ"])
    p = dm.panels(["close"], "2015-12-18", "2016-07-04", codes=["000002.SZ"])["close"].dropna()
    assert p.index[0] == pd.Timestamp("2015-12-18") and p.index[1] == pd.Timestamp("2016-07-04")
    assert r.loc["2016-07-04", "000002.SZ"] == pytest.approx(p.iloc[1, 0] / p.iloc[0, 0] - 1)
    dn = dm.limit_prices("2016-07-04", "2016-07-05", ["000002.SZ"])[1]
    close = dm.panel("raw_close", "2016-07-04", "2016-07-05", codes=["000002.SZ"])
    assert (close["000002.SZ"] == dn["000002.SZ"]).all()


def test_amount_proxy_switch(dm):
    codes = ["600519.SH", "000001.SZ"]
    flag = dm.is_proxy_amount("2023-03-16", "2023-03-21", codes)
    assert not flag.loc["2023-03-16"].any() and flag.loc["2023-03-20":].all().all()
    p = dm.panels(["vwap", "low", "high"], "2023-03-10", "2023-03-24", codes=codes)
    assert ((p["vwap"] >= p["low"] - 1e-9) & (p["vwap"] <= p["high"] + 1e-9)).all().all()


def test_tradable_share_is_plausible(dm):
    codes = dm.universe_codes("csi300", "2021-01-04", "2021-03-31")
    m = dm.tradable_mask("2021-01-04", "2021-03-31", codes)
    assert 0.85 < m.mean() <= 1.0
