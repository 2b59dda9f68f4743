"""backtest.combine: selection, IC/ICIR/equal weights (causal), composite."""
import numpy as np
import pandas as pd
import pytest

from backtest.combine import (
    combine_from_store,
    combine_panels,
    composite,
    factor_weights,
    select_members,
)
from backtest.context import EvalContext
from factors.errors import EvaluationError, StoreError

T, N = 160, 50
DATES = pd.bdate_range("2019-01-01", periods=T)
CODES = [f"{600000 + i}.SH" for i in range(N)]
SPLITS = {"train": ("2019-01-01", "2019-03-31"), "valid": ("2019-04-01", "2019-06-30"),
          "test": ("2019-07-01", "2019-12-31")}


def _world(seed=0):
    rng = np.random.default_rng(seed)
    alpha = rng.standard_normal((T, N))
    # next-day open-to-open return carries alpha of the previous close: fwd_1[t] ~ alpha[t]
    r = 0.01 * rng.standard_normal((T, N))
    r[2:] += 0.01 * alpha[:-2]
    opn = 10 * np.exp(np.cumsum(r, axis=0))
    good = alpha + 0.5 * rng.standard_normal((T, N))
    bad = -alpha + 0.5 * rng.standard_normal((T, N))          # informative but reversed
    noise = rng.standard_normal((T, N))
    return opn, {"good": good, "bad": bad, "noise": noise}


def _ctx(opn, horizon=1):
    ones = np.ones((T, N), bool)
    return EvalContext.from_arrays(DATES, CODES, opn, ones, ones, SPLITS, horizons=(1, 5),
                                   horizon=horizon, embargo=5)


def test_ic_weights_favour_the_informative_factors():
    opn, raw = _world()
    ctx = _ctx(opn)
    score, w, ic = combine_panels(raw, {"good": 1.0, "bad": -1.0, "noise": 1.0}, ctx,
                                  method="ic", window=40)
    late = w[80:]
    assert np.allclose(np.abs(w).sum(axis=1), 1.0)
    assert late[:, 0].mean() > 0.3 and late[:, 1].mean() > 0.3 and late[:, 2].mean() < 0.15
    assert np.nanmean(ic[:, 1]) > 0.1           # direction aligned by the sign
    # the composite beats each single factor's IC
    from backtest.evaluate import rank_ic_series
    assert np.nanmean(rank_ic_series(score, ctx)[80:]) > np.nanmean(ic[80:, 0])


@pytest.mark.parametrize("method", ["ic", "icir"])
@pytest.mark.parametrize("horizon", [1, 5])
def test_weights_and_score_are_causal(method, horizon):
    """Perturbing prices and factors after day t leaves weights and score up to t unchanged."""
    opn, raw = _world(1)
    signs = {"good": 1.0, "bad": -1.0, "noise": 1.0}
    s0, w0, _ = combine_panels(raw, signs, _ctx(opn, horizon), method=method, window=30)
    rng = np.random.default_rng(9)
    for t in (60, 100, 140):
        opn2 = opn.copy()
        opn2[t + 1:] *= np.exp(0.2 * rng.standard_normal(opn2[t + 1:].shape))
        raw2 = {k: v.copy() for k, v in raw.items()}
        for v in raw2.values():
            v[t + 1:] = rng.standard_normal(v[t + 1:].shape)
        s1, w1, _ = combine_panels(raw2, signs, _ctx(opn2, horizon), method=method, window=30)
        np.testing.assert_array_equal(w1[:t + 1], w0[:t + 1])
        np.testing.assert_array_equal(s1[:t + 1], s0[:t + 1])
        assert not np.array_equal(w1[t + 1:], w0[t + 1:])     # the future did change


def test_lag_is_exactly_horizon_plus_one():
    rng = np.random.default_rng(3)
    ic = rng.standard_normal((50, 2)) * 0.1 + 0.05
    for h in (1, 3):
        w0 = factor_weights(ic, "ic", window=10, horizon=h, clip_negative=False)
        t = 30
        a = ic.copy()
        a[t - h:] += 5.0                              # IC of days >= t-h: unknown at t
        np.testing.assert_array_equal(factor_weights(a, "ic", window=10, horizon=h,
                                                     clip_negative=False)[:t + 1], w0[:t + 1])
        b = ic.copy()
        b[t - h - 1, 0] += 5.0                        # IC of day t-h-1: known at t
        assert not np.allclose(factor_weights(b, "ic", window=10, horizon=h,
                                              clip_negative=False)[t], w0[t])


