"""Adding an operator is one function in one file: a test-only module reaches every consumer."""
from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numba import njit

from factors import operators, registry
from factors.expr_eval import evaluate
from factors.expr_parse import parse
from factors.registry import register

EXTRA = Path(__file__).with_name("extra_ops.py")
NAMES = ("extra_clip", "ts_extra_range")


def _load_extra():
    """Execute extra_ops.py afresh (its decorators register the operators).

    The module must be in ``sys.modules`` while its numba functions compile or load from the
    disk cache (numba finds a function's module there).
    """
    spec = importlib.util.spec_from_file_location("extra_ops", EXTRA)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["extra_ops"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def extra():
    with registry.scope():
        yield _load_extra()
    sys.modules.pop("extra_ops", None)
    assert not set(NAMES) & set(registry.REGISTRY)


def _panel(seed=0, T=80, N=6):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, N)).cumsum(0)
    x[rng.random((T, N)) < 0.2] = np.nan
    x[:30, 2] = np.nan
    return x


def test_inferred_metadata(extra):
    op = operators.get_op("ts_extra_range")
    assert (op.kind, op.n_inputs, op.n_windows, op.min_window) == ("ts", 1, 1, 2)
    assert op.signature == "ts_extra_range(x, window)" and op.gp_windows == (3, 7)
    assert op.kernel is extra._k_range and op.driver is not None
    assert op.func is extra.ts_extra_range
    assert list(inspect.signature(op.func).parameters) == ["x", "window"]
    clip = operators.get_op("extra_clip")
    assert (clip.kind, clip.n_inputs, clip.n_windows) == ("elementwise", 1, 0)


def test_parser_and_evaluator_match_pandas(extra):
    x = _panel()
    out = evaluate(parse("ts_extra_range(close, 5)"), {"close": x})
    df = pd.DataFrame(x)
    exp = np.full_like(x, np.nan)
    for j in df:
        s = df[j].dropna()
        r = (s.rolling(5).max() - s.rolling(5).min()).reindex(df.index)
        exp[:, j] = r.to_numpy()
    np.testing.assert_allclose(out, exp, rtol=0, atol=1e-12, equal_nan=True)
    got = evaluate(parse("extra_clip(close * 2)"), {"close": x})
    np.testing.assert_array_equal(got, np.clip(x * 2, -1, 1))
    with pytest.raises(Exception, match="window >= 2"):
        parse("ts_extra_range(close, 1)")


def test_gp_function_set(extra):
    from mining.gp import build_function_set
    funcs, names = build_function_set((80, 6))
    assert names["ts_extra_range_3"] == ("ts_extra_range", 3)
    assert names["ts_extra_range_7"] == ("ts_extra_range", 7)
    assert names["extra_clip"] == ("extra_clip", None)
    fn = next(f for f in funcs if f.name == "ts_extra_range_7")
    x = _panel(1)
    np.testing.assert_array_equal(fn(x.reshape(-1)),
                                  extra.ts_extra_range(x, 7).reshape(-1))


def test_prompt_operator_table(extra):
    from mining.prompting import operators_table
    table = operators_table()
    assert "| `ts_extra_range(x, window)` | ts | Rolling range" in table
    assert "Window >= 2." in table.split("ts_extra_range")[1].splitlines()[0]
    assert "| `extra_clip(x)` | elementwise | Clip to" in table


