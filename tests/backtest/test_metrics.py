"""backtest.metrics: hand-checked NAV metrics, benchmark-relative metrics, per-year table."""
import math

import numpy as np
import pandas as pd
import pytest

from backtest.errors import BacktestError
from backtest.metrics import drawdown, performance, yearly_table


def _nav(values, start="2021-12-29"):
    return pd.Series(values, index=pd.bdate_range(start, periods=len(values)), dtype=float)


def test_hand_computed_summary():
    nav = _nav([100, 110, 99, 121, 121, 133.1])
    p = performance(nav)
    r = np.array([0.1, -0.1, 121 / 99 - 1, 0.0, 0.1])
    assert p.n_days == 5
    assert p.total_return == pytest.approx(0.331)
    assert p.annual_return == pytest.approx(1.331 ** (252 / 5) - 1)
    assert p.annual_vol == pytest.approx(r.std(ddof=1) * math.sqrt(252))
    assert p.sharpe == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252))
    assert p.max_drawdown == pytest.approx(-0.1)
    days = nav.index
    assert (p.max_dd_peak, p.max_dd_trough, p.max_dd_recovery) == (
        str(days[1].date()), str(days[2].date()), str(days[3].date()))
    assert p.calmar == pytest.approx(p.annual_return / 0.1)
    assert p.win_rate == pytest.approx(3 / 4)            # the flat day does not count
    np.testing.assert_allclose(drawdown(nav).to_numpy(), [0, 0, -0.1, 0, 0, 0], atol=1e-12)


def test_turnover_and_benchmark():
    nav = _nav([100.0, 101, 102, 101, 103])
    trades = pd.DataFrame({"value": [50.0, 30.0, 20.0]})
    p = performance(nav, trades=trades, benchmark=_nav([10.0, 10, 10.2, 10.1, 10.3]),
                    benchmark_name="000300.SH")
    assert p.turnover == pytest.approx(100 / 2 / nav.mean() * 252 / 4)
    r = nav.pct_change().to_numpy()[1:]
    b = np.array([0.0, 0.02, 10.1 / 10.2 - 1, 10.3 / 10.1 - 1])
    a = r - b
    assert p.information_ratio == pytest.approx(a.mean() / a.std(ddof=1) * math.sqrt(252))
    assert p.tracking_error == pytest.approx(a.std(ddof=1) * math.sqrt(252))
    assert p.excess_return == pytest.approx(p.annual_return - (1.03 ** 63 - 1))
    assert p.benchmark == "000300.SH"
    # identical NAV and benchmark: zero excess, undefined IR
    q = performance(nav, benchmark=nav)
    assert q.excess_return == pytest.approx(0) and math.isnan(q.information_ratio)
    assert performance(nav).to_dict()["information_ratio"] is None


def test_no_drawdown_and_errors():
    p = performance(_nav([1.0, 1.1, 1.2]))
    assert p.max_drawdown == 0 and p.max_dd_peak is None and math.isnan(p.calmar)
    with pytest.raises(BacktestError, match="at least 2"):
        performance(_nav([1.0]))
    with pytest.raises(BacktestError, match="positive"):
        performance(_nav([1.0, 0.0]))


def test_yearly_table_compounds_and_labels_periods():
    idx = pd.bdate_range("2021-12-28", "2022-01-05")
    nav = pd.Series(np.linspace(100, 108, len(idx)), index=idx)
    bench = pd.Series(np.linspace(10, 10.4, len(idx)), index=idx)
    t = yearly_table(nav, bench, splits={"valid": ("2019-01-01", "2021-12-31"),
                                         "test": ("2022-01-01", "2026-12-31")})
    y21 = nav[nav.index.year == 2021]
    assert t.loc[2021, "return"] == pytest.approx(y21.iloc[-1] / nav.iloc[0] - 1)
    assert t.loc[2022, "return"] == pytest.approx(nav.iloc[-1] / y21.iloc[-1] - 1)
    assert (1 + t["return"]).prod() == pytest.approx(nav.iloc[-1] / nav.iloc[0])
    assert t.loc[2022, "bench_return"] == pytest.approx(
        bench.iloc[-1] / bench[bench.index.year == 2021].iloc[-1] - 1)
    assert list(t["period"]) == ["valid", "test"]
    assert (t["max_drawdown"] == 0).all()
    # a within-year drawdown measured from the previous year's last NAV
    nav2 = pd.Series([100.0, 120, 90, 95], index=pd.DatetimeIndex(
        ["2021-12-30", "2021-12-31", "2022-01-03", "2022-01-04"]))
    t2 = yearly_table(nav2)
    assert t2.loc[2022, "max_drawdown"] == pytest.approx(90 / 120 - 1)
    assert "period" not in t2