def test_equal_and_fallback_weights():
    ic = np.full((10, 4), np.nan)
    np.testing.assert_allclose(factor_weights(ic, "equal"), 0.25)
    np.testing.assert_allclose(factor_weights(ic, "ic", window=5), 0.25)  # no history: equal
    neg = -np.abs(np.random.default_rng(0).standard_normal((30, 2)))
    w = factor_weights(neg, "ic", window=5)
    np.testing.assert_allclose(w[10:], 0.5)                              # all clipped: equal
    with pytest.raises(EvaluationError, match="unknown combination method"):
        factor_weights(ic, "magic")


def test_composite_renormalises_over_finite_factors():
    a = np.array([[1.0, 2.0, 3.0, np.nan]])
    b = np.array([[3.0, np.nan, 1.0, np.nan]])
    w = np.array([[0.75, 0.25]])
    raw = np.array([[(0.75 * 1 + 0.25 * 3) / 1.0, 2.0, (0.75 * 3 + 0.25 * 1), np.nan]])
    expect = (raw - np.nanmean(raw)) / np.nanstd(raw)
    np.testing.assert_allclose(composite([a, b], w), expect)


def test_select_members_prunes_correlated_in_order():
    opn, raw = _world(2)
    raw = dict(raw)
    raw["good_copy"] = 2 * raw["good"] + 0.01
    raw["bad_neg"] = -raw["bad"]
    ctx = _ctx(opn)
    kept, dropped = select_members(["good", "good_copy", "bad", "bad_neg", "noise"], raw, ctx,
                                   max_corr=0.7)
    assert kept == ["good", "noise"]
    assert "good_copy" in [d[0] for d in dropped]
    assert "bad_neg" in [d[0] for d in dropped]       # |corr| counts negative correlation
    assert "bad" in [d[0] for d in dropped]           # corr(good, bad) ~ -0.8
    with pytest.raises(EvaluationError, match="test split"):
        select_members(["good"], raw, ctx, split="test")


class _EmptyStore:
    def top(self, *a, **k):
        return []


class _WS:
    universe = "csi300"
    dm = None
    ctx = None


def test_empty_leaderboard_error_says_what_to_run():
    with pytest.raises(StoreError, match="mine library --add"):
        combine_from_store(_WS(), _EmptyStore())


# ------------------------------------------------------------ sign-consistent selection
def _rec(name, train, valid, icir, *, forced=False, rid=1):
    from factors.store_records import FactorRecord
    prov = {"forced": True, "forced_kind": "below_floor"} if forced else {}
    return FactorRecord(formula=f"f_{name}", name=name, source="library", universe="csi300",
                        horizon=1, metrics={"train": {"rank_ic_mean": train},
                                            "valid": {"rank_ic_mean": valid,
                                                      "rank_icir": icir}},
                        provenance=prov, id=rid)


class _Store:
    def __init__(self, recs):
        self.recs = recs

    def top(self, n=None, sort="valid.rank_icir", universe=None):
        return list(self.recs)[:n] if n else list(self.recs)


def test_sign_flip_is_never_selected():
    from backtest.combine import rank_records
    flip = _rec("flip", -0.0014, 0.0119, 0.9)
    ranked, dropped = rank_records([flip], 10)
    assert ranked == [] and dropped[0][0] == "flip" and "sign_flip" in dropped[0][1]
    with pytest.raises(StoreError, match="eligible"):
        combine_from_store(_WS(), _Store([flip]))
    ok = _rec("ok", -0.02, -0.0119, -0.3)
    assert rank_records([flip, ok], 10)[0] == [ok]


def test_ranking_is_by_oriented_valid_icir():
    from backtest.combine import rank_records
    big_flip = _rec("big_flip", 0.03, -0.05, -2.0, rid=1)       # |ICIR| 2 but wrong sign
    a = _rec("a", 0.03, 0.02, 0.5, rid=2)
    b = _rec("b", -0.03, -0.03, -0.8, rid=3)                    # oriented ICIR +0.8
    ranked, dropped = rank_records([big_flip, a, b], 10)
    assert [r.name for r in ranked] == ["b", "a"]
    assert [d[0] for d in dropped] == ["big_flip"]
    assert [r.name for r in rank_records([a, b], 1)[0]] == ["b"]


def test_below_floor_and_forced_selection():
    from backtest.combine import rank_records
    low = _rec("low", 0.03, 0.004, 0.9)
    forced = _rec("forced", 0.03, 0.002, 0.1, forced=True, rid=2)
    good = _rec("good", 0.03, 0.02, 0.2, rid=3)
    ranked, dropped = rank_records([low, forced, good], 10)
    assert [r.name for r in ranked] == ["good"]
    assert {d[0] for d in dropped} == {"low", "forced"}
    ranked, _ = rank_records([low, forced, good], 10, include_forced=True)
    assert [r.name for r in ranked] == ["good", "forced"]      # 'low' (not forced) stays out
