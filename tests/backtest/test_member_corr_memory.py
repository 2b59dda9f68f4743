"""The gate's member correlations keep only the members' valid rows (issue 15, full market):
same numbers as :func:`backtest.evaluate.factor_corr`, a quarter of the memory per member."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from backtest.candidates import Workspace, correlations_with, evaluate_candidate
from backtest.context import EvalContext
from backtest.evaluate import factor_corr
from factors.expr_parse import parse


def _ws(T: int = 300, N: int = 60, seed: int = 4) -> Workspace:
    rng = np.random.default_rng(seed)
    close = 10 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0))
    vol = np.exp(rng.normal(12, 1, (T, N)))
    close[:20, 0] = np.nan
    dates = pd.bdate_range("2021-01-04", periods=T)
    splits = {"train": (str(dates[0].date()), str(dates[149].date())),
              "valid": (str(dates[152].date()), str(dates[239].date())),
              "test": (str(dates[242].date()), str(dates[-1].date()))}
    ctx = EvalContext.from_arrays(dates, [f"{600000 + j}.SH" for j in range(N)], close,
                                  np.ones((T, N), bool), np.isfinite(close), splits, embargo=2)
    ws = Workspace(dm=None, ctx=ctx, universe="synth", start=splits["train"][0],
                   end=splits["test"][1])
    for k, v in (("close", close), ("vol", vol)):
        v.setflags(write=False)
        ws._panels[k] = v
    return ws


def test_member_correlations_equal_factor_corr_and_keep_valid_rows_only():
    ws = _ws()
    members = [SimpleNamespace(formula=f) for f in
               ("ts_mean(close, 5)", "cs_rank(vol)", "-ts_corr(close, vol, 10)")]
    cand = evaluate_candidate(ws, "ts_delta(close, 3) / ts_std(close, 10)")
    got = correlations_with(ws, cand, members)
    for m in members:
        want = factor_corr(cand.values, ws.values(parse(m.formula)), ws.ctx, split="valid")
        assert np.isfinite(want) and got[m.formula] == want
    lo, hi = ws.ctx.split_bounds("valid")
    assert sorted(ws.memo) == sorted(("valid_side", m.formula) for m in members)
    for x, order, counts in ws.memo.values():                   # valid rows only, no panel
        assert x.shape == (hi - lo, ws.ctx.shape[1]) and order.shape == x.shape
    # cached: a second candidate reuses the members' sorted valid rows
    again = correlations_with(ws, cand, members)
    assert again == got


def test_an_accepted_candidate_leaves_its_valid_side_as_the_member_would_compute_it(tmp_path):
    from backtest import candidates as cands
    from factors.store import FactorStore
    from mining.cli_app import load
    from dataclasses import replace
    ws = _ws()
    base = load(None)
    cfg = base.replace(store=replace(base.store, path=tmp_path / "lb.db", min_valid_rank_ic=0.0,
                                     max_adj_p=1.0),
                       evaluate=replace(base.evaluate, horizon=1))
    with FactorStore(cfg.store.path) as store:
        for i, f in enumerate(("ts_delta(close, 3) / ts_std(close, 10)", "cs_rank(vol)")):
            cand = evaluate_candidate(ws, f, orient=True)
            d = cands.submit(ws, store, cand, name=f"m{i}", source="manual", cfg=cfg,
                             provenance={})
            assert d.accepted, d.reason
            kept = ws.memo[("valid_side", cand.formula)]
            fresh = cands._side(ws, ws.values(parse(cand.formula)))   # from the formula
            assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(kept, fresh))
