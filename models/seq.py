"""Per-stock feature sequences sampled by index from a (T, N, F) panel, and path targets.

Numpy only (no torch): the transformer (:mod:`models.transformer`) feeds the arrays built here
to its network, so the sampling logic is testable without the optional torch extra.

Sequences
    A sample ``(t, i)`` is stock ``i`` on row (trading day) ``t``. Its input is the window of
    the last ``L`` rows of features ``features[t-L+1 .. t, i, :]`` -- rows after ``t`` are never
    read (causal by construction). Windows are gathered per batch by fancy indexing; no
    ``(samples, L, F)`` copy of the whole dataset is ever built. Positions of the window before
    row 0, or on which the stock has no data (not listed yet, suspended), are flagged
    in a padding mask and their features set to 0; remaining non-finite features are set to 0
    (the cross-sectional mean after normalisation).
Date-grouped batches
    A batch holds every usable stock of a few dates (the cross-sections stay whole, which suits
    cross-sectional objectives and the daily RankIC used for early stopping).
Path targets (multi-task heads)
    For the auxiliary heads of the transformer: a Sharpe-like ratio and the maximum drawdown
    of the daily open-to-open path that starts at the execution open ``t + 1`` -- the same
    entry as the evaluation label (:func:`backtest.evaluate.forward_returns`) -- over
    ``horizon`` days. They are labels (they read the future) and are only ever used as
    training targets, computed on prices truncated at the end of the training rows.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from factors.errors import EvaluationError

__all__ = ["rows_of", "has_data_mask", "usable_samples", "gather_windows", "date_batches", "path_targets"]


def rows_of(rows, T: int) -> np.ndarray:
    """Row indices (int64) of ``rows``: a slice, a bool mask of length ``T``, or integer indices.

    Raises
    ------
    EvaluationError
        If a mask has the wrong length or an index is outside ``[0, T)``.
    """
    if isinstance(rows, slice):
        return np.arange(T)[rows]
    r = np.asarray(rows)
    if r.dtype == np.bool_:
        if r.shape != (T,):
            raise EvaluationError(f"rows mask has shape {r.shape}, expected ({T},)")
        return np.flatnonzero(r)
    r = r.astype(np.int64, copy=False).ravel()
    if r.size and (r.min() < 0 or r.max() >= T):
        raise EvaluationError(f"rows out of range [0, {T}): min {r.min()}, max {r.max()}")
    return r


def has_data_mask(ds) -> np.ndarray:
    """(T, N) bool: the stock has at least one real feature value on the day.

    Uses ``ds.feature_valid`` (raw value finite before NaN -> 0 filling) when the dataset has it,
    else any finite value of ``ds.features``; computed in row chunks (no full-size temporary).
    """
    src = getattr(ds, "feature_valid", None)
    feats = ds.features if src is None else src
    T, N, F = feats.shape
    out = np.zeros((T, N), dtype=np.bool_)
    step = max(1, 4_000_000 // max(1, N * F))
    for s in range(0, T, step):
        blk = feats[s:s + step]
        out[s:s + step] = (blk if src is not None else np.isfinite(blk)).any(axis=2)
    return out


def usable_samples(mask: np.ndarray, rows) -> tuple[np.ndarray, np.ndarray]:
    """The ``(t, i)`` samples of ``rows`` where ``mask`` is True, grouped by date.

    Parameters
    ----------
    mask : ndarray of bool, shape (T, N)
        Usable samples (e.g. ``PanelDataset.sample_mask``).
    rows : slice, bool ndarray (T,) or int ndarray
        Rows (dates) to take samples from.

    Returns
    -------
    t_idx, i_idx : ndarray of int64, shape (S,)
        Row and column of each sample, sorted by row then column.

    Raises
    ------
    EvaluationError
        If ``rows`` is out of range or a mask of the wrong length.
    """
    mask = np.asarray(mask, dtype=np.bool_)
    r = rows_of(rows, mask.shape[0])
    tt, ii = np.nonzero(mask[r])
    return r[tt].astype(np.int64), ii.astype(np.int64)


def gather_windows(features: np.ndarray, t_idx: np.ndarray, i_idx: np.ndarray,
                   seq_len: int, has_data: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Input windows of the samples ``(t_idx[k], i_idx[k])``.

    Parameters
    ----------
    features : ndarray of float32, shape (T, N, F)
        Normalised features, time on axis 0; non-finite = missing.
    t_idx, i_idx : ndarray of int, shape (B,)
        Sample rows and columns.
    seq_len : int
        Window length ``L >= 1``.
    has_data : ndarray of bool, shape (T, N), optional
        Where the stock has data (e.g. ``PanelDataset.feature_valid.any(axis=2)`` when missing
        features were filled with 0); default: any finite feature.

    Returns
    -------
    x : ndarray of float32, shape (B, L, F)
        ``x[k, j] = features[t_idx[k] - L + 1 + j, i_idx[k]]`` (position ``L - 1`` is day ``t``);
        non-finite values and padded positions are 0.
    pad : ndarray of bool, shape (B, L)
        True where the position is before row 0 or the stock has no data on that day.

    Raises
    ------
    EvaluationError
        If ``seq_len < 1`` or ``features`` is not 3-D.
    """
    if features.ndim != 3:
        raise EvaluationError(f"features must be (T, N, F), got shape {features.shape}")
    L = int(seq_len)
    if L < 1:
        raise EvaluationError(f"seq_len must be >= 1, got {seq_len!r}")
    t_idx = np.asarray(t_idx, dtype=np.int64)
    i_idx = np.asarray(i_idx, dtype=np.int64)
    rows = t_idx[:, None] + np.arange(1 - L, 1, dtype=np.int64)[None, :]      # (B, L)
    before = rows < 0
    x = features[np.maximum(rows, 0), i_idx[:, None]]                            # (B, L, F)
    fin = np.isfinite(x)
    if has_data is None:
        pad = before | ~fin.any(axis=2)
    else:
        pad = before | ~np.asarray(has_data, dtype=np.bool_)[np.maximum(rows, 0), i_idx[:, None]]
    x = np.where(fin & ~pad[:, :, None], x, np.float32(0.0)).astype(np.float32, copy=False)
    return x, pad


