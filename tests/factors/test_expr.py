"""Tests for factors/expr.py: trees, unparse round trip, structural equality, evaluate."""
from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from data.fields import field_names
from factors import operators, registry
from factors.errors import EvaluationError
from factors.expr_eval import evaluate
from factors.expr_parse import MAX_DEPTH, MAX_WINDOW, compile_formula, parse
from factors.expr_tree import (
    Call,
    Const,
    Expr,
    Field,
    depth,
    fields,
    size,
    unparse,
    walk,
)

OPS = operators.all_ops()
FIELD_NAMES = sorted(field_names())


# ------------------------------------------------------------------ hypothesis strategy

_special_floats = st.sampled_from([0.0, -0.0, 1.0, -1.0, -1.5, 0.1, 1e-300, -1e-300, 5e-324,
                                   -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
                                   -1.7976931348623157e308, 1e16, 123456789.123456789])
_consts = st.builds(Const, st.one_of(_special_floats,
                                     st.floats(allow_nan=False, allow_infinity=False)))
_leaves = st.one_of(st.builds(Field, st.sampled_from(FIELD_NAMES)), _consts)


def _op_strategy(op: registry.Operator, children: st.SearchStrategy) -> st.SearchStrategy:
    windows = st.tuples(*[st.one_of(st.integers(op.min_window, op.min_window + 60),
                                    st.integers(op.min_window, MAX_WINDOW))] * op.n_windows)
    args = st.tuples(*[children] * op.n_inputs)
    return st.builds(lambda a, w, name=op.name: Call(name, a, w), args, windows)


def _extend(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of([_op_strategy(op, children) for op in OPS])


trees = st.recursive(_leaves, _extend, max_leaves=24)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees)
def test_parse_unparse_round_trip(e: Expr) -> None:
    text = unparse(e)
    assume(fields(e) and depth(e) <= MAX_DEPTH and len(text) <= 2000)
    back = parse(text)
    assert back == e
    assert hash(back) == hash(e)
    assert unparse(back) == text  # canonical text is a fixed point
    assert str(e) == text
    clone = pickle.loads(pickle.dumps(e))
    assert clone == e and hash(clone) == hash(e)


def test_strategy_covers_every_operator() -> None:
    # the round-trip property is only meaningful if every registered operator can appear
    names = {op.name for op in OPS}
    assert {"add", "sub", "mul", "div", "neg"} <= names
    assert any(op.n_windows for op in OPS) and any(op.kind == "cs" for op in OPS)


# ------------------------------------------------------------------ equality and hash

@pytest.mark.parametrize("a, b", [
    ("close/ts_delay(close,5)-1", "((close) / ts_delay( close , 5 )) - 1.0"),
    ("close/ts_delay(close,5)-1", "+close / ts_delay(+close, 5) - +1"),
    ("-ts_corr(cs_rank(vol), cs_rank(close), 10)", "-(ts_corr(cs_rank((vol)),cs_rank(close),10))"),
    ("close * -2", "close*(-2.0)"),
    ("close + open + high", "(close + open) + high"),
    ("add(close, open)", "close + open"),
    ("neg(close)", "-close"),
    ("close * 1e-3", "close * 0.001"),
])
def test_same_formula_typed_differently_is_equal(a: str, b: str) -> None:
    ea, eb = parse(a), parse(b)
    assert ea == eb and hash(ea) == hash(eb)
    assert len({ea, eb}) == 1
    assert unparse(ea) == unparse(eb)


@pytest.mark.parametrize("a, b", [
    ("close - open", "open - close"),
    ("close + (open + high)", "(close + open) + high"),
    ("ts_mean(close, 5)", "ts_mean(close, 6)"),
    ("close * -2", "close * 2"),
    ("-(close * 2)", "close * -2"),
    ("ts_max(close, 5)", "ts_min(close, 5)"),
])
def test_different_trees_are_unequal(a: str, b: str) -> None:
    assert parse(a) != parse(b)


