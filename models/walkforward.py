"""Walk-forward splits with an embargo, and assembly of out-of-sample predictions.

Row ``t``'s label window covers dates ``t+1 .. t+1+h`` (see :mod:`models.dataset`). A gap of
``embargo >= h + 1`` rows between the last training row and the first validation row, and
between the last validation row and the first test row, therefore guarantees that no label used
for fitting (train) or model selection (early stopping on valid) reaches a date that is later
predicted. Folds retrain every ``retrain_months``; their test blocks tile ``[first_test,
last_test]`` without overlap, so each prediction date is predicted by exactly one model that
never saw a label reaching it.

:func:`latest_fold_before` and :func:`fold_before` find (or build) a fold fitted only on rows
whose label windows end before a cutoff date, the explanation model of the fold-clean rule in
:mod:`models.distill`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from data.errors import ConfigError
from factors.errors import EvaluationError

__all__ = ["Fold", "walk_forward", "single_split", "assemble_oos", "latest_fold_before",
           "fold_before"]


@dataclass(frozen=True)
class Fold:
    """Row slices into ``dates`` for one model: fit on train, early-stop on valid, predict test."""

    train: slice
    valid: slice
    test: slice

    def describe(self, dates: pd.DatetimeIndex) -> dict[str, str]:
        """First and last date of each part, as ``{"train": "2010-01-04..2017-12-15", ...}``."""
        out = {}
        for part in ("train", "valid", "test"):
            s = getattr(self, part)
            out[part] = (f"{dates[s.start].date()}..{dates[s.stop - 1].date()}"
                         if s.stop > s.start else "")
        return out


def _pos(dates: pd.DatetimeIndex, when) -> int:
    return int(dates.searchsorted(pd.Timestamp(when), side="left"))


def walk_forward(dates, first_test: str, last_test: str, retrain_months: int = 12,
                 train_years: int | None = None, valid_months: int = 12, embargo: int = 2,
                 *, horizon: int | None = None, min_train_rows: int = 20) -> list[Fold]:
    """Walk-forward folds: test blocks of ``retrain_months`` from ``first_test`` to ``last_test``.

    For a test block starting at row ``s``: valid = the rows of the ``valid_months`` before
    ``s - embargo`` (ending at row ``s - embargo``, exclusive); train = the rows before
    ``valid.start - embargo`` (all of them, or the last ``train_years`` years).

    Parameters
    ----------
    dates : DatetimeIndex (T,)
        Trading days, strictly ascending.
    first_test, last_test : str or Timestamp
        Inclusive range of prediction dates.
    retrain_months : int, default 12
        Length of each test block (a model is refit this often).
    train_years : int, optional
        Rolling training window; ``None`` = expanding (from the first date).
    valid_months : int, default 12
        Early-stopping window before each test block.
    embargo : int, default 2
        Rows dropped between train and valid and between valid and test; must be at least
        ``horizon + 1`` when ``horizon`` is given.
    horizon : int, optional
        Label horizon, checked against ``embargo``.
    min_train_rows : int, default 20
        Folds with fewer training dates raise.

    Returns
    -------
    list of Fold
        In time order; test slices are disjoint and ascending.

    Raises
    ------
    ConfigError
        On non-positive months, ``embargo < horizon + 1`` (or < 1), or an empty test range.
    EvaluationError
        If the dates are not strictly ascending, or a fold lacks train / valid rows.
    """
    dates = pd.DatetimeIndex(dates)
    if not (dates.is_monotonic_increasing and dates.is_unique):
        raise EvaluationError("walk_forward: dates must be strictly ascending")
    for name, v in (("retrain_months", retrain_months), ("valid_months", valid_months)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"walk_forward: {name} must be a positive integer, got {v!r}")
    if train_years is not None and (not isinstance(train_years, (int, np.integer))
                                    or train_years < 1):
        raise ConfigError(f"walk_forward: train_years must be a positive integer or None, "
                          f"got {train_years!r}")
    need = 1 if horizon is None else int(horizon) + 1
    if isinstance(embargo, bool) or not isinstance(embargo, (int, np.integer)) or embargo < need:
        raise ConfigError(f"walk_forward: embargo must be an integer >= {need} "
                          f"(label horizon + 1), got {embargo!r}")
    lo_t, hi_t = pd.Timestamp(first_test), pd.Timestamp(last_test)
    end = _pos(dates, hi_t + pd.Timedelta(days=1))  # exclusive
    start_row = _pos(dates, lo_t)
    if start_row >= end:
        raise ConfigError(f"walk_forward: no trading day in the test range {first_test}.."
                          f"{last_test}")
    folds: list[Fold] = []
    block = lo_t
    while True:
        s = _pos(dates, block)
        if s >= end:
            break
        nxt = block + pd.DateOffset(months=int(retrain_months))
        e = min(_pos(dates, nxt), end)
        if e > s:
            v1 = s - embargo
            v0 = _pos(dates, dates[s] - pd.DateOffset(months=int(valid_months)))
            t1 = v0 - embargo
            t0 = 0 if train_years is None else _pos(
                dates, dates[max(v0, 0)] - pd.DateOffset(years=int(train_years)))
            if v1 <= v0:
                raise EvaluationError(f"walk_forward: no valid rows before the test block "
                                      f"starting {dates[s].date()}")
            if t1 - t0 < min_train_rows:
                raise EvaluationError(f"walk_forward: only {max(t1 - t0, 0)} training dates "
                                      f"before {dates[max(v0, 0)].date()} (need "
                                      f"{min_train_rows}); move first_test later")
            folds.append(Fold(slice(t0, t1), slice(v0, v1), slice(s, e)))
        block = nxt
    return folds


def single_split(dates, train: Sequence[str], valid: Sequence[str], test: Sequence[str],
                 embargo: int = 2, *, horizon: int | None = None) -> Fold:
    """One fold from fixed date ranges (Qlib's benchmark protocol), embargo applied.

    The last ``embargo`` rows of train and of valid are dropped, so no label of a fitted or
    selection row reaches the next part.

    Raises
    ------
    ConfigError
        ``embargo < horizon + 1`` or an empty part.
    """
    dates = pd.DatetimeIndex(dates)
    need = 1 if horizon is None else int(horizon) + 1
    if embargo < need:
        raise ConfigError(f"single_split: embargo must be >= {need}, got {embargo}")
    parts = []
    for name, (a, b) in (("train", train), ("valid", valid), ("test", test)):
        lo = _pos(dates, a)
        hi = _pos(dates, pd.Timestamp(b) + pd.Timedelta(days=1))
        if name != "test":
            hi -= embargo
        if hi <= lo:
            raise ConfigError(f"single_split: {name} {a}..{b} has no rows in the data")
        parts.append(slice(lo, hi))
    tr, va, te = parts
    if not (tr.stop <= va.start and va.stop <= te.start):
        raise ConfigError("single_split: train, valid and test must be in time order")
    return Fold(tr, va, te)


def latest_fold_before(folds: Sequence[Fold], dates, cutoff, embargo: int) -> int | None:
    """Index of the latest fold whose fit used only label windows ending before ``cutoff``.

    A fold qualifies when its train and valid (early-stopping) rows all lie before row
    ``c - embargo``, ``c`` the first row on or after ``cutoff``: with ``embargo >= h + 1`` the
    label window ``t+1 .. t+1+h`` of every such row ends before ``c``.

    Parameters
    ----------
    folds : sequence of Fold
    dates : DatetimeIndex (T,)
    cutoff : str or Timestamp
    embargo : int

    Returns
    -------
    int or None
        The qualifying fold with the most recent fit (the latest last train / valid row, then
        the highest index); None when no fold qualifies.
    """
    lim = _pos(pd.DatetimeIndex(dates), cutoff) - int(embargo)
    best, best_stop = None, -1
    for k, f in enumerate(folds):
        stop = max(f.train.stop, f.valid.stop)
        if stop <= lim and f.train.stop > f.train.start and stop >= best_stop:
            best, best_stop = k, stop
    return best


def fold_before(dates, cutoff, valid_months: int = 12, embargo: int = 2,
                train_years: int | None = None, *, horizon: int | None = None,
                min_train_rows: int = 20) -> Fold:
    """The fold :func:`walk_forward` would build for a test block starting at ``cutoff``.

    Its train and valid rows end ``embargo`` rows before the first date on or after
    ``cutoff`` (so no label window reaches ``cutoff``); its test slice is empty (it predicts
    nothing).

    Parameters
    ----------
    dates : DatetimeIndex (T,)
    cutoff : str or Timestamp
    valid_months, embargo, train_years, horizon, min_train_rows
        As in :func:`walk_forward`.

    Returns
    -------
    Fold
        ``test`` is ``slice(c, c)``, ``c`` the row of the first date on or after ``cutoff``.

    Raises
    ------
    ConfigError
        No date on or after ``cutoff``, or bad settings (see :func:`walk_forward`).
    EvaluationError
        Too few train or valid rows before ``cutoff``.
    """
    dates = pd.DatetimeIndex(dates)
    c = _pos(dates, cutoff)
    if c >= len(dates):
        raise ConfigError(f"fold_before: no trading day on or after {cutoff}")
    f = walk_forward(dates, dates[c], dates[c], 1, train_years, valid_months, embargo,
                     horizon=horizon, min_train_rows=min_train_rows)[0]
    return Fold(f.train, f.valid, slice(c, c))


def assemble_oos(pred_per_fold: Iterable[tuple[Fold, np.ndarray]], T: int | None = None
                 ) -> np.ndarray:
    """Stitch per-fold predictions into one ``(T, N)`` panel, NaN outside test rows.

    Parameters
    ----------
    pred_per_fold : iterable of (Fold, ndarray)
        Each prediction is either the test block only, shape ``(len(test), N)``, or a full
        ``(T, N)`` panel of which only the fold's test rows are used.
    T : int, optional
        Number of dates; inferred from a full-size prediction or the last test row.

    Returns
    -------
    ndarray float64 (T, N)

    Raises
    ------
    EvaluationError
        On overlapping test rows, mismatched widths or shapes.
    """
    items = [(f, np.asarray(p, dtype=np.float64)) for f, p in pred_per_fold]
    if not items:
        raise EvaluationError("assemble_oos: no folds")
    N = items[0][1].shape[1]
    if T is None:
        T = max(max(f.test.stop for f, _ in items),
                max(p.shape[0] for f, p in items if p.shape[0] != f.test.stop - f.test.start)
                if any(p.shape[0] != f.test.stop - f.test.start for f, p in items) else 0)
    out = np.full((T, N), np.nan)
    seen = np.zeros(T, dtype=bool)
    for f, p in items:
        if p.ndim != 2 or p.shape[1] != N:
            raise EvaluationError(f"assemble_oos: prediction shape {p.shape}, expected (*, {N})")
        n = f.test.stop - f.test.start
        if p.shape[0] == n:
            block = p
        elif p.shape[0] == T:
            block = p[f.test]
        else:
            raise EvaluationError(f"assemble_oos: prediction has {p.shape[0]} rows; expected "
                                  f"{n} (test block) or {T} (full panel)")
        if seen[f.test].any():
            raise EvaluationError("assemble_oos: test rows of two folds overlap")
        seen[f.test] = True
        out[f.test] = block
    return out