def date_batches(mask: np.ndarray, rows, dates_per_batch: int, *,
                 rng: np.random.Generator | None = None,
                 max_dates: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield date-grouped batches ``(t_idx, i_idx)``: all usable stocks of some dates.

    Parameters
    ----------
    mask : ndarray of bool, shape (T, N)
        Usable samples.
    rows : slice, bool ndarray (T,) or int ndarray
        Candidate dates; dates without a usable sample are skipped.
    dates_per_batch : int
        Dates per batch (>= 1).
    rng : numpy Generator, optional
        When given, dates are shuffled (and subsampled to ``max_dates``) with it; otherwise
        they are taken in order.
    max_dates : int, optional
        Use at most this many dates (a random subset when ``rng`` is given, else the first).

    Yields
    ------
    t_idx, i_idx : ndarray of int64
        Samples of one batch, grouped by date.
    """
    mask = np.asarray(mask, dtype=np.bool_)
    r = rows_of(rows, mask.shape[0])
    r = r[mask[r].any(axis=1)]
    if rng is not None:
        r = rng.permutation(r)
    if max_dates is not None and max_dates < r.size:
        r = np.sort(r[:max_dates]) if rng is None else r[:max_dates]
    k = max(1, int(dates_per_batch))
    for s in range(0, r.size, k):
        yield usable_samples(mask, np.sort(r[s:s + k]))


def path_targets(open_adj: np.ndarray, horizon: int,
                 end_row: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sharpe-like ratio and maximum drawdown of the forward open-to-open path.

    With ``o = open_adj`` and daily returns ``r_k = o[t+2+k] / o[t+1+k] - 1`` for
    ``k = 0 .. H-1`` (bought at the open of ``t + 1`` like the evaluation label, held ``H``
    days):

    - ``sharpe[t] = mean(r) / std(r)`` (population std, not annualised);
      NaN when ``H < 2`` or ``std == 0``;
    - ``drawdown[t] = max_k (1 - V_k / max_{j<=k} V_j)`` with ``V_0 = 1``,
      ``V_k = prod_{m<k} (1 + r_m)``: the largest peak-to-trough loss on the path, in [0, 1].

    Parameters
    ----------
    open_adj : ndarray, shape (T, N)
        Back-adjusted open prices; NaN or non-positive = missing.
    horizon : int
        Path length ``H >= 1`` in trading days.
    end_row : int, optional
        Prices on rows ``>= end_row`` are treated as unknown, so every target whose path
        reaches them is NaN (used to keep training targets inside the training rows).

    Returns
    -------
    sharpe, drawdown : ndarray of float64, shape (T, N)
        NaN where any price of the path is missing, and on the last ``H + 1`` rows.

    Raises
    ------
    EvaluationError
        If ``horizon < 1`` or ``open_adj`` is not 2-D.
    """
    o = np.array(open_adj, dtype=np.float64)
    if o.ndim != 2:
        raise EvaluationError(f"open_adj must be (T, N), got shape {o.shape}")
    H = int(horizon)
    if H < 1:
        raise EvaluationError(f"path horizon must be >= 1, got {horizon!r}")
    T, N = o.shape
    if end_row is not None:
        o[max(0, int(end_row)):] = np.nan
    o[~(o > 0)] = np.nan
    sharpe = np.full((T, N), np.nan)
    dd = np.full((T, N), np.nan)
    n = T - 1 - H                                     # rows with a full path
    if n <= 0:
        return sharpe, dd
    # path prices P_k = o[t+1+k], k = 0..H, as an (n, N, H+1) view-built stack
    P = np.stack([o[1 + k:1 + k + n] for k in range(H + 1)], axis=2)
    ok = np.isfinite(P).all(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = P[:, :, 1:] / P[:, :, :-1] - 1.0
        if H >= 2:
            sd = r.std(axis=2)
            sharpe[:n] = np.where(ok & (sd > 0), r.mean(axis=2) / sd, np.nan)
        V = P / P[:, :, :1]
        peak = np.maximum.accumulate(V, axis=2)
        dd[:n] = np.where(ok, (1.0 - V / peak).max(axis=2), np.nan)
    return sharpe, dd
