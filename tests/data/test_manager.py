"""DataManager on the synthetic warehouse (tests/data/conftest.py): units, derivations, limits,
masks, universes, errors and causality."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from ashare_synth import STOCKS, SUSPENDED, half_up

from data.config import Config, DataConfig
from data.errors import DataError, FieldError, UniverseError
from data.fields import field_names
from data.manager import LOOKBACK_DAYS, DataManager
from data.universe import UNIVERSES, membership_mask, universe_codes

D = pd.Timestamp
ALL = sorted(STOCKS)


def cell(panel: pd.DataFrame, date: str, code: str) -> float:
    return float(panel.loc[D(date), code])


# ------------------------------------------------------------------------------------ errors
def test_missing_root_names_path_and_fix(tmp_path):
    bad = tmp_path / "nowhere"
    with pytest.raises(DataError) as e:
        DataManager(bad)
    assert str(bad) in str(e.value) and "mine.toml" in str(e.value)
    assert "mine data bootstrap" in str(e.value)


@pytest.mark.parametrize("name", ["trade_cal.parquet", "stock_basic.parquet", "daily"])
def test_missing_required_file(warehouse_copy, name):
    target = warehouse_copy / name
    if target.is_dir():
        import shutil
        shutil.rmtree(target)
    else:
        target.unlink()
    with pytest.raises(DataError, match=name):
        DataManager(warehouse_copy)


def test_missing_optional_file_only_fails_when_needed(warehouse_copy):
    (warehouse_copy / "daily_basic_est.parquet").unlink()
    dm = DataManager(warehouse_copy)
    assert dm.panel("close").notna().any().any()
    with pytest.raises(DataError, match="daily_basic_est.parquet"):
        dm.panel("total_mv")


def test_from_config(warehouse):
    dm = DataManager.from_config(Config(data=DataConfig(root=warehouse.root)))
    assert dm.root == warehouse.root
    assert len(dm.calendar()) == 55


def test_unknown_field_lists_valid(dm):
    with pytest.raises(FieldError) as e:
        dm.panels(["close", "clsoe"])
    msg = str(e.value)
    assert "'clsoe'" in msg and all(f in msg for f in field_names())


def test_unknown_universe_lists_valid(dm):
    for call in (lambda: dm.universe_codes("csi42"),
                 lambda: dm.panels(["close"], universe="csi42"),
                 lambda: dm.universe_mask("csi42", dm.calendar(), ALL)):
        with pytest.raises(UniverseError) as e:
            call()
        assert "'csi42'" in str(e.value)
        assert all(u in str(e.value) for u in UNIVERSES)


@pytest.mark.parametrize("start,end,bad", [("2019-01-01", "2019-12-31", "2019-12-31"),
                                           ("2026-01-05", "2026-03-01", "2026-01-05"),
                                           ("2025-09-01", None, "2025-09-01")])
def test_dates_outside_data(dm, start, end, bad):
    with pytest.raises(DataError) as e:
        dm.panels(["close"], start, end)
    assert bad in str(e.value) and "2020-08-10 to 2025-08-15" in str(e.value)
    with pytest.raises(DataError, match=bad):
        dm.calendar(start, end)


def test_bad_date_strings(dm):
    with pytest.raises(DataError, match="not-a-date"):
        dm.calendar("not-a-date")
    with pytest.raises(DataError, match="after"):
        dm.calendar("2023-03-10", "2020-08-20")


def test_unknown_index(dm):
    with pytest.raises(DataError, match="'000999.SH'"):
        dm.index_daily("000999.SH")


# ------------------------------------------------------------------------------------ calendar
def test_calendar(dm):
    cal = dm.calendar()
    assert len(cal) == 55 and cal.is_monotonic_increasing and cal.name == "trade_date"
    assert D("2020-08-15") not in cal                      # is_open == 0 row
    sub = dm.calendar("2020-08-15", "2023-03-07")          # non-trading bounds snap inward
    assert sub[0] == D("2020-08-17") and sub[-1] == D("2023-03-07")
    assert len(dm.calendar(D("2025-08-06"), D("2025-08-06"))) == 1


def test_stock_basic_cached_and_safe(dm):
    sb = dm.stock_basic()
    assert sorted(sb.ts_code) == ALL
    sb["name"] = "x"
    assert (dm.stock_basic()["name"] != "x").all()


def test_index_daily_units(dm):
    idx = dm.index_daily("000300.SH", "2023-03-06", "2023-03-10")
    assert len(idx) == 5 and idx.index.name == "trade_date"
    np.testing.assert_allclose(idx["vol"], 1e8)            # 1e6 lots -> shares
    np.testing.assert_allclose(idx["amount"], 2e9)         # 2e6 thousand yuan -> yuan


# ------------------------------------------------------------------------------------ units
def test_raw_units_and_adjusted_prices(dm, warehouse):
    p = dm.panels(["vol", "amount", "raw_close", "close", "open", "adj_factor", "pre_close",
                   "raw_high"], codes=ALL)
    d = warehouse.daily
    for _, r in d.sample(40, random_state=0).iterrows():
        t, c = r.trade_date, r.ts_code
        assert p["vol"].loc[t, c] == r.vol * 100
        assert p["raw_close"].loc[t, c] == r.close
        assert p["raw_high"].loc[t, c] == r.high
        assert p["pre_close"].loc[t, c] == r.pre_close
        assert p["adj_factor"].loc[t, c] == r.adj_factor
        assert p["close"].loc[t, c] == pytest.approx(r.close * r.adj_factor, rel=1e-14)
        assert p["open"].loc[t, c] == pytest.approx(r.open * r.adj_factor, rel=1e-14)
        if not np.isnan(r.amount):
            assert p["amount"].loc[t, c] == pytest.approx(r.amount * 1000, rel=1e-14)
    # no bar -> NaN in every field (suspension and before listing)
    assert np.isnan(cell(p["close"], "2020-08-18", "000002.SZ"))
    assert np.isnan(cell(p["vol"], "2020-08-11", "688001.SH"))


def test_adjusted_close_continuous_over_ex_date(dm, warehouse):
    p = dm.panels(["close", "raw_close", "ret", "pre_close"], "2020-08-18", "2020-08-21",
                  codes=["600000.SH"])
    prev_raw = warehouse.value("600000.SH", "2020-08-19", "close")
    pre = cell(p["pre_close"], "2020-08-20", "600000.SH")
    assert pre == round(prev_raw - 0.50, 2)                 # ex-right reference price
    raw_ret = cell(p["raw_close"], "2020-08-20", "600000.SH") / prev_raw - 1
    adj_ret = cell(p["ret"], "2020-08-20", "600000.SH")
    # adjusted return = close / reference price - 1 (about +1%), raw return is distorted
    assert adj_ret == pytest.approx(cell(p["raw_close"], "2020-08-20", "600000.SH") / pre - 1)
    assert raw_ret < adj_ret - 0.03


def test_total_share_mv_turnover(dm, warehouse):
    p = dm.panels(["total_share", "total_mv", "turnover", "raw_close", "vol"], codes=ALL)
    est = warehouse.est.set_index(["trade_date", "ts_code"])["total_share"]
    t, c = D("2023-03-20"), "600000.SH"
    shares = est.loc[(t, c)] * 1e4
    assert p["total_share"].loc[t, c] == shares
    assert p["total_mv"].loc[t, c] == pytest.approx(shares * warehouse.value(c, t, "close"))
    assert p["turnover"].loc[t, c] == pytest.approx(warehouse.value(c, t, "vol") * 100 / shares)
    # a stock without estimates has NaN market value but still a price
    assert p["total_mv"]["001300.SZ"].isna().all() and p["raw_close"]["001300.SZ"].notna().any()
    # suspended days are NaN (panel contract)
    assert np.isnan(cell(p["total_share"], "2020-08-18", "000002.SZ"))


def test_vwap_and_proxy_after_amount_ends(dm, warehouse):
    p = dm.panels(["vwap", "amount", "adj_factor", "vol"], "2023-03-15", "2023-03-22", codes=ALL)
    c = "600000.SH"
    real = warehouse.value(c, "2023-03-17", "amount") * 1000 / (
        warehouse.value(c, "2023-03-17", "vol") * 100)
    assert cell(p["vwap"], "2023-03-17", c) == pytest.approx(
        real * warehouse.value(c, "2023-03-17", "adj_factor"))
    assert warehouse.value(c, "2023-03-17", "low") <= real <= warehouse.value(
        c, "2023-03-17", "high")
    ohlc4 = sum(warehouse.value(c, "2023-03-20", k) for k in ("open", "high", "low", "close")) / 4
    af = warehouse.value(c, "2023-03-20", "adj_factor")
    assert cell(p["vwap"], "2023-03-20", c) == pytest.approx(ohlc4 * af)
    assert cell(p["amount"], "2023-03-20", c) == pytest.approx(
        warehouse.value(c, "2023-03-20", "vol") * 100 * ohlc4)
    flag = dm.is_proxy_amount("2023-03-15", "2023-03-22", ALL)
    vflag = dm.is_proxy_vwap("2023-03-15", "2023-03-22", ALL)
    bars = p["vol"].notna()
    assert flag.dtypes.eq(bool).all()
    assert not flag.loc[:"2023-03-17"].any().any()
    assert (flag.loc["2023-03-20":] == bars.loc["2023-03-20":]).all().all()
    assert vflag.equals(flag)


# ------------------------------------------------------------------------------------ ret
def test_ret_across_short_suspension(dm, warehouse):
    c = "000002.SZ"
    before = warehouse.value(c, "2020-08-14", "close") * warehouse.value(c, "2020-08-14",
                                                                         "adj_factor")
    after = warehouse.value(c, "2020-08-24", "close") * warehouse.value(c, "2020-08-24",
                                                                        "adj_factor")
    for start in ("2020-08-10", "2020-08-24"):        # exact also when the range starts there
        r = dm.panel("ret", start, "2020-08-28", codes=[c])
        assert cell(r, "2020-08-24", c) == pytest.approx(after / before - 1, rel=1e-12)
    full = dm.panel("ret", codes=[c])
    assert full[c].notna().sum() == len(warehouse.bar_dates(c)) - 1   # NaN on the first bar


def test_ret_across_long_suspension_and_years(dm, warehouse):
    c = "600001.SH"
    sus = SUSPENDED[c]
    dates = warehouse.bar_dates(c)
    last, first = dates[dates < sus[0]][-1], dates[dates > sus[1]][0]
    assert len(dm.calendar(last, first)) - 1 > LOOKBACK_DAYS    # beyond the look-back window
    expect = (warehouse.value(c, first, "close") * warehouse.value(c, first, "adj_factor")) / (
        warehouse.value(c, last, "close") * warehouse.value(c, last, "adj_factor")) - 1
    for start in (first, "2025-07-28", "2023-03-06"):
        r = dm.panel("ret", start, "2025-08-15", codes=[c, "600000.SH"])
        assert cell(r, first, c) == pytest.approx(expect, rel=1e-12)
    # a listing's first bar has no return
    r = dm.panel("ret", "2025-07-30", "2025-08-15", codes=["001300.SZ"])
    assert np.isnan(cell(r, "2025-07-30", "001300.SZ")) and r.iloc[1:].notna().all().all()


def test_causality_truncating_the_future(dm):
    fields = dm.available_fields()
    for start, end1, end2 in [("2020-08-12", "2020-08-26", "2025-08-15"),
                              ("2023-03-08", "2023-03-20", "2025-08-01")]:
        short = dm.panels(fields, start, end1, codes=ALL)
        long_ = dm.panels(fields, start, end2, codes=ALL)
        for f in fields:
            head = long_[f].iloc[:len(short[f])]
            pd.testing.assert_frame_equal(short[f], head, check_freq=False)
        u1, d1 = dm.limit_prices(start, end1, ALL)
        u2, _ = dm.limit_prices(start, end2, ALL)
        pd.testing.assert_frame_equal(u1, u2.iloc[:len(u1)], check_freq=False)
        m1 = dm.tradable_mask(start, end1, ALL)
        assert (m1 == dm.tradable_mask(start, end2, ALL)[:len(m1)]).all()


def test_cache_avoids_rereading(dm, monkeypatch):
    dm.panels(["close", "vol"], "2020-08-10", "2023-03-31", codes=ALL)
    calls = []
    real = pq.read_table
    monkeypatch.setattr(pq, "read_table", lambda *a, **k: calls.append(a) or real(*a, **k))
    p = dm.panels(["raw_close", "open"], "2023-03-06", "2023-03-31", codes=ALL)
    assert len(calls) == 1            # only the new raw column ("open") of 2023
    dm.panels(["raw_close", "open", "vol"], "2020-08-10", "2023-03-31", codes=ALL)
    assert len(calls) == 2            # "open" of 2020
    assert p["raw_close"].notna().any().any()


def test_codes_order_and_unknown_codes(dm):
    p = dm.panel("raw_close", "2020-08-10", "2020-08-14", codes=["600000.SH", "999999.SZ",
                                                                 "000002.SZ"])
    assert list(p.columns) == ["600000.SH", "999999.SZ", "000002.SZ"]
    assert p["999999.SZ"].isna().all() and p["600000.SH"].notna().all()
    d = dm.panel("raw_close", "2020-08-10", "2020-08-14")       # default: codes with data
    assert list(d.columns) == sorted(d.columns) and "001201.SZ" not in d.columns


# ------------------------------------------------------------------------------------ limits
def test_limit_prices_by_board_and_date(dm, warehouse):
    up, down = dm.limit_prices(codes=ALL)

    def check(code, date, pct):
        pre = warehouse.value(code, date, "pre_close")
        assert cell(up, date, code) == half_up(pre, pct), (code, date)
        assert cell(down, date, code) == half_up(pre, -pct), (code, date)

    # half-up rounding: 5.35 x 1.1 = 5.885 -> 5.89 (binary floats give 5.88)
    assert warehouse.value("000002.SZ", "2020-08-26", "pre_close") == 5.35
    assert cell(up, "2020-08-26", "000002.SZ") == 5.89
    assert cell(down, "2020-08-26", "000002.SZ") == half_up(5.35, -10) == 4.82
    check("600000.SH", "2020-08-20", 10)                   # ex-date: from the reference price
    check("300001.SZ", "2020-08-21", 10)                   # ChiNext before the reform
    check("300001.SZ", "2020-08-24", 20)                   # ... and from 2020-08-24
    check("300001.SZ", "2023-03-10", 20)
    check("688001.SH", "2020-08-19", 20)                   # STAR, 6th trading day
    check("600001.SH", "2020-08-13", 5)                    # ST main board
    check("001201.SZ", "2023-03-09", 10)                   # main board day 2 (pre-registration)
    # designed closes sit exactly at the limit
    assert cell(up, "2020-08-21", "300001.SZ") == warehouse.value("300001.SZ", "2020-08-21",
                                                                  "close")
    assert cell(up, "2020-08-24", "300001.SZ") == warehouse.value("300001.SZ", "2020-08-24",
                                                                  "close")
    assert cell(up, "2020-08-13", "600001.SH") == warehouse.value("600001.SH", "2020-08-13",
                                                                  "close")
    # new listings: no limit on the first days
    assert up.loc["2020-08-12":"2020-08-18", "688001.SH"].isna().all()     # STAR: 5 days
    assert up.loc["2020-08-24":"2020-08-28", "301001.SZ"].isna().all()     # ChiNext post-reform
    assert up.loc["2020-08-31", "301001.SZ"] > 0
    assert np.isnan(cell(up, "2023-03-08", "001201.SZ"))                  # main: first day
    assert up.loc["2025-07-30":"2025-08-05", "001300.SZ"].isna().all()     # main post-2023-04-10
    assert up.loc["2025-08-06", "001300.SZ"] > 0
    assert np.isnan(cell(up, "2020-08-18", "000002.SZ"))                   # suspended


def test_tradable_sides_decided_at_the_open(dm):
    """tradable_mask(side=...): the raw open against the limits decides, not high / low."""
    dates = dm.calendar()

    def mask(side):
        return pd.DataFrame(dm.tradable_mask(codes=ALL, min_listed_days=0, side=side),
                            index=dates, columns=ALL)
    both, buy, sell, anyp = (mask(s) for s in ("both", "buy", "sell", "any"))
    pd.testing.assert_frame_equal(mask("both"), pd.DataFrame(
        dm.tradable_mask(codes=ALL, min_listed_days=0), index=dates, columns=ALL))   # default
    c = "000002.SZ"

    def at(day):
        return (both.loc[day, c], buy.loc[day, c], sell.loc[day, c], anyp.loc[day, c])
    assert at("2020-08-26") == (False, False, True, True)   # one-price limit-up
    assert at("2020-08-28") == (False, False, True, True)   # opens at limit-up, trades lower
    assert at("2023-03-10") == (False, True, False, True)   # one-price limit-down: buyable
    assert at("2020-08-18") == (False, False, False, False)  # suspended
    assert at("2020-08-27") == (True, True, True, True)      # an ordinary day
    # listing day without limit: open above +10% is inside (no limit known)
    assert both.loc["2023-03-08", "001201.SZ"] and buy.loc["2023-03-08", "001201.SZ"]
    bars = dm.panel("raw_close", codes=ALL).notna()
    pd.testing.assert_frame_equal(anyp, bars, check_names=False)
    assert (both == (buy & sell)).all().all()
    # oracle: strictly inside the limit prices at the open, in cents
    up, down = dm.limit_prices(codes=ALL)
    opn = dm.panel("raw_open", codes=ALL)
    o, u, d = ((x * 100).round() for x in (opn, up, down))
    inside = bars & ~(o >= u) & ~(o <= d)
    pd.testing.assert_frame_equal(both, inside, check_names=False)
    with pytest.raises(DataError, match="side must be one of"):
        dm.tradable_mask(codes=ALL, side="long")


def test_listing_age_rule(dm):
    dates = dm.calendar()
    for n in (0, 1, 3, 60):
        tr = pd.DataFrame(dm.tradable_mask(codes=ALL, min_listed_days=n), index=dates,
                          columns=ALL)
        col = tr["001201.SZ"]                               # listed 2023-03-08 (position 22)
        first = col[col].index[0] if col.any() else None
        expect = dates[22 + n] if 22 + n < len(dates) else None
        if n <= 10:
            assert first == expect, n
        else:
            # 60 trading days after listing lies beyond the synthetic calendar
            assert first is None
        assert tr.loc["2020-08-10", "600000.SH"]             # listed 1999: old


# ------------------------------------------------------------------------------------ universes
def test_membership_intervals(dm):
    dates = dm.calendar()
    codes = pd.Index(ALL + ["600005.SH"])
    m = pd.DataFrame(dm.universe_mask("csi300", dates, codes), index=dates, columns=codes)
    assert m["600000.SH"].all()                              # carried forward past 2025-08-06
    assert m.loc[:"2020-08-20", "000002.SZ"].all()           # out_date inclusive
    assert not m.loc["2020-08-21":"2020-09-04", "000002.SZ"].any()
    assert m.loc["2023-03-06":, "000002.SZ"].all()
    assert not m.loc[:"2020-08-24", "300001.SZ"].any()       # in_date inclusive
    assert m.loc["2020-08-25":"2023-03-15", "300001.SZ"].all()
    assert not m.loc["2023-03-16":, "300001.SZ"].any()
    assert m.loc["2025-07-29":"2025-07-31", "688001.SH"].all()
    assert not m.loc["2025-08-01":, "688001.SH"].any()       # not the list's last day: closed
    assert not m["001201.SZ"].any()                          # survivor-only source ignored
    assert not m["600001.SH"].any() and m["600005.SH"].all()
    csi500 = dm.universe_mask("csi500", dates, codes)
    assert csi500[:, codes.get_loc("600001.SH")].all() and csi500.sum() == len(dates)


def test_membership_mask_function_direct(warehouse):
    members = pd.read_parquet(warehouse.root / "index_member.parquet")
    dates = pd.DatetimeIndex(["2020-08-20", "2020-08-21", "2030-01-02"])
    m = membership_mask(members, "csi300", dates, pd.Index(["000002.SZ", "600000.SH", "X"]))
    assert m.tolist() == [[True, True, False], [False, True, False], [True, True, False]]
    with pytest.raises(UniverseError, match="000852.SH"):    # index without full-list rows
        membership_mask(members, "csi1000", dates, pd.Index(["600000.SH"]))
    bars = np.array([[True, False], [False, True]])
    assert (membership_mask(members, "all", dates[:2], pd.Index(["a", "b"]), bars) == bars).all()


def test_universe_codes(dm, warehouse):
    assert list(dm.universe_codes("csi300", "2020-08-10", "2020-09-04")) == [
        "000002.SZ", "300001.SZ", "600000.SH"]               # 600005.SH has no prices
    assert list(dm.universe_codes("csi300", "2023-03-16", "2023-03-31")) == [
        "000002.SZ", "600000.SH"]
    assert "688001.SH" in dm.universe_codes("csi300", "2025-07-28", "2025-08-15")
    allc = dm.universe_codes("all", "2025-07-28", "2025-08-15")
    assert list(allc) == sorted(warehouse.daily.loc[warehouse.daily.trade_date >= "2025-07-28",
                                                    "ts_code"].unique())
    sb = dm.stock_basic()
    members = pd.read_parquet(warehouse.root / "index_member.parquet")
    assert universe_codes(members, "csi500", "2020-08-10", "2020-08-20", sb).tolist() == [
        "600001.SH"]
    p = dm.panels(["close"], "2020-08-10", "2020-09-04", universe="csi300")
    assert list(p["close"].columns) == ["000002.SZ", "300001.SZ", "600000.SH"]


def test_all_universe_is_has_a_bar(dm):
    dates = dm.calendar("2020-08-12", "2020-08-21")
    m = dm.universe_mask("all", dates, ALL)
    bars = dm.panel("raw_close", "2020-08-12", "2020-08-21", codes=ALL).notna().to_numpy()
    assert (m == bars).all()
    assert not m[:, ALL.index("000002.SZ")][3:].any()       # suspended 08-17..21


def test_range_without_trading_days(dm):
    assert len(dm.calendar("2020-09-05", "2020-09-06")) == 0
    with pytest.raises(DataError, match="no trading days between 2020-09-05 and 2020-09-06"):
        dm.panels(["close"], "2020-09-05", "2020-09-06")


def test_range_overlapping_data_is_clipped(dm):
    cal = dm.calendar()
    clipped = dm.calendar("2019-12-31", "2026-01-05")
    assert clipped.equals(cal)
    p = dm.panels(["close"], "2019-12-31", "2020-08-20")["close"]
    assert p.index[0] == cal[0]
