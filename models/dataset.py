"""Model datasets: a named feature set and a forward-return label on one workspace.

Layout (shared by LightGBM and the transformer)
    Panels are ``(T, N)`` on the workspace's dates x codes; features are stacked into a
    ``(T, N, F)`` float32 cube. Long frames (for tabular models) are indexed
    ``(trade_date, ts_code)`` and hold only usable rows (``sample_mask``).
Timing
    Feature values at row ``t`` use data up to the close of ``t`` (factor-language operators are
    causal; normalisation is per date). The label at ``t`` is the evaluator's forward return
    ``fwd_h[t] = open[t+1+h] / open[t+1] - 1`` (``label="open"``), or Qlib's close-to-close
    ``close[t+1+h] / close[t+1] - 1`` (``label="close"``; ``Ref($close,-2)/Ref($close,-1)-1``
    for ``h = 1``). Row ``t``'s label window therefore covers dates ``t+1 .. t+1+h``.
Steps (each a public, tested function)
    1. every feature formula evaluated through :meth:`backtest.candidates.Workspace.values`
       (sub-expressions shared within a group of features);
    2. :func:`robust_zscore` per date: ``(x - median) / (1.4826 MAD)`` over universe members
       with a finite value (std when MAD is 0), applied to every finite value, clipped to
       ``+-clip``; then NaN -> 0, with ``feature_valid`` recording where raw values existed;
    3. :func:`normalise_label` per date over ``sample_mask`` rows: ``rank`` -> ``[-0.5, 0.5]``
       (average ties), or ``zscore`` (population std, clipped to +-3); NaN elsewhere.
``sample_mask = universe_mask & eligible & isfinite(raw label)``: in the universe at ``t``,
tradable at ``t + 1`` (see :mod:`backtest.evaluate`), with a label.
"""
from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from backtest.context import forward_returns
from data.errors import ConfigError
from factors.alpha158 import POOL_SUFFIX
from factors.alpha158 import feature_set as get_feature_set
from factors.errors import EvaluationError
from factors.expr_parse import parse
from factors.expr_tree import Call, ModelRef, factor_refs, walk
from factors.library import NamedFactor

if TYPE_CHECKING:  # pragma: no cover
    from backtest.candidates import Workspace

__all__ = ["PanelDataset", "build_dataset", "pool_features", "robust_zscore", "global_robust_zscore",
           "normalise_label", "LABEL_NORMS", "LABELS", "FEATURE_NORMS"]

#: Label normalisations accepted by :func:`build_dataset`.
LABEL_NORMS = ("rank", "zscore")
#: Feature normalisations accepted by :func:`build_dataset`.
FEATURE_NORMS = ("cs", "global")
#: Label prices accepted by :func:`build_dataset`.
LABELS = ("open", "close")
_MAD_SCALE = 1.4826  # MAD of a normal distribution -> its std


@dataclass
class PanelDataset:
    """Features and label on a ``dates x codes`` grid (see the module docstring).

    Attributes
    ----------
    dates : DatetimeIndex (T,)
    codes : Index (N,)
    features : ndarray float32 (T, N, F)
        Per-date robust z-scores clipped to ``+-clip``; 0 where the raw value was missing.
    feature_names : list of str (F,)
    label : ndarray float32 (T, N)
        Normalised forward return (``label_norm``); NaN outside ``sample_mask``.
    sample_mask : ndarray bool (T, N)
        Usable for training / scoring: universe member, eligible, finite label.
    horizon : int
        Label horizon in trading days.
    feature_valid : ndarray bool (T, N, F)
        Where the raw feature value was finite.
    label_raw : ndarray float32 (T, N)
        The un-normalised forward return (NaN where undefined), for IC reporting.
    universe_mask : ndarray bool (T, N)
    formulas : list of str (F,)
        Canonical formula of each feature.
    label_kind, label_norm, feature_norm : str
    """

    dates: pd.DatetimeIndex
    codes: pd.Index
    features: np.ndarray
    feature_names: list[str]
    label: np.ndarray
    sample_mask: np.ndarray
    horizon: int
    feature_valid: np.ndarray | None = field(default=None, repr=False)
    label_raw: np.ndarray | None = field(default=None, repr=False)
    universe_mask: np.ndarray | None = field(default=None, repr=False)
    formulas: list[str] = field(default_factory=list)
    label_kind: str = "open"
    label_norm: str = "rank"
    feature_norm: str = "cs"

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(T, N, F)``."""
        return self.features.shape  # type: ignore[return-value]

    def row_mask(self, rows=None) -> np.ndarray:
        """``sample_mask`` restricted to ``rows`` (slice, int or bool array over dates)."""
        if rows is None:
            return self.sample_mask
        sel = np.zeros(len(self.dates), dtype=bool)
        sel[rows] = True
        return self.sample_mask & sel[:, None]

    def arrays(self, rows=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Usable rows as arrays: ``X (n, F) float32, y (n,) float32, t (n,), j (n,)``.

        ``t`` / ``j`` are the date / code positions (row-major order: by date, then code).
        """
        t, j = np.nonzero(self.row_mask(rows))
        return self.features[t, j], self.label[t, j], t, j

    def to_long(self, rows=None) -> tuple[pd.DataFrame, pd.Series]:
        """Long frames of the usable rows of ``rows`` (all dates by default).

        Returns
        -------
        X : DataFrame float32, index (trade_date, ts_code), columns ``feature_names``
        y : Series float32, same index, name ``label``
        """
        X, y, t, j = self.arrays(rows)
        idx = pd.MultiIndex.from_arrays([self.dates[t], self.codes[j]],
                                        names=["trade_date", "ts_code"])
        return (pd.DataFrame(X, index=idx, columns=list(self.feature_names)),
                pd.Series(y, index=idx, name="label"))