def test_node_construction_and_immutability() -> None:
    c = Call("add", [Field("close"), Const(2)])
    assert c.args == (Field("close"), Const(2.0)) and isinstance(c.args, tuple)
    assert Call("ts_mean", (Field("close"),), [np.int64(5)]).windows == (5,)
    assert Const(-0.0) == Const(0.0) and str(Const(-0.0)) == "0.0"
    assert Field("close") != Const(1.0) and Field("close") != "close"
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.op = "sub"  # type: ignore[misc]
    for bad in (float("nan"), float("inf"), 10 ** 400):
        with pytest.raises(ValueError):
            Const(bad)
    with pytest.raises(TypeError):
        Const(True)
    with pytest.raises(ValueError):
        Call("ts_mean", (Field("close"),), (True,))
    with pytest.raises(ValueError):
        Call("ts_mean", (Field("close"),), (0,))
    with pytest.raises(TypeError):
        Call("add", (Field("close"), 2.0))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Field("not a name")


def test_helpers_on_known_tree() -> None:
    e = parse("ts_corr(cs_rank(vol), cs_rank(close), 10) * -1 + close")
    # add(mul(ts_corr(cs_rank(vol), cs_rank(close), 10), -1.0), close)
    assert fields(e) == frozenset({"vol", "close"})
    assert size(e) == 9
    assert depth(e) == 5
    order = [n.op if isinstance(n, Call) else str(n) for n in walk(e)]
    assert order == ["add", "mul", "ts_corr", "cs_rank", "vol", "cs_rank", "close", "-1.0",
                     "close"]
    assert depth(Field("close")) == 1 and size(Const(1.0)) == 1


@pytest.mark.parametrize("text, canonical", [
    ("(close / ts_delay(close, 5)) - 1", "(close / ts_delay(close, 5)) - 1.0"),
    ("-ts_corr(cs_rank(vol), cs_rank(close), 10)", "-ts_corr(cs_rank(vol), cs_rank(close), 10)"),
    ("-(close + open)", "-(close + open)"),
    ("close * -1.5", "close * (-1.5)"),
    ("-1.5 * close", "(-1.5) * close"),
    ("ts_mean(-1.5 * close, 5)", "ts_mean((-1.5) * close, 5)"),
    ("neg(1.5) * close", "neg(1.5) * close"),
    ("--close", "-(-close)"),
    ("close * -open", "close * (-open)"),
    ("close + 1e300", "close + 1e+300"),
])
def test_unparse_format(text: str, canonical: str) -> None:
    assert unparse(parse(text)) == canonical
    assert parse(canonical) == parse(text)


def test_compile_formula_and_default_fields() -> None:
    assert compile_formula("close/open") == parse("close / open")
    for name in FIELD_NAMES:  # every language field parses by default
        assert parse(f"{name} + 1") == Call("add", (Field(name), Const(1.0)))
    assert parse("foo * 2", fields=["foo"]) == Call("mul", (Field("foo"), Const(2.0)))


def test_depth_boundary() -> None:
    e: Expr = Field("close")
    for _ in range(MAX_DEPTH - 1):
        e = Call("neg", (e,))
    assert depth(e) == MAX_DEPTH and parse(unparse(e)) == e


# ------------------------------------------------------------------ evaluate

