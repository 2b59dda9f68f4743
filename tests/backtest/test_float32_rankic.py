"""float32 panels (``[data] dtype = "float32"``, issue 15): the RankIC of every library factor
and of every registered operator differs from the float64 run by < 1e-6.

The quantity fields (vol, amount, turnover, total_mv) are stored in float32, rounded once from
float64; prices, returns and labels stay float64; the evaluator, operators, ranks and
correlations compute in float64. Synthetic continuous panels (no cent rounding: the
exact ties of cent prices are what keeps prices in float64), long enough for the library's
252-day windows. The real-data check: ``test_float32_real.py`` (slow).
"""
from __future__ import annotations

import numpy as np
import pytest
import pandas as pd

from backtest.candidates import Workspace
from backtest.context import EvalContext
from backtest.evaluate import evaluate_factor, mean_rank_ic
from data.fields import FIELDS
from factors.errors import EvaluationError
from factors.expr_parse import parse
from factors.library import LIBRARY
from factors.operators import all_ops

#: The mean-RankIC tolerance of the issue.
TOL = 1e-6
_ARGS = ("vol", "amount", "turnover", "total_mv")     # the float32 fields


def _synthetic(T: int = 520, N: int = 800, seed: int = 3) -> dict[str, np.ndarray]:
    """Continuous random panels in the warehouse's units (no cent rounding, real-like amount)."""
    rng = np.random.default_rng(seed)
    close = 20 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0))
    opn = close * np.exp(rng.normal(0, 0.005, (T, N)))
    high = np.maximum(opn, close) * np.exp(np.abs(rng.normal(0, 0.01, (T, N))))
    low = np.minimum(opn, close) * np.exp(-np.abs(rng.normal(0, 0.01, (T, N))))
    shares = rng.uniform(1e8, 5e9, N)[None, :] * np.ones((T, 1))
    vol = np.exp(rng.normal(15, 1.0, (T, N)))
    amount = vol * (high + low) / 2 * np.exp(rng.normal(0, 0.003, (T, N)))
    p = {"open": opn, "high": high, "low": low, "close": close, "vol": vol, "amount": amount,
         "vwap": amount / vol, "turnover": vol / shares, "total_mv": close * shares,
         "total_share": shares,
         "ret": np.vstack([np.full((1, N), np.nan), close[1:] / close[:-1] - 1])}
    for k in ("open", "high", "low", "close", "vol", "amount", "vwap", "turnover", "ret"):
        p[k][:30, 0] = np.nan                              # a late listing
    return p


@pytest.fixture(scope="module")
def spaces():
    """Two workspaces on the same synthetic market: float64, and the float32-safe fields
    rounded to float32 as ``DataManager.panels(dtype="float32")`` stores them."""
    p = _synthetic()
    T, N = p["close"].shape
    dates = pd.bdate_range("2021-01-04", periods=T)
    codes = [f"{600000 + j}.SH" for j in range(N)]
    splits = {"train": (str(dates[0].date()), str(dates[379].date())),
              "valid": (str(dates[382].date()), str(dates[479].date())),
              "test": (str(dates[482].date()), str(dates[-1].date()))}
    umask = np.ones((T, N), dtype=bool)
    umask[:, -3:] = False
    ctx = EvalContext.from_arrays(dates, codes, p["open"], umask, np.isfinite(p["open"]),
                                  splits, embargo=2, universe="synth")
    out = {}
    for dt in ("float64", "float32"):
        ws = Workspace(dm=None, ctx=ctx, universe="synth", start=splits["train"][0],
                       end=splits["test"][1])
        for k, v in p.items():
            a = np.ascontiguousarray(v, dtype=dt if FIELDS[k].float32 else np.float64)
            a.setflags(write=False)
            ws._panels[k] = a
        out[dt] = ws
    return out


def _ics(ws: Workspace, formula: str) -> np.ndarray:
    v = ws.values(parse(formula))
    return np.array([mean_rank_ic(v, ws.ctx, s) for s in ("train", "valid")])


