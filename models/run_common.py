"""Steps shared by the model runs (:mod:`models.lgbm_run`, :mod:`models.transformer_run`).

Settings from ``[model]`` / ``[evaluate]``, the sealed-test check, the prediction workspace,
the staged run folder and the OOS IC statistics over the test rows of the walk-forward folds.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

import numpy as np
import pandas as pd

from backtest.candidates import Workspace, make_workspace
from data.config import Config
from data.errors import ConfigError
from data.staging import StagedDir, clean_stale
from models.dataset import PanelDataset, normalise_label
from models.lgbm import daily_ic

__all__ = ["model_data_settings", "check_before_test", "prediction_workspace",
           "workspace_line", "oos_ic_stats", "oos_members_eligible", "ModelMessage",
           "FeatureProgress", "RoundProgress", "FoldDone", "EpochDone", "ModelEvent",
           "progress_hooks", "staged_run_dir"]


# ---------------------------------------------------------------- progress events
# A model run reports progress through one callback ``on_progress(event)``; the CLI renders
# the events (bars, lines). Library code never prints.

@dataclass(frozen=True)
class ModelMessage:
    """A line of progress text (workspace built, run started, panel submitted, SHAP...)."""
    text: str


@dataclass(frozen=True)
class FeatureProgress:
    """Feature ``done`` of ``total`` computed (``name`` the last one)."""
    done: int
    total: int
    name: str


@dataclass(frozen=True)
class RoundProgress:
    """LightGBM: boosting ``iteration`` of at most ``total`` in ``fold``."""
    fold: int
    iteration: int
    total: int
    valid_l2: float
    valid_ic: float


@dataclass(frozen=True)
class FoldDone:
    """LightGBM: ``fold`` finished after ``rounds_run`` rounds; ``info`` its summary row."""
    fold: int
    rounds_run: int
    info: dict


@dataclass(frozen=True)
class EpochDone:
    """Transformer: an epoch of ``fold`` (0-based, of ``n_folds``) finished; ``total`` epochs
    at most."""
    fold: int
    n_folds: int
    epoch: int
    total: int
    loss: float
    valid_ic: float
    seconds: float


ModelEvent = Union[ModelMessage, FeatureProgress, RoundProgress, FoldDone, EpochDone]


def progress_hooks(on_progress: Callable[[ModelEvent], None] | None):
    """``(message, on_feature)`` hooks feeding ``on_progress`` (no-ops when it is None)."""
    if on_progress is None:
        return (lambda _text: None), None
    return ((lambda text: on_progress(ModelMessage(text))),
            (lambda done, total, name: on_progress(FeatureProgress(done, total, name))))


def staged_run_dir(rdir: str | os.PathLike) -> StagedDir:
    """The staged folder of a model run ``<[model] out_dir>/<run id>``
    (:class:`data.staging.StagedDir`): fold models, ``pred.parquet`` and ``meta.json`` are
    written into it and it is renamed into place before the predictions are submitted (a
    leaderboard entry ``model("<run id>")`` must find them); ``run.json``, written last into
    the final folder, marks a finished run. What killed runs left in ``out_dir`` is removed
    first."""
    rdir = Path(rdir)
    clean_stale(rdir.parent)
    return StagedDir(rdir)


def model_data_settings(cfg: Config) -> dict:
    """The data / split settings every model run takes from ``[model]`` and ``[evaluate]``.

    Returns
    -------
    dict
        ``universe, feature_set, first_test, last_test, retrain_months, valid_months,
        embargo, label_norm`` from ``cfg.model`` and ``horizon`` from ``cfg.evaluate``.
    """
    m = cfg.model
    return dict(universe=m.universe, feature_set=m.feature_set, first_test=m.first_test,
                last_test=m.last_test, retrain_months=m.retrain_months,
                valid_months=m.valid_months, embargo=m.embargo,
                horizon=cfg.evaluate.horizon, label_norm=m.label_norm)


def check_before_test(cfg: Config, last_test: str) -> None:
    """Raise :class:`ConfigError` if ``last_test`` lies in the sealed test split."""
    if pd.Timestamp(last_test) > pd.Timestamp(cfg.evaluate.valid[1]):
        raise ConfigError(f"last_test {last_test} is inside the sealed test split "
                          f"(starts after {cfg.evaluate.valid[1]}); predict train/valid only")


def prediction_workspace(cfg: Config, universe: str, start: str, last_test: str, *,
                         clip_to_valid: bool = True) -> Workspace:
    """Workspace ``start`` .. ``last_test`` + 14 calendar days (the last test day's label).

    With ``clip_to_valid`` the end is clipped to the end of the valid split.
    """
    # the label of the last test day needs a few later prices
    end = str((pd.Timestamp(last_test) + pd.Timedelta(days=14)).date())
    end = min(end, cfg.evaluate.valid[1]) if clip_to_valid else end
    return make_workspace(cfg, universe, start, end, model_dir=cfg.model.out_dir)


def workspace_line(ws: Workspace, universe: str) -> str:
    """One-line description of a workspace: stocks x days and its date range."""
    return (f"{universe}: {len(ws.ctx.codes)} stocks x {len(ws.ctx.dates)} days "
            f"({ws.ctx.dates[0].date()}..{ws.ctx.dates[-1].date()})")


def oos_ic_stats(pred: np.ndarray, label: np.ndarray, mask: np.ndarray, rows=None) -> dict:
    """Daily IC (Pearson) and RankIC (Spearman) of ``pred`` vs ``label`` over ``mask`` names.

    Parameters
    ----------
    pred, label : ndarray (T, N)
    mask : ndarray bool (T, N)
        Names counted each day (also requires finite pred and label).
    rows : slice, optional
        Dates to use (default all).

    Returns
    -------
    dict
        ``IC, ICIR, RankIC, RankICIR`` (mean / std of the daily series, ddof=1, not
        annualised, as Qlib's SigAnaRecord reports), ``days``, ``names_per_day``.
    """
    rows = slice(None) if rows is None else rows
    p, y = np.asarray(pred, float)[rows], np.asarray(label, float)[rows]
    ok = np.asarray(mask, bool)[rows] & np.isfinite(p) & np.isfinite(y)
    t, j = np.nonzero(ok)
    T = p.shape[0]
    ic = daily_ic(p[t, j], y[t, j], t, T)
    rp = normalise_label(p, ok, "rank")
    ry = normalise_label(y, ok, "rank")
    ric = daily_ic(rp[t, j], ry[t, j], t, T)

    def stats(s):
        s = s[np.isfinite(s)]
        if len(s) < 2:
            return float("nan"), float("nan")
        return float(s.mean()), float(s.mean() / s.std(ddof=1))
    a, b = stats(ic)
    c, d = stats(ric)
    days = int(np.isfinite(ic).sum())
    return {"IC": a, "ICIR": b, "RankIC": c, "RankICIR": d, "days": days,
            "names_per_day": float(ok.sum() / max(days, 1))}


def oos_members_eligible(pred: np.ndarray, ds: PanelDataset, folds) -> tuple[dict, dict]:
    """:func:`oos_ic_stats` of ``pred`` on the folds' test rows, over two name sets.

    Returns
    -------
    (members, eligible) : tuple of dict
        Universe members with a finite raw label; and the dataset's ``sample_mask`` names
        (tradable at t+1).
    """
    test_rows = np.zeros(len(ds.dates), dtype=bool)
    for f in folds:
        test_rows[f.test] = True
    label_mask = ds.universe_mask & np.isfinite(ds.label_raw)
    return (oos_ic_stats(pred, ds.label_raw, label_mask & test_rows[:, None]),
            oos_ic_stats(pred, ds.label_raw, ds.sample_mask & test_rows[:, None]))
