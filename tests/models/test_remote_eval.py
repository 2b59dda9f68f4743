"""backtest.remote_eval: formulas scored as executor tasks on shared panels give the numbers of
the common evaluator here, route driver-only formulas (member / model leaves) to the driver,
report errors per formula, and stay causal. The Ray version runs in tests/cluster."""
from __future__ import annotations

import numpy as np
import pytest

from backtest.candidates import evaluate_candidate
from backtest.remote_eval import context_arrays, evaluate_batch
from factors.expr_parse import parse
from factors.parallel import SerialExecutor

FORMULAS = ["cs_rank(ts_mean(ret, 5))", "-(close / ts_delay(close, 3))", "ts_std(vol, 10)",
            "log(neg(abs(close)))", "ts_corr(close, vol, 10)"]


class CountingSerial(SerialExecutor):
    """The serial reference that records what it was asked to share and run."""

    def __init__(self):
        self.shared, self.items = [], []

    def share(self, arrays):
        self.shared.append(set(arrays))
        return super().share(arrays)

    def map(self, fn, items, shared):
        self.items += list(items)
        return super().map(fn, items, shared)


def _same(a, b):
    assert a.formula == b.formula and a.oriented == b.oriented
    assert a.values.tobytes() == b.values.tobytes()
    for split in b.reports:
        ra, rb = a.reports[split].to_dict(), b.reports[split].to_dict()
        assert set(ra) == set(rb)
        for k in rb:
            np.testing.assert_array_equal(np.asarray(ra[k], dtype=object),
                                          np.asarray(rb[k], dtype=object))


def test_batch_through_an_executor_equals_the_evaluator_here(make_ws):
    ws = make_ws(T=120, N=15, seed=5)
    exprs = [parse(f) for f in FORMULAS]
    ex = CountingSerial()
    got = evaluate_batch(ws, exprs, ex, orient=True)
    assert len(ex.items) == len(exprs)                  # every formula went through the tasks
    assert ex.shared[0] >= {"ret", "close", "vol", "@dates", "@eligible", "@fwd1"}
    for e, g in zip(exprs, got):
        _same(g, evaluate_candidate(ws, e, orient=True))
    a1, _ = context_arrays(ws)
    a2, _ = context_arrays(ws)
    assert all(a1[k] is a2[k] for k in a1)              # the same objects: shared once per run


def test_driver_only_and_failing_formulas(make_ws):
    ws = make_ws(T=80, N=10, seed=6)
    exprs = [parse('model("lgbm-x")'), parse("ts_mean(close, 5)"), parse("cs_rank(adj_factor)")]
    ex = CountingSerial()
    real = ws.load

    def load(names):
        if "adj_factor" in names:
            raise RuntimeError("adj_factor unavailable (simulated)")
        return real(names)
    ws.load = load
    got = evaluate_batch(ws, exprs, ex)
    assert [str(it[0]) for it in ex.items] == ["ts_mean(close, 5)"]   # only the portable one
    assert isinstance(got[0], str) and "EvaluationError" in got[0] and "model" in got[0]
    assert isinstance(got[2], str) and "simulated" in got[2]
    _same(got[1], evaluate_candidate(ws, exprs[1]))
    assert [isinstance(g, str) for g in evaluate_batch(ws, exprs, None)] == [True, False, True]


@pytest.mark.parametrize("k", [60, 90])
def test_batch_evaluation_is_causal(make_ws, truncate, k):
    """Cutting the dates after row k changes no value before it."""
    ws = make_ws(T=120, N=12, seed=7)
    exprs = [parse(f) for f in FORMULAS[:3]]
    full = evaluate_batch(ws, exprs, SerialExecutor())
    cut = evaluate_batch(truncate(ws, k), exprs, SerialExecutor())
    for a, b in zip(full, cut):
        np.testing.assert_array_equal(a.values[:k], b.values)
