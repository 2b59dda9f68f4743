"""Model predictions as factor candidates: save, load (``model("<run id>")``), evaluate, submit.

A model run writes its out-of-sample prediction panel to ``<out_dir>/<run id>/pred.parquet``
(long format: ``trade_date, ts_code, score``; only finite predictions; written atomically) and
a ``meta.json`` manifest. The formula leaf ``model("<run id>")`` (:class:`factors.expr.ModelRef`)
is resolved by :meth:`mining.pipeline.Workspace.model_panel` through
:func:`load_prediction_panel`, so the prediction panel goes through the common evaluator, the
gate and the leaderboard like any formula, and later sessions can re-evaluate it.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from data.errors import EvaluationError
from data.io import atomic_write
from factors.expr import MODEL_ID_RE, ModelRef, unparse

if TYPE_CHECKING:  # pragma: no cover
    from data.config import Config
    from factors.store import FactorStore, GateDecision
    from mining.pipeline import Evaluated, Workspace

__all__ = ["new_run_id", "run_dir", "save_predictions", "load_prediction_panel",
           "model_formula", "write_json_atomic", "submit_prediction"]

PRED_FILE = "pred.parquet"
META_FILE = "meta.json"


def new_run_id(kind: str = "lgbm") -> str:
    """A fresh model run id ``<kind>-YYYYmmddTHHMMSS-<6 hex>`` (UTC)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    rid = f"{kind}-{stamp}-{secrets.token_hex(3)}"
    _check_id(rid)
    return rid


def _check_id(run_id: str) -> None:
    if not isinstance(run_id, str) or not MODEL_ID_RE.fullmatch(run_id):
        raise EvaluationError(f"model run id {run_id!r} must match [A-Za-z0-9_.-]+ "
                              "(not starting with '.')")


def run_dir(out_dir: str | os.PathLike, run_id: str) -> Path:
    """``<out_dir>/<run_id>`` after validating ``run_id`` (no path separators or leading dot)."""
    _check_id(run_id)
    return Path(out_dir) / run_id


def model_formula(run_id: str) -> str:
    """The formula text of a model's prediction panel: ``model("<run id>")``."""
    return unparse(ModelRef(run_id))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as JSON (NaN -> null) to ``path`` atomically."""
    def clean(o):
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, (np.floating, float)):
            return float(o) if np.isfinite(o) else None
        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, (Path, pd.Timestamp)):
            return str(o)
        return o

    text = json.dumps(clean(obj), indent=2, ensure_ascii=False)

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
    return atomic_write(path, write)


def save_predictions(out_dir: str | os.PathLike, run_id: str, pred: np.ndarray,
                     dates, codes, meta: dict | None = None) -> Path:
    """Save a ``(T, N)`` prediction panel as ``<out_dir>/<run_id>/pred.parquet``.

    Parameters
    ----------
    out_dir : path
        ``[model] out_dir``.
    run_id : str
        Model run id (``[A-Za-z0-9_.-]+``).
    pred : ndarray (T, N)
        Scores; non-finite entries (no prediction) are not written.
    dates, codes : DatetimeIndex (T,), Index (N,)
    meta : dict, optional
        Written to ``meta.json`` beside it (JSON; NaN -> null).

    Returns
    -------
    Path of the parquet file.

    Raises
    ------
    EvaluationError
        Bad run id or a shape mismatch.
    """
    d = run_dir(out_dir, run_id)
    pred = np.asarray(pred, dtype=np.float64)
    dates, codes = pd.DatetimeIndex(dates), pd.Index(codes)
    if pred.shape != (len(dates), len(codes)):
        raise EvaluationError(f"save_predictions: panel shape {pred.shape} != "
                              f"({len(dates)}, {len(codes)})")
    t, j = np.nonzero(np.isfinite(pred))
    frame = pd.DataFrame({"trade_date": dates[t], "ts_code": codes[j].astype(str),
                          "score": pred[t, j]})
    path = atomic_write(d / PRED_FILE, lambda tmp: frame.to_parquet(tmp, index=False))
    if meta is not None:
        write_json_atomic(d / META_FILE, meta)
    return path


def load_prediction_panel(out_dir: str | os.PathLike, run_id: str, dates, codes) -> np.ndarray:
    """Load a saved prediction panel onto a ``dates x codes`` grid.

    Returns
    -------
    ndarray float64 (T, N)
        NaN where the model made no prediction (other dates or codes are ignored).

    Raises
    ------
    EvaluationError
        Bad run id, or no saved panel (the message names the path).
    """
    path = run_dir(out_dir, run_id) / PRED_FILE
    if not path.is_file():
        raise EvaluationError(f'model("{run_id}"): no prediction panel at {str(path)!r}')
    frame = pd.read_parquet(path, columns=["trade_date", "ts_code", "score"])
    dates, codes = pd.DatetimeIndex(dates), pd.Index(codes)
    ti = dates.get_indexer(pd.DatetimeIndex(frame["trade_date"]))
    ji = codes.get_indexer(frame["ts_code"].astype(str))
    ok = (ti >= 0) & (ji >= 0)
    out = np.full((len(dates), len(codes)), np.nan)
    out[ti[ok], ji[ok]] = frame["score"].to_numpy(dtype=np.float64)[ok]
    return out


def submit_prediction(ws: "Workspace", store: "FactorStore", cfg: "Config", run_id: str, *,
                      name: str, provenance: dict, n_tried: int, description: str = ""
                      ) -> tuple["Evaluated", "GateDecision"]:
    """Evaluate ``model("<run id>")`` with the common evaluator and submit it (source ``model``).

    The panel must have been saved under ``ws.model_dir`` first. Not oriented: a return
    model's score is used as predicted.
    """
    from mining.pipeline import evaluate_candidate, submit
    ev = evaluate_candidate(ws, model_formula(run_id), orient=False)
    decision = submit(ws, store, ev, name=name, source="model", cfg=cfg, provenance=provenance,
                      n_tried=n_tried, description=description)
    return ev, decision
