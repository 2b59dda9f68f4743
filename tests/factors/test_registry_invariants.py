"""Invariants every registered operator must satisfy, parametrised over ``registry.all_ops()``."""
from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

from factors.operators import all_ops
from factors.registry import DEFAULT_GP_WINDOWS, Operator

OPS = all_ops()
TS_OPS = [op for op in OPS if op.kind == "ts"]
IDS = [op.name for op in OPS]
T, N = 64, 7


def _inputs(op: Operator, seed: int = 0) -> list[np.ndarray]:
    """Random panels with NaN holes (a late-listed and an empty column), one per input."""
    rng = np.random.default_rng(seed)
    panels = []
    for name in op.input_names:
        x = rng.standard_normal((T, N)) * 2.0 + 0.5
        if name == "group":                       # categorical codes (cs_neutralize, cs_group_*)
            x = rng.integers(0, 3, (T, N)).astype(np.float64)
        x[rng.random((T, N)) < 0.2] = np.nan
        x[:25, 1] = np.nan
        x[:, 2] = np.nan
        panels.append(x)
    return panels


def _mask(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + 100).random((T, N)) < 0.85


def _window(op: Operator) -> int:
    return max(op.min_window, 5)


def _run(op: Operator, panels, window=None, mask=None):
    if op.kind == "ts":
        return op.func(*panels, _window(op) if window is None else window)
    if op.kind == "cs":
        return op.func(*panels, mask=mask)
    return op.func(*panels)


def test_registry_is_populated_and_consistent():
    kinds = {op.kind for op in OPS}
    assert kinds == {"elementwise", "ts", "cs"}
    assert len({op.name for op in OPS}) == len(OPS)
    for op in OPS:
        assert op.name.startswith("ts_") == (op.kind == "ts")
        assert op.name.startswith("cs_") == (op.kind == "cs")
        assert op.n_windows == (1 if op.kind == "ts" else 0)
        assert all(w >= op.min_window for w in op.gp_windows)
        if op.kind == "ts":
            assert op.gp_windows == tuple(w for w in DEFAULT_GP_WINDOWS if w >= op.min_window)
    infix = {op.infix: op.name for op in OPS if op.infix}
    assert infix == {"+": "add", "-": "sub", "*": "mul", "/": "div"}


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_inferred_signature_matches_function(op):
    params = list(inspect.signature(op.func).parameters)
    extra = ["mask"] if op.kind == "cs" else []
    assert params == list(op.input_names + op.window_names) + extra
    assert all(w.startswith("window") for w in op.window_names)
    assert op.name == op.func.__name__ or op.func.__name__ == op.name + "_"


@pytest.mark.parametrize("op", TS_OPS, ids=[op.name for op in TS_OPS])
def test_ts_op_has_kernel_and_driver(op):
    from numba.core.registry import CPUDispatcher
    assert isinstance(op.kernel, CPUDispatcher), f"{op.name}: no numba rolling kernel"
    assert isinstance(op.driver, CPUDispatcher), f"{op.name}: no compiled driver"
    assert op.driver.py_func.__globals__["_KERNEL"] is op.kernel
    n = len(inspect.signature(op.kernel.py_func).parameters)
    assert n == op.n_inputs + 2, f"{op.name}: kernel must be k(*series, w, o)"


def test_operator_modules_are_discovered():
    import pkgutil

    import factors
    from factors.operators import OPERATOR_MODULES
    found = {m.name for m in pkgutil.iter_modules(factors.__path__) if m.name.startswith("ops_")}
    assert {m.split(".")[-1] for m in OPERATOR_MODULES} == found
    assert {op.func.__module__ for op in OPS} == set(OPERATOR_MODULES)


@pytest.mark.parametrize("op", OPS, ids=IDS)
@pytest.mark.parametrize("masked", [False, True])
def test_shape_dtype_no_inf_no_mutation(op, masked):
    panels = _inputs(op)
    copies = [p.copy() for p in panels]
    mask = _mask() if masked and op.kind == "cs" else None
    out = _run(op, panels, mask=mask)
    assert isinstance(out, np.ndarray)
    assert out.shape == (T, N)
    assert out.dtype == np.float64
    assert not np.isinf(out).any()
    assert np.isfinite(out).any(), "operator produced nothing but NaN on random data"
    for p, c in zip(panels, copies):
        np.testing.assert_array_equal(p, c)       # inputs not mutated
        assert not np.shares_memory(out, p)       # a new array


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_integer_and_float32_inputs_give_float64(op):
    panels = [np.nan_to_num(p, nan=1.0).astype(np.float32) for p in _inputs(op, seed=3)]
    assert _run(op, panels).dtype == np.float64
    ints = [np.arange(T * N, dtype=np.int64).reshape(T, N) % 11 + 1 for _ in panels]
    assert _run(op, ints).dtype == np.float64


