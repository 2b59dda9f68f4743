"""Issue 14 combination methods (shrink, gs, sym, ridge, lgbm), the comparison table and the
TopK-dropout turnover budget: causality and known-answer tests on tiny synthetic panels."""
import numpy as np
import pandas as pd
import pytest

from backtest.combine import METHODS, combine_panels
from backtest.combine_compare import compare_panels
from backtest.combine_methods import (orthogonalise, pick_trailing, shrink_weights,
                                      walk_forward_scores)
from backtest.context import EvalContext
from backtest.evaluate import rank_ic_series
from backtest.strategies import budget_n_drop, rebalance_mask, topk_dropout_weights
from factors.errors import EvaluationError

T, N = 200, 60
DATES = pd.bdate_range("2019-01-01", periods=T)
CODES = [f"{600000 + i}.SH" for i in range(N)]
SPLITS = {"train": ("2019-01-01", "2019-04-30"), "valid": ("2019-05-01", "2019-08-31"),
          "test": ("2019-09-01", "2019-12-31")}
LEARN = dict(refit=20, min_train=30, ridge_alpha=0.01, num_threads=1)


def _prices(alpha, seed=0, scale=0.01):
    """Opens whose next-day open-to-open return carries ``alpha`` of the previous close:
    ``fwd_1[t] ~ alpha[t]``."""
    rng = np.random.default_rng(seed)
    r = 0.01 * rng.standard_normal(alpha.shape)
    r[2:] += scale * alpha[:-2]
    return 10 * np.exp(np.cumsum(r, axis=0))


def _ctx(opn, horizon=1, splits=SPLITS):
    ones = np.ones(opn.shape, bool)
    return EvalContext.from_arrays(DATES[:opn.shape[0]], CODES, opn, ones, ones, splits,
                                   horizons=(1, 2), horizon=horizon, embargo=2)