# ---------------------------------------------------------------- normalisation steps

def _row_median(a: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Median of the finite values of each row (``n`` of them; NaN sorts last), NaN if none."""
    srt = np.sort(a, axis=1)
    rows = np.arange(len(a))
    lo, hi = np.maximum((n - 1) // 2, 0), np.maximum(n // 2, 0)
    with np.errstate(invalid="ignore"):
        return np.where(n > 0, (srt[rows, lo] + srt[rows, hi]) / 2.0, np.nan)


def robust_zscore(x: np.ndarray, mask: np.ndarray | None = None, clip: float = 3.0
                  ) -> np.ndarray:
    """Per-date robust z-score, clipped: ``clip((x - median) / (1.4826 MAD), -clip, clip)``.

    Parameters
    ----------
    x : ndarray (T, N)
        Raw values; non-finite = missing.
    mask : ndarray bool (T, N), optional
        Rows' reference population (universe members). Statistics use ``mask & finite``;
        every finite value (inside or outside the mask) is transformed with them.
    clip : float, default 3
        Symmetric clip after scaling (> 0).

    Returns
    -------
    ndarray float64 (T, N)
        NaN where ``x`` is missing or the date has no reference value; 0 on a date whose
        reference values are all equal. Where MAD is 0 but the values differ (discrete
        features), the population std is used as the scale.

    Raises
    ------
    EvaluationError
        On a shape mismatch or ``clip <= 0``.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise EvaluationError(f"robust_zscore: x must be (T, N), got shape {x.shape}")
    if not clip > 0:
        raise EvaluationError(f"robust_zscore: clip must be > 0, got {clip!r}")
    fin = np.isfinite(x)
    ref = fin if mask is None else fin & np.asarray(mask, dtype=bool)
    if ref.shape != x.shape:
        raise EvaluationError(f"robust_zscore: mask shape {ref.shape} != x shape {x.shape}")
    r = np.where(ref, x, np.nan)
    n = ref.sum(axis=1)
    med = _row_median(r, n)
    mad = _row_median(np.abs(r - med[:, None]), n) * _MAD_SCALE
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.where(ref, x, 0.0).sum(axis=1) / n, np.nan)
        std = np.sqrt(np.where(ref, (x - mean[:, None]) ** 2, 0.0).sum(axis=1) / n)
    scale = np.where(mad > 0, mad, std)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (x - med[:, None]) / scale[:, None]
    z = np.where(fin & (scale[:, None] == 0), 0.0, z)
    z = np.where(fin, z, np.nan)
    return np.clip(z, -clip, clip)


def global_robust_zscore(x: np.ndarray, fit_mask: np.ndarray, clip: float = 3.0
                         ) -> np.ndarray:
    """Qlib's ``RobustZScoreNorm``: one median / MAD over the ``fit_mask`` entries, clipped.

    ``(x - median) / (1.4826 MAD)`` with the statistics of the finite values where
    ``fit_mask`` (e.g. universe members in the training period) is True, applied to every
    value, clipped to ``+-clip``; a zero MAD falls back to the std, a zero std to 0.

    Returns
    -------
    ndarray float64 (T, N)
        NaN where ``x`` is missing, or everywhere if the fit period has no finite value.
    """
    x = np.asarray(x, dtype=np.float64)
    ref = x[np.asarray(fit_mask, dtype=bool) & np.isfinite(x)]
    if ref.size == 0:
        return np.full(x.shape, np.nan)
    med = float(np.median(ref))
    scale = float(np.median(np.abs(ref - med))) * _MAD_SCALE
    if not scale > 0:
        scale = float(ref.std())
    if not scale > 0:
        return np.where(np.isfinite(x), 0.0, np.nan)
    return np.clip((x - med) / scale, -clip, clip)


