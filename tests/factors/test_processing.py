"""factors.processing: winsorize, z-score, industry + size neutralisation (vs per-row lstsq)."""
import numpy as np
import pandas as pd
import pytest

from factors.errors import EvaluationError
from factors.processing import (
    industry_codes,
    neutralize,
    process_factor,
    winsorize,
    zscore,
)

rng = np.random.default_rng(7)


def _panel(T=30, N=40):
    x = rng.standard_normal((T, N))
    x[rng.random((T, N)) < 0.1] = np.nan
    return x


def test_zscore_rows_have_mean0_std1_and_respect_mask():
    x = _panel()
    mask = rng.random(x.shape) < 0.8
    z = zscore(x, mask)
    assert np.isnan(z[~mask]).all()
    ok = np.isfinite(z)
    for t in range(x.shape[0]):
        v = z[t, ok[t]]
        assert abs(v.mean()) < 1e-12 and abs(v.std() - 1) < 1e-12
        ref = x[t, ok[t]]
        np.testing.assert_allclose(v, (ref - ref.mean()) / ref.std())


def test_zscore_constant_or_tiny_rows_are_nan():
    x = np.ones((2, 5))
    x[1, 2:] = np.nan
    assert np.isnan(zscore(x)).all()


def test_winsorize_mad_clips_outliers_only():
    x = rng.standard_normal((5, 200))
    x[0, 0] = 1e6
    w = winsorize(x, k=5.0)
    med = np.median(x[0])
    mad = np.median(np.abs(x[0] - med)) * 1.4826
    assert w[0, 0] == pytest.approx(med + 5 * mad)
    np.testing.assert_array_equal(w[1:], np.clip(x[1:], -1e9, 1e9))  # nothing else moved much
    q = winsorize(x, method="quantile", limits=(0.05, 0.95))
    assert q[0].max() == pytest.approx(np.quantile(x[0], 0.95))


def test_winsorize_bad_method_is_clear():
    with pytest.raises(EvaluationError, match="unknown winsorize method"):
        winsorize(np.zeros((2, 5)), method="nope")


def test_neutralize_matches_per_date_lstsq():
    T, N = 12, 60
    x = _panel(T, N)
    size = rng.standard_normal((T, N)) * 2 + 20
    size[0, 3] = np.nan
    labels = rng.choice(["bank", "tech", "food", None], size=N)
    g = industry_codes(labels)
    res = neutralize(x, industry=g, exposures=[size])
    for t in range(T):
        ok = np.isfinite(x[t]) & np.isfinite(size[t])
        D = np.eye(g.max() + 1)[g[ok]]
        X = np.column_stack([D, size[t, ok]])
        beta, *_ = np.linalg.lstsq(X, x[t, ok], rcond=None)
        np.testing.assert_allclose(res[t, ok], x[t, ok] - X @ beta, atol=1e-10)
        assert np.isnan(res[t, ~ok]).all()


def test_neutralized_factor_is_orthogonal_to_exposures():
    x = _panel()
    size = x * 0.5 + rng.standard_normal(x.shape)          # correlated with x
    g = rng.integers(0, 4, x.shape[1])
    out = process_factor(x, neutral=("industry", "size"), industry=g, size=size)
    ok = np.isfinite(out)
    for t in range(x.shape[0]):
        r, s = out[t, ok[t]], size[t, ok[t]]
        assert abs(np.dot(r, s - s.mean())) < 1e-8
        for k in range(4):
            sel = g[ok[t]] == k
            if sel.any():
                assert abs(r[sel].sum()) < 1e-8


def test_process_factor_sign_flips_and_is_row_local():
    x = _panel()
    a = process_factor(x, sign=1.0)
    b = process_factor(x, sign=-1.0)
    np.testing.assert_allclose(a, -b, equal_nan=True)
    # causality: each output row depends on its own input row only
    y = x.copy()
    y[20:] = rng.standard_normal(y[20:].shape)
    np.testing.assert_array_equal(process_factor(y)[:20], a[:20])


def test_dataframe_in_dataframe_out():
    x = pd.DataFrame(_panel(5, 8), index=pd.bdate_range("2024-01-01", periods=5),
                     columns=[f"{i:06d}.SZ" for i in range(8)])
    z = zscore(x)
    assert isinstance(z, pd.DataFrame) and z.index.equals(x.index)


def test_process_factor_errors():
    with pytest.raises(EvaluationError, match="unknown neutralisation"):
        process_factor(np.zeros((2, 5)), neutral=("beta",))
    with pytest.raises(EvaluationError, match="industry codes"):
        process_factor(np.zeros((2, 5)), neutral=("industry",))
    with pytest.raises(EvaluationError, match="shape"):
        zscore(np.zeros(5))
