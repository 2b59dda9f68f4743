"""Dated (T, N) industry codes in neutralisation and per-industry caps (DataManager.industry)."""
from __future__ import annotations

import numpy as np

from backtest.strategies import apply_caps
from factors.processing import neutralize


def test_dated_industry_matches_static_and_follows_changes():
    rng = np.random.default_rng(0)
    T, N = 20, 30
    x, z = rng.normal(size=(T, N)), rng.normal(size=(T, N))
    g = rng.integers(0, 4, N)
    a = neutralize(x, industry=g, exposures=[z])
    b = neutralize(x, industry=np.broadcast_to(g, (T, N)), exposures=[z])
    np.testing.assert_allclose(a, b, atol=1e-12)
    g2 = np.broadcast_to(g, (T, N)).copy()
    g2[10:, 0] = (g[0] + 1) % 4                           # stock 0 changes industry on day 10
    r = neutralize(x, industry=g2)
    for t in (5, 15):
        grp = g2[t] == g2[t, 0]
        assert abs(r[t, grp].mean()) < 1e-12


def test_dated_industry_caps():
    T, N = 10, 12
    g = np.broadcast_to(np.arange(N) % 3, (T, N)).copy()
    g[5:, :6] = 0                                         # half the names move to group 0
    W = np.full((T, N), np.nan)
    W[[0, 5]] = 1.0 / N
    out = apply_caps(W.copy(), max_industry_weight=0.4, industry=g)
    for t in (0, 5):
        tot = np.bincount(g[t], weights=out[t], minlength=3)
        assert tot.max() <= 0.4 + 1e-9 and abs(out[t].sum() - 1) < 1e-9