def normalise_label(y: np.ndarray, mask: np.ndarray, how: str = "rank") -> np.ndarray:
    """Cross-sectional label normalisation over ``mask & finite`` per date.

    Parameters
    ----------
    y : ndarray (T, N)
        Raw forward returns.
    mask : ndarray bool (T, N)
        Usable rows (``sample_mask``).
    how : {"rank", "zscore"}
        ``rank``: average-tie ranks mapped linearly to ``[-0.5, 0.5]`` (a single name -> 0);
        ``zscore``: ``(y - mean) / std`` (population std), clipped to +-3, 0 if std is 0.

    Returns
    -------
    ndarray float64 (T, N)
        NaN outside ``mask & finite``.

    Raises
    ------
    ConfigError
        For an unknown ``how``.
    """
    if how not in LABEL_NORMS:
        raise ConfigError(f"unknown label normalisation {how!r}; known: {', '.join(LABEL_NORMS)}")
    y = np.asarray(y, dtype=np.float64)
    ok = np.asarray(mask, dtype=bool) & np.isfinite(y)
    if how == "zscore":
        v = np.where(ok, y, np.nan)
        cnt = ok.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN dates
            mu = np.nanmean(v, axis=1)
            sd = np.nanstd(v, axis=1)
            z = (y - mu[:, None]) / sd[:, None]
        z = np.where(sd[:, None] > 0, z, 0.0)
        return np.where(ok & (cnt[:, None] > 0), np.clip(z, -3.0, 3.0), np.nan)
    # rank: average-tie ranks 1..m among usable names (scipy.stats.rankdata, NaN omitted)
    ranks = rankdata(np.where(ok, y, np.nan), axis=1, nan_policy="omit")
    m = ok.sum(axis=1)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.where(m > 1, (ranks - 1.0) / (m - 1) - 0.5, 0.0)
    return np.where(ok, scaled, np.nan)


# ---------------------------------------------------------------- build

def _group_key(expr) -> int:
    """Largest window in the formula (features sharing it share most sub-expressions)."""
    return max((w for n in walk(expr) if isinstance(n, Call) for w in n.windows), default=0)


def _uses_model(ws: "Workspace", formula: str, depth: int = 0) -> bool:
    """True when ``formula`` reads a ``model(...)`` panel, directly or through references."""
    expr = parse(formula)
    if any(isinstance(n, ModelRef) for n in walk(expr)):
        return True
    if depth >= 8:
        return False
    return any(_uses_model(ws, ws.member(n).formula, depth + 1) for n in factor_refs(expr))


def pool_features(ws: "Workspace") -> tuple[NamedFactor, ...]:
    """The leaderboard pool as model features: ``pool_<name>`` = ``factor("<name>")``.

    Every member that :meth:`backtest.candidates.Workspace.member_names` lists (the
    workspace's universe and ``[evaluate] horizon``, unique names), by row id, except members
    that read a ``model("...")`` prediction panel (directly or through references): a model is
    not trained on another model's out-of-sample scores, which start only at their first test
    date. A member's values are its formula evaluated on the workspace, as causal as any
    feature. A SHAP-distilled formula that uses such a feature therefore contains
    ``factor("<name>")`` (:func:`models.distill.distill_candidates` composes feature formulas).

    Returns
    -------
    tuple of NamedFactor
        Empty when the workspace has no store or the pool is empty.

    Raises
    ------
    EvaluationError
        From resolving a member's references.
    """
    out = []
    for name in ws.member_names():
        rec = ws.member(name)
        if _uses_model(ws, rec.formula):
            continue
        out.append(NamedFactor(f"pool_{name}", f'factor("{name}")',
                               f"leaderboard member {name} (id {rec.id}, {rec.source}): "
                               f"{rec.formula}", "leaderboard"))
    return tuple(out)