@pytest.mark.parametrize("op", OPS, ids=IDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_causality_truncating_the_future(op, seed):
    panels = _inputs(op, seed)
    mask = _mask(seed) if op.kind == "cs" else None
    full = _run(op, panels, mask=mask)
    for k in (1, 6, 17, 33, T - 1):
        part = _run(op, [p[:k] for p in panels], mask=None if mask is None else mask[:k])
        np.testing.assert_array_equal(part, full[:k], err_msg=f"{op.name}: rows < {k} changed")


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_docstring_is_numpydoc_with_nan_policy(op):
    doc = inspect.getdoc(op.func) or ""
    assert op.doc and op.doc == doc.splitlines()[0].strip()
    assert re.search(r"^Parameters\n-{10}$", doc, re.M), f"{op.name}: no Parameters section"
    assert re.search(r"^Returns\n-{7}$", doc, re.M), f"{op.name}: no Returns section"
    assert re.search(r"^NaN policy: \S", doc, re.M), f"{op.name}: no 'NaN policy:' line"
    if op.kind == "ts":
        assert re.search(r"^Raises\n-{6}$", doc, re.M), f"{op.name}: no Raises section"


@pytest.mark.parametrize("op", TS_OPS, ids=[op.name for op in TS_OPS])
def test_ts_rejects_window_below_minimum(op):
    panels = _inputs(op)
    for bad in {op.min_window - 1, 0, -3}:
        with pytest.raises(ValueError, match=rf"{op.name}.*window {bad}\b"):
            op.func(*panels, bad)
    for bad in (2.5, "5", True, None):
        with pytest.raises(ValueError, match=op.name):
            op.func(*panels, bad)
    assert op.func(*panels, np.int64(op.min_window)).shape == (T, N)


@pytest.mark.parametrize("op", TS_OPS, ids=[op.name for op in TS_OPS])
def test_ts_nan_and_warmup_policy(op):
    """NaN where the input is missing; NaN for each stock's first window-1 observations."""
    panels = _inputs(op, seed=5)
    w = _window(op)
    out = _run(op, panels, window=w)
    valid = np.logical_and.reduce([np.isfinite(p) for p in panels])
    assert np.isnan(out[~valid]).all()
    for j in range(N):
        rows = np.flatnonzero(valid[:, j])
        assert np.isnan(out[rows[: w - 1], j]).all()
        lag = op.name in ("ts_delay", "ts_delta", "ts_pct_change")
        assert np.isfinite(out[rows[w if lag else w - 1:], j]).all()
        if lag:
            assert np.isnan(out[rows[:w], j]).all()


@pytest.mark.parametrize("op", TS_OPS, ids=[op.name for op in TS_OPS])
def test_ts_one_dimensional_series(op):
    panels = _inputs(op, seed=6)
    w = _window(op)
    full = op.func(*panels, w)
    col = op.func(*[p[:, 0] for p in panels], w)
    assert col.shape == (T,)
    np.testing.assert_array_equal(col, full[:, 0])


@pytest.mark.parametrize("op", [op for op in OPS if op.kind == "cs"],
                         ids=[op.name for op in OPS if op.kind == "cs"])
def test_cs_respects_mask(op):
    panels = _inputs(op, seed=7)            # x, and the group panel of the cs_group ops
    mask = _mask(7)
    out = op.func(*panels, mask=mask)
    assert np.isnan(out[~mask]).all()
    # Values outside the mask (of every input) do not influence the result.
    moved = [p.copy() for p in panels]
    for p in moved:
        p[~mask] = 1e9
    np.testing.assert_array_equal(op.func(*moved, mask=mask), out)


@pytest.mark.parametrize("op", [op for op in OPS if op.kind == "elementwise"],
                         ids=[op.name for op in OPS if op.kind == "elementwise"])
def test_elementwise_nan_propagates(op):
    panels = _inputs(op, seed=8)
    out = op.func(*panels)
    if op.name == "where":
        assert np.isnan(out[np.isnan(panels[0])]).all()
    else:
        any_nan = np.logical_or.reduce([np.isnan(p) for p in panels])
        assert np.isnan(out[any_nan]).all()


@pytest.mark.parametrize("op", TS_OPS, ids=[op.name for op in TS_OPS])
def test_ts_operator_gives_the_same_values_in_column_layout(op):
    """A column-ordered input takes the column driver: same values, column-ordered output."""
    xs = _inputs(op, seed=3)
    xs[0][10:12, 4] = np.inf                                  # mapped to NaN in both layouts
    win = [_window(op)] * op.n_windows
    rows = op.apply(xs, win)
    cols = op.apply([np.asfortranarray(x) for x in xs], win)
    np.testing.assert_array_equal(cols, rows)
    assert cols.flags.f_contiguous and not np.isinf(cols).any()
    if op.n_inputs == 2:                                      # mixed layouts
        np.testing.assert_array_equal(op.apply([xs[0], np.asfortranarray(xs[1])], win), rows)


def test_evaluator_gives_the_same_values_whatever_the_layout():
    """evaluate() hands ts_* operators column-ordered panels: same numbers as applying every
    operator on row-ordered panels by hand, and a C-ordered result."""
    from factors.expr_eval import evaluate
    from factors.expr_parse import parse
    from factors.operators import get_op
    rng = np.random.default_rng(5)
    close = rng.standard_normal((T, N)) + 10.0
    vol = rng.random((T, N)) * 100.0
    close[rng.random((T, N)) < 0.1] = np.nan
    mask = _mask(5)
    ap = lambda name, *a, w=(): get_op(name).apply(list(a), w, mask=mask)  # noqa: E731
    inner = ap("ts_mean", close, w=(5,))
    exp = ap("cs_rank", ap("sub", ap("ts_std", ap("div", inner, close), w=(10,)),
                             ap("ts_corr", close, vol, w=(8,))))
    exp = ap("add", exp, ap("ts_delay", vol, w=(2,)))
    got = evaluate(parse("cs_rank(ts_std(ts_mean(close, 5) / close, 10) - "
                         "ts_corr(close, vol, 8)) + ts_delay(vol, 2)"),
                   {"close": close, "vol": vol}, mask=mask)
    np.testing.assert_array_equal(got, exp)
    assert got.flags.c_contiguous
    tail = evaluate(parse("ts_decay_linear(ts_rank(close, 5) * 2 + vol, 4)"),
                    {"close": close, "vol": vol})
    np.testing.assert_array_equal(tail, ap("ts_decay_linear", ap("add", ap(
        "mul", ap("ts_rank", close, w=(5,)), np.full((T, N), 2.0)), vol), w=(4,)))
    assert tail.flags.c_contiguous
