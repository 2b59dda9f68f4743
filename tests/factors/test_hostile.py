"""Hostile input to the factor language (issue 12): the parser and every operator.

* Parser fuzz: arbitrary unicode text gives a tree or a ParseError, never another exception.
  CI runs a bounded number of examples; ``ALPHAMINE_FUZZ_EXAMPLES=100000`` runs the long one.
* Evaluator on hostile panels (zeros, constants, +-inf, 1e+-300, all-NaN rows / columns):
  every registered operator returns finite values or NaN, raises nothing, and leaves its inputs
  unmodified.
"""
from __future__ import annotations

import itertools
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factors.errors import ParseError
from factors.expr_eval import evaluate
from factors.expr_parse import parse
from factors.expr_tree import Expr
from factors.operators import all_ops

N_EXAMPLES = int(os.environ.get("ALPHAMINE_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=N_EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

# tokens of the language, mixed with arbitrary unicode, so the fuzz reaches deep into the grammar
_TOKENS = ["close", "vol", "open", "ts_mean(", "cs_rank(", "ts_corr(", "where(", "(", ")", ",",
           " ", "+", "-", "*", "/", "5", "0", "1e300", "-1", "0x10", "1_0", "nan", "inf",
           "model(\"r\")", "ｃｌｏｓｅ", "\udcff", "\x00", "\n", "lambda", "__import__"]


def _check_parse(text: str) -> None:
    try:
        out = parse(text)
    except ParseError as e:
        str(e).encode("utf-8")           # the message itself must be printable
        return
    assert isinstance(out, Expr)


@FUZZ
@given(st.text(max_size=80))
def test_parser_fuzz_arbitrary_unicode(text):
    _check_parse(text)


@FUZZ
@given(st.lists(st.one_of(st.sampled_from(_TOKENS), st.text(max_size=3)), max_size=30))
def test_parser_fuzz_token_soup(parts):
    _check_parse("".join(parts))


@pytest.mark.parametrize("text, fragment", [
    ("close\udcff", "U+DCFF"),
    ("ｃｌｏｓｅ", "U+FF43"),                            # full-width letters: not folded to close
    ("ts_mean(close, 0x10)", "plain decimal window"),
    ("ts_mean(close, 1_0)", "plain decimal window"),
    ("ts_mean(close, +5)", "without a sign"),
    ("ts_mean(close, -5)", "must be a positive window, got -5"),
])
def test_parser_decisions(text, fragment):
    with pytest.raises(ParseError, match=fragment.replace("+", r"\+")):
        parse(text)


def _hostile_panels() -> dict[str, np.ndarray]:
    T, N = 25, 6
    rng = np.random.default_rng(1)
    base = rng.lognormal(0, 0.2, (T, N))
    nanrow = base.copy()
    nanrow[5] = np.nan
    nanrow[:, 2] = np.nan
    return {
        "open": np.zeros((T, N)),                                       # zeros
        "high": np.full((T, N), 3.0),                                   # constant
        "low": base * 1e-300,                                           # dispersion underflows
        "close": base * 1e-150,                                         # squares underflow
        "vol": base * 1e300,                                            # products overflow
        "amount": -base,
        "vwap": np.where(rng.random((T, N)) < 0.2, np.inf, base),
        "ret": np.where(rng.random((T, N)) < 0.2, -np.inf, base),
        "turnover": nanrow,                                             # NaN row and column
        "total_mv": np.where(rng.random((T, N)) < 0.3, np.nan,
                             base * rng.choice([1e-300, 1.0, 1e300, -1e300], (T, N))),
    }


def _formulas() -> list[str]:
    names = list(_hostile_panels())
    partners = ["high", "low", "vol", "total_mv", "open"]
    out = []
    for op in all_ops():
        n = len(op.input_names)
        combos = ([(a,) for a in names] if n == 1 else
                  [(a, b) for a in names for b in partners] if n == 2 else
                  [(a, b, c) for a, b, c in itertools.product(["close", "open"], partners,
                                                             ["total_mv", "vwap"])])
        wins = [str(max(op.min_window, 3))] * len(op.window_names)
        for c in combos:
            if op.infix:
                out.append(f"({c[0]}) {op.infix} ({c[1]})")
            else:
                out.append(f"{op.name}({', '.join([*c, *wins])})")
    return out


def test_every_operator_on_hostile_panels_is_finite_or_nan():
    panels = _hostile_panels()
    T, N = panels["open"].shape
    bad = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in _formulas():
            env = {k: v.copy() for k, v in panels.items()}
            try:
                out = evaluate(parse(f), env.__getitem__, mask=np.ones((T, N), bool))
            except Exception as e:          # noqa: BLE001 - the assertion lists them
                bad.append(f"{f}: {type(e).__name__}: {e}")
                continue
            if out.shape != (T, N) or np.isinf(out).any():
                bad.append(f"{f}: shape {out.shape} or inf in the output")
            if any(not np.array_equal(env[k], panels[k], equal_nan=True) for k in panels):
                bad.append(f"{f}: modified its input")
    assert not bad, "\n".join(bad[:20])
    assert len(_formulas()) > 500


_HOSTILE_VALUES = [0.0, -0.0, 1.0, -1.0, 1e-300, -1e-300, 1e300, -1e300, 1e-150, np.inf,
                   -np.inf, np.nan, 3.0]


@FUZZ
@given(st.data())
def test_evaluator_fuzz_random_operator_on_random_hostile_panel(data):
    """Hypothesis picks an operator, a window and panels mixing hostile values (rows / columns
    all NaN or constant included): finite or NaN out, no exception, inputs unmodified."""
    ops = [op for op in all_ops() if len(op.input_names) <= 3]
    op = data.draw(st.sampled_from(ops), label="op")
    T, N = data.draw(st.integers(1, 12), label="T"), data.draw(st.integers(1, 6), label="N")
    names = ["close", "open", "vol"][:len(op.input_names)]
    panels = {}
    for nm in names:
        flat = data.draw(st.lists(st.sampled_from(_HOSTILE_VALUES), min_size=T * N,
                                  max_size=T * N), label=nm)
        panels[nm] = np.array(flat, dtype=np.float64).reshape(T, N)
    wins = [str(data.draw(st.integers(op.min_window, max(op.min_window, 6)), label="w"))
            for _ in op.window_names]
    f = (f"({names[0]}) {op.infix} ({names[1]})" if op.infix
         else f"{op.name}({', '.join([*names, *wins])})")
    env = {k: v.copy() for k, v in panels.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = evaluate(parse(f), env.__getitem__, mask=np.ones((T, N), bool))
    assert out.shape == (T, N) and not np.isinf(out).any(), f
    assert all(np.array_equal(env[k], panels[k], equal_nan=True) for k in panels), f
