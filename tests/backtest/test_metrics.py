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


# ------------------------------------------------------------------ deflated Sharpe (issue 11)
def test_deflated_sharpe_reproduces_the_papers_numerical_example():
    """Bailey & Lopez de Prado (2014), numerical example: annualised SR 2.5 over 5 years of
    daily returns (T = 1250, 250 days a year), N = 100 trials with annualised Var[SR] = 1/2,
    skewness -3, kurtosis 10: E[max SR] = 0.1132 (daily) and DSR = 0.9004."""
    from backtest.metrics import expected_max_sharpe, probabilistic_sharpe
    sr, var = 2.5 / math.sqrt(250), 0.5 / 250
    sr0 = expected_max_sharpe(100, var)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    assert probabilistic_sharpe(sr, sr0, 1250, -3.0, 10.0) == pytest.approx(0.9004, abs=5e-5)


def test_deflated_sharpe_hand_computed_and_edge_cases():
    from scipy.stats import kurtosis, norm, skew

    from backtest.metrics import (
        EULER_GAMMA,
        deflated_sharpe,
        expected_max_sharpe,
        probabilistic_sharpe,
    )
    r = np.random.default_rng(1).normal(0.0008, 0.01, 750)
    sr = r.mean() / r.std(ddof=1)
    g3, g4 = skew(r), kurtosis(r, fisher=False)
    # one strategy: SR0 = 0, DSR = PSR(0); Var[SR] from the null, 1 / (T - 1)
    d1 = deflated_sharpe(r, 1)
    assert d1.sr0 == 0.0 and d1.sr_var_source == "null" and d1.sr_var == pytest.approx(1 / 749)
    psr0 = norm.cdf(sr * math.sqrt(749) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr ** 2))
    assert d1.dsr == pytest.approx(psr0) and d1.psr0 == pytest.approx(psr0)
    assert d1.sharpe == pytest.approx(sr) and d1.sharpe_annual == pytest.approx(sr * math.sqrt(252))
    # N trials with their Sharpe ratios: V = their sample variance
    trials = [0.01, 0.03, -0.02, sr, 0.05]
    d5 = deflated_sharpe(r, 5, trials)
    v = np.var(trials, ddof=1)
    z1, z2 = norm.ppf(1 - 1 / 5), norm.ppf(1 - 1 / (5 * math.e))
    assert d5.sr_var == pytest.approx(v) and d5.sr_var_source == "trials"
    assert d5.sr0 == pytest.approx(math.sqrt(v) * ((1 - EULER_GAMMA) * z1 + EULER_GAMMA * z2))
    assert d5.dsr == pytest.approx(probabilistic_sharpe(sr, d5.sr0, 750, g3, g4))
    assert d5.dsr < d1.dsr
    # more strategies tried, same spread: a higher bar
    bars = [expected_max_sharpe(n, 1e-3) for n in (1, 2, 10, 100, 1000)]
    assert bars[0] == 0 and all(b > a for a, b in zip(bars, bars[1:]))
    assert expected_max_sharpe(50, 0.0) == 0.0
    with pytest.raises(BacktestError, match="n_trials"):
        expected_max_sharpe(0, 1e-3)
    flat = deflated_sharpe(np.zeros(10), 3)
    assert math.isnan(flat.dsr) and flat.to_dict()["dsr"] is None


def test_backtests_are_counted_as_strategy_trials(tmp_path):
    from backtest.deflated import charge_backtest, targets_digest
    from factors.store import FactorStore
    dates = pd.bdate_range("2021-01-04", periods=120)
    rng = np.random.default_rng(2)
    navs = [pd.Series(np.cumprod(1 + rng.normal(m, 0.01, 120)), index=dates)
            for m in (0.001, 0.0, 0.0005)]
    tg = pd.DataFrame({"trade_date": dates[:3], "ts_code": ["600000.SH"] * 3,
                       "target_weight": [1.0, 1.0, 1.0]})
    store = tmp_path / "lb.db"
    kw = dict(strategy="topn", start="2021-01-04", end="2021-06-30")
    a = charge_backtest(store, navs[0], tg, **kw)
    assert a.n_trials == 1 and a.sr0 == 0.0 and a.sr_var_source == "null"
    again = charge_backtest(store, navs[0], tg.iloc[::-1], **kw)      # same targets: same trial
    assert again.n_trials == 1
    b = charge_backtest(store, navs[1], tg.assign(target_weight=0.5), **kw)
    c = charge_backtest(store, navs[2], tg, **{**kw, "end": "2021-05-31"}, universe="csi300",
                        run_id="r3", out_dir=tmp_path)
    assert (b.n_trials, c.n_trials) == (2, 3) and c.sr_var_source == "trials"
    srs = [a.sharpe, b.sharpe, c.sharpe]
    assert c.sr_var == pytest.approx(np.var(srs, ddof=1))
    assert c.dsr < c.psr0
    assert targets_digest(tg, "a", "b") == targets_digest(tg.iloc[::-1], "a", "b") != \
        targets_digest(tg, "a", "c")
    with FactorStore(store) as s:
        rows = s._conn.execute("SELECT strategy, universe, n_runs, run_id FROM backtest_trials "
                               "ORDER BY id").fetchall()
    assert rows == [("topn", None, 2, None), ("topn", None, 1, None), ("topn", "csi300", 1, "r3")]
