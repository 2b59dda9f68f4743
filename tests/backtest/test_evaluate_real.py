"""The evaluator on a small slice of the real warehouse (read-only; slow-marked)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from backtest.context import EvalConfig, EvalContext
from backtest.evaluate import evaluate_factor, factor_corr, mean_rank_ic

ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "ashare"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (ROOT / "trade_cal.parquet").is_file(),
                                 reason=f"real warehouse not found at {ROOT}")]


@pytest.fixture(scope="module")
def real():
    from data.manager import DataManager

    dm = DataManager(ROOT)
    cfg = EvalConfig(train=("2019-01-01", "2019-12-31"), valid=("2020-01-01", "2020-12-31"),
                     test=("2021-01-01", "2021-12-31"))
    ctx = EvalContext.from_data(dm, "csi300", "2019-01-01", "2020-12-31", cfg)
    opn = dm.panels(["open"], "2019-01-01", "2020-12-31", codes=ctx.codes)["open"]
    return ctx, opn.to_numpy()


def test_reversal_factor_on_csi300_2019_2020(real):
    ctx, opn = real
    T, N = ctx.shape
    assert T > 480 and 300 <= N < 600
    members = ctx.universe_mask.sum(axis=1)
    assert 280 <= members.min() and members.max() <= 300
    # -ret-like: minus the 5-day open-to-open return known at the open of t (causal)
    f = np.full((T, N), np.nan)
    f[5:] = -(opn[5:] / opn[:-5] - 1.0)
    reps = evaluate_factor(f, ctx)
    assert set(reps) == {"train", "valid"}
    for r in reps.values():
        assert r.n_days > 200 and r.n_days - 5 <= r.n_ic_days <= r.n_days   # 5-day warm-up
        for k in ("rank_ic_mean", "rank_icir", "ic_mean", "icir", "turnover", "ls_ann_return",
                  "ls_sharpe", "rank_autocorr", "ls_max_drawdown"):
            assert math.isfinite(getattr(r, k)), k
        assert 0.5 < r.coverage <= 1.0
        assert abs(r.rank_ic_mean) < 0.2 and 0.0 < r.turnover < 1.0
        assert r.rank_autocorr > 0.3                     # overlapping 5-day windows
        assert all(math.isfinite(v) for v in r.quantile_ann_returns)
        json.dumps(r.to_dict(), allow_nan=False)
    assert mean_rank_ic(f, ctx, "valid") == pytest.approx(reps["valid"].rank_ic_mean, abs=1e-12)
    assert factor_corr(f, -f, ctx) == pytest.approx(-1.0, abs=1e-12)
