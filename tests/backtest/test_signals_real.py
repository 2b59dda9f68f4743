"""The attack layer on the real warehouse (read-only; slow-marked): CSI300 scores on a valid
day, causality on real data, and a short signal backtest in the valid split."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "ashare"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (ROOT / "trade_cal.parquet").is_file(),
                                 reason=f"real warehouse not found at {ROOT}")]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    from mining.cli_app import load
    tmp = tmp_path_factory.mktemp("real")
    p = tmp / "mine.toml"
    p.write_text(f'[data]\nroot = "{ROOT}"\ncache_dir = "{tmp / "cache"}"\n'
                 f'[store]\npath = "{tmp / "lb.db"}"\n[backtest]\nout_dir = "{tmp / "bt"}"\n'
                 '[signals]\nlookback = 60\n')
    return load(p)


def test_csi300_day_scores_and_causality(cfg):
    from backtest.signals_run import load_book_inputs, signals
    from data.manager import DataManager
    from factors.signal_log import SignalLog
    from factors.store import FactorStore
    run = signals(cfg, "2021-06-30", universe="csi300", notify=False)
    rows = run.rows
    assert 290 <= rows["composite"].notna().sum() <= 300
    assert rows["valuation_score"].notna().mean() > 0.9          # quarterly snapshots
    assert rows["technical_score"].between(0, 100).mean() > 0.9
    assert any("factor score skipped" in n for n in run.notes)   # no combine run here
    kept = (rows["held"] == 1) & (rows["flag"] == "hold")
    assert run.counts["buy"] + kept.sum() <= cfg.signals.max_names
    with FactorStore(cfg.store.path) as s:
        assert len(SignalLog(s).entries(date="2021-06-30")) == len(rows)
    dm = DataManager.from_config(cfg)
    a = load_book_inputs(cfg, dm, "csi300", "2021-05-06", "2021-06-30")
    b = load_book_inputs(cfg, dm, "csi300", "2021-05-06", "2021-07-30")
    k = len(a.scores.dates)
    cols = b.scores.codes.get_indexer(a.scores.codes)
    assert (cols >= 0).all()
    np.testing.assert_array_equal(b.scores.composite[:k][:, cols], a.scores.composite)


def test_signal_backtest_valid_window(cfg):
    from backtest.signals_run import signal_backtest
    run, meta = signal_backtest(cfg, start="2021-03-01", end="2021-06-30", universe="csi300")
    p = run.performance
    assert np.isfinite(p["annual_return"]) and -1 < p["max_drawdown"] <= 0
    assert run.n_trades > 0 and run.test_performance is None
    assert set(meta["signals_by_flag"]) <= {"buy", "sell", "hold"}