def build_dataset(ws: "Workspace", feature_set: str = "alpha158", horizon: int = 1,
                  label_norm: str = "rank", *, label: str = "open", clip: float = 3.0,
                  feature_norm: str = "cs", fit_end: str | None = None,
                  progress: Callable[[int, int, str], None] | None = None) -> PanelDataset:
    """Build the feature cube and label on ``ws`` (its universe, dates and codes).

    Parameters
    ----------
    ws : backtest.candidates.Workspace
    feature_set : str, default "alpha158"
        A name in :data:`factors.alpha158.FEATURE_SETS`, optionally followed by ``+pool``
        (:data:`factors.alpha158.POOL_SUFFIX`): the leaderboard members are added as features
        (:func:`pool_features`).
    horizon : int, default 1
        Label horizon ``h`` (trading days).
    label_norm : {"rank", "zscore"}
    label : {"open", "close"}
        ``open``: the evaluator's ``ctx.fwd[h]`` (open t+1 -> open t+1+h, computed here when
        the context lacks ``h``); ``close``: close t+1 -> close t+1+h (Qlib's label).
    clip : float, default 3
        Feature clip after the robust z-score.
    feature_norm : {"cs", "global"}, default "cs"
        ``cs``: :func:`robust_zscore` per date (cross-sectional). ``global``: Qlib's
        ``RobustZScoreNorm`` (:func:`global_robust_zscore`): one median / MAD per feature over
        the universe members' rows up to ``fit_end`` (the training period), so that levels
        across time are kept; then the same clip and NaN -> 0.
    fit_end : str, optional
        Last date of the fit period; required for ``feature_norm="global"``.
    progress : callable ``(done, total, name)``, optional
        Called after each feature.

    Returns
    -------
    PanelDataset

    Raises
    ------
    ConfigError
        Unknown feature set, label or normalisation, or a bad horizon.
    EvaluationError, DataError
        From evaluating a feature formula (the message names it).
    """
    if feature_norm not in FEATURE_NORMS:
        raise ConfigError(f"unknown feature normalisation {feature_norm!r}; known: "
                          f"{', '.join(FEATURE_NORMS)}")
    if feature_norm == "global" and fit_end is None:
        raise ConfigError("feature_norm='global' needs fit_end (last date of the fit period)")
    if label not in LABELS:
        raise ConfigError(f"unknown label {label!r}; known: {', '.join(LABELS)}")
    if label_norm not in LABEL_NORMS:
        raise ConfigError(f"unknown label normalisation {label_norm!r}; known: "
                          f"{', '.join(LABEL_NORMS)}")
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ConfigError(f"label horizon must be a positive integer, got {horizon!r}")
    if feature_set.endswith(POOL_SUFFIX):
        feats = get_feature_set(feature_set[:-len(POOL_SUFFIX)]) + pool_features(ws)
    else:
        feats = get_feature_set(feature_set)
    ctx = ws.ctx
    T, N = ctx.shape
    umask = np.asarray(ctx.universe_mask, dtype=bool)
    fit_mask = None
    if feature_norm == "global":
        fit_mask = umask & np.asarray(ctx.dates <= pd.Timestamp(fit_end))[:, None]
        if not fit_mask.any():
            raise ConfigError(f"fit_end {fit_end} is before the first date {ctx.dates[0].date()}")
    exprs = [parse(f.formula) for f in feats]
    groups: dict[int, list[int]] = defaultdict(list)
    for i, e in enumerate(exprs):
        groups[_group_key(e)].append(i)
    F = len(feats)
    X = np.zeros((T, N, F), dtype=np.float32)
    valid = np.zeros((T, N, F), dtype=bool)
    done = 0
    for key in sorted(groups):
        cache: dict = {}
        for i in groups[key]:
            try:
                raw = ws.values(exprs[i], cache=cache)
            except EvaluationError as exc:
                raise EvaluationError(f"feature {feats[i].name!r}: {exc}") from exc
            fin = np.isfinite(raw)
            valid[:, :, i] = fin
            z = (robust_zscore(raw, umask, clip) if fit_mask is None
                 else global_robust_zscore(raw, fit_mask, clip))
            X[:, :, i] = np.nan_to_num(z, nan=0.0)
            done += 1
            if progress is not None:
                progress(done, F, feats[i].name)
        del cache
    if label == "open":
        y_raw = ctx.fwd[horizon] if horizon in ctx.fwd else forward_returns(ws.field("open"),
                                                                            horizon)
    else:
        y_raw = forward_returns(ws.field("close"), horizon)
    y_raw = np.asarray(y_raw, dtype=np.float64)
    smask = umask & np.asarray(ctx.eligible, dtype=bool) & np.isfinite(y_raw)
    y = normalise_label(y_raw, smask, label_norm)
    return PanelDataset(dates=ctx.dates, codes=ctx.codes, features=X,
                        feature_names=[f.name for f in feats], label=y.astype(np.float32),
                        sample_mask=smask, horizon=int(horizon), feature_valid=valid,
                        label_raw=y_raw.astype(np.float32), universe_mask=umask,
                        formulas=[str(e) for e in exprs], label_kind=label,
                        label_norm=label_norm, feature_norm=feature_norm)
