"""The evaluation context: labels, eligible names and date splits (the ``[evaluate]`` section).

Timing (the contract of :mod:`data`)
    A factor value at row ``t`` uses data up to the close of ``t``. The label of horizon ``h``
    at ``t`` is ``fwd_h[t] = open_adj[t+1+h] / open_adj[t+1] - 1``: bought at the next open,
    held ``h`` days (see :func:`forward_returns`).
Eligibility
    A name enters the statistics of row ``t`` iff it is in the universe at ``t`` (point-in-time
    membership) and tradable on both sides at ``t+1``, the execution day: it has a bar, is
    listed at least ``min_listed_days`` and its raw open of ``t+1`` is strictly inside the
    limit prices, ``limit_down < open < limit_up`` (no limit known: inside;
    :meth:`data.manager.DataManager.tradable_mask` with ``side="both"``, rule in
    :mod:`data.limits`). Both sides, because the long-short portfolio buys the top and sells
    the bottom at that open. ``eligible[t] = universe_mask[t] & tradable[t+1]``; the last row
    is never eligible. Reading ``t+1`` here is part of the label's definition (the label
    itself starts at the open of ``t+1``), not look-ahead in the factor, which still sees data
    up to the close of ``t`` only. Each day's statistics use the eligible names whose factor
    and label are both finite.
Splits and embargo
    Splits (train / valid / test) are date ranges. The last ``max(embargo, max(horizons) + 1)``
    rows of each split are dropped from it, so no label window of a split reaches into the next
    one. Mining and leaderboards look at train/valid only; the test split is evaluated only
    when the caller asks for it (and records that it did).

The metrics computed against a context live in :mod:`backtest.evaluate`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from factors.errors import EvaluationError
from factors.row_order import row_orders

__all__ = ["EvalConfig", "EvalContext", "forward_returns", "DECAY_HORIZONS"]

#: Horizons of the IC decay profile (trading days).
DECAY_HORIZONS: tuple[int, ...] = (1, 2, 5, 10, 20)
#: Longest ``[evaluate] horizon`` accepted: a year of trading days (a longer label leaves
#: next to nothing of a split once the embargo is dropped).
MAX_HORIZON = 252
#: Most ``[evaluate] quantiles`` accepted (more buckets than names per day are empty).
MAX_QUANTILES = 100


@dataclass(frozen=True)
class EvalConfig:
    """``[evaluate]``: label horizon, quantiles, the train / valid / test splits and embargo."""

    horizon: int = 1                    # forward return: open(t+1) -> open(t+1+h), adjusted
    quantiles: int = 5
    train: tuple[str, str] = ("2010-01-01", "2018-12-31")
    valid: tuple[str, str] = ("2019-01-01", "2021-12-31")
    test: tuple[str, str] = ("2022-01-01", "2026-12-31")
    embargo: int = 20                   # trading days dropped after each split (>= horizon)
    min_listed_days: int = 60           # names listed fewer trading days are not tradable

    def __post_init__(self) -> None:
        """Validate: ``1 <= horizon <= MAX_HORIZON``, ``2 <= quantiles <= MAX_QUANTILES``,
        ``embargo >= horizon``, each split a
        ``(start, end)`` pair of dates with ``start <= end``, and train < valid < test in order
        without overlap. Raises ValueError (the config loader names the section)."""
        if not 1 <= self.horizon <= MAX_HORIZON:
            raise ValueError(f"horizon must be in 1..{MAX_HORIZON} (trading days), got "
                             f"{self.horizon}")
        if not 2 <= self.quantiles <= MAX_QUANTILES:
            raise ValueError(f"quantiles must be in 2..{MAX_QUANTILES}, got {self.quantiles}")
        if self.embargo < self.horizon:
            raise ValueError(f"embargo {self.embargo} must be >= horizon {self.horizon} (a "
                             "label window must not reach into the next split)")
        if self.min_listed_days < 0:
            raise ValueError(f"min_listed_days must be >= 0, got {self.min_listed_days}")
        bounds = []
        for name in ("train", "valid", "test"):
            pair = getattr(self, name)
            if len(pair) != 2:
                raise ValueError(f"{name} must be [start, end], got {list(pair)}")
            try:
                lo, hi = (pd.Timestamp(str(d)) for d in pair)
            except (ValueError, TypeError):
                raise ValueError(f"{name} = {list(pair)}: dates must be YYYY-MM-DD") from None
            if lo > hi:
                raise ValueError(f"{name} starts {pair[0]} after it ends {pair[1]}")
            bounds.append((name, lo, hi))
        for (a, _, a_hi), (b, b_lo, _) in zip(bounds, bounds[1:]):
            if b_lo <= a_hi:
                raise ValueError(f"{b} starts {b_lo.date()} on or before the end of {a} "
                                 f"({a_hi.date()}): splits must be ordered train < valid < "
                                 "test without overlap")


# ---------------------------------------------------------------- labels

def forward_returns(open_adj, h: int) -> np.ndarray:
    """Forward open-to-open return of horizon ``h`` (the evaluation label).

    ``fwd[t] = open_adj[t + 1 + h] / open_adj[t + 1] - 1``: the return of buying at the open
    of the execution day ``t + 1`` and selling at the open ``h`` trading days later.

    Parameters
    ----------
    open_adj : array_like or DataFrame, shape (T, N) or (T,)
        Back-adjusted open prices (yuan; only ratios matter), time on axis 0. NaN = no bar.
    h : int
        Holding horizon in trading days, ``h >= 1``.

    Returns
    -------
    ndarray of float64, same shape as ``open_adj``
        NaN where either price is missing or not positive, and on the last ``h + 1`` rows
        (beyond the data). Causal in the label sense: row ``t`` reads rows ``t+1`` and
        ``t+1+h`` only.

    Raises
    ------
    ValueError
        If ``h`` is not a positive integer.
    """
    if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1:
        raise ValueError(f"forward_returns: horizon h must be a positive integer, got {h!r}")
    o = np.asarray(open_adj, dtype=np.float64)
    out = np.full(o.shape, np.nan)
    T = o.shape[0]
    if T > h + 1:
        a = o[1:T - h]
        b = o[1 + h:]
        ok = (a > 0) & (b > 0) & np.isfinite(a) & np.isfinite(b)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:T - 1 - h] = np.where(ok, b / np.where(ok, a, 1.0) - 1.0, np.nan)
    return out


# ---------------------------------------------------------------- context

def _split_rows(dates: pd.DatetimeIndex, splits: Mapping[str, tuple], gap: int) -> dict:
    rows = {}
    for name, (start, end) in splits.items():
        lo, hi = pd.Timestamp(start), pd.Timestamp(end)
        if hi < lo:
            raise EvaluationError(f"split {name!r}: end {end!s} is before start {start!s}")
        sel = np.asarray((dates >= lo) & (dates <= hi))
        idx = np.flatnonzero(sel)
        if gap > 0:
            sel[idx[-gap:]] = False
        rows[name] = sel
    return rows


@dataclass
class EvalContext:
    """Everything a factor is evaluated against: labels, eligible names and date splits.

    Attributes
    ----------
    dates : DatetimeIndex, length T
        Trading days, ascending.
    codes : Index, length N
        Stock codes (columns of every panel).
    universe : str
        Universe name (for reports).
    universe_mask : ndarray of bool, shape (T, N)
        Point-in-time universe membership.
    eligible : ndarray of bool, shape (T, N)
        ``universe_mask[t] & tradable[t+1]`` (see the module docstring); last row False.
    fwd : dict of int to ndarray (T, N)
        Forward returns per horizon (:func:`forward_returns`).
    split_rows : dict of str to ndarray of bool (T,)
        Rows of each split after the embargo (contiguous).
    horizon : int
        Headline horizon (IC, quantiles, long-short, turnover lag of ``rank_autocorr``).
    quantiles : int
        Buckets of the quantile returns (``[evaluate] quantiles``; the evaluator's default).

    Notes
    -----
    Arrays are treated as read-only: label orders are cached on first use.
    """

    dates: pd.DatetimeIndex
    codes: pd.Index
    universe: str
    universe_mask: np.ndarray
    eligible: np.ndarray
    fwd: dict[int, np.ndarray]
    split_rows: dict[str, np.ndarray]
    horizon: int = 1
    quantiles: int = 5
    _orders: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, int]:
        """``(T, N)``."""
        return (len(self.dates), len(self.codes))

    @classmethod
    def from_arrays(cls, dates, codes, open_adj, universe_mask, tradable,
                    splits: Mapping[str, tuple], horizons: Sequence[int] = DECAY_HORIZONS,
                    horizon: int = 1, embargo: int = 20, universe: str = "custom",
                    quantiles: int = 5) -> "EvalContext":
        """Build a context from aligned panels.

        Parameters
        ----------
        dates : array_like of datetime, length T
            Trading days, strictly ascending.
        codes : array_like, length N
            Stock codes.
        open_adj : array_like or DataFrame, shape (T, N)
            Back-adjusted opens (labels via :func:`forward_returns`).
        universe_mask, tradable : array_like of bool, shape (T, N)
            Point-in-time membership and tradability on each day (bar, listed long enough,
            open strictly inside the limits: ``DataManager.tradable_mask(side="both")``);
            ``tradable`` row ``t+1`` decides row ``t`` (module docstring).
        splits : mapping of str to (start, end)
            Inclusive date ranges, e.g. ``{"train": ("2010-01-01", "2018-12-31"), ...}``.
        horizons : sequence of int, default (1, 2, 5, 10, 20)
            Label horizons to precompute; ``horizon`` is added when missing.
        horizon : int, default 1
            Headline horizon.
        embargo : int, default 20
            Minimum rows dropped from the end of each split; the actual gap is
            ``max(embargo, max(horizons) + 1)``.
        universe : str, default "custom"
            Name recorded in the context.
        quantiles : int, default 5
            Quantile buckets of the reports (>= 2).

        Returns
        -------
        EvalContext

        Raises
        ------
        EvaluationError
            On misaligned shapes, unsorted or duplicate dates, bad horizons or split ranges.
        """
        dates = pd.DatetimeIndex(dates)
        codes = pd.Index(codes)
        T, N = len(dates), len(codes)
        if not (dates.is_monotonic_increasing and dates.is_unique):
            raise EvaluationError("EvalContext: dates must be strictly increasing")
        hs = sorted({int(h) for h in horizons} | {int(horizon)})
        if hs[0] < 1:
            raise EvaluationError(f"EvalContext: horizons must be >= 1, got {hs}")
        if int(embargo) < 0:
            raise EvaluationError(f"EvalContext: embargo must be >= 0, got {embargo}")
        if int(quantiles) < 2:
            raise EvaluationError(f"EvalContext: quantiles must be >= 2, got {quantiles}")
        arrays = {}
        for name, arr, dtype in (("open_adj", open_adj, np.float64),
                                 ("universe_mask", universe_mask, np.bool_),
                                 ("tradable", tradable, np.bool_)):
            a = np.ascontiguousarray(arr, dtype=dtype)
            if a.shape != (T, N):
                raise EvaluationError(f"EvalContext: {name} has shape {a.shape}, expected "
                                      f"(T, N) = {(T, N)} from dates and codes")
            arrays[name] = a
        umask, trad = arrays["universe_mask"], arrays["tradable"]
        eligible = np.zeros((T, N), dtype=np.bool_)
        eligible[:-1] = umask[:-1] & trad[1:]
        fwd = {h: forward_returns(arrays["open_adj"], h) for h in hs}
        gap = max(int(embargo), hs[-1] + 1)
        return cls(dates=dates, codes=codes, universe=universe, universe_mask=umask,
                   eligible=eligible, fwd=fwd, split_rows=_split_rows(dates, splits, gap),
                   horizon=int(horizon), quantiles=int(quantiles))

    @classmethod
    def from_data(cls, dm, universe: str, start, end,
                  eval_cfg: EvalConfig | None = None) -> "EvalContext":
        """Build a context from the warehouse through a :class:`data.manager.DataManager`.

        Loads the back-adjusted ``open`` of the universe's codes, the point-in-time universe
        mask and the two-sided tradable mask (``side="both"``, ``eval_cfg.min_listed_days``)
        on the trading days in
        ``[start, end]``; the splits, embargo, headline horizon and quantiles come from
        ``eval_cfg``
        (default :class:`EvalConfig`). The labels stay float64 whatever ``[data] dtype``
        says: they are ratios of prices in cents, with many exact ties across names, and
        rounding them to float32 moves the mean RankIC by up to ~1e-6 on the real data (README
        "Full market"). Nothing after ``end`` is read, so the last
        row is ineligible and the last ``h + 1`` rows have no label (the embargo drops them).

        Raises
        ------
        DataError, UniverseError
            From the data manager (missing data, unknown universe, dates outside the data).
        EvaluationError
            If the manager returns misaligned arrays.
        """
        cfg = eval_cfg or EvalConfig()
        dates = dm.calendar(start, end)
        codes = dm.universe_codes(universe, start, end)
        opn = dm.panels(["open"], start, end, codes=codes)["open"]
        opn = opn.reindex(index=dates, columns=codes)
        umask = dm.universe_mask(universe, dates, codes)
        trad = dm.tradable_mask(start, end, codes, min_listed_days=cfg.min_listed_days,
                                side="both")
        splits = {"train": cfg.train, "valid": cfg.valid, "test": cfg.test}
        return cls.from_arrays(dates, codes, opn.to_numpy(dtype=np.float64), umask, trad,
                               splits, horizons=DECAY_HORIZONS, horizon=cfg.horizon,
                               embargo=cfg.embargo, universe=universe,
                               quantiles=cfg.quantiles)

    def split_bounds(self, split: str) -> tuple[int, int]:
        """Row range ``[lo, hi)`` of a split (``lo == hi`` when it is empty).

        Raises
        ------
        EvaluationError
            For an unknown split name (the message lists the known ones).
        """
        if split not in self.split_rows:
            raise EvaluationError(f"unknown split {split!r}; this context has "
                                  f"{', '.join(self.split_rows) or 'no splits'}")
        idx = np.flatnonzero(self.split_rows[split])
        return (int(idx[0]), int(idx[-1]) + 1) if idx.size else (0, 0)

    def label_order(self, h: int) -> tuple[np.ndarray, np.ndarray]:
        """Cached :func:`factors.row_order.row_orders` of ``fwd[h]`` on eligible names."""
        if h not in self.fwd:
            raise EvaluationError(f"horizon {h} not in this context (has {sorted(self.fwd)})")
        if h not in self._orders:
            self._orders[h] = row_orders(self.fwd[h], self.eligible)
        return self._orders[h]

    def restrict(self, start, end) -> "EvalContext":
        """A context on the rows with ``start <= date <= end`` (labels and splits kept as is).

        The rows are contiguous (dates ascend), so the arrays are views, not copies: on the
        whole market this keeps the GP's train context from doubling the labels' memory.
        """
        sel = slice(int(self.dates.searchsorted(pd.Timestamp(start), side="left")),
                    int(self.dates.searchsorted(pd.Timestamp(end), side="right")))
        return EvalContext(dates=self.dates[sel], codes=self.codes, universe=self.universe,
                           universe_mask=self.universe_mask[sel], eligible=self.eligible[sel],
                           fwd={h: v[sel] for h, v in self.fwd.items()},
                           split_rows={k: v[sel] for k, v in self.split_rows.items()},
                           horizon=self.horizon, quantiles=self.quantiles)

    def in_universe(self) -> np.ndarray:
        """Column indices of the names in the universe on at least one row, ascending.

        The others are never eligible and are NaN in every ``cs_*`` output here: a row's
        RankIC, turnover and cross-sectional statistics do not depend on them.
        """
        return np.flatnonzero(self.universe_mask.any(axis=0))

    def select_names(self, cols) -> "EvalContext":
        """A context on the columns ``cols`` (int indices; the arrays are copied, the label
        orders recomputed on first use). All columns in order: ``self`` itself.

        Raises
        ------
        IndexError
            If an index is out of range.
        """
        cols = np.asarray(cols, dtype=np.intp)
        if cols.shape == (len(self.codes),) and (cols == np.arange(len(self.codes))).all():
            return self
        return EvalContext(dates=self.dates, codes=self.codes[cols], universe=self.universe,
                           universe_mask=self.universe_mask[:, cols],
                           eligible=self.eligible[:, cols],
                           fwd={h: v[:, cols] for h, v in self.fwd.items()},
                           split_rows=dict(self.split_rows),
                           horizon=self.horizon, quantiles=self.quantiles)
