"""float32 panels on the real warehouse, whole market (issue 15; slow, read-only).

Every library factor's mean RankIC on train and valid with ``[data] dtype = "float32"`` (vol,
amount, turnover and total_mv stored in float32, rounded once from float64; prices, returns and
labels float64) differs from the float64 run by less than 1e-6. The fast synthetic
counterpart: ``test_float32_rankic.py``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backtest.candidates import Workspace
from backtest.context import EvalConfig, EvalContext
from backtest.evaluate import mean_rank_ic
from factors.errors import EvaluationError
from factors.expr_parse import parse
from factors.library import LIBRARY

ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "ashare"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (ROOT / "trade_cal.parquet").is_file(),
                                 reason=f"real warehouse not found at {ROOT}")]

START, END = "2017-01-01", "2020-12-31"
CFG = EvalConfig(train=("2017-01-01", "2018-12-31"), valid=("2019-01-01", "2020-12-31"),
                 test=("2021-01-01", "2026-12-31"))


def _workspace(dtype: str) -> Workspace:
    from data.manager import DataManager
    dm = DataManager(ROOT, dtype=dtype, max_cache_bytes=512 << 20)
    ctx = EvalContext.from_data(dm, "all", START, END, CFG)
    return Workspace(dm=dm, ctx=ctx, universe="all", start=START, end=END)


def test_library_rank_ic_float32_vs_float64_whole_market():
    w64 = _workspace("float64")
    w32 = _workspace("float32")
    assert w32.field("vol").dtype == np.float32 and w32.ctx.shape == w64.ctx.shape
    assert w64.ctx.shape[1] > 3000                          # the whole market
    checked = 0
    for f in LIBRARY:
        try:
            v64 = w64.values(parse(f.formula))
        except EvaluationError:                             # a field the warehouse lacks
            continue
        v32 = w32.values(parse(f.formula))
        for split in ("train", "valid"):
            a, b = mean_rank_ic(v64, w64.ctx, split), mean_rank_ic(v32, w32.ctx, split)
            assert np.isfinite(a), (f.name, split)
            assert abs(a - b) < 1e-6, (f.name, split, a, b)
        checked += 1
        del v64, v32
    assert checked >= 12
