"""DataManager on a warehouse with the issue-10 Tushare datasets (tests/data/tushare_layout.py),
and the snapshot fallbacks + notices on the plain synthetic warehouse."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from tushare_layout import DELISTED, STK_DAY, build_tushare_layout

from data.errors import FieldError
from data.manager import DataManager

D = pd.Timestamp
FUND = ["roe", "eps", "revenue", "total_assets", "n_cashflow_act"]


@pytest.fixture(scope="module")
def tw(warehouse, tmp_path_factory):
    plain = DataManager(warehouse.root)
    up, down = plain.limit_prices("2020-08-10", "2020-09-04", ["000002.SZ"])
    root = tmp_path_factory.mktemp("tushare") / "wh"
    return build_tushare_layout(warehouse, root, (up["000002.SZ"], down["000002.SZ"]))


@pytest.fixture
def tdm(tw):
    return DataManager(tw.root)


# ------------------------------------------------------------------------------ fallbacks
def test_snapshot_fallbacks_and_notices(dm, warehouse):
    codes = ["600000.SH", "600001.SH", "000002.SZ"]
    st = dm.st_mask("2020-08-10", "2020-09-04", codes)
    assert st[:, 1].all() and not st[:, [0, 2]].any()        # is_st_latest on every date
    dm.limit_prices("2020-08-10", "2020-08-20", codes)
    mv = dm.panel("total_mv", "2020-08-10", "2020-08-20", codes=codes)
    est = warehouse.est.set_index(["ts_code", "trade_date"])["total_share"]
    close = warehouse.value("600000.SH", "2020-08-12", "close")
    assert mv.loc[D("2020-08-12"), "600000.SH"] == pytest.approx(
        est[("600000.SH", D("2020-08-12"))] * 1e4 * close)
    ind = dm.industry(1, dm.calendar("2020-08-10", "2020-08-20"), codes)
    assert ind.shape == (9, 3) and (ind == ind[0]).all()       # static
    text = "\n".join(dm.notices)
    for ds in ("namechange", "stk_limit", "daily_basic", "industry_sw"):
        assert ds in text and text.count(ds + ".parquet") <= 1
    n = len(dm.notices)
    dm.st_mask("2020-08-10", "2020-09-04", codes)
    dm.panel("total_mv", "2020-08-10", "2020-08-20", codes=codes)
    assert len(dm.notices) == n                                # each notice once
    with pytest.raises(FieldError) as e:
        dm.panel("roe")
    assert "fina_indicator" in str(e.value) and "mine data bootstrap" in str(e.value)
    assert "roe" not in dm.available_fields() and "close" in dm.available_fields()


# ------------------------------------------------------------------------------ readers
def test_dated_st_panel_and_limits(tdm, tw):
    codes = ["600000.SH", "600001.SH"]
    st = pd.DataFrame(tdm.st_mask(None, None, codes), index=tdm.calendar(), columns=codes)
    spell = (st.index >= D("2020-08-17")) & (st.index <= D("2020-08-21"))
    assert (st["600000.SH"] == spell).all()
    assert (st["600001.SH"] == (st.index >= D("2023-03-01"))).all()
    up, _ = tdm.limit_prices("2020-08-10", "2020-09-04", codes)
    pre = tw.daily.set_index(["ts_code", "trade_date"])["pre_close"]
    for day, pct in (("2020-08-18", 1.05), ("2020-08-24", 1.10)):
        assert up.loc[D(day), "600000.SH"] == pytest.approx(
            round(pre[("600000.SH", D(day))] * pct + 1e-9, 2), abs=0.011)
    # 600001.SH is ST "today" but not in 2020: +10% limit on its designed +5% close day
    p = pre[("600001.SH", D("2020-08-13"))]
    assert up.loc[D("2020-08-13"), "600001.SH"] == pytest.approx(round(p * 1.10, 2), abs=0.011)
    assert not any("namechange" in n for n in tdm.notices)


def test_exchange_limit_prices_are_used(tdm, warehouse):
    plain = DataManager(warehouse.root)
    u0, d0 = plain.limit_prices("2020-08-10", "2023-03-31", ["000002.SZ"])
    u1, d1 = tdm.limit_prices("2020-08-10", "2023-03-31", ["000002.SZ"])
    diff = (u1 - u0).abs().stack()
    diff = diff[diff > 1e-9]
    assert list(diff.index.get_level_values(0)) == [STK_DAY]
    assert diff.iloc[0] == pytest.approx(0.05)
    pd.testing.assert_frame_equal(d0, d1)                     # 2023: no file -> computed
    assert not any("stk_limit" in n for n in tdm.notices)


def test_real_market_value_and_valuation(tdm, tw):
    db = pd.read_parquet(tw.root / "daily_basic").set_index(["ts_code", "trade_date"])
    p = tdm.panels(["total_mv", "total_share", "turnover", "circ_mv", "turnover_rate", "pe_ttm",
                    "dv_ttm"], "2020-08-10", "2020-09-04", codes=["600000.SH", "000002.SZ"])
    k = ("600000.SH", D("2020-08-12"))
    assert p["total_mv"].loc[k[1], k[0]] == pytest.approx(db.loc[k, "total_mv"] * 1e4)
    assert p["total_share"].loc[k[1], k[0]] == pytest.approx(db.loc[k, "total_share"] * 1e4)
    assert p["circ_mv"].loc[k[1], k[0]] == pytest.approx(db.loc[k, "circ_mv"] * 1e4)
    assert p["turnover_rate"].loc[k[1], k[0]] == pytest.approx(db.loc[k, "turnover_rate"] / 100)
    assert p["dv_ttm"].loc[k[1], k[0]] == pytest.approx(0.025)
    assert p["pe_ttm"].loc[k[1], k[0]] == 15.0
    vol = tw.value("600000.SH", "2020-08-12", "vol") * 100
    assert p["turnover"].loc[k[1], k[0]] == pytest.approx(vol / (db.loc[k, "total_share"] * 1e4))
    # suspended 000002.SZ: NaN on days without a bar
    assert p["total_mv"].loc[D("2020-08-18"), "000002.SZ"] != p["total_mv"].loc[
        D("2020-08-18"), "000002.SZ"]
    assert p["pe_ttm"].loc["2020-08-17":"2020-08-21", "000002.SZ"].isna().all()
    assert not any("daily_basic" in n for n in tdm.notices)


def test_dated_industry(tdm):
    dates = tdm.calendar("2020-08-20", "2020-08-26")
    codes = ["600000.SH", "000002.SZ", "301001.SZ", "300001.SZ"]
    g = pd.DataFrame(tdm.industry(1, dates, codes), index=dates, columns=codes)
    labels = sorted(pd.read_parquet(tdm.root / "industry_sw.parquet")["l1_code"].unique())
    G = len(labels)
    assert (g["600000.SH"] == labels.index("801780.SI")).all()
    assert (g["000002.SZ"] == np.where(dates < D("2020-08-24"), labels.index("801180.SI"),
                                       labels.index("801720.SI"))).all()
    assert (g["301001.SZ"] == G).all()
    assert (g["300001.SZ"] == labels.index("801010.SI")).all()
    l2 = tdm.industry(2, dates, codes)
    assert l2.shape == g.shape and l2[0, 1] != l2[-1, 1]


def test_fundamentals_point_in_time(tdm):
    p = tdm.panels(["roe", "eps", "revenue"], "2020-08-10", "2020-09-04",
                   codes=["600000.SH", "300001.SZ", "688001.SH"])
    roe = p["roe"]
    s = roe["600000.SH"]
    assert (s[:"2020-08-19"] == 0.02).all()                  # Q1 report, visible from the start
    assert (s["2020-08-20":"2020-08-26"] == 0.05).all()      # next day after 08-19
    assert np.allclose(s["2020-08-27":], 0.045)              # restatement replaces
    q = roe["300001.SZ"]                                     # Saturday 08-15 -> Monday 08-17
    assert q[:"2020-08-14"].isna().all() and (q["2020-08-17":] == 0.015).all()
    f = roe["688001.SH"]                                     # f_ann_date 08-25 -> 08-26
    assert f[:"2020-08-25"].isna().all() and (f["2020-08-26":] == 0.03).all()
    assert p["eps"].loc["2020-08-20", "600000.SH"] == pytest.approx(0.5)
    assert p["revenue"].loc["2020-08-27", "600000.SH"] == pytest.approx(4.5e8)
    later = tdm.panel("roe", "2023-03-06", "2023-03-31", codes=["600000.SH"])["600000.SH"]
    assert np.allclose(later[:"2023-03-10"], 0.045) and (later["2023-03-13":] == 0.11).all()


@pytest.mark.parametrize("cut", ["2020-08-19", "2020-08-25", "2020-08-28", "2023-03-10"])
def test_fundamentals_causality(tw, tmp_path, cut):
    dst = tmp_path / "wh"
    shutil.copytree(tw.root, dst)
    for name in ("fina_indicator", "income", "balancesheet", "cashflow"):
        df = pd.read_parquet(dst / f"{name}.parquet")
        ann = df["f_ann_date"].fillna(df["ann_date"])
        df.loc[ann <= D(cut)].to_parquet(dst / f"{name}.parquet", index=False)
    full = DataManager(tw.root).panels(FUND, "2020-08-10", "2025-08-15")
    trunc = DataManager(dst).panels(FUND, "2020-08-10", "2025-08-15")
    for f in FUND:
        pd.testing.assert_frame_equal(full[f].loc[:cut], trunc[f].loc[:cut])
        assert full[f].notna().any().any()


def test_survivorship_free_all_universe(tdm):
    codes = tdm.universe_codes("all", "2020-08-10", "2020-09-04")
    assert DELISTED in codes
    assert DELISTED not in tdm.universe_codes("all", "2023-03-06", "2023-03-31")
    dates = tdm.calendar("2020-08-10", "2020-09-04")
    m = pd.DataFrame(tdm.universe_mask("all", dates, codes), index=dates, columns=codes)
    assert m.loc[:"2020-08-28", DELISTED].all() and not m.loc["2020-08-31":, DELISTED].any()
    # returns work without first_trade_date (Tushare stock_basic), across the long suspension
    r = tdm.panel("ret", "2025-07-31", "2025-08-15", codes=["600001.SH"])
    assert np.isnan(r.iloc[0, 0]) and np.isfinite(r.loc["2025-08-01", "600001.SH"])