def _op_formula(op) -> str:
    args = [_ARGS[i % len(_ARGS)] for i in range(len(op.input_names))]
    if op.name in ("log", "sqrt"):
        args = ["vol"]
    if op.name in ("power", "signed_power"):
        args = ["turnover", "2"]
    if "group" in op.input_names:
        args[op.input_names.index("group")] = "gt(cs_rank(total_mv), 0.5)"
    wins = [str(max(op.min_window, 10))] * len(op.window_names)
    return f"{op.name}({', '.join(args + wins)})"


def test_float32_storage_halves_the_quantity_fields(spaces):
    w64, w32 = spaces["float64"], spaces["float32"]
    for f in _ARGS:
        a, b = w64.field(f), w32.field(f)
        assert a.dtype == np.float64 and b.dtype == np.float32 and 2 * b.nbytes == a.nbytes
        assert not b.flags.writeable
        np.testing.assert_array_equal(b, a.astype(np.float32))
    for f in ("close", "ret", "vwap"):                        # prices and returns: float64
        assert w32.field(f).dtype == np.float64
        np.testing.assert_array_equal(w32.field(f), w64.field(f))
    # the evaluator still returns float64 values
    assert w32.values(parse("cs_rank(vol)")).dtype == np.float64


def test_library_factors_rank_ic_float32_vs_float64(spaces):
    checked = 0
    for f in LIBRARY:
        try:
            ic64 = _ics(spaces["float64"], f.formula)
        except EvaluationError:             # a field this warehouse lacks
            continue
        ic32 = _ics(spaces["float32"], f.formula)
        assert np.isfinite(ic64).all(), f.name
        assert np.abs(ic32 - ic64).max() < TOL, (f.name, ic64, ic32)
        checked += 1
    assert checked >= 12


def test_every_operator_rank_ic_float32_vs_float64(spaces):
    checked = []
    for op in all_ops():
        formula = _op_formula(op)
        ic64 = _ics(spaces["float64"], formula)
        if not np.isfinite(ic64).any():
            continue
        ic32 = _ics(spaces["float32"], formula)
        assert np.nanmax(np.abs(ic32 - ic64)) < TOL, (formula, ic64, ic32)
        checked.append(op.name)
    assert len(checked) >= len(all_ops()) - 3, sorted({o.name for o in all_ops()} - set(checked))


def test_full_report_float32_vs_float64(spaces):
    """The report's mean RankIC and IC move < 1e-6 (ratios such as ICIR with a tiny mean
    amplify the same change and are not compared)."""
    formula = "-ts_corr(cs_rank(vol), cs_rank(close), 10) + ts_mean(turnover, 5)"
    r64 = evaluate_factor(spaces["float64"].values(parse(formula)), spaces["float64"].ctx)
    r32 = evaluate_factor(spaces["float32"].values(parse(formula)), spaces["float32"].ctx)
    for s in ("train", "valid"):
        d64, d32 = r64[s].to_dict(), r32[s].to_dict()
        for k in ("rank_ic_mean", "ic_mean"):
            assert np.isfinite(d64[k]) and abs(d32[k] - d64[k]) < TOL, (s, k, d64[k], d32[k])


def test_restrict_is_a_view_and_equals_a_selection(spaces):
    ctx = spaces["float32"].ctx
    cut = ctx.restrict(ctx.dates[3], ctx.dates[250])
    sel = np.asarray((ctx.dates >= ctx.dates[3]) & (ctx.dates <= ctx.dates[250]))
    assert np.shares_memory(cut.fwd[1], ctx.fwd[1])
    np.testing.assert_array_equal(cut.fwd[1], ctx.fwd[1][sel])
    np.testing.assert_array_equal(cut.eligible, ctx.eligible[sel])
    assert cut.dates.equals(ctx.dates[sel])
    for k in ctx.split_rows:
        np.testing.assert_array_equal(cut.split_rows[k], ctx.split_rows[k][sel])
