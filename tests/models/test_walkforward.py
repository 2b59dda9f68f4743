"""Walk-forward splits: embargo, no label window reaching a prediction date, OOS assembly."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.errors import ConfigError
from factors.errors import EvaluationError
from models.walkforward import (
    Fold,
    assemble_oos,
    fold_before,
    latest_fold_before,
    single_split,
    walk_forward,
)

DATES = pd.bdate_range("2012-01-02", "2016-12-30")


@pytest.mark.parametrize("h", [1, 5])
@pytest.mark.parametrize("train_years", [None, 2])
def test_no_training_label_window_overlaps_a_prediction_date(h, train_years):
    folds = walk_forward(DATES, "2014-01-01", "2016-06-30", retrain_months=6,
                         train_years=train_years, valid_months=6, embargo=h + 1, horizon=h)
    assert len(folds) == 5
    predicted = set()
    for f in folds:
        test_dates = set(range(f.test.start, f.test.stop))
        predicted |= test_dates
        # label of row t covers rows t+1 .. t+1+h
        for part in (f.train, f.valid):
            label_rows = {t + k for t in range(part.start, part.stop) for k in range(1, h + 2)}
            assert not label_rows & test_dates
        train_labels = {t + k for t in range(f.train.start, f.train.stop) for k in range(1, h + 2)}
        assert not train_labels & set(range(f.valid.start, f.valid.stop))
        assert f.train.stop <= f.valid.start <= f.valid.stop <= f.test.start
        if train_years:
            span = DATES[f.train.stop - 1] - DATES[f.train.start]
            assert span <= pd.Timedelta(days=366 * train_years)
        else:
            assert f.train.start == 0
    # test blocks tile the range exactly once
    expect = set(np.flatnonzero((DATES >= "2014-01-01") & (DATES <= "2016-06-30")))
    assert predicted == expect
    starts = [f.test.start for f in folds]
    assert starts == sorted(starts)
    assert all(a.test.stop == b.test.start for a, b in zip(folds, folds[1:]))


def test_embargo_must_cover_the_horizon():
    with pytest.raises(ConfigError, match="embargo"):
        walk_forward(DATES, "2014-01-01", "2014-12-31", embargo=2, horizon=5)
    with pytest.raises(ConfigError):
        walk_forward(DATES, "2014-01-01", "2014-12-31", retrain_months=0)
    with pytest.raises(ConfigError, match="no trading day"):
        walk_forward(DATES, "2030-01-01", "2030-12-31")
    with pytest.raises(EvaluationError, match="training dates"):
        walk_forward(DATES, "2012-03-01", "2012-12-31", valid_months=2)


def test_single_split_drops_embargo_rows():
    f = single_split(DATES, ("2012-01-01", "2013-12-31"), ("2014-01-01", "2014-12-31"),
                     ("2015-01-01", "2015-12-31"), embargo=3, horizon=1)
    assert DATES[f.train.stop + 2] == DATES[DATES <= "2013-12-31"][-1]
    assert f.train.stop + 1 + 1 < f.valid.start + 1
    assert DATES[f.test.stop - 1] == DATES[DATES <= "2015-12-31"][-1]
    with pytest.raises(ConfigError):
        single_split(DATES, ("2012-01-01", "2013-12-31"), ("2014-01-01", "2014-12-31"),
                     ("2015-01-01", "2015-12-31"), embargo=1, horizon=1)


def test_assemble_oos():
    T, N = 20, 3
    f1 = Fold(slice(0, 4), slice(5, 8), slice(10, 14))
    f2 = Fold(slice(0, 8), slice(9, 12), slice(14, 18))
    p1 = np.ones((4, N))
    p2 = np.full((T, N), 2.0)          # full-size panel: only its test rows are used
    out = assemble_oos([(f1, p1), (f2, p2)], T=T)
    assert out.shape == (T, N)
    assert np.isnan(out[:10]).all() and np.isnan(out[18:]).all()
    assert (out[10:14] == 1).all() and (out[14:18] == 2).all()
    with pytest.raises(EvaluationError, match="overlap"):
        assemble_oos([(f1, p1), (f1, p1)], T=T)
    with pytest.raises(EvaluationError):
        assemble_oos([(f1, np.ones((5, N)))], T=T)


@pytest.mark.parametrize("h", [1, 5])
def test_explanation_fold_label_windows_end_before_the_cutoff(h):
    cut = "2015-01-01"
    c = int(DATES.searchsorted(pd.Timestamp(cut)))
    # OOS from 2014: folds 0-1 (test 2014 H1 / H2) and 2 (test 2015 H1, valid 2014 H2) end
    # before 2015; fold 3 (test 2015 H2) early-stops on 2015 H1
    folds = walk_forward(DATES, "2014-01-01", "2015-12-31", retrain_months=6, valid_months=6,
                         embargo=h + 1, horizon=h)
    k = latest_fold_before(folds, DATES, cut, h + 1)
    assert k == 2 and folds[k].test.start == c
    for f in (folds[k], fold_before(DATES, cut, 6, h + 1, horizon=h)):
        last = max(f.train.stop, f.valid.stop) - 1
        assert last + 1 + h < c                     # the last label window ends before c
        assert f.train.stop <= f.valid.start
    assert fold_before(DATES, cut, 6, h + 1, horizon=h) == Fold(folds[k].train, folds[k].valid,
                                                                 slice(c, c))
    # OOS after the cutoff: nothing qualifies; one embargo row short does not qualify either
    late = walk_forward(DATES, "2015-07-01", "2015-12-31", valid_months=6, embargo=h + 1,
                        horizon=h)
    assert latest_fold_before(late, DATES, cut, h + 1) is None
    assert latest_fold_before(folds, DATES, cut, h + 2) == 1
    assert latest_fold_before(folds, DATES, "2011-01-01", h + 1) is None
    with pytest.raises(EvaluationError, match="training dates"):
        fold_before(DATES, "2012-06-01", 6, h + 1, horizon=h)
    with pytest.raises(ConfigError, match="no trading day"):
        fold_before(DATES, "2030-01-01", 6, h + 1, horizon=h)
