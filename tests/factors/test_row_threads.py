"""Row-parallel kernels (factors.row_threads): bit-identical to one thread, single-threaded
inside an executor's workers, errors surface."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from backtest.metrics_ic import spearman_from_orders
from factors.parallel import make_executor
from factors.row_order import row_orders
from factors.row_threads import current_row_threads, row_threads, split_rows


def _panel(R=400, N=90, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(R, N))
    x[rng.random((R, N)) < 0.1] = np.nan
    x[:, :5] = np.round(x[:, :5])                  # ties
    x[3] = -0.0
    return x


def test_row_orders_and_spearman_identical_on_threads():
    a, b = _panel(seed=1), _panel(seed=2)
    mask = np.random.default_rng(3).random(a.shape) < 0.9
    one = (row_orders(a), row_orders(b, mask))
    sp1 = spearman_from_orders(a, *one[0], b, *one[1], mask, want_ranks=True)
    with row_threads(3):
        assert current_row_threads() == 3
        par = (row_orders(a), row_orders(b, mask))
        sp3 = spearman_from_orders(a, *par[0], b, *par[1], mask, want_ranks=True)
        corr3 = spearman_from_orders(a, *par[0], b, *par[1], mask)
    assert current_row_threads() == 1
    for (o1, n1), (o3, n3) in zip(one, par):      # each row computed by the same code
        assert np.array_equal(n1, n3)
        assert all(np.array_equal(o1[r, :n1[r]], o3[r, :n3[r]]) for r in range(len(n1)))
    for x, y in zip(sp1, sp3):
        assert np.array_equal(x, y, equal_nan=True)
    assert np.array_equal(corr3, sp1[0], equal_nan=True)


def test_split_rows_covers_every_row_once_and_raises():
    seen = np.zeros(1000, int)
    ranges = []

    def fill(lo, hi):
        seen[lo:hi] += 1
        ranges.append((lo, hi, threading.current_thread().name))
    with row_threads(4):
        split_rows(fill, 1000)
    assert (seen == 1).all() and len(ranges) == 4
    assert all(name.startswith("alphamine-rows") for *_, name in ranges)
    seen[:] = 0
    with row_threads(4):
        split_rows(fill, 100)                      # too few rows to split: this thread
    assert (seen[:100] == 1).all()

    def boom(lo, hi):
        raise ValueError(f"rows {lo}-{hi}")
    with row_threads(2), pytest.raises(ValueError, match="rows"):
        split_rows(boom, 500)


def _threads_seen(panels, item):
    return current_row_threads()


def test_executor_workers_stay_single_threaded():
    with row_threads(4), make_executor("threads", 2) as ex:
        got = ex.map(_threads_seen, list(range(6)), ex.share({}))
    assert got == [1] * 6


def test_ts_operators_on_column_layout_identical_on_threads():
    from factors.operators import get_op
    rng = np.random.default_rng(5)
    x = np.asfortranarray(rng.normal(size=(120, 300)))
    y = np.asfortranarray(rng.normal(size=(120, 300)))
    x[rng.random(x.shape) < 0.05] = np.nan
    for name, args in (("ts_mean", [x]), ("ts_rank", [x]), ("ts_corr", [x, y]),
                       ("ts_argmax", [x])):
        op = get_op(name)
        one = op.apply(args, (10,))
        with row_threads(2):
            two = op.apply(args, (10,))
        assert np.array_equal(one, two, equal_nan=True), name
