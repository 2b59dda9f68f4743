"""One entry point for the model producers: ``run_model(cfg, kind, settings) -> run record``.

Same shape as the other producers (:func:`mining.llm_run.run_llm`): settings in, a run record
out, progress through one callback. It builds the settings (``[model]`` defaults, a preset,
overrides), opens the leaderboard when the run submits, and dispatches to
:func:`models.lgbm_run.run_lgbm` or :func:`models.transformer_run.run_transformer`, which build
the workspace (``model_dir = [model] out_dir``). Library code: it never prints.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, Union

from data.errors import ConfigError
from data.manifest import RunRecorder, file_digest
from factors.store import FactorStore
from models.lgbm_run import PRESETS, LGBMRun, LGBMSettings, run_lgbm
from models.run_common import ModelEvent
from models.transformer_run import TransformerRun, TransformerSettings, run_transformer

if TYPE_CHECKING:  # pragma: no cover
    from backtest.candidates import Workspace
    from data.config import Config

__all__ = ["KINDS", "ModelRun", "ModelSettings", "model_settings", "default_submit",
           "run_model"]

#: Model kinds :func:`run_model` dispatches on.
KINDS = ("lgbm", "transformer")
#: The record of a model run (both have ``run_id, settings, dataset, folds, oos, pred_path,
#: model_paths, timings, leaderboard`` and ``to_dict()``; LightGBM adds ``shap``).
ModelRun = Union[LGBMRun, TransformerRun]
ModelSettings = Union[LGBMSettings, TransformerSettings]
#: Settings keys only the presets (LightGBM) change; an explicit value still wins over a preset.
_PRESET_KEEPS = ("seed", "rounds", "feature_norm")


def model_settings(cfg: "Config", kind: str, *, preset: str | None = None,
                   **overrides: Any) -> ModelSettings:
    """Settings of a ``kind`` run: ``[model]`` defaults, then ``preset``, then non-None overrides.

    With a preset only ``seed``, ``rounds`` and ``feature_norm`` overrides apply (the preset
    fixes the data protocol).

    Raises
    ------
    ConfigError
        Unknown kind or preset, a preset for the transformer, or a bad override.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown model kind {kind!r}; known: {', '.join(KINDS)}")
    over = {k: v for k, v in overrides.items() if v is not None}
    if kind == "transformer":
        if preset:
            raise ConfigError("presets are LightGBM only")
        return TransformerSettings.from_config(cfg, **over)
    if preset:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        over = {**PRESETS[preset], **{k: v for k, v in over.items() if k in _PRESET_KEEPS}}
    return LGBMSettings.from_config(cfg, **over)


def default_submit(settings: ModelSettings) -> bool:
    """Submit unless the run follows a benchmark preset (its numbers are for comparison)."""
    return not getattr(settings, "preset", "")


def run_model(cfg: "Config", kind: str, settings: ModelSettings | Mapping[str, Any] | None = None,
              *, submit: bool | None = None, ws: "Workspace | None" = None,
              on_progress: Callable[[ModelEvent], None] | None = None,
              argv: Sequence[str] | None = None) -> ModelRun:
    """Train a ``kind`` model walk-forward and return its run record.

    Parameters
    ----------
    cfg : Config
    kind : {"lgbm", "transformer"}
    settings : LGBMSettings, TransformerSettings or mapping, optional
        A settings object, or overrides for :func:`model_settings` (a ``preset`` key selects a
        preset); default the ``[model]`` settings.
    submit : bool, optional
        Send the prediction panel (and LightGBM's SHAP formulas) to the leaderboard at
        ``[store] path``; default :func:`default_submit`.
    ws : Workspace, optional
        Prebuilt workspace (tests); default built from the settings.
    on_progress : callable, optional
        Receives :data:`models.run_common.ModelEvent` progress events.
    argv : sequence of str, optional
        The ``mine`` command line, recorded in the run's manifest (:mod:`data.manifest`:
        settings, seed, the leaderboard at the start when submitting, the predictions'
        digest) for ``mine rerun``.

    Raises
    ------
    ConfigError, AlphamineError
        Bad settings; errors from the data, evaluator or store.
    ImportError
        ``transformer`` without torch (the message says how to install it).
    """
    if settings is None or isinstance(settings, Mapping):
        over = dict(settings or {})
        settings = model_settings(cfg, kind, preset=over.pop("preset", None), **over)
    want = LGBMSettings if kind == "lgbm" else TransformerSettings
    if kind not in KINDS or not isinstance(settings, want):
        raise ConfigError(f"run_model: kind {kind!r} does not match {type(settings).__name__}")
    do_submit = default_submit(settings) if submit is None else bool(submit)
    seed = getattr(settings, "seed", None)
    manifest = RunRecorder("model", cfg, argv=argv, settings=settings, seeds={
        "model": seed if seed is not None else settings.net.seed},
        store=cfg.store.path if do_submit else None,
        window=(settings.start, settings.last_test))
    store = FactorStore(cfg.store.path) if do_submit else None
    try:
        if kind == "lgbm":
            run = run_lgbm(cfg, settings, ws=ws, store=store, submit=do_submit,
                           on_progress=on_progress)
        else:
            run = run_transformer(cfg, settings, ws=ws, store=store, submit=do_submit,
                                  on_progress=on_progress)
    finally:
        if store is not None:
            store.close()
    manifest.write(run.run_id, results={
        "files": {"predictions": file_digest(run.pred_path)}, "leaderboard": run.leaderboard,
        "summary": {"oos": run.oos, "submitted": do_submit}},
        outputs={"pred_path": run.pred_path, "model_paths": run.model_paths})
    return run
