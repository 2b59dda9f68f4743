"""The fund-flow half of the industry score (Tushare ``moneyflow``): known answers on hand-made
two-industry panels (value-weighted ratio of sums, universe mask, NaN alignment, fallback),
agreement with the strength-only score when the flow carries no information, causality
(truncation), and the wiring through ``load_book_inputs`` on a warehouse with ``moneyflow/``."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest.signals import industry_score

T, W = 25, 20
IND = np.tile([0, 0, 1, 1], (T, 1))                  # industry A: stocks 0, 1; B: 2, 3


def _flat(*cols) -> np.ndarray:
    return np.tile(np.asarray(cols, np.float64), (T, 1))


def test_industry_with_more_net_inflow_scores_higher():
    close = np.full((T, 4), 10.0)                    # equal strength: tied ranks 2.5 / 4
    amount = _flat(100.0, 100.0, 100.0, 100.0)
    net = _flat(5.0, 3.0, -2.0, 1.0)                 # A: +8 / 200 = 0.04, B: -1 / 200
    got = industry_score(close, IND, window=W, net_mf=net, amount=amount)
    # strength 0.625 everywhere; flow rank A 3.5/4, B 1.5/4
    np.testing.assert_allclose(got[-1], [75.0, 75.0, 50.0, 50.0])
    assert np.isnan(got[:W]).all()                   # warm-up of the 20-day return / sums


def test_flow_is_the_ratio_of_sums_not_the_mean_of_ratios():
    """A: a big name sold (-100 of 1000) and a tiny one bought (+0.5 of 1): mean of the
    per-name ratios +0.2, but -99.5 / 1001 of the industry's value; B: 0. B ranks first."""
    close = np.full((T, 4), 10.0)
    amount = _flat(1000.0, 1.0, 10.0, 10.0)
    net = _flat(-100.0, 0.5, 0.0, 0.0)
    got = industry_score(close, IND, window=W, net_mf=net, amount=amount)
    np.testing.assert_allclose(got[-1], [50.0, 50.0, 75.0, 75.0])


def test_mask_excludes_non_members_from_the_sums():
    close = np.full((T, 4), 10.0)
    amount = _flat(100.0, 100.0, 100.0, 100.0)
    net = _flat(1.0, 1.0, 0.0, 500.0)                # stock 3 (B) buys heavily, not a member
    mask = np.ones((T, 4), bool)
    mask[:, 3] = False
    got = industry_score(close, IND, mask, window=W, net_mf=net, amount=amount)
    # members 0, 1 (A: 2 / 200) and 2 (B: 0 / 100): strength ties 2 / 3, flow A 2.5/3, B 1/3
    np.testing.assert_allclose(got[-1], [100 * (2 / 3 + 2.5 / 3) / 2] * 2
                               + [100 * (2 / 3 + 1 / 3) / 2, np.nan])


def test_equal_flows_keep_the_strength_order_and_concordant_flows_change_nothing():
    rng = np.random.default_rng(3)
    n = 12
    close = 10 * np.cumprod(1 + rng.normal(0, 0.02, (T, n)), axis=0)
    ind = np.tile(np.arange(n) % 4, (T, 1))
    amount = rng.integers(50, 150, (T, n)).astype(float)
    base = industry_score(close, ind, window=W)
    # every name's net inflow is 1/8 of its value (exact in binary): every industry's ratio
    # is exactly 0.125, all tie, flow rank (n+1)/2n
    same = industry_score(close, ind, window=W, net_mf=amount / 8, amount=amount)
    np.testing.assert_allclose(same[W:], (base[W:] + 100 * (n + 1) / (2 * n)) / 2)
    np.testing.assert_array_equal(np.argsort(same[-1], kind="stable"),
                                  np.argsort(base[-1], kind="stable"))
    # each industry's inflow share = its last-day strength score / 100 (every day): on the
    # last day the flow ranks are the strength ranks, so the score is unchanged
    flow_ratio = np.tile(base[-1] / 100.0, (T, 1))
    conc = industry_score(close, ind, window=W, net_mf=flow_ratio * amount, amount=amount)
    np.testing.assert_allclose(conc[-1], base[-1])
    assert np.isfinite(base[-1]).all()


def test_a_cell_missing_in_one_input_is_missing_in_both():
    rng = np.random.default_rng(4)
    close = 10 * np.cumprod(1 + rng.normal(0, 0.02, (T, 4)), axis=0)
    amount = rng.uniform(50, 150, (T, 4))
    net = rng.normal(0, 10, (T, 4))
    net_gap = net.copy()
    net_gap[-3, 0] = np.nan                          # no moneyflow row that day
    amount_gap = amount.copy()
    amount_gap[-3, 0] = np.nan
    a = industry_score(close, IND, window=W, net_mf=net_gap, amount=amount)
    b = industry_score(close, IND, window=W, net_mf=net_gap, amount=amount_gap)
    np.testing.assert_array_equal(a, b)


def test_industry_without_flow_keeps_its_strength_rank():
    close = np.full((T, 4), 10.0)
    close[-1, :2] = 11.0                             # A up 10 %, B flat
    amount = _flat(100.0, 100.0, 100.0, 100.0)
    net = _flat(1.0, 1.0, np.nan, np.nan)            # B: no moneyflow rows at all
    got = industry_score(close, IND, window=W, net_mf=net, amount=amount)
    # strength A 3.5/4, B 1.5/4; flow ranked among A's two names only (tied, 1.5/2):
    # A (0.875 + 0.75) / 2, B its strength rank alone
    np.testing.assert_allclose(got[-1], [100 * (0.875 + 0.75) / 2] * 2 + [37.5, 37.5])


