"""Synthetic tests of the evaluator (backtest/evaluate.py) and its rank kernels (metrics_ic)."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from backtest.context import DECAY_HORIZONS, EvalConfig, EvalContext, forward_returns
from backtest.evaluate import (
    FactorReport,
    evaluate_factor,
    factor_corr,
    mean_rank_ic,
    rank_ic_series,
)
from backtest.ic_turnover import (eligible_values, ic_and_turnover, label_ranks, rank_ic,
                                  score_prep)
from backtest.metrics_ic import quantile_buckets, spearman_from_orders
from factors._kernels_cs import pearson_rows, rank_corr_rows
from factors.errors import EvaluationError
from factors.row_order import row_orders

SPLITS = {"train": ("2020-01-01", "2020-06-30"), "valid": ("2020-07-01", "2020-10-31"),
          "test": ("2020-11-01", "2021-03-31")}
ALL = ("train", "valid", "test")


def _market(T=320, N=40, seed=0, p_nan=0.03, p_out=0.3, p_untradable=0.05):
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=T)
    codes = pd.Index([f"{600000 + i}.SH" for i in range(N)])
    opn = 10.0 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0))
    opn[rng.random((T, N)) < p_nan] = np.nan
    um = rng.random((T, N)) >= p_out
    tr = rng.random((T, N)) >= p_untradable
    return dates, codes, opn, um, tr


def _ctx(seed=0, **kw):
    dates, codes, opn, um, tr = _market(seed=seed, **{k: v for k, v in kw.items()
                                                      if k in ("T", "N", "p_nan")})
    opts = {k: v for k, v in kw.items() if k in ("horizons", "horizon", "embargo")}
    return EvalContext.from_arrays(dates, codes, opn, um, tr, SPLITS, **opts)


@pytest.fixture(scope="module")
def ctx():
    return _ctx()


# ---------------------------------------------------------------- forward returns

def test_forward_returns_matches_pandas_shift_oracle():
    rng = np.random.default_rng(3)
    df = pd.DataFrame(rng.uniform(5, 15, (60, 7)))
    df[df > 14] = np.nan
    for h in (1, 2, 5, 20):
        exp = (df.shift(-(1 + h)) / df.shift(-1) - 1.0).to_numpy()
        got = forward_returns(df, h)
        np.testing.assert_allclose(got, exp, rtol=1e-14, atol=0, equal_nan=True)
        assert np.isnan(got[-(h + 1):]).all()


def test_forward_returns_is_causal_in_label_sense_and_validates():
    rng = np.random.default_rng(4)
    o = rng.uniform(5, 15, (50, 5))
    h = 5
    base = forward_returns(o, h)
    for t in (0, 10, 30):
        o2 = o.copy()
        o2[t + 2 + h:] = rng.uniform(1, 2, o2[t + 2 + h:].shape)   # rows after t+1+h
        o2[:t + 1] = 99.0                                           # rows up to t
        np.testing.assert_array_equal(forward_returns(o2, h)[t], base[t])
    o[3, 0] = 0.0
    o[4, 1] = -1.0
    f1 = forward_returns(o, 1)
    assert np.isnan(f1[2, 0]) and np.isnan(f1[1, 0]) and np.isnan(f1[3, 1])
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="horizon"):
            forward_returns(o, bad)


# ---------------------------------------------------------------- context

def test_context_eligibility_and_embargo():
    dates, codes, opn, um, tr = _market()
    c = EvalContext.from_arrays(dates, codes, opn, um, tr, SPLITS, embargo=7)
    np.testing.assert_array_equal(c.eligible[:-1], um[:-1] & tr[1:])
    assert not c.eligible[-1].any()
    gap = max(7, max(DECAY_HORIZONS) + 1)
    for name, (s, e) in SPLITS.items():
        in_range = np.flatnonzero((dates >= s) & (dates <= e))
        rows = np.flatnonzero(c.split_rows[name])
        np.testing.assert_array_equal(rows, in_range[:-gap])
        # the longest label of the last kept row ends inside the split's own date range
        assert rows[-1] + 1 + max(DECAY_HORIZONS) <= in_range[-1]
    c2 = EvalContext.from_arrays(dates, codes, opn, um, tr, SPLITS, horizons=(1,), embargo=40)
    n_range = ((dates >= "2020-01-01") & (dates <= "2020-06-30")).sum()
    assert c2.split_rows["train"].sum() == n_range - 40
    assert set(c2.fwd) == {1}


def test_context_rejects_bad_inputs():
    dates, codes, opn, um, tr = _market()
    with pytest.raises(EvaluationError, match="universe_mask"):
        EvalContext.from_arrays(dates, codes, opn, um[:, :-1], tr, SPLITS)
    with pytest.raises(EvaluationError, match="increasing"):
        EvalContext.from_arrays(dates[::-1], codes, opn, um, tr, SPLITS)
    with pytest.raises(EvaluationError, match="before start"):
        EvalContext.from_arrays(dates, codes, opn, um, tr, {"x": ("2021-01-01", "2020-01-01")})
    c = EvalContext.from_arrays(dates, codes, opn, um, tr, SPLITS)
    with pytest.raises(EvaluationError, match="unknown split 'holdout'"):
        evaluate_factor(c.fwd[1], c, splits=("holdout",))
    with pytest.raises(EvaluationError, match="shape"):
        mean_rank_ic(np.zeros((3, 3)), c)
    with pytest.raises(EvaluationError, match="quantiles"):
        evaluate_factor(c.fwd[1], c, quantiles=1)


class _FakeDM:
    """The DataManager surface from_data uses, serving a synthetic market."""

    def __init__(self):
        self.dates, self.codes, self.opn, self.um, self.tr = _market(T=300, N=12, seed=9)
        self.calls = {}

    def calendar(self, start, end):
        return self.dates[(self.dates >= start) & (self.dates <= end)]

    def universe_codes(self, universe, start, end):
        return self.codes

    def panels(self, fields, start, end, codes=None, universe=None):
        sel = (self.dates >= start) & (self.dates <= end)
        df = pd.DataFrame(self.opn[sel], index=self.dates[sel], columns=self.codes)
        return {"open": df[list(codes)[::-1]]}             # shuffled columns: must be realigned

    def universe_mask(self, universe, dates, codes):
        return self.um[self.dates.get_indexer(dates)]

    def tradable_mask(self, start, end, codes, min_listed_days=60, side="both"):
        self.calls["min_listed_days"], self.calls["side"] = min_listed_days, side
        sel = (self.dates >= start) & (self.dates <= end)
        return self.tr[sel]


def test_from_data_uses_manager_and_config():
    dm = _FakeDM()
    cfg = EvalConfig(horizon=5, train=("2020-01-01", "2020-08-31"),
                     valid=("2020-09-01", "2020-12-31"), test=("2021-01-01", "2021-12-31"),
                     embargo=25, min_listed_days=30)
    c = EvalContext.from_data(dm, "csi300", "2020-01-01", "2021-02-26", cfg)
    sel = (dm.dates >= "2020-01-01") & (dm.dates <= "2021-02-26")
    assert c.universe == "csi300" and c.horizon == 5 and dm.calls["min_listed_days"] == 30
    assert dm.calls["side"] == "both"              # the long-short needs both sides at t+1
    np.testing.assert_array_equal(c.fwd[5], forward_returns(dm.opn[sel], 5))
    np.testing.assert_array_equal(c.eligible[:-1], dm.um[sel][:-1] & dm.tr[sel][1:])
    n_train = ((dm.dates >= "2020-01-01") & (dm.dates <= "2020-08-31")).sum()
    assert c.split_rows["train"].sum() == n_train - 25


# ---------------------------------------------------------------- golden metrics

def test_factor_equal_to_label_is_perfect_on_every_split(ctx):
    reps = evaluate_factor(ctx.fwd[1], ctx, splits=ALL)
    assert list(reps) == list(ALL)
    for r in reps.values():
        assert r.n_ic_days == r.n_days > 50
        assert abs(r.rank_ic_mean - 1.0) < 1e-12 and abs(r.ic_mean - 1.0) < 1e-12
        assert r.rank_ic_pos == 1.0 and r.ic_decay[1] == r.rank_ic_mean
        q = r.quantile_ann_returns
        assert all(np.diff(q) > 0), q                  # monotone, q5 = highest factor
        assert r.ls_ann_return > 0 and r.ls_sharpe > 0 and r.ls_cum_return > 0
        assert r.ls_max_drawdown == 0.0                 # a perfect spread never loses
    neg = evaluate_factor(-ctx.fwd[1], ctx, splits=ALL)
    for r in neg.values():
        assert abs(r.rank_ic_mean + 1.0) < 1e-12 and abs(r.ic_mean + 1.0) < 1e-12
        assert all(np.diff(r.quantile_ann_returns) < 0) and r.ls_ann_return < 0


def test_ic_decay_peaks_at_the_matching_horizon(ctx):
    r = evaluate_factor(ctx.fwd[5], ctx)["train"]
    assert set(r.ic_decay) == set(DECAY_HORIZONS)
    assert abs(r.ic_decay[5] - 1.0) < 1e-12
    assert all(r.ic_decay[k] < 0.9 for k in (1, 10, 20))


def test_constant_and_all_nan_factors_give_nan_ic_but_coverage(ctx):
    T, N = ctx.shape
    const = np.full((T, N), 3.0)
    const[:, :4] = np.nan                                # 4 names without a value
    r = evaluate_factor(const, ctx)["train"]
    for k in ("rank_ic_mean", "rank_icir", "ic_mean", "icir", "ls_ann_return", "ls_sharpe",
              "turnover", "rank_autocorr"):
        assert math.isnan(getattr(r, k)), k
    lo, hi = ctx.split_bounds("train")
    e = ctx.eligible[lo:hi]
    exp = np.mean(e[:, 4:].sum(1) / e.sum(1))
    assert r.coverage == pytest.approx(exp, rel=1e-12) and r.coverage < 1
    r0 = evaluate_factor(np.full((T, N), np.nan), ctx)["valid"]
    assert r0.coverage == 0.0 and math.isnan(r0.rank_ic_mean) and r0.n_ic_days == 0
    d = r0.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["rank_ic_mean"] is None and d["coverage"] == 0.0


def test_random_factor_has_small_ic(ctx):
    f = np.random.default_rng(11).standard_normal(ctx.shape)
    r = evaluate_factor(f, ctx)
    for rep in r.values():
        # daily RankIC over ~25 names has sd ~0.2: the mean over ~100 days is within ~0.1
        assert abs(rep.rank_ic_mean) < 0.1 and abs(rep.ic_mean) < 0.1
        assert 0.0 < rep.rank_ic_std < 0.5
        assert rep.rank_icir == pytest.approx(rep.rank_ic_mean / rep.rank_ic_std)
        assert rep.rank_ic_t == pytest.approx(rep.rank_icir * math.sqrt(rep.n_ic_days))
        assert abs(rep.rank_autocorr) < 0.1 and 0.5 < rep.turnover < 1.0


def test_report_to_dict_is_json_safe_and_complete(ctx):
    r = evaluate_factor(ctx.fwd[1] + np.random.default_rng(2).normal(0, 0.05, ctx.shape), ctx)
    d = r["valid"].to_dict()
    s = json.loads(json.dumps(d, allow_nan=False))
    for k in ("rank_ic_mean", "rank_icir", "ic_mean", "icir", "turnover", "ls_ann_return",
              "ls_sharpe", "coverage"):
        assert isinstance(s[k], float), k
    assert set(s["ic_decay"]) == {"1", "2", "5", "10", "20"} and len(s["quantile_ann_returns"]) == 5
    assert isinstance(r["valid"], FactorReport) and s["split"] == "valid"


# ---------------------------------------------------------------- hand-computed examples

def _tiny_ctx(opn, factor_rows, horizon=1):
    T, N = opn.shape
    dates = pd.bdate_range("2021-01-04", periods=T)
    ones = np.ones((T, N), bool)
    c = EvalContext.from_arrays(dates, [f"{i}.SZ" for i in range(N)], opn, ones, ones,
                                {"all": (dates[0], dates[-1])}, horizons=(horizon,),
                                horizon=horizon, embargo=0)
    f = np.full((T, N), np.nan)
    if len(factor_rows):
        f[:len(factor_rows)] = factor_rows
    return c, f


def test_long_short_two_day_hand_example():
    # 4 names, Q=2. Day 0 label: o[2]/o[1]-1 ; day 1 label: o[3]/o[2]-1.
    opn = np.array([[10, 10, 10, 10],
                    [10, 10, 10, 10],
                    [11, 10, 9, 10],       # day-0 returns +10%, 0, -10%, 0
                    [11, 11, 9, 9.9]])     # day-1 returns 0, +10%, 0, -1%
    factor = [[4, 3, 1, 2],               # top {0, 1}: mean .05 ; bottom {2, 3}: mean -.05
              [1, 2, 3, 4]]               # top {2, 3}: mean -.005 ; bottom {0, 1}: .05
    c, f = _tiny_ctx(opn, factor)
    assert np.flatnonzero(c.split_rows["all"]).tolist() == [0, 1]
    r = evaluate_factor(f, c, splits=("all",), quantiles=2)["all"]
    ls = np.array([0.05 - (-0.05), -0.005 - 0.05])
    assert r.ls_ann_return == pytest.approx(ls.mean() * 252, rel=1e-12)
    assert r.ls_sharpe == pytest.approx(ls.mean() / ls.std(ddof=1) * math.sqrt(252), rel=1e-12)
    assert r.ls_cum_return == pytest.approx((1 + ls[0]) * (1 + ls[1]) - 1, rel=1e-12)
    assert r.ls_max_drawdown == pytest.approx((1 + ls[1]) - 1, rel=1e-12)   # 1.1 -> 1.1*0.945
    assert r.quantile_ann_returns == pytest.approx([(-0.05 + 0.05) / 2 * 252,
                                                    (0.05 - 0.005) / 2 * 252], rel=1e-12)
    assert r.turnover == 1.0                                         # top set fully replaced


def test_long_short_annualisation_with_horizon_two():
    rng = np.random.default_rng(5)
    T, N = 9, 6
    opn = 10 * np.exp(np.cumsum(rng.normal(0, 0.03, (T, N)), axis=0))
    c, _ = _tiny_ctx(opn, [], horizon=2)
    rows = np.flatnonzero(c.split_rows["all"])
    assert rows.tolist() == list(range(T - 3))
    f = c.fwd[2].copy()
    r = evaluate_factor(f, c, splits=("all",), quantiles=3)["all"]
    y = c.fwd[2][rows]
    srt = np.sort(y, axis=1)
    ls = srt[:, -2:].mean(1) - srt[:, :2].mean(1)
    assert r.ls_ann_return == pytest.approx(ls.mean() / 2 * 252, rel=1e-12)
    assert r.ls_sharpe == pytest.approx(ls.mean() / ls.std(ddof=1) * math.sqrt(126), rel=1e-12)
    assert r.ls_cum_return == pytest.approx(np.prod(1 + ls[::2]) - 1, rel=1e-12)


def test_turnover_hand_example():
    opn = np.tile(np.arange(1.0, 7.0), (6, 1)) * np.arange(1, 7)[:, None]   # any finite labels
    factor = [[1, 2, 3, 4, 5, 6],      # Q=3, top = {4, 5}
              [1, 2, 3, 6, 5, 4],      # top {3, 4}: 1 of 2 new
              [1, 2, 3, 6, 5, 4],      # same: 0 new
              [6, 5, 4, 3, 2, 1]]      # top {0, 1}: 2 of 2 new
    c, f = _tiny_ctx(opn, factor)
    assert c.split_rows["all"].sum() == 4
    r = evaluate_factor(f, c, splits=("all",), quantiles=3)["all"]
    assert r.turnover == pytest.approx((0.5 + 0.0 + 1.0) / 3)
    assert r.coverage == 1.0


def test_rank_autocorr_of_a_static_ranking_is_one(ctx):
    T, N = ctx.shape
    rng = np.random.default_rng(8)
    base = np.tile(rng.standard_normal(N), (T, 1)) * np.linspace(1, 2, T)[:, None]
    assert evaluate_factor(base, ctx)["train"].rank_autocorr == pytest.approx(1.0, abs=1e-12)
    flip = base * np.where(np.arange(T) % 2 == 0, 1.0, -1.0)[:, None]   # reverses each day
    assert evaluate_factor(flip, ctx)["train"].rank_autocorr == pytest.approx(-1.0, abs=1e-12)


# ---------------------------------------------------------------- eligibility and causality

def test_ineligible_names_never_enter():
    dates, codes, opn, um, tr = _market(seed=21)
    tr[:, 5] = False                          # never tradable
    um[:, 6] = False                          # never in the universe
    c = EvalContext.from_arrays(dates, codes, opn, um, tr, SPLITS)
    f = c.fwd[1].copy()
    f[:, 5] = 1e9 * np.sign(np.random.default_rng(0).standard_normal(len(dates)))
    f[:, 6] = -1e9
    r = evaluate_factor(f, c)["train"]
    assert abs(r.rank_ic_mean - 1) < 1e-12 and abs(r.ic_mean - 1) < 1e-12
    # execution-day rule: untradable at t+1 only removes the name from row t
    t0 = int(np.flatnonzero(c.split_rows["train"])[10])
    j = int(np.flatnonzero(c.eligible[t0] & np.isfinite(c.fwd[1][t0]))[0])
    g = c.fwd[1].copy()
    g[t0, j] = -g[t0, j] * 100 - 1                    # garbage that breaks row t0's IC
    assert rank_ic_series(g, c)[t0] < 1 - 1e-6
    tr2 = tr.copy()
    tr2[t0 + 1, j] = False
    c2 = EvalContext.from_arrays(dates, codes, opn, um, tr2, SPLITS)
    assert rank_ic_series(g, c2)[t0] == pytest.approx(1.0, abs=1e-12)
    tr3 = tr.copy()
    tr3[t0, j] = False                                # untradable on t itself: still counts
    c3 = EvalContext.from_arrays(dates, codes, opn, um, tr3, SPLITS)
    assert rank_ic_series(g, c3)[t0] < 1 - 1e-6


def test_train_metrics_unchanged_when_the_future_is_randomised():
    dates, codes, opn, um, tr = _market(seed=31)
    c = EvalContext.from_arrays(dates, codes, opn, um, tr, SPLITS)
    rng = np.random.default_rng(32)
    f = c.fwd[1] + rng.normal(0, 0.02, c.shape)
    base = evaluate_factor(f, c, splits=("train",))["train"].to_dict()
    last = int(np.flatnonzero(c.split_rows["train"])[-1])
    end = int(np.flatnonzero(dates <= SPLITS["train"][1])[-1])      # train range end row
    assert end - last >= max(DECAY_HORIZONS) + 1
    f2 = f.copy()
    f2[last + 1:] = rng.standard_normal(f2[last + 1:].shape)         # embargo and beyond
    opn2, um2, tr2 = opn.copy(), um.copy(), tr.copy()
    opn2[end + 1:] = rng.uniform(1, 100, opn2[end + 1:].shape)
    um2[end + 1:] = rng.random(um2[end + 1:].shape) < 0.5
    tr2[end + 1:] = rng.random(tr2[end + 1:].shape) < 0.5
    c2 = EvalContext.from_arrays(dates, codes, opn2, um2, tr2, SPLITS)
    assert evaluate_factor(f2, c2, splits=("train",))["train"].to_dict() == base
    assert mean_rank_ic(f2, c2) == mean_rank_ic(f, c) == base["rank_ic_mean"]
    assert evaluate_factor(f2, c2)["valid"].to_dict() != evaluate_factor(f, c)["valid"].to_dict()


def test_restrict_keeps_earlier_metrics():
    dates, codes, opn, um, tr = _market(seed=41)
    c = EvalContext.from_arrays(dates, codes, opn, um, tr, SPLITS)
    f = c.fwd[1] + np.random.default_rng(42).normal(0, 0.02, c.shape)
    cut = c.restrict(dates[0], SPLITS["train"][1])
    k = len(cut.dates)
    assert k < len(dates) and cut.shape == (k, len(codes))
    assert cut.split_rows["train"].sum() == c.split_rows["train"].sum()
    assert not cut.split_rows["valid"].any()
    full = evaluate_factor(f, c, splits=("train",))["train"].to_dict()
    assert evaluate_factor(f[:k], cut, splits=("train",))["train"].to_dict() == full


def test_test_split_only_when_asked(ctx):
    assert set(evaluate_factor(ctx.fwd[1], ctx)) == {"train", "valid"}
    assert "test" in evaluate_factor(ctx.fwd[1], ctx, splits=("test",))


# ---------------------------------------------------------------- fast entry points vs oracles

def _noisy(ctx, seed):
    rng = np.random.default_rng(seed)
    f = np.round(ctx.fwd[1] + rng.normal(0, 0.02, ctx.shape), 2)   # rounding creates ties
    f[rng.random(ctx.shape) < 0.1] = np.nan
    return f


def test_rank_ic_series_and_mean_match_the_shared_kernel(ctx):
    f = _noisy(ctx, 1)
    for h in (1, 5):
        exp = rank_corr_rows(f, ctx.fwd[h], ctx.eligible)
        np.testing.assert_allclose(rank_ic_series(f, ctx, h), exp, rtol=0, atol=1e-12,
                                   equal_nan=True)
    lo, hi = ctx.split_bounds("valid")
    exp = np.nanmean(rank_corr_rows(f, ctx.fwd[1], ctx.eligible)[lo:hi])
    assert mean_rank_ic(f, ctx, "valid") == pytest.approx(exp, abs=1e-12)
    r = evaluate_factor(f, ctx)["valid"]
    assert r.rank_ic_mean == pytest.approx(exp, abs=1e-12)
    ic = pearson_rows(f, ctx.fwd[1], ctx.eligible)[lo:hi]
    assert r.ic_mean == pytest.approx(np.nanmean(ic), abs=1e-12)
    assert mean_rank_ic(pd.DataFrame(f, ctx.dates, ctx.codes), ctx, "valid") == \
        mean_rank_ic(f, ctx, "valid")
    assert math.isnan(mean_rank_ic(np.ones(ctx.shape), ctx))


def test_factor_corr(ctx):
    f = _noisy(ctx, 2)
    g = _noisy(ctx, 3)
    assert factor_corr(f, f, ctx) == pytest.approx(1.0, abs=1e-12)
    assert factor_corr(f, -f, ctx) == pytest.approx(-1.0, abs=1e-12)
    assert factor_corr(f, np.exp(50 * f), ctx) == pytest.approx(1.0, abs=1e-12)
    lo, hi = ctx.split_bounds("valid")
    exp = np.nanmean(rank_corr_rows(f, g, ctx.eligible)[lo:hi])
    assert factor_corr(f, g, ctx) == pytest.approx(exp, abs=1e-12)
    assert 0.3 < factor_corr(f, g, ctx) < 0.99


def test_spearman_from_orders_and_buckets():
    rng = np.random.default_rng(7)
    R, N = 30, 50
    a = np.round(rng.standard_normal((R, N)), 1)
    b = rng.standard_normal((R, N))
    a[rng.random((R, N)) < 0.1] = np.nan
    b[rng.random((R, N)) < 0.1] = np.nan
    m = rng.random((R, N)) < 0.7
    oa, na = row_orders(a)
    ob, nb = row_orders(b, m)
    corr, ranks, counts = spearman_from_orders(a, oa, na, b, ob, nb, m, want_ranks=True)
    np.testing.assert_allclose(corr, rank_corr_rows(a, b, m), atol=1e-12, equal_nan=True)
    sub = m & np.isfinite(a) & np.isfinite(b)
    np.testing.assert_array_equal(counts, sub.sum(1))
    exp = pd.DataFrame(np.where(sub, a, np.nan)).rank(axis=1).to_numpy()
    np.testing.assert_allclose(ranks, exp, equal_nan=True)
    # equal-count buckets without ties; tied names share a bucket
    y = np.tile(np.arange(10.0), (2, 1))
    rk = np.vstack([np.arange(1.0, 11.0), [1.5, 1.5, 3, 4, 5, 6, 7, 8, 9.5, 9.5]])
    means, top = quantile_buckets(rk, np.array([10, 10]), y, 5)
    np.testing.assert_allclose(means[0], [0.5, 2.5, 4.5, 6.5, 8.5])
    np.testing.assert_array_equal(np.flatnonzero(top[0]), [8, 9])
    np.testing.assert_allclose(means[1], [0.5, 2.5, 4.5, 6.5, 8.5])
    means, _ = quantile_buckets(np.full((1, 4), 2.5), np.array([4]), np.ones((1, 4)), 5)
    assert np.isnan(means).all()                                     # fewer names than Q


def _ic_turnover_case(rng, trial):
    R, N = (120, 40) if trial < 12 else (60, 150)       # 150 names: > 16 label names dropped
    f = rng.standard_normal((R, N))
    if trial % 3 == 1:
        f = np.round(f * 2)                                            # heavy ties
    f[rng.random(f.shape) < (rng.random() * 0.3 if trial < 12 else 0.1 + 0.1 * (trial % 3))] = np.nan
    if trial % 4 == 0:
        f[:30] = np.nan                                                # warm-up rows
    f[40:60, 3] = np.nan                                               # a suspension
    y = rng.standard_normal((R, N))
    y[rng.random(y.shape) < 0.1] = np.nan
    e = rng.random((R, N)) < 0.8 if trial % 2 else np.ones((R, N), bool)
    e[70:, 5] = False                                                  # leaves the universe
    return f, y, e


@pytest.mark.parametrize("trial", range(16))
def test_ic_and_turnover_equal_the_two_spearman_calls_bit_for_bit(trial):
    f, y, e = _ic_turnover_case(np.random.default_rng(100 + trial), trial)
    oy, ny = row_orders(y, e)
    of, nf = row_orders(f)
    ic = spearman_from_orders(f, of, nf, y, oy, ny, e)
    auto = spearman_from_orders(f[1:], of[1:], nf[1:], f[:-1], of[:-1], nf[:-1], e[1:])
    ry, ly = label_ranks(y, oy, ny, e)
    got_ic, got_auto, covered = ic_and_turnover(f, of, nf, oy, ny, e, ry, ly)
    assert covered == np.count_nonzero(np.isfinite(f) & e)
    np.testing.assert_array_equal(got_ic, ic)            # NaN == NaN for array_equal here
    assert np.isnan(got_auto[0])
    np.testing.assert_array_equal(got_auto[1:], auto)
    # the factor sorted only on the names a row is ever ranked on (GP's Scorer) gives the same
    need = e.copy()
    need[:-1] |= e[1:]
    of2, nf2 = row_orders(f, need)
    got2 = ic_and_turnover(f, of2, nf2, oy, ny, e, ry, ly)
    np.testing.assert_array_equal(got2[0], ic)
    np.testing.assert_array_equal(got2[1][1:], auto)
    # ... and with the tie flags of the sort (what the Scorer passes)
    of3, nf3, tf3 = row_orders(f, need, ties=True)
    got3 = ic_and_turnover(f, of3, nf3, oy, ny, e, ry, ly, tf=tf3)
    np.testing.assert_array_equal(got3[0], ic)
    np.testing.assert_array_equal(got3[1][1:], auto)
    # the RankIC alone (a tournament's Scorer), on the compact rows of the eligible names,
    # gathered from either layout of a panel that starts before the scored rows
    prep = score_prep(e, ry, ly)
    lab_order = row_orders(prep[2], ties=True)
    padded = np.vstack([np.full((3, f.shape[1]), 7.0), f])
    for v in (padded, np.asfortranarray(padded)):
        fc = eligible_values(v, 3, prep[0], prep[1])
        assert fc.shape == prep[2].shape
        for r in range(f.shape[0]):
            np.testing.assert_array_equal(fc[r, :prep[1][r]], f[r, e[r]])
            assert np.isnan(fc[r, prep[1][r]:]).all()
        ic4, cov4 = rank_ic(fc, prep, lab_order)
        np.testing.assert_array_equal(ic4, ic)
        assert cov4 == covered


def test_label_ranks_are_pandas_average_ranks_on_the_subset():
    rng = np.random.default_rng(9)
    y = np.round(rng.standard_normal((20, 30)), 1)
    y[rng.random(y.shape) < 0.2] = np.nan
    e = rng.random(y.shape) < 0.7
    ranks, counts = label_ranks(y, *row_orders(y, e), e)
    sub = e & np.isfinite(y)
    np.testing.assert_array_equal(counts, sub.sum(1))
    exp = pd.DataFrame(np.where(sub, y, np.nan)).rank(axis=1).to_numpy()
    np.testing.assert_array_equal(ranks, exp)


# ---------------------------------------------------------------- Newey-West t (issue 11)

def test_newey_west_t_hand_computed():
    from backtest.metrics_ic import newey_west_t
    x = np.array([1.0, 2.0, 0.0, 3.0, 1.0, np.nan])        # NaN days are dropped
    # mean 1.4, e = -.4 .6 -1.4 1.6 -.4; gamma0 = 5.2/5 = 1.04;
    # gamma1 = (-.24 - .84 - 2.24 - .64)/5 = -.792; S = 1.04 + 2 (1 - 1/2)(-.792) = .248;
    # se = sqrt(S / (n - 1)) = sqrt(.062)
    t, se, n = newey_west_t(x, lags=1)
    assert n == 5 and se == pytest.approx(math.sqrt(0.062)) and t == pytest.approx(
        1.4 / math.sqrt(0.062))
    # lag 0 is the classic t with the ddof=1 standard deviation
    v = x[:5]
    assert newey_west_t(x, 0)[0] == pytest.approx(v.mean() / (v.std(ddof=1) / math.sqrt(5)))
    assert math.isnan(newey_west_t([1.0], 0)[0]) and math.isnan(newey_west_t([2.0, 2.0], 1)[0])


def test_rank_ic_t_is_hac_with_horizon_minus_one_lags_and_p_one_sided():
    from scipy.stats import t as student_t

    from backtest.evaluate import rank_ic_series
    from backtest.metrics_ic import newey_west_t
    c5 = _ctx(horizons=(1, 5), horizon=5, embargo=5)
    f = c5.fwd[5] + np.random.default_rng(4).normal(0, 0.05, c5.shape)
    rep = evaluate_factor(f, c5)["valid"]
    lo, hi = c5.split_bounds("valid")
    ric = rank_ic_series(f, c5)[lo:hi]
    t4 = newey_west_t(ric, 4)[0]
    assert rep.rank_ic_t == pytest.approx(t4)
    assert rep.rank_ic_t < rep.rank_icir * math.sqrt(rep.n_ic_days)   # overlap: less evidence
    assert rep.rank_ic_p == pytest.approx(student_t.sf(t4, rep.n_ic_days - 1))
    assert 0 <= rep.rank_ic_p < 0.01                                   # a real signal
    r1 = evaluate_factor(f, _ctx(horizons=(1,), horizon=1))["valid"]
    assert r1.rank_ic_t == pytest.approx(r1.rank_icir * math.sqrt(r1.n_ic_days))
    assert evaluate_factor(-f, c5)["valid"].rank_ic_p > 0.99
