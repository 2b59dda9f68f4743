"""The attack layer's scores: each sub-score on a panel with a known answer, Wilder's ATR by
hand, the composite's renormalisation, point-in-time valuation, causality (truncation)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.signals import (
    SignalsConfig,
    composite,
    factor_score,
    industry_score,
    technical_score,
    valuation_panels,
    valuation_score,
    wilder_atr,
)


def test_wilder_atr_by_hand():
    h = np.array([[10.0], [11.0], [12.0], [11.5], [13.0]])
    lo = np.array([[9.0], [10.0], [10.5], [10.0], [11.0]])
    c = np.array([[9.5], [10.8], [11.0], [11.2], [12.5]])
    # TR: 1.0 (first bar: H-L), max(1, |11-9.5|, |10-9.5|) = 1.5, max(1.5, 1.2, 0.3) = 1.5,
    #     max(1.5, 0.5, 1.0) = 1.5, max(2, 1.8, 0.2) = 2.0
    got = wilder_atr(h, lo, c, 3)[:, 0]
    first = (1.0 + 1.5 + 1.5) / 3
    second = (first * 2 + 1.5) / 3
    third = (second * 2 + 2.0) / 3
    np.testing.assert_allclose(got, [np.nan, np.nan, first, second, third])


def test_wilder_atr_skips_days_without_a_bar():
    h = np.array([[10.0], [np.nan], [11.0], [12.0]])
    lo = np.array([[9.0], [np.nan], [10.0], [10.5]])
    c = np.array([[9.5], [np.nan], [10.8], [11.0]])
    got = wilder_atr(h, lo, c, 2)[:, 0]
    # TR: 1.0, (suspended), max(1, 1.5, 0.5) = 1.5 vs the close before the gap, 1.5
    np.testing.assert_allclose(got, [np.nan, np.nan, 1.25, (1.25 + 1.5) / 2])
    with pytest.raises(ValueError, match="window"):
        wilder_atr(h, lo, c, 0)


def test_technical_score_known_order():
    """Rising exponentially with a volume burst and a new high (A), flat (B), falling ever
    faster on low volume (C): every component (MACD histogram > 0, = 0, < 0; volume ratio;
    close over the previous high) ranks A > B > C, so the score is 100, 66.7, 33.3."""
    T = 60
    t = np.arange(T, dtype=float)
    close = np.column_stack([10 * 1.01 ** t, np.full(T, 10.0), 10 - 0.002 * t ** 2])
    vol = np.ones((T, 3))
    vol[-1] = [2.0, 1.0, 0.5]
    got = technical_score(close, vol, volume_window=5, breakout_window=20)
    np.testing.assert_allclose(got[-1], [100.0, 200 / 3, 100 / 3])
    assert np.isnan(got[:20]).all()                  # breakout warm-up


def test_industry_score_known_answer():
    """Industry 0 up 10 % over the window, industry 1 flat: tied ranks 3.5/4 and 1.5/4."""
    T = 25
    close = np.full((T, 4), 10.0)
    close[-1, :2] = 11.0
    ind = np.tile([0, 0, 1, 1], (T, 1))
    got = industry_score(close, ind, window=20)
    np.testing.assert_allclose(got[-1], [87.5, 87.5, 37.5, 37.5])
    mask = np.ones((T, 4), dtype=bool)
    mask[:, 3] = False                               # a non-member is neither scored nor counted
    got = industry_score(close, ind, mask, window=20)
    np.testing.assert_allclose(got[-1], [100 * 2.5 / 3, 100 * 2.5 / 3, 100 / 3, np.nan])


def test_valuation_score_known_answer():
    pe = np.array([[10.0, 20.0, np.nan, 40.0]])      # third: a loss-maker (pe NaN, pb known)
    pb = np.array([[1.0, 2.0, 1.0, 4.0]])
    ind = np.zeros((1, 4))
    got = valuation_score(pe, pb, ind)
    # ep ranks 4, 3, 1, 2 of 4; bp ranks 3.5, 2, 3.5, 1 of 4
    np.testing.assert_allclose(got[0], [93.75, 62.5, 56.25, 37.5])
    got = valuation_score(pe, pb, np.array([[0, 0, 1, 1]]), min_group=2)   # within industry
    np.testing.assert_allclose(got[0], [100.0, 50.0, 75.0, 75.0])
    # industries of 2 < min_group 3: ranked across the universe instead
    got = valuation_score(pe, pb, np.array([[0, 0, 1, 1]]))
    np.testing.assert_allclose(got[0], [93.75, 62.5, 56.25, 37.5])
    got = valuation_score(pe, pb, np.array([[0, 0, 0, 1]]))           # a lone member
    np.testing.assert_allclose(got[0, 3], 37.5)
    # ep ranks 3, 2, 1 of 3; bp ranks 2.5, 1, 2.5 of 3 (ties averaged)
    np.testing.assert_allclose(got[0, :3], [100 * (1 + 2.5 / 3) / 2, 50.0,
                                            100 * (1 / 3 + 2.5 / 3) / 2])


def test_factor_score_and_composite():
    np.testing.assert_allclose(factor_score(np.array([[3.0, 1.0, 2.0, np.nan]]))[0],
                               [100.0, 100 / 3, 200 / 3, np.nan])
    s = {"a": np.array([[50.0, np.nan, np.nan]]), "b": np.array([[100.0, 80.0, np.nan]])}
    np.testing.assert_allclose(composite(s, {"a": 1.0, "b": 3.0})[0], [87.5, 80.0, np.nan])
    np.testing.assert_allclose(composite(s, {"a": 1.0, "b": 0.0})[0], [50.0, np.nan, np.nan])


def test_config_rules():
    assert SignalsConfig().slot_weight == 0.05
    with pytest.raises(ValueError, match="exit_threshold"):
        SignalsConfig(buy_threshold=40.0, exit_threshold=50.0)
    with pytest.raises(ValueError, match="must be > 0"):
        SignalsConfig(w_factor=0, w_valuation=0, w_technical=0, w_industry=0)


class _VQ:
    """A data manager with only quarterly valuation snapshots."""

    def has_dataset(self, name):
        return False

    def valuation_quarterly(self, codes=None):
        return pd.DataFrame({
            "ts_code": ["A", "A", "B"],
            "quarter": pd.to_datetime(["2020-12-31", "2021-03-31", "2021-03-31"]),
            "visible_date": pd.to_datetime(["2020-12-31", "2021-03-31", "2021-04-06"]),
            "pe": [10.0, 12.0, 30.0], "pb": [1.0, 1.2, 3.0]})


def test_valuation_panels_point_in_time():
    """A snapshot is used from its visible day on (a non-trading day: the next one), never
    before; one visible before the window is carried in."""
    dates = pd.DatetimeIndex(["2021-03-30", "2021-03-31", "2021-04-01", "2021-04-07"])
    pe, pb, src = valuation_panels(_VQ(), dates, ["A", "B"])
    np.testing.assert_allclose(pe[:, 0], [10.0, 12.0, 12.0, 12.0])
    np.testing.assert_allclose(pe[:, 1], [np.nan, np.nan, np.nan, 30.0])
    assert "quarterly" in src


def test_scores_are_causal(tmp_path):
    """Scores of the synthetic warehouse up to D are the same whether the data ends at D or
    20 days later (inputs loaded from the same start)."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
    from panel_warehouse import build_panel_warehouse, report_config

    from backtest.signals_run import load_book_inputs
    from data.manager import DataManager
    from mining.cli_app import load
    root = build_panel_warehouse(tmp_path / "wh", n_stocks=8, n_days=140)
    cfg = load(report_config(tmp_path, root))
    dm = DataManager.from_config(cfg)
    cal = dm.calendar()
    short = load_book_inputs(cfg, dm, "all", cal[90], cal[110])
    long = load_book_inputs(cfg, dm, "all", cal[90], cal[130])
    k = len(short.scores.dates)
    assert (long.scores.dates[:k] == short.scores.dates).all()
    np.testing.assert_array_equal(long.scores.composite[:k], short.scores.composite)
    for n in short.scores.scores:
        np.testing.assert_array_equal(long.scores.scores[n][:k], short.scores.scores[n])
    np.testing.assert_array_equal(long.atr[:k], short.atr)
    assert np.isfinite(short.scores.composite).any()