def _panels(seed: int = 0, t: int = 60, n: int = 12, holes: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 10 * np.exp(np.cumsum(rng.normal(0, 0.02, (t, n)), axis=0))
    d = {"close": close, "open": close * (1 + rng.normal(0, 0.01, (t, n))),
         "vol": rng.lognormal(10, 1, (t, n)), "high": close * 1.02, "low": close * 0.98}
    d["low"][3, :4] = d["high"][3, :4]  # zero range -> division by zero
    if holes:
        for k in d:
            d[k][rng.random((t, n)) < 0.1] = np.nan
            d[k][:7, 0] = np.nan      # late listing
            d[k][20:25, 1] = np.nan   # suspension
    return d


def _op(name: str):
    return operators.get_op(name).func


def test_evaluate_matches_numpy() -> None:
    d = _panels(holes=False)
    close, open_ = d["close"], d["open"]
    lag = np.full_like(close, np.nan)
    lag[5:] = close[:-5]
    got = evaluate(parse("(close / ts_delay(close, 5)) - 1"), d)
    np.testing.assert_allclose(got, close / lag - 1, rtol=1e-12, equal_nan=True)

    got = evaluate(parse("abs(open - close) / (high - low)"), d)
    with np.errstate(divide="ignore", invalid="ignore"):
        want = np.abs(open_ - close) / (d["high"] - d["low"])
    want[~np.isfinite(want)] = np.nan
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
    assert np.isnan(got[3, :4]).all()

    got = evaluate(parse("ts_mean(close, 3) * -2"), d)
    want = pd.DataFrame(close).rolling(3, min_periods=3).mean().to_numpy() * -2
    np.testing.assert_allclose(got, want, rtol=1e-10, equal_nan=True)


def test_evaluate_matches_registry_composition() -> None:
    d = _panels(seed=1)
    mask = np.random.default_rng(5).random(d["close"].shape) > 0.2
    text = "-ts_corr(cs_rank(vol), cs_rank(close), 10) + ts_std(close, 5) / 3"
    want = (_op("neg")(_op("ts_corr")(_op("cs_rank")(d["vol"], mask=mask),
                                      _op("cs_rank")(d["close"], mask=mask), 10))
            + _op("ts_std")(d["close"], 5) / 3.0)
    got = evaluate(parse(text), d, mask=mask)
    assert got.dtype == np.float64 and got.shape == d["close"].shape
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
    assert np.isfinite(got).sum() > 0.3 * got.size


def test_mask_respected_by_cs_ops() -> None:
    d = _panels(seed=2)
    mask = np.random.default_rng(7).random(d["close"].shape) > 0.4
    got = evaluate(parse("cs_rank(close)"), d, mask=mask)
    want = pd.DataFrame(d["close"]).where(mask).rank(axis=1, pct=True).to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
    assert np.isnan(got[~mask]).all()
    unmasked = evaluate(parse("cs_rank(close)"), d)
    assert np.isfinite(unmasked[~mask]).any()
    with pytest.raises(EvaluationError, match="mask"):
        evaluate(parse("cs_rank(close)"), d, mask=mask[:-1])


def _counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    op = operators.get_op(name)
    calls: list[int] = []

    def counted(*args, **kwargs):
        calls.append(1)
        return op.func(*args, **kwargs)

    monkeypatch.setitem(registry.REGISTRY, name, dataclasses.replace(op, func=counted))
    return calls


def test_repeated_subexpression_computed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    d = _panels(seed=3)
    calls = _counting(monkeypatch, "ts_mean")
    loads: list[str] = []

    def source(name: str) -> np.ndarray:
        loads.append(name)
        return d[name]

    e = parse("ts_mean(close, 5) + ts_mean(close, 5) * cs_rank(ts_mean(close, 5))"
              " - ts_mean(close, 6)")
    out = evaluate(e, source)
    assert len(calls) == 2  # windows 5 and 6
    assert loads == ["close"]
    assert np.isfinite(out).any()

    cache: dict = {}
    evaluate(parse("ts_mean(close, 5) * 2"), d, cache=cache)
    assert len(calls) == 3
    evaluate(parse("cs_rank(ts_mean(close, 5))"), d, cache=cache)
    assert len(calls) == 3  # the shared cache served the second call
    evaluate(parse("cs_rank(ts_mean(close, 5))"), d)
    assert len(calls) == 4  # without a shared cache it is recomputed


def test_causality_with_nan_holes() -> None:
    d = _panels(seed=4, t=80)
    mask = np.random.default_rng(9).random(d["close"].shape) > 0.15
    formulas = [
        "ts_corr(cs_rank(vol), cs_rank(close), 10)",
        "cs_rank(ts_mean(close / ts_delay(close, 3) - 1, 7)) * -ts_std(vol, 5)",
        "ts_corr(close, vol, 5) - cs_rank(ts_corr(open, close, 8))",
    ]
    for text in formulas:
        e = parse(text)
        full = evaluate(e, d, mask=mask)
        assert np.isfinite(full).sum() > 0
        for k in (1, 9, 23, 50, 79):
            part = evaluate(e, {f: a[:k] for f, a in d.items()}, mask=mask[:k])
            np.testing.assert_allclose(part, full[:k], rtol=1e-12, atol=1e-14, equal_nan=True)


_small_windows_trees = st.recursive(
    st.one_of(st.builds(Field, st.sampled_from(["close", "open", "vol"])),
              st.builds(Const, st.floats(-5, 5, allow_nan=False))),
    lambda children: st.one_of([
        st.builds(lambda a, w, name=op.name: Call(name, a, w), st.tuples(*[children] * op.n_inputs),
                  st.tuples(*[st.integers(op.min_window, op.min_window + 6)] * op.n_windows))
        for op in OPS]),
    max_leaves=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_small_windows_trees)
def test_random_trees_evaluate_causally_without_mutation(e: Expr) -> None:
    assume(fields(e))
    d = _panels(seed=11, t=40, n=6)
    mask = np.random.default_rng(3).random((40, 6)) > 0.2
    before = {k: v.copy() for k, v in d.items()}
    full = evaluate(e, d, mask=mask)
    assert full.dtype == np.float64 and full.shape == (40, 6)
    assert not np.isinf(full).any()
    part = evaluate(e, {k: v[:17] for k, v in d.items()}, mask=mask[:17])
    np.testing.assert_allclose(part, full[:17], rtol=1e-9, atol=1e-12, equal_nan=True)
    for k in d:
        np.testing.assert_array_equal(d[k], before[k])


def test_no_mutation_and_fresh_result() -> None:
    d = _panels(seed=5)
    d["close"][2, 2] = np.inf
    before = {k: v.copy() for k, v in d.items()}
    cache: dict = {}
    out = evaluate(parse("close"), d, cache=cache)
    assert not np.shares_memory(out, d["close"])
    assert np.isnan(out[2, 2])  # +-inf mapped to NaN
    out[:] = 0.0
    again = evaluate(parse("close"), d, cache=cache)
    assert np.isfinite(again).any() and not np.all(again == 0.0)
    evaluate(parse("ts_rank(close, 5) - cs_zscore(vol) + close / 0"), d)
    for k in d:
        np.testing.assert_array_equal(d[k], before[k])


def test_constants_broadcast_and_inf() -> None:
    d = _panels(seed=6, holes=False)
    got = evaluate(parse("close * 0 + 3"), d)
    assert got.shape == d["close"].shape and np.all(got == 3.0)
    got = evaluate(parse("close / (open - open)"), d)
    assert np.isnan(got).all()
    mask = np.ones((4, 3), dtype=bool)
    assert evaluate(Const(2.5), {}, mask=mask).tolist() == [[2.5] * 3] * 4
    with pytest.raises(EvaluationError, match="no field"):
        evaluate(Const(2.5), {})


def test_evaluation_errors() -> None:
    d = _panels(seed=7)
    with pytest.raises(EvaluationError, match="'amount'"):
        evaluate(parse("close / amount"), d)

    def source(name: str) -> np.ndarray:
        raise KeyError(name)

    with pytest.raises(EvaluationError, match="'close'"):
        evaluate(parse("close"), source)
    with pytest.raises(EvaluationError, match="shape"):
        evaluate(parse("close + open"), {"close": d["close"], "open": d["open"][:-1]})
    with pytest.raises(EvaluationError, match="unknown operator"):
        evaluate(Call("no_such_op", (Field("close"),)), d)
    with pytest.raises(EvaluationError, match="ts_mean"):
        evaluate(Call("ts_mean", (Field("close"),), ()), d)
    with pytest.raises(EvaluationError, match="2-D"):
        evaluate(parse("close"), {"close": d["close"][0]})
