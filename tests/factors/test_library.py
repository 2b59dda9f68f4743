"""The named factor library: every formula parses, evaluates, and is causal."""
import numpy as np
import pytest

from data.errors import AlphamineError
from factors.expr_eval import evaluate
from factors.expr_parse import parse
from factors.library import LIBRARY, UNAVAILABLE, get_factor


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    T, N = 320, 8
    close = 10 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.005, (T, N)))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.02, (T, N)))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.02, (T, N)))
    vol = rng.lognormal(13, 0.5, (T, N))
    total_share = np.full((T, N), 1e8)
    d = {"close": close, "open": open_, "high": high, "low": low, "vol": vol,
         "amount": vol * close, "total_mv": total_share * close, "turnover": vol / total_share,
         "vwap": (high + low + close) / 3}
    d["ret"] = np.vstack([np.full((1, N), np.nan), close[1:] / close[:-1] - 1])
    return d


def test_required_factors_present():
    names = {f.name for f in LIBRARY}
    assert {"mom_60", "size_micro", "rlsf", "alpha1_gp", "ret", "pressure", "fomo", "dev",
            "vol_20", "amp", "rsi_14", "macd", "boll_width", "atr_14", "mom_20"} <= names
    assert "northbound_flow" in UNAVAILABLE
    with pytest.raises(AlphamineError, match="unavailable"):
        get_factor("northbound_flow")


@pytest.mark.parametrize("factor", LIBRARY, ids=lambda f: f.name)
def test_formula_parses_evaluates_and_is_causal(factor, data):
    expr = parse(factor.formula)
    assert parse(str(expr)) == expr
    full = evaluate(expr, data)
    assert full.shape == data["close"].shape
    assert np.isfinite(full[-20:]).mean() > 0.9, "library factor mostly NaN after warm-up"
    k = 290
    part = evaluate(expr, {n: v[:k] for n, v in data.items()})
    np.testing.assert_array_equal(part, full[:k])


def test_rsi_is_wilder(data):
    # Oracle: Wilder's RSI(14) by explicit recursion on one column.
    c = data["close"][:, 0]
    d = np.diff(c)
    gain, loss = np.maximum(d, 0), np.maximum(-d, 0)
    a = 2 / 28  # span 27 == Wilder alpha 1/14
    ag, al = gain[0], loss[0]
    for i in range(1, len(d)):
        ag = (1 - a) * ag + a * gain[i]
        al = (1 - a) * al + a * loss[i]
    expected = 100 - 100 / (1 + ag / al)
    got = evaluate(parse(get_factor("rsi_14").formula), data)[-1, 0]
    assert got == pytest.approx(expected, rel=1e-9)