def test_one_flow_input_alone_is_refused():
    close = np.full((T, 4), 10.0)
    with pytest.raises(ValueError, match="both net_mf and amount"):
        industry_score(close, IND, window=W, net_mf=np.ones((T, 4)))


def test_flow_score_is_causal():
    """Truncating future rows leaves every earlier row of the score unchanged."""
    rng = np.random.default_rng(5)
    Tn, n = 70, 15
    close = 10 * np.cumprod(1 + rng.normal(0, 0.02, (Tn, n)), axis=0)
    ind = np.tile(np.arange(n) % 3, (Tn, 1))
    ind[40:, 0] = 2                                  # a name changes industry
    amount = rng.uniform(50, 150, (Tn, n))
    net = rng.normal(0, 10, (Tn, n))
    net[rng.random((Tn, n)) < 0.05] = np.nan         # days without a moneyflow row
    mask = rng.random((Tn, n)) < 0.9
    full = industry_score(close, ind, mask, window=10, net_mf=net, amount=amount)
    for cut in (30, 45, 69):
        part = industry_score(close[:cut], ind[:cut], mask[:cut], window=10,
                              net_mf=net[:cut], amount=amount[:cut])
        np.testing.assert_array_equal(full[:cut], part)
    assert np.isfinite(full[-1]).sum() > 5


def _add_moneyflow_and_industries(root: Path, seed: int = 9) -> None:
    """Write ``industry_sw.parquet`` (two Shenwan L1 industries) and ``moneyflow/`` (random
    net inflows of the daily bars, 10k yuan) into a panel warehouse."""
    from data.datasets import DATASETS, canonical_table, write_parquet
    daily = pd.concat([pd.read_parquet(p) for p in sorted((root / "daily").glob("*.parquet"))])
    codes = sorted(daily["ts_code"].unique())
    half = len(codes) // 2
    sw = pd.DataFrame({"ts_code": codes,
                       "l1_code": ["801780.SI"] * half + ["801150.SI"] * (len(codes) - half),
                       "l1_name": ["银行"] * half + ["医药生物"] * (len(codes) - half),
                       "l2_code": "x", "l2_name": "x", "in_date": "20150105", "out_date": None})
    write_parquet(root / "industry_sw.parquet", canonical_table(DATASETS["industry_sw"], sw))
    rng = np.random.default_rng(seed)
    mf = pd.DataFrame({"ts_code": daily["ts_code"].to_numpy(),
                       "trade_date": daily["trade_date"].to_numpy()})
    mf["net_mf_amount"] = daily["amount"].to_numpy() / 10 * rng.normal(0, 0.1, len(mf))
    ds = DATASETS["moneyflow"]
    for year, part in mf.groupby(pd.DatetimeIndex(mf["trade_date"]).year):
        write_parquet(root / "moneyflow" / f"moneyflow_{year}.parquet", canonical_table(ds, part))


def test_book_inputs_use_moneyflow_and_stay_causal(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
    from panel_warehouse import build_panel_warehouse, report_config

    from backtest.signals_run import WARMUP_DAYS, load_book_inputs
    from data.manager import DataManager
    from mining.cli_app import load
    root = build_panel_warehouse(tmp_path / "wh", n_stocks=8, n_days=140)
    cfg = load(report_config(tmp_path, root))
    dm0 = DataManager.from_config(cfg)
    cal = dm0.calendar()
    before = load_book_inputs(cfg, dm0, "all", cal[90], cal[110])
    assert any("fund flow skipped" in n for n in before.scores.notes)
    _add_moneyflow_and_industries(root)
    dm = DataManager(root, tmp_path / "cache2")
    assert dm.has_dataset("moneyflow")
    short = load_book_inputs(cfg, dm, "all", cal[90], cal[110])
    long = load_book_inputs(cfg, dm, "all", cal[90], cal[130])
    assert any("fund flow (Tushare moneyflow" in n for n in short.scores.notes)
    assert not any("fund flow skipped" in n for n in short.scores.notes)
    k = len(short.scores.dates)
    for n in short.scores.scores:
        np.testing.assert_array_equal(long.scores.scores[n][:k], short.scores.scores[n])
    np.testing.assert_array_equal(long.scores.composite[:k], short.scores.composite)
    # the score is the formula on the manager's panels (flow included)
    w0 = cal[90 - WARMUP_DAYS]
    codes = short.scores.codes
    p = dm.panels(["close", "net_mf_amount", "amount"], w0, cal[110], codes=codes)
    dates = p["close"].index
    want = industry_score(p["close"].to_numpy(), dm.industry(1, dates, codes),
                          dm.universe_mask("all", dates, codes),
                          window=cfg.signals.industry_window,
                          net_mf=p["net_mf_amount"].to_numpy(), amount=p["amount"].to_numpy())
    np.testing.assert_array_equal(short.scores.scores["industry"], want[WARMUP_DAYS:])
    assert not np.array_equal(before.scores.scores["industry"],
                              short.scores.scores["industry"])
    two = np.unique(short.scores.scores["industry"][-1][np.isfinite(
        short.scores.scores["industry"][-1])])
    assert len(two) == 2                             # two industries, two scores
