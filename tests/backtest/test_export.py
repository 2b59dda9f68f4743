"""Order plans (backtest/orders.py), export files (backtest/export.py, backtest/run_dirs.py) and
`mine export`: exact tiny cases, files, real data."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest.errors import BacktestError
from backtest.export import (
    atomic_write_csv,
    export_day,
    read_positions,
    read_quotes,
    reference_quotes,
    targets_for,
)
from backtest.orders import PLAN_COLUMNS, order_plan, plan_summary
from backtest.rules import CostModel
from backtest.run_dirs import find_latest_targets, write_latest
from backtest.targets import read_targets
from data.errors import DataError

D = "2024-06-28"                      # stamp tax 0.05% on sells
NOCOST = CostModel.zero()


def tg(**w) -> pd.Series:
    """Targets as a weight Series; keyword names like s600000_SH -> 600000.SH."""
    return pd.Series({k[1:].replace("_", "."): v for k, v in w.items()}, dtype=float)


def pos(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["ts_code", "quantity", "sellable"][:len(rows[0])])


def fees(side, value, date=D, cm=CostModel()):
    return sum(cm.fees(side, value, date).values())


# --------------------------------------------------------------------------- exact cases
def test_lot_rounding_main_board_and_exact_fees():
    plan = order_plan(tg(s600000_SH=0.5), None, 100_000.0, {"600000.SH": 10.37}, None, D)
    assert list(plan.columns) == PLAN_COLUMNS
    assert len(plan) == 1
    r = plan.iloc[0]
    # 50,000 / 10.37 = 4821.6 shares -> 48 lots
    assert (r.side, r.quantity, r.status, r.reason) == ("buy", 4800, "ok", "")
    assert r.est_value == pytest.approx(4800 * 10.37)
    # commission max(0.0003 x 49,776, 5) = 14.9328, transfer 0.4978, no stamp tax on buys
    assert r.est_fees == pytest.approx(0.0003 * 49_776 + 0.00001 * 49_776)


def test_star_board_200_minimum_then_single_shares():
    px = {"688001.SH": 100.0}
    small = order_plan(tg(s688001_SH=0.15), None, 100_000.0, px, None, D)   # wants 150 shares
    assert small[["quantity", "status", "reason"]].values.tolist() == [[0, "flagged",
                                                                        "below_min_lot"]]
    big = order_plan(tg(s688001_SH=0.2505), None, 100_000.0, px, None, D, NOCOST)  # 250.5
    assert big[["side", "quantity", "status"]].values.tolist() == [["buy", 250, "ok"]]


def test_odd_lot_sold_whole_and_partial_sells_in_lots():
    px = {"600000.SH": 10.0, "000001.SZ": 10.0}
    # 150 shares not in the targets: the odd lot goes in one sell of 150
    plan = order_plan(tg(), pos([["600000.SH", 150]]), 0.0, px, None, D)
    assert plan[["ts_code", "side", "quantity", "status"]].values.tolist() == [
        ["600000.SH", "sell", 150, "ok"]]
    # 250 held, target 100 shares (equity 2,500 x 0.4): sell 100 (a lot), keep 150
    plan = order_plan(tg(s000001_SZ=0.4), pos([["000001.SZ", 250]]), 0.0, px, None, D, NOCOST)
    assert plan[["side", "quantity"]].values.tolist() == [["sell", 100]]


def test_no_trade_when_already_at_target():
    px = {"600000.SH": 10.0, "000001.SZ": 20.0}
    # equity = 1,000 cash + 10,000 + 10,000 = 21,000; targets = exactly the holdings
    plan = order_plan(tg(s600000_SH=10_000 / 21_000, s000001_SZ=10_000 / 21_000),
                      pos([["600000.SH", 1000], ["000001.SZ", 500]]), 1_000.0, px, None, D)
    assert plan.empty and list(plan.columns) == PLAN_COLUMNS
    # drift below one lot also gives no order
    plan = order_plan(tg(s600000_SH=0.5), pos([["600000.SH", 1000]]), 10_500.0,
                      {"600000.SH": 10.0}, None, D)     # wants 1025 shares: +25 < 100
    assert plan.empty


def test_limit_up_buy_and_limit_down_sell_are_flagged_and_not_budgeted():
    px = {"600000.SH": 11.0, "000001.SZ": 9.0, "600036.SH": 30.0}
    up = pd.Series({"600000.SH": 11.0, "000001.SZ": 11.0, "600036.SH": 33.0})
    down = pd.Series({"600000.SH": 9.0, "000001.SZ": 9.0, "600036.SH": 27.0})
    plan = order_plan(tg(s600000_SH=0.5, s600036_SH=0.4), pos([["000001.SZ", 1000]]),
                      50_000.0, px, (up, down), D)
    by = plan.set_index("ts_code")
    assert by.loc["600000.SH", ["side", "status", "reason"]].tolist() == ["buy", "flagged",
                                                                          "limit_up_buy"]
    assert by.loc["000001.SZ", ["side", "status", "reason"]].tolist() == ["sell", "flagged",
                                                                          "limit_down_sell"]
    # equity 59,000; 600036 wants 0.4 x 59,000 / 30 = 786.7 -> 700 shares, affordable from cash
    assert by.loc["600036.SH", ["quantity", "status"]].tolist() == [700, "ok"]
    s = plan_summary(plan, 50_000.0)
    assert s["n_orders"] == 1 and s["n_flagged"] == 2 and s["gross_sell"] == 0.0
    assert s["flagged"] == {"limit_up_buy": 1, "limit_down_sell": 1}


def test_suspended_names_flagged_but_valued():
    px = {"600000.SH": 10.0, "000001.SZ": 20.0}
    bar = {"600000.SH": False, "000001.SZ": False}
    plan = order_plan(tg(s000001_SZ=0.5), pos([["600000.SH", 1000]]), 10_000.0, px, None, D,
                      has_bar=bar)
    assert plan[["ts_code", "side", "status", "reason"]].values.tolist() == [
        ["600000.SH", "sell", "flagged", "suspended"],
        ["000001.SZ", "buy", "flagged", "suspended"]]
    # the suspended holding counts in equity: 20,000 x 0.5 / 20 = 500 shares wanted
    assert plan.loc[1, "quantity"] == 500
    assert plan.loc[1, "target_value"] == pytest.approx(10_000.0)


def test_t1_unsellable_shares_are_flagged():
    plan = order_plan(tg(), pos([["600000.SH", 1000, 0]]), 0.0, {"600000.SH": 10.0}, None, D)
    assert plan[["quantity", "status", "reason"]].values.tolist() == [[1000, "flagged",
                                                                       "not_sellable_t1"]]


def test_sells_fund_buys_and_cash_stays_nonnegative_after_fees():
    px = {"600000.SH": 10.0, "000001.SZ": 10.0}
    plan = order_plan(tg(s000001_SZ=1.0), pos([["600000.SH", 1000]]), 0.0, px, None, D)
    assert plan["side"].tolist() == ["sell", "buy"]
    sell_fee = fees("sell", 10_000.0)                   # 5 + 5 (stamp) + 0.1
    assert plan.loc[0, "est_fees"] == pytest.approx(sell_fee)
    # wants 1000 shares = 10,000 + fees > 10,000 - 10.1: reduced to 900
    assert plan.loc[1, ["quantity", "reason"]].tolist() == [900, "reduced_for_cash"]
    s = plan_summary(plan, 0.0)
    assert s["cash_after"] == pytest.approx(10_000 - sell_fee - 9_000 - fees("buy", 9_000.0))
    assert s["cash_after"] >= 0


def test_insufficient_cash_flags_a_buy_that_cannot_afford_one_lot():
    plan = order_plan(tg(s600519_SH=1.0), None, 100_000.0, {"600519.SH": 1500.0}, None, D)
    assert plan[["quantity", "status", "reason"]].values.tolist() == [[0, "flagged",
                                                                       "below_min_lot"]]
    plan = order_plan(tg(s600519_SH=1.0), None, 150_000.0, {"600519.SH": 1500.0}, None, D)
    # 100 shares cost exactly 150,000 + fees > cash
    assert plan[["quantity", "status", "reason"]].values.tolist() == [[100, "flagged",
                                                                       "insufficient_cash"]]


def test_stamp_tax_date_switch_in_sell_fees():
    px = {"600000.SH": 10.0}
    before = order_plan(tg(), pos([["600000.SH", 10_000]]), 0.0, px, None, "2023-08-25")
    after = order_plan(tg(), pos([["600000.SH", 10_000]]), 0.0, px, None, "2023-08-28")
    assert before.loc[0, "est_fees"] - after.loc[0, "est_fees"] == pytest.approx(
        (0.001 - 0.0005) * 100_000)


def test_slippage_counts_in_fees():
    cm = CostModel(slippage_bps=10.0)
    plan = order_plan(tg(s600000_SH=0.5), None, 100_000.0, {"600000.SH": 10.0}, None, D, cm)
    q = plan.loc[0, "quantity"]
    fill = 10.0 * 1.001
    assert plan.loc[0, "est_fees"] == pytest.approx(
        sum(cm.fees("buy", q * fill, D).values()) + q * (fill - 10.0))


def test_min_order_value_skips_small_orders_but_not_whole_liquidations():
    px = {"600000.SH": 10.0, "000001.SZ": 10.0, "600036.SH": 10.0}
    # equity = 10,000 cash + 12,000 + 3,000 = 25,000
    cur = pos([["600000.SH", 1200], ["000001.SZ", 300]])
    w = tg(s600000_SH=0.4, s600036_SH=0.12)        # 1000 shares (sell 200), buy 300
    plan = order_plan(w, cur, 10_000.0, px, None, D, NOCOST)
    assert plan[["ts_code", "side", "quantity", "status"]].values.tolist() == [
        ["000001.SZ", "sell", 300, "ok"], ["600000.SH", "sell", 200, "ok"],
        ["600036.SH", "buy", 300, "ok"]]
    plan = order_plan(w, cur, 10_000.0, px, None, D, NOCOST, min_order_value=5_000.0)
    assert plan[["ts_code", "side", "quantity", "status", "reason"]].values.tolist() == [
        ["000001.SZ", "sell", 300, "ok", ""],                      # whole holding: still sold
        ["600000.SH", "sell", 200, "skipped", "below_min_order_value"],
        ["600036.SH", "buy", 300, "skipped", "below_min_order_value"]]
    s = plan_summary(plan, 10_000.0)
    assert (s["n_orders"], s["n_skipped"], s["n_flagged"]) == (1, 2, 0)
    assert s["cash_after"] == pytest.approx(13_000.0)


@pytest.mark.parametrize("seed", range(25))
def test_random_books_keep_cash_and_lot_invariants(seed):
    rng = np.random.default_rng(seed)
    pool = ["600000.SH", "600001.SH", "000001.SZ", "000002.SZ", "300001.SZ", "300002.SZ",
            "688001.SH", "688002.SH", "601398.SH", "002415.SZ"]
    px = pd.Series(np.round(rng.uniform(2, 300, len(pool)), 2), index=pool)
    up = (px * rng.choice([1.0, 1.1], len(pool))).round(2)
    down = (px * rng.choice([1.0, 0.9], len(pool))).round(2)
    bar = pd.Series(rng.random(len(pool)) > 0.1, index=pool)
    names = rng.choice(pool, rng.integers(1, 8), replace=False)
    w = pd.Series(rng.dirichlet(np.ones(len(names))) * rng.uniform(0.5, 1.0), index=names)
    held = rng.choice(pool, rng.integers(0, 6), replace=False)
    q = rng.integers(1, 30, len(held)) * 100 + rng.choice([0, 0, 37], len(held))
    cur = pd.DataFrame({"ts_code": held, "quantity": q,
                        "sellable": np.where(rng.random(len(held)) > 0.2, q, 0)})
    cash = float(rng.uniform(0, 300_000))
    cm = CostModel(slippage_bps=float(rng.uniform(0, 20)))
    plan = order_plan(w, cur, cash, px, (up, down), D, cm, has_bar=bar,
                      cash_reserve=float(rng.choice([0.0, 0.02])))
    s = plan_summary(plan, cash)
    assert s["cash_after"] >= -1e-6
    sides = plan["side"].tolist()
    assert sides == sorted(sides, key=lambda x: x != "sell")          # sells first
    ok = plan[plan["status"] == "ok"]
    held_q = cur.set_index("ts_code")
    for r in ok.itertuples():
        if r.side == "buy":
            if r.ts_code.startswith("68"):
                assert r.quantity >= 200
            else:
                assert r.quantity % 100 == 0 and r.quantity > 0
            assert r.ts_code in set(names)
        else:
            h = int(held_q.loc[r.ts_code, "quantity"])
            assert 0 < r.quantity <= int(held_q.loc[r.ts_code, "sellable"])
            assert r.quantity == h or r.quantity % 100 == 0 or r.ts_code.startswith("68")
    assert not plan["ts_code"].duplicated().any()


# --------------------------------------------------------------------------- bad input
def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(BacktestError, match="cash"):
        order_plan(tg(s600000_SH=0.5), None, -1.0, {"600000.SH": 10.0}, None, D)
    with pytest.raises(BacktestError, match="600000.SH"):
        order_plan(tg(), pos([["600000.SH", 100]]), 0.0, {}, None, D)
    with pytest.raises(BacktestError, match="sum"):
        order_plan(tg(s600000_SH=0.7, s000001_SZ=0.7), None, 1.0, {}, None, D)
    p = tmp_path / "p.csv"
    p.write_text("ts_code,quantity,sellable\n600000.SH,100,200\n")
    with pytest.raises(BacktestError, match="sellable 200 > quantity 100"):
        read_positions(p)
    p.write_text("ts_code,quantity\n600000.SH,10.5\n")
    with pytest.raises(BacktestError, match="whole number"):
        read_positions(p)
    # issue 12: 1e30 overflowed the int64 cast and the holding vanished ("0 sell")
    p.write_text("ts_code,quantity\n600000.SH,1e30\n")
    with pytest.raises(BacktestError, match=r"whole number of shares in \[0, 1e\+13\], got"):
        read_positions(p)
    t = tmp_path / "t.csv"
    t.write_text("trade_date,ts_code,target_weight\n2024-06-28,600000.SH,0.6\n"
                 "2024-06-28,000001.SZ,0.6\n")
    with pytest.raises(BacktestError, match="2024-06-28 sum to 1.2000 > 1"):
        read_targets(t)
    t.write_text("trade_date,ts_code\n2024-06-28,600000.SH\n")
    with pytest.raises(BacktestError, match="target_weight"):
        read_targets(t)
    with pytest.raises(BacktestError, match="not found"):
        read_targets(tmp_path / "nope.parquet")


def test_targets_io_and_nearest_dates(tmp_path):
    df = pd.DataFrame({"trade_date": ["20240625", "20240626", "20240628", "20240628"],
                       "ts_code": ["600000.SH", "600000.SH", "600000.SH", "000001.SZ"],
                       "target_weight": [1.0, 1.0, 0.5, 0.5], "strategy_name": "x"})
    df.to_parquet(tmp_path / "t.parquet")
    t = read_targets(tmp_path / "t.parquet")
    assert t["trade_date"].dtype == "datetime64[ns]"
    day = targets_for(t, "2024-06-28")
    assert day["ts_code"].tolist() == ["000001.SZ", "600000.SH"]
    with pytest.raises(BacktestError) as e:
        targets_for(t, "2024-06-27")
    assert "2024-06-26" in str(e.value) and "2024-06-28" in str(e.value)


def test_find_latest_targets_and_atomic_files(tmp_path):
    import os
    out = tmp_path / "bt"
    with pytest.raises(BacktestError, match="run `mine combine` first or pass --targets"):
        find_latest_targets(out)
    c = atomic_write_csv(pd.DataFrame({"x": [1]}), out / "combine_ic_csi300" / "targets.csv")
    assert find_latest_targets(out) == c                   # CSV when there is no Parquet
    a = out / "combine_ic_csi300" / "targets.parquet"
    b = out / "microcap" / "targets.parquet"
    for p in (a, b):
        p.parent.mkdir(exist_ok=True)
        pd.DataFrame({"x": [1]}).to_parquet(p)
    os.utime(b, (1, 1))
    assert find_latest_targets(out) == a                   # newest Parquet
    os.utime(a, (0, 0))
    assert find_latest_targets(out) == b
    atomic_write_csv(pd.DataFrame({"x": [2]}), out / "export" / "targets_20240628.csv")
    pd.DataFrame({"x": [1]}).to_parquet(out / "export" / "targets_x.parquet")
    assert find_latest_targets(out) == b                   # export/ is skipped
    write_latest(out, a.parent)                            # the `latest` pointer wins
    assert (out / "latest").read_text().strip() == "combine_ic_csi300"
    assert find_latest_targets(out) == a
    write_latest(out, out / "gone")                        # stale pointer: newest file again
    assert find_latest_targets(out) == b
    assert not list(out.rglob("*.tmp"))
    assert pd.read_csv(c)["x"].tolist() == [1]


# --------------------------------------------------------------------------- warehouse
@pytest.fixture(scope="module")
def synth_dm(tmp_path_factory):
    from ashare_synth import build_warehouse

    from data.manager import DataManager
    return DataManager(build_warehouse(tmp_path_factory.mktemp("wh")).root)


def test_reference_quotes_suspension_and_limits(synth_dm):
    dm = synth_dm
    q = reference_quotes(dm, "2020-08-19", ["000002.SZ", "600000.SH", "999999.SH"])
    close = dm.panel("raw_close", "2020-08-10", "2020-08-19", codes=["000002.SZ"])["000002.SZ"]
    # 000002.SZ suspended 08-17..21: last close of 08-14, has_bar False, no limits
    assert q.loc["000002.SZ", "ref_price"] == close.loc["2020-08-14"]
    assert not q.loc["000002.SZ", "has_bar"]
    assert q.loc["000002.SZ", "price_date"] == pd.Timestamp("2020-08-14")
    assert math.isnan(q.loc["000002.SZ", "limit_up"])
    up, down = dm.limit_prices("2020-08-19", "2020-08-19", codes=["600000.SH"])
    assert q.loc["600000.SH", "limit_up"] == up.iloc[0, 0]
    assert q.loc["600000.SH", "has_bar"]
    assert math.isnan(q.loc["999999.SH", "ref_price"])            # unknown code
    with pytest.raises(DataError, match="not a trading day"):
        reference_quotes(dm, "2020-08-15", ["600000.SH"])


def test_export_day_flags_one_price_limit_up_and_roundtrips_files(synth_dm, tmp_path):
    dm = synth_dm
    d = "2020-08-26"                                   # 000002.SZ one-price limit-up
    targets = pd.DataFrame({"trade_date": pd.Timestamp(d), "ts_code": ["000002.SZ",
                            "600000.SH"], "target_weight": [0.4, 0.4], "strategy_name": "t"})
    positions = read_positions(None)
    quotes = reference_quotes(dm, d, ["000002.SZ", "600000.SH"])
    res = export_day(targets, d, positions, 100_000.0, quotes, tmp_path)
    plan = res["plan"].set_index("ts_code")
    assert plan.loc["000002.SZ", "reason"] == "limit_up_buy"
    assert plan.loc["600000.SH", "status"] == "ok"
    files = res["files"]
    assert sorted(p.name for p in files.values()) == ["orders_20200826.csv",
                                                      "quotes_20200826.csv",
                                                      "targets_20200826.csv"]
    back = pd.read_csv(files["orders"], dtype={"ts_code": str}, keep_default_na=False)
    assert back["quantity"].tolist() == res["plan"]["quantity"].tolist()
    assert back["reason"].tolist() == res["plan"]["reason"].tolist()
    # the quotes file rebuilds exactly the same plan
    again = order_plan(read_targets(files["targets"]).pipe(targets_for, d), None, 100_000.0,
                       *(lambda q: (q["ref_price"], (q["limit_up"], q["limit_down"])))(
                           read_quotes(files["quotes"])), d,
                       has_bar=read_quotes(files["quotes"])["has_bar"])
    pd.testing.assert_frame_equal(again, res["plan"])


def test_causality_export_ignores_data_after_the_date(synth_dm, warehouse_trunc):
    """Quotes for a date are the same whether or not later days exist in the warehouse."""
    codes = ["000002.SZ", "600000.SH", "300001.SZ"]
    full = reference_quotes(synth_dm, "2020-08-26", codes)
    cut = reference_quotes(warehouse_trunc, "2020-08-26", codes)
    pd.testing.assert_frame_equal(full, cut)


@pytest.fixture(scope="module")
def warehouse_trunc(tmp_path_factory):
    """The synthetic warehouse with every bar after 2020-08-26 removed."""
    from ashare_synth import build_warehouse

    from data.manager import DataManager
    wh = build_warehouse(tmp_path_factory.mktemp("whcut"))
    for f in (wh.root / "daily").glob("daily_*.parquet"):
        df = pd.read_parquet(f)
        df[df["trade_date"] <= "2020-08-26"].to_parquet(f)
    return DataManager(wh.root)


# --------------------------------------------------------------------------- CLI, real data
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_mine_export_end_to_end_on_real_data(tmp_path):
    from typer.testing import CliRunner

    from data.manager import DataManager
    from mining.cli import app
    from mining.cli_app import load as load_config

    cfg = load_config(REPO / "mine.toml")
    dm = DataManager.from_config(cfg)
    d = "2024-06-28"
    codes = list(dm.universe_codes("csi300", d, d)[:12]) + ["688981.SH"]
    targets = pd.DataFrame({"trade_date": [d] * len(codes), "ts_code": codes,
                            "target_weight": 0.95 / len(codes), "strategy_name": "test"})
    # an older day too, so --date must pick the right one
    older = targets.assign(trade_date="2024-06-21")
    tfile = tmp_path / "targets.parquet"
    pd.concat([older, targets]).to_parquet(tfile)
    pfile = tmp_path / "pos.csv"
    pd.DataFrame({"ts_code": [codes[0], "600519.SH"], "quantity": [1000, 150]}).to_csv(
        pfile, index=False)
    toml = tmp_path / "mine.toml"
    toml.write_text(f'[data]\nroot = "{cfg.data.root}"\n[backtest]\nout_dir = "{tmp_path}/bt"\n')
    runner = CliRunner()
    out = tmp_path / "out"
    r = runner.invoke(app, ["--config", str(toml), "export", "--format", "qmt", "--date", d,
                            "--positions", str(pfile), "--cash", "1000000", "--targets",
                            str(tfile), "--out", str(out), "--show", "0"])
    assert r.exit_code == 0, r.output
    plan = pd.read_csv(out / "orders_20240628.csv", dtype={"ts_code": str},
                       keep_default_na=False)
    quotes = read_quotes(out / "quotes_20240628.csv")
    raw_close = dm.panel("raw_close", d, d, codes=codes + ["600519.SH"]).iloc[0]
    assert quotes["ref_price"].to_dict() == pytest.approx(raw_close.to_dict())
    sells = plan[plan["side"] == "sell"]
    assert sells[["ts_code", "quantity"]].values.tolist() == [["600519.SH", 150]]  # odd lot
    assert set(plan.loc[plan["side"] == "buy", "ts_code"]) <= set(codes)
    assert "orders (1 sell" in r.output and "flagged" in r.output
    # the printed summary matches the file
    s = plan_summary(plan, 1_000_000.0)
    assert f"gross buy {s['gross_buy']:,.2f}" in " ".join(r.output.split())
    assert s["cash_after"] >= 0
    # errors: a date absent from the targets; no targets under out_dir
    r = runner.invoke(app, ["--config", str(toml), "export", "--date", "2024-06-27",
                            "--cash", "1", "--targets", str(tfile)])
    assert r.exit_code == 2 and "2024-06-21" in r.output and "2024-06-28" in r.output
    r = runner.invoke(app, ["--config", str(toml), "export", "--cash", "1"])
    assert r.exit_code == 2 and "run `mine combine` first" in " ".join(r.output.split())
    r = runner.invoke(app, ["--config", str(toml), "export", "--format", "csv", "--cash", "1",
                            "--targets", str(tfile)])
    assert r.exit_code == 2 and "qmt" in r.output
