"""Synthetic workspaces for the model tests: random-walk OHLCV panels on a business-day grid.

``make_ws(T, N, seed)`` builds a :class:`backtest.candidates.Workspace` whose fields are preloaded
(no warehouse needed); ``plant`` adds a known predictive signal: day ``t+1``'s candle body is ``plant x`` day ``t``'s
plus noise, so KMID at ``t`` predicts the open(t+1) -> open(t+2) label.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.candidates import Workspace
from backtest.context import EvalContext
from data.fields import BASE_FIELDS


def make_ws(T: int = 260, N: int = 30, seed: int = 0, start: str = "2015-01-01",
            plant: float = 0.0, splits: dict | None = None) -> Workspace:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, periods=T)
    codes = pd.Index([f"{600000 + i:06d}.SH" for i in range(N)])
    close = np.empty((T, N))
    opn = np.empty((T, N))
    close[0] = 10 * np.exp(rng.normal(0, 0.2, N))
    opn[0] = close[0]
    body = rng.normal(0, 0.01, (T, N))
    for t in range(1, T):
        # the candle body is autocorrelated (planted signal): KMID at t predicts the open(t+1)
        # -> open(t+2) label, which contains day t+1's body
        body[t] = body[t] + plant * body[t - 1]
        opn[t] = close[t - 1] * np.exp(rng.normal(0, 0.003, N))
        close[t] = opn[t] * np.exp(body[t])
    high = np.maximum(opn, close) * np.exp(np.abs(rng.normal(0, 0.005, (T, N))))
    low = np.minimum(opn, close) * np.exp(-np.abs(rng.normal(0, 0.005, (T, N))))
    vol = np.exp(rng.normal(10, 0.5, (T, N)))
    panels = {"open": opn, "high": high, "low": low, "close": close,
              "vwap": (high + low + close) / 3, "vol": vol, "amount": vol * close / 10,
              "turnover": vol / 1e5, "total_mv": close * 1e5, "total_share": np.full((T, N), 1e4),
              "adj_factor": np.ones((T, N))}
    panels["ret"] = np.vstack([np.full((1, N), np.nan), close[1:] / close[:-1] - 1])
    for raw in ("open", "high", "low", "close"):
        panels[f"raw_{raw}"] = panels[raw]
    panels["pre_close"] = np.vstack([close[:1], close[:-1]])
    assert set(panels) >= set(BASE_FIELDS) - {"ret"}
    # a few holes: suspensions and a late listing
    for k in ("open", "high", "low", "close", "vwap", "vol", "amount", "turnover", "ret"):
        panels[k][:40, 0] = np.nan
        panels[k][100:105, 1] = np.nan
    umask = np.ones((T, N), dtype=bool)
    umask[:, -1] = False                     # never a member
    umask[: T // 2, -2] = False              # joins half-way
    tradable = np.isfinite(panels["open"])
    if splits is None:
        d = dates
        splits = {"train": (str(d[0].date()), str(d[T // 2].date())),
                  "valid": (str(d[T // 2 + 1].date()), str(d[3 * T // 4].date())),
                  "test": (str(d[3 * T // 4 + 1].date()), str(d[-1].date()))}
    ctx = EvalContext.from_arrays(dates, codes, panels["open"], umask, tradable, splits,
                                  horizons=(1, 5), horizon=1, embargo=2, universe="synth")
    ws = Workspace(dm=None, ctx=ctx, universe="synth", start=str(dates[0].date()),
                   end=str(dates[-1].date()))
    for k, v in panels.items():
        a = np.ascontiguousarray(v, dtype=np.float64)
        a.setflags(write=False)
        ws._panels[k] = a
    return ws




def truncate(ws: Workspace, k: int) -> Workspace:
    """The same workspace cut to its first ``k`` dates (for causality tests)."""
    c = ws.ctx
    splits = {name: (str(c.dates[0].date()), str(c.dates[k - 1].date())) for name in c.split_rows}
    ctx = EvalContext.from_arrays(c.dates[:k], c.codes, ws._panels["open"][:k],
                                  c.universe_mask[:k], np.isfinite(ws._panels["open"][:k]),
                                  splits, horizons=(1, 5), horizon=1, embargo=2,
                                  universe=c.universe)
    out = Workspace(dm=None, ctx=ctx, universe=ws.universe, start=ws.start,
                    end=str(c.dates[k - 1].date()))
    for name, v in ws._panels.items():
        out._panels[name] = v[:k]
    return out


@pytest.fixture(name="make_ws")
def _make_ws_fixture():
    """The :func:`make_ws` factory (test modules cannot import conftest by name)."""
    return make_ws


@pytest.fixture(name="truncate")
def _truncate_fixture():
    """The :func:`truncate` helper."""
    return truncate