def _world(seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((T, N))
    raw = {"good": a + 0.7 * rng.standard_normal((T, N)),
           "bad": -a + 0.9 * rng.standard_normal((T, N)),
           "noise": rng.standard_normal((T, N))}
    return _prices(a, seed), raw


SIGNS = {"good": 1.0, "bad": -1.0, "noise": 1.0}


# ------------------------------------------------------------------ causality, every method
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("horizon", [1, 2])
def test_every_method_is_causal(method, horizon):
    """Changing prices and factors after day t leaves weights and composite up to t unchanged."""
    opn, raw = _world(1)
    s0, w0, _ = combine_panels(raw, SIGNS, _ctx(opn, horizon), method=method, window=20,
                               **LEARN)
    rng = np.random.default_rng(9)
    for t in (45, 90, 150):
        opn2 = opn.copy()
        opn2[t + 1:] *= np.exp(0.2 * rng.standard_normal(opn2[t + 1:].shape))
        raw2 = {k: v.copy() for k, v in raw.items()}
        for v in raw2.values():
            v[t + 1:] = rng.standard_normal(v[t + 1:].shape)
        s1, w1, _ = combine_panels(raw2, SIGNS, _ctx(opn2, horizon), method=method,
                                   window=20, **LEARN)
        np.testing.assert_array_equal(w1[:t + 1], w0[:t + 1])
        np.testing.assert_array_equal(s1[:t + 1], s0[:t + 1])
        assert not np.array_equal(s1[t + 1:], s0[t + 1:])


# ------------------------------------------------------------------ auto
def test_pick_trailing_follows_the_past_with_the_lag():
    """Candidate 0 has IC 0.1 until row 99, then -0.1; candidate 1 a constant 0.05. With a
    20-row window and h = 1, row t reads ICs of rows <= t - 2: the switch to 1 happens when the
    trailing mean of 0 drops below 0.05, i.e. when > 5 of its 20 known ICs are negative."""
    T_ = 200
    ic = np.column_stack([np.where(np.arange(T_) < 100, 0.1, -0.1), np.full(T_, 0.05)])
    ic[:3] = np.nan
    ch = pick_trailing(ic, window=20, horizon=1)
    assert (ch[:12] == 0).all()                 # < 10 known ICs: the first candidate
    assert (ch[12:106] == 0).all()              # rows <= 104 read at most 4 negative ICs
    # row 106 reads rows 87..104: 15 x 0.1 and 5 x -0.1 -> mean 0.05, a tie -> column 0
    assert ch[106] == 0 and (ch[107:] == 1).all()
    # a later change of the ICs never moves an earlier choice
    ic2 = ic.copy()
    ic2[150:] = -ic2[150:]
    np.testing.assert_array_equal(pick_trailing(ic2, window=20, horizon=1)[:152], ch[:152])


def test_auto_is_the_chosen_methods_composite_each_day():
    opn, raw = _world(3)
    ctx = _ctx(opn)
    s, w, _ = combine_panels(raw, SIGNS, ctx, method="auto", window=20, **LEARN)
    others = [m for m in METHODS if m != "auto"]
    from factors.processing import zscore
    comps = [zscore(combine_panels(raw, SIGNS, ctx, method=m, window=20, **LEARN)[0],
                    ctx.universe_mask) for m in others]
    ic = np.column_stack([rank_ic_series(c, ctx) for c in comps])
    ch = pick_trailing(ic, window=20, horizon=ctx.horizon)
    for t in (10, 80, 150, 199):
        np.testing.assert_array_equal(s[t], comps[ch[t]][t])
    assert w.shape == (T, len(raw))


# ------------------------------------------------------------------ shrink
def test_shrink_intensity_goes_to_zero_and_one():
    rng = np.random.default_rng(0)
    n = 400
    sep = np.array([0.01, 0.05, 0.10, 0.15]) + 0.02 * rng.standard_normal((n, 4))
    w, d = shrink_weights(sep, window=250, horizon=1)
    assert d[300:].max() < 0.02                              # well separated, long-sampled
    ic_w = sep[:, :].clip(0).mean(axis=0) / sep.clip(0).mean(axis=0).sum()
    np.testing.assert_allclose(w[-1], ic_w, atol=0.03)       # ~ plain IC weights
    noise = 0.1 * rng.standard_normal((n, 4))
    w, d = shrink_weights(noise, window=60, horizon=1)
    assert np.median(d[100:]) > 0.9 and d[100:].mean() > 0.75   # pure noise: ~ equal
    from backtest.combine import factor_weights
    w_ic = factor_weights(noise, "ic", window=60)
    assert np.abs(w[100:] - 0.25).mean() < 0.5 * np.abs(w_ic[100:] - 0.25).mean()
    np.testing.assert_allclose(np.abs(w).sum(axis=1), 1.0)


# ------------------------------------------------------------------ orthogonalisation
def _xs_corr(a, b):
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


def _collinear(seed=4):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((T, N))
    C = rng.standard_normal((T, N))
    B = A + 0.1 * rng.standard_normal((T, N))
    return A, B, C, _prices(A + C, seed, scale=0.02)


@pytest.mark.parametrize("how", ["gs", "sym"])
def test_orthogonalised_collinear_members_are_not_double_counted(how):
    A, B, C, opn = _collinear()
    ctx = _ctx(opn)
    from factors.processing import zscore
    Ao, Bo, Co = orthogonalise([zscore(A), zscore(B), zscore(C)], how)
    assert np.abs(_xs_corr(Ao, Bo)).max() < 1e-3              # pairwise uncorrelated
    assert np.abs(_xs_corr(Bo, Co)).max() < 1e-3
    if how == "gs":                                           # B's residual on A is ~ noise
        assert np.abs(_xs_corr(Bo, A)).max() < 1e-3
        np.testing.assert_allclose(_xs_corr(Ao, A), 1.0)
    raw = {"A": A, "B": B, "C": C}
    sg = {"A": 1.0, "B": 1.0, "C": 1.0}
    s_ic, *_ = combine_panels(raw, sg, ctx, method="ic", window=40)
    s_o, w_o, _ = combine_panels(raw, sg, ctx, method=how, window=40)
    late = slice(80, T - 2)
    # plain IC weights put ~2/3 on the A direction; after orthogonalisation A and C ~ even
    gap_ic = np.nanmean(_xs_corr(s_ic[late], A[late]) - _xs_corr(s_ic[late], C[late]))
    gap_o = np.nanmean(_xs_corr(s_o[late], A[late]) - _xs_corr(s_o[late], C[late]))
    assert gap_ic > 0.25 and abs(gap_o) < 0.1, (gap_ic, gap_o)
    if how == "gs":
        assert w_o[late, 1].mean() < 0.1                     # B's residual gets ~ no weight


def test_orthogonalise_rejects_unknown():
    with pytest.raises(EvaluationError, match="orthogonalisation"):
        orthogonalise([np.zeros((3, 4))], "qr")


# ------------------------------------------------------------------ learned combiners
def _planted(seed=5):
    rng = np.random.default_rng(seed)
    F1, F2 = rng.standard_normal((T, N)), rng.standard_normal((T, N))
    label = 0.7 * F1 + 0.3 * F2 + 0.3 * rng.standard_normal((T, N))
    return F1, F2, _prices(label, seed, scale=0.05)


def test_ridge_recovers_planted_weights_and_beats_equal():
    F1, F2, opn = _planted()
    ctx = _ctx(opn, splits={"train": SPLITS["train"], "valid": SPLITS["valid"]})
    score, W, fits = walk_forward_scores([F1, F2], ctx, "ridge", refit=40, min_train=60,
                                         alpha=0.0)
    assert fits and fits[0]["row"] == 61     # label rows 0..59 (s <= t - h - 1) known at 61
    c = np.array(fits[-1]["coef"])
    assert 7 / 3 * 0.8 < c[0] / c[1] < 7 / 3 * 1.25, c
    np.testing.assert_allclose(W[fits[-1]["row"]], c / c.sum())
    np.testing.assert_allclose(W[:61], 0.5)                  # equal weights before min_train
    raw = {"F1": F1, "F2": F2}
    s_eq, *_ = combine_panels(raw, {}, ctx, method="equal")
    late = slice(100, T)
    ic_r = np.nanmean(rank_ic_series(score, ctx)[late])
    ic_e = np.nanmean(rank_ic_series(s_eq, ctx)[late])
    assert ic_r > ic_e + 0.02, (ic_r, ic_e)


def test_lgbm_is_deterministic_and_learns():
    F1, F2, opn = _planted(6)
    ctx = _ctx(opn, splits={"train": SPLITS["train"], "valid": SPLITS["valid"]})
    a = walk_forward_scores([F1, F2], ctx, "lgbm", refit=50, min_train=60, num_threads=1)
    b = walk_forward_scores([F1, F2], ctx, "lgbm", refit=50, min_train=60, num_threads=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[1][-1, 0] > a[1][-1, 1]                          # F1 carries more gain
    assert np.nanmean(rank_ic_series(a[0], ctx)[100:]) > 0.3


@pytest.mark.parametrize("how", ["ridge", "lgbm"])
def test_learned_combiners_never_train_on_test_labels(how):
    """Changing prices inside the test split (labels only) changes nothing while sealed."""
    F1, F2, opn = _planted(7)
    t0 = int(np.flatnonzero(_ctx(opn).split_rows["test"])[0])
    opn2 = opn.copy()
    opn2[t0:] *= np.exp(0.3 * np.random.default_rng(1).standard_normal(opn2[t0:].shape))
    kw = dict(refit=15, min_train=30, num_threads=1)
    a = walk_forward_scores([F1, F2], _ctx(opn), how, **kw)
    b = walk_forward_scores([F1, F2], _ctx(opn2), how, **kw)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[2][-1]["row"] > t0                               # there were refits inside test
    c = walk_forward_scores([F1, F2], _ctx(opn2), how, use_test_labels=True, **kw)
    assert not np.array_equal(a[0], c[0])                     # unsealed: test labels used


def test_walk_forward_rejects_bad_options():
    F1, F2, opn = _planted()
    with pytest.raises(EvaluationError):
        walk_forward_scores([F1, F2], _ctx(opn), "svm")
    with pytest.raises(EvaluationError):
        walk_forward_scores([F1, F2], _ctx(opn), "ridge", refit=0)


# ------------------------------------------------------------------ comparison table
def test_compare_panels_one_row_per_method_on_valid():
    opn, raw = _world(2)
    ctx = _ctx(opn)
    rows = compare_panels(raw, SIGNS, ctx, window=20, **LEARN)
    assert [r.method for r in rows] == list(METHODS)
    n_valid = int(ctx.split_rows["valid"].sum())
    assert all(r.n_days == n_valid for r in rows)
    by = {r.method: r for r in rows}
    assert by["ic"].rank_ic_mean > 0.1 and by["ridge"].rank_ic_mean > 0.1
    assert all(np.isfinite(r.turnover) and np.isfinite(r.ls_ann_return) for r in rows)
    with pytest.raises(EvaluationError, match="test split"):
        compare_panels(raw, SIGNS, ctx, ("ic",), split="test")
    with pytest.raises(EvaluationError, match="unknown"):
        compare_panels(raw, SIGNS, ctx, ("magic",))


# ------------------------------------------------------------------ turnover budget
def test_budget_n_drop_formula():
    assert budget_n_drop(10, 50, "5") == 9                    # floor(10 * 50 * 5 / 252)
    assert budget_n_drop(10, 50, "5", n_drop=5) == 5          # n_drop is an upper bound
    assert budget_n_drop(10, 50, "weekly") == 9
    assert budget_n_drop(10, 50, "daily") == 1
    assert budget_n_drop(10, 10, "monthly") == 8
    assert budget_n_drop(100, 10, "monthly") == 10            # never more than k
    assert budget_n_drop(0, 10, "5", n_drop=3) == 3           # 0 = no budget
    assert budget_n_drop(1, 10, "daily") == 0


@pytest.mark.parametrize("budget, k, reb", [(10, 20, "5"), (4, 30, "weekly"), (30, 10, "1"),
                                            (6, 15, "monthly")])
def test_topk_dropout_stays_within_the_turnover_budget(budget, k, reb):
    rng = np.random.default_rng(3)
    TT, NN = 756, 80                                          # three years, fresh scores daily
    dates = pd.bdate_range("2019-01-01", periods=TT)
    score = rng.standard_normal((TT, NN))
    elig = rng.random((TT, NN)) > 0.1
    rb = rebalance_mask(dates, reb)
    nd = budget_n_drop(budget, k, reb)
    W = topk_dropout_weights(score, elig, k, nd, rb)
    rows = np.flatnonzero(rb)
    held = np.nan_to_num(W[rows])
    assert ((held > 0).sum(axis=1) == k).all()                # k names on every rebalance
    assert np.isnan(W[~rb]).all()                             # rebalance schedule respected
    one_way = np.abs(np.diff(held, axis=0)).sum(axis=1) / 2   # after the initial build
    annual = one_way.sum() / (TT / 252)
    assert annual <= budget * 1.05, (annual, budget, nd)
    assert annual >= budget * 0.5                             # the budget is used, not wasted
    for t in (100, 400):                                      # causal
        Wt = topk_dropout_weights(score[:t], elig[:t], k, nd, rb[:t])
        np.testing.assert_array_equal(Wt, W[:t])