def test_mine_ops_cli(extra):
    from typer.testing import CliRunner

    from mining.cli import app
    res = CliRunner().invoke(app, ["ops"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "ts_extra_range(x, window)" in res.output and "extra_clip(x)" in res.output
    res = CliRunner().invoke(app, ["ops", "--kind", "ts"], env={"COLUMNS": "200"})
    assert "ts_extra_range" in res.output and "extra_clip" not in res.output


def test_scope_and_unregister_undo_registrations():
    before = dict(registry.REGISTRY)
    with registry.scope():
        mod = _load_extra()
        assert set(NAMES) <= set(registry.REGISTRY)
        assert registry.unregister("extra_clip").func is mod.extra_clip
        assert "extra_clip" not in registry.REGISTRY
    sys.modules.pop("extra_ops", None)
    assert registry.REGISTRY == before
    with pytest.raises(KeyError):
        registry.unregister("extra_clip")


# ---------------------------------------------------------------- registration rules

DOC = """One line.

    Parameters
    ----------
    x : ndarray
    """


def _doc(fn):
    fn.__doc__ = DOC
    return fn


@njit(cache=True)
def _k_copy(v, w, o):
    o[:] = v


@pytest.mark.parametrize("make, msg", [
        (lambda: register(_doc(_mk("ts_nowin", "x"))), "needs a 'window'"),
    (lambda: register(_doc(_mk("cs_nomask", "x"))), "must accept the keyword 'mask'"),
    (lambda: register(_doc(_mk("ew_win", "x, window"))), "only ts_\\* operators take windows"),
    (lambda: register(_doc(_mk("ew_mask", "x, mask=None"))), "only cs_\\* operators take 'mask'"),
    (lambda: register(_mk("nodoc", "x")), "needs a numpydoc docstring"),
    (lambda: register(_doc(_mk("add", "x, y"))), "registered twice"),
    (lambda: register(name="fine_name")(_doc(_mk("f", "x"))), "name= is only for"),
    (lambda: register(kernel=_k_copy)(_doc(_mk("ew_kernel", "x"))), "kernel= is for ts_"),
    (lambda: register(_doc(_mk("ts_order", "window, x"))), "after every panel"),
    (lambda: register(_doc(_mk("ts_def", "x, window=5"))), "take no default"),
    (lambda: register(_doc(_mk("ts_two", "x, window, window_b"))), "GP handles one window"),
    (lambda: register(min_window=2)(_doc(_mk("ew_minw", "x"))), "for ts_\\* only"),
    (lambda: register(_doc(_mk("ew_var", "*xs"))), "\\*args"),
])
def test_inconsistent_signatures_are_rejected(make, msg):
    with registry.scope(), pytest.raises(ValueError, match=msg):
        make()


def _mk(name: str, params: str):
    ns: dict = {}
    exec(f"def {name}({params}):\n    return None\n", ns)  # noqa: S102
    return ns[name]


def test_short_forms_register():
    with registry.scope():
        register(_doc(_mk("ew_ok", "x, y")))
        register(gp=False)(_doc(_mk("cs_ok", "x, mask=None")))
        register(kernel=_k_copy, min_window=3)(_doc(_mk("ts_ok", "x, window")))
        register(name="pow")(_doc(_mk("pow_", "x, y")))
        ops = {n: registry.REGISTRY[n] for n in ("ew_ok", "cs_ok", "ts_ok", "pow")}
        assert [o.kind for o in ops.values()] == ["elementwise", "cs", "ts", "elementwise"]
        assert ops["ts_ok"].gp_windows == (5, 10, 20, 40, 60)
        x = np.arange(12.0).reshape(6, 2)
        np.testing.assert_array_equal(ops["ts_ok"].apply([x], [3]), x)
        with pytest.raises(ValueError, match=r"ts_ok takes 1 panel\(s\) and 1 window\(s\)"):
            ops["ts_ok"].apply([x])
    assert "ew_ok" not in registry.REGISTRY


@njit
def _k_infinite(v, w, o):
    for i in range(v.shape[0]):
        o[i] = np.inf if i % 2 else -np.inf


def test_non_finite_kernel_results_are_nan_in_every_evaluator():
    """The evaluators skip their +-inf pass after a rolling kernel: its driver writes NaN for
    every non-finite result, so an infinite one never reaches a consumer."""
    from mining.gp_eval import PanelMemo
    with registry.scope():
        def ts_test_infinite(x, window):
            pass
        ts_test_infinite.__doc__ = DOC
        register(kernel=_k_infinite)(ts_test_infinite)
        x = _panel(2)
        expr = parse("ts_test_infinite(close, 3)")
        for out in (evaluate(expr, {"close": x}), evaluate(expr, {"close": np.asfortranarray(x)}),
                    PanelMemo({parse("close"): x}, None, 1 << 20).values(expr)):
            assert out.shape == x.shape and np.isnan(out).all()
